"""Analyse one step of a canary rollout: poll its metrics every interval until they decide the step."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf

from mlops_provider.constants import REFUSED
from mlops_provider.utils.canary import CANARY_FIELDS, CanaryTask, as_dict

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_provider.canary import CanaryController


class CanaryAnalysisSensor(CanaryTask):
    """Decide step ``step`` of a rollout: ``pass``, ``fail`` or ``inconclusive``, with the evidence.

    Every ``strategy.interval_seconds`` the backend's metrics are fetched and each check judged (see
    :func:`mlops_provider.canary.judge_poll`); ``checks_per_step`` passing polls pass the step,
    ``failure_threshold`` failing polls fail it, and too many polls without data make it inconclusive.
    The verdict is recorded on the version in MLflow: a retried or resumed task returns it without
    polling again. The task succeeds whatever the verdict; branch on ``verdict``. The verdict's message
    names the checks that failed and, on the batch backend, each variant's errors (count per exception
    class and the first error's cause).

    One failure is not the canary's: when the champion fails as well (its error rate on the same
    step's traffic at or above the canary's ``error_rate`` limit), the input is at fault (e.g. the
    traffic lacks a column both models take). Then no verdict is recorded and nothing is rolled back:
    the rollout is stopped as ``refused`` with both error summaries in its history, and the task fails
    with a ``ConfigurationError``; fix the pipeline, then start the rollout again.

    :param step: the step (0-based) to analyse; it must be deployed.
    :param deferrable: poll in the triggerer instead of holding a worker slot.
    :return: ``{"verdict", "step", "weight", "message", "polls": [each poll's status], "checks": [the
        deciding poll's checks: metric, status, canary, champion, limit, message]}``.
    """

    template_fields = (*CANARY_FIELDS, "step")

    def __init__(
        self,
        *,
        step: int | str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.deferrable = deferrable

    def execute(self, context: Context) -> dict[str, Any] | None:
        from mlops_provider.canary import step_verdict

        step = int(self.step)
        with self.hook.session() as client:
            controller = self.controller(client, with_backend=False)
            version = self.resolved_version(controller)
            state = controller.state(version)
            baseline = controller.baseline(version)
        done = self._already_decided(state, step)
        if done is not None:
            return done
        if self.deferrable:
            from mlops_provider.triggers.canary import CanaryAnalysisTrigger

            self.defer(
                trigger=CanaryAnalysisTrigger(
                    name=self.name,
                    version=version,
                    step=step,
                    backend=self.backend,
                    backend_config=as_dict(self.backend_config, "backend_config"),
                    strategy=self.parsed_strategy().to_dict(),
                    conn_id=self.mlflow_conn_id,
                    baseline=baseline,
                ),
                method_name="execute_complete",
            )
        from mlops_provider.triggers.canary import analyse_once

        strategy = self.parsed_strategy()
        polls: list[dict[str, Any]] = []
        while (verdict := step_verdict(strategy, polls)) is None:
            if polls:
                time.sleep(strategy.interval_seconds)
            polls.append(
                analyse_once(
                    self.backend,
                    as_dict(self.backend_config, "backend_config"),
                    strategy,
                    self.hook,
                    self.name,
                    version,
                    step,
                    baseline,
                    poll=len(polls),  # each poll judges new traffic (batch: its own slice)
                )
            )
            self.log.info("Poll %d of step %d: %s.", len(polls), step + 1, polls[-1]["status"])
        return self._record(version, step, verdict, polls)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        version = str(event["version"])
        if event.get("status") != "decided":
            raise RuntimeError(
                f"Canary analysis of {self.name!r} v{version} step {int(self.step) + 1} failed: "
                f"{event.get('message')}. Retrying the task resumes the analysis."
            )
        return self._record(version, int(self.step), event["verdict"], event["polls"])

    def _already_decided(self, state: dict[str, Any], step: int) -> dict[str, Any] | None:
        if state["status"] in (None, REFUSED):
            from mlops_provider.exceptions import ConfigurationError

            if state["status"] == REFUSED:  # at its start, or stopped mid-rollout (the champion changed)
                raise ConfigurationError(
                    f"{self.name!r} v{state['version']} has no rollout in progress, it was refused: "
                    f"{state['reason']}."
                )
            raise ConfigurationError(
                f"{self.name!r} v{state['version']} has no rollout; deploy a step first."
            )
        if step in state["verdicts"]:
            self.log.info(
                "Step %d of v%s was already analysed: %s.",
                step + 1,
                state["version"],
                state["verdicts"][step]["verdict"],
            )
            return state["verdicts"][step]
        if state["status"] != "progressing":  # promoted at once (first model) or rolled back meanwhile
            verdict = "pass" if state["status"] == "promoted" else "fail"
            return {
                "verdict": verdict,
                "step": step,
                "weight": state["weight"],
                "polls": [],
                "message": f"rollout already {state['status']}: {state['reason']}",
            }
        if state["step"] < step:
            from mlops_provider.exceptions import ConfigurationError

            raise ConfigurationError(
                f"Step {step + 1} of {self.name!r} v{state['version']} is not deployed (rollout at step "
                f"{state['step'] + 1}); deploy it before analysing."
            )
        return None

    def _record(self, version: str, step: int, verdict: str, polls: list[dict[str, Any]]) -> dict[str, Any]:
        from mlops_provider.canary.analysis import champion_fails_too, step_message

        last = polls[-1]["checks"] if polls else []
        message = step_message(verdict, polls)
        both = champion_fails_too(self.parsed_strategy(), polls) if verdict == "fail" else None
        if both is not None:
            self._refuse_misconfigured(version, step, both)
        with self.hook.session() as client:
            controller: CanaryController = self.controller(client, with_backend=False)
            weight = controller.state(version)["weight"]
            # Compact, to fit an MLflow tag: every poll's status, and the checks of the deciding poll.
            result = {
                "verdict": verdict,
                "step": step,
                "weight": weight,
                "message": message[:1000],
                "polls": [p["status"] for p in polls],
                "checks": last,
            }
            recorded = controller.record_verdict(version, step, result)
        self.log.info(
            "Step %d (weight %d%%) of %r v%s: %s. %s",
            step + 1,
            weight,
            self.name,
            version,
            recorded["verdict"].upper(),
            recorded.get("message", ""),
        )
        return recorded

    def _refuse_misconfigured(self, version: str, step: int, both: dict[str, Any]) -> None:
        """Stop the rollout as ``refused``, the champion having failed as well (``both``: the evidence of
        :func:`~mlops_provider.canary.analysis.champion_fails_too`); raise."""
        from mlops_provider.exceptions import ConfigurationError

        errors = both["errors"]
        reason = (
            f"the champion fails as well (error rate {both['champion']:.3g}, canary {both['canary']:.3g}, "
            f"limit {both['limit']:.3g}, on the same traffic of step {step + 1}), so the pipeline is "
            f"misconfigured, not the canary: canary {errors.get('canary') or 'no errors'}; champion "
            f"{errors.get('champion') or 'no errors'}. The traffic does not fit the models (e.g. it has "
            "columns they do not take, or lacks one they need): fix the traffic or backend_config, then "
            "start the rollout again"
        )
        with self.hook.session() as client:
            self.controller(client).refuse(version, reason, errors=errors)
        raise ConfigurationError(
            f"Canary analysis of {self.name!r} v{version} step {step + 1}: {reason}. The canary was not "
            "rolled back: its rollout was stopped (refused)."
        )
