"""FeatureFreshnessSensor against a real Feast registry, in poke and deferrable mode."""

from __future__ import annotations

import json
import shutil

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from mlops_provider.example_data.generator import GeneratorConfig, generate, partition_path
from mlops_provider.exceptions import MlopsProviderError
from mlops_provider.operators.feast import (
    FeastApplyOperator,
    FeastMaterializeOperator,
    FeastPublishPartitionOperator,
)
from mlops_provider.sensors.feast import FeatureFreshnessSensor
from mlops_provider.triggers.feast import FeatureFreshnessTrigger
from tests.conftest import FEATURE_REPO, START_DAY

VIEW = "customer_activity"
DAY_START, DAY_END = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """An applied repo with day one published but not materialized."""
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    generate(GeneratorConfig(rows_per_day=50), tmp_path / "landing", START_DAY, 1)
    monkeypatch.delenv("MLOPS_OFFLINE_ROOT", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_DEFAULT", json.dumps({"conn_type": "feast", "extra": {"repo_path": str(repo)}})
    )
    FeastApplyOperator(task_id="apply").execute({})
    FeastPublishPartitionOperator(
        task_id="publish",
        feature_view=VIEW,
        partition=START_DAY.isoformat(),
        source_uri=str(partition_path(tmp_path / "landing", VIEW, START_DAY)),
    ).execute({})
    return repo


def materialize() -> None:
    FeastMaterializeOperator(task_id="m", feature_views=[VIEW], start=DAY_START, end=DAY_END).execute({})


def sensor(**kwargs) -> FeatureFreshnessSensor:
    return FeatureFreshnessSensor(task_id="fresh", feature_view=VIEW, fresh_as_of=DAY_END, **kwargs)


def test_poke_is_false_before_and_true_after_materialization(repo):
    before = sensor().poke({})
    assert not before and before.xcom_value == {"feature_view": VIEW, "fresh_until": None}

    materialize()

    after = sensor().poke({})
    assert after and after.xcom_value == {"feature_view": VIEW, "fresh_until": DAY_END}
    assert not FeatureFreshnessSensor(
        task_id="f", feature_view=VIEW, fresh_as_of="2026-01-03T00:00:00+00:00"
    ).poke({})


def test_deferrable_sensor_defers_with_plain_arguments(repo):
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, poke_interval=5, timeout=300).execute({})

    trigger = deferred.value.trigger
    assert isinstance(trigger, FeatureFreshnessTrigger)
    assert trigger.serialize()[1] == {
        "feature_view": VIEW,
        "fresh_as_of": DAY_END,
        "repo_path": str(repo),
        "config_overrides": {},
        "poll_interval": 5,
        "timeout": 300,
    }
    assert deferred.value.method_name == "execute_complete"


def test_deferrable_sensor_returns_at_once_when_already_fresh(repo):
    materialize()
    assert sensor(deferrable=True).execute({}) == {"feature_view": VIEW, "fresh_until": DAY_END}


def test_execute_complete_checks_the_event():
    done = sensor().execute_complete({}, {"status": "success", "message": "fresh", "fresh_until": DAY_END})
    assert done == {"feature_view": VIEW, "fresh_until": DAY_END}
    with pytest.raises(AirflowSensorTimeout, match="not yet"):
        sensor().execute_complete({}, {"status": "timeout", "message": "not yet", "fresh_until": None})
    with pytest.raises(MlopsProviderError, match=r"did not become fresh.*boom"):
        sensor().execute_complete({}, {"status": "error", "message": "boom", "fresh_until": None})
