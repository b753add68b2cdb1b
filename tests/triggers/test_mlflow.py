"""MLflowModelVersionTrigger: serialisation without secrets, and its events against a real server."""

from __future__ import annotations

import asyncio
import json

from mlflow import MlflowClient

from mlops_provider.triggers.mlflow import MLflowModelVersionTrigger
from tests.mlflow_helpers import SENTINEL_PASSWORD, unique_name


def _first_event(trigger: MLflowModelVersionTrigger) -> dict:
    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger yielded no event")

    return asyncio.run(first())


def test_serialize_round_trip_keeps_no_credentials() -> None:
    trigger = MLflowModelVersionTrigger(
        name="churn",
        version=3,
        conn_id="mlflow_prod",
        tracking_uri=f"https://u:{SENTINEL_PASSWORD}@mlflow:443",
        poll_interval=2.0,
        timeout=60.0,
    )
    path, kwargs = trigger.serialize()

    assert path == "mlops_provider.triggers.mlflow.MLflowModelVersionTrigger"
    assert SENTINEL_PASSWORD not in json.dumps(kwargs)
    assert kwargs["tracking_uri"] == "https://mlflow:443" and kwargs["version"] == "3"
    assert MLflowModelVersionTrigger(**kwargs).serialize() == (path, kwargs)


def test_success_when_version_ready(mlflow_conn, models) -> None:
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    client.create_registered_model(name)
    client.create_model_version(
        name, f"runs:/{models['weak']['run_id']}/model", run_id=models["weak"]["run_id"]
    )

    event = _first_event(MLflowModelVersionTrigger(name=name, version="1", poll_interval=0.1, timeout=30))

    assert event == {"name": name, "version": "1", "status": "success", "model_status": "READY"}


def test_error_when_version_missing(mlflow_conn) -> None:
    event = _first_event(MLflowModelVersionTrigger(name=unique_name(), version="1", poll_interval=0.1))

    assert event["status"] == "error"
    assert "RESOURCE_DOES_NOT_EXIST" in event["message"] or "not found" in event["message"].lower()
    assert SENTINEL_PASSWORD not in event["message"]


def test_error_when_server_unreachable(monkeypatch) -> None:
    from tests.mlflow_helpers import connection_env

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env("http://127.0.0.1:9"))

    event = _first_event(MLflowModelVersionTrigger(name="m", version="1", poll_interval=0.1))

    assert event["status"] == "error" and "ServiceUnavailable" in event["message"]
