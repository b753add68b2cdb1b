"""Poll a canary's metrics every interval in the triggerer until the step's analysis is decided."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlops_provider.hooks.mlflow import MLflowHook

if TYPE_CHECKING:
    from mlops_provider.canary import CanaryStrategy


def analyse_once(
    backend: str,
    backend_config: dict[str, Any],
    strategy: CanaryStrategy,
    hook: MLflowHook,
    name: str,
    version: str,
    step: int,
    baseline: dict[str, float] | None = None,
    *,
    poll: int,
) -> dict[str, Any]:
    """Poll ``poll`` (0-based) of the step: fetch ``{metric: (canary, champion)}`` and judge it; on the
    batch backend the poll also keeps each variant's error summary (``errors``) when there are errors.

    Each poll judges new traffic: on the batch backend, its own slice of the step's log.
    """
    from mlops_provider.canary import judge_poll
    from mlops_provider.utils.canary import fetch_errors, fetch_values

    values = fetch_values(backend, backend_config, hook, name, version, step, strategy, poll=poll)
    errors = fetch_errors(backend, backend_config, hook, name, version, step, strategy, poll=poll)
    return judge_poll(strategy, values, baseline, errors)


class CanaryAnalysisTrigger(BaseTrigger):
    """Yield the verdict of one rollout step: ``pass``, ``fail`` or ``inconclusive``, with the evidence.

    Arguments are plain JSON and hold connection ids, never credentials. A triggerer restart starts
    the step's polls again from the first (a fresh decision: no poll counts twice); the step itself is
    not repeated (its weight is already deployed).

    :param name: registered model name.
    :param version: the canary version.
    :param step: the strategy step (0-based) being analysed.
    :param backend: ``batch`` or ``kserve``.
    :param backend_config: the backend's JSON config.
    :param strategy: the strategy as a dict.
    :param conn_id: the MLflow connection id.
    :param baseline: champion values from earlier steps, for a step where the champion gets no traffic.
    """

    def __init__(
        self,
        name: str,
        version: str,
        step: int,
        backend: str,
        backend_config: dict[str, Any],
        strategy: dict[str, Any],
        conn_id: str = MLflowHook.default_conn_name,
        baseline: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.baseline = baseline or {}
        self.name, self.version, self.step = name, str(version), int(step)
        self.backend, self.backend_config, self.strategy = backend, backend_config, strategy
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "version": self.version,
                "step": self.step,
                "backend": self.backend,
                "backend_config": self.backend_config,
                "strategy": self.strategy,
                "conn_id": self.conn_id,
                "baseline": self.baseline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from mlops_provider.canary import CanaryStrategy, step_verdict

        base = {"name": self.name, "version": self.version, "step": self.step}
        try:  # the strategy crosses the trigger boundary as JSON: parsed once here, not per poll
            strategy = CanaryStrategy.from_dict(self.strategy)
            hook = MLflowHook(self.conn_id)
            polls: list[dict[str, Any]] = []
            while True:
                poll = await asyncio.to_thread(
                    analyse_once,
                    self.backend,
                    self.backend_config,
                    strategy,
                    hook,
                    self.name,
                    self.version,
                    self.step,
                    self.baseline,
                    poll=len(polls),
                )
                polls.append(poll)
                self.log.info(
                    "Canary %s v%s step %d poll %d: %s.",
                    self.name,
                    self.version,
                    self.step,
                    len(polls),
                    poll["status"],
                )
                verdict = step_verdict(strategy, polls)
                if verdict is not None:
                    yield TriggerEvent({**base, "status": "decided", "verdict": verdict, "polls": polls})
                    return
                await asyncio.sleep(strategy.interval_seconds)
        except Exception as err:
            yield TriggerEvent({**base, "status": "error", "message": f"{type(err).__name__}: {err}"})
