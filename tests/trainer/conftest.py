"""The reference trainer, run for real on CPU against the session's real MLflow server.

``trained`` runs the trainer once (``python -m mlops_provider.trainer``, a few epochs) and is shared by
the CLI, run and serving tests; those modules sit in one xdist group so it runs once per session.
``evaluated`` runs it again with the same data and hyperparameters plus an evaluation set, the two
snapshot days after the training set's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.training_data import build_training_set

XDIST_GROUP = "trainer"
# A few fast epochs; the learning rate is high enough that the last epochs are worse than the best one.
FAST = {"epochs": 5, "lr": 0.1, "batch_size": 64, "hidden": [32], "patience": 5}
NULL_LABELS = 10


def run_trainer(
    training_set: Path | str, tracking_uri: str, experiment: str, *extra: str, xcom_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLOPS_XCOM_DIR": str(xcom_dir or "/nonexistent"),
    }
    argv = [sys.executable, "-m", "mlops_provider.trainer", "--training-set", str(training_set)]
    # The example data's label and key; a case may repeat a flag to override it (argparse keeps the last).
    argv += ["--experiment", experiment, "--label", "churned", "--id-columns", "customer_id", *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def runs_of(tracking_uri: str, experiment: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


@pytest.fixture(scope="session")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_training_set(tmp_path_factory.mktemp("trainset"), null_labels=NULL_LABELS, null_features=20)


@pytest.fixture(scope="session")
def evaluation_set(tmp_path_factory: pytest.TempPathFactory, training_set: Path) -> Path:
    """Two labelled snapshot days after the training set's, with a few null labels."""
    import pandas as pd

    directory = tmp_path_factory.mktemp("evalset")
    longer = pd.read_parquet(build_training_set(directory, days=8, null_labels=NULL_LABELS))
    trained_until = pd.read_parquet(training_set)["event_timestamp"].max()
    path = directory / "evaluation_set.parquet"
    longer[longer["event_timestamp"] > trained_until].to_parquet(path, index=False)
    return path


def _run_ok(
    xcom_dir: Path, tracking_uri: str, experiment: str, training_set: Path, *extra: str
) -> dict[str, Any]:
    done = run_trainer(
        training_set,
        tracking_uri,
        experiment,
        "--hyperparameters",
        json.dumps(FAST),
        *extra,
        xcom_dir=xcom_dir,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"process": done, "xcom": json.loads((xcom_dir / "return.json").read_text())}


@pytest.fixture(scope="session")
def evaluated(
    training_set: Path, evaluation_set: Path, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    xcom_dir = tmp_path_factory.mktemp("xcom-evaluated")
    return _run_ok(
        xcom_dir,
        mlflow_server.tracking_uri,
        "trainer-evaluated",
        training_set,
        "--evaluation-set",
        str(evaluation_set),
    )


@pytest.fixture(scope="session")
def trained(
    training_set: Path, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return _run_ok(tmp_path_factory.mktemp("xcom"), mlflow_server.tracking_uri, "trainer-ok", training_set)
