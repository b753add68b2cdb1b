"""The trainer's command line as the operators build it: one builder for the local process and the pod.

Airflow-free, so the operators (``TrainModelOperator``, ``GPUTrainingOperator``) and the trainer image
share it without importing each other.
"""

from __future__ import annotations

import ast
import json
import shlex
from collections.abc import Sequence
from typing import Any

from mlops_provider.exceptions import ConfigurationError

REFERENCE_TRAINER = ("-m", "mlops_provider.trainer")


def trainer_command(
    training_set_uri: str,
    *,
    label: str,
    experiment: str,
    hyperparameters: dict[str, Any] | str | None = None,
    id_columns: Sequence[str] | str | None = None,
    evaluation_set_uri: str | None = None,
    task_type: str = "binary",
    timestamp_column: str | None = None,
    feature_columns: Sequence[str] | str | None = None,
) -> list[str]:
    """Return the reference trainer's argv after the interpreter: ``["-m", "mlops_provider.trainer", ...]``.

    The local backend runs ``[sys.executable, *argv]``; the pod runs ``["python", *argv]``. The
    arguments after the module are :func:`trainer_arguments`, the contract every trainer takes.

    :param training_set_uri: parquet file or directory, local path or ``s3://``.
    :param label: label column.
    :param hyperparameters: dict (or its JSON / Python-literal rendering) merged over the defaults.
    :param experiment: MLflow experiment name.
    :param id_columns: entity keys and other bookkeeping columns that are not features (a list, or its
        comma-separated or JSON rendering by a template).
    :param evaluation_set_uri: held-out parquet file or directory scored with the kept weights
        (``eval_*`` metrics); None or an empty string for none, and then the flag is left out.
    :param task_type: ``binary``, ``multiclass`` or ``regression`` (:mod:`mlops_provider.ml.tasks`).
    :param timestamp_column: the rows' event-time column; None leaves the flag out (the trainer then
        reads it from the training set's metadata).
    :param feature_columns: the exact features; None leaves the flag out (every other column).
    """
    arguments = trainer_arguments(
        training_set_uri,
        label=label,
        experiment=experiment,
        hyperparameters=hyperparameters,
        id_columns=id_columns,
        evaluation_set_uri=evaluation_set_uri,
        task_type=task_type,
        timestamp_column=timestamp_column,
        feature_columns=feature_columns,
    )
    return [*REFERENCE_TRAINER, *arguments]


def trainer_arguments(
    training_set_uri: str,
    *,
    label: str,
    experiment: str,
    hyperparameters: dict[str, Any] | str | None = None,
    id_columns: Sequence[str] | str | None = None,
    evaluation_set_uri: str | None = None,
    task_type: str = "binary",
    timestamp_column: str | None = None,
    feature_columns: Sequence[str] | str | None = None,
) -> list[str]:
    """The trainer contract's command-line arguments, which any trainer (yours too) receives.

    ``--training-set URI [--evaluation-set URI] --label COL --experiment NAME --hyperparameters JSON
    --id-columns COL,COL --task-type TYPE [--timestamp-column COL] [--features COL,COL]``
    (docs/training.md, "Bring your own trainer").
    """
    from mlops_provider.ml.tasks import check_task_type

    try:
        task_type = check_task_type(str(task_type).strip().lower())
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    # Flag and value on one line each, as a reader of the pod spec sees them.
    evaluation = ("--evaluation-set", evaluation_set_uri) if evaluation_set_uri else ()
    timestamp = ("--timestamp-column", timestamp_column) if timestamp_column else ()
    features = ("--features", ",".join(as_columns(feature_columns))) if as_columns(feature_columns) else ()
    return [
        *("--training-set", training_set_uri),
        *evaluation,
        *("--label", label),
        *("--experiment", experiment),
        *("--hyperparameters", json.dumps(as_dict(hyperparameters), sort_keys=True)),
        *("--id-columns", ",".join(as_columns(id_columns))),
        *("--task-type", task_type),
        *timestamp,
        *features,
    ]


def entrypoint_argv(command: Sequence[str] | str | None) -> list[str]:
    """A user trainer's entrypoint as argv: a list, its JSON rendering by a template, or a shell-like
    string (``"python /app/train.py"``); empty for none (the reference trainer)."""
    if command is None or command == "":
        return []
    if isinstance(command, str):
        text = command.strip()
        return [str(part) for part in json.loads(text)] if text.startswith("[") else shlex.split(text)
    return [str(part) for part in command]


def as_columns(value: Sequence[str] | str | None) -> list[str]:
    """Column names from a list, or a template's rendering of one (JSON, Python literal or comma-separated)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = ast.literal_eval(text)
            return [str(c) for c in parsed]
        return [c.strip() for c in text.split(",") if c.strip()]
    return [str(c) for c in value]


def as_dict(value: dict[str, Any] | str | None) -> dict[str, Any]:
    """Accept a dict, or a template that rendered it to JSON or to a Python literal."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError) as error:
            raise ConfigurationError(
                f"hyperparameters {value!r} are neither JSON nor a dict literal"
            ) from error
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"hyperparameters must be a mapping, got {type(parsed).__name__}")
    return parsed
