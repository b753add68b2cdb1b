"""dag.test() of drift_monitor against a real mlflow server: skip without a champion, quiet days, drift.

The champion here is a small rule model whose run holds a reference sample of 2026-01-01 (the trainer's
own sample logging is tested in tests/trainer); the day's partition is written where the feature
pipeline stages it. One ordered scenario, as the steps build on each other.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_provider.example_data.generator import GeneratorConfig, activity_table
from tests.dags.conftest import run_dag
from tests.mlflow_helpers import log_model

START = dt.date(2026, 1, 1)
DRIFT_FROM = dt.date(2026, 1, 9)
ROWS = 1500
ID_COLUMNS = ["customer_id", "event_timestamp"]


def stage(data_root, day: dt.date) -> None:
    path = data_root / "staging" / "customer_activity" / f"date={day.isoformat()}" / "part-00000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = GeneratorConfig(rows_per_day=ROWS, drift_from=DRIFT_FROM)
    activity_table(cfg, day).to_pandas().to_parquet(path, index=False)


def make_champion(tracking_uri: str, tmp_path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    run_id = log_model(tracking_uri, "truth")["run_id"]
    sample = tmp_path / "sample.parquet"
    cfg = GeneratorConfig(rows_per_day=ROWS)
    activity_table(cfg, START).to_pandas().drop(columns=ID_COLUMNS).to_parquet(sample, index=False)
    client.log_artifact(run_id, str(sample), "reference")
    client.create_registered_model("churn_classifier")
    version = client.create_model_version("churn_classifier", f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias("churn_classifier", "champion", version)
    return str(version)


def test_drift_monitor_skips_then_stays_quiet_then_announces_drift(pipeline_env, dag_mlflow, tmp_path):
    from drift_monitor import DRIFT_DETECTED
    from drift_monitor import dag as monitor

    pipeline_env["monkeypatch"].setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": dag_mlflow.tracking_uri})
    )
    root = pipeline_env["root"]
    quiet, drifted = START + dt.timedelta(days=3), DRIFT_FROM
    stage(root, quiet)
    stage(root, drifted)

    # No champion yet: nothing to compare with, so detection and the event are skipped, not failed.
    run, states = run_dag(monitor, day=quiet.isoformat())
    assert run.state == "success", states
    assert states["detect"] == "skipped" and states["drift_event"] == "skipped", states

    version = make_champion(dag_mlflow.tracking_uri, tmp_path)

    # A quiet day: detection runs and logs its report; no Asset event.
    run, states = run_dag(monitor, day=quiet.isoformat())
    assert run.state == "success" and states["detect"] == "success", states
    assert states["drift_event"] == "skipped", states
    summary = run.get_task_instance("detect").xcom_pull(task_ids="detect")
    assert summary["dataset_drift"] is False and summary["model_version"] == version

    # The generator's drift day: the event fires, naming the window, the champion and the features.
    run, states = run_dag(monitor, day=drifted.isoformat(), drift_share=0.3)
    assert run.state == "success" and states["drift_event"] == "success", states
    extra = run.get_task_instance("drift_event").xcom_pull(task_ids="drift_event")
    assert extra["end"] == dt.datetime.combine(drifted + dt.timedelta(days=1), dt.time(), dt.UTC).isoformat()
    assert extra["model_version"] == version and {"spend_30d", "country"} <= set(extra["drifted_features"])
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == DRIFT_DETECTED.uri)
            .all()
        )
        assert [e.extra["drift_run_id"] for e in events] == [extra["drift_run_id"]]

    # A threshold override in the conf is applied: with every PSI bar out of reach, no drift.
    run, states = run_dag(monitor, day=drifted.isoformat(), thresholds={"*": {"psi": 100, "js": 1.0}})
    assert run.state == "success" and states["drift_event"] == "skipped", states


def test_unknown_conf_keys_are_refused_before_anything_runs(pipeline_env):
    from drift_monitor import dag as monitor

    run, states = run_dag(monitor, dya="2026-01-04")
    assert run.state == "failed"
    assert states["validate_conf"] == "failed" and states["detect"] == "upstream_failed", states


def test_a_wrong_type_is_refused_when_the_run_is_created(pipeline_env):
    from airflow.sdk.exceptions import ParamValidationError

    from drift_monitor import dag as monitor

    with pytest.raises(ParamValidationError, match="drift_share"):
        monitor.test(run_conf={"drift_share": "lots"})
