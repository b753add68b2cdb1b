"""TrainModelOperator: the local backend runs the real trainer against a real MLflow server."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from mlops_provider.exceptions import (
    ConfigurationError,
    TrainerContractError,
    TrainingFailed,
    TrainingInputRejected,
)
from mlops_provider.operators.training import TrainModelOperator
from mlops_provider.trainer.command import trainer_command
from tests.training_data import build_training_set

SENTINEL_PASSWORD = "sentinel-local-Pa55-4d1e"
FAST = {"epochs": 2, "lr": 0.01, "batch_size": 128, "hidden": [8]}


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_training_set(tmp_path_factory.mktemp("trainset"), days=5, rows_per_day=400)


@pytest.fixture(scope="module")
def evaluation_set(tmp_path_factory: pytest.TempPathFactory, training_set: Path) -> Path:
    """The labelled snapshot day after the training set's."""
    import pandas as pd

    directory = tmp_path_factory.mktemp("evalset")
    longer = pd.read_parquet(build_training_set(directory, days=6, rows_per_day=400))
    path = directory / "evaluation_set.parquet"
    longer[longer["event_timestamp"] > pd.read_parquet(training_set)["event_timestamp"].max()].to_parquet(
        path
    )
    return path


@pytest.fixture
def mlflow_conn(mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The server needs no auth; the credentials are there to prove they never reach the log.
    conn = {
        "conn_type": "mlflow",
        "host": mlflow_server.tracking_uri,
        "login": "u",
        "password": SENTINEL_PASSWORD,
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    return mlflow_server


def captured(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    out, err = capfd.readouterr()
    return out + err + caplog.text


def test_local_backend_returns_the_trainer_contract_and_streams_logs(
    training_set: Path,
    evaluation_set: Path,
    mlflow_conn: Any,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow import MlflowClient

    caplog.set_level("INFO")
    operator = TrainModelOperator(
        task_id="train",
        training_set_uri=str(training_set),
        evaluation_set_uri=str(evaluation_set),
        label_column="churned",
        id_columns=["customer_id"],
        timestamp_column="event_timestamp",
        hyperparameters=json.dumps(FAST),
        experiment="local",
    )
    result = operator.execute(context={})
    assert set(result) == {"run_id", "model_uri", "metrics"}
    assert result["metrics"]["eval_rows"] == 400 and 0.5 < result["metrics"]["eval_roc_auc"] <= 1.0
    run = MlflowClient(mlflow_conn.tracking_uri).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2"
    log = captured(capfd, caplog)
    assert "epoch 1/2 train_loss=" in log and "epoch 2/2 train_loss=" in log
    assert SENTINEL_PASSWORD not in log
    assert json.loads(json.dumps(result)) == result  # XCom-serialisable


def test_rejected_training_set_fails_without_retry(training_set: Path, mlflow_conn: Any) -> None:
    operator = TrainModelOperator(
        task_id="train",
        training_set_uri=str(training_set),
        label_column="nope",
        timestamp_column="event_timestamp",
        experiment="local",
    )
    with pytest.raises(TrainingInputRejected, match="has no column 'nope'") as raised:
        operator.execute(context={})
    assert isinstance(raised.value, TrainingFailed)


def test_crashing_trainer_fails_the_task_with_its_last_lines(training_set: Path, mlflow_conn: Any) -> None:
    operator = TrainModelOperator(
        task_id="train",
        training_set_uri=str(training_set),
        label_column="churned",
        timestamp_column="event_timestamp",
        experiment="local",
        hyperparameters={"lr": -1.0, "epochs": 1},
    )
    with pytest.raises(TrainingFailed, match="exited with code 1") as raised:
        operator.execute(context={})
    assert "Invalid learning rate" in str(raised.value)
    assert not isinstance(raised.value, TrainingInputRejected)


def test_unknown_backend_is_a_configuration_error() -> None:
    operator = TrainModelOperator(
        task_id="train", training_set_uri="x.parquet", label_column="y", experiment="e", backend="slurm"
    )
    with pytest.raises(ConfigurationError, match="unknown training backend 'slurm'"):
        operator.execute(context={})


def test_missing_mlflow_connection_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    operator = TrainModelOperator(
        task_id="train",
        training_set_uri="x.parquet",
        label_column="y",
        experiment="e",
        mlflow_conn_id="no_such_mlflow",
    )
    with pytest.raises(ConfigurationError, match="'no_such_mlflow' is not defined"):
        operator.execute(context={})


def test_kubernetes_backend_builds_the_pod_with_the_same_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.client import ApiClient

    from tests.operators.test_kubernetes import KUBECONFIG

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": "http://mlflow:5000"})
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    operator = TrainModelOperator(
        task_id="train",
        backend="kubernetes",
        training_set_uri="s3://mlops/training.parquet",
        evaluation_set_uri="s3://mlops/evaluation.parquet",
        label_column="churned",
        experiment="churn",
        hyperparameters="{'epochs': 4}",  # how Jinja renders a dict param without native rendering
        kubernetes_kwargs={"config_file": str(kubeconfig), "gpus": 2, "namespace": "ml"},
    )
    pod_operator = operator.pod_operator()
    ti = types.SimpleNamespace(dag_id="d", task_id="train", map_index=-1, try_number=1)
    pod = ApiClient().sanitize_for_serialization(
        pod_operator.build_pod_request_obj({"ti": ti, "run_id": "r", "dag": types.SimpleNamespace()})
    )
    base = pod["spec"]["containers"][0]
    assert base["args"] == trainer_command(
        "s3://mlops/training.parquet",
        label="churned",
        experiment="churn",
        hyperparameters={"epochs": 4},
        evaluation_set_uri="s3://mlops/evaluation.parquet",
    )
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["metadata"]["namespace"] == "ml"


def test_template_fields_cover_every_user_string() -> None:
    assert set(TrainModelOperator.template_fields) == {
        "backend",
        "training_set_uri",
        "evaluation_set_uri",
        "label_column",
        "hyperparameters",
        "experiment",
        "id_columns",
        "model_task_type",
        "timestamp_column",
        "feature_columns",
        "mlflow_conn_id",
        "command",
        "kubernetes_kwargs",
    }


SKLEARN_TRAINER = Path(__file__).parents[2] / "docs" / "examples" / "trainers" / "sklearn_trainer.py"


@pytest.fixture(scope="module")
def keyed_training_set(tmp_path_factory: pytest.TempPathFactory, training_set: Path) -> Path:
    """The training set as FeastHistoricalFeaturesOperator writes it: keys and timestamp in its metadata."""
    import pyarrow.parquet as pq

    from mlops_provider.constants import JOIN_KEYS_METADATA, TIMESTAMP_COLUMN_METADATA

    table = pq.read_table(training_set)
    metadata = {
        **(table.schema.metadata or {}),
        JOIN_KEYS_METADATA: "customer_id",
        TIMESTAMP_COLUMN_METADATA: "event_timestamp",
    }
    path = tmp_path_factory.mktemp("keyed") / "training_set.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


def test_your_own_trainer_runs_with_the_contracts_arguments_and_its_result_is_checked(
    keyed_training_set: Path,
    evaluation_set: Path,
    mlflow_conn: Any,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bring your own trainer: the docs' scikit-learn trainer, run by the same operator. The keys and
    the timestamp are not given: they come from the training set's feature service (its metadata)."""
    from mlflow import MlflowClient

    from mlops_provider.hooks.mlflow import MLflowHook

    caplog.set_level("INFO")
    operator = TrainModelOperator(
        task_id="train",
        command=f"{sys.executable} {SKLEARN_TRAINER}",
        training_set_uri=str(keyed_training_set),
        evaluation_set_uri=str(evaluation_set),
        label_column="churned",
        hyperparameters={"C": 0.5},
        experiment="byo-trainer",
    )
    result = operator.execute(context={})
    expected = "--id-columns customer_id --task-type binary --timestamp-column event_timestamp"
    assert expected in captured(capfd, caplog)
    assert 0.5 < result["metrics"]["eval_roc_auc"] <= 1.0
    inputs = MLflowHook("mlflow_default").model_inputs(result["model_uri"])
    assert inputs and "customer_id" not in inputs and "event_timestamp" not in inputs
    client = MlflowClient(mlflow_conn.tracking_uri)
    assert client.get_run(result["run_id"]).info.status == "FINISHED"
    artifacts = [a.path for a in client.list_artifacts(result["run_id"], "reference")]
    assert artifacts == ["reference/sample.parquet"]


def _logged(tracking_uri: str, columns: list[str]) -> dict[str, Any]:
    """A run with a model whose signature takes ``columns``."""
    import mlflow
    import pandas as pd

    from tests.mlflow_helpers import ChurnRuleModel

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("contract-check")
    frame = pd.DataFrame({c: [1.0, 2.0] for c in columns})
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ChurnRuleModel("constant"),
            signature=mlflow.models.infer_signature(frame, [0.5, 0.5]),
            pip_requirements=["mlflow"],
        )
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "metrics": {}}


def test_the_contract_check_names_what_a_trainer_got_wrong(mlflow_conn: Any) -> None:
    operator = TrainModelOperator(
        task_id="train",
        training_set_uri="unused.parquet",
        label_column="y",
        id_columns="order_id,store_id",
        experiment="x",
    )
    with pytest.raises(TrainerContractError, match=r"missing \['model_uri', 'metrics'\]"):
        operator.check_contract({"run_id": "r"})
    leaky = _logged(mlflow_conn.tracking_uri, ["amount", "store_id"])
    with pytest.raises(TrainerContractError, match=r"signature takes \['store_id'\]"):
        operator.check_contract(leaky)
    clean = _logged(mlflow_conn.tracking_uri, ["amount", "basket_size"])
    assert operator.check_contract(clean) == clean
