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
FAST: dict[str, Any] = {"epochs": 5, "lr": 0.1, "batch_size": 64, "hidden": [32], "patience": 5}
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
    # The example data's label, key and timestamp (its file carries no metadata naming them); a case may
    # repeat a flag to override it (argparse keeps the last).
    argv += ["--experiment", experiment, "--label", "churned", "--id-columns", "customer_id"]
    argv += ["--timestamp-column", "event_timestamp", *extra]
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


# -- small synthetic sets for the three task types -------------------------------------------------------
TABULAR_LABEL, TABULAR_TIMESTAMP, TABULAR_KEY = "target", "observed_at", "account"
TABULAR_FEATURES = ("x", "z", "colour")
TABULAR_DAYS = 6
# Few rows and epochs, but enough to learn the easy targets below well above chance.
TABULAR_FAST: dict[str, Any] = {"epochs": 8, "lr": 0.03, "batch_size": 32, "hidden": [16], "patience": 8}


def tabular_frame(task_type: str, *, rows: int = 360, seed: int = 0, first_day: int = 0) -> Any:
    """Rows over ``TABULAR_DAYS`` days (from ``first_day``) whose label ``x``, ``z`` and ``colour`` decide.

    binary: ``x > 0``; multiclass: ``low``/``mid``/``high`` by ``x`` (separable); regression: a linear
    target with a little noise. ``account`` is a key and ``observed_at`` the event time.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    days = first_day + np.arange(rows) % TABULAR_DAYS
    frame = pd.DataFrame(
        {
            TABULAR_KEY: np.arange(rows) + seed * 100_000,
            TABULAR_TIMESTAMP: pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(days, unit="D"),
            "x": x,
            "z": z,
            "colour": colour,
        }
    )
    labels = {
        "binary": (x > 0).astype(np.int64),
        "multiclass": np.select([x < -0.5, x > 0.5], ["low", "high"], "mid"),
        "regression": 3 * x - 2 * z + 1.5 * (colour == "red") + rng.normal(scale=0.1, size=rows),
    }
    return frame.assign(**{TABULAR_LABEL: labels[task_type]})


def write_parquet(frame: Any, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``frame`` with pyarrow, adding ``metadata`` to the schema's key-value metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    extra = {key.encode(): value.encode() for key, value in (metadata or {}).items()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **extra}), path)
    return path


def feast_metadata() -> dict[str, str]:
    """The metadata the Feast operator writes on a training set: its timestamp column and join keys."""
    from mlops_provider.constants import JOIN_KEYS_METADATA, TIMESTAMP_COLUMN_METADATA

    return {TIMESTAMP_COLUMN_METADATA: TABULAR_TIMESTAMP, JOIN_KEYS_METADATA: TABULAR_KEY}
