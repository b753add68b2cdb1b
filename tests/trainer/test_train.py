"""The training loop: seeded and repeatable, early stopping on validation loss, and its metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlops_provider.trainer import serving, train
from mlops_provider.trainer.train import Tensors, evaluate, fit, pick_device, roc_auc, seed_everything


def _split(seed: int, rows: int = 256) -> Tensors:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 4, (rows, 2), generator=generator)
    numbers = torch.randn(rows, 3, generator=generator)
    return Tensors(codes, numbers, (numbers[:, 0] > 0).float())


def test_training_is_deterministic_for_a_seed() -> None:
    def weights() -> list[torch.Tensor]:
        train.seed_everything(3)
        generator = torch.Generator().manual_seed(0)
        codes = torch.randint(0, 4, (256, 2), generator=generator)
        numbers = torch.randn(256, 3, generator=generator)
        labels = (numbers[:, 0] > 0).float()
        split = train.Tensors(codes, numbers, labels)
        model = serving.TabularMLP([3, 3], [2, 2], 3, [8], 0.1)
        fitted, _ = train.fit(
            model, split, split, epochs=2, lr=0.01, batch_size=32, patience=2, weight_decay=0.0, seed=3
        )
        return [p.detach().clone() for p in fitted.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(weights(), weights(), strict=True))


def test_roc_auc_matches_the_pair_counting_definition() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert roc_auc(labels, scores) == pytest.approx(expected)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_fit_stops_early_and_keeps_the_best_weights() -> None:
    seed_everything(0)
    train_split, validation = _split(1), _split(2)
    model = serving.TabularMLP([3, 3], [2, 2], 3, [16], 0.0)
    losses: list[float] = []
    weights: list[list[torch.Tensor]] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        assert set(metrics) == {"train_loss", "log_loss", "roc_auc", "accuracy", "positive_rate"}
        losses.append(metrics["log_loss"])
        weights.append([p.detach().clone() for p in model.parameters()])

    # A huge learning rate makes validation loss jump around: patience 1 stops at the first rise.
    fitted, best = fit(
        model,
        train_split,
        validation,
        epochs=30,
        lr=1.0,
        batch_size=32,
        patience=1,
        weight_decay=0.0,
        seed=0,
        on_epoch=on_epoch,
    )
    assert 1 <= best <= len(losses) < 30
    assert losses[best - 1] == min(losses) and losses[-1] >= losses[best - 1]
    assert all(torch.equal(a, b) for a, b in zip(fitted.parameters(), weights[best - 1], strict=True))
    assert evaluate(fitted, validation)["log_loss"] == pytest.approx(min(losses), rel=1e-5)


def test_evaluate_reports_loss_auc_accuracy_and_positive_rate() -> None:
    split = _split(3)

    class Oracle(torch.nn.Module):  # scores the label itself: a perfect classifier
        def forward(self, codes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
            return numbers[:, 0] * 100

    metrics = evaluate(Oracle(), split)
    assert set(metrics) == {"log_loss", "roc_auc", "accuracy", "positive_rate"}
    assert metrics["roc_auc"] == 1.0 and metrics["accuracy"] == 1.0 and metrics["log_loss"] < 0.01
    assert metrics["positive_rate"] == pytest.approx(float(split.labels.mean()))


def test_seeding_and_the_device() -> None:
    seed_everything(11)
    first = (np.random.rand(), torch.rand(1).item())
    seed_everything(11)
    assert (np.random.rand(), torch.rand(1).item()) == first
    assert torch.are_deterministic_algorithms_enabled()
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert len(_split(0, rows=7)) == 7
    assert train.roc_auc(np.array([0, 1]), np.array([0.9, 0.1])) == 0.0
