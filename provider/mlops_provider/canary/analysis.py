"""Verdicts: one poll from its metric values, one step from its polls, and what they say to the user."""

from __future__ import annotations

from typing import Any

from mlops_provider.canary.strategy import DEFAULT_BATCH_CHECKS, CanaryStrategy
from mlops_provider.constants import CANARY, CHAMPION, FAIL, INCONCLUSIVE, NO_DATA, PASS

ERROR_RATE = "error_rate"  # the batch metric (query) of the share of rows that got no prediction


def judge_poll(
    strategy: CanaryStrategy,
    values: dict[str, tuple[float | None, float | None]],
    baseline: dict[str, float] | None = None,
    errors: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Judge one analysis poll from ``{metric name: (canary value, champion value)}``.

    A poll fails when any check fails; it has no data when a required check has none; else it passes.
    A check for some task types only (``MetricCheck.task_types``) that ``values`` leaves out judges
    another task's models and is skipped: the batch backend leaves out the checks of other tasks.
    ``baseline`` holds champion values from earlier steps, used when the champion got no traffic in
    this one (at weight 100). ``errors`` (``{"canary", "champion"}``: each variant's error summary, see
    :func:`mlops_provider.ml.scoring.error_summary`) is kept on the poll when there are any.
    """
    baseline = baseline or {}
    checks = []
    for m in strategy.metrics:
        if m.task_types and m.name not in values:  # for another task's models
            continue
        canary, champion = values.get(m.name, (None, None))
        if champion is None:
            champion = baseline.get(m.name)
        checks.append(m.evaluate(canary, champion))
    required = {m.name for m in strategy.metrics if m.required}
    if any(c["status"] == FAIL for c in checks):
        status = FAIL
    elif any(c["status"] == NO_DATA and c["metric"] in required for c in checks):
        status = NO_DATA
    else:
        status = PASS
    poll: dict[str, Any] = {"status": status, "checks": checks}
    if errors and any(errors.values()):
        poll["errors"] = {variant: errors.get(variant) for variant in (CANARY, CHAMPION)}
    return poll


def step_verdict(strategy: CanaryStrategy, polls: list[dict[str, Any]]) -> str | None:
    """Return ``pass``, ``fail`` or ``inconclusive`` once the polls decide the step, else None."""
    counts = {s: sum(p["status"] == s for p in polls) for s in (PASS, FAIL, NO_DATA)}
    if counts[FAIL] >= strategy.failure_threshold:
        return FAIL
    if counts[PASS] >= strategy.checks_per_step:
        return PASS
    if counts[NO_DATA] >= strategy.no_data_limit:
        return INCONCLUSIVE
    return None


def step_message(verdict: str, polls: list[dict[str, Any]]) -> str:
    """A step's verdict in words, from its deciding (last) poll: the checks that did not pass (all of
    them when the step passed) and the variants' error summaries, first when the step did not pass."""
    last = polls[-1] if polls else {}
    checks = last.get("checks", [])
    said = [c["message"] for c in checks if verdict == PASS or c["status"] != PASS]
    errors = [f"{variant} {summary}" for variant, summary in last.get("errors", {}).items() if summary]
    return "; ".join([*said, *errors] if verdict == PASS else [*errors, *said])


def error_rate_limit(strategy: CanaryStrategy) -> float:
    """The highest error rate a model may have: the bound of the strategy's absolute ``error_rate``
    check, else that of the default batch checks."""
    for checks in (strategy.metrics, DEFAULT_BATCH_CHECKS):
        for check in checks:
            if check.query == ERROR_RATE and check.compare == "absolute":
                return float(check.threshold)
    raise AssertionError("DEFAULT_BATCH_CHECKS has an absolute error_rate check")  # pragma: no cover


def champion_fails_too(strategy: CanaryStrategy, polls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Evidence that the champion failed as well, else None: from the first failing poll whose failing
    ``error_rate`` check saw the champion's error rate on the same traffic at or above the canary's
    limit (see :func:`error_rate_limit`): ``{"canary", "champion"}`` (the error rates), ``limit`` and
    ``errors`` (the poll's error summaries, ``{}`` when it has none).

    Then both models fail on the input: the pipeline is misconfigured (e.g. the traffic lacks a column
    the models take), and the canary must not be rolled back as if it were the bad model.
    """
    limit = error_rate_limit(strategy)
    names = {c.name for c in strategy.metrics if c.query == ERROR_RATE and c.compare == "absolute"}
    for poll in (p for p in polls if p.get("status") == FAIL):
        for check in poll.get("checks", []):
            champion = check.get("champion")
            if (
                check["metric"] in names
                and check["status"] == FAIL
                and champion is not None
                and champion >= limit
            ):
                return {
                    "canary": check["canary"],
                    "champion": champion,
                    "limit": limit,
                    "errors": poll.get("errors", {}),
                }
    return None
