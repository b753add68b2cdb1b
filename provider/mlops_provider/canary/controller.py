"""Canary rollouts: the strategy, the analysis verdicts, and the rollout state kept in MLflow.

One controller serves every backend (``batch``, ``kserve``). Its semantics follow Flagger and Argo
Rollouts:

- a rollout walks the strategy's ``steps`` (traffic weights in percent); after each step the analysis
  polls the metric checks every ``interval_seconds``; ``checks_per_step`` passing polls let it step up,
  ``failure_threshold`` failing polls roll it back, and polls without data make it inconclusive (rolled
  back too: nothing is promoted without evidence);
- after the last step passes, the canary is promoted: ``champion`` moves to it and the old champion is
  kept as ``previous``;
- with no champion yet, the first version is promoted at once (nothing to compare with).

State lives in MLflow only, so any task can be retried or the scheduler restarted mid-rollout: aliases
``champion``, ``canary`` (and ``previous``), and ``mlops.canary.*`` tags on the canary version (status,
step, weight, per-step verdicts, history). Steps are addressed by index, so re-running a step is a no-op,
never a double step.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from mlops_provider.constants import (
    CANARY,
    CANARY_TAG,
    CHAMPION,
    FAIL,
    INCONCLUSIVE,
    MAX_TAG_LENGTH,
    PASS,
    PREVIOUS,
    PROGRESSING,
    PROMOTED,
    ROLLED_BACK,
)
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.mlflow_client import alias_version

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_provider.canary.backends import CanaryBackend
    from mlops_provider.canary.strategy import CanaryStrategy


class CanaryController:
    """Start, step, promote and roll back one model's canary; all state is read from and kept in MLflow.

    :param client: an ``MlflowClient`` (from :class:`~mlops_provider.hooks.mlflow.MLflowHook`).
    :param name: registered model name.
    :param strategy: the rollout strategy.
    :param backend: where traffic is split; None for state-only calls.
    :param log: a logger for the decisions.
    """

    def __init__(
        self,
        client: MlflowClient,
        name: str,
        strategy: CanaryStrategy,
        backend: CanaryBackend | None = None,
        log: Any = None,
    ) -> None:
        self.client, self.name, self.strategy, self.backend = client, name, strategy, backend
        import logging

        self.log = log or logging.getLogger(__name__)

    # -- reading state ------------------------------------------------------------------------------
    def alias(self, alias: str) -> str | None:
        return alias_version(self.client, self.name, alias)

    def state(self, version: str | int) -> dict[str, Any]:
        """The rollout state of ``version``: status, step, weight, verdicts, history, reason."""
        tags = self.client.get_model_version(self.name, str(version)).tags or {}
        if tags.get(f"{CANARY_TAG}of") != str(version):  # state copied along with another version's tags
            tags = {}
        verdicts = {
            int(k.removeprefix(f"{CANARY_TAG}verdict.")): json.loads(v)
            for k, v in tags.items()
            if k.startswith(f"{CANARY_TAG}verdict.")
        }
        return {
            "name": self.name,
            "version": str(version),
            "status": tags.get(f"{CANARY_TAG}status"),
            "step": int(tags.get(f"{CANARY_TAG}step", -1)),
            "weight": int(tags.get(f"{CANARY_TAG}weight", 0)),
            "steps": json.loads(tags.get(f"{CANARY_TAG}steps", "null") or "null"),
            "verdicts": verdicts,
            "history": json.loads(tags.get(f"{CANARY_TAG}history", "[]")),
            "reason": tags.get(f"{CANARY_TAG}reason"),
        }

    def baseline(self, version: str | int) -> dict[str, float]:
        """Champion values from the newest analysed step that had them, metric by metric."""
        found: dict[str, float] = {}
        for _, verdict in sorted(self.state(version)["verdicts"].items()):
            for check in verdict.get("checks", []):
                if check.get("champion") is not None:
                    found[check["metric"]] = check["champion"]
        return found

    def split(self) -> dict[str, Any]:
        """Current traffic split: ``{"champion", "canary", "weight"}`` (canary None when no rollout runs)."""
        champion, canary = self.alias(CHAMPION), self.alias(CANARY)
        if canary is None or canary == champion:
            return {"champion": champion, "canary": None, "weight": 0}
        state = self.state(canary)
        if state["status"] != PROGRESSING or state["weight"] <= 0:
            return {"champion": champion, "canary": None, "weight": 0}
        return {"champion": champion, "canary": canary, "weight": state["weight"]}

    # -- writing state ------------------------------------------------------------------------------
    def _tag(self, version: str, **values: Any) -> None:
        stale = self.client.get_model_version(self.name, version).tags or {}
        if stale.get(f"{CANARY_TAG}of") != version:  # drop rollout state copied from another version
            for key in [k for k in stale if k.startswith(CANARY_TAG)]:
                self.client.delete_model_version_tag(self.name, version, key)
        values = {"of": version, **values}
        for key, value in values.items():
            text = value[:MAX_TAG_LENGTH] if isinstance(value, str) else json.dumps(value, sort_keys=True)
            if len(text) > MAX_TAG_LENGTH:  # cut JSON would not parse back
                raise ValueError(
                    f"Canary state {key!r} exceeds MLflow's {MAX_TAG_LENGTH}-character tag limit."
                )
            self.client.set_model_version_tag(self.name, version, f"{CANARY_TAG}{key}", text)

    def _record(self, version: str, action: str, message: str, **evidence: Any) -> dict[str, Any]:
        """Log a decision and append it to the version's history (oldest entries drop past the tag limit)."""
        state = self.state(version)
        entry = {
            "at": round(time.time(), 3),
            "action": action,
            "step": state["step"],
            "weight": state["weight"],
        }
        entry |= {"message": message} | evidence
        history = [*state["history"], entry]
        while len(json.dumps(history)) > MAX_TAG_LENGTH and len(history) > 1:
            history.pop(0)
        self._tag(version, history=history)
        self.log.info("Canary %r v%s: %s. %s", self.name, version, action.upper(), message)
        return entry

    # -- transitions --------------------------------------------------------------------------------
    def start(self, version: str | int) -> dict[str, Any]:
        """Make ``version`` the canary at weight 0, or promote it at once when there is no champion.

        Converges: a version already promoted, rolled back or progressing is returned as it is. A
        different version mid-rollout is rolled back as superseded (as Flagger restarts on a new revision).
        """
        version = str(version)
        state = self.state(version)
        if state["status"] in (PROMOTED, ROLLED_BACK):
            self.log.info("Canary %r v%s already %s; nothing to start.", self.name, version, state["status"])
            return state
        champion = self.alias(CHAMPION)
        if champion == version:
            self._tag(version, status=PROMOTED, weight=100)
            return self.state(version)
        if champion is None:
            self._tag(version, status=PROGRESSING, steps=list(self.strategy.steps))
            self.promote(version, reason="first model: no champion to compare with, promoted at once")
            return self.state(version)
        current = self.alias(CANARY)
        if current not in (None, version) and self.state(current)["status"] == PROGRESSING:
            self.rollback(current, reason=f"superseded by version {version}")
        if state["status"] != PROGRESSING:
            self._tag(version, status=PROGRESSING, step=-1, weight=0, steps=list(self.strategy.steps))
            self.client.set_registered_model_alias(self.name, CANARY, version)
            self._record(version, "start", f"canary against champion v{champion}", champion=champion)
        elif self.alias(CANARY) != version:
            self.client.set_registered_model_alias(self.name, CANARY, version)
        return self.state(version)

    def deploy_step(self, version: str | int, step: int) -> dict[str, Any]:
        """Move ``version`` to step ``step`` (0-based) once step ``step - 1`` passed; a no-op when there already."""
        version = str(version)
        state = self.state(version)
        if state["status"] != PROGRESSING:
            self.log.info(
                "Canary %r v%s is %s; step %d not deployed.", self.name, version, state["status"], step
            )
            return state
        steps = state["steps"] or list(self.strategy.steps)
        if not 0 <= step < len(steps):
            raise ConfigurationError(
                f"Canary step {step} is out of range: the strategy has {len(steps)} steps."
            )
        if state["step"] >= step:
            self.log.info(
                "Canary %r v%s is already at step %d (weight %d%%); not stepping again.",
                self.name,
                version,
                state["step"],
                state["weight"],
            )
            return state
        if state["step"] != step - 1:
            raise ConfigurationError(
                f"Canary {self.name!r} v{version} is at step {state['step']}; it cannot jump to step {step}."
            )
        if step > 0 and state["verdicts"].get(step - 1, {}).get("verdict") != PASS:
            raise ConfigurationError(
                f"Canary {self.name!r} v{version}: step {step - 1} has not passed its analysis "
                f"(verdict: {state['verdicts'].get(step - 1, {}).get('verdict')}); refusing to step up."
            )
        champion = self.alias(CHAMPION)
        if champion is None:  # start() found one; it was removed mid-rollout
            raise ConfigurationError(
                f"Canary {self.name!r} v{version}: the model has no {CHAMPION!r} alias any more, so there "
                "is nothing to split traffic with; set it again or roll the canary back."
            )
        weight = int(steps[step])
        evidence = self.backend.set_weight(self.name, champion, version, weight, step) if self.backend else {}
        self._tag(version, step=step, weight=weight)
        self._record(
            version, "step_up", f"weight {weight}% (step {step + 1} of {len(steps)})", backend=evidence
        )
        return self.state(version)

    def record_verdict(self, version: str | int, step: int, verdict: dict[str, Any]) -> dict[str, Any]:
        """Keep the analysis verdict of ``step``; the first verdict recorded for a step wins."""
        version = str(version)
        state = self.state(version)
        if step in state["verdicts"]:
            return state["verdicts"][step]
        self._tag(version, **{f"verdict.{step}": verdict})
        action = {PASS: "hold_passed", FAIL: "analysis_failed", INCONCLUSIVE: "analysis_inconclusive"}
        self._record(
            version,
            action.get(verdict["verdict"], verdict["verdict"]),
            verdict.get("message", ""),
            polls=verdict.get("polls", []),
            metrics={c["metric"]: c["canary"] for c in verdict.get("checks", [])},
        )
        return verdict

    def promote(self, version: str | int, reason: str = "every step passed its analysis") -> dict[str, Any]:
        """Canary -> champion; the old champion is kept as ``previous``. Re-running converges."""
        version = str(version)
        state = self.state(version)
        if state["status"] == PROMOTED:
            return state
        if state["status"] != PROGRESSING:
            raise ConfigurationError(
                f"Cannot promote {self.name!r} v{version}: its rollout is {state['status'] or 'not started'}."
            )
        champion = self.alias(CHAMPION)
        if self.backend:
            self.backend.promote(self.name, version)
        if champion not in (None, version):
            self.client.set_registered_model_alias(self.name, PREVIOUS, champion)
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        if self.alias(CANARY) == version:
            self.client.delete_registered_model_alias(self.name, CANARY)
        self._tag(version, status=PROMOTED, weight=100, reason=reason)
        was = f"v{champion}" if champion else "none"
        self._record(version, "promote", f"{reason}; champion {was} -> v{version}", previous=champion)
        return self.state(version)

    def rollback(self, version: str | int, reason: str) -> dict[str, Any]:
        """Remove the canary; the champion is untouched and the version is tagged with ``reason``."""
        version = str(version)
        state = self.state(version)
        if state["status"] == ROLLED_BACK:
            return state
        champion = self.alias(CHAMPION)
        if champion == version:
            raise ConfigurationError(
                f"{self.name!r} v{version} is the champion; a canary rollback cannot remove it "
                f"(move '{CHAMPION}' back to the '{PREVIOUS}' version instead)."
            )
        if self.backend:
            self.backend.rollback(self.name, champion, version)
        if self.alias(CANARY) == version:
            self.client.delete_registered_model_alias(self.name, CANARY)
        self._tag(version, status=ROLLED_BACK, weight=0, reason=reason)
        self._record(version, "rollback", f"{reason}; champion stays v{champion}", champion=champion)
        return self.state(version)
