"""One MLflow run: params and tags, per-epoch metrics, final metrics, reference stats and the model."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch

from mlops_provider.trainer import model as model_lib
from mlops_provider.trainer import serving, train
from mlops_provider.trainer.data import TrainingSet

log = logging.getLogger("mlops_provider.trainer")
# Enough rows for stable drift tests (PSI bins, KS, chi-squared) while the artifact stays a few MB.
REFERENCE_SAMPLE_ROWS = 10_000


def to_tensors(frame: Any, spec: dict[str, Any], label: str, device: torch.device) -> train.Tensors:
    codes, numbers = serving.encode(frame, spec)
    labels = torch.as_tensor(frame[label].to_numpy(), dtype=torch.float32)
    return train.Tensors(codes.to(device), numbers.to(device), labels.to(device))


def train_and_log(
    data: TrainingSet,
    hyperparameters: dict[str, Any],
    experiment: str,
    code_version: str,
    hyperparameters_hash: str,
) -> dict[str, Any]:
    """Train on ``data`` and log everything to the active tracking URI (MLFLOW_TRACKING_URI).

    Leaving the ``start_run`` block with an exception ends the run as FAILED, never FINISHED.

    :return: ``{"run_id", "model_uri", "metrics"}``, the trainer's XCom contract.
    """
    hp = hyperparameters
    train.seed_everything(hp["seed"])
    device = train.pick_device()
    spec = model_lib.fit_preprocessing(
        data.train, data.categorical, data.numeric, hp["hidden"], hp["dropout"]
    )
    train_tensors = to_tensors(data.train, spec, data.label, device)
    validation_tensors = to_tensors(data.validation, spec, data.label, device)
    network = serving.TabularMLP(**spec["architecture"]).to(device)
    mlflow.set_experiment(experiment)
    tags = {
        "mlops.data_fingerprint": data.fingerprint,
        "mlops.training_set_uri": data.fingerprint.rsplit("@sha256:", 1)[0],
        "mlops.code_version": code_version,
        "mlops.hyperparameters_hash": hyperparameters_hash,
    }
    with mlflow.start_run(tags=tags) as run:
        log.info(
            "MLflow run %s: %d train / %d validation rows on %s",
            run.info.run_id,
            len(train_tensors),
            len(validation_tensors),
            device,
        )
        mlflow.log_params(
            {
                **{k: str(v) for k, v in hp.items()},
                "label": data.label,
                "device": device.type,
                "features": ",".join(data.features),
                "train_rows": len(train_tensors),
                "validation_rows": len(validation_tensors),
            }
        )

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics({k: metrics[k] for k in ("train_loss", "val_loss", "val_auc")}, step=epoch)
            log.info(
                "epoch %d/%d train_loss=%.4f val_loss=%.4f val_auc=%.4f",
                epoch,
                hp["epochs"],
                metrics["train_loss"],
                metrics["val_loss"],
                metrics["val_auc"],
            )

        network, best_epoch = train.fit(
            network,
            train_tensors,
            validation_tensors,
            epochs=hp["epochs"],
            lr=hp["lr"],
            batch_size=hp["batch_size"],
            patience=hp["patience"],
            weight_decay=hp["weight_decay"],
            seed=hp["seed"],
            on_epoch=on_epoch,
        )
        metrics = {**train.evaluate(network, validation_tensors), "best_epoch": float(best_epoch)}
        mlflow.log_metrics(metrics)
        stats = model_lib.feature_stats(data.train, data.categorical, data.numeric, data.label)
        mlflow.log_dict(stats, "reference/feature_stats.json")
        log_reference_sample(data)
        example = model_lib.input_example(data.train, data.features)
        info = model_lib.log_model(network, spec, example)
        log.info(
            "logged model %s (best epoch %d, val_auc=%.4f)", info.model_uri, best_epoch, metrics["val_auc"]
        )
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "metrics": metrics}


def log_reference_sample(data: TrainingSet) -> None:
    """Log a seeded sample of the training split's features as ``reference/sample.parquet``.

    Drift detection compares raw values (KS and PSI need them, summary quantiles are not enough); the
    fixed seed makes a retrain on the same data log the same sample.
    """
    features = data.train[data.features]
    sample = features.sample(n=min(len(features), REFERENCE_SAMPLE_ROWS), random_state=0)
    with tempfile.TemporaryDirectory(prefix="mlops-reference-") as workdir:
        path = Path(workdir) / "sample.parquet"
        sample.reset_index(drop=True).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), "reference")
