"""CanaryAnalysisTrigger: plain-JSON arguments, polls until the step is decided, errors as events.

Against a real ``mlflow server`` and the batch backend (the ``rollout`` fixture, tests/canary_rollout.py).
"""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import Any

import pytest

from mlops_provider.canary import CanaryStrategy
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.operators.canary import CanaryDeployOperator
from mlops_provider.sensors.canary import CanaryAnalysisSensor
from mlops_provider.triggers.canary import CanaryAnalysisTrigger, analyse_once
from tests.canary_rollout import STRATEGY
from tests.mlflow_helpers import task_context


def events(trigger: CanaryAnalysisTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def spy_polls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The poll index of every fetch_values call (the trigger and the sensor look it up per call)."""
    import mlops_provider.utils.canary as utils

    polls: list[int] = []
    fetch = utils.fetch_values

    def spying(*args: Any, poll: int, **kwargs: Any) -> Any:
        polls.append(poll)
        return fetch(*args, poll=poll, **kwargs)

    monkeypatch.setattr(utils, "fetch_values", spying)
    return polls


def test_the_deferrable_sensor_hands_the_trigger_plain_json_and_the_trigger_decides(
    rollout, monkeypatch
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    version = rollout.register("truth", new_run=True)
    rollout.run(CanaryDeployOperator, version=version)
    rollout.run(CanaryDeployOperator, version=version, step=0)
    sensor = CanaryAnalysisSensor(
        task_id="analyse", version=version, step=0, deferrable=True, **rollout.common
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(task_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, CanaryAnalysisTrigger) and deferred.value.method_name == "execute_complete"
    path, kwargs = trigger.serialize()
    assert path == "mlops_provider.triggers.canary.CanaryAnalysisTrigger"
    json.dumps(kwargs)  # only plain JSON reaches Airflow's database
    assert kwargs["conn_id"] == "mlflow_default" and "password" not in json.dumps(kwargs)

    polls = spy_polls(monkeypatch)
    [event] = events(CanaryAnalysisTrigger(**kwargs))  # one event, then the trigger ends
    assert event["status"] == "decided" and event["verdict"] == "pass", [
        c["message"] for c in event["polls"][-1]["checks"]
    ]
    assert [p["status"] for p in event["polls"]] == ["pass", "pass"]
    assert polls == [0, 1]  # each poll asks for its own slice of the step's traffic
    recorded = sensor.execute_complete(task_context(), event)
    assert recorded["verdict"] == "pass"
    state = json.loads(rollout.tags(version)["mlops.canary.state"])
    assert state["verdicts"]["0"] == recorded and state["history"][-1]["action"] == "hold_passed"


def test_serialize_round_trips_through_the_class_path() -> None:
    trigger = CanaryAnalysisTrigger(
        name="churn",
        version=3,
        step="1",
        backend="batch",
        backend_config={"traffic_uri": "/t.parquet", "log_root": "/logs", "entity_column": "customer_id"},
        strategy=CanaryStrategy().to_dict(),
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is CanaryAnalysisTrigger
    assert kwargs["version"] == "3" and kwargs["step"] == 1 and kwargs["baseline"] == {}
    assert kwargs["conn_id"] == MLflowHook.default_conn_name
    assert CanaryAnalysisTrigger(**json.loads(json.dumps(kwargs))).serialize() == (path, kwargs)


def test_a_bad_strategy_or_a_missing_log_is_an_error_event_not_a_crash(rollout) -> None:
    base = {
        "name": rollout.name,
        "version": "1",
        "step": 0,
        "backend": "batch",
        "backend_config": rollout.config,
    }
    [bad] = events(CanaryAnalysisTrigger(**base, strategy={"steps": [50, 10]}))
    assert bad["status"] == "error" and bad["message"].startswith(
        "ConfigurationError: Canary strategy: steps"
    )
    [missing] = events(CanaryAnalysisTrigger(**base, strategy=STRATEGY))  # v1 never ran a step: no log
    assert missing["status"] == "error" and missing["message"].startswith("DataNotFound: Prediction log")
    assert {k: missing[k] for k in ("name", "version", "step")} == {
        "name": rollout.name,
        "version": "1",
        "step": 0,
    }


def test_analyse_once_judges_one_poll_from_the_steps_log(rollout) -> None:
    version = rollout.register("constant")
    rollout.run(CanaryDeployOperator, version=version, step=0)
    strategy = CanaryStrategy.from_dict(STRATEGY)

    poll = analyse_once("batch", rollout.config, strategy, MLflowHook(), rollout.name, version, 0, poll=0)

    assert poll["status"] == "fail"
    checks = {c["metric"]: c for c in poll["checks"]}
    assert checks["prediction_psi"]["status"] == "fail" and checks["error_rate"]["status"] == "pass"
    # A baseline fills in a champion value the step did not measure.
    with_baseline = analyse_once(
        "batch", rollout.config, strategy, MLflowHook(), rollout.name, version, 0, {"roc_auc": 0.99}, poll=0
    )
    assert {c["metric"]: c["champion"] for c in with_baseline["checks"]}["roc_auc"] is not None
    # The next poll judges other customers: other numbers, never the first poll's again.
    mean = CanaryStrategy.from_dict(
        STRATEGY | {"metrics": [{"name": "mean", "query": "mean_probability", "threshold": 1.0}]}
    )
    champion_means = [
        analyse_once("batch", rollout.config, mean, MLflowHook(), rollout.name, version, 0, poll=i)["checks"][
            0
        ]["champion"]
        for i in (0, 1)
    ]
    assert champion_means[0] != champion_means[1]
