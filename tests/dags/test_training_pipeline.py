"""feature_pipeline then training_pipeline with dag.test(): a model trained locally lands in MLflow."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_provider.example_data.generator import GeneratorConfig, generate
from tests.dags.conftest import run_dag

pytestmark = pytest.mark.xdist_group("training_pipeline")

START = dt.date(2026, 1, 1)
DAYS = 4


@pytest.fixture(scope="module")
def trained(pipeline_env, mlflow_server):
    from feature_pipeline import dag as features
    from training_pipeline import dag as training

    mp = pipeline_env["monkeypatch"]
    mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": mlflow_server.tracking_uri}))
    generate(GeneratorConfig(rows_per_day=400), pipeline_env["landing"], START, DAYS)
    for i in range(DAYS):
        run, states = run_dag(features, day=(START + dt.timedelta(days=i)).isoformat())
        assert run.state == "success", states
    run, states = run_dag(training, day=(START + dt.timedelta(days=DAYS - 1)).isoformat(),
                          hyperparameters={"epochs": 2, "hidden": [16]})
    return run, states, mlflow_server


def test_training_runs_end_to_end_on_the_local_backend(trained):
    run, states, server = trained
    assert run.state == "success", states
    result = run.get_task_instance("train").xcom_pull(task_ids="train")
    assert set(result) >= {"run_id", "model_uri", "metrics"}
    assert 0.5 < result["metrics"]["val_auc"] <= 1.0

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=server.tracking_uri)
    mlflow_run = client.get_run(result["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["mlops.training_set_uri"].endswith(
        "training_sets/churn_model_v1/date=2026-01-04/training_set.parquet"
    )


def test_training_set_is_point_in_time_and_labelled(trained, pipeline_env):
    import pandas as pd

    run, _, _ = trained
    summary = run.get_task_instance("training_set").xcom_pull(task_ids="training_set")
    frame = pd.read_parquet(summary["uri"])
    # Labels land two days late: those landing on days 3 and 4 refer to the snapshots of days 1 and 2.
    assert summary["rows"] == len(frame) == 2 * 400
    assert frame["churned"].isin([0, 1]).all()
    assert frame["spend_30d"].notna().all()
