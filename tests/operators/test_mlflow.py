"""MLflow operators against a real ``mlflow server``: registration, lineage, aliases, the gate."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_provider.constants import TASK_TYPE_TAG
from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable
from mlops_provider.ml.lineage import hyperparameters_hash
from mlops_provider.operators.mlflow import (
    MLflowDeleteAliasOperator,
    MLflowEvaluateGateOperator,
    MLflowFindModelVersionOperator,
    MLflowRegisterModelOperator,
    MLflowSetAliasOperator,
)
from tests.mlflow_helpers import (
    HYPERPARAMETERS,
    SENTINEL_PASSWORD,
    SENTINEL_TOKEN,
    log_model,
    task_context,
    unique_name,
)

# Absolute bounds; the champion comparison is the confidence interval (the operator's defaults).
THRESHOLDS = {
    "roc_auc": {"threshold": 0.6, "greater_is_better": True},
    "log_loss": {"threshold": 1.0, "greater_is_better": False},
}
HOLDOUT_ROWS = 2000


@pytest.fixture(scope="module")
def holdout(tmp_path_factory) -> Path:
    """A held-out day big enough for the gate: 2,000 labelled customers of 2026-01-03 (~160 churned);
    ``eval_data`` (300 rows, ~24 churned) is too small for the gate's default minimum evidence."""
    from mlops_provider.example_data.generator import GeneratorConfig, activity_table, labels_table

    cfg, day = GeneratorConfig(rows_per_day=HOLDOUT_ROWS), dt.date(2026, 1, 3)
    labels = labels_table(cfg, day + dt.timedelta(days=2)).to_pandas()[["customer_id", "churned"]]
    data = (
        activity_table(cfg, day).to_pandas().drop(columns=["event_timestamp"]).merge(labels, on="customer_id")
    )
    path = tmp_path_factory.mktemp("holdout") / "holdout.parquet"
    data.to_parquet(path, index=False)
    return path


def _register(name: str, task_id: str = "register", **kwargs) -> dict:
    return MLflowRegisterModelOperator(task_id=task_id, name=name, **kwargs).execute(task_context())


def _gate(name: str, version: str, eval_data, **kwargs) -> dict:
    op = MLflowEvaluateGateOperator(
        task_id="gate",
        name=name,
        version=version,
        eval_data_uri=str(eval_data),
        label=kwargs.pop("label", "churned"),
        thresholds=kwargs.pop("thresholds", THRESHOLDS),
        short_circuit_on_fail=False,
        **kwargs,
    )
    return op.execute(task_context())


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).aliases)


def test_register_sets_lineage_and_copies_run_tags(mlflow_conn, eval_data) -> None:
    tags = {"mlops.data_fingerprint": "fp-1", "mlops.code_version": "git-abc", "other": "not copied"}
    logged = log_model(mlflow_conn.tracking_uri, "truth", tags=tags)
    name = unique_name()

    result = _register(
        name,
        run_id=logged["run_id"],
        lineage_tags={"feature_service": "churn_model_v1", "training_set_uri": "s3://b/train.parquet"},
    )

    assert result == {
        "name": name,
        "version": "1",
        "model_uri": f"models:/{name}/1",
        "run_id": logged["run_id"],
        "created": True,
    }
    mv = MlflowClient(mlflow_conn.tracking_uri).get_model_version(name, "1")
    assert mv.run_id == logged["run_id"]
    assert mv.tags["mlops.dag_id"] == "churn_training"
    assert mv.tags["mlops.dag_run_id"] == "scheduled__2026-01-03T00:00:00+00:00"
    assert mv.tags["mlops.data_interval_start"] == "2026-01-03T00:00:00+00:00"
    assert mv.tags["mlops.data_interval_end"] == "2026-01-04T00:00:00+00:00"
    assert mv.tags["mlops.feature_service"] == "churn_model_v1"
    assert mv.tags["mlops.training_set_uri"] == "s3://b/train.parquet"
    assert mv.tags["mlops.data_fingerprint"] == "fp-1"
    assert mv.tags["mlops.code_version"] == "git-abc"
    assert "other" not in mv.tags


@pytest.mark.parametrize("source", ["model_uri", "runs_uri", "run_id"])
def test_register_three_times_gives_one_version(mlflow_conn, models, source) -> None:
    logged, name = models["weak"], unique_name()
    kwargs = {
        "model_uri": {"model_uri": logged["model_uri"]},
        "runs_uri": {"model_uri": f"runs:/{logged['run_id']}/model"},
        "run_id": {"run_id": logged["run_id"]},
    }[source]

    results = [_register(name, **kwargs) for _ in range(3)]

    assert [r["created"] for r in results] == [True, False, False]
    assert {r["version"] for r in results} == {"1"}
    assert {r["run_id"] for r in results} == {logged["run_id"]}
    assert len(MlflowClient(mlflow_conn.tracking_uri).search_model_versions(f"name = '{name}'")) == 1


def test_register_needs_a_model(mlflow_conn) -> None:
    with pytest.raises(ConfigurationError, match="needs model_uri or run_id"):
        _register(unique_name())


def test_server_down_during_registration_then_retry_without_duplicate(mlflow_conn, models) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    name = unique_name()
    _register(name, run_id=models["weak"]["run_id"])
    mlflow_conn.stop()
    try:
        with pytest.raises(ServiceUnavailable) as err:
            _register(name, run_id=models["truth"]["run_id"])
    finally:
        mlflow_conn.start()
    message = str(err.value)
    assert mlflow_conn.tracking_uri in message and "Retrying the task is safe" in message
    assert SENTINEL_PASSWORD not in message

    # The server may have committed the version before dying: simulate that, then retry twice.
    model_id = models["truth"]["model_uri"].removeprefix("models:/")
    client.create_model_version(
        name, models["truth"]["model_uri"], run_id=models["truth"]["run_id"], model_id=model_id
    )
    retries = [_register(name, run_id=models["truth"]["run_id"]) for _ in range(2)]

    assert [r["created"] for r in retries] == [False, False]
    assert {r["version"] for r in retries} == {"2"}
    assert len(client.search_model_versions(f"name = '{name}'")) == 2


def test_set_and_delete_alias_are_idempotent(mlflow_conn, models) -> None:
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    version = _register(name, run_id=models["weak"]["run_id"])["version"]
    set_op = MLflowSetAliasOperator(task_id="set", name=name, alias="champion", version=version)
    delete_op = MLflowDeleteAliasOperator(task_id="delete", name=name, alias="champion")

    assert [set_op.execute({})["changed"] for _ in range(2)] == [True, False]
    assert _aliases(client, name) == {"champion": "1"}
    assert [delete_op.execute({})["changed"] for _ in range(2)] == [True, False]
    assert _aliases(client, name) == {}


def test_find_version_by_fingerprint(mlflow_conn) -> None:
    tags = {
        "mlops.data_fingerprint": "fp-42",
        "mlops.code_version": "trainer:1.2.0",
        "mlops.hyperparameters_hash": hyperparameters_hash(HYPERPARAMETERS),
    }
    logged = log_model(mlflow_conn.tracking_uri, "weak", tags=tags)
    name = unique_name()
    find = {"data_fingerprint": "fp-42", "code_version": "trainer:1.2.0", "hyperparameters": HYPERPARAMETERS}

    before = MLflowFindModelVersionOperator(task_id="find", name=name, **find).execute({})
    _register(name, run_id=logged["run_id"])
    after = MLflowFindModelVersionOperator(task_id="find", name=name, **find).execute({})
    other = MLflowFindModelVersionOperator(
        task_id="find", name=name, **{**find, "hyperparameters": {**HYPERPARAMETERS, "lr": 0.1}}
    ).execute({})

    assert before["found"] is False and other["found"] is False
    assert after == {
        "found": True,
        "name": name,
        "version": "1",
        "model_uri": f"models:/{name}/1",
        "run_id": logged["run_id"],
    }


def test_gate_first_model_passes_on_absolute_thresholds_with_enough_evidence(
    mlflow_conn, models, holdout
) -> None:
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    version = _register(name, run_id=models["truth"]["run_id"])["version"]

    result = _gate(name, version, holdout)

    assert result["decision"] == "pass" and "first model" in result["reasons"][0]
    assert result["champion"] is None and result["comparison"] is None
    assert result["n"] == HOLDOUT_ROWS and result["positives"] >= 100
    assert set(result["candidate"]) == {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"}
    assert result["candidate"]["roc_auc"] > 0.7
    assert _aliases(client, name) == {"challenger": version}
    gate_run = client.get_run(result["gate_run_id"])
    assert gate_run.data.tags["mlops.gate.decision"] == "pass"
    assert gate_run.data.metrics["candidate_roc_auc"] == pytest.approx(result["candidate"]["roc_auc"])
    tags = client.get_model_version(name, version).tags
    assert tags["mlops.gate.n"] == str(HOLDOUT_ROWS) and "mlops.gate.ci_low" not in tags


def test_gate_better_challenger_passes_records_the_evidence_and_rerun_reuses(
    mlflow_conn, models, holdout, caplog, capsys
) -> None:
    caplog.set_level(logging.INFO)
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    champion = _register(name, run_id=models["weak"]["run_id"])["version"]
    client.set_registered_model_alias(name, "champion", champion)
    candidate = _register(name, run_id=models["truth"]["run_id"])["version"]

    results = [_gate(name, candidate, holdout) for _ in range(3)]

    first = results[0]
    assert first["decision"] == "pass", first["reasons"]
    assert first["champion"]["version"] == champion
    comparison = first["comparison"]
    assert comparison["method"] == "delong" and comparison["metric"] == "roc_auc"
    # Both metrics are recorded to 6 digits, so their difference matches to within that rounding.
    assert comparison["difference"] == pytest.approx(
        first["candidate"]["roc_auc"] - first["champion"]["roc_auc"], abs=2e-6
    )
    assert 0 < comparison["ci_low"] < comparison["difference"] < comparison["ci_high"]
    assert first["task_type"] == "binary"
    assert first["settings"] == {
        "task_type": "binary",
        "primary_metric": "roc_auc",
        "tolerance": 0.005,
        "confidence": 0.95,
        "require_improvement": False,
        "min_samples": 500,
        "min_positives": 50,
    }
    assert _aliases(client, name) == {"champion": champion, "challenger": candidate}
    assert [r["reused"] for r in results] == [False, True, True]
    assert {r["gate_run_id"] for r in results} == {first["gate_run_id"]}
    assert results[2]["comparison"] == comparison
    gate_run = client.get_run(first["gate_run_id"])
    assert {
        "candidate_roc_auc",
        "champion_roc_auc",
        "n",
        "positives",
        "difference",
        "ci_low",
        "ci_high",
    } <= set(gate_run.data.metrics)
    assert gate_run.data.metrics["ci_low"] == pytest.approx(comparison["ci_low"])
    assert gate_run.data.params["tolerance"] == "0.005" and gate_run.data.params["method"] == "delong"
    tags = client.get_model_version(name, candidate).tags
    assert tags["mlops.gate.n"] == str(HOLDOUT_ROWS)
    assert tags["mlops.gate.positives"] == str(first["positives"])
    assert float(tags["mlops.gate.ci_low"]) == pytest.approx(comparison["ci_low"])
    assert float(tags["mlops.gate.ci_high"]) == pytest.approx(comparison["ci_high"])
    assert float(tags["mlops.gate.difference"]) == pytest.approx(comparison["difference"])
    assert tags["mlops.gate.method"] == "delong" and tags["mlops.gate.confidence"] == "0.95"
    assert tags["mlops.task_type"] == "binary"  # the version had none: the gate's default is recorded
    logged = caplog.text + capsys.readouterr().out  # Airflow's task logger writes to stdout
    assert re.search(
        r"Gate roc_auc: candidate 0\.\d{3} vs champion 0\.\d{3}, difference \+0\.\d{3} "
        r"\[95% CI \+0\.\d{3}, \+0\.\d{3}\], n=2000 \(\d+ positives\): PASS \(non-inferior within 0\.005\)",
        logged,
    ), logged


def test_gate_key_holds_the_settings_so_a_stricter_gate_decides_again(mlflow_conn, models, holdout) -> None:
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    champion = _register(name, run_id=models["truth"]["run_id"])["version"]
    client.set_registered_model_alias(name, "champion", champion)
    retrained = log_model(mlflow_conn.tracking_uri, "truth")  # the same rule, another run: a new version
    candidate = _register(name, run_id=retrained["run_id"])["version"]

    lenient = _gate(name, candidate, holdout)
    strict = _gate(name, candidate, holdout, require_improvement=True)

    # The same model twice: the difference is exactly 0, non-inferior but not an improvement.
    assert lenient["comparison"]["difference"] == lenient["comparison"]["ci_low"] == 0.0
    assert lenient["decision"] == "pass" and strict["decision"] == "fail"
    assert strict["reused"] is False and strict["gate_run_id"] != lenient["gate_run_id"]
    assert "no improvement shown" in strict["reasons"][0]


def test_gate_worse_candidate_fails_and_leaves_aliases(mlflow_conn, models, holdout) -> None:
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    champion = _register(name, run_id=models["truth"]["run_id"])["version"]
    client.set_registered_model_alias(name, "champion", champion)
    client.set_registered_model_alias(name, "challenger", champion)
    candidate = _register(name, run_id=models["constant"]["run_id"])["version"]

    result = _gate(name, candidate, holdout)

    assert result["decision"] == "fail"
    assert "may be worse by more than 0.005" in result["reasons"][0]
    assert any("roc_auc 0.5000 is below the minimum 0.6" in reason for reason in result["reasons"])
    assert result["comparison"]["ci_high"] < -0.005
    assert _aliases(client, name) == {"champion": champion, "challenger": champion}
    tags = client.get_model_version(name, candidate).tags
    assert tags["mlops.gate.decision"] == "fail"
    assert "roc_auc" in tags["mlops.gate.reason"]
    assert tags["mlops.gate.run_id"] == result["gate_run_id"]


def test_gate_on_a_tiny_held_out_set_is_insufficient_evidence_and_promotes_nothing(
    mlflow_conn, models, eval_data
) -> None:
    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    first = _register(name, run_id=models["weak"]["run_id"])["version"]
    first_result = _gate(name, first, eval_data)  # no champion yet: the evidence rule holds all the same
    client.set_registered_model_alias(name, "champion", first)
    candidate = _register(name, run_id=models["truth"]["run_id"])["version"]

    result = _gate(name, candidate, eval_data)

    assert first_result["decision"] == result["decision"] == "insufficient_evidence"
    positives = result["positives"]
    assert result["n"] == 300 and 0 < positives < 50
    assert result["reasons"][0].startswith(
        f"insufficient evidence: 300 labelled row(s) with {positives} positive(s); the gate needs at least "
        "500 rows and 50 positives"
    )
    assert result["comparison"]["ci_low"] < result["comparison"]["ci_high"]  # recorded, not used
    assert _aliases(client, name) == {"champion": first}
    tags = client.get_model_version(name, candidate).tags
    assert tags["mlops.gate.decision"] == "insufficient_evidence"
    assert tags["mlops.gate.n"] == "300" and tags["mlops.gate.positives"] == str(positives)
    assert (
        "ci_low"
        in json.loads(client.get_run(result["gate_run_id"]).data.tags["mlops.gate.result"])["comparison"]
    )


def test_gate_change_thresholds_are_ignored_with_a_warning(
    mlflow_conn, models, holdout, caplog, capsys
) -> None:
    name = unique_name()
    version = _register(name, run_id=models["truth"]["run_id"])["version"]
    thresholds = {"roc_auc": {"threshold": 0.6, "min_absolute_change": 0.01, "greater_is_better": True}}

    result = _gate(name, version, holdout, thresholds=thresholds)

    assert result["decision"] == "pass"
    assert "roc_auc.min_absolute_change are ignored" in caplog.text + capsys.readouterr().out


def test_gate_rejects_unknown_metric_and_nonsense_settings(mlflow_conn, holdout) -> None:
    with pytest.raises(ConfigurationError, match="unknown metric 'auc'"):
        MLflowEvaluateGateOperator(
            task_id="gate",
            name="m",
            version="1",
            eval_data_uri="x",
            label="churned",
            thresholds={"auc": {"threshold": 0.5}},
        )
    with pytest.raises(ConfigurationError, match="confidence must be between 0 and 1"):
        MLflowEvaluateGateOperator(
            task_id="gate", name="m", version="1", eval_data_uri="x", label="churned", confidence=95
        )
    with pytest.raises(ConfigurationError, match="primary_metric 'auc' is unknown"):
        _gate("m", "1", holdout, primary_metric="auc")
    with pytest.raises(TypeError, match="label"):  # no default label: the provider assumes no dataset
        MLflowEvaluateGateOperator(task_id="gate", name="m", version="1", eval_data_uri="x")


def test_sentinel_credentials_never_reach_logs_or_xcom(
    mlflow_conn, models, eval_data, caplog, capsys
) -> None:
    caplog.set_level(logging.DEBUG)
    name = unique_name()
    results = [_register(name, run_id=models["truth"]["run_id"])]
    results.append(_gate(name, results[0]["version"], eval_data))
    results.append(MLflowSetAliasOperator(task_id="s", name=name, alias="champion", version="1").execute({}))

    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err + json.dumps(results)
    assert SENTINEL_PASSWORD not in text and SENTINEL_TOKEN not in text


@pytest.mark.parametrize(
    ("held_out", "decision"), [("holdout", "fail"), ("eval_data", "insufficient_evidence")]
)
def test_gate_without_a_pass_skips_downstream_and_keeps_decision_in_xcom(
    mlflow_conn, models, request, held_out, decision
) -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    client, name = MlflowClient(mlflow_conn.tracking_uri), unique_name()
    champion = _register(name, run_id=models["truth"]["run_id"])["version"]
    client.set_registered_model_alias(name, "champion", champion)
    candidate = _register(name, run_id=models["constant"]["run_id"])["version"]
    with DAG(dag_id="gate_short_circuit", schedule=None, start_date=dt.datetime(2026, 1, 1)):
        gate = MLflowEvaluateGateOperator(
            task_id="gate",
            name=name,
            version=candidate,
            eval_data_uri=str(request.getfixturevalue(held_out)),
            label="churned",
            thresholds=THRESHOLDS,
        )
        gate >> EmptyOperator(task_id="deploy") >> EmptyOperator(task_id="after_deploy")
    pushed: dict = {}
    # Only the XCom side of the task instance matters here; the runner turns the exception into skips.
    ti = type(
        "TI", (), {"map_index": -1, "xcom_push": lambda self, key, value: pushed.update({key: value})}
    )()

    with pytest.raises(DownstreamTasksSkipped) as skipped:
        gate.execute(task_context(task=gate, ti=ti))

    assert sorted(skipped.value.tasks) == ["after_deploy", "deploy"]
    assert pushed["return_value"]["decision"] == decision
    assert _aliases(client, name) == {"champion": champion}


# -- the gate on multiclass and regression models ------------------------------------------------------

CLASS_WEIGHTS = {"low": (-1.5, 0.0), "mid": (0.0, 0.0), "high": (1.5, 1.0)}  # the true class scores


class LinearClassModel(mlflow.pyfunc.PythonModel):
    """A multiclass model on the output contract: the softmax of one linear score of x1 and x2 per class."""

    def __init__(self, weights: dict[str, tuple[float, float]]) -> None:
        self.weights = weights

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        scores = np.column_stack(
            [w1 * model_input["x1"] + w2 * model_input["x2"] for w1, w2 in self.weights.values()]
        )
        probability = np.exp(scores - scores.max(axis=1, keepdims=True))
        probability /= probability.sum(axis=1, keepdims=True)
        classes = np.array(list(self.weights))
        output = {f"probability_{c}": probability[:, i] for i, c in enumerate(classes)}
        return pd.DataFrame(
            {
                "prediction": classes[probability.argmax(axis=1)],
                "probability": probability.max(axis=1),
                **output,
            }
        )


def _synthetic(seed: int, rows: int) -> pd.DataFrame:
    """Rows with two features, an entity key and a timestamp (neither a feature), a class drawn from
    CLASS_WEIGHTS' softmax and an energy reading in kWh (a linear function of x1 and x2 plus noise)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal((2, rows))
    frame = pd.DataFrame(
        {
            "meter_id": np.arange(rows),
            "event_timestamp": pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC"),
            "x1": x1,
            "x2": x2,
            "kwh": 20 + 3 * x1 + 2 * x2 + rng.standard_normal(rows),
        }
    )
    probability = LinearClassModel(CLASS_WEIGHTS).predict(None, frame)
    columns = [f"probability_{c}" for c in CLASS_WEIGHTS]
    cumulative = probability[columns].to_numpy().cumsum(axis=1)
    frame["level"] = np.array(list(CLASS_WEIGHTS))[(rng.random((rows, 1)) > cumulative).sum(axis=1)]
    return frame


def _log_run(tracking_uri: str, log: Callable[[], None], tags: dict[str, str] | None = None) -> str:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlops-tests")
    with mlflow.start_run() as run:
        mlflow.set_tags(tags or {})
        log()
    return run.info.run_id


@pytest.fixture(scope="module")
def synthetic_holdout(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "holdout.parquet"
    _synthetic(seed=1, rows=1200).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def task_models(mlflow_server) -> dict[str, str]:
    """Runs of scikit-learn regressors (a plain 1-D output) and multiclass pyfunc models, each with a
    signature of its features only: the champion sees x1, the candidate x1 and x2. Only the regressors'
    runs carry the task type tag."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    train, uri = _synthetic(seed=2, rows=1000), mlflow_server.tracking_uri
    runs = {}
    for kind, columns in {"weak": ["x1"], "good": ["x1", "x2"]}.items():
        features = train[columns]
        regressor = LinearRegression().fit(features, train["kwh"])
        runs[f"regression_{kind}"] = _log_run(
            uri,
            lambda regressor=regressor, features=features: mlflow.sklearn.log_model(
                regressor,
                name="model",
                signature=infer_signature(features),
                pip_requirements=["scikit-learn"],
            ),
            {TASK_TYPE_TAG: "regression"},
        )
        weights = CLASS_WEIGHTS if kind == "good" else {c: (w1, 0.0) for c, (w1, _) in CLASS_WEIGHTS.items()}
        runs[f"multiclass_{kind}"] = _log_run(
            uri,
            lambda weights=weights: mlflow.pyfunc.log_model(
                name="model",
                python_model=LinearClassModel(weights),
                signature=infer_signature(train[["x1", "x2"]]),
                pip_requirements=["mlflow"],
            ),
        )
    return runs


def _champion_and_candidate(client: MlflowClient, task: str, runs: dict[str, str]) -> tuple[str, str, str]:
    name = unique_name(task)
    champion = _register(name, run_id=runs[f"{task}_weak"])["version"]
    client.set_registered_model_alias(name, "champion", champion)
    return name, champion, _register(name, run_id=runs[f"{task}_good"])["version"]


def test_gate_judges_a_regression_candidate_by_rmse_with_the_task_type_from_its_tag(
    mlflow_conn, task_models, synthetic_holdout
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    name, champion, candidate = _champion_and_candidate(client, "regression", task_models)

    result = _gate(
        name,
        candidate,
        synthetic_holdout,
        label="kwh",
        thresholds={"rmse": {"threshold": 1.5}},
        tolerance=0.5,
    )

    assert result["decision"] == "pass", result["reasons"]
    assert result["task_type"] == result["settings"]["task_type"] == "regression"
    assert result["settings"]["primary_metric"] == "rmse" and result["settings"]["tolerance"] == 0.5
    assert set(result["candidate"]) == {"rmse", "mae", "r2"}
    # The candidate's rmse is the noise's (1 kWh); the champion misses x2's share too (sqrt(1 + 4)).
    assert result["candidate"]["rmse"] == pytest.approx(1.0, abs=0.15)
    assert result["champion"]["rmse"] == pytest.approx(5**0.5, abs=0.3)
    comparison = result["comparison"]
    assert comparison["metric"] == "rmse" and comparison["method"] == "paired_bootstrap"
    assert comparison["difference"] == pytest.approx(
        result["champion"]["rmse"] - result["candidate"]["rmse"], abs=2e-6
    )
    assert 0.5 < comparison["ci_low"] < comparison["difference"] < comparison["ci_high"]
    assert result["positives"] == result["n"] == 1200  # regression counts rows, not positives
    assert "n=1200: PASS (non-inferior within 0.5)" in result["reasons"][0]
    assert _aliases(client, name) == {"champion": champion, "challenger": candidate}
    assert client.get_model_version(name, candidate).tags[TASK_TYPE_TAG] == "regression"


def test_gate_on_a_regression_model_needs_a_tolerance_in_the_targets_units(
    mlflow_conn, task_models, synthetic_holdout
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    name, _, candidate = _champion_and_candidate(client, "regression", task_models)

    with pytest.raises(
        ConfigurationError, match=r"set tolerance in the target's units \(e\.g\. 0\.5 for an rmse"
    ):
        _gate(name, candidate, synthetic_holdout, label="kwh", thresholds={})
    with pytest.raises(
        ConfigurationError,
        match=r"thresholds on \['roc_auc', 'log_loss'\] do not apply to a regression model; use one of ",
    ):
        _gate(name, candidate, synthetic_holdout, label="kwh", tolerance=0.5)


def test_gate_judges_a_multiclass_candidate_by_log_loss_and_tags_the_task_type(
    mlflow_conn, task_models, synthetic_holdout
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    name, champion, candidate = _champion_and_candidate(client, "multiclass", task_models)

    result = _gate(name, candidate, synthetic_holdout, label="level", task_type="multiclass", thresholds={})

    assert result["decision"] == "pass", result["reasons"]
    assert result["champion"]["version"] == champion
    assert result["settings"]["primary_metric"] == "log_loss" and result["settings"]["tolerance"] == 0.005
    assert set(result["candidate"]) == {"accuracy", "macro_f1", "log_loss"}
    assert result["candidate"]["log_loss"] < result["champion"]["log_loss"]
    assert result["comparison"]["ci_low"] > 0
    rarest = int(pd.read_parquet(synthetic_holdout)["level"].value_counts().min())
    assert result["positives"] == rarest >= 50
    assert f"(rarest class {rarest} rows): PASS" in result["reasons"][0]
    assert client.get_model_version(name, candidate).tags[TASK_TYPE_TAG] == "multiclass"  # it had none


def test_gate_refuses_a_model_that_breaks_its_tasks_output_contract_or_an_unknown_task(
    mlflow_conn, models, eval_data
) -> None:
    name = unique_name()
    version = _register(name, run_id=models["truth"]["run_id"])["version"]  # a binary model's output

    with pytest.raises(
        ConfigurationError, match=rf"{name}' version 1 broke the output contract: a multiclass"
    ):
        _gate(name, version, eval_data, task_type="multiclass", thresholds={})
    with pytest.raises(ConfigurationError, match="Unknown task type 'ranking'"):
        _gate(name, version, eval_data, task_type="ranking")


@pytest.fixture(scope="module")
def postgres_mlflow(postgres_url, tmp_path_factory):
    """A second ``mlflow server`` whose backend store is the real PostgreSQL server."""
    from tests.mlflow_server import MLflowServer

    server = MLflowServer(tmp_path_factory.mktemp("mlflow-pg"))
    server.backend_store_uri = postgres_url
    server.start()
    yield server
    server.stop()


@pytest.mark.integration
def test_register_and_gate_on_postgres_backend(postgres_mlflow, holdout, monkeypatch) -> None:
    from tests.mlflow_helpers import connection_env

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(postgres_mlflow.tracking_uri))
    client, name = MlflowClient(postgres_mlflow.tracking_uri), unique_name()
    weak = log_model(postgres_mlflow.tracking_uri, "weak")
    truth = log_model(postgres_mlflow.tracking_uri, "truth")

    registered = [_register(name, run_id=weak["run_id"]) for _ in range(3)]  # re-runs reuse the version
    champion = registered[0]["version"]
    client.set_registered_model_alias(name, "champion", champion)
    registered = [_register(name, run_id=truth["run_id"]) for _ in range(3)]
    candidate = registered[0]["version"]
    result = _gate(name, candidate, holdout)

    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    assert result["decision"] == "pass"
    assert _aliases(client, name) == {"champion": champion, "challenger": candidate}
    assert client.get_model_version(name, candidate).tags["mlops.dag_id"] == "churn_training"
