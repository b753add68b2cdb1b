"""Load, check and split the training set, and check the evaluation set, before any MLflow run starts.

Every refusal raises :class:`TrainingDataError`, whose message names the column at fault and what
to do, so a bad training or evaluation set never leaves a half-logged run behind.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_provider.ml.lineage import data_fingerprint

log = logging.getLogger("mlops_provider.trainer")


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
    :param fingerprint: ``sha256:<hex>`` of the file content.
    :param timestamp_column: the column both sets are split and compared by.
    :param id_columns: entity keys; with ``timestamp_column`` they identify a row.
    :param uri: where it was read from.
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

    @property
    def features(self) -> list[str]:
        return [*self.categorical, *self.numeric]


@dataclass(frozen=True)
class EvaluationSet:
    """Held-out rows with the training set's label and features: never fitted on, never used to stop.

    :param frame: the labelled rows (label as 0/1).
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
    timestamp_column: str,
    val_fraction: float,
    id_columns: tuple[str, ...] = (),
) -> TrainingSet:
    """Read, check and split a parquet training set.

    Rows with a null label are dropped. Null features are kept and imputed later (median for
    numbers, an "unknown" category for strings). Datetime columns other than ``timestamp_column``
    (e.g. ``label_timestamp``) and ``id_columns`` are bookkeeping and not features.

    :raises TrainingDataError: empty set, missing label or timestamp, a label that is not binary
        with both classes, a feature that cannot be encoded, or a split leaving one side empty.
    """
    where = f"training set {uri}"
    frame, fingerprint = _read(uri, "training set")
    frame = _labelled(frame, label, timestamp_column, where, "training")
    skip = {label, timestamp_column, *id_columns}
    categorical: list[str] = []
    numeric: list[str] = []
    for column in frame.columns:
        if column in skip or pd.api.types.is_datetime64_any_dtype(frame[column]):
            continue
        (categorical if _kind(frame[column], column, where) == "categorical" else numeric).append(column)
    if not categorical and not numeric:
        raise TrainingDataError(f"{where} has no feature columns besides {sorted(skip)}")
    train, validation = split_by_time(frame, timestamp_column, val_fraction, where)
    return TrainingSet(
        train, validation, categorical, numeric, label, fingerprint, timestamp_column, id_columns, uri
    )


def load_evaluation(uri: str, training: TrainingSet) -> EvaluationSet:
    """Read and check a parquet evaluation set against the checked ``training`` set.

    It needs the training set's label (binary, both classes), timestamp and id columns and every
    feature, each of the same kind (numeric or string); other columns are ignored. Rows with a null
    label are dropped. With id columns, a row of the training set (same ids and timestamp) may not
    appear in it: rows the model was fitted or stopped on cannot judge it.

    :raises TrainingDataError: naming the missing column, the feature of another kind, or the shared rows.
    """
    where = f"evaluation set {uri}"
    frame, fingerprint = _read(uri, "evaluation set")
    frame = _labelled(frame, training.label, training.timestamp_column, where, "evaluation")
    missing = [c for c in [*training.id_columns, *training.features] if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"{where} lacks the training set's columns {missing}; build it from the same feature "
            "service (features and --id-columns) as the training set"
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
    return evaluation


def time_range(frame: pd.DataFrame, timestamp_column: str) -> str:
    """``<first>/<last>`` timestamps of ``frame`` in ISO 8601 (UTC), both ends included."""
    stamps = pd.to_datetime(frame[timestamp_column], utc=True)
    return f"{stamps.min().isoformat()}/{stamps.max().isoformat()}"


def _read(uri: str, what: str) -> tuple[pd.DataFrame, str]:
    with tempfile.TemporaryDirectory(prefix="mlops-trainer-") as workdir:
        path = fetch(uri, Path(workdir), what)
        return pd.read_parquet(path), data_fingerprint(path)


def _labelled(
    frame: pd.DataFrame, label: str, timestamp_column: str, where: str, window: str
) -> pd.DataFrame:
    """The rows with a label, the label as 0/1; refuses an empty set, a missing column or one class."""
    if frame.empty:
        raise TrainingDataError(f"{where} is empty; check the feature pipeline's date range")
    for column, flag in ((label, "--label"), (timestamp_column, "--timestamp-column")):
        if column not in frame.columns:
            raise TrainingDataError(
                f"{where} has no column {column!r} (columns: {', '.join(map(str, frame.columns))}); "
                f"pass the right {flag}"
            )
    frame = frame[frame[label].notna()]
    if frame.empty:
        raise TrainingDataError(f"{where}: every {label!r} is null; labels have not landed yet")
    frame = frame.assign(**{label: _binary_label(frame[label], where)})
    classes = frame[label].unique()
    if len(classes) < 2:
        raise TrainingDataError(
            f"{where}: label {label!r} has a single class ({int(classes[0])}) in {len(frame)} rows; "
            f"widen the {window} window so both classes appear"
        )
    return frame


def _refuse_shared_rows(frame: pd.DataFrame, training: TrainingSet, where: str) -> None:
    if not training.id_columns:
        return  # without keys a row cannot be recognised; the time ranges are still logged
    keys = [*training.id_columns, training.timestamp_column]

    def rows(part: pd.DataFrame) -> pd.DataFrame:  # keys as text, so 7 and "7" are the same customer
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


def _binary_label(values: pd.Series, where: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(np.int64)
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.isna().any() or not numeric.isin([0, 1]).all():
        bad = values[numeric.isna() | ~numeric.isin([0, 1])].iloc[0]
        raise TrainingDataError(f"{where}: label {values.name!r} must be 0/1 or boolean, found {bad!r}")
    return numeric.astype(np.int64)


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
        "(it takes numbers, booleans and strings); cast or drop the column in the feature view"
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
