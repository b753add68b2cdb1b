"""The canary strategy and its metric checks: validation, JSON round trip, and how one check judges values."""

from __future__ import annotations

import pytest

from mlops_provider.canary.strategy import DEFAULT_BATCH_CHECKS, CanaryStrategy, MetricCheck
from mlops_provider.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": [5, 150]}, "between 1 and 100"),
        ({"steps": [0, 50]}, "between 1 and 100"),
        ({"steps": [50, 25]}, "strictly increasing"),
        ({"steps": []}, "steps is empty"),
        ({"steps": [5.5]}, "whole percent"),
        ({"interval_seconds": 0}, "interval_seconds must be above 0"),
        ({"interval_seconds": -3}, "interval_seconds must be above 0"),
        ({"checks_per_step": 0}, "checks_per_step"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"metrics": []}, "no metric checks"),
        ({"stepz": [5]}, "unknown key(s) ['stepz']"),
        ({"metrics": [{"name": "x", "query": "error_rate", "direction": "up"}]}, "direction must be"),
        ({"metrics": [{"name": "x", "query": "error_rate", "compare": "baseline"}]}, "compare must be"),
        ({"metrics": [{"name": "x", "query": "q", "threshold": -1}]}, "cannot be negative"),
        ({"metrics": [{"name": "x", "query": "q", "treshold": 1}]}, "unknown key(s) ['treshold']"),
        ({"metrics": [{"name": "x", "query": "q"}, {"name": "x", "query": "r"}]}, "names repeat"),
        ({"min_samples": 0}, "min_samples must be a whole number >= 1"),
        ({"min_samples": 50.5}, "min_samples must be a whole number >= 1"),
        ({"min_samples": True}, "min_samples must be a whole number >= 1"),
        ({"min_positives": 0}, "min_positives must be a whole number >= 1"),
        ({"min_samples": 20, "min_positives": 30}, "min_positives (30) cannot exceed min_samples (20)"),
        ({"max_no_data": True}, "max_no_data must be >= 1"),
        (
            {"metrics": [{"name": "x", "query": "rmse", "compare": "absolute", "relative": True}]},
            "relative applies to compare 'champion'",
        ),
        (
            {"metrics": [{"name": "x", "query": "q", "task_types": ["ordinal"]}]},
            "unknown task type(s) ['ordinal']",
        ),
    ],
)
def test_nonsense_strategies_are_refused_by_name(data, message) -> None:
    with pytest.raises(
        ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        CanaryStrategy.from_dict(data)


def test_strategy_round_trips_through_json() -> None:
    strategy = CanaryStrategy.from_dict({"steps": [10, 100], "interval_seconds": 2.5, "checks_per_step": 2})
    assert CanaryStrategy.from_dict(strategy.to_dict()) == strategy
    assert strategy.no_data_limit == 4


@pytest.mark.parametrize(
    ("check", "canary", "champion", "status"),
    [
        (MetricCheck("err", "error_rate", compare="absolute", threshold=0.01), 0.005, None, "pass"),
        (MetricCheck("err", "error_rate", compare="absolute", threshold=0.01), 0.2, None, "fail"),
        (MetricCheck("auc", "roc_auc", threshold=0.02, direction="higher"), 0.70, 0.71, "pass"),
        (MetricCheck("auc", "roc_auc", threshold=0.02, direction="higher"), 0.60, 0.71, "fail"),
        (MetricCheck("p95", "latency_p95_ms", threshold=50), 80.0, 40.0, "pass"),
        (MetricCheck("p95", "latency_p95_ms", threshold=50), 95.0, 40.0, "fail"),
        (MetricCheck("auc", "roc_auc", threshold=0.02, direction="higher"), None, 0.71, "no_data"),
        (MetricCheck("auc", "roc_auc", threshold=0.02, direction="higher"), 0.7, None, "no_data"),
    ],
)
def test_metric_checks_compare_against_the_champion_or_a_bound(check, canary, champion, status) -> None:
    result = check.evaluate(canary, champion)
    assert result["status"] == status
    assert result["metric"] == check.name and check.name in result["message"]


def test_limits_are_exact_at_the_threshold_and_nan_is_no_data() -> None:
    latency = MetricCheck("p95", "latency_p95_ms", threshold=50)
    at_limit = latency.evaluate(90.0, 40.0)
    assert at_limit["status"] == "pass" and at_limit["limit"] == 90.0
    assert "canary 90 <= 90 (champion 40)" in at_limit["message"]
    assert latency.evaluate(float("nan"), 40.0)["status"] == "no_data"
    bound = MetricCheck("err", "error_rate", compare="absolute", threshold=0.01)
    assert bound.evaluate(0.02, 0.0) | {"message": ""} == {
        "metric": "err",
        "canary": 0.02,
        "champion": 0.0,
        "limit": 0.01,
        "status": "fail",
        "message": "",
    }
    assert "not <=" in bound.evaluate(0.02, None)["message"]


def test_a_metric_check_needs_a_name_a_query_and_a_finite_threshold() -> None:
    with pytest.raises(ConfigurationError, match="needs a name and a query"):
        MetricCheck("", "error_rate")
    with pytest.raises(ConfigurationError, match="threshold must be a finite number"):
        MetricCheck("err", "error_rate", compare="absolute", threshold=float("inf"))
    # An absolute bound may be negative (e.g. a minimum margin); only a degradation cannot.
    assert MetricCheck("m", "q", compare="absolute", threshold=-1.0).threshold == -1.0


def test_defaults_are_the_batch_checks_and_max_no_data_overrides_the_limit() -> None:
    strategy = CanaryStrategy()
    assert strategy.steps == (5, 25, 50, 100) and strategy.metrics == DEFAULT_BATCH_CHECKS
    assert strategy.no_data_limit == 2 * strategy.checks_per_step
    assert CanaryStrategy(max_no_data=1).no_data_limit == 1
    assert {c.name: (c.required, c.task_types) for c in DEFAULT_BATCH_CHECKS} == {
        "error_rate": (True, ()),
        "latency_p95_ms": (True, ()),
        "prediction_psi": (False, ()),
        # Quality once labels land, each task on its own metric.
        "roc_auc": (False, ("binary",)),
        "macro_f1": (False, ("multiclass",)),
        "rmse": (False, ("regression",)),
    }
    # Lists from JSON become tuples, so equal strategies compare equal and hash.
    parsed = CanaryStrategy.from_dict({"steps": [5, 25, 50, 100]})
    assert parsed == strategy and hash(parsed) == hash(strategy)
    assert CanaryStrategy.from_dict(None) == strategy


@pytest.mark.parametrize("steps", [[True], ["5"], [5, 5]])
def test_step_weights_must_be_distinct_whole_numbers(steps) -> None:
    with pytest.raises(ConfigurationError, match="Canary strategy: step"):
        CanaryStrategy.from_dict({"steps": steps})


def test_min_samples_defaults_to_200_labelled_rows_and_round_trips() -> None:
    from mlops_provider.ml import scoring

    default = CanaryStrategy()
    assert (default.min_samples, default.min_positives) == (200, 10)
    assert (default.min_samples, default.min_positives) == (scoring.MIN_SAMPLES, scoring.MIN_POSITIVES)
    small = CanaryStrategy.from_dict({"min_samples": 40, "min_positives": 5})
    assert (small.min_samples, small.min_positives) == (40, 5)
    assert CanaryStrategy.from_dict(small.to_dict()) == small


@pytest.mark.parametrize(
    ("checks", "failures", "no_data", "expected"),
    [(3, 2, None, 9), (2, 1, None, 5), (1, 1, 1, 1), (2, 3, 2, 5)],
)
def test_max_polls_is_the_most_polls_a_step_can_take(checks, failures, no_data, expected) -> None:
    """Every sequence of poll results is decided by step_verdict within max_polls polls, and some
    sequence needs all of them: the batch backend's one slice per poll never runs out."""
    import itertools

    from mlops_provider.canary import step_verdict

    strategy = CanaryStrategy(checks_per_step=checks, failure_threshold=failures, max_no_data=no_data)
    assert strategy.max_polls == expected
    longest = 0
    for results in itertools.product(("pass", "fail", "no_data"), repeat=expected):
        polls = []
        for status in results:
            polls.append({"status": status})
            if step_verdict(strategy, polls) is not None:
                break
        assert step_verdict(strategy, polls) is not None, results
        longest = max(longest, len(polls))
    assert longest == expected


def test_a_relative_check_allows_a_share_of_the_champions_value() -> None:
    rmse = MetricCheck("rmse", "rmse", threshold=0.05, relative=True)  # lower is better
    at_limit = rmse.evaluate(10.5, 10.0)
    assert at_limit["status"] == "pass" and at_limit["limit"] == pytest.approx(10.5)
    assert "canary 10.5 <= 10.5 (champion 10, 0.05 of it)" in at_limit["message"]
    assert rmse.evaluate(10.6, 10.0)["status"] == "fail"
    r2 = MetricCheck("r2", "r2", threshold=0.1, relative=True, direction="higher")
    assert r2.evaluate(-0.55, -0.5)["limit"] == pytest.approx(-0.55)  # a share of its size, either sign
    assert MetricCheck("rmse", "rmse", threshold=0.05).evaluate(10.6, 10.0)["status"] == "fail"  # +0.05


def test_task_types_round_trip_through_json_and_say_which_models_a_check_judges() -> None:
    strategy = CanaryStrategy.from_dict(
        {"metrics": [{"name": "mae", "query": "mae", "relative": True, "task_types": ["regression"]}]}
    )
    [mae] = strategy.metrics
    assert mae.task_types == ("regression",) and mae.relative
    assert CanaryStrategy.from_dict(strategy.to_dict()) == strategy and hash(strategy)
    assert mae.applies_to("regression") and not mae.applies_to("binary")
    assert MetricCheck("err", "error_rate", task_types="binary").task_types == ("binary",)
    assert all(MetricCheck("err", "error_rate").applies_to(task) for task in ("binary", "regression"))


@pytest.mark.parametrize(
    ("task", "quality", "values", "status"),
    [
        ("binary", "roc_auc", (0.80, 0.81), "pass"),
        ("binary", "roc_auc", (0.70, 0.81), "fail"),
        ("multiclass", "macro_f1", (0.60, 0.61), "pass"),
        ("multiclass", "macro_f1", (0.50, 0.61), "fail"),
        ("regression", "rmse", (4.1, 4.0), "pass"),
        ("regression", "rmse", (4.5, 4.0), "fail"),
        ("regression", "rmse", (None, None), "pass"),  # labels not landed: judged on health and shift
    ],
)
def test_the_default_checks_judge_each_task_on_its_own_quality_metric(task, quality, values, status) -> None:
    """What the batch backend hands the analysis for a model of ``task``: the checks of its task only
    (see BatchCanaryBackend.values); the quality checks of other tasks are skipped, not ``no_data``."""
    from mlops_provider.canary import judge_poll

    strategy = CanaryStrategy()
    health = {"error_rate": (0.0, 0.0), "latency_p95_ms": (12.0, 11.0), "prediction_psi": (0.01, 0.0)}
    given = health | {quality: values}
    assert list(given) == [c.name for c in strategy.checks_for(task)]

    poll = judge_poll(strategy, given)

    assert poll["status"] == status
    assert [c["metric"] for c in poll["checks"]] == [*health, quality]
