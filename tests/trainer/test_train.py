"""The training loop: seeded and repeatable, early stopping on validation loss, and its metrics by task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlops_provider.trainer import serving, train
from mlops_provider.trainer.train import (
    METRICS,
    PROBABILITY_CLIP,
    Objective,
    Tensors,
    evaluate,
    fit,
    macro_f1,
    pick_device,
    regression_metrics,
    roc_auc,
    seed_everything,
)


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


def _classes(seed: int, rows: int = 300) -> Tensors:
    """Three classes decided by the first number: separable."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 4, (rows, 2), generator=generator)
    numbers = torch.randn(rows, 3, generator=generator)
    labels = (numbers[:, 0] > -0.5).long() + (numbers[:, 0] > 0.5).long()
    return Tensors(codes, numbers, labels)


def _numbers(seed: int, rows: int = 300) -> Tensors:
    """A linear target on its own scale (mean 50, spread about 11)."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 4, (rows, 2), generator=generator)
    numbers = torch.randn(rows, 3, generator=generator)
    return Tensors(codes, numbers, 50 + 10 * numbers[:, 0] - 5 * numbers[:, 1])


def test_the_objective_follows_the_task() -> None:
    assert (Objective().loss_metric, Objective().quality_metric) == ("log_loss", "roc_auc")
    multiclass = Objective.from_task({"type": "multiclass", "classes": ["a", "b"]})
    assert (multiclass.loss_metric, multiclass.quality_metric) == ("log_loss", "accuracy")
    regression = Objective.from_task({"type": "regression", "mean": 50.0, "std": 10.0})
    assert (regression.mean, regression.std, regression.loss_metric, regression.quality_metric) == (
        50.0,
        10.0,
        "mse",
        "rmse",
    )
    assert METRICS["multiclass"] == ("log_loss", "accuracy", "macro_f1")
    with pytest.raises(ValueError, match="Unknown task type"):
        Objective.from_task({"type": "ranking"})


def test_a_multiclass_network_learns_separable_classes() -> None:
    seed_everything(0)
    objective = Objective("multiclass")
    model = serving.TabularMLP([3, 3], [2, 2], 3, [16], 0.0, outputs=3)
    seen: list[dict[str, float]] = []
    fitted, best = fit(
        model,
        _classes(1),
        _classes(2),
        epochs=8,
        lr=0.05,
        batch_size=64,
        patience=8,
        weight_decay=0.0,
        seed=0,
        objective=objective,
        on_epoch=lambda epoch, metrics: seen.append(metrics),
    )
    assert set(seen[0]) == {"train_loss", "log_loss", "accuracy", "macro_f1"}
    assert seen[best - 1]["log_loss"] == min(m["log_loss"] for m in seen)  # stopped on the log loss
    metrics = evaluate(fitted, _classes(3), objective=objective)
    assert metrics["accuracy"] > 0.85 and metrics["macro_f1"] > 0.8  # chance is about 1/3


def test_a_regression_network_learns_the_standardised_target_and_reports_on_its_scale() -> None:
    seed_everything(0)
    objective = Objective("regression", mean=50.0, std=11.0)
    model = serving.TabularMLP([3, 3], [2, 2], 3, [16], 0.0)
    seen: list[dict[str, float]] = []
    fitted, best = fit(
        model,
        _numbers(1),
        _numbers(2),
        epochs=8,
        lr=0.05,
        batch_size=64,
        patience=8,
        weight_decay=0.0,
        seed=0,
        objective=objective,
        on_epoch=lambda epoch, metrics: seen.append(metrics),
    )
    assert set(seen[0]) == {"train_loss", "mse", "rmse", "mae", "r2"}
    assert seen[best - 1]["mse"] == min(m["mse"] for m in seen)  # stopped on the mean squared error
    metrics = evaluate(fitted, _numbers(3), objective=objective)
    assert metrics["r2"] > 0.9 and metrics["rmse"] < 4  # predicting the mean: r2 0, rmse about 11
    assert metrics["rmse"] == pytest.approx(metrics["mse"] ** 0.5)


def test_multiclass_metrics_count_a_class_never_trained_on_against_the_model() -> None:
    from sklearn.metrics import f1_score

    class Fixed(torch.nn.Module):  # always 80% on class 0, 10% on each of 1 and 2
        def forward(self, codes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
            return torch.log(torch.tensor([[0.8, 0.1, 0.1]])).expand(len(codes), 3)

    # Classes 0..2 are known; -1 and -2 are two classes the model has no output for.
    truth = torch.tensor([0, 0, 1, 2, -1, -2])
    split = Tensors(torch.zeros(6, 0, dtype=torch.int64), torch.zeros(6, 0), truth)
    metrics = evaluate(Fixed(), split, objective=Objective("multiclass"))
    expected_loss = -(2 * np.log(0.8) + 2 * np.log(0.1) + 2 * np.log(PROBABILITY_CLIP)) / 6
    assert metrics["log_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(2 / 6)
    predicted = np.zeros(6, dtype=np.int64)
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth.numpy(), predicted, average="macro"))


def test_regression_metrics_match_their_definitions() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    truth, predicted = np.array([1.0, 2.0, 4.0, 7.0]), np.array([1.5, 2.0, 3.0, 8.0])
    metrics = regression_metrics(truth, predicted)
    assert metrics["mse"] == pytest.approx(mean_squared_error(truth, predicted))
    assert metrics["rmse"] == pytest.approx(mean_squared_error(truth, predicted) ** 0.5)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted))
    assert metrics["r2"] == pytest.approx(r2_score(truth, predicted))
    assert np.isnan(regression_metrics(np.ones(3), np.zeros(3))["r2"])
    assert macro_f1(np.array([0, 1, 1]), np.array([0, 1, 0])) == pytest.approx((2 / 3 + 2 / 3) / 2)
