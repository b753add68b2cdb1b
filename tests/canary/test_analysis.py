"""Verdicts: a poll from its metric values (``judge_poll``), a step from its polls (``step_verdict``)."""

from __future__ import annotations

import pytest

from mlops_provider.canary.analysis import (
    champion_fails_too,
    error_rate_limit,
    judge_poll,
    step_message,
    step_verdict,
)
from mlops_provider.canary.strategy import CanaryStrategy, MetricCheck


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


def test_the_baseline_stands_in_for_a_champion_without_traffic() -> None:
    strategy = CanaryStrategy(metrics=(MetricCheck("p95", "latency_p95_ms", threshold=10.0),))
    # At weight 100 the champion serves nothing: the value from an earlier step is the reference.
    assert judge_poll(strategy, {"p95": (45.0, None)})["status"] == "no_data"
    passed = judge_poll(strategy, {"p95": (45.0, None)}, baseline={"p95": 40.0})
    assert passed["status"] == "pass" and passed["checks"][0]["champion"] == 40.0
    assert judge_poll(strategy, {"p95": (55.0, None)}, baseline={"p95": 40.0})["status"] == "fail"
    # A champion value measured in this poll wins over the baseline.
    assert judge_poll(strategy, {"p95": (45.0, 30.0)}, baseline={"p95": 40.0})["status"] == "fail"


def test_every_check_of_the_strategy_is_reported_in_order() -> None:
    strategy = CanaryStrategy()
    result = judge_poll(strategy, {})
    # The checks of some task types only (the quality checks) are left out of the values for other
    # tasks' models, and skipped; every other check is reported, with or without a value.
    assert [c["metric"] for c in result["checks"]] == [m.name for m in strategy.metrics if not m.task_types]
    assert {c["status"] for c in result["checks"]} == {"no_data"} and result["status"] == "no_data"


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        ([], None),
        (["fail"], None),
        (["fail", "fail"], "fail"),
        (["pass", "pass", "fail", "fail"], "fail"),  # failures are counted before passes
        (["no_data"] * 5, None),
        (["no_data"] * 6, "inconclusive"),  # default limit: 2 * checks_per_step
        (["pass", "pass", "pass"], "pass"),
    ],
)
def test_default_step_verdicts(statuses, verdict) -> None:
    strategy = CanaryStrategy()  # checks_per_step 3, failure_threshold 2
    assert step_verdict(strategy, [{"status": s} for s in statuses]) == verdict


HEALTHY = {
    "error_rate": (0.0, 0.0),
    "latency_p95_ms": (5.0, 5.0),
    "prediction_psi": (0.01, 0.0),
    "roc_auc": (None, None),  # a binary model's values, before its labels land
}
MISSING = "56 error(s): MlflowException x56; first: MlflowException: Model is missing inputs ['tenure_days']"


def test_a_polls_error_summaries_lead_a_failing_steps_message_and_trail_a_passing_one() -> None:
    strategy = CanaryStrategy()
    assert "errors" not in judge_poll(strategy, HEALTHY, errors={"canary": None, "champion": None})
    failing = judge_poll(strategy, HEALTHY | {"error_rate": (1.0, 0.0)}, errors={"canary": MISSING})
    assert failing["errors"] == {"canary": MISSING, "champion": None}
    message = f"canary {MISSING}; error_rate: canary 1 not <= 0.01; roc_auc: no data for the canary yet"
    assert step_message("fail", [failing]) == message
    few = judge_poll(strategy, HEALTHY | {"error_rate": (0.005, 0.0)}, errors={"canary": "1 error(s): E x1"})
    assert step_message("pass", [few]).endswith("; canary 1 error(s): E x1")
    assert step_message("inconclusive", []) == ""


def test_the_champion_failing_too_is_told_apart_from_a_bad_canary() -> None:
    strategy = CanaryStrategy()
    assert error_rate_limit(strategy) == 0.01
    both = judge_poll(
        strategy, HEALTHY | {"error_rate": (1.0, 0.01)}, errors={"canary": MISSING, "champion": "x"}
    )
    canary_only = judge_poll(strategy, HEALTHY | {"error_rate": (1.0, 0.009)})
    assert champion_fails_too(strategy, [canary_only]) is None  # the champion is below the limit
    assert champion_fails_too(strategy, [canary_only, both]) == {
        "canary": 1.0,
        "champion": 0.01,  # at the limit counts
        "limit": 0.01,
        "errors": {"canary": MISSING, "champion": "x"},
    }
    # Without an error-rate check there is nothing to tell them apart by; the limit falls back to the default.
    latency = CanaryStrategy(metrics=(MetricCheck("latency_p95_ms", "latency_p95_ms", threshold=1.0),))
    assert error_rate_limit(latency) == 0.01
    slow = judge_poll(latency, {"latency_p95_ms": (50.0, 5.0)})
    assert champion_fails_too(latency, [slow]) is None
