"""DriftDetectOperator against a real ``mlflow server``: reports, runs, reuse and a missing reference."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_provider.example_data.generator import GeneratorConfig, activity_table
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.operators.drift import DriftDetectOperator
from mlops_provider.operators.mlflow import MLflowRegisterModelOperator
from tests.mlflow_helpers import log_model, task_context, unique_name

START = dt.date(2026, 1, 1)
DRIFT_FROM = START + dt.timedelta(days=20)
ROWS = 2000
ID_COLUMNS = ["customer_id", "event_timestamp"]


def activity(day: dt.date, rows: int = ROWS) -> pd.DataFrame:
    cfg = GeneratorConfig(rows_per_day=rows, drift_from=DRIFT_FROM)
    return activity_table(cfg, day).to_pandas()


def write_partition(directory: Path, day: dt.date, rows: int = ROWS) -> str:
    path = directory / f"date={day.isoformat()}.parquet"
    activity(day, rows).to_parquet(path, index=False)
    return str(path)


def champion(tracking_uri: str, reference: pd.DataFrame | None, tmp_path: Path) -> tuple[str, str]:
    """Register a new model whose run holds ``reference`` as its sample; make v1 the champion."""
    run_id = log_model(tracking_uri, "truth")["run_id"]
    if reference is not None:
        sample = tmp_path / "sample.parquet"
        reference.to_parquet(sample, index=False)
        MlflowClient(tracking_uri).log_artifact(run_id, str(sample), "reference")
    name = unique_name("drift")
    version = MLflowRegisterModelOperator(task_id="register", name=name, run_id=run_id).execute(
        task_context()
    )["version"]
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", version)
    return name, version


@pytest.fixture
def model(mlflow_conn, tmp_path) -> tuple[str, str]:
    reference = activity(START).drop(columns=ID_COLUMNS)
    return champion(mlflow_conn.tracking_uri, reference, tmp_path)


def detect(name: str, current_uri: str, **kwargs) -> dict:
    op = DriftDetectOperator(task_id="drift", name=name, current_uri=current_uri, **kwargs)
    return op.execute(task_context())


def drift_runs(tracking_uri: str, name: str, experiment: str = "mlops-drift") -> list:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], f"tags.`mlops.drift.model` = '{name}'")


def test_a_quiet_day_reports_no_drift_and_a_rerun_reuses_the_run(mlflow_conn, model, tmp_path) -> None:
    name, version = model
    quiet = write_partition(tmp_path, START + dt.timedelta(days=5))

    summary = detect(name, quiet)

    assert summary["dataset_drift"] is False and summary["drift_share"] == 0.0
    assert summary["drifted_features"] == [] and summary["model_version"] == version
    assert summary["reused"] is False
    assert set(summary["features"]) == set(activity(START).columns) - set(ID_COLUMNS)
    assert all(not f["drifted"] for f in summary["features"].values())
    assert summary["features"]["spend_30d"]["p_value"] > 0.05
    assert summary["features"]["country"]["psi"] < 0.1
    json.dumps(summary, allow_nan=False)

    again = detect(name, quiet)
    assert again == {**summary, "reused": True}
    assert len(drift_runs(mlflow_conn.tracking_uri, name)) == 1


def test_a_drifted_day_is_logged_with_metrics_params_tags_and_reports(
    mlflow_conn, model, tmp_path, capfd, caplog
) -> None:
    name, version = model
    drifted = write_partition(tmp_path, DRIFT_FROM)

    caplog.set_level("INFO")
    summary = detect(name, drifted)
    out, err = capfd.readouterr()  # Airflow's structlog writes to stdout, not to logging
    logged = out + err + caplog.text

    assert summary["dataset_drift"] is True and summary["reused"] is False
    assert {"country", "sessions_7d", "spend_30d"} <= set(summary["drifted_features"])
    assert summary["features"]["spend_30d"] == {
        "psi": pytest.approx(summary["features"]["spend_30d"]["psi"]),
        "p_value": pytest.approx(summary["features"]["spend_30d"]["p_value"]),
        "drifted": True,
    }
    assert "Feature 'spend_30d' drifted: PSI" in logged
    assert re.search(r"Dataset DRIFT: \d of 9 feature\(s\)", logged), logged

    (run,) = drift_runs(mlflow_conn.tracking_uri, name)
    assert run.info.run_id == summary["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["mlops.drift.dataset_drift"] == "true"
    assert run.data.params["model_version"] == version and run.data.params["current_uri"] == drifted
    assert run.data.metrics["drift_share"] == pytest.approx(summary["drift_share"])
    assert run.data.metrics["psi_spend_30d"] == pytest.approx(summary["features"]["spend_30d"]["psi"])
    client = MlflowClient(mlflow_conn.tracking_uri)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "drift_report.json",
        "drift_report.html",
    }
    mlflow.set_tracking_uri(mlflow_conn.tracking_uri)
    report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/drift_report.json")
    assert report["drifted_features"] == summary["drifted_features"]
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/drift_report.html")
    assert '<tr class="drift"><td>spend_30d</td>' in page

    # Other thresholds are another detection: a second run, not a reuse.
    lenient = detect(name, drifted, thresholds={"*": {"psi": 100.0, "js": 1.0}})
    assert lenient["reused"] is False and lenient["dataset_drift"] is False
    assert len(drift_runs(mlflow_conn.tracking_uri, name)) == 2
    assert detect(name, drifted)["reused"] is True


def test_feature_columns_limit_the_test(mlflow_conn, model, tmp_path) -> None:
    name, _ = model
    summary = detect(name, write_partition(tmp_path, DRIFT_FROM), feature_columns=["plan", "tenure_days"])
    assert set(summary["features"]) == {"plan", "tenure_days"} and summary["dataset_drift"] is False
    with pytest.raises(ConfigurationError, match=r"\['colour'\] are not in the reference sample"):
        detect(name, write_partition(tmp_path, DRIFT_FROM), feature_columns=["colour"])


def test_a_model_without_a_reference_sample_is_refused_clearly(mlflow_conn, tmp_path) -> None:
    name, version = champion(mlflow_conn.tracking_uri, None, tmp_path)
    quiet = write_partition(tmp_path, START)
    with pytest.raises(
        DataNotFound, match=rf"Version {version} of '{name}'.*no reference/sample.parquet.*Retrain"
    ):
        detect(name, quiet)
    assert drift_runs(mlflow_conn.tracking_uri, name) == []


def test_missing_alias_data_and_bad_thresholds(mlflow_conn, model, tmp_path) -> None:
    name, _ = model
    with pytest.raises(DataNotFound, match="has no 'production' alias"):
        detect(name, write_partition(tmp_path, START), alias="production")
    with pytest.raises(DataNotFound, match=r"nope\.parquet"):
        detect(name, str(tmp_path / "nope.parquet"))
    with pytest.raises(ConfigurationError, match="unknown key"):
        DriftDetectOperator(
            task_id="d", name=name, current_uri="x", thresholds={"spend_30d": {"pvalue": 0.1}}
        )
    with pytest.raises(ConfigurationError, match=r"\['spend30d'\] that are not tested"):
        detect(name, write_partition(tmp_path, START), thresholds={"spend30d": {"psi": 0.3}})


def test_the_trainers_reference_sample_feeds_the_operator(mlflow_conn, tmp_path) -> None:
    """End to end: the real trainer logs reference/sample.parquet and the operator finds it."""
    from tests.trainer.conftest import FAST, run_trainer
    from tests.training_data import build_training_set

    training_set = build_training_set(tmp_path / "train")
    done = run_trainer(
        training_set,
        mlflow_conn.tracking_uri,
        "drift-trainer",
        "--hyperparameters",
        json.dumps(FAST),
        xcom_dir=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads((tmp_path / "return.json").read_text())["run_id"]
    mlflow.set_tracking_uri(mlflow_conn.tracking_uri)
    sample = pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/reference/sample.parquet"))
    assert "churned" not in sample.columns and "customer_id" not in sample.columns
    assert {"plan", "country", "spend_30d"} <= set(sample.columns) and 0 < len(sample) <= 10_000
    name = unique_name("drift-trained")
    version = MLflowRegisterModelOperator(task_id="register", name=name, run_id=run_id).execute(
        task_context()
    )["version"]
    MlflowClient(mlflow_conn.tracking_uri).set_registered_model_alias(name, "champion", version)

    # The training set's customers (500 a day), a few days later and after the drift started.
    quiet = detect(name, write_partition(tmp_path, START + dt.timedelta(days=8), rows=500))
    drifted = detect(name, write_partition(tmp_path, DRIFT_FROM, rows=500))

    assert quiet["dataset_drift"] is False and quiet["model_version"] == version
    assert set(quiet["features"]) == set(sample.columns)
    assert drifted["dataset_drift"] is True and "spend_30d" in drifted["drifted_features"]
