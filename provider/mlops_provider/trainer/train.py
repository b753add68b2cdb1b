"""The training loop: seeded, whole tensors on the device, mixed precision on CUDA, early stopping.

One loop for the three task types of :mod:`mlops_provider.ml.tasks`; :class:`Objective` holds what
differs: the loss, the metrics (:data:`METRICS`, the loss first) and the early-stopping loss.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlops_provider.ml.tasks import BINARY, MULTICLASS, REGRESSION, check_task_type

ModuleT = TypeVar("ModuleT", bound=nn.Module)

METRICS = {
    BINARY: ("log_loss", "roc_auc", "accuracy", "positive_rate"),
    MULTICLASS: ("log_loss", "accuracy", "macro_f1"),
    REGRESSION: ("mse", "rmse", "mae", "r2"),
}
"""What :func:`evaluate` returns by task: the validation loss (the early-stopping criterion) first,
then the quality metrics, the first of which the per-epoch curves follow."""
PROBABILITY_CLIP = 1e-7
"""Multiclass log loss clips P(true class) to at least this: a class the model never saw has 0."""


@dataclass(frozen=True)
class Objective:
    """What the network learns, by task type.

    :param task_type: ``binary`` (one logit, BCE), ``multiclass`` (one logit per class, cross
        entropy) or ``regression`` (one number, MSE on the target standardised with ``mean``/``std``,
        the training split's; metrics are on the label's own scale).
    """

    task_type: str = BINARY
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def from_task(cls, task: dict[str, Any]) -> Objective:
        """From the preprocessing spec's ``task`` (:func:`mlops_provider.trainer.model.fit_task`)."""
        return cls(check_task_type(task["type"]), float(task.get("mean", 0.0)), float(task.get("std", 1.0)))

    @property
    def loss_metric(self) -> str:
        """The validation metric early stopping minimises: ``log_loss``, or ``mse`` for regression."""
        return METRICS[self.task_type][0]

    @property
    def quality_metric(self) -> str:
        """The first quality metric: ``roc_auc``, ``accuracy`` (multiclass) or ``rmse`` (regression)."""
        return METRICS[self.task_type][1]

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of the network's raw output against :class:`Tensors` labels."""
        if self.task_type == MULTICLASS:
            return nn.functional.cross_entropy(out, labels)
        if self.task_type == REGRESSION:
            return nn.functional.mse_loss(out, (labels - self.mean) / self.std)
        return nn.functional.binary_cross_entropy_with_logits(out, labels)


BINARY_OBJECTIVE = Objective()


@dataclass(frozen=True)
class Tensors:
    """Encoded features and labels of one split, already on the training device.

    Labels: float 0/1 (binary); int64 class indexes (multiclass; negative for a class the model has
    no output for, which only an evaluation set may hold); float, the label's own scale (regression).
    """

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
    objective: Objective = BINARY_OBJECTIVE,
    on_epoch: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None,
) -> tuple[ModuleT, int]:
    """Train with Adam on the task's loss, keep the weights of the best validation loss
    (``objective.loss_metric``: log loss, or MSE for regression).

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
    shuffler = torch.Generator(device="cpu").manual_seed(seed)
    best_loss, best_epoch, best_state, stale = float("inf"), 0, None, 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=shuffler).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(train), batch_size):
            index = order[start : start + batch_size]
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                out = model(train.codes[index], train.numbers[index])
                loss = objective.loss(out, train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach() * len(index)
        metrics = {
            "train_loss": float(total) / len(train),
            **evaluate(model, validation, amp=amp, objective=objective),
        }
        on_epoch(epoch, metrics)
        if metrics[objective.loss_metric] < best_loss:
            best_loss, best_epoch, stale = metrics[objective.loss_metric], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, best_epoch


def evaluate(
    model: nn.Module,
    split: Tensors,
    *,
    amp: bool = False,
    objective: Objective = BINARY_OBJECTIVE,
) -> dict[str, float]:
    """The task's :data:`METRICS` on ``split``.

    Binary, at threshold 0.5: ``log_loss``, ``roc_auc``, ``accuracy``, ``positive_rate``. Multiclass:
    ``log_loss``, ``accuracy``, ``macro_f1`` (over the classes present or predicted; a class the model
    never saw counts as always missed). Regression, on the label's scale: ``mse``, ``rmse``, ``mae``,
    ``r2`` (NaN when the split's label does not vary).
    """
    model.eval()
    with torch.inference_mode(), torch.autocast(split.labels.device.type, dtype=torch.float16, enabled=amp):
        out = model(split.codes, split.numbers).float()
    if objective.task_type == MULTICLASS:
        return _multiclass_metrics(out, split.labels)
    if objective.task_type == REGRESSION:
        predicted = out.double().cpu().numpy() * objective.std + objective.mean
        return regression_metrics(split.labels.double().cpu().numpy(), predicted)
    loss = float(nn.functional.binary_cross_entropy_with_logits(out, split.labels))
    probability = torch.sigmoid(out).cpu().numpy()
    labels = split.labels.cpu().numpy()
    return {
        "log_loss": loss,
        "roc_auc": roc_auc(labels, probability),
        "accuracy": float(((probability >= 0.5) == (labels >= 0.5)).mean()),
        "positive_rate": float((probability >= 0.5).mean()),
    }


def _multiclass_metrics(logits: torch.Tensor, codes: torch.Tensor) -> dict[str, float]:
    log_probability = torch.log_softmax(logits, dim=1).double().cpu().numpy()
    truth = codes.cpu().numpy()
    seen = truth >= 0
    true_log_probability = np.full(len(truth), math.log(PROBABILITY_CLIP))
    true_log_probability[seen] = log_probability[seen, truth[seen]]
    predicted = log_probability.argmax(axis=1)
    return {
        "log_loss": float(-np.maximum(true_log_probability, math.log(PROBABILITY_CLIP)).mean()),
        "accuracy": float((predicted == truth).mean()),
        "macro_f1": macro_f1(truth, predicted),
    }


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean F1 over every class that is true or predicted in some row."""
    scores = []
    for label in np.union1d(truth, predicted):
        hits = int(((predicted == label) & (truth == label)).sum())
        misses = int((predicted != truth)[(predicted == label) | (truth == label)].sum())
        scores.append(2 * hits / (2 * hits + misses))
    return float(np.mean(scores)) if scores else float("nan")


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``mse``, ``rmse``, ``mae`` and ``r2`` (1 - SSE/SST; NaN when ``truth`` does not vary)."""
    errors = predicted - truth
    mse = float(np.mean(errors**2))
    spread = float(np.sum((truth - truth.mean()) ** 2))
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(errors))),
        "r2": 1.0 - float(np.sum(errors**2)) / spread if spread > 0 else float("nan"),
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); NaN when one class is absent."""
    positives = labels >= 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
