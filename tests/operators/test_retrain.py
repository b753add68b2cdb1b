"""RetrainDecisionOperator against a real ``mlflow server``: windows, label partitions, drift alarms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowSkipException
from mlflow import MlflowClient

from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.operators.mlflow import MLflowRegisterModelOperator
from mlops_provider.operators.retrain import RetrainDecisionOperator
from tests.mlflow_helpers import log_model, task_context, unique_name

DRIFT = Asset(name="drift_test_model", uri="mlflow://models/test/drift")
D = dt.date(2026, 3, 20)


def day(offset: int) -> str:
    return (D + dt.timedelta(days=offset)).isoformat()


@pytest.fixture
def labels(tmp_path: Path) -> str:
    """Label partitions for D-9 .. D (an empty file is enough: the operator only lists them)."""
    for offset in range(-9, 1):
        path = tmp_path / f"date={day(offset)}" / "part-00000.parquet"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    return str(tmp_path / "date={day}" / "part-00000.parquet")


def decide(name: str, labels: str, newest: str = day(0), alarms=(), **kwargs) -> dict:
    op = RetrainDecisionOperator(
        task_id="decide",
        name=name,
        newest_labelled_day=newest,
        label_partition_uri=labels,
        training_days=kwargs.pop("training_days", 5),
        drift_asset=DRIFT,
        **kwargs,
    )
    events = [SimpleNamespace(extra=extra) for extra in alarms]
    return op.execute(task_context(inlet_events={DRIFT: events}))


def register(tracking_uri: str, name: str, **tags: str) -> str:
    run_id = log_model(tracking_uri, "truth")["run_id"]
    return MLflowRegisterModelOperator(
        task_id="register", name=name, run_id=run_id, lineage_tags=tags
    ).execute(task_context())["version"]


def test_the_first_model_gets_the_default_windows_and_their_partitions(mlflow_conn, labels):
    result = decide(unique_name("retrain"), labels)
    assert result["train"] is True
    assert result["training_window"] == f"{day(-5)}/{day(-1)}"
    assert result["evaluation_window"] == f"{day(0)}/{day(0)}"
    assert result["training_uris"] == [labels.format(day=day(i)) for i in range(-5, 0)]
    assert result["evaluation_uris"] == [labels.format(day=day(0))]
    assert result["missing_training_days"] == []


def test_missing_training_days_are_listed_and_a_partial_evaluation_window_fails(mlflow_conn, labels):
    result = decide(unique_name("retrain"), labels, training_days=12)
    assert result["missing_training_days"] == [day(-12), day(-11), day(-10)]
    with pytest.raises(DataNotFound, match=f"lacks labels for {day(1)}"):
        decide(unique_name("retrain"), labels, newest=day(1))


def test_a_drift_alarm_against_the_champion_retrains_once_labels_cover_it(mlflow_conn, labels):
    uri = mlflow_conn.tracking_uri
    name = unique_name("retrain")
    champion = register(
        uri, name, training_window=f"{day(-9)}/{day(-8)}", evaluation_window=f"{day(-7)}/{day(-7)}"
    )
    MlflowClient(uri).set_registered_model_alias(name, "champion", champion)

    with pytest.raises(AirflowSkipException, match="no drift alarm"):
        decide(name, labels)
    alarms = [
        {"day": day(0), "model_version": champion},
        {"start": f"{day(-2)}T00:00:00+00:00", "model_version": champion},
    ]
    with pytest.raises(AirflowSkipException, match="waiting for labels"):
        decide(name, labels, newest=day(-2), alarms=alarms)
    result = decide(name, labels, alarms=alarms)
    assert result["training_window"] == f"{day(-2)}/{day(-1)}"  # from the earliest alarm on

    # Once a version was trained for that drift (for an earlier day), later labels do not retrain it.
    register(uri, name, training_window=f"{day(-2)}/{day(-2)}", evaluation_window=f"{day(-1)}/{day(-1)}")
    with pytest.raises(AirflowSkipException, match="already retrained"):
        decide(name, labels, alarms=alarms)


def test_bad_settings_are_refused_with_their_name(mlflow_conn, labels):
    with pytest.raises(ConfigurationError, match="training_days"):
        decide(unique_name("retrain"), labels, training_days="zero")
    with pytest.raises(ConfigurationError, match="policy"):
        decide(unique_name("retrain"), labels, policy="weekly")
    with pytest.raises(ConfigurationError, match="placeholder"):
        RetrainDecisionOperator(
            task_id="d", name="m", newest_labelled_day=day(0), label_partition_uri="/x.parquet"
        )
