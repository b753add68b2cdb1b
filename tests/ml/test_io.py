"""Parquet in and out: errors that name the URI, newest glob match, atomic writes that leave nothing behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mlops_provider.exceptions import DataNotFound
from mlops_provider.ml.io import newest_match, read_parquet, write_atomically, write_parquet

FRAME = pd.DataFrame(
    {"customer_id": [1, 2, 3], "plan": ["basic", "premium", None], "spend": [1.5, 0.0, 9.25]}
)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_then_read_round_trips_local_paths_and_file_uris(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "frame.parquet"
    assert write_parquet(FRAME, str(path)) == str(path)  # parent directories are created
    pd.testing.assert_frame_equal(read_parquet(str(path)), FRAME)
    pd.testing.assert_frame_equal(read_parquet(f"file://{path}"), FRAME)
    uri = f"file://{tmp_path / 'via-uri.parquet'}"
    assert write_parquet(FRAME, uri) == uri
    pd.testing.assert_frame_equal(read_parquet(str(tmp_path / "via-uri.parquet")), FRAME)
    assert _leftovers(path.parent) == [] and _leftovers(tmp_path) == []


def test_write_parquet_replaces_the_file_whole_and_drops_the_index(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    write_parquet(FRAME, str(path))
    smaller = FRAME.iloc[1:].set_index(pd.Index([10, 20]))
    write_parquet(smaller, str(path))
    back = read_parquet(str(path))
    pd.testing.assert_frame_equal(back, smaller.reset_index(drop=True))
    assert list(back.columns) == list(FRAME.columns)
    assert [p.name for p in tmp_path.iterdir()] == ["log.parquet"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    write_parquet(FRAME, str(path))
    before = path.read_bytes()
    unwritable = pd.DataFrame({"mixed": [1, "two", 3.0]})  # pyarrow cannot convert the column
    with pytest.raises(pa.ArrowInvalid, match="Conversion failed for column mixed"):
        write_parquet(unwritable, str(path))
    assert path.read_bytes() == before
    partials = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    # pyarrow fails while building the table, before any temporary file is opened.
    assert partials == []


def test_read_errors_are_data_not_found_naming_the_uri_what_and_hint(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(DataNotFound) as err:
        read_parquet(str(missing), "Held-out data", hint="Run the feature pipeline first.")
    message = str(err.value)
    assert message.startswith(f"Held-out data {str(missing)!r} could not be read as parquet (")
    assert message.endswith("). Run the feature pipeline first.")
    assert isinstance(err.value.__cause__, OSError)
    with pytest.raises(
        DataNotFound, match=re.escape(f"Parquet data {f'file://{missing}'!r} could not be read")
    ):
        read_parquet(f"file://{missing}")


def test_read_parquet_reads_a_partitioned_directory(tmp_path: Path) -> None:
    directory = tmp_path / "dataset"
    directory.mkdir()
    FRAME.iloc[:2].to_parquet(directory / "part-0.parquet", index=False)
    FRAME.iloc[2:].to_parquet(directory / "part-1.parquet", index=False)
    (directory / ".part-2.parquet.abc.partial").write_bytes(b"half a file")  # hidden: readers skip it
    back = read_parquet(str(directory)).sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, FRAME)


def test_newest_match_resolves_a_local_glob_to_its_last_sorting_match(tmp_path: Path) -> None:
    for day in ("2026-01-02", "2026-01-10", "2026-01-09"):
        (tmp_path / f"date={day}").mkdir()
        (tmp_path / f"date={day}" / "part.parquet").write_bytes(b"")
    pattern = str(tmp_path / "date=*" / "part.parquet")
    assert newest_match(pattern) == str(tmp_path / "date=2026-01-10" / "part.parquet")
    assert newest_match(f"file://{pattern}") == str(tmp_path / "date=2026-01-10" / "part.parquet")
    assert newest_match(str(tmp_path / "date=2026-01-0[29]" / "part.parquet")).endswith(
        "2026-01-09/part.parquet"
    )
    # Not a glob, or not local: returned as it is, without looking.
    assert newest_match(str(tmp_path / "absent.parquet")) == str(tmp_path / "absent.parquet")
    assert newest_match("s3://bucket/date=*/part.parquet") == "s3://bucket/date=*/part.parquet"
    with pytest.raises(DataNotFound, match=re.escape(f"No file matches {str(tmp_path / 'x*')!r}")):
        newest_match(str(tmp_path / "x*"))


def test_write_atomically_renames_a_hidden_sibling_over_the_destination(tmp_path: Path) -> None:
    destination = tmp_path / "staging" / "part-00000.parquet"
    seen: list[tuple[str, bool]] = []

    def write(handle) -> None:
        partial = Path(handle.name)
        seen.append((partial.name, destination.exists()))
        handle.write(b"first")

    write_atomically(destination, write)
    assert destination.read_bytes() == b"first"
    [(partial_name, existed)] = seen
    assert not existed  # while writing, readers see no destination at all
    assert partial_name.startswith(".part-00000.parquet.") and partial_name.endswith(".partial")
    write_atomically(destination, lambda handle: handle.write(b"second"))
    assert destination.read_bytes() == b"second"
    assert os.listdir(destination.parent) == ["part-00000.parquet"]


def test_write_atomically_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    destination = tmp_path / "part.parquet"
    destination.write_bytes(b"old")

    def failing(handle) -> None:
        handle.write(b"half of the new")
        raise RuntimeError("upstream connection reset")

    with pytest.raises(RuntimeError, match="connection reset"):
        write_atomically(destination, failing)
    assert destination.read_bytes() == b"old"
    # The hidden partial file stays behind (parquet readers skip dot files); the destination is intact.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["part.parquet"]
