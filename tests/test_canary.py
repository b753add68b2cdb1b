"""The canary strategy, its checks and the step verdicts (pure logic; MLflow state is tested in operators/)."""

from __future__ import annotations

import pytest

from mlops_provider.canary import CanaryStrategy, MetricCheck, judge_poll, step_verdict
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


def test_a_poll_fails_on_any_failed_check_and_lacks_data_only_on_required_ones() -> None:
    strategy = CanaryStrategy()  # the batch defaults; roc_auc is not required
    healthy = {"error_rate": (0.0, 0.0), "latency_p95_ms": (5.0, 5.0), "prediction_psi": (0.01, 0.0)}
    assert judge_poll(strategy, healthy)["status"] == "pass"  # no labels yet: judged on the rest
    assert judge_poll(strategy, healthy | {"roc_auc": (0.5, 0.8)})["status"] == "fail"
    assert judge_poll(strategy, {"error_rate": (None, None)})["status"] == "no_data"
    failing = judge_poll(strategy, healthy | {"error_rate": (0.3, 0.0)})
    assert failing["status"] == "fail"
    assert [c["metric"] for c in failing["checks"] if c["status"] == "fail"] == ["error_rate"]


def test_step_verdicts_follow_the_counts() -> None:
    strategy = CanaryStrategy(checks_per_step=3, failure_threshold=2, max_no_data=2)
    polls = [{"status": s} for s in ("pass", "fail", "pass")]
    assert step_verdict(strategy, polls) is None
    assert step_verdict(strategy, [*polls, {"status": "pass"}]) == "pass"
    assert step_verdict(strategy, [*polls, {"status": "fail"}]) == "fail"
    assert step_verdict(strategy, [{"status": "no_data"}] * 2) == "inconclusive"
