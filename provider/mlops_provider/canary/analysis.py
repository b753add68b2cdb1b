"""Verdicts: one poll from its metric values, one step from its polls."""

from __future__ import annotations

from typing import Any

from mlops_provider.canary.strategy import CanaryStrategy
from mlops_provider.constants import FAIL, INCONCLUSIVE, NO_DATA, PASS


def judge_poll(
    strategy: CanaryStrategy,
    values: dict[str, tuple[float | None, float | None]],
    baseline: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Judge one analysis poll from ``{metric name: (canary value, champion value)}``.

    A poll fails when any check fails; it has no data when a required check has none; else it passes.
    ``baseline`` holds champion values from earlier steps, used when the champion got no traffic in
    this one (at weight 100).
    """
    baseline = baseline or {}
    checks = []
    for m in strategy.metrics:
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
    return {"status": status, "checks": checks}


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
