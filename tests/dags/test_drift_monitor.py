"""dag.test() of drift_monitor against a real mlflow server: skip without a champion, quiet days, drift,
and an asset-triggered run whose queued Asset events announce several days.

The champion here is a small rule model whose run holds a reference sample of 2026-01-01 (the trainer's
own sample logging is tested in tests/trainer); the day's partition is written where the feature
pipeline stages it. One ordered scenario, as the steps build on each other.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import pytest

from mlops_provider.example_data.generator import GeneratorConfig, activity_table
from tests.dags.conftest import run_dag
from tests.mlflow_helpers import log_model

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

START = dt.date(2026, 1, 1)
DRIFT_FROM = dt.date(2026, 1, 9)
ROWS = 1500
ID_COLUMNS = ["customer_id", "event_timestamp"]


def midnight(day: dt.date) -> str:
    return dt.datetime.combine(day, dt.time(), dt.UTC).isoformat()


def fresh_dag(dag_file: str):
    """A new DAG object from ``dags/<dag_file>.py``: dag.test() runs tasks in this process, and
    Airflow's ``process_params`` stores a run's conf in the DAG's own Param objects, so a later run
    without conf (as an asset-triggered run is) would inherit the conf of an earlier dag.test()."""
    import runpy

    from tests.conftest import DAGS_DIR

    return runpy.run_path(str(DAGS_DIR / f"{dag_file}.py"))["dag"]


def run_asset_triggered(dag, asset, windows: list[tuple[str, str]]) -> tuple[DagRun, dict[str, list[str]]]:
    """dag.test() of an asset-triggered run whose triggering events announce ``windows`` (``(start,
    end)``), as when a backfill's events queued while the previous run was active; return the run and
    each task's states by map index."""
    from unittest import mock

    from airflow.models import dagrun as dagrun_module
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    create = dagrun_module.get_or_create_dagrun

    def with_events(*, session, **kwargs):
        run = create(session=session, **kwargs)
        asset_id = session.scalar(select(AssetModel.id).where(AssetModel.uri == asset.uri))
        events = [
            AssetEvent(
                asset_id=asset_id, extra={"start": start, "end": end}, source_dag_id="feature_pipeline"
            )
            for start, end in windows
        ]
        session.add_all(events)
        run.consumed_asset_events.extend(events)
        run.run_type = DagRunType.ASSET_TRIGGERED
        session.commit()
        return run

    with mock.patch.object(dagrun_module, "get_or_create_dagrun", with_events):
        run = dag.test(logical_date=None)
    states: dict[str, list[str]] = {}
    for ti in sorted(run.get_task_instances(), key=lambda ti: (ti.task_id, ti.map_index)):
        states.setdefault(ti.task_id, []).append(ti.state)
    return run, states


def mapped_xcoms(run: DagRun, task_id: str) -> list[Any]:
    """The return values of a mapped task's instances, by map index (None where one returned nothing)."""
    tis = sorted(
        (ti for ti in run.get_task_instances() if ti.task_id == task_id), key=lambda ti: ti.map_index
    )
    return [ti.xcom_pull(task_ids=task_id, map_indexes=ti.map_index) for ti in tis]


def drift_events(asset) -> list[dict]:
    """The extras of every Asset event of ``asset``, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == asset.uri)
            .order_by(AssetEvent.id)
            .all()
        )
        return [dict(e.extra) for e in events]


def stage(data_root, day: dt.date) -> None:
    path = data_root / "staging" / "customer_activity" / f"date={day.isoformat()}" / "part-00000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = GeneratorConfig(rows_per_day=ROWS, drift_from=DRIFT_FROM)
    activity_table(cfg, day).to_pandas().to_parquet(path, index=False)


def make_champion(tracking_uri: str, tmp_path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    if client.search_registered_models("name='churn_classifier'"):  # an earlier test made it
        return str(client.get_model_version_by_alias("churn_classifier", "champion").version)
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
    [summary] = mapped_xcoms(run, "detect")
    assert summary["dataset_drift"] is False and summary["model_version"] == version

    # The generator's drift day: the event fires, naming the window, the champion and the features.
    run, states = run_dag(monitor, day=drifted.isoformat(), drift_share=0.3)
    assert run.state == "success" and states["drift_event"] == "success", states
    [extra] = mapped_xcoms(run, "drift_event")
    assert extra["day"] == drifted.isoformat()
    assert extra["end"] == dt.datetime.combine(drifted + dt.timedelta(days=1), dt.time(), dt.UTC).isoformat()
    assert extra["model_version"] == version and {"spend_30d", "country"} <= set(extra["drifted_features"])
    assert [e["drift_run_id"] for e in drift_events(DRIFT_DETECTED)] == [extra["drift_run_id"]]

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


def test_an_asset_run_with_three_queued_events_tests_and_announces_every_day(
    pipeline_env, dag_mlflow, tmp_path
):
    """Three materializations queued while a run was active start ONE run; every day they announce is
    tested, and each drifted day gets its own Asset event with its own window."""
    from drift_monitor import DRIFT_DETECTED, FEATURE_VIEW
    from mlops_provider.assets import feature_view_asset

    pipeline_env["monkeypatch"].setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": dag_mlflow.tracking_uri})
    )
    root = pipeline_env["root"]
    quiet, first_drift, second_drift = (DRIFT_FROM + dt.timedelta(days=i) for i in (-1, 0, 1))
    for day in (quiet, first_drift, second_drift):
        stage(root, day)
    version = make_champion(dag_mlflow.tracking_uri, tmp_path)
    before = len(drift_events(DRIFT_DETECTED))

    one_day = dt.timedelta(days=1)
    overlap_start = dt.datetime.combine(first_drift, dt.time(), dt.UTC) - dt.timedelta(hours=6)
    windows = [
        (midnight(quiet), midnight(first_drift)),
        (overlap_start.isoformat(), midnight(second_drift)),  # 6 h of overlap: announces its own day
        (midnight(second_drift), midnight(second_drift + one_day)),
    ]
    monitor = fresh_dag("drift_monitor")
    run, states = run_asset_triggered(monitor, feature_view_asset("churn", FEATURE_VIEW), windows)

    assert run.state == "success", states
    days = [quiet.isoformat(), first_drift.isoformat(), second_drift.isoformat()]
    assert [w["day"] for w in mapped_xcoms(run, "days")[0]] == days
    assert states["detect"] == ["success"] * 3, states
    summaries = mapped_xcoms(run, "detect")
    assert [s["dataset_drift"] for s in summaries] == [False, True, True]
    assert {s["model_version"] for s in summaries} == {version}
    assert states["drift_event"] == ["skipped", "success", "success"], states

    # One Asset event per drifted day, each with its own one-day window, so the training pipeline
    # (and partition_days()) see the drifted days, never the quiet one between or before them.
    # The mapped drift_event instances may run in either order, so the events are compared by day.
    new = sorted(drift_events(DRIFT_DETECTED)[before:], key=lambda e: e["day"])
    assert [(e["day"], e["start"], e["end"]) for e in new] == [
        (d.isoformat(), midnight(d), midnight(d + one_day)) for d in (first_drift, second_drift)
    ]
    assert [e["drift_run_id"] for e in new] == [s["run_id"] for s in summaries[1:]]
