"""Command line of the trainer: check the data, then train and log one MLflow run.

Exit codes: 0 trained, 2 bad command line, 3 a training or evaluation set or hyperparameters it refuses,
1 anything else (the run, if one started, is marked FAILED).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mlops_provider.constants import JOIN_KEYS_METADATA, TIMESTAMP_COLUMN_METADATA
from mlops_provider.ml.lineage import code_version, hyperparameters_hash
from mlops_provider.ml.tasks import BINARY, TASK_TYPES
from mlops_provider.trainer import EXIT_BAD_INPUT, RESULT_MARKER

log = logging.getLogger("mlops_provider.trainer")

DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "epochs": 20,
    "lr": 3e-3,
    "batch_size": 256,
    "hidden": [64, 32],
    "dropout": 0.1,
    "patience": 3,
    "seed": 42,
    "val_fraction": 0.2,
    "weight_decay": 0.0,
}
_XCOM_DIR = "/airflow/xcom"


class BadHyperparameters(ValueError):
    """A hyperparameter is unknown or has the wrong type."""


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m mlops_provider.trainer", description=__doc__)
    cli.add_argument("--training-set", required=True, help="parquet file or directory, local or s3://")
    cli.add_argument(
        "--label",
        required=True,
        help="label column: 0/1 or boolean (binary), ints or strings (multiclass), numbers (regression)",
    )
    cli.add_argument(
        "--task-type",
        choices=TASK_TYPES,
        default=BINARY,
        help=f"what the label is (default {BINARY}); sets the loss, the metrics and the model's output",
    )
    cli.add_argument(
        "--timestamp-column",
        default=None,
        help="the rows' event time column, which splits train/validation by time (default: the training "
        f"set's parquet metadata {TIMESTAMP_COLUMN_METADATA!r}, which the Feast operator writes)",
    )
    cli.add_argument("--experiment", required=True, help="MLflow experiment name")
    cli.add_argument(
        "--id-columns",
        default="",
        help="comma-separated entity keys and other bookkeeping columns that are not features (default: "
        f"the training set's parquet metadata {JOIN_KEYS_METADATA!r}, else none)",
    )
    cli.add_argument(
        "--features",
        default="",
        help="comma-separated feature columns, exactly these (default: every column but the label, "
        "timestamp, id columns and other datetime columns)",
    )
    cli.add_argument(
        "--evaluation-set",
        default=None,
        help="held-out parquet file or directory, local or s3://, with the training set's columns; scored "
        "once with the kept weights (eval_* metrics), never used to fit or to stop (default none)",
    )
    cli.add_argument("--hyperparameters", default="{}", help="JSON object merged over the defaults")
    for name, value in DEFAULT_HYPERPARAMETERS.items():
        kind = str if isinstance(value, list) else type(value)
        cli.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,
            help=f"overrides --hyperparameters (default {value})",
        )
    return cli


def resolve_hyperparameters(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Defaults, then the --hyperparameters JSON, then single flags; types are checked.

    :return: the resolved hyperparameters, and those given (JSON plus flags) before defaults.
    """
    try:
        given = json.loads(args.hyperparameters or "{}")
    except json.JSONDecodeError as error:
        raise BadHyperparameters(f"--hyperparameters is not valid JSON: {error}") from error
    if not isinstance(given, dict):
        raise BadHyperparameters("--hyperparameters must be a JSON object")
    unknown = sorted(set(given) - set(DEFAULT_HYPERPARAMETERS))
    if unknown:
        raise BadHyperparameters(
            f"unknown hyperparameters {unknown}; known: {sorted(DEFAULT_HYPERPARAMETERS)}"
        )
    given.update({k: getattr(args, k) for k in DEFAULT_HYPERPARAMETERS if getattr(args, k) is not None})
    merged = {**DEFAULT_HYPERPARAMETERS, **given}
    try:
        if isinstance(merged["hidden"], str):
            merged["hidden"] = [int(size) for size in merged["hidden"].split(",") if size.strip()]
        resolved: dict[str, Any] = {
            k: [int(v) for v in merged[k]] if k == "hidden" else type(default)(merged[k])
            for k, default in DEFAULT_HYPERPARAMETERS.items()
        }
    except (TypeError, ValueError) as error:
        raise BadHyperparameters(f"a hyperparameter has the wrong type: {error}") from error
    if resolved["epochs"] < 1 or resolved["batch_size"] < 1 or not 0 < resolved["val_fraction"] < 1:
        raise BadHyperparameters("need epochs >= 1, batch_size >= 1 and 0 < val_fraction < 1")
    return resolved, given


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    from mlops_provider.trainer import data

    try:
        hyperparameters, given = resolve_hyperparameters(args)
        training_set = data.load(
            args.training_set,
            args.label,
            args.timestamp_column,
            hyperparameters["val_fraction"],
            _columns(args.id_columns),
            task_type=args.task_type,
            features=_columns(args.features),
        )
        log.info(
            "training a %s model of %r on %d features; timestamp column %r, id columns %s",
            training_set.task_type,
            training_set.label,
            len(training_set.features),
            training_set.timestamp_column,
            list(training_set.id_columns),
        )
        evaluation_set = (
            data.load_evaluation(args.evaluation_set, training_set) if args.evaluation_set else None
        )
    except (data.TrainingDataError, BadHyperparameters) as error:
        log.error("refusing to train: %s", error)
        return EXIT_BAD_INPUT
    # KPO deletes a pod with SIGTERM; turning it into SystemExit lets the run end as FAILED.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        from mlops_provider.hooks.mlflow_client import defer_feast_request_headers
        from mlops_provider.trainer.run import train_and_log

        defer_feast_request_headers()  # the trainer image need not import feast to talk to MLflow
        result = train_and_log(
            training_set,
            hyperparameters,
            args.experiment,
            code_version(),
            hyperparameters_hash(given),
            evaluation_set,
        )
    except Exception:
        log.exception("training failed; the MLflow run (if any) is marked FAILED")
        return 1
    emit(result)
    return 0


def _columns(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def emit(result: dict[str, Any]) -> None:
    """Write the result for KPO's XCom sidecar when its directory exists; always print it last."""
    result = {**result, "metrics": {k: None if math.isnan(v) else v for k, v in result["metrics"].items()}}
    payload = json.dumps(result, sort_keys=True)
    xcom_dir = Path(os.environ.get("MLOPS_XCOM_DIR", _XCOM_DIR))
    if xcom_dir.is_dir():
        (xcom_dir / "return.json").write_text(payload)
    print(RESULT_MARKER + payload, flush=True)
