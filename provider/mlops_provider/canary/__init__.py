"""Canary rollouts, with no Airflow in them: the strategy, the analysis verdicts and the controller.

- :mod:`~mlops_provider.canary.strategy`: steps, polls and metric checks (:class:`CanaryStrategy`);
- :mod:`~mlops_provider.canary.analysis`: a poll's verdict from its values, a step's from its polls;
- :mod:`~mlops_provider.canary.controller`: start, step, promote and roll back, state kept in MLflow;
- :mod:`~mlops_provider.canary.backends`: where traffic is split (``batch``, ``kserve``).

The Airflow adapters (operators, sensor, trigger) build these with their hooks.
"""

from __future__ import annotations

from mlops_provider.canary.analysis import judge_poll, step_verdict
from mlops_provider.canary.controller import CanaryController
from mlops_provider.canary.strategy import DEFAULT_BATCH_CHECKS, CanaryStrategy, MetricCheck

__all__ = [
    "DEFAULT_BATCH_CHECKS",
    "CanaryController",
    "CanaryStrategy",
    "MetricCheck",
    "judge_poll",
    "step_verdict",
]
