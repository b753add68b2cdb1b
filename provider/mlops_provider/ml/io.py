"""Parquet in and out, one way for the whole provider: atomic writes and reads that name what failed.

Paths may be local (``/x``, ``file:///x``) or any filesystem pyarrow resolves (``s3://``); a local
glob resolves to its newest (last-sorting) match where the caller asks for it. Writes go to a hidden
sibling first and are renamed over the target, so a reader sees the old file or the new one, never
half of one (object stores replace a key atomically, so there the file is written in place).
"""

from __future__ import annotations

import glob
import os
import uuid
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from mlops_provider.exceptions import DataNotFound

if TYPE_CHECKING:
    import pandas as pd


def _local(uri: str) -> str | None:
    """The local path of ``uri``, or None when it names a remote filesystem."""
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    return None if "://" in uri else uri


def newest_match(uri: str) -> str:
    """Resolve a local glob to its newest (last-sorting) match; any other URI is returned as it is."""
    path = _local(uri)
    if path is None or not any(ch in path for ch in "*?["):
        return uri
    matches = sorted(glob.glob(path))
    if not matches:
        raise DataNotFound(f"No file matches {uri!r}; publish data there first.")
    return matches[-1]


def read_parquet(uri: str, what: str = "Parquet data", hint: str = "") -> pd.DataFrame:
    """Read a parquet file or directory into pandas; a missing or unreadable one is ``DataNotFound``.

    :param uri: local path, ``file://`` URI or a pyarrow filesystem URI (``s3://``).
    :param what: what the data is, for the error message (``"Held-out data"``).
    :param hint: what the user can do about it, appended to the error message.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(_local(uri) or uri).to_pandas()
    except (FileNotFoundError, OSError, pa.ArrowException) as err:  # missing, unreadable or corrupt
        raise DataNotFound(
            f"{what} {uri!r} could not be read as parquet ({err}).{f' {hint}' if hint else ''}"
        ) from err


def write_atomically(destination: Any, write: Callable[[IO[bytes]], Any]) -> None:
    """Write through ``write(file)`` to a hidden sibling of ``destination``, then rename it over.

    ``destination`` is a ``pathlib.Path`` or an ``ObjectStoragePath``: anything with ``parent``,
    ``name``, ``open`` and ``rename``. Parquet readers skip names that start with a dot.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.parent / f".{destination.name}.{uuid.uuid4().hex}.partial"
    with partial.open("wb") as handle:
        write(handle)
    partial.rename(destination)


def write_parquet(frame: pd.DataFrame, uri: str) -> str:
    """Write ``frame`` to ``uri`` (local or a pyarrow filesystem URI), replacing it whole; return ``uri``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    path = _local(uri)
    if path is None:
        pq.write_table(table, uri)  # object stores replace a key atomically
        return uri
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{uuid.uuid4().hex}.partial")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return uri


def parquet_metadata(uri: str) -> dict[str, str]:
    """The key-value metadata of a parquet file (``{}`` when it has none), e.g. the join keys and
    timestamp column the Feast operator records on a training set; ``DataNotFound`` when unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(_local(uri) or uri).metadata or {}
    except (FileNotFoundError, OSError, pa.ArrowException) as err:
        raise DataNotFound(f"Parquet file {uri!r} could not be read ({err}).") from err
    return {key.decode(): value.decode() for key, value in metadata.items() if key != b"pandas"}
