"""The reference trainer, run for real on CPU against the session's real MLflow server.

``trained`` runs the trainer once (``python -m mlops_provider.trainer``, a few epochs) and is shared by
the CLI, run and serving tests; those modules sit in one xdist group so it runs once per session.
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
FAST = {"epochs": 3, "lr": 0.01, "batch_size": 128, "hidden": [16, 8], "patience": 5}
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
def trained(
    training_set: Path, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    xcom_dir = tmp_path_factory.mktemp("xcom")
    done = run_trainer(
        training_set,
        mlflow_server.tracking_uri,
        "trainer-ok",
        "--hyperparameters",
        json.dumps(FAST),
        xcom_dir=xcom_dir,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"process": done, "xcom": json.loads((xcom_dir / "return.json").read_text())}
