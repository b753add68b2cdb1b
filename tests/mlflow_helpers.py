"""Fixtures and tiny models for the MLflow tests: a connection to the real server, models, held-out data.

The models follow the provider's contract: ``predict(features)`` returns a DataFrame with
``probability`` (P(churned=1)) and ``prediction`` (0/1).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_provider.example_data.generator import (
    GeneratorConfig,
    activity_table,
    churn_probability,
    labels_table,
)

SENTINEL_PASSWORD = "s3ntinel-Pa55word-7f3c91"
SENTINEL_TOKEN = "s3ntinel-T0ken-a81b22"
HYPERPARAMETERS = {"lr": 0.01, "epochs": 3}


class ChurnRuleModel(mlflow.pyfunc.PythonModel):
    """A fixed churn rule: ``truth`` (the generator's own model), ``weak`` (one feature), ``constant``, or
    ``flaky`` (the truth, but raises on any request holding one of the ~20 % of customers with
    ``tenure_days % 5 == 0``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.kind == "flaky" and (model_input["tenure_days"].to_numpy() % 5 == 0).any():
            raise RuntimeError("flaky model: cannot score a tenure divisible by 5")
        if self.kind in ("truth", "flaky"):
            proba = churn_probability({c: model_input[c].to_numpy() for c in model_input.columns})
        elif self.kind == "weak":
            proba = 1.0 / (1.0 + np.exp(-(-1.6 + 0.9 * model_input["failed_payments_90d"].to_numpy())))
        else:
            proba = np.full(len(model_input), 0.3)
        proba = np.asarray(proba, dtype=float)
        return pd.DataFrame({"probability": proba, "prediction": (proba >= 0.5).astype(int)})


def log_model(tracking_uri: str, kind: str, *, tags: dict[str, str] | None = None) -> dict[str, str]:
    """Log a ChurnRuleModel into a new run on the server; return its run id and model URI."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlops-tests")
    with mlflow.start_run() as run:
        mlflow.set_tags(tags or {})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=ChurnRuleModel(kind), pip_requirements=["mlflow"]
        )
    return {"run_id": run.info.run_id, "model_uri": info.model_uri}


def unique_name(prefix: str = "churn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def task_context(**extra: Any) -> dict[str, Any]:
    """The parts of an Airflow context that the MLflow operators read."""
    return {
        "dag_run": SimpleNamespace(dag_id="churn_training", run_id="scheduled__2026-01-03T00:00:00+00:00"),
        "data_interval_start": dt.datetime(2026, 1, 3, tzinfo=dt.UTC),
        "data_interval_end": dt.datetime(2026, 1, 4, tzinfo=dt.UTC),
        **extra,
    }


def connection_env(tracking_uri: str, **extra: Any) -> str:
    """AIRFLOW_CONN_MLFLOW_DEFAULT for the server, with sentinel credentials that must never leak."""
    return json.dumps(
        {
            "conn_type": "mlflow",
            "host": tracking_uri,
            "login": "mlops",
            "password": SENTINEL_PASSWORD,
            "extra": {"token": SENTINEL_TOKEN, "http_max_retries": 0, **extra},
        }
    )


@pytest.fixture
def mlflow_conn(mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point ``mlflow_default`` at the session's MLflow server."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(mlflow_server.tracking_uri))
    return mlflow_server


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 labelled customers of 2026-01-03 (features joined with the labels that land two days later)."""
    cfg = GeneratorConfig(rows_per_day=300)
    day = dt.date(2026, 1, 3)
    features = activity_table(cfg, day).to_pandas()
    labels = labels_table(cfg, day + dt.timedelta(days=2)).to_pandas()[["customer_id", "churned"]]
    data = features.drop(columns=["event_timestamp"]).merge(labels, on="customer_id")
    path = tmp_path_factory.mktemp("eval") / "holdout.parquet"
    data.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def models(mlflow_server: Any) -> dict[str, dict[str, str]]:
    """One logged run per kind of model, shared by the session (registration never changes a run)."""
    kinds = ("truth", "weak", "constant", "flaky")
    return {kind: log_model(mlflow_server.tracking_uri, kind) for kind in kinds}
