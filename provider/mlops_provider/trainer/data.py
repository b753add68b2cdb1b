"""Load, check and split the training set, and check the evaluation set, before any MLflow run starts.

Every refusal raises :class:`TrainingDataError`, whose message names the column at fault and the flag
(and the ``TrainModelOperator`` argument) to set, so a bad training or evaluation set never leaves a
half-logged run behind. The timestamp and id columns, when not given, come from the training set's
parquet metadata (:data:`~mlops_provider.constants.TIMESTAMP_COLUMN_METADATA`,
:data:`~mlops_provider.constants.JOIN_KEYS_METADATA`), which the Feast operator writes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_provider.constants import JOIN_KEYS_METADATA, TIMESTAMP_COLUMN_METADATA
from mlops_provider.ml.lineage import data_fingerprint
from mlops_provider.ml.tasks import BINARY, MULTICLASS, REGRESSION, check_task_type

log = logging.getLogger("mlops_provider.trainer")


# What to set, named for the command line and for TrainModelOperator, which builds it.
LABEL_FLAG = "--label (label_column of TrainModelOperator)"
ID_COLUMNS_FLAG = "--id-columns (id_columns of TrainModelOperator)"
TASK_TYPE_FLAG = "--task-type (task_type of TrainModelOperator)"
TIMESTAMP_FLAG = (
    "--timestamp-column (the training set's event time column: timestamp_column of TrainModelOperator)"
)
FEATURES_FLAG = "--features (feature_columns of TrainModelOperator)"


class TrainingDataError(ValueError):
    """The training or evaluation set cannot be used; the message names the problem."""


@dataclass(frozen=True)
class TrainingSet:
    """A checked training set split by time.

    :param train: rows before the early-stopping cut-off: the only rows the weights are fitted on.
    :param validation: the early-stopping slice, the last ``val_fraction`` of the timestamp range. It
        picks the best epoch, so its metrics are optimistic: it is not a held-out set.
    :param categorical: string feature columns, embedded.
    :param numeric: numeric and boolean feature columns, imputed and standardised.
    :param label: the label column: 0/1 (binary), ints or strings (multiclass), float (regression).
    :param fingerprint: ``sha256:<hex>`` of the file content.
    :param timestamp_column: the column both sets are split and compared by.
    :param id_columns: entity keys; with ``timestamp_column`` they identify a row.
    :param uri: where it was read from.
    :param task_type: ``binary``, ``multiclass`` or ``regression`` (:mod:`mlops_provider.ml.tasks`).
    :param classes: multiclass only: the training set's classes as the label's values (ints or
        strings), sorted by their text; the network has one output per class, in this order.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    categorical: list[str]
    numeric: list[str]
    label: str
    fingerprint: str
    timestamp_column: str
    id_columns: tuple[str, ...] = ()
    uri: str = ""
    task_type: str = BINARY
    classes: tuple[Any, ...] = ()

    @property
    def features(self) -> list[str]:
        return [*self.categorical, *self.numeric]


@dataclass(frozen=True)
class EvaluationSet:
    """Held-out rows with the training set's label and features: never fitted on, never used to stop.

    :param frame: the labelled rows, the label typed as in the training set.
    :param fingerprint: ``sha256:<hex>`` of the file content.
    :param uri: where it was read from.
    """

    frame: pd.DataFrame
    fingerprint: str
    uri: str


def fetch(uri: str, workdir: Path, what: str = "training set") -> Path:
    """Return a local path for ``uri``, downloading ``s3://bucket/key`` with boto3 into ``workdir``.

    boto3 reads credentials and ``AWS_ENDPOINT_URL`` (MinIO, Ceph) from the environment.
    """
    if not uri.startswith("s3://"):
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise TrainingDataError(f"{what} {uri} does not exist; run the feature pipeline first")
        return path
    import boto3

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    target = workdir / Path(key).name
    boto3.client("s3").download_file(bucket, key, str(target))
    return target


def load(
    uri: str,
    label: str,
    timestamp_column: str | None,
    val_fraction: float,
    id_columns: Sequence[str] = (),
    *,
    task_type: str = BINARY,
    features: Sequence[str] | None = None,
) -> TrainingSet:
    """Read, check and split a parquet training set.

    Rows with a null label are dropped. Null features are kept and imputed later (median for
    numbers, an "unknown" category for strings). Without ``features``, every column but the label,
    ``timestamp_column``, ``id_columns`` and other datetime columns (e.g. ``label_timestamp``) is one.

    :param timestamp_column: None to read it from the file's metadata (``TIMESTAMP_COLUMN_METADATA``).
    :param id_columns: empty to read them from the file's metadata (``JOIN_KEYS_METADATA``), else none.
    :param task_type: what the label is: ``binary`` (0/1 or boolean, both classes), ``multiclass``
        (discrete ints or strings, at least two classes) or ``regression`` (numbers, not all equal).
    :param features: the exact feature columns; None or empty for every other column.
    :raises TrainingDataError: empty set, missing label, timestamp, id or listed feature column, a
        label that does not fit ``task_type``, a feature that cannot be encoded, or a split leaving one
        side empty.
    """
    task_type = check_task_type(task_type)
    where = f"training set {uri}"
    frame, fingerprint, metadata = _read(uri, "training set")
    timestamp_column = timestamp_column or metadata.get(TIMESTAMP_COLUMN_METADATA)
    if not timestamp_column:
        raise TrainingDataError(
            f"{where} does not say which column holds the event time (no {TIMESTAMP_COLUMN_METADATA!r} "
            f"in its parquet metadata); pass {TIMESTAMP_FLAG}"
        )
    if not id_columns:
        id_columns = [c.strip() for c in metadata.get(JOIN_KEYS_METADATA, "").split(",") if c.strip()]
        if id_columns:
            log.info("id columns %s from the training set's metadata", id_columns)
    frame = _labelled(frame, label, timestamp_column, where, "training", task_type)
    missing_ids = [c for c in id_columns if c not in frame.columns]
    if missing_ids:
        raise TrainingDataError(
            f"{where} has no id column(s) {missing_ids} (columns: {', '.join(map(str, frame.columns))}); "
            f"pass the right {ID_COLUMNS_FLAG}"
        )
    classes = _check_target(frame[label], task_type, where)
    skip = {label, timestamp_column, *id_columns}
    chosen = _feature_columns(frame, skip, features, where)
    categorical: list[str] = []
    numeric: list[str] = []
    for column in chosen:
        (categorical if _kind(frame[column], column, where) == "categorical" else numeric).append(column)
    train, validation = split_by_time(frame, timestamp_column, val_fraction, where)
    return TrainingSet(
        train,
        validation,
        categorical,
        numeric,
        label,
        fingerprint,
        timestamp_column,
        tuple(id_columns),
        uri,
        task_type,
        classes,
    )


def load_evaluation(uri: str, training: TrainingSet) -> EvaluationSet:
    """Read and check a parquet evaluation set against the checked ``training`` set.

    It needs the training set's label (of the same task; binary: both classes), timestamp and id
    columns and every feature, each of the same kind (numeric or string); other columns are ignored.
    Rows with a null label are dropped. Multiclass rows of a class the training set never had are kept
    (they count against the model) with a warning. With id columns, a row of the training set (same
    ids and timestamp) may not appear in it: rows the model was fitted or stopped on cannot judge it.

    :raises TrainingDataError: naming the missing column, the feature of another kind, or the shared rows.
    """
    where = f"evaluation set {uri}"
    frame, fingerprint, _ = _read(uri, "evaluation set")
    frame = _labelled(
        frame, training.label, training.timestamp_column, where, "evaluation", training.task_type
    )
    missing = [c for c in [*training.id_columns, *training.features] if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"{where} lacks the training set's columns {missing}; build it from the same feature "
            f"service (features and {ID_COLUMNS_FLAG}) as the training set"
        )
    for column in training.features:
        expected = "categorical" if column in training.categorical else "numeric"
        found = _kind(frame[column], column, where) if frame[column].notna().any() else expected
        if found != expected:
            words = {"categorical": "text", "numeric": "numeric"}
            raise TrainingDataError(
                f"{where}: feature {column!r} is {words[found]} here but {words[expected]} in the "
                "training set; cast it as the training set does"
            )
    _refuse_shared_rows(frame, training, where)
    evaluation = EvaluationSet(frame.reset_index(drop=True), fingerprint, uri)
    _warn_on_time_overlap(evaluation, training)
    _warn_on_unseen_classes(evaluation, training)
    return evaluation


def time_range(frame: pd.DataFrame, timestamp_column: str) -> str:
    """``<first>/<last>`` timestamps of ``frame`` in ISO 8601 (UTC), both ends included."""
    stamps = pd.to_datetime(frame[timestamp_column], utc=True)
    return f"{stamps.min().isoformat()}/{stamps.max().isoformat()}"


def _read(uri: str, what: str) -> tuple[pd.DataFrame, str, dict[str, str]]:
    """The rows, the content fingerprint and the parquet key-value metadata (as text) of ``uri``."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="mlops-trainer-") as workdir:
        path = fetch(uri, Path(workdir), what)
        raw = pq.ParquetDataset(path).schema.metadata or {}
        metadata = {
            key.decode(errors="replace"): value.decode(errors="replace") for key, value in raw.items()
        }
        return pd.read_parquet(path), data_fingerprint(path), metadata


def _labelled(
    frame: pd.DataFrame, label: str, timestamp_column: str, where: str, window: str, task_type: str
) -> pd.DataFrame:
    """The rows with a label, the label typed for ``task_type``; refuses an empty set, a missing
    column, a label that does not fit the task, and (binary) a single class."""
    if frame.empty:
        raise TrainingDataError(f"{where} is empty; check the feature pipeline's date range")
    for column, flag in ((label, LABEL_FLAG), (timestamp_column, TIMESTAMP_FLAG)):
        if column not in frame.columns:
            raise TrainingDataError(
                f"{where} has no column {column!r} (columns: {', '.join(map(str, frame.columns))}); "
                f"pass the right {flag}"
            )
    frame = frame[frame[label].notna()]
    if frame.empty:
        raise TrainingDataError(f"{where}: every {label!r} is null; labels have not landed yet")
    typed = {BINARY: _binary_label, MULTICLASS: _class_label, REGRESSION: _numeric_label}[task_type]
    frame = frame.assign(**{label: typed(frame[label], where)})
    if task_type == BINARY:
        classes = frame[label].unique()
        if len(classes) < 2:
            raise TrainingDataError(
                f"{where}: label {label!r} has a single class ({int(classes[0])}) in {len(frame)} rows; "
                f"widen the {window} window so both classes appear"
            )
    return frame


def _check_target(labels: pd.Series, task_type: str, where: str) -> tuple[Any, ...]:
    """The training labels must vary; for multiclass, return the classes sorted by their text."""
    if task_type == REGRESSION and labels.nunique() < 2:
        raise TrainingDataError(
            f"{where}: label {labels.name!r} has the single value {_plain(labels.iloc[0])!r} in "
            f"{len(labels)} rows; nothing to learn: widen the training window or pass the right {LABEL_FLAG}"
        )
    if task_type != MULTICLASS:
        return ()
    classes = tuple(sorted((_plain(v) for v in labels.unique()), key=str))
    if len(classes) < 2:
        raise TrainingDataError(
            f"{where}: label {labels.name!r} has {len(classes)} class ({classes[0]!r}) in {len(labels)} "
            f"rows; a multiclass label needs at least two: widen the training window or pass the right "
            f"{LABEL_FLAG}"
        )
    return classes


def _feature_columns(
    frame: pd.DataFrame, skip: set[str], features: Sequence[str] | None, where: str
) -> list[str]:
    """``features`` checked against the set, or every column but ``skip`` and other datetime columns."""
    if not features:
        chosen = [
            str(c)
            for c in frame.columns
            if c not in skip and not pd.api.types.is_datetime64_any_dtype(frame[c])
        ]
        if not chosen:
            raise TrainingDataError(f"{where} has no feature columns besides {sorted(skip)}")
        return chosen
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"{where} has no feature column(s) {missing} (columns: {', '.join(map(str, frame.columns))}); "
            f"pass the right {FEATURES_FLAG}"
        )
    clash = [c for c in features if c in skip]
    if clash:
        raise TrainingDataError(
            f"{where}: {FEATURES_FLAG} lists {clash}, the label, timestamp or id column(s); a model may "
            "not take them as features: drop them from the list"
        )
    return list(dict.fromkeys(features))


def _refuse_shared_rows(frame: pd.DataFrame, training: TrainingSet, where: str) -> None:
    if not training.id_columns:
        return  # without keys a row cannot be recognised; the time ranges are still logged
    keys = [*training.id_columns, training.timestamp_column]

    def rows(part: pd.DataFrame) -> pd.DataFrame:  # keys as text, so 7 and "7" are the same entity
        stamps = pd.to_datetime(part[training.timestamp_column], utc=True)
        return part[list(training.id_columns)].astype(str).assign(**{training.timestamp_column: stamps})

    seen = pd.concat([rows(training.train), rows(training.validation)]).drop_duplicates()
    shared = len(rows(frame).merge(seen, on=keys))
    if shared:
        raise TrainingDataError(
            f"{where} shares {shared} rows (same {keys}) with the training set; rows the model was fitted "
            "or early-stopped on cannot judge it: take the evaluation window after the training window"
        )


def _warn_on_time_overlap(evaluation: EvaluationSet, training: TrainingSet) -> None:
    column = training.timestamp_column
    trained_until = pd.to_datetime(training.validation[column], utc=True).max()
    evaluated_from = pd.to_datetime(evaluation.frame[column], utc=True).min()
    if evaluated_from <= trained_until:
        log.warning(
            "evaluation set %s starts at %s, before the training window ends (%s): it is not held out "
            "in time, and its rows are only checked against the training rows with --id-columns",
            evaluation.uri,
            evaluated_from.isoformat(),
            trained_until.isoformat(),
        )


def _warn_on_unseen_classes(evaluation: EvaluationSet, training: TrainingSet) -> None:
    if training.task_type != MULTICLASS:
        return
    texts = evaluation.frame[training.label].map(str)
    unseen = ~texts.isin([str(c) for c in training.classes])
    if unseen.any():
        log.warning(
            "evaluation set %s: %d of %d rows have a class the training set never had (%s); they are "
            "kept and count against the model, which cannot predict them",
            evaluation.uri,
            int(unseen.sum()),
            len(texts),
            ", ".join(sorted(set(texts[unseen]))),
        )


def _binary_label(values: pd.Series, where: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(np.int64)
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.isna().any() or not numeric.isin([0, 1]).all():
        bad = values[numeric.isna() | ~numeric.isin([0, 1])].iloc[0]
        raise TrainingDataError(
            f"{where}: label {values.name!r} must be 0/1 or boolean, found {_plain(bad)!r}, for a binary "
            f"task; pass {TASK_TYPE_FLAG} multiclass or regression, or the right {LABEL_FLAG}"
        )
    return numeric.astype(np.int64)


def _class_label(values: pd.Series, where: str) -> pd.Series:
    """Classes as int64 when the label holds integers (or booleans), else as text."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return values.astype(np.int64)
    if pd.api.types.is_float_dtype(values):
        fractional = values[values != np.floor(values)]
        if len(fractional):
            raise TrainingDataError(
                f"{where}: label {values.name!r} holds fractional numbers such as "
                f"{_plain(fractional.iloc[0])!r}, not classes; pass {TASK_TYPE_FLAG} regression, or the "
                f"right {LABEL_FLAG}"
            )
        return values.astype(np.int64)
    return values.map(str).astype(object)


def _numeric_label(values: pd.Series, where: str) -> pd.Series:
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        bad = values.iloc[0]
        raise TrainingDataError(
            f"{where}: label {values.name!r} must be numeric for a regression, found {_plain(bad)!r} "
            f"({type(bad).__name__}); cast it to a number in the feature view, pass {TASK_TYPE_FLAG} "
            f"multiclass for classes, or the right {LABEL_FLAG}"
        )
    numbers = values.astype("float64")
    if not np.isfinite(numbers).all():
        bad = numbers[~np.isfinite(numbers)].iloc[0]
        raise TrainingDataError(
            f"{where}: label {values.name!r} holds {_plain(bad)!r}; a regression label must be a finite "
            "number: drop or fix those rows in the feature view"
        )
    return numbers


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so messages and JSON show ``2``, not ``np.int64(2)``."""
    return value.item() if isinstance(value, np.generic) else value


def _kind(values: pd.Series, column: str, where: str) -> str:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return "numeric"
    present = values.dropna()
    textual = values.dtype == object or pd.api.types.is_string_dtype(values)
    if textual and present.map(lambda v: isinstance(v, str)).all():
        return "categorical"
    odd = present[~present.map(lambda v: isinstance(v, str))]
    example = type(odd.iloc[0]).__name__ if len(odd) else str(values.dtype)
    raise TrainingDataError(
        f"{where}: feature {column!r} holds {example} values the trainer cannot encode "
        f"(it takes numbers, booleans and strings); cast or drop the column in the feature view, or "
        f"leave it out of {FEATURES_FLAG}"
    )


def split_by_time(
    frame: pd.DataFrame, timestamp_column: str, val_fraction: float, where: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Put the last ``val_fraction`` of the timestamp range in validation, so it is "the future"."""
    stamps = pd.to_datetime(frame[timestamp_column], utc=True)
    cutoff = stamps.min() + (stamps.max() - stamps.min()) * (1.0 - val_fraction)
    is_validation = stamps >= cutoff
    train, validation = frame[~is_validation], frame[is_validation]
    if train.empty or validation.empty:
        raise TrainingDataError(
            f"{where}: every row has the same {timestamp_column!r}, so there is no time to split "
            "into train and validation; train on more than one snapshot"
        )
    return train.reset_index(drop=True), validation.reset_index(drop=True)
