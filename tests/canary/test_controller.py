"""CanaryController against a real ``mlflow server``: every transition, its idempotency, and its backend calls.

The state lives in MLflow (aliases and ONE JSON tag, ``mlops.canary.state``, on the version, written whole
once per transition); the backend is the real ``kserve`` one over the in-memory Kubernetes API of
tests/kserve_api.py, so each test also sees the traffic split the controller asked for.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from mlflow import MlflowClient

from mlops_provider.canary import CanaryController, CanaryStrategy, MetricCheck
from mlops_provider.canary.backends.kserve import DEFAULT_KSERVE_CHECKS, KServeCanaryBackend
from mlops_provider.constants import CANARY_STATE_TAG, CANARY_TAG, GATE_CHAMPION_VERSION_TAG, MAX_TAG_LENGTH
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.kserve import KServeHook
from tests.kserve_api import FakeCustomObjects, writes
from tests.mlflow_helpers import unique_name

STRATEGY = CanaryStrategy(steps=(10, 50, 100), metrics=DEFAULT_KSERVE_CHECKS)


def passed(step: int, **extra: Any) -> dict[str, Any]:
    checks = [
        {"metric": "success_rate", "status": "pass", "canary": 0.999, "champion": 0.998 - step / 1000},
        {"metric": "latency_p95_ms", "status": "pass", "canary": 40.0, "champion": 30.0 + step},
    ]
    return {
        "verdict": "pass",
        "step": step,
        "message": "all good",
        "polls": ["pass"],
        "checks": checks,
    } | extra


class Rollout:
    """A fresh registered model, its versions, a controller over it, and what the API server holds."""

    def __init__(self, tracking_uri: str, models: dict[str, dict[str, str]], api: FakeCustomObjects) -> None:
        self.client = MlflowClient(tracking_uri)
        self.name, self.models, self.api = unique_name("controller"), models, api
        self.client.create_registered_model(self.name)
        backend = KServeCanaryBackend(
            KServeHook(api=api),
            service="churn",
            namespace="models",
            storage_uri=lambda name, version: f"s3://models/{name}/{version}",
        )
        self.controller = CanaryController(self.client, self.name, STRATEGY, backend)

    def register(self, kind: str = "truth", tags: dict[str, str] | None = None) -> str:
        model = self.models[kind]
        return self.client.create_model_version(
            self.name,
            model["model_uri"],
            run_id=model["run_id"],
            tags=tags,
            model_id=model["model_uri"].removeprefix("models:/"),
        ).version

    def aliases(self) -> dict[str, str]:
        return dict(self.client.get_registered_model(self.name).aliases)

    def tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version(self.name, version).tags

    def stored(self, version: str) -> dict[str, Any]:
        """The state tag as MLflow holds it, parsed; the only ``mlops.canary.*`` tag there is."""
        tags = self.tags(version)
        assert [k for k in tags if k.startswith(CANARY_TAG)] == [CANARY_STATE_TAG]
        assert len(tags[CANARY_STATE_TAG]) <= MAX_TAG_LENGTH
        return json.loads(tags[CANARY_STATE_TAG])

    def actions(self, version: str) -> list[str]:
        return [entry["action"] for entry in self.controller.state(version)["history"]]

    def served(self) -> dict[str, Any]:
        """The live predictor: the storage URI it serves and its canary percent (None when unset)."""
        predictor = self.api.objects["models", "churn"]["spec"]["predictor"]
        return {"uri": predictor["model"]["storageUri"], "percent": predictor.get("canaryTrafficPercent")}

    def uri(self, version: str) -> str:
        return f"s3://models/{self.name}/{version}"


@pytest.fixture
def rollout(mlflow_server: Any, models: dict[str, dict[str, str]], k8s_api: FakeCustomObjects) -> Rollout:
    return Rollout(mlflow_server.tracking_uri, models, k8s_api)


@pytest.fixture
def running(rollout: Rollout) -> Rollout:
    """v1 is the champion (promoted at once) and v2 the canary at weight 0."""
    rollout.controller.start(rollout.register())
    rollout.controller.start(rollout.register())
    rollout.api.calls.clear()
    return rollout


def test_with_no_champion_the_first_version_is_promoted_at_once(rollout: Rollout) -> None:
    version = rollout.register()
    state = rollout.controller.start(version)
    assert state["status"] == "promoted" and state["weight"] == 100 and state["version"] == "1"
    assert "no champion" in state["reason"] and state["steps"] == [10, 50, 100]
    assert rollout.aliases() == {"champion": "1"}
    assert rollout.served() == {"uri": rollout.uri("1"), "percent": None}
    [promote] = state["history"]
    assert promote["action"] == "promote" and promote["previous"] is None
    assert promote["message"].endswith("champion none -> v1")

    calls = len(rollout.api.calls)
    assert rollout.controller.start(version) == state  # re-running changes nothing
    assert rollout.controller.promote(version) == state
    assert len(writes(rollout.api)) == 1 and len(rollout.api.calls) == calls


def test_start_makes_the_canary_at_weight_zero_and_a_rerun_converges(running: Rollout) -> None:
    state = running.controller.state("2")
    assert (state["status"], state["step"], state["weight"], state["steps"]) == (
        "progressing",
        -1,
        0,
        [10, 50, 100],
    )
    assert running.aliases() == {"champion": "1", "canary": "2"}
    [start] = state["history"]
    assert start["action"] == "start" and start["champion"] == "1" and start["weight"] == 0
    assert running.controller.split() == {"champion": "1", "canary": None, "weight": 0}  # no traffic yet
    assert writes(running.api) == []  # starting sends no traffic

    assert running.controller.start("2") == state
    running.client.delete_registered_model_alias(running.name, "canary")  # lost, e.g. by a manual edit
    assert running.controller.start("2") == state
    assert running.aliases()["canary"] == "2" and running.actions("2") == ["start"]


def test_steps_move_up_only_after_a_passed_verdict_and_never_twice(running: Rollout) -> None:
    controller = running.controller
    with pytest.raises(ConfigurationError, match="cannot jump to step 1"):
        controller.deploy_step("2", 1)
    with pytest.raises(ConfigurationError, match="step 3 is out of range: the strategy has 3 steps"):
        controller.deploy_step("2", 3)

    state = controller.deploy_step("2", 0)
    assert (state["step"], state["weight"]) == (0, 10)
    assert running.served() == {"uri": running.uri("2"), "percent": 10}
    step_up = state["history"][-1]
    assert step_up["action"] == "step_up" and step_up["message"] == "weight 10% (step 1 of 3)"
    assert step_up["backend"] == {
        "service": "churn",
        "namespace": "models",
        "storage_uri": running.uri("2"),
        "canaryTrafficPercent": 10,
    }
    assert controller.split() == {"champion": "1", "canary": "2", "weight": 10}

    calls = len(running.api.calls)
    assert controller.deploy_step("2", 0) == state  # a retried task: no second step, no API call
    assert len(running.api.calls) == calls
    with pytest.raises(ConfigurationError, match=r"step 0 has not passed its analysis \(verdict: None\)"):
        controller.deploy_step("2", 1)
    controller.record_verdict("2", 0, passed(0, verdict="fail", message="too slow"))
    with pytest.raises(ConfigurationError, match=r"step 0 has not passed its analysis \(verdict: fail\)"):
        controller.deploy_step("2", 1)
    assert running.actions("2") == ["start", "step_up", "analysis_failed"]


def test_the_first_verdict_of_a_step_wins(running: Rollout) -> None:
    controller = running.controller
    controller.deploy_step("2", 0)
    first = controller.record_verdict("2", 0, passed(0))
    assert controller.record_verdict("2", 0, passed(0, verdict="fail")) == first
    state = controller.state("2")
    assert state["verdicts"] == {0: first}
    assert running.stored("2")["verdicts"] == {"0": first}  # JSON keys are text; state() gives ints
    hold = state["history"][-1]
    assert hold["action"] == "hold_passed" and hold["metrics"] == {
        "success_rate": 0.999,
        "latency_p95_ms": 40.0,
    }
    assert running.actions("2") == ["start", "step_up", "hold_passed"]
    assert controller.deploy_step("2", 1)["weight"] == 50
    controller.record_verdict("2", 1, passed(1))
    # The champion's values of the newest step that had them, for a step where it serves nothing.
    assert controller.baseline("2") == {"success_rate": 0.997, "latency_p95_ms": 31.0}


def test_promotion_moves_champion_keeps_previous_and_converges(running: Rollout) -> None:
    controller = running.controller
    for step in range(3):
        controller.deploy_step("2", step)
        controller.record_verdict("2", step, passed(step))
    assert running.served() == {"uri": running.uri("2"), "percent": 100}

    state = controller.promote("2")
    assert state["status"] == "promoted" and state["weight"] == 100
    assert state["reason"] == "every step passed its analysis"
    assert running.aliases() == {"champion": "2", "previous": "1"}
    assert running.served() == {"uri": running.uri("2"), "percent": None}  # no split left
    assert state["history"][-1]["message"] == "every step passed its analysis; champion v1 -> v2"
    assert controller.split() == {"champion": "2", "canary": None, "weight": 0}

    calls = len(running.api.calls)
    assert controller.promote("2") == state and controller.start("2") == state
    assert controller.deploy_step("2", 2) == state
    assert len(running.api.calls) == calls
    with pytest.raises(ConfigurationError, match="v2 is the champion; a canary rollback cannot remove it"):
        controller.rollback("2", "changed my mind")
    assert running.aliases() == {"champion": "2", "previous": "1"}


def test_rollback_removes_the_canary_keeps_the_champion_and_converges(running: Rollout) -> None:
    controller = running.controller
    controller.deploy_step("2", 0)
    running.api.calls.clear()

    state = controller.rollback("2", "error_rate: canary 0.3 not <= 0.01")
    assert state["status"] == "rolled_back" and state["weight"] == 0
    assert state["reason"] == "error_rate: canary 0.3 not <= 0.01"
    assert running.aliases() == {"champion": "1"}
    assert writes(running.api) == [
        ("patch", {"spec": {"predictor": {"canaryTrafficPercent": 0}}}),  # all traffic to the champion first
        (
            "patch",
            {
                "spec": {
                    "predictor": {
                        "model": {
                            "modelFormat": {"name": "mlflow"},
                            "protocolVersion": "v2",
                            "storageUri": running.uri("1"),
                        },
                        "canaryTrafficPercent": 0,
                    }
                }
            },
        ),
    ]
    assert state["history"][-1]["message"] == "error_rate: canary 0.3 not <= 0.01; champion stays v1"
    assert controller.split() == {"champion": "1", "canary": None, "weight": 0}

    running.api.calls.clear()
    assert controller.rollback("2", "again") == state
    assert controller.start("2") == state  # a rolled-back version does not restart
    assert controller.deploy_step("2", 1) == state
    assert writes(running.api) == []
    with pytest.raises(ConfigurationError, match=r"Cannot promote .* v2: its rollout is rolled_back"):
        controller.promote("2")
    with pytest.raises(ConfigurationError, match="its rollout is not started"):
        controller.promote(running.register())


def test_a_new_version_supersedes_a_rollout_in_progress(running: Rollout) -> None:
    running.controller.deploy_step("2", 0)
    third = running.register("weak")
    state = running.controller.start(third)
    assert state["status"] == "progressing" and state["version"] == "3"
    old = running.controller.state("2")
    assert old["status"] == "rolled_back" and old["reason"] == "superseded by version 3"
    assert running.aliases() == {"champion": "1", "canary": "3"}
    assert running.served() == {"uri": running.uri("1"), "percent": 0}


def test_state_copied_from_another_version_is_not_this_versions_state(running: Rollout) -> None:
    """A version registered with another version's tags (copied lineage) carries its stale rollout state."""
    stale = running.tags("2")[CANARY_STATE_TAG]
    assert json.loads(stale)["of"] == "2" and json.loads(stale)["status"] == "progressing"
    copy = running.register(tags={CANARY_STATE_TAG: stale, "mlops.note": "kept"})
    assert running.controller.state(copy)["status"] is None
    assert running.controller.state(copy)["history"] == []

    running.controller.start(copy)  # supersedes v2; the stale state is replaced whole, never merged
    assert running.stored(copy)["of"] == copy and running.tags(copy)["mlops.note"] == "kept"
    assert [e["action"] for e in running.stored(copy)["history"]] == ["start"]


def consistent(doc: dict[str, Any], version: str) -> None:
    """A state document that a kill at any moment could have left: whole and self-consistent."""
    assert doc["of"] == version
    status, step, weight, steps = doc["status"], doc["step"], doc["weight"], doc["steps"]
    if status == "progressing":
        assert weight == (steps[step] if step >= 0 else 0), doc
    elif status == "promoted":
        assert weight == 100, doc
    else:
        assert status in ("rolled_back", "refused") and weight == 0, doc
    assert all(int(s) <= step for s in doc["verdicts"]), doc  # no verdict ahead of the traffic
    last = doc["history"][-1]
    assert (last["step"], last["weight"]) == (step, weight), doc  # the entry describes its transition


def test_every_transition_is_one_write_of_one_whole_and_consistent_state(
    running: Rollout, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[str, str, str]] = []
    write = running.client.set_model_version_tag

    def recording(name: str, version: str, key: str, value: str) -> None:
        written.append((version, key, value))
        write(name, version, key, value)

    monkeypatch.setattr(running.client, "set_model_version_tag", recording)
    monkeypatch.setattr(running.client, "delete_model_version_tag", None)  # nothing is ever deleted
    controller = running.controller

    def one_write(transition: Any, *versions: str) -> None:
        """``transition`` writes each of ``versions`` once, a whole state that a kill could have left."""
        before = len(written)
        transition()
        assert [(v, k) for v, k, _ in written[before:]] == [(v, CANARY_STATE_TAG) for v in versions]
        for version, _, value in written[before:]:
            consistent(json.loads(value), version)
            assert json.loads(value) == running.stored(version)

    for step in range(3):
        one_write(lambda step=step: controller.deploy_step("2", step), "2")
        one_write(lambda step=step: controller.record_verdict("2", step, passed(step)), "2")
    one_write(lambda: controller.promote("2"), "2")
    third, fourth = running.register("weak"), running.register("weak")
    one_write(lambda: controller.start(third), third)
    one_write(lambda: controller.deploy_step(third, 0), third)
    one_write(lambda: controller.start(fourth), third, fourth)  # v3 superseded, then v4 started
    one_write(lambda: controller.rollback(fourth, "changed my mind"), fourth)
    one_write(lambda: controller.start(fourth))  # re-runs write nothing
    one_write(lambda: controller.promote("2"))


def test_a_kill_between_the_traffic_change_and_the_state_write_leaves_the_previous_state(
    running: Rollout,
) -> None:
    class Killed(BaseException):
        """The worker died (SIGKILL): nothing after this point ran."""

    def killed(*args: Any) -> None:
        raise Killed

    controller = running.controller
    running.client.set_model_version_tag = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        controller.deploy_step("2", 0)
    del running.client.set_model_version_tag  # the restarted worker has a working client
    assert running.served() == {"uri": running.uri("2"), "percent": 10}  # the traffic moved...
    state = controller.state("2")  # ...but the state is the previous one, whole: never a step without weight
    assert (state["status"], state["step"], state["weight"]) == ("progressing", -1, 0)
    consistent(running.stored("2"), "2")
    assert controller.split() == {"champion": "1", "canary": None, "weight": 0}

    state = controller.deploy_step("2", 0)  # the retry redeploys the step and records it, once
    assert (state["step"], state["weight"]) == (0, 10) and running.actions("2") == ["start", "step_up"]
    for step in range(3):
        if step:
            controller.deploy_step("2", step)
        controller.record_verdict("2", step, passed(step))

    running.client.set_model_version_tag = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        controller.promote("2")  # the aliases moved; the state write was lost
    del running.client.set_model_version_tag
    assert running.aliases() == {"champion": "2", "previous": "1"}
    consistent(running.stored("2"), "2")
    promoted = controller.promote("2")
    assert promoted["status"] == "promoted" and running.aliases() == {"champion": "2", "previous": "1"}
    assert promoted["history"][-1]["message"] == "every step passed its analysis; champion v1 -> v2"
    consistent(running.stored("2"), "2")


def test_verdicts_are_kept_compact(running: Rollout) -> None:
    controller = running.controller
    controller.deploy_step("2", 0)
    checks = [
        MetricCheck("success_rate", "q", threshold=0.01, direction="higher").evaluate(0.99912345678, 0.998),
        MetricCheck("latency_p95_ms", "q", threshold=50.0).evaluate(40.123456789, 30.0),
    ]
    full = {
        "verdict": "pass",
        "step": 0,
        "weight": 10,
        "message": "; ".join(c["message"] for c in checks) + " " + "x" * 1000,
        "polls": [{"status": "pass", "checks": checks}, "pass"],  # full polls or their statuses
        "checks": checks,
    }
    kept = controller.record_verdict("2", 0, full)
    assert kept == controller.state("2")["verdicts"][0]
    assert len(kept["message"]) == 240 and kept["message"].endswith("…")
    assert kept["polls"] == ["pass", "pass"]
    assert kept["checks"][0] == {
        "metric": "success_rate",
        "status": "pass",
        "canary": 0.999123,  # 6 significant digits
        "champion": 0.998,
        "limit": 0.988,
    }
    assert "message" not in kept["checks"][1]  # the values say it; the prose would cost the tag limit
    assert controller.state("2")["history"][-1]["metrics"] == {
        "success_rate": 0.999123,
        "latency_p95_ms": 40.1235,
    }


def test_history_sheds_poll_details_then_its_oldest_entries_within_the_tag_limit(rollout: Rollout) -> None:
    steps = (10, 20, 40, 60, 80, 100)
    rollout.controller = CanaryController(
        rollout.client, rollout.name, CanaryStrategy(steps=steps, metrics=DEFAULT_KSERVE_CHECKS)
    )
    controller = rollout.controller
    controller.start(rollout.register())
    version = rollout.register()
    controller.start(version)
    shed = False
    for step in range(len(steps)):
        controller.deploy_step(version, step)
        many = passed(step, message=f"step {step}: " + "x" * 1200, polls=["no_data"] * 4 + ["pass"])
        controller.record_verdict(version, step, many)
        stored = rollout.stored(version)  # every state written parses back and fits the limit
        consistent(stored, version)
        history = stored["history"]
        shed = shed or "polls" not in history[0] or history[0]["action"] != "start"
    assert shed
    history = controller.state(version)["history"]
    assert history[-1]["action"] == "hold_passed" and history[-1]["step"] == len(steps) - 1
    assert history[-1]["polls"] == ["no_data"] * 4 + ["pass"]  # the newest keeps its details...
    assert "polls" not in history[0] and "backend" not in history[0]  # ...the oldest lost theirs first
    assert history[0]["action"] != "start"  # then the oldest entries made room
    assert [e["step"] for e in history] == sorted(e["step"] for e in history)
    assert sorted(controller.state(version)["verdicts"]) == list(range(len(steps)))
    assert controller.baseline(version) == {"success_rate": 0.993, "latency_p95_ms": 35.0}

    before = rollout.tags(version)[CANARY_STATE_TAG]
    huge = passed(99) | {"checks": [{"metric": f"metric_{i:03d}", "status": "pass"} for i in range(200)]}
    with pytest.raises(ConfigurationError, match="exceeds MLflow's 5000-character tag limit"):
        controller.record_verdict(version, 99, huge)
    assert rollout.tags(version)[CANARY_STATE_TAG] == before  # refused whole: nothing half-written


def test_a_strategy_whose_rollout_cannot_fit_one_tag_is_refused_before_traffic_moves(
    rollout: Rollout,
) -> None:
    rollout.controller.start(rollout.register())
    rollout.api.calls.clear()
    rollout.controller = CanaryController(
        rollout.client,
        rollout.name,
        CanaryStrategy(steps=tuple(range(5, 101, 5))),
        rollout.controller.backend,
    )
    version = rollout.register()
    with pytest.raises(ConfigurationError, match="20 steps x 4 metric checks need up to"):
        rollout.controller.start(version)
    assert rollout.controller.state(version)["status"] is None and "canary" not in rollout.aliases()
    assert writes(rollout.api) == []


def test_a_champion_change_between_gate_and_start_is_refused(rollout: Rollout) -> None:
    """v3 was gated against v1; v2 was promoted meanwhile: v3 must not roll out against v2 unexamined."""
    controller = rollout.controller
    controller.start(rollout.register())
    second = rollout.register(tags={GATE_CHAMPION_VERSION_TAG: "1"})
    third = rollout.register("weak", tags={GATE_CHAMPION_VERSION_TAG: "1"})
    assert controller.start(second)["status"] == "progressing"  # gated against today's champion
    for step in range(3):
        controller.deploy_step(second, step)
        controller.record_verdict(second, step, passed(step))
    controller.promote(second)
    rollout.api.calls.clear()

    message = r"v3 refused: gated against champion v1, but the champion is now v2: re-run the gate"
    with pytest.raises(ConfigurationError, match=message):
        controller.start(third)

    state = controller.state(third)
    assert state["status"] == "refused" and state["weight"] == 0 and state["champion"] == "2"
    assert state["reason"] == "gated against champion v1, but the champion is now v2: re-run the gate"
    [refusal] = state["history"]
    assert refusal["action"] == "refuse" and refusal["message"] == state["reason"]
    assert rollout.aliases() == {"champion": "2", "previous": "1"}  # no canary alias
    assert writes(rollout.api) == []  # and no traffic
    assert controller.split() == {"champion": "2", "canary": None, "weight": 0}
    with pytest.raises(ConfigurationError, match="re-run the gate"):
        controller.start(third)  # a retry is refused the same way, with no second entry
    assert controller.state(third) == state

    rollout.client.set_model_version_tag(rollout.name, third, GATE_CHAMPION_VERSION_TAG, "2")  # re-gated
    started = controller.start(third)
    assert started["status"] == "progressing" and started["reason"] is None and started["champion"] == "2"
    assert [e["action"] for e in started["history"]] == ["refuse", "start"]
    assert rollout.aliases()["canary"] == third


def test_a_version_gated_with_no_champion_is_refused_once_there_is_one(rollout: Rollout) -> None:
    controller = rollout.controller
    first = rollout.register(tags={GATE_CHAMPION_VERSION_TAG: "None"})  # the gate's tag with no champion
    assert controller.start(first)["status"] == "promoted"  # the first model: nothing to re-check
    late = rollout.register(tags={GATE_CHAMPION_VERSION_TAG: "None"})  # gated before v1 was promoted
    with pytest.raises(ConfigurationError, match="gated against no champion, but the champion is now v1"):
        controller.start(late)
    ungated = rollout.register()  # no gate tag at all (aliases set by hand): nothing to compare
    assert controller.start(ungated)["status"] == "progressing"


def test_a_state_tag_that_is_not_json_is_an_error_not_a_fresh_start(running: Rollout) -> None:
    whole = running.tags("2")[CANARY_STATE_TAG]
    running.client.set_model_version_tag(running.name, "2", CANARY_STATE_TAG, '{"of": "2", "status"')
    try:
        with pytest.raises(ConfigurationError, match="is not valid JSON"):
            running.controller.start("2")
    finally:  # the server is shared by the session: leave no broken model for the listing views
        running.client.set_model_version_tag(running.name, "2", CANARY_STATE_TAG, whole)


@pytest.fixture
def gated(rollout: Rollout) -> Rollout:
    """v1 is the champion; v2, gated against v1, is the canary at step 0 (10 %) and passed it; v3 waits."""
    controller = rollout.controller
    controller.start(rollout.register())
    rollout.register(tags={GATE_CHAMPION_VERSION_TAG: "1"})
    rollout.register()
    controller.start("2")
    controller.deploy_step("2", 0)
    controller.record_verdict("2", 0, passed(0))
    rollout.api.calls.clear()
    return rollout


STOPPED = (
    "champion changed mid-rollout: started against v1, now v3; the canary was only compared with v1, so "
    "its traffic was removed and the champion left as it is: re-run the gate against v3, then start again"
)


def test_a_champion_change_mid_rollout_stops_the_next_step(gated: Rollout) -> None:
    """v3 is made champion by hand while v2 rolls out against v1: v2 must not step up against v3 unexamined."""
    controller = gated.controller
    gated.client.set_registered_model_alias(gated.name, "champion", "3")

    with pytest.raises(ConfigurationError, match=re.escape(f"v2 stopped at step 1 (10%): {STOPPED}.")):
        controller.deploy_step("2", 1)

    state = controller.state("2")
    assert (state["status"], state["step"], state["weight"]) == ("refused", 0, 0)
    assert state["reason"] == STOPPED and state["champion"] == "1"  # the champion its verdicts compared with
    stop = state["history"][-1]
    assert (stop["action"], stop["message"], stop["champion"], stop["started_against"]) == (
        "refuse",
        STOPPED,
        "3",
        "1",
    )
    consistent(gated.stored("2"), "2")  # one whole state, like every transition
    assert gated.aliases() == {"champion": "3"}  # the champion stays; the canary alias is gone
    assert gated.served() == {"uri": gated.uri("3"), "percent": 0}  # no traffic to v2: the champion serves
    assert writes(gated.api)[0] == ("patch", {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    assert controller.split() == {"champion": "3", "canary": None, "weight": 0}

    gated.api.calls.clear()
    assert controller.deploy_step("2", 1) == state  # a retry moves nothing and writes nothing
    with pytest.raises(ConfigurationError, match=r"Cannot promote .* v2: its rollout is refused"):
        controller.promote("2")
    with pytest.raises(ConfigurationError, match="gated against champion v1, but the champion is now v3"):
        controller.start("2")  # restarting needs the gate against v3 first
    assert writes(gated.api) == [] and gated.aliases() == {"champion": "3"}

    gated.client.set_model_version_tag(gated.name, "2", GATE_CHAMPION_VERSION_TAG, "3")  # re-gated
    restarted = controller.start("2")
    assert (restarted["status"], restarted["step"], restarted["champion"]) == ("progressing", -1, "3")
    assert restarted["verdicts"] == {}  # no verdict against v1 carries over: step 0 is judged again
    assert [e["action"] for e in restarted["history"]][-3:] == ["refuse", "refuse", "start"]
    with pytest.raises(ConfigurationError, match="cannot jump to step 1"):
        controller.deploy_step("2", 1)
    assert controller.deploy_step("2", 0)["weight"] == 10
    assert gated.served() == {"uri": gated.uri("2"), "percent": 10}


def test_a_champion_change_before_promotion_stops_it(gated: Rollout) -> None:
    controller = gated.controller
    for step in (1, 2):
        controller.deploy_step("2", step)
        controller.record_verdict("2", step, passed(step))
    gated.client.set_registered_model_alias(gated.name, "champion", "3")

    with pytest.raises(ConfigurationError, match=re.escape(f"v2 stopped at step 3 (100%): {STOPPED}.")):
        controller.promote("2")

    assert controller.state("2")["status"] == "refused"
    assert gated.aliases() == {"champion": "3"}  # v2 replaced no champion it was never compared with
    assert gated.served() == {"uri": gated.uri("3"), "percent": 0}


def test_a_champion_removed_mid_rollout_stops_it_and_promotes_nothing(gated: Rollout) -> None:
    gated.client.delete_registered_model_alias(gated.name, "champion")
    expected = r"started against v1, now none; .* set the 'champion' alias again, then start again"
    with pytest.raises(ConfigurationError, match=expected):
        gated.controller.start("2")  # not "the first model, promoted at once": it was compared with v1
    assert gated.controller.state("2")["status"] == "refused" and gated.aliases() == {}
    assert writes(gated.api) == [("patch", {"spec": {"predictor": {"canaryTrafficPercent": 0}}})]

    gated.client.set_registered_model_alias(gated.name, "champion", "1")  # restored: start again
    assert gated.controller.start("2")["status"] == "progressing"
    assert gated.aliases() == {"champion": "1", "canary": "2"}
