"""MLflowModelVersionSensor against a real server: READY, deferral to the trigger, and failure events."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlops_provider.exceptions import ModelRegistrationFailed
from mlops_provider.sensors.mlflow import MLflowModelVersionSensor
from mlops_provider.triggers.mlflow import MLflowModelVersionTrigger
from tests.mlflow_helpers import unique_name


@pytest.fixture
def ready_version(mlflow_conn, models) -> str:
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    client.create_registered_model(name)
    client.create_model_version(
        name, f"runs:/{models['weak']['run_id']}/model", run_id=models["weak"]["run_id"]
    )
    return name


def test_poke_mode_returns_when_ready(ready_version) -> None:
    sensor = MLflowModelVersionSensor(
        task_id="wait", name=ready_version, version=1, poke_interval=0.1, timeout=30
    )
    assert sensor.execute({}) == {"name": ready_version, "version": "1", "status": "READY"}


def test_deferrable_returns_at_once_when_ready(ready_version) -> None:
    sensor = MLflowModelVersionSensor(task_id="wait", name=ready_version, version="1", deferrable=True)
    assert sensor.execute({})["status"] == "READY"


def test_deferrable_defers_to_trigger_with_conn_id(mlflow_conn) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    name = unique_name()
    client = MlflowClient(mlflow_conn.tracking_uri)
    client.create_registered_model(name)
    sensor = MLflowModelVersionSensor(task_id="wait", name=name, version="1", deferrable=True, timeout=60)
    # The OSS registry creates versions READY at once, so no real version can be PENDING here.
    sensor.poke = lambda context: False

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})

    trigger = deferred.value.trigger
    assert isinstance(trigger, MLflowModelVersionTrigger)
    assert trigger.serialize()[1]["conn_id"] == "mlflow_default" and trigger.timeout == 60
    assert deferred.value.method_name == "execute_complete"


def test_execute_complete_events() -> None:
    sensor = MLflowModelVersionSensor(task_id="wait", name="churn", version="4", deferrable=True)

    assert sensor.execute_complete({}, {"status": "success", "model_status": "READY"})["status"] == "READY"
    with pytest.raises(ModelRegistrationFailed, match="'churn' version 4 failed registration"):
        sensor.execute_complete(
            {}, {"status": "error", "model_status": "FAILED_REGISTRATION", "message": "x"}
        )
    with pytest.raises(RuntimeError, match="boom"):
        sensor.execute_complete({}, {"status": "error", "model_status": None, "message": "boom"})
