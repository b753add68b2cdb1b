"""Trainer throughput vs a bare torch loop on the same tensors and model (target: ratio >= 0.9).

    python -m tests.bench.bench_trainer                    # CPU
    python -m tests.bench.bench_trainer --device cuda      # GPU: adds peak memory and utilisation

"Trainer" is :func:`mlops_provider.trainer.train.fit` (per-epoch validation, AUC, early-stopping
bookkeeping; MLflow calls excluded, they are a few HTTP requests per epoch). "Bare" is the minimal
loop with the same optimizer, loss, batches and, on CUDA, the same autocast and gradient scaler.
Both count training samples per second; each is the median of ``--repeats`` runs. Prints one
markdown table row.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

from mlops_provider.trainer import data, model, serving, train
from mlops_provider.trainer.run import to_tensors
from tests.bench.common import markdown_report
from tests.training_data import build_training_set

HEADER = (
    "| device | train rows | epochs | batch | trainer samples/s | bare loop samples/s | ratio "
    "| peak GPU memory | mean GPU utilisation |\n|---|---|---|---|---|---|---|---|---|"
)


def bare_loop(
    net: nn.Module, split: train.Tensors, epochs: int, batch_size: int, lr: float, seed: int
) -> None:
    device = split.labels.device
    amp = device.type == "cuda"
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loss_fn = nn.BCEWithLogitsLoss()
    shuffler = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(split), generator=shuffler).to(device)
        for start in range(0, len(split), batch_size):
            index = order[start : start + batch_size]
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(net(split.codes[index], split.numbers[index]), split.labels[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


class GpuSampler:
    """Samples nvidia-smi's utilisation.gpu every 0.2 s while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if out:
                self.samples.append(float(out[0]))
            self._stop.wait(0.2)

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    cli.add_argument("--rows-per-day", type=int, default=5_000)
    cli.add_argument("--days", type=int, default=8)
    cli.add_argument("--epochs", type=int, default=3)
    cli.add_argument("--batch-size", type=int, default=512)
    cli.add_argument("--hidden", default="64,32")
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args()
    report = markdown_report()
    device = torch.device(args.device)
    hidden = [int(h) for h in args.hidden.split(",")]
    with tempfile.TemporaryDirectory() as workdir:
        path = build_training_set(Path(workdir), days=args.days, rows_per_day=args.rows_per_day)
        loaded = data.load(str(path), "churned", "event_timestamp", 0.2, ("customer_id",))
    spec = model.fit_preprocessing(loaded.train, loaded.categorical, loaded.numeric, hidden, 0.1)
    train_split = to_tensors(loaded.train, spec, "churned", device)
    validation = to_tensors(loaded.validation, spec, "churned", device)

    def fresh() -> nn.Module:
        train.seed_everything(0)
        return serving.TabularMLP(**spec["architecture"]).to(device)

    def run_trainer() -> None:
        train.fit(
            fresh(),
            train_split,
            validation,
            epochs=args.epochs,
            lr=3e-3,
            batch_size=args.batch_size,
            patience=args.epochs + 1,
            weight_decay=0.0,
            seed=0,
        )

    def run_bare() -> None:
        bare_loop(fresh(), train_split, args.epochs, args.batch_size, 3e-3, 0)

    run_trainer(), run_bare()  # warm-up: allocator, kernels, thread pools
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer_s, bare_s = [], []
    with GpuSampler() as sampler:
        for _ in range(args.repeats):  # interleaved so drift in machine load hits both alike
            trainer_s.append(timed(run_trainer, device))
            bare_s.append(timed(run_bare, device))
    samples = len(train_split) * args.epochs
    trainer_rate, bare_rate = samples / statistics.median(trainer_s), samples / statistics.median(bare_s)
    memory = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.type == "cuda" else "n/a"
    utilisation = f"{statistics.mean(sampler.samples):.0f} %" if sampler.samples else "n/a"
    name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(HEADER, file=report)
    print(
        f"| {name} | {len(train_split)} | {args.epochs} | {args.batch_size} | {trainer_rate:,.0f} "
        f"| {bare_rate:,.0f} | {trainer_rate / bare_rate:.2f} | {memory} | {utilisation} |",
        file=report,
    )


if __name__ == "__main__":
    main()
