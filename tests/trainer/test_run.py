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
from mlops_provider.trainer.run import REFERENCE_SAMPLE_ROWS, to_tensors
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


def test_the_lineage_tags_are_the_constants_the_registry_searches_for(
    trained: dict[str, Any], training_set: Path, mlflow_server: Any
) -> None:
    from mlflow import MlflowClient

    from mlops_provider.ml.lineage import hyperparameters_hash

    tags = MlflowClient(mlflow_server.tracking_uri).get_run(trained["xcom"]["run_id"]).data.tags
    assert {tag: tags[tag] for tag in constants.FINGERPRINT_TAGS} == {
        constants.DATA_FINGERPRINT_TAG: f"{training_set}@sha256:{hashlib.sha256(training_set.read_bytes()).hexdigest()}",
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
