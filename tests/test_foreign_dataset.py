"""The public operators on a dataset that shares no name with the churn example.

A help desk routes tickets by priority: the entity key is ``ticket_id`` (text), the timestamp
``opened_at``, the label ``priority`` (three classes). Its own Feast repo, the reference trainer in
multiclass mode, the registry, the gate and batch scoring run unchanged, and nothing is told the
keys or the timestamp: they come from the feature service.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_provider.constants import CHAMPION, TASK_TYPE_TAG
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.ml.tasks import contract_violation
from mlops_provider.operators.canary import BatchScoreOperator
from mlops_provider.operators.feast import FeastApplyOperator, FeastHistoricalFeaturesOperator
from mlops_provider.operators.mlflow import (
    MLflowEvaluateGateOperator,
    MLflowRegisterModelOperator,
    MLflowSetAliasOperator,
)
from mlops_provider.operators.training import TrainModelOperator

FIRST_DAY = dt.date(2025, 3, 3)
DAYS = [FIRST_DAY + dt.timedelta(days=i) for i in range(6)]
TICKETS_PER_DAY = 500
CLASSES = ("low", "normal", "urgent")
MODEL = "ticket_priority"
FAST = {"epochs": 6, "lr": 0.01, "batch_size": 128, "hidden": [16]}
NOT_FEATURES = {"ticket_id", "opened_at", "priority"}

DEFINITIONS = """
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Int64, String
from feast.value_type import ValueType

ticket = Entity(name="ticket", join_keys=["ticket_id"], value_type=ValueType.STRING)
source = FileSource(name="ticket_source", path="{path}", timestamp_field="opened_at")
ticket_stats = FeatureView(
    name="ticket_stats",
    entities=[ticket],
    ttl=timedelta(hours=1),
    schema=[
        Field(name="channel", dtype=String),
        Field(name="customer_tier", dtype=String),
        Field(name="words", dtype=Int64),
        Field(name="attachments", dtype=Int64),
    ],
    source=source,
)
triage = FeatureService(name="triage_v1", features=[ticket_stats])
"""


def tickets(day: dt.date) -> pd.DataFrame:
    """A day's tickets: features and a priority that depends on them (plus noise), seeded by the day."""
    rng = np.random.default_rng(day.toordinal())
    n = TICKETS_PER_DAY
    channel = rng.choice(["email", "chat", "phone"], n)
    tier = rng.choice(["free", "pro", "enterprise"], n, p=[0.5, 0.35, 0.15])
    words = rng.poisson(60, n)
    attachments = rng.poisson(0.6, n)
    score = (
        (tier == "enterprise") * 1.6
        + (channel == "phone") * 1.0
        + attachments * 0.6
        - words / 80
        + rng.normal(0, 0.5, n)
    )
    priority = np.select([score < 0.0, score < 1.2], ["low", "normal"], "urgent")
    opened = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    return pd.DataFrame(
        {
            "ticket_id": [f"T{day:%Y%m%d}-{i:04d}" for i in range(n)],
            "opened_at": opened,
            "channel": channel,
            "customer_tier": tier,
            "words": words.astype("int64"),
            "attachments": attachments.astype("int64"),
            "priority": priority,
        }
    )


@pytest.fixture(scope="module")
def helpdesk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The help desk's Feast repo, its feature snapshots and one labelled entity file per day."""
    base = tmp_path_factory.mktemp("helpdesk")
    repo = base / "feature_repo"
    repo.mkdir()
    frames = {day: tickets(day) for day in DAYS}
    features = base / "ticket_stats.parquet"
    pd.concat(frames.values()).drop(columns="priority").to_parquet(features)
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(
            f"""\
            project: helpdesk
            provider: local
            registry: {base / "registry.db"}
            online_store:
              type: sqlite
              path: {base / "online.db"}
            offline_store:
              type: file
            entity_key_serialization_version: 3
            """
        )
    )
    (repo / "definitions.py").write_text(DEFINITIONS.format(path=features))
    labels = {}
    for day, frame in frames.items():
        labels[day] = base / "labels" / f"day={day}" / "labels.parquet"
        labels[day].parent.mkdir(parents=True)
        frame[["ticket_id", "opened_at", "priority"]].to_parquet(labels[day])
    return {"base": base, "repo": repo, "labels": labels}


@pytest.fixture
def connections(
    helpdesk: dict[str, Any], airflow_db: Any, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections as environment variables; the worker's Airflow database set up first, since an
    operator's lookups may open it and a later reset must find it in a known state."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_HELPDESK",
        json.dumps({"conn_type": "feast", "extra": {"repo_path": str(helpdesk["repo"])}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": mlflow_server.tracking_uri})
    )


def _outlet_events() -> Any:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return OutletEventAccessors()


def retrieve(helpdesk: dict[str, Any], days: list[dt.date], name: str) -> dict[str, Any]:
    return FeastHistoricalFeaturesOperator(
        task_id=name,
        feature_service="triage_v1",
        entity_df=[str(helpdesk["labels"][day]) for day in days],
        output_uri=str(helpdesk["base"] / "sets" / f"{name}.parquet"),
        feast_conn_id="feast_helpdesk",
    ).execute({"outlet_events": _outlet_events()})


def train(training: dict[str, Any], evaluation: dict[str, Any], hyperparameters: dict[str, Any]) -> dict:
    return TrainModelOperator(
        task_id="train",
        training_set_uri=training["uri"],
        evaluation_set_uri=evaluation["uri"],
        label_column="priority",
        task_type="multiclass",
        hyperparameters=hyperparameters,
        experiment="helpdesk",
    ).execute({})


def gate(version: str, evaluation: dict[str, Any]) -> dict[str, Any]:
    return MLflowEvaluateGateOperator(
        task_id="gate",
        name=MODEL,
        version=version,
        eval_data_uri=evaluation["uri"],
        label="priority",
        min_samples=300,
        min_positives=20,  # multiclass: rows of the rarest class
        experiment="helpdesk-gate",
        short_circuit_on_fail=False,
    ).execute({})


def test_the_operators_run_a_multiclass_pipeline_on_a_dataset_they_never_saw(
    helpdesk: dict[str, Any], connections: None, mlflow_server: Any
) -> None:
    from mlflow import MlflowClient

    FeastApplyOperator(task_id="apply", feast_conn_id="feast_helpdesk").execute({})
    training = retrieve(helpdesk, DAYS[:4], "training")
    evaluation = retrieve(helpdesk, DAYS[4:5], "evaluation")
    # The keys and the timestamp come from the feature service, not from anything we were told.
    assert training["join_keys"] == ["ticket_id"] and training["timestamp_column"] == "opened_at"
    assert training["rows"] == 4 * TICKETS_PER_DAY and evaluation["rows"] == TICKETS_PER_DAY

    first = train(training, evaluation, FAST)
    hook = MLflowHook()
    inputs = hook.model_inputs(first["model_uri"])
    assert inputs is not None and not NOT_FEATURES & set(inputs)
    assert sorted(inputs) == ["attachments", "channel", "customer_tier", "words"]
    assert first["metrics"]["eval_accuracy"] > 0.6  # three classes: chance is about 0.33 to 0.5
    assert 0 < first["metrics"]["eval_macro_f1"] <= 1

    v1 = MLflowRegisterModelOperator(task_id="register", name=MODEL, run_id=first["run_id"]).execute({})
    client = MlflowClient(mlflow_server.tracking_uri)
    assert client.get_model_version(MODEL, v1["version"]).tags[TASK_TYPE_TAG] == "multiclass"
    first_gate = gate(v1["version"], evaluation)
    assert first_gate["decision"] == "pass"
    assert set(first_gate["candidate"]) == {"accuracy", "macro_f1", "log_loss"}
    MLflowSetAliasOperator(task_id="champion", name=MODEL, alias=CHAMPION, version=v1["version"]).execute({})

    # A challenger trained longer, gated against the champion on the same held-out rows.
    second = train(training, evaluation, {**FAST, "epochs": 12, "seed": 7})
    v2 = MLflowRegisterModelOperator(task_id="register", name=MODEL, run_id=second["run_id"]).execute({})
    second_gate = gate(v2["version"], evaluation)
    comparison = second_gate["comparison"]
    assert comparison["metric"] == "log_loss" and comparison["n"] == TICKETS_PER_DAY
    assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
    assert second_gate["decision"] in {"pass", "fail", "insufficient_evidence"}

    # Batch scoring routes by the ticket key and logs the predicted class.
    scored = BatchScoreOperator(
        task_id="score",
        name=MODEL,
        features_uri=str(helpdesk["base"] / "sets" / "evaluation.parquet"),
        output_uri=str(helpdesk["base"] / "predictions.parquet"),
        entity_column="ticket_id",
    ).execute({})
    assert scored["rows"] == TICKETS_PER_DAY and scored["errors"] == 0
    log = pd.read_parquet(scored["output_uri"])
    assert set(log["prediction"]) <= set(CLASSES)
    assert log["probability"].between(1 / len(CLASSES), 1).all()
    champion = hook.load_model(MODEL, v1["version"])
    output = champion.predict(pd.read_parquet(evaluation["uri"])[inputs].head(5))
    assert contract_violation("multiclass", output.columns) is None
