"""One trainer run as MLflow records it: params, per-epoch metrics, lineage tags, reference data, model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_provider import constants
from mlops_provider.ml.lineage import code_version
from mlops_provider.trainer.data import load
from mlops_provider.trainer.model import fit_preprocessing
from mlops_provider.trainer.run import REFERENCE_SAMPLE_ROWS, class_indexes, to_tensors
from tests.trainer.conftest import FAST, NULL_LABELS, XDIST_GROUP

KEYS = ("customer_id",)  # the example data's entity key: an identifier, not a feature

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)


def test_run_logs_params_metrics_tags_and_reference_stats(
    trained: dict[str, Any], training_set: Path, mlflow_server: Any
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from mlops_provider.ml.lineage import hyperparameters_hash

    client = MlflowClient(mlflow_server.tracking_uri)
    run = client.get_run(trained["xcom"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == str(FAST["epochs"]) and run.data.params["device"] == "cpu"
    assert int(run.data.params["train_rows"]) + int(run.data.params["validation_rows"]) == 2000 - NULL_LABELS
    assert "customer_id" not in run.data.params["features"].split(",")
    for curve in ("epoch_train_loss", "epoch_early_stop_log_loss", "epoch_early_stop_roc_auc"):
        history = client.get_metric_history(run.info.run_id, curve)
        assert sorted(m.step for m in history) == list(range(1, FAST["epochs"] + 1))
    # The early-stopping slice is the end of the training window; no evaluation set was given.
    fit_end = run.data.params["train_time_range"].split("/")[1]
    assert pd.Timestamp(fit_end) < pd.Timestamp(run.data.params["early_stopping_time_range"].split("/")[0])
    assert "evaluation_set_uri" not in run.data.params and constants.EVAL_SET_URI_TAG not in run.data.tags
    digest = hashlib.sha256(training_set.read_bytes()).hexdigest()
    assert run.data.tags["mlops.data_fingerprint"] == f"sha256:{digest}"
    assert run.data.tags["mlops.training_set_uri"] == str(training_set)
    assert run.data.tags["mlops.code_version"].startswith("0.1.0")
    # The registry's fingerprint check hashes the DAG's hyperparameters with the hook's function.
    assert run.data.tags["mlops.hyperparameters_hash"] == hyperparameters_hash(FAST)
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    stats = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/reference/feature_stats.json")
    assert stats["features"]["tenure_days"]["quantiles"]["0.5"] > 0
    assert set(stats["features"]["plan"]["frequencies"]) == {"basic", "standard", "premium"}
    assert len(json.dumps(stats)) < 20_000


def _history(client: Any, run_id: str, name: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, name)}


def test_the_runs_metrics_are_the_kept_epochs_even_when_a_later_epoch_is_worse(
    trained: dict[str, Any], mlflow_server: Any
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.tracking_uri)
    run_id = trained["xcom"]["run_id"]
    metrics = client.get_run(run_id).data.metrics
    losses = _history(client, run_id, "epoch_early_stop_log_loss")
    aucs = _history(client, run_id, "epoch_early_stop_roc_auc")
    best, last = int(metrics["best_epoch"]), max(losses)
    # FAST's learning rate overshoots: the last epoch is worse than the kept one.
    assert best < last and losses[last] > losses[best] == min(losses.values()) and aucs[last] != aucs[best]
    assert metrics["early_stop_log_loss"] == pytest.approx(losses[best], rel=1e-6)
    assert metrics["early_stop_roc_auc"] == pytest.approx(aucs[best], rel=1e-6)
    assert metrics["epoch_early_stop_roc_auc"] == aucs[last]  # a curve's latest value is the last epoch's
    # The result is the run's summary: every metric but the per-epoch curves.
    summary = {k: v for k, v in metrics.items() if not k.startswith("epoch_")}
    assert trained["xcom"]["metrics"] == pytest.approx(summary)


def test_the_evaluation_set_is_scored_by_the_kept_model_and_never_trained_or_stopped_on(
    trained: dict[str, Any], evaluated: dict[str, Any], evaluation_set: Path, mlflow_server: Any
) -> None:
    import mlflow
    from mlflow import MlflowClient
    from sklearn.metrics import log_loss, roc_auc_score

    client = MlflowClient(mlflow_server.tracking_uri)
    without, run = (client.get_run(r["xcom"]["run_id"]) for r in (trained, evaluated))
    # The same data and seed with and without it: the same rows, curves, best epoch and weights.
    for name in ("train_rows", "validation_rows", "train_time_range", "early_stopping_time_range"):
        assert run.data.params[name] == without.data.params[name]
    for name, value in without.data.metrics.items():
        assert run.data.metrics[name] == pytest.approx(value, rel=1e-6), name
    for curve in ("epoch_early_stop_log_loss", "epoch_train_loss"):
        assert _history(client, run.info.run_id, curve) == pytest.approx(
            _history(client, without.info.run_id, curve), rel=1e-6
        )
    frame = pd.read_parquet(evaluation_set).dropna(subset=["churned"])
    metrics = evaluated["xcom"]["metrics"]
    assert metrics["eval_rows"] == len(frame) > 900  # two snapshot days of 500, less null labels
    assert metrics["eval_positives"] == frame["churned"].sum()
    # The logged model scores the evaluation rows to the figures the run logged.
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    model = mlflow.pyfunc.load_model(evaluated["xcom"]["model_uri"])
    probability = model.predict(frame.drop(columns=["churned"]))["probability"]
    assert metrics["eval_roc_auc"] == pytest.approx(roc_auc_score(frame["churned"], probability), abs=1e-4)
    assert metrics["eval_log_loss"] == pytest.approx(log_loss(frame["churned"], probability), abs=1e-4)
    assert {k: run.data.metrics[k] for k in metrics} == pytest.approx(metrics)
    assert run.data.params["evaluation_set_uri"] == str(evaluation_set)
    assert run.data.tags[constants.EVAL_SET_URI_TAG] == str(evaluation_set)
    digest = hashlib.sha256(evaluation_set.read_bytes()).hexdigest()
    assert run.data.params["evaluation_set_fingerprint"] == f"sha256:{digest}"
    stopped_until = pd.Timestamp(run.data.params["early_stopping_time_range"].split("/")[1])
    assert stopped_until < pd.Timestamp(run.data.params["evaluation_time_range"].split("/")[0])


def test_the_lineage_tags_are_the_constants_the_registry_searches_for(
    trained: dict[str, Any], training_set: Path, mlflow_server: Any
) -> None:
    from mlflow import MlflowClient

    from mlops_provider.ml.lineage import hyperparameters_hash

    tags = MlflowClient(mlflow_server.tracking_uri).get_run(trained["xcom"]["run_id"]).data.tags
    assert {tag: tags[tag] for tag in constants.FINGERPRINT_TAGS} == {
        constants.DATA_FINGERPRINT_TAG: f"sha256:{hashlib.sha256(training_set.read_bytes()).hexdigest()}",
        constants.CODE_VERSION_TAG: code_version(),  # the same sources here and in the trainer process
        constants.HYPERPARAMETERS_HASH_TAG: hyperparameters_hash(FAST),
    }
    assert tags[constants.TRAINING_SET_URI_TAG] == str(training_set)


def test_the_reference_sample_holds_the_training_features(
    trained: dict[str, Any], training_set: Path, mlflow_server: Any, tmp_path: Path
) -> None:
    import mlflow

    path = mlflow.artifacts.download_artifacts(
        f"runs:/{trained['xcom']['run_id']}/reference/sample.parquet",
        dst_path=str(tmp_path),
        tracking_uri=mlflow_server.tracking_uri,
    )
    sample = pd.read_parquet(path)
    data = load(str(training_set), "churned", "event_timestamp", 0.2, KEYS)
    assert list(sample.columns) == data.features  # features only: no id, timestamp or label
    assert len(sample) == min(len(data.train), REFERENCE_SAMPLE_ROWS)
    assert set(sample["plan"].dropna()) <= set(data.train["plan"].dropna())


def test_to_tensors_encodes_features_and_labels_on_the_device(training_set: Path) -> None:
    import torch

    data = load(str(training_set), "churned", "event_timestamp", 0.2, KEYS)
    spec = fit_preprocessing(data.train, data.categorical, data.numeric, [8], 0.0)
    tensors = to_tensors(data.validation, spec, "churned", torch.device("cpu"))
    assert len(tensors) == len(data.validation)
    assert (
        tensors.codes.shape == (len(data.validation), len(data.categorical))
        and tensors.codes.dtype == torch.int64
    )
    assert tensors.numbers.shape == (len(data.validation), len(data.numeric))
    assert tensors.labels.dtype == torch.float32
    assert tensors.labels.tolist() == data.validation["churned"].astype(float).tolist()


def test_multiclass_labels_become_class_indexes_and_unseen_classes_negative_ones() -> None:
    import torch

    labels = pd.Series(["b", "a", "zz", "c", "y", "zz"])
    assert class_indexes(labels, ["a", "b", "c"]).tolist() == [1, 0, -2, 2, -1, -2]
    assert class_indexes(pd.Series([3, 10, "3"]), [10, 3]).tolist() == [1, 0, 1]  # compared as text
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["b", "a", "q"]})
    spec = fit_preprocessing(frame, [], ["x"], [4], 0.0, {"type": "multiclass", "classes": ["a", "b"]})
    tensors = to_tensors(frame, spec, "y", torch.device("cpu"))
    assert tensors.labels.dtype == torch.int64 and tensors.labels.tolist() == [1, 0, -1]
    spec = fit_preprocessing(frame, [], ["x"], [4], 0.0, {"type": "regression", "mean": 2.0, "std": 1.0})
    assert to_tensors(frame, spec, "x", torch.device("cpu")).labels.tolist() == [1.0, 2.0, 3.0]  # own scale
