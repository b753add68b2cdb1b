"""The training loop: seeded, whole tensors on the device, mixed precision on CUDA, early stopping."""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class Tensors:
    """Encoded features and labels of one split, already on the training device."""

    codes: torch.Tensor
    numbers: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def seed_everything(seed: int) -> None:
    """Make runs repeatable: same seed, same data -> same weights on the same hardware."""
    # cuBLAS needs this before CUDA initialises to pick deterministic kernels.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    model: ModuleT,
    train: Tensors,
    validation: Tensors,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    patience: int,
    weight_decay: float,
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None,
) -> tuple[ModuleT, int]:
    """Train with Adam on BCE, keep the weights of the best validation loss.

    Batches are index slices of tensors already on the device, so no DataLoader copies data each
    step. On CUDA the forward pass runs under float16 autocast with a gradient scaler.

    :param validation: the early-stopping rows: they pick the epoch, so they are not held out.
    :param on_epoch: called after each epoch with ``train_loss`` and :func:`evaluate` on ``validation``.
    :return: the model holding the best weights, and the best epoch (1-based).
    """
    device = train.labels.device
    amp = device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loss_fn = nn.BCEWithLogitsLoss()
    shuffler = torch.Generator(device="cpu").manual_seed(seed)
    best_loss, best_epoch, best_state, stale = float("inf"), 0, None, 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=shuffler).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(train), batch_size):
            index = order[start : start + batch_size]
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(model(train.codes[index], train.numbers[index]), train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach() * len(index)
        metrics = {"train_loss": float(total) / len(train), **evaluate(model, validation, amp=amp)}
        on_epoch(epoch, metrics)
        if metrics["log_loss"] < best_loss:
            best_loss, best_epoch, stale = metrics["log_loss"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, best_epoch


def evaluate(model: nn.Module, split: Tensors, *, amp: bool = False) -> dict[str, float]:
    """Metrics of ``split`` at threshold 0.5: ``log_loss``, ``roc_auc``, ``accuracy``, ``positive_rate``."""
    model.eval()
    with torch.inference_mode(), torch.autocast(split.labels.device.type, dtype=torch.float16, enabled=amp):
        logits = model(split.codes, split.numbers).float()
    loss = float(nn.functional.binary_cross_entropy_with_logits(logits, split.labels))
    probability = torch.sigmoid(logits).cpu().numpy()
    labels = split.labels.cpu().numpy()
    return {
        "log_loss": loss,
        "roc_auc": roc_auc(labels, probability),
        "accuracy": float(((probability >= 0.5) == (labels >= 0.5)).mean()),
        "positive_rate": float((probability >= 0.5).mean()),
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); NaN when one class is absent."""
    positives = labels >= 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
