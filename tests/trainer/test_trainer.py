"""The reference trainer, run for real on CPU against a real MLflow server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_provider.trainer import EXIT_BAD_INPUT, RESULT_MARKER
from tests.training_data import build_training_set

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
    argv += ["--experiment", experiment, *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def runs_of(tracking_uri: str, experiment: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_training_set(tmp_path_factory.mktemp("trainset"), null_labels=NULL_LABELS, null_features=20)


@pytest.fixture(scope="module")
def trained(
    training_set: Path, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    xcom_dir = tmp_path_factory.mktemp("xcom")
    done = run_trainer(
        training_set, mlflow_server.tracking_uri, "trainer-ok", "--hyperparameters", json.dumps(FAST),
        xcom_dir=xcom_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {"process": done, "xcom": json.loads((xcom_dir / "return.json").read_text())}


def test_result_contract_on_stdout_and_xcom_file(trained: dict[str, Any]) -> None:
    last_line = trained["process"].stdout.strip().splitlines()[-1]
    assert last_line.startswith(RESULT_MARKER)
    printed = json.loads(last_line.removeprefix(RESULT_MARKER))
    assert printed == trained["xcom"]
    assert set(printed) == {"run_id", "model_uri", "metrics"}
    assert {"val_auc", "val_accuracy", "val_log_loss", "val_loss"} <= set(printed["metrics"])
    assert printed["metrics"]["val_auc"] > 0.65  # the generator's signal is learnable in 3 epochs
    for epoch in (1, 2, 3):
        assert f"epoch {epoch}/3 train_loss=" in trained["process"].stderr


def test_run_logs_params_metrics_tags_and_reference_stats(
    trained: dict[str, Any], training_set: Path, mlflow_server: Any
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from mlops_provider.hooks.mlflow import hyperparameters_hash

    client = MlflowClient(mlflow_server.tracking_uri)
    run = client.get_run(trained["xcom"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "3" and run.data.params["device"] == "cpu"
    assert int(run.data.params["train_rows"]) + int(run.data.params["validation_rows"]) == 2000 - NULL_LABELS
    assert "customer_id" not in run.data.params["features"].split(",")
    history = client.get_metric_history(run.info.run_id, "val_auc")
    assert [m.step for m in history if m.step > 0] == [1, 2, 3]
    digest = hashlib.sha256(training_set.read_bytes()).hexdigest()
    assert run.data.tags["mlops.data_fingerprint"] == f"{training_set}@sha256:{digest}"
    assert run.data.tags["mlops.training_set_uri"] == str(training_set)
    assert run.data.tags["mlops.code_version"].startswith("0.1.0")
    # The registry's fingerprint check hashes the DAG's hyperparameters with the hook's function.
    assert run.data.tags["mlops.hyperparameters_hash"] == hyperparameters_hash(FAST)
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    stats = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/reference/feature_stats.json")
    assert stats["features"]["tenure_days"]["quantiles"]["0.5"] > 0
    assert set(stats["features"]["plan"]["frequencies"]) == {"basic", "standard", "premium"}
    assert len(json.dumps(stats)) < 20_000


def test_model_loads_and_predicts_probabilities(
    trained: dict[str, Any], training_set: Path, mlflow_server: Any
) -> None:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    model = mlflow.pyfunc.load_model(trained["xcom"]["model_uri"])
    assert model.metadata.signature is not None
    raw = pd.read_parquet(training_set).drop(columns=["customer_id", "event_timestamp", "churned"]).head(50)
    predicted = model.predict(raw)
    assert list(predicted.columns) == ["probability", "prediction"]
    assert predicted["probability"].between(0, 1).all()
    assert (predicted["prediction"] == (predicted["probability"] >= 0.5).astype(int)).all()
    unseen = raw.head(2).assign(country="ZZ")  # an unseen category maps to "unknown", not an error
    assert model.predict(unseen)["probability"].notna().all()


def _write(frame: pd.DataFrame, directory: Path, name: str) -> Path:
    path = directory / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "is empty"),
        ("missing_label", "has no column 'churned'"),
        ("single_class", "single class"),
        ("dict_feature", "feature 'payload' holds dict values"),
        ("bytes_feature", "feature 'blob' holds bytes values"),
        ("unknown_hyperparameter", "unknown hyperparameters ['epoch']"),
    ],
)
def test_bad_input_fails_clearly_without_a_run(
    case: str, message: str, training_set: Path, mlflow_server: Any, tmp_path: Path
) -> None:
    good = pd.read_parquet(training_set)
    extra: list[str] = []
    frame = {
        "empty": good.head(0),
        "missing_label": good.drop(columns=["churned"]),
        "single_class": good.assign(churned=0),
        "dict_feature": good.assign(payload=[{"k": i} for i in range(len(good))]),
        "bytes_feature": good.assign(blob=[b"\x00\x01"] * len(good)),
        "unknown_hyperparameter": good,
    }[case]
    if case == "unknown_hyperparameter":
        extra = ["--hyperparameters", '{"epoch": 3}']
    done = run_trainer(_write(frame, tmp_path, case), mlflow_server.tracking_uri, f"bad-{case}", *extra)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr[-2000:]
    assert message in done.stderr
    assert RESULT_MARKER not in done.stdout
    assert runs_of(mlflow_server.tracking_uri, f"bad-{case}") == []


def test_failure_inside_the_run_marks_it_failed(training_set: Path, mlflow_server: Any) -> None:
    done = run_trainer(training_set, mlflow_server.tracking_uri, "crash", "--lr", "-1", "--epochs", "1")
    assert done.returncode == 1
    assert "Invalid learning rate" in done.stderr
    assert [run.info.status for run in runs_of(mlflow_server.tracking_uri, "crash")] == ["FAILED"]


def test_training_is_deterministic_for_a_seed() -> None:
    import torch

    from mlops_provider.trainer import serving, train

    def weights() -> list[torch.Tensor]:
        train.seed_everything(3)
        generator = torch.Generator().manual_seed(0)
        codes = torch.randint(0, 4, (256, 2), generator=generator)
        numbers = torch.randn(256, 3, generator=generator)
        labels = (numbers[:, 0] > 0).float()
        split = train.Tensors(codes, numbers, labels)
        model = serving.TabularMLP([3, 3], [2, 2], 3, [8], 0.1)
        fitted, _ = train.fit(
            model, split, split, epochs=2, lr=0.01, batch_size=32, patience=2, weight_decay=0.0, seed=3
        )
        return [p.detach().clone() for p in fitted.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(weights(), weights(), strict=True))


def test_roc_auc_matches_the_pair_counting_definition() -> None:
    import numpy as np

    from mlops_provider.trainer.train import roc_auc

    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert roc_auc(labels, scores) == pytest.approx(expected)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))
