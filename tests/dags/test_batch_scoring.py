"""dag.test() of batch_scoring: an asset-triggered run whose queued Asset events announce three days
scores each of them, and a conf ``day`` still scores exactly that day.

The features come from the feature pipeline run up to ``publish`` (Feast's offline store), the
champion is a small rule model on a real mlflow server.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_provider.example_data.generator import GeneratorConfig, generate
from mlops_provider.ml.scoring import read_log
from tests.dags.conftest import run_dag
from tests.dags.test_drift_monitor import fresh_dag, mapped_xcoms, midnight, run_asset_triggered
from tests.mlflow_helpers import log_model

START = dt.date(2026, 1, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]
ROWS = 200
MODEL = "churn_classifier"


@pytest.fixture(scope="module")
def published(pipeline_env, dag_mlflow):
    """Three days in Feast's offline store and a champion to score with."""
    from mlflow import MlflowClient

    from feature_pipeline import dag as features

    pipeline_env["monkeypatch"].setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": dag_mlflow.tracking_uri})
    )
    generate(GeneratorConfig(rows_per_day=ROWS), pipeline_env["landing"], DAYS[0], len(DAYS))
    publish = features.partial_subset(task_ids=["publish"], include_upstream=True)
    for day in DAYS:
        run, states = run_dag(publish, day=day.isoformat())
        assert run.state == "success", states
    client = MlflowClient(dag_mlflow.tracking_uri)
    run_id = log_model(dag_mlflow.tracking_uri, "truth")["run_id"]
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias(MODEL, "champion", version)
    return {**pipeline_env, "champion": str(version)}


def predictions(root, day: dt.date):
    return read_log(f"{root}/predictions/daily/{MODEL}/date={day.isoformat()}/predictions.parquet")


def test_an_asset_run_with_three_queued_events_scores_every_day(published):
    from mlops_provider.assets import feature_view_asset

    root = published["root"]
    windows = [
        (midnight(DAYS[0]), midnight(DAYS[2])),  # one window, two days
        (midnight(DAYS[1]), midnight(DAYS[2])),  # a day announced twice is scored once
        (midnight(DAYS[2]), midnight(DAYS[2] + dt.timedelta(days=1))),
    ]
    run, states = run_asset_triggered(
        fresh_dag("batch_scoring"), feature_view_asset("churn", "customer_activity"), windows
    )

    assert run.state == "success", states
    assert states["features"] == ["success"] * 3 and states["score"] == ["success"] * 3, states
    [per_day] = mapped_xcoms(run, "days")
    iso = [d.isoformat() for d in DAYS]
    assert per_day == [
        {
            "entity_df": f"{root}/landing/customer_activity/date={d}/part-00000.parquet",
            "features_uri": f"{root}/scoring_sets/churn_model_v1/date={d}/features.parquet",
            "output_uri": f"{root}/predictions/daily/{MODEL}/date={d}/predictions.parquet",
        }
        for d in iso
    ]
    # Each score read its own day's features (same map index) and wrote its own day's log.
    assert [f["uri"] for f in mapped_xcoms(run, "features")] == [d["features_uri"] for d in per_day]
    assert [s["output_uri"] for s in mapped_xcoms(run, "score")] == [d["output_uri"] for d in per_day]
    for day in DAYS:
        log = predictions(root, day)
        assert len(log) == ROWS and log["customer_id"].is_unique
        assert set(log["event_timestamp"].dt.date) == {day}
        assert set(log["model_version"]) == {published["champion"]}


def test_a_conf_day_scores_exactly_that_day(published):
    run, states = run_dag(fresh_dag("batch_scoring"), day=DAYS[1].isoformat())
    assert run.state == "success", states
    [per_day] = mapped_xcoms(run, "days")
    assert [d["output_uri"].split("date=")[1][:10] for d in per_day] == [DAYS[1].isoformat()]
    assert len(predictions(published["root"], DAYS[1])) == ROWS
