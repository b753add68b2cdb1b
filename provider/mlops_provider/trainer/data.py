"""Load, check and split the training set before any MLflow run starts.

Every refusal raises :class:`TrainingDataError`, whose message names the column at fault and what
to do, so a bad training set never leaves a half-logged run behind.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_provider.ml.lineage import data_fingerprint

# Bookkeeping columns of a Feast training set that are keys, not signals.


class TrainingDataError(ValueError):
    """The training set cannot be trained on; the message names the problem."""


@dataclass(frozen=True)
class TrainingSet:
    """A checked training set split by time.

    :param train: rows before the validation cut-off.
    :param validation: the last ``val_fraction`` of the timestamp range.
    :param categorical: string feature columns, embedded.
    :param numeric: numeric and boolean feature columns, imputed and standardised.
    :param fingerprint: ``<uri>@sha256:<hex>`` of the file content.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    categorical: list[str]
    numeric: list[str]
    label: str
    fingerprint: str

    @property
    def features(self) -> list[str]:
        return [*self.categorical, *self.numeric]


def fetch(uri: str, workdir: Path) -> Path:
    """Return a local path for ``uri``, downloading ``s3://bucket/key`` with boto3 into ``workdir``.

    boto3 reads credentials and ``AWS_ENDPOINT_URL`` (MinIO, Ceph) from the environment.
    """
    if not uri.startswith("s3://"):
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise TrainingDataError(f"training set {uri} does not exist; run the feature pipeline first")
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
    with tempfile.TemporaryDirectory(prefix="mlops-trainer-") as workdir:
        path = fetch(uri, Path(workdir))
        fingerprint = data_fingerprint(uri, path)
        frame = pd.read_parquet(path)
    where = f"training set {uri}"
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
            "widen the training window so both classes appear"
        )
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
    return TrainingSet(train, validation, categorical, numeric, label, fingerprint)


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
