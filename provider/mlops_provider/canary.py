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

import dataclasses
import json
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

from mlops_provider.exceptions import ConfigurationError

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION, CANARY, PREVIOUS = "champion", "canary", "previous"
PROGRESSING, PROMOTED, ROLLED_BACK = "progressing", "promoted", "rolled_back"
PASS, FAIL, NO_DATA, INCONCLUSIVE = "pass", "fail", "no_data", "inconclusive"
TAG = "mlops.canary."
_MAX_TAG = 5000


@dataclasses.dataclass(frozen=True)
class MetricCheck:
    """One metric the analysis compares, canary against champion or against a fixed bound.

    :param name: the metric's label in logs and evidence.
    :param query: where the value comes from. ``batch``: a metric of the prediction log (see
        :data:`mlops_provider.scoring.BATCH_METRICS`); ``kserve``: a PromQL expression with a
        ``{revision}`` placeholder, evaluated once per variant.
    :param compare: ``champion`` (the canary may be worse than the champion by at most ``threshold``)
        or ``absolute`` (the canary's value must stay within ``threshold``).
    :param threshold: the allowed degradation (``champion``) or the bound (``absolute``).
    :param direction: ``lower`` or ``higher``: which way is better.
    :param required: when False, a poll without data for this metric (labels not landed yet) is judged
        on the other metrics; when True, it makes the poll ``no_data``.
    """

    name: str
    query: str
    compare: str = "champion"
    threshold: float = 0.0
    direction: str = "lower"
    required: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.query:
            raise ConfigurationError(f"Metric check {self!r} needs a name and a query.")
        if self.compare not in ("champion", "absolute"):
            raise ConfigurationError(
                f"Metric check {self.name!r}: compare must be 'champion' or 'absolute', not {self.compare!r}."
            )
        if self.direction not in ("lower", "higher"):
            raise ConfigurationError(
                f"Metric check {self.name!r}: direction must be 'lower' or 'higher' (which way is better), "
                f"not {self.direction!r}."
            )
        if not isinstance(self.threshold, int | float) or not math.isfinite(self.threshold):
            raise ConfigurationError(f"Metric check {self.name!r}: threshold must be a finite number.")
        if self.compare == "champion" and self.threshold < 0:
            raise ConfigurationError(
                f"Metric check {self.name!r}: the allowed degradation vs the champion cannot be negative."
            )

    def evaluate(self, canary: float | None, champion: float | None) -> dict[str, Any]:
        """Judge one poll's values: ``{"metric", "status", "canary", "champion", "limit", "message"}``."""
        result: dict[str, Any] = {"metric": self.name, "canary": canary, "champion": champion, "limit": None}
        missing = canary is None or (self.compare == "champion" and champion is None)
        if missing or (isinstance(canary, float) and math.isnan(canary)):
            which = "canary" if canary is None else "champion"
            return result | {"status": NO_DATA, "message": f"{self.name}: no data for the {which} yet"}
        lower = self.direction == "lower"
        if self.compare == "absolute":
            limit = self.threshold
        else:
            limit = champion + self.threshold if lower else champion - self.threshold
        ok = canary <= limit if lower else canary >= limit
        sign = "<=" if lower else ">="
        basis = "" if self.compare == "absolute" else f" (champion {champion:.4g})"
        status = PASS if ok else FAIL
        message = f"{self.name}: canary {canary:.4g} {'' if ok else 'not '}{sign} {limit:.4g}{basis}"
        return result | {"status": status, "limit": limit, "message": message}


# Defaults for the batch backend: health, prediction shift vs the champion, quality once labels land.
DEFAULT_BATCH_CHECKS = (
    MetricCheck("error_rate", "error_rate", compare="absolute", threshold=0.01, direction="lower"),
    MetricCheck("latency_p95_ms", "latency_p95_ms", compare="champion", threshold=50.0, direction="lower"),
    # Not required: at weight 100 the champion scores nothing to compare the distribution with.
    MetricCheck(
        "prediction_psi",
        "prediction_psi",
        compare="absolute",
        threshold=0.25,
        direction="lower",
        required=False,
    ),
    MetricCheck("roc_auc", "roc_auc", compare="champion", threshold=0.02, direction="higher", required=False),
)


@dataclasses.dataclass(frozen=True)
class CanaryStrategy:
    """How a rollout proceeds.

    :param steps: canary traffic weights in percent, strictly increasing, each in 1..100.
    :param interval_seconds: time between analysis polls.
    :param checks_per_step: passing polls needed to leave a step.
    :param failure_threshold: failing polls that trigger a rollback.
    :param max_no_data: polls without data after which a step is inconclusive (default
        ``2 * checks_per_step``).
    :param metrics: the metric checks.
    """

    steps: tuple[int, ...] = (5, 25, 50, 100)
    interval_seconds: float = 60.0
    checks_per_step: int = 3
    failure_threshold: int = 2
    max_no_data: int | None = None
    metrics: tuple[MetricCheck, ...] = DEFAULT_BATCH_CHECKS

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not steps:
            raise ConfigurationError(
                "Canary strategy: steps is empty; give traffic weights such as [5, 25, 50]."
            )
        for weight in steps:
            if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
                raise ConfigurationError(
                    f"Canary strategy: step weight {weight!r} must be a whole percent between 1 and 100."
                )
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ConfigurationError(f"Canary strategy: steps {list(steps)} must be strictly increasing.")
        if not isinstance(self.interval_seconds, int | float) or not self.interval_seconds > 0:
            raise ConfigurationError(
                f"Canary strategy: interval_seconds must be above 0, not {self.interval_seconds!r}."
            )
        for field in ("checks_per_step", "failure_threshold"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"Canary strategy: {field} must be a whole number >= 1, not {value!r}."
                )
        if self.max_no_data is not None and (not isinstance(self.max_no_data, int) or self.max_no_data < 1):
            raise ConfigurationError(f"Canary strategy: max_no_data must be >= 1, not {self.max_no_data!r}.")
        if not self.metrics:
            raise ConfigurationError(
                "Canary strategy: no metric checks; a rollout needs evidence to promote."
            )
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"Canary strategy: metric check names repeat: {names}.")
        object.__setattr__(self, "steps", steps)

    @property
    def no_data_limit(self) -> int:
        return self.max_no_data or 2 * self.checks_per_step

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CanaryStrategy:
        """Build from plain data (a DAG param, JSON); unknown keys are refused by name."""
        data = dict(data or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigurationError(f"Canary strategy: unknown key(s) {unknown}; known: {sorted(fields)}.")
        if "metrics" in data:
            metrics = []
            check_fields = {f.name for f in dataclasses.fields(MetricCheck)}
            for raw in data["metrics"] or []:
                bad = sorted(set(raw) - check_fields) if isinstance(raw, dict) else ["<not an object>"]
                if bad:
                    raise ConfigurationError(
                        f"Canary strategy: metric check {raw!r} has unknown key(s) {bad}; "
                        f"known: {sorted(check_fields)}."
                    )
                metrics.append(MetricCheck(**raw))
            data["metrics"] = tuple(metrics)
        if "steps" in data:
            data["steps"] = tuple(data["steps"] or ())
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


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


class CanaryBackend(Protocol):
    """Where traffic is split. The controller calls these; every call must be idempotent."""

    def set_weight(self, name: str, champion: str, canary: str, weight: int, step: int) -> dict[str, Any]:
        """Send ``weight`` percent of traffic to ``canary``; return evidence for the history."""

    def promote(self, name: str, canary: str) -> None:
        """Serve ``canary`` to all traffic, with no split left."""

    def rollback(self, name: str, champion: str | None, canary: str) -> None:
        """Send no traffic to ``canary``; serve ``champion`` alone."""


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
        from mlops_provider.hooks.mlflow import alias_version

        return alias_version(self.client, self.name, alias)

    def state(self, version: str | int) -> dict[str, Any]:
        """The rollout state of ``version``: status, step, weight, verdicts, history, reason."""
        tags = self.client.get_model_version(self.name, str(version)).tags or {}
        if tags.get(f"{TAG}of") != str(version):  # state copied along with another version's tags
            tags = {}
        verdicts = {
            int(k.removeprefix(f"{TAG}verdict.")): json.loads(v)
            for k, v in tags.items()
            if k.startswith(f"{TAG}verdict.")
        }
        return {
            "name": self.name,
            "version": str(version),
            "status": tags.get(f"{TAG}status"),
            "step": int(tags.get(f"{TAG}step", -1)),
            "weight": int(tags.get(f"{TAG}weight", 0)),
            "steps": json.loads(tags.get(f"{TAG}steps", "null") or "null"),
            "verdicts": verdicts,
            "history": json.loads(tags.get(f"{TAG}history", "[]")),
            "reason": tags.get(f"{TAG}reason"),
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
        if stale.get(f"{TAG}of") != version:  # drop rollout state copied from another version
            for key in [k for k in stale if k.startswith(TAG)]:
                self.client.delete_model_version_tag(self.name, version, key)
        values = {"of": version, **values}
        for key, value in values.items():
            text = value[:_MAX_TAG] if isinstance(value, str) else json.dumps(value, sort_keys=True)
            if len(text) > _MAX_TAG:  # cut JSON would not parse back
                raise ValueError(f"Canary state {key!r} exceeds MLflow's {_MAX_TAG}-character tag limit.")
            self.client.set_model_version_tag(self.name, version, f"{TAG}{key}", text)

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
        while len(json.dumps(history)) > _MAX_TAG and len(history) > 1:
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
                self.name, version, state["step"], state["weight"],
            )  # fmt: skip
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
