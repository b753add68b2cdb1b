"""Fixtures for running the shipped DAGs with dag.test(): a data root, a private Feast repo, MLflow."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import FEATURE_REPO


@pytest.fixture(scope="module")
def pipeline_env(tmp_path_factory, airflow_db):
    """A data root, a private Feast repo and the connection/variable the DAGs read, for one module."""
    root = tmp_path_factory.mktemp("pipeline")
    repo = root / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    mp = pytest.MonkeyPatch()
    mp.setenv(
        "AIRFLOW_CONN_FEAST_DEFAULT", json.dumps({"conn_type": "feast", "extra": {"repo_path": str(repo)}})
    )
    mp.setenv("AIRFLOW_VAR_MLOPS_DATA_ROOT", str(root / "data"))
    mp.delenv("MLOPS_OFFLINE_ROOT", raising=False)
    yield {"root": root / "data", "repo": repo, "landing": root / "data" / "landing", "monkeypatch": mp}
    mp.undo()


@pytest.fixture(scope="module")
def dag_mlflow(tmp_path_factory):
    """A private mlflow server per module: the shipped DAGs share one model name, and a module must not
    see the versions and aliases another module on the same xdist worker registered."""
    from tests.mlflow_server import MLflowServer

    server = MLflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run_dag(dag, **conf):
    """dag.test() with a run conf; return the run and its task states."""
    run = dag.test(run_conf=conf)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def features_then_training(
    pipeline_env, mlflow_server, *, start, days: int, rows: int, hyperparameters: dict, **training_conf
):
    """Generate ``days`` days; run feature_pipeline for each and label_pipeline for each day whose labels
    refer to one of them; then training_pipeline on the newest labelled day."""
    import datetime as dt

    from feature_pipeline import dag as features
    from label_pipeline import dag as labels
    from mlops_provider.example_data.generator import GeneratorConfig, generate
    from training_pipeline import dag as training

    pipeline_env["monkeypatch"].setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": mlflow_server.tracking_uri})
    )
    cfg = GeneratorConfig(rows_per_day=rows)
    generate(cfg, pipeline_env["landing"], start, days)
    landed = [start + dt.timedelta(days=i) for i in range(days)]
    for day in landed:
        run, states = run_dag(features, day=day.isoformat())
        assert run.state == "success", states
    for day in landed[cfg.label_delay_days :]:
        run, states = run_dag(labels, day=day.isoformat())
        assert run.state == "success", states
    newest = landed[-1] - dt.timedelta(days=cfg.label_delay_days)
    return run_dag(training, day=newest.isoformat(), hyperparameters=hyperparameters, **training_conf)
