"""CanaryAnalysisSensor in the worker (not deferred) on the batch backend, against a real ``mlflow server``.

The ``rollout`` fixture (tests/canary_rollout.py) registers a model whose v1 is the champion.
"""

from __future__ import annotations

import json

import pytest

from mlops_provider.constants import CANARY_STATE_TAG, GATE_CHAMPION_VERSION_TAG
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.operators.canary import CanaryDeployOperator, RollbackModelOperator
from mlops_provider.sensors.canary import CanaryAnalysisSensor
from tests.canary_rollout import STRATEGY
from tests.mlflow_helpers import task_context


def stored(rollout, version: str) -> dict:
    """The rollout state as MLflow holds it: one JSON tag on the version."""
    return json.loads(rollout.tags(version)[CANARY_STATE_TAG])


def test_no_data_makes_a_step_inconclusive(rollout) -> None:
    version = rollout.register("weak")
    rollout.common["strategy"] = STRATEGY | {
        "max_no_data": 2,
        "metrics": [
            {"name": "auc", "query": "roc_auc", "threshold": 0.1, "direction": "higher"},
        ],
    }
    rollout.common["backend_config"] = rollout.config | {"label_column": None}  # labels not landed yet
    rollout.run(CanaryDeployOperator, version=version)
    rollout.run(CanaryDeployOperator, version=version, step=0)
    verdict = rollout.analyse(version, 0)
    assert verdict["verdict"] == "inconclusive" and "no data" in verdict["message"]
    assert verdict["polls"] == ["no_data", "no_data"] and verdict["weight"] == 10
    assert "inconclusive" in rollout.run(RollbackModelOperator, version=version)["reason"]


def test_the_version_defaults_to_the_canary_and_the_verdict_is_recorded_once(rollout, monkeypatch) -> None:
    import mlops_provider.utils.canary as utils

    asked: list[int] = []
    fetch = utils.fetch_values

    def spying(*args, poll: int, **kwargs):
        asked.append(poll)
        return fetch(*args, poll=poll, **kwargs)

    monkeypatch.setattr(utils, "fetch_values", spying)
    version = rollout.register("truth", new_run=True)
    rollout.run(CanaryDeployOperator, version=version, step=0)
    assert rollout.run(CanaryDeployOperator, version=version, step=0)["step"] == 0

    verdict = rollout.analyse(None, 0)  # no version: the one behind the canary alias

    assert verdict["verdict"] == "pass" and verdict["step"] == 0 and verdict["weight"] == 10
    assert verdict["polls"] == ["pass", "pass"]  # checks_per_step passing polls
    assert asked == [0, 1]  # each on its own slice of the step's traffic
    assert [c["metric"] for c in verdict["checks"]] == [
        "error_rate",
        "latency_p95_ms",
        "prediction_psi",
        "roc_auc",
    ]
    assert stored(rollout, version)["history"][-1]["action"] == "hold_passed"
    assert stored(rollout, version)["verdicts"] == {"0": verdict}
    assert rollout.analyse(version, 0) == verdict  # a retried task returns the recorded verdict
    assert [e["action"] for e in stored(rollout, version)["history"]].count("hold_passed") == 1


def test_a_step_must_be_deployed_and_the_version_rolled_out_before_analysis(rollout) -> None:
    version = rollout.register("weak")
    with pytest.raises(ConfigurationError, match=f"v{version} has no rollout; deploy a step first"):
        rollout.analyse(version, 0)
    rollout.run(CanaryDeployOperator, version=version)
    with pytest.raises(ConfigurationError, match=r"Step 1 of .* is not deployed \(rollout at step 0\)"):
        rollout.analyse(version, 0)
    assert stored(rollout, version)["verdicts"] == {}
    refused = rollout.register("weak", new_run=True)
    rollout.client.set_model_version_tag(rollout.name, refused, GATE_CHAMPION_VERSION_TAG, "7")
    with pytest.raises(ConfigurationError, match="re-run the gate"):
        rollout.run(CanaryDeployOperator, version=refused)
    with pytest.raises(
        ConfigurationError, match=r"has no rollout in progress, it was refused: gated against"
    ):
        rollout.analyse(refused, 0)  # never judged: a verdict would send it to the rollback branch


def test_a_finished_rollout_is_decided_without_polling(rollout, tmp_path) -> None:
    # v1 was promoted at once: any step of it passes, with no polls.
    promoted = rollout.analyse("1", 2)
    assert promoted["verdict"] == "pass" and promoted["polls"] == []
    assert promoted["message"].startswith("rollout already promoted: first model")
    version = rollout.register("weak")
    rollout.run(CanaryDeployOperator, version=version, step=0)
    rollout.run(RollbackModelOperator, version=version)
    rollout.common["backend_config"] = rollout.config | {"log_root": str(tmp_path / "elsewhere")}  # no log
    rolled_back = rollout.analyse(version, 0)
    assert rolled_back["verdict"] == "fail" and rolled_back["polls"] == []
    assert rolled_back["message"].startswith("rollout already rolled_back: ")


def test_a_trigger_error_fails_the_task_so_a_retry_resumes(rollout) -> None:
    sensor = CanaryAnalysisSensor(task_id="analyse", step=0, **rollout.common)
    event = {
        "name": rollout.name,
        "version": "2",
        "step": 0,
        "status": "error",
        "message": "ServiceUnavailable: MLflow could not be reached",
    }
    with pytest.raises(
        RuntimeError, match=r"step 1 failed: ServiceUnavailable: MLflow could not be reached\. Retrying"
    ):
        sensor.execute_complete(task_context(), event)


def test_templated_fields_include_the_step() -> None:
    assert set(CanaryAnalysisSensor.template_fields) == {
        "name",
        "version",
        "backend",
        "backend_config",
        "strategy",
        "mlflow_conn_id",
        "step",
    }
