"""One MLflow run: params and tags, per-epoch curves, the kept model's metrics, reference stats and the model.

Metric names say which rows produced them (prefixes in :mod:`mlops_provider.trainer`):
``eval_*`` the optional evaluation set, the only held-out figures; ``early_stop_*`` the slice that
picked the best epoch, at that epoch; ``epoch_*`` the per-epoch curves (step = epoch).
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

from mlops_provider.constants import (
    CODE_VERSION_TAG,
    DATA_FINGERPRINT_TAG,
    EVAL_SET_URI_TAG,
    HYPERPARAMETERS_HASH_TAG,
    TASK_TYPE_TAG,
    TRAINING_SET_URI_TAG,
)
from mlops_provider.ml import reference
from mlops_provider.ml.tasks import BINARY, MULTICLASS
from mlops_provider.trainer import (
    BEST_EPOCH_METRIC,
    EARLY_STOP_METRIC_PREFIX,
    EPOCH_METRIC_PREFIX,
    EVAL_METRIC_PREFIX,
    serving,
    train,
)
from mlops_provider.trainer import model as model_lib
from mlops_provider.trainer.data import EvaluationSet, TrainingSet, time_range

log = logging.getLogger("mlops_provider.trainer")
REFERENCE_SAMPLE_ROWS = reference.REFERENCE_SAMPLE_ROWS


def to_tensors(frame: pd.DataFrame, spec: dict[str, Any], label: str, device: torch.device) -> train.Tensors:
    """Features with the spec's encoding and the label as :class:`train.Tensors` wants it for the task."""
    codes, numbers = serving.encode(frame, spec)
    task = serving.task_of(spec)
    if task["type"] == MULTICLASS:
        labels = torch.from_numpy(class_indexes(frame[label], task["classes"]))
    else:
        labels = torch.as_tensor(frame[label].to_numpy(dtype=np.float32), dtype=torch.float32)
    return train.Tensors(codes.to(device), numbers.to(device), labels.to(device))


def class_indexes(labels: pd.Series, classes: list[Any]) -> np.ndarray:
    """Each label's index in ``classes``, compared as text (so 3 and "3" are one class); a class not
    in ``classes`` gets a negative index of its own (-1, -2, ... in text order)."""
    texts = labels.map(str)
    known = {str(c): i for i, c in enumerate(classes)}
    unknown = {t: -1 - i for i, t in enumerate(sorted(set(texts) - set(known)))}
    return texts.map(known | unknown).to_numpy(dtype=np.int64)


def train_and_log(
    data: TrainingSet,
    hyperparameters: dict[str, Any],
    experiment: str,
    code_version: str,
    hyperparameters_hash: str,
    evaluation: EvaluationSet | None = None,
) -> dict[str, Any]:
    """Train on ``data`` and log everything to the active tracking URI (MLFLOW_TRACKING_URI).

    Leaving the ``start_run`` block with an exception ends the run as FAILED, never FINISHED.

    :param evaluation: held-out rows scored once with the kept weights (``eval_*`` metrics); never
        used to fit or to stop.
    :return: ``{"run_id", "model_uri", "metrics"}``, the trainer's XCom contract; ``metrics`` are the
        run's summary metrics (``best_epoch``, ``early_stop_*``, ``eval_*``), not the per-epoch curves.
    """
    hp = hyperparameters
    train.seed_everything(hp["seed"])
    device = train.pick_device()
    task = model_lib.fit_task(data.train[data.label], data.task_type, data.classes)
    spec = model_lib.fit_preprocessing(
        data.train, data.categorical, data.numeric, hp["hidden"], hp["dropout"], task
    )
    objective = train.Objective.from_task(task)
    train_tensors = to_tensors(data.train, spec, data.label, device)
    validation_tensors = to_tensors(data.validation, spec, data.label, device)
    network = serving.TabularMLP(**spec["architecture"]).to(device)
    mlflow.set_experiment(experiment)
    tags = {
        DATA_FINGERPRINT_TAG: data.fingerprint,
        TRAINING_SET_URI_TAG: data.uri,
        CODE_VERSION_TAG: code_version,
        HYPERPARAMETERS_HASH_TAG: hyperparameters_hash,
        TASK_TYPE_TAG: data.task_type,
    }
    if evaluation is not None:
        tags[EVAL_SET_URI_TAG] = evaluation.uri
    with mlflow.start_run(tags=tags) as run:
        log.info(
            "MLflow run %s: %s, %d train / %d early-stopping rows on %s",
            run.info.run_id,
            data.task_type,
            len(train_tensors),
            len(validation_tensors),
            device,
        )
        params = {k: str(v) for k, v in hp.items()} | {"device": device.type}
        mlflow.log_params(params | _data_params(data, evaluation))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            curves = {"train_loss": metrics["train_loss"]} | {
                EARLY_STOP_METRIC_PREFIX + name: metrics[name]
                for name in (objective.loss_metric, objective.quality_metric)
            }
            mlflow.log_metrics({EPOCH_METRIC_PREFIX + k: v for k, v in curves.items()}, step=epoch)
            shown = " ".join(f"{k}={v:.4f}" for k, v in curves.items())
            log.info("epoch %d/%d %s", epoch, hp["epochs"], shown)

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
            objective=objective,
            on_epoch=on_epoch,
        )
        early_stop = train.evaluate(network, validation_tensors, objective=objective)
        metrics = {
            BEST_EPOCH_METRIC: float(best_epoch),
            **_prefixed(EARLY_STOP_METRIC_PREFIX, early_stop),
        }
        if evaluation is not None:
            metrics |= _evaluation_metrics(network, evaluation, spec, data, device, objective)
        mlflow.log_metrics(metrics)  # names no curve uses: the run's value is the kept model's
        stats = model_lib.feature_stats(
            data.train, data.categorical, data.numeric, data.label, data.task_type
        )
        mlflow.log_dict(stats, "reference/feature_stats.json")
        log_reference_sample(data)
        example = model_lib.input_example(data.train, data.features)
        info = model_lib.log_model(network, spec, example)
        log.info("logged model %s: %s", info.model_uri, _summary(metrics, objective))
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "metrics": metrics}


def _data_params(data: TrainingSet, evaluation: EvaluationSet | None) -> dict[str, Any]:
    """Which rows did what: counts and time ranges of the fit rows, the early-stopping slice and the
    evaluation set, so a reader can check that the evaluation window follows the training window."""
    params: dict[str, Any] = {
        "task_type": data.task_type,
        "label": data.label,
        "timestamp_column": data.timestamp_column,
        "features": ",".join(data.features),
        "train_rows": len(data.train),
        "validation_rows": len(data.validation),
        "train_time_range": time_range(data.train, data.timestamp_column),
        "early_stopping_time_range": time_range(data.validation, data.timestamp_column),
    }
    if data.id_columns:
        params["id_columns"] = ",".join(data.id_columns)
    if evaluation is not None:
        params |= {
            "evaluation_set_uri": evaluation.uri,
            "evaluation_set_fingerprint": evaluation.fingerprint,
            "evaluation_time_range": time_range(evaluation.frame, data.timestamp_column),
        }
    return params


def _evaluation_metrics(
    network: torch.nn.Module,
    evaluation: EvaluationSet,
    spec: dict[str, Any],
    data: TrainingSet,
    device: torch.device,
    objective: train.Objective,
) -> dict[str, float]:
    """The task's metrics on the evaluation set, and its ``rows`` (binary: and ``positives``)."""
    tensors = to_tensors(evaluation.frame, spec, data.label, device)
    counts = {"rows": float(len(tensors))}
    if data.task_type == BINARY:
        counts["positives"] = float(evaluation.frame[data.label].sum())
    return _prefixed(EVAL_METRIC_PREFIX, {**train.evaluate(network, tensors, objective=objective), **counts})


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {prefix + k: v for k, v in metrics.items()}


def _summary(metrics: dict[str, float], objective: train.Objective) -> str:
    """``best_epoch`` and the task's loss and first quality metric, early-stopping slice and eval set."""
    names = (objective.loss_metric, objective.quality_metric)
    shown = [BEST_EPOCH_METRIC] + [
        p + n for p in (EARLY_STOP_METRIC_PREFIX, EVAL_METRIC_PREFIX) for n in names
    ]
    return ", ".join(f"{k}={metrics[k]:.4g}" for k in shown if k in metrics)


def log_reference_sample(data: TrainingSet) -> None:
    """Log the drift reference: a seeded sample of the training split's features (ml.reference)."""
    reference.log_reference_sample(data.train[data.features], REFERENCE_SAMPLE_ROWS)
