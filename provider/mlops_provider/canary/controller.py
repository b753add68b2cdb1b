"""Canary rollouts: the strategy, the analysis verdicts, and the rollout state kept in MLflow.

One controller serves every backend (``batch``, ``kserve``). Its semantics follow Flagger and Argo
Rollouts:

- a rollout walks the strategy's ``steps`` (traffic weights in percent); after each step the analysis
  polls the metric checks every ``interval_seconds``; ``checks_per_step`` passing polls let it step up,
  ``failure_threshold`` failing polls roll it back, and polls without data make it inconclusive (rolled
  back too: nothing is promoted without evidence);
- after the last step passes, the canary is promoted: ``champion`` moves to it and the old champion is
  kept as ``previous``;
- with no champion yet, the first version is promoted at once (nothing to compare with), once it passed
  the backend's smoke test: it scored a sample of the traffic with an error rate within the strategy's
  ``error_rate`` limit (the batch backend's; kserve has none); one that cannot score is ``refused``,
  with no alias moved;
- a step whose failing analysis saw the champion fail as well (its error rate on the same traffic at or
  above the canary's limit) judged the input, not the canary: the rollout is stopped as ``refused``
  with both error summaries (:meth:`CanaryController.refuse`), not rolled back;
- a version the gate compared with another champion than today's is refused before any traffic moves
  (``refused``; start it again once the gate has re-run);
- the champion a rollout started against is recorded, and every start, step and promotion re-checks
  it: when another version (or none) has become the champion meanwhile, the canary was never compared
  with it, so the rollout stops: its traffic is removed, the ``canary`` alias deleted, the champion left
  as it is, and the state records ``refused`` with the reason (start it again once the gate has re-run
  against the new champion; the new rollout starts from its first step, with no verdict carried over).

State lives in MLflow only, so any task can be retried or the scheduler restarted mid-rollout: aliases
``champion``, ``canary`` (and ``previous``), and ONE JSON tag on the canary version,
:data:`~mlops_provider.constants.CANARY_STATE_TAG`, holding ``of`` (the version it belongs to),
``status``, ``step``, ``weight``, ``steps``, ``champion``, ``verdicts`` (per step), ``history`` and
``reason``. Each transition writes it whole, in one ``set_model_version_tag`` call, so a kill between two
calls never leaves a half-written state (a step without its weight). It stays within MLflow's tag limit:
verdicts keep the deciding values without prose, and the history sheds its oldest details, then its
oldest entries. Steps are addressed by index, so re-running a step is a no-op, never a double step.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlops_provider.canary.analysis import error_rate_limit
from mlops_provider.constants import (
    CANARY,
    CANARY_STATE_TAG,
    CHAMPION,
    FAIL,
    GATE_CHAMPION_VERSION_TAG,
    INCONCLUSIVE,
    MAX_TAG_LENGTH,
    NO_DATA,
    PASS,
    PREVIOUS,
    PROGRESSING,
    PROMOTED,
    REFUSED,
    ROLLED_BACK,
)
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.mlflow_client import alias_version
from mlops_provider.ml.tasks import TASK_TYPES

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_provider.canary.backends import CanaryBackend
    from mlops_provider.canary.strategy import CanaryStrategy

# A recorded verdict keeps the decision and the deciding poll's values; no prose per check.
_CHECK_KEYS = ("metric", "status", "canary", "champion", "limit")
# A history entry's core; anything else (polls, metric values, backend evidence) is detail, shed first.
_ENTRY_KEYS = ("at", "action", "step", "weight", "message")
MESSAGE_CHARS = 240  # a verdict's or history entry's message
REASON_CHARS = 500  # why a rollout ended or was refused


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
        """The rollout state of ``version``: ``{"name", "version", "status", "step", "weight", "steps",
        "champion", "verdicts": {step: verdict}, "history", "reason"}``; the one reader of the state tag."""
        version = str(version)
        return self._public(version, self._read(version))

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

    def _read(self, version: str) -> dict[str, Any]:
        """The stored document (verdicts keyed by the step as text), or an empty one."""
        tags = self.client.get_model_version(self.name, version).tags or {}
        text = tags.get(CANARY_STATE_TAG)
        empty = _empty(version)
        if not text:
            return empty
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigurationError(
                f"Canary state of {self.name!r} v{version} (tag {CANARY_STATE_TAG!r}) is not valid JSON: "
                f"{err}. It is only ever written whole; delete the tag to start the rollout over."
            ) from err
        if not isinstance(doc, dict) or doc.get("of") != version:  # copied along with another version
            return empty
        return empty | doc

    def _public(self, version: str, doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": version,
            "status": doc["status"],
            "step": int(doc["step"]),
            "weight": int(doc["weight"]),
            "steps": doc["steps"],
            "champion": doc["champion"],
            "verdicts": {int(step): verdict for step, verdict in doc["verdicts"].items()},
            "history": doc["history"],
            "reason": doc["reason"],
        }

    # -- writing state ------------------------------------------------------------------------------
    def _write(
        self, version: str, doc: dict[str, Any], action: str, message: str, **evidence: Any
    ) -> dict[str, Any]:
        """Append the decision to the history and write the whole state in ONE tag write."""
        doc = {**doc, "of": version}
        entry = {
            "at": round(time.time(), 3),
            "action": action,
            "step": doc["step"],
            "weight": doc["weight"],
            "message": _clip(message, MESSAGE_CHARS),
        }
        doc["history"] = [*doc["history"], entry | evidence]
        text = self._fit(version, doc)
        self.client.set_model_version_tag(self.name, version, CANARY_STATE_TAG, text)
        self.log.info("Canary %r v%s: %s. %s", self.name, version, action.upper(), message)
        return self._public(version, json.loads(text))

    def _fit(self, version: str, doc: dict[str, Any]) -> str:
        """``doc`` as JSON within MLflow's tag limit, shedding in this order until it fits: the details
        (polls, metric values, backend evidence) of older history entries, oldest first; then the oldest
        entries; then the newest entry's details; then all but the newest verdict, oldest first, keep
        only their decision and each check's status and values (see :func:`_shed`). A state that still
        does not fit is an error, and nothing is written."""
        history = [dict(entry) for entry in doc["history"]]
        verdicts = {step: dict(verdict) for step, verdict in doc["verdicts"].items()}

        def text() -> str:
            return _dumps(doc | {"history": history, "verdicts": verdicts})

        def details(entry: dict[str, Any]) -> list[str]:
            return [k for k in entry if k not in _ENTRY_KEYS]

        def shrink() -> Iterator[None]:
            for entry in history[:-1]:
                for key in details(entry):
                    del entry[key]
                yield
            while len(history) > 1:
                history.pop(0)
                yield
            for key in details(history[-1]) if history else []:
                del history[-1][key]
            yield
            for step in sorted(verdicts, key=int)[:-1]:
                verdicts[step] = _shed(verdicts[step])
                yield

        current = text()
        steps = shrink()
        while len(current) > MAX_TAG_LENGTH and next(steps, False) is not False:
            current = text()
        if len(current) > MAX_TAG_LENGTH:
            raise ConfigurationError(
                f"Canary state of {self.name!r} v{version} exceeds MLflow's {MAX_TAG_LENGTH}-character tag "
                f"limit even with its history cut to the newest entry ({len(current)} characters, "
                f"{len(verdicts)} step verdict(s)); roll out with fewer steps or metric checks."
            )
        return current

    def _check_fits(self) -> None:
        """Refuse, before any traffic moves, a strategy whose full rollout could not be kept in one tag."""
        strategy = self.strategy
        # A model is judged on the checks of its task type; size for the task type with the most.
        checks = max((strategy.checks_for(task) for task in TASK_TYPES), key=len)
        number = -1.23457e-05  # the longest a value is kept (6 significant digits)
        verdict = {
            "verdict": INCONCLUSIVE,
            "step": len(strategy.steps),
            "weight": 100,
            "message": "x" * MESSAGE_CHARS,
            "polls": [NO_DATA] * strategy.max_polls,
            "checks": [
                {"metric": m.name, "status": NO_DATA, "canary": number, "champion": number, "limit": number}
                for m in checks
            ],
        }
        doc = _empty("9" * 6) | {
            "status": ROLLED_BACK,
            "step": len(strategy.steps) - 1,
            "weight": 100,
            "steps": list(strategy.steps),
            "champion": "9" * 6,
            "reason": "x" * REASON_CHARS,
            "verdicts": {str(step): _shed(verdict) for step in range(len(strategy.steps) - 1)},
            "history": [
                {"at": time.time(), "action": "analysis_inconclusive", "step": 99, "weight": 100}
                | {"message": "x" * MESSAGE_CHARS}
            ],
        }
        doc["verdicts"][str(len(strategy.steps) - 1)] = verdict
        size = len(_dumps(doc))
        if size > MAX_TAG_LENGTH:
            raise ConfigurationError(
                f"Canary strategy: {len(strategy.steps)} steps x {len(checks)} metric checks "
                f"need up to {size} characters of rollout state, over MLflow's {MAX_TAG_LENGTH}-character "
                "tag limit; use fewer steps or checks."
            )

    def _stale_gate(self, version: str, champion: str) -> str | None:
        """Why ``version`` cannot start against ``champion``: its gate compared it with another one."""
        tags = self.client.get_model_version(self.name, version).tags or {}
        gated = tags.get(GATE_CHAMPION_VERSION_TAG)
        if gated is None or gated == champion:  # never gated (e.g. set by hand), or gated against it
            return None
        against = "no champion" if gated in ("", "None") else f"champion v{gated}"
        return f"gated against {against}, but the champion is now v{champion}: re-run the gate"

    def _smoke_test(self, version: str) -> tuple[dict[str, Any] | None, str | None]:
        """The backend's smoke test of a first model, and why it cannot be promoted (None: it can)."""
        smoke = self.backend.smoke_test(self.name, version) if self.backend else None
        if smoke is None:
            return None, None
        limit = error_rate_limit(self.strategy)
        if smoke["error_rate"] <= limit:
            return smoke, None
        return smoke, (
            f"first model failed its smoke test: {smoke['errors']} (error rate {smoke['error_rate']:.3g} > "
            f"{limit:.3g} on {smoke['rows']} rows of {smoke.get('traffic_uri')}); it cannot score the "
            "traffic, so it was not promoted: fix the model or the traffic's columns, then start again"
        )

    def _refuse_start(
        self,
        version: str,
        doc: dict[str, Any],
        steps: list[int],
        champion: str | None,
        refusal: str,
        **evidence: Any,
    ) -> None:
        """Record a start refused before anything changed, once (a retry adds no second entry); raise."""
        if doc["status"] != REFUSED or doc["reason"] != _clip(refusal, REASON_CHARS):
            refused = doc | {"status": REFUSED, "step": -1, "weight": 0, "steps": steps}
            refused |= {"champion": champion, "reason": _clip(refusal, REASON_CHARS)}
            self._write(version, refused, "refuse", refusal, **evidence)
        raise ConfigurationError(f"Canary {self.name!r} v{version} refused: {refusal}.")

    # -- transitions --------------------------------------------------------------------------------
    def start(self, version: str | int) -> dict[str, Any]:
        """Make ``version`` the canary at weight 0, or promote it at once when there is no champion.

        Converges: a version already promoted, rolled back or progressing is returned as it is. A
        different version mid-rollout is rolled back as superseded (as Flagger restarts on a new revision).

        :raises ConfigurationError: the gate compared ``version`` with another champion than today's
            (recorded as ``refused``; nothing else changes), a first model failed its smoke test (the
            same), the strategy's state cannot fit a tag, the backend cannot run the rollout (e.g. no
            traffic to replay), or the champion changed in the middle of the rollout (stopped, see
            :meth:`_hold_champion`).
        """
        version = str(version)
        doc = self._read(version)
        if doc["status"] in (PROMOTED, ROLLED_BACK):
            self.log.info("Canary %r v%s already %s; nothing to start.", self.name, version, doc["status"])
            return self._public(version, doc)
        champion = self.alias(CHAMPION)
        steps = doc["steps"] or list(self.strategy.steps)
        if champion == version:  # promoted, with the state write lost (or the alias set by hand)
            return self._write(
                version,
                doc | {"status": PROMOTED, "weight": 100, "steps": steps},
                "promote",
                f"v{version} is already the champion",
                previous=None,
            )
        if doc["status"] == PROGRESSING:
            self._hold_champion(version, doc, champion)
        elif champion is None:
            smoke, refusal = self._smoke_test(version)
            if refusal is not None:
                self._refuse_start(version, doc, steps, None, refusal, smoke_test=smoke)
            first = doc | {"status": PROGRESSING, "step": -1, "weight": 0, "steps": steps}
            reason = "first model: no champion to compare with, promoted at once"
            if smoke is not None:
                reason += (
                    f" after its smoke test ({smoke['rows']} rows, error rate {smoke['error_rate']:.3g})"
                )
            return self._promote(version, first, reason)
        else:  # a new rollout: checked before anything changes
            refusal = self._stale_gate(version, champion)
            if refusal is not None:
                self._refuse_start(version, doc, steps, champion, refusal)
            self._check_fits()
            if self.backend:
                self.backend.check(self.name, champion, version)
        current = self.alias(CANARY)
        if current not in (None, version) and self.state(current)["status"] == PROGRESSING:
            self.rollback(current, reason=f"superseded by version {version}")
        if doc["status"] == PROGRESSING:
            if self.alias(CANARY) != version:  # lost, e.g. by a manual edit or a kill after the write
                self.client.set_registered_model_alias(self.name, CANARY, version)
            return self._public(version, doc)
        fresh = doc | {  # after a refusal too: no verdict of a rollout against another champion is kept
            "status": PROGRESSING,
            "step": -1,
            "weight": 0,
            "steps": list(self.strategy.steps),
            "champion": champion,
            "verdicts": {},
            "reason": None,
        }
        started = self._write(
            version, fresh, "start", f"canary against champion v{champion}", champion=champion
        )
        self.client.set_registered_model_alias(self.name, CANARY, version)  # after: a lost alias is re-set
        return started

    def deploy_step(self, version: str | int, step: int) -> dict[str, Any]:
        """Move ``version`` to step ``step`` (0-based) once step ``step - 1`` passed; a no-op when there already.

        :raises ConfigurationError: the step is out of order, or the champion changed since the rollout
            started (the rollout is stopped first, see :meth:`_hold_champion`).
        """
        version = str(version)
        doc = self._read(version)
        if doc["status"] != PROGRESSING:
            self.log.info(
                "Canary %r v%s is %s; step %d not deployed.", self.name, version, doc["status"], step
            )
            return self._public(version, doc)
        champion = self._hold_champion(version, doc, self.alias(CHAMPION))
        steps = doc["steps"] or list(self.strategy.steps)
        if not 0 <= step < len(steps):
            raise ConfigurationError(
                f"Canary step {step} is out of range: the strategy has {len(steps)} steps."
            )
        if doc["step"] >= step:
            self.log.info(
                "Canary %r v%s is already at step %d (weight %d%%); not stepping again.",
                self.name,
                version,
                doc["step"],
                doc["weight"],
            )
            return self._public(version, doc)
        if doc["step"] != step - 1:
            raise ConfigurationError(
                f"Canary {self.name!r} v{version} is at step {doc['step']}; it cannot jump to step {step}."
            )
        previous = doc["verdicts"].get(str(step - 1), {}).get("verdict")
        if step > 0 and previous != PASS:
            raise ConfigurationError(
                f"Canary {self.name!r} v{version}: step {step - 1} has not passed its analysis "
                f"(verdict: {previous}); refusing to step up."
            )
        weight = int(steps[step])
        evidence = self.backend.set_weight(self.name, champion, version, weight, step) if self.backend else {}
        # Killed before this write: the state still says the previous step, and a re-run redeploys this one.
        return self._write(
            version,
            doc | {"step": step, "weight": weight},
            "step_up",
            f"weight {weight}% (step {step + 1} of {len(steps)})",
            backend=evidence,
        )

    def record_verdict(self, version: str | int, step: int, verdict: dict[str, Any]) -> dict[str, Any]:
        """Keep the analysis verdict of ``step`` (compacted: see :func:`compact_verdict`); the first
        verdict recorded for a step wins. Returns the verdict as kept."""
        version = str(version)
        doc = self._read(version)
        if str(step) in doc["verdicts"]:
            return dict(doc["verdicts"][str(step)])
        kept = compact_verdict(verdict)
        action = {PASS: "hold_passed", FAIL: "analysis_failed", INCONCLUSIVE: "analysis_inconclusive"}
        state = self._write(
            version,
            doc | {"verdicts": {**doc["verdicts"], str(step): kept}},
            action.get(kept["verdict"], str(kept["verdict"])),
            kept.get("message", ""),
            polls=kept.get("polls", []),
            metrics={c["metric"]: c.get("canary") for c in kept.get("checks", [])},
        )
        return dict(state["verdicts"][step])

    def promote(self, version: str | int, reason: str = "every step passed its analysis") -> dict[str, Any]:
        """Canary -> champion; the old champion is kept as ``previous``. Re-running converges.

        :raises ConfigurationError: the rollout is not progressing, or the champion changed since it
            started (the rollout is stopped instead, see :meth:`_hold_champion`).
        """
        version = str(version)
        doc = self._read(version)
        if doc["status"] == PROMOTED:
            return self._public(version, doc)
        if doc["status"] != PROGRESSING:
            raise ConfigurationError(
                f"Cannot promote {self.name!r} v{version}: its rollout is {doc['status'] or 'not started'}."
            )
        champion = self.alias(CHAMPION)
        if champion != version:  # the champion already being the canary: a re-run after the aliases moved
            self._hold_champion(version, doc, champion)
        return self._promote(version, doc, reason)

    def _hold_champion(self, version: str, doc: dict[str, Any], champion: str | None) -> str:
        """Return ``champion`` when it is the one the rollout of ``version`` started against; else stop
        the rollout and raise.

        Its analyses compared the canary with the recorded champion only, so stepping up, or replacing
        another champion, would rest on no evidence. Stopping leaves the champion as it is: the canary's
        traffic is removed (the backend serves ``champion`` alone), the ``canary`` alias is deleted, and
        the state records ``refused`` with the reason. Like a refused start, it is not final: once the
        gate has compared the version with the new champion, :meth:`start` begins a new rollout.
        """
        started = doc["champion"]
        if champion == started and champion is not None:
            return champion
        was, now = (f"v{v}" if v else "none" for v in (started, champion))
        remedy = f"re-run the gate against {now}" if champion else f"set the {CHAMPION!r} alias again"
        reason = (
            f"champion changed mid-rollout: started against {was}, now {now}; the canary was only compared "
            f"with {was}, so its traffic was removed and the champion left as it is: {remedy}, then start "
            "again"
        )
        self._stop(version, doc, reason, champion=champion, started_against=started)
        where = f"step {doc['step'] + 1} ({doc['weight']}%)" if doc["step"] >= 0 else "before its first step"
        raise ConfigurationError(f"Canary {self.name!r} v{version} stopped at {where}: {reason}.")

    def refuse(self, version: str | int, reason: str, **evidence: Any) -> dict[str, Any]:
        """Stop a progressing rollout without judging the canary (e.g. the input failed both models):
        its traffic is removed, the ``canary`` alias deleted, the champion left as it is, and the state
        records ``refused`` with ``reason`` and ``evidence``. Not final: :meth:`start` begins a new
        rollout. A rollout that is not progressing is returned as it is."""
        version = str(version)
        doc = self._read(version)
        if doc["status"] != PROGRESSING:
            return self._public(version, doc)
        return self._stop(version, doc, reason, champion=self.alias(CHAMPION), **evidence)

    def _stop(
        self, version: str, doc: dict[str, Any], reason: str, *, champion: str | None, **evidence: Any
    ) -> dict[str, Any]:
        """Remove the canary's traffic and alias; record ``refused`` with ``reason`` (and ``champion``,
        ``evidence`` in the history entry)."""
        if self.backend and champion != version:
            self.backend.rollback(self.name, champion, version)
        if self.alias(CANARY) == version:
            self.client.delete_registered_model_alias(self.name, CANARY)
        stopped = doc | {"status": REFUSED, "weight": 0, "reason": _clip(reason, REASON_CHARS)}
        return self._write(version, stopped, "refuse", reason, champion=champion, **evidence)

    def _promote(self, version: str, doc: dict[str, Any], reason: str) -> dict[str, Any]:
        champion = self.alias(CHAMPION)
        if champion == version:  # a re-run after the aliases moved: the champion it replaced
            champion = doc["champion"]
        if self.backend:
            self.backend.promote(self.name, version)
        if champion not in (None, version):
            self.client.set_registered_model_alias(self.name, PREVIOUS, champion)
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        if self.alias(CANARY) == version:
            self.client.delete_registered_model_alias(self.name, CANARY)
        was = f"v{champion}" if champion else "none"
        return self._write(
            version,
            doc | {"status": PROMOTED, "weight": 100, "reason": _clip(reason, REASON_CHARS)},
            "promote",
            f"{reason}; champion {was} -> v{version}",
            previous=champion,
        )

    def rollback(self, version: str | int, reason: str) -> dict[str, Any]:
        """Remove the canary; the champion is untouched and the version is tagged with ``reason``."""
        version = str(version)
        doc = self._read(version)
        if doc["status"] == ROLLED_BACK:
            return self._public(version, doc)
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
        return self._write(
            version,
            doc | {"status": ROLLED_BACK, "weight": 0, "reason": _clip(reason, REASON_CHARS)},
            "rollback",
            f"{reason}; champion stays v{champion}",
            champion=champion,
        )


def compact_verdict(verdict: dict[str, Any]) -> dict[str, Any]:
    """A step's verdict as kept in the state: ``verdict``, ``step``, ``weight``, ``message`` (clipped),
    ``polls`` (each poll's status) and the deciding poll's ``checks`` (metric, status, canary, champion,
    limit; 6 significant digits), without the per-check prose that the values already say."""
    kept: dict[str, Any] = {"verdict": verdict["verdict"]}
    for key in ("step", "weight"):
        if key in verdict:
            kept[key] = verdict[key]
    if verdict.get("message"):
        kept["message"] = _clip(str(verdict["message"]), MESSAGE_CHARS)
    kept["polls"] = [p["status"] if isinstance(p, dict) else p for p in verdict.get("polls", [])]
    kept["checks"] = [
        {key: _number(check[key]) for key in _CHECK_KEYS if key in check}
        for check in verdict.get("checks", [])
    ]
    return kept


def _shed(verdict: dict[str, Any]) -> dict[str, Any]:
    """An older step's verdict at its smallest: the decision, and each check's status and values (what
    the ML models view plots and :meth:`CanaryController.baseline` reads); no message, polls or limits."""
    kept: dict[str, Any] = {key: verdict[key] for key in ("verdict", "step", "weight") if key in verdict}
    kept["checks"] = [
        {key: check[key] for key in ("metric", "status", "canary", "champion") if key in check}
        for check in verdict.get("checks", [])
    ]
    return kept


def _empty(version: str) -> dict[str, Any]:
    return {
        "of": version,
        "status": None,
        "step": -1,
        "weight": 0,
        "steps": None,
        "champion": None,
        "verdicts": {},
        "history": [],
        "reason": None,
    }


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> Any:
    """A float to 6 significant digits (plenty for evidence, half the characters); others unchanged."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value
