"""CanaryController against a real ``mlflow server``: every transition, its idempotency, and its backend calls.

The state lives in MLflow (aliases and ``mlops.canary.*`` tags on the version); the backend is the real
``kserve`` one over the in-memory Kubernetes API of tests/kserve_api.py, so each test also sees the
traffic split the controller asked for.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlflow import MlflowClient

from mlops_provider.canary import CanaryController, CanaryStrategy
from mlops_provider.canary.backends.kserve import DEFAULT_KSERVE_CHECKS, KServeCanaryBackend
from mlops_provider.constants import CANARY_TAG, MAX_TAG_LENGTH
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
    assert json.loads(running.tags("2")[f"{CANARY_TAG}verdict.0"]) == first
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
    stale = {k: v for k, v in running.tags("2").items() if k.startswith(CANARY_TAG)}
    assert stale[f"{CANARY_TAG}of"] == "2" and stale[f"{CANARY_TAG}status"] == "progressing"
    copy = running.register(tags={**stale, "mlops.note": "kept"})
    assert running.controller.state(copy)["status"] is None
    assert running.controller.state(copy)["history"] == []

    running.controller.start(copy)  # supersedes v2; the stale keys are dropped, not merged
    tags = running.tags(copy)
    assert tags[f"{CANARY_TAG}of"] == copy and tags["mlops.note"] == "kept"
    assert [e["action"] for e in json.loads(tags[f"{CANARY_TAG}history"])] == ["start"]


def test_history_keeps_the_newest_entries_within_the_tag_limit(rollout: Rollout) -> None:
    steps = (20, 40, 60, 80, 100)
    rollout.controller = CanaryController(
        rollout.client, rollout.name, CanaryStrategy(steps=steps, metrics=DEFAULT_KSERVE_CHECKS)
    )
    rollout.controller.start(rollout.register())
    version = rollout.register()
    rollout.controller.start(version)
    for step in range(len(steps)):
        rollout.controller.deploy_step(version, step)
        rollout.controller.record_verdict(version, step, passed(step, message=f"step {step}: " + "x" * 1200))
    history = rollout.controller.state(version)["history"]
    assert len(rollout.tags(version)[f"{CANARY_TAG}history"]) <= MAX_TAG_LENGTH
    assert history[-1]["action"] == "hold_passed" and history[-1]["step"] == len(steps) - 1
    assert history[0]["action"] != "start"  # the oldest entries made room
    assert [e["step"] for e in history] == sorted(e["step"] for e in history)
    assert sorted(rollout.controller.state(version)["verdicts"]) == list(range(len(steps)))

    with pytest.raises(ValueError, match="exceeds MLflow's 5000-character tag limit"):
        rollout.controller.record_verdict(version, 99, passed(99, message="y" * MAX_TAG_LENGTH))
