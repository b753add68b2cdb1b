"""Shared fixtures: an isolated Airflow home and database, generated data, and a private Feast repo.

Each xdist worker gets its own AIRFLOW_HOME and SQLite database, set before Airflow is imported.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = ROOT / "dags"
FEATURE_REPO = ROOT / "feature_repo"
START_DAY = dt.date(2026, 1, 1)

# Real servers shared by the whole session: `mlflow server`, Postgres and Prometheus on loopback; MLflow
# helpers; a canary rollout driven through the operators; KServe's InferenceService schema and an
# in-memory Kubernetes API.
pytest_plugins = [
    "tests.mlflow_server",
    "tests.mlflow_helpers",
    "tests.postgres",
    "tests.prometheus_server",
    "tests.canary_rollout",
    "tests.kserve_api",
]


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    home = Path(tempfile.mkdtemp(prefix=f"mlops-airflow-{worker}-"))
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_DIR)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
    # GX prints thousands of "Skipping registering function" lines under Airflow's structlog at INFO.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if str(DAGS_DIR) not in sys.path:
        sys.path.insert(0, str(DAGS_DIR))


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An initialised Airflow metadata database for dag.test(); one per xdist worker."""
    from airflow.utils import db

    db.resetdb()
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """Three clean days (2026-01-01..03) of 500 customers each, labels two days late."""
    from mlops_provider.example_data.generator import GeneratorConfig, generate

    root = tmp_path / "landing"
    generate(GeneratorConfig(rows_per_day=500), root, START_DAY, 3)
    return root


@pytest.fixture
def feature_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of feature_repo/ with its own registry, stores and data; wired to feast_default."""
    import json

    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    monkeypatch.delenv("MLOPS_OFFLINE_ROOT", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_DEFAULT", json.dumps({"conn_type": "feast", "extra": {"repo_path": str(repo)}})
    )
    return repo
