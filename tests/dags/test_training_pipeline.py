"""feature_pipeline, label_pipeline, then training_pipeline with dag.test(): windows, train, register,
wait READY, gate, end to end; no evaluation row is ever in the training set."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.dags.conftest import features_then_training, run_dag

pytestmark = pytest.mark.xdist_group("training_pipeline")

START = dt.date(2026, 1, 1)
DAYS = 5  # labels land two days late: snapshots 01-01 .. 01-03 are labelled
NEWEST = "2026-01-03"
ROWS = 1500
HYPERPARAMETERS = {"epochs": 8, "hidden": [32], "lr": 0.01}
CHALLENGER_URI = "mlflow://models/churn_classifier/aliases/challenger"


@pytest.fixture(scope="module")
def trained(pipeline_env, dag_mlflow):
    run, states = features_then_training(
        pipeline_env, dag_mlflow, start=START, days=DAYS, rows=ROWS, hyperparameters=HYPERPARAMETERS
    )
    return run, states, dag_mlflow


def test_training_runs_end_to_end_on_the_local_backend(trained):
    run, states, server = trained
    assert run.state == "success", states
    result = run.get_task_instance("train").xcom_pull(task_ids="train")
    assert set(result) >= {"run_id", "model_uri", "metrics"}
    assert 0.5 < result["metrics"]["eval_roc_auc"] <= 1.0  # on the held-out evaluation window
    assert result["metrics"]["eval_rows"] == ROWS

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=server.tracking_uri)
    mlflow_run = client.get_run(result["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["mlops.training_set_uri"].endswith(
        f"training_sets/churn_model_v1/date={NEWEST}/training_set.parquet"
    )


def test_the_first_model_is_registered_with_lineage_and_becomes_challenger(trained):
    run, states, server = trained
    assert states["register"] == states["wait_ready"] == states["gate"] == "success", states
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=server.tracking_uri)
    decision = run.get_task_instance("gate").xcom_pull(task_ids="gate")
    assert decision["decision"] == "pass" and decision["champion"] is None, decision
    version = client.get_model_version_by_alias("churn_classifier", "challenger")
    assert version.version == str(decision["version"])
    assert version.tags["mlops.feature_service"] == "churn_model_v1"
    assert version.tags["mlops.data_fingerprint"].startswith("sha256:")  # content only, never the path
    assert version.tags["mlops.training_window"] == "2025-12-06/2026-01-02"  # 28 days; 01-01 and 01-02 exist
    assert version.tags["mlops.evaluation_window"] == f"{NEWEST}/{NEWEST}"
    assert version.tags["mlops.eval_set_uri"].endswith(
        f"eval_sets/churn_model_v1/date={NEWEST}/eval_set.parquet"
    )
    assert version.tags["mlops.dag_id"] == "training_pipeline"
    assert states["challenger_set"] == "success", states
    assert [e["version"] for e in challenger_announcements()] == [version.version]


def test_rerun_with_unchanged_data_reuses_the_version_and_trains_nothing(trained):
    from training_pipeline import dag as training

    _, _, server = trained
    for _ in range(2):
        run, states = run_dag(training, day=NEWEST, hyperparameters=HYPERPARAMETERS)
        assert run.state == "success", states
        assert states["train"] == "skipped", states
        assert run.get_task_instance("find_existing").xcom_pull(task_ids="find_existing")["found"] is True
        assert states["challenger_set"] == "skipped", states  # announced by the first run already

    import mlflow

    versions = mlflow.MlflowClient(tracking_uri=server.tracking_uri).search_model_versions(
        "name='churn_classifier'"
    )
    assert len(versions) == 1


def challenger_announcements() -> list[dict]:
    """The extras of the challenger Asset's events in Airflow's metadata database, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == CHALLENGER_URI)
            .order_by(AssetEvent.timestamp)
        )
        return [dict(event.extra or {}) for event in events]


def test_reruns_announce_the_challenger_exactly_once_even_after_a_lost_announcement(trained):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from training_pipeline import dag as training

    # The gate recorded its decision, but the run died before challenger_set announced it.
    with create_session() as session:
        asset_id = session.query(AssetModel.id).filter(AssetModel.uri == CHALLENGER_URI).scalar()
        session.query(AssetEvent).filter(AssetEvent.asset_id == asset_id).delete()
    assert challenger_announcements() == []

    states = [run_dag(training, day=NEWEST, hyperparameters=HYPERPARAMETERS)[1] for _ in range(2)]

    assert [s["gate"] for s in states] == ["success", "success"], states
    # The first re-run reuses the recorded decision and still announces; the second finds that announcement.
    assert [s["challenger_set"] for s in states] == ["success", "skipped"], states
    assert len(challenger_announcements()) == 1


def test_training_set_is_point_in_time_and_labelled(trained):
    import pandas as pd

    run, _, _ = trained
    summary = run.get_task_instance("training_set").xcom_pull(task_ids="training_set")
    frame = pd.read_parquet(summary["uri"])
    # The training window holds the labelled snapshots before the evaluation day: 01-01 and 01-02.
    assert summary["rows"] == len(frame) == 2 * ROWS
    assert sorted(frame["event_timestamp"].dt.date.astype(str).unique()) == ["2026-01-01", "2026-01-02"]
    assert frame["churned"].isin([0, 1]).all()
    assert frame["spend_30d"].notna().all()


def test_no_evaluation_row_is_in_the_training_set(trained):
    """Leakage: the gate (and the canary) judge rows the model never saw, by entity and snapshot."""
    import pandas as pd

    run, _, _ = trained
    training = pd.read_parquet(
        run.get_task_instance("training_set").xcom_pull(task_ids="training_set")["uri"]
    )
    evaluation = pd.read_parquet(run.get_task_instance("eval_set").xcom_pull(task_ids="eval_set")["uri"])
    keys = ["customer_id", "event_timestamp"]
    assert len(evaluation) == ROWS
    assert training[keys].merge(evaluation[keys], on=keys).empty
    assert training["event_timestamp"].max() < evaluation["event_timestamp"].min()


def test_with_a_champion_and_no_drift_alarm_nothing_is_trained(trained):
    """retrain_policy=drift: new labels alone do not retrain a champion; the reason is in the log."""
    import mlflow

    from training_pipeline import dag as training

    _, _, server = trained
    client = mlflow.MlflowClient(tracking_uri=server.tracking_uri)
    client.set_registered_model_alias("churn_classifier", "champion", "1")
    try:
        run, states = run_dag(training, day=NEWEST)
    finally:
        client.delete_registered_model_alias("churn_classifier", "champion")
    assert run.state == "success", states
    assert states["decide"] == "skipped" and states["train"] == "skipped" and states["gate"] == "skipped", (
        states
    )
