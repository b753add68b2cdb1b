"""The demo's story measured against the truth: after the concept shift, is the retrained model better?

Run: ``python -m tests.bench bench_concept_shift`` from the repository root. The reference trainer
(mlops_provider.trainer, in-process and without MLflow, with the shipped training DAG's hyperparameters)
trains a champion on two labelled days before the generator's ``drift_from`` and a challenger on the
two labelled days from it, 2,000 customers a day, seed 42, as in the demo. Each model's TRUE AUC is its
expected AUC over label draws from the generator's own churn probabilities, on 100,000 rows of a later
post-shift day of another customer base (seed 7); the true probability's AUC there is the ceiling.
Two controls retrain on the same days with the shift switched off: without drift, and with feature drift
only (``concept_shift=0``, what the drift knob did before); there retraining should gain nothing.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_provider.example_data.generator import (
    GeneratorConfig,
    activity_columns,
    activity_table,
    churn_probability,
    labels_table,
)
from tests.bench.common import markdown_report

EPOCH = dt.date(2026, 1, 1)
DRIFT_FROM = EPOCH + dt.timedelta(days=2)  # champion: snapshots epoch+0..1; challenger: epoch+2..3
TRAINING_DAYS = 2
ROWS_PER_DAY = 2_000
SEED = 42
EVALUATION_DAY = DRIFT_FROM + dt.timedelta(days=10)
EVALUATION_ROWS = 100_000
EVALUATION_SEED = 7  # another customer base: no model has seen these customers
# params.hyperparameters of dags/training_pipeline.py, merged over the trainer's defaults as the CLI does.
DAG_HYPERPARAMETERS = {"epochs": 10, "lr": 0.01, "hidden": [32], "patience": 3}
SCENARIOS: dict[str, dict[str, Any]] = {
    "no drift": {"drift_from": None},
    "feature drift only (concept_shift=0)": {"drift_from": DRIFT_FROM, "concept_shift": 0.0},
    "drift and concept shift (the demo)": {"drift_from": DRIFT_FROM},
}
DEMO = "drift and concept shift (the demo)"
NOISE_WINDOWS = 5


@dataclass(frozen=True)
class Story:
    """True AUCs on the evaluation day of one scenario."""

    scenario: str
    champion: float
    challenger: float
    ceiling: float
    positive_rate: float

    @property
    def gain(self) -> float:
        return self.challenger - self.champion


def expected_auc(probability: np.ndarray, scores: np.ndarray) -> float:
    """AUC of ``scores`` over labels drawn from ``probability``: expected concordant pairs (ties count
    half) over expected positive-negative pairs."""
    values, group = np.unique(scores, return_inverse=True)
    negative = 1 - probability
    per_value = np.bincount(group, weights=negative, minlength=values.size)
    below = (np.cumsum(per_value) - per_value)[group] + 0.5 * (per_value[group] - negative)
    pairs = probability.sum() * negative.sum() - (probability * negative).sum()
    return float((probability * below).sum() / pairs)


def labelled_days(cfg: GeneratorConfig, first: dt.date, days: int) -> pd.DataFrame:
    """Snapshots of ``days`` days from ``first`` joined with their labels, which land later."""
    frames = []
    for i in range(days):
        snapshot = first + dt.timedelta(days=i)
        activity = activity_table(cfg, snapshot).to_pandas()
        labels = labels_table(cfg, snapshot + dt.timedelta(days=cfg.label_delay_days))
        keyed = labels.select(["customer_id", "event_timestamp", "churned"]).to_pandas()
        frames.append(activity.merge(keyed))
    return pd.concat(frames, ignore_index=True)


def train(frame: pd.DataFrame) -> Any:
    """Train as ``python -m mlops_provider.trainer`` does (trainer.run.train_and_log), minus MLflow.

    :return: a function from a raw feature frame to churn scores (logits).
    """
    import torch

    from mlops_provider.trainer import data, serving
    from mlops_provider.trainer import model as model_lib
    from mlops_provider.trainer import train as train_lib
    from mlops_provider.trainer.cli import DEFAULT_HYPERPARAMETERS
    from mlops_provider.trainer.run import to_tensors

    hp = {**DEFAULT_HYPERPARAMETERS, **DAG_HYPERPARAMETERS}
    with tempfile.TemporaryDirectory(prefix="bench-concept-shift-") as workdir:
        path = Path(workdir) / "training_set.parquet"
        frame.to_parquet(path, index=False)
        split = data.load(str(path), "churned", "event_timestamp", hp["val_fraction"], ("customer_id",))
    train_lib.seed_everything(hp["seed"])
    device = torch.device("cpu")
    spec = model_lib.fit_preprocessing(
        split.train, split.categorical, split.numeric, hp["hidden"], hp["dropout"]
    )
    network = serving.TabularMLP(**spec["architecture"]).to(device)
    network, _ = train_lib.fit(
        network,
        to_tensors(split.train, spec, "churned", device),
        to_tensors(split.validation, spec, "churned", device),
        epochs=hp["epochs"],
        lr=hp["lr"],
        batch_size=hp["batch_size"],
        patience=hp["patience"],
        weight_decay=hp["weight_decay"],
        seed=hp["seed"],
    )
    network.eval()

    def score(features: pd.DataFrame) -> np.ndarray:
        codes, numbers = serving.encode(features, spec)
        with torch.inference_mode():
            return network(codes, numbers).numpy().astype(np.float64)

    return score


def train_champion() -> Any:
    """The champion: the same in every scenario, as days before ``drift_from`` ignore the drift knobs."""
    return train(labelled_days(config({"drift_from": None}), EPOCH, TRAINING_DAYS))


def train_challenger(scenario: str) -> Any:
    return train(labelled_days(config(SCENARIOS[scenario]), DRIFT_FROM, TRAINING_DAYS))


def retraining_spread() -> list[float]:
    """True AUCs, on the no-drift evaluation day, of models trained on successive 2-day windows of
    undrifted data: how far two equally good retrains differ by chance."""
    features, truth = evaluation_day(SCENARIOS["no drift"])
    scores = []
    for window in range(NOISE_WINDOWS):
        first = EPOCH + dt.timedelta(days=window * TRAINING_DAYS)
        model = train(labelled_days(config({"drift_from": None}), first, TRAINING_DAYS))
        scores.append(expected_auc(truth, model(features)))
    return scores


def config(knobs: dict[str, Any], rows: int = ROWS_PER_DAY, seed: int = SEED) -> GeneratorConfig:
    return GeneratorConfig(rows_per_day=rows, seed=seed, epoch=EPOCH, **knobs)


def evaluation_day(knobs: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """The features and true churn probabilities of the evaluation day of one scenario."""
    cfg = config(knobs, rows=EVALUATION_ROWS, seed=EVALUATION_SEED)
    columns = activity_columns(cfg, EVALUATION_DAY)
    return pd.DataFrame(columns), churn_probability(columns, shift=cfg.shift_on(EVALUATION_DAY))


def measure(scenario: str, champion: Any, challenger: Any) -> Story:
    """Both models' true AUCs on the scenario's evaluation day."""
    features, truth = evaluation_day(SCENARIOS[scenario])
    return Story(
        scenario,
        champion=expected_auc(truth, champion(features)),
        challenger=expected_auc(truth, challenger(features)),
        ceiling=expected_auc(truth, truth),
        positive_rate=float(truth.mean()),
    )


def main() -> None:
    report = markdown_report()
    started = time.perf_counter()
    champion = train_champion()
    stories = [measure(name, champion, train_challenger(name)) for name in SCENARIOS]
    print(
        f"Champion trained on {TRAINING_DAYS} labelled days before `drift_from`, challenger on the "
        f"{TRAINING_DAYS} from it ({ROWS_PER_DAY:,} rows a day, seed {SEED}, the reference trainer with "
        f"the training DAG's hyperparameters `{DAG_HYPERPARAMETERS}`). True AUCs on "
        f"{EVALUATION_ROWS:,} rows of a day 10 days after `drift_from` (another customer base): expected "
        "over labels drawn from the generator's churn probabilities; the ceiling is the AUC of those "
        "probabilities themselves.\n",
        file=report,
    )
    print("| scenario | positive rate | champion | challenger | gain | ceiling |", file=report)
    print("| --- | ---: | ---: | ---: | ---: | ---: |", file=report)
    for s in stories:
        print(
            f"| {s.scenario} | {s.positive_rate:.1%} | {s.champion:.4f} | {s.challenger:.4f} "
            f"| {s.gain:+.4f} | {s.ceiling:.4f} |",
            file=report,
        )
    spread = retraining_spread()
    print(
        f"\nRetraining noise: models trained on {NOISE_WINDOWS} successive {TRAINING_DAYS}-day windows "
        f"without drift score true AUCs {', '.join(f'{a:.4f}' for a in spread)} on the no-drift "
        f"evaluation day (standard deviation {statistics.stdev(spread):.4f}, range "
        f"{max(spread) - min(spread):.4f}).",
        file=report,
    )
    print(f"\n_Training and scoring: {time.perf_counter() - started:.0f} s._", file=report)


if __name__ == "__main__":
    main()
