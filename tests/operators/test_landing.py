"""ExtractPartitionOperator: a landing partition is copied whole into staging, or the task fails cleanly."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlops_provider.example_data.generator import ACTIVITY_DATASET, partition_path
from mlops_provider.exceptions import DataNotFound
from mlops_provider.operators.landing import ExtractPartitionOperator

DAY = dt.date(2026, 1, 2)


def extract(source: str, destination: str) -> dict:
    return ExtractPartitionOperator(
        task_id="extract", source_uri=source, destination_uri=destination
    ).execute({})


def test_a_partition_is_copied_byte_for_byte_into_staging(landing: Path, tmp_path: Path) -> None:
    source = partition_path(landing, ACTIVITY_DATASET, DAY)
    destination = tmp_path / "staging" / "customer_activity" / "2026-01-02.parquet"

    result = extract(str(source), str(destination))

    assert destination.read_bytes() == source.read_bytes()
    assert result == {"source": str(source), "uri": str(destination), "bytes": source.stat().st_size}
    assert pq.read_table(destination).num_rows == 500
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]  # no partial file left


def test_a_rerun_overwrites_the_staging_copy(landing: Path, tmp_path: Path) -> None:
    destination = tmp_path / "staging.parquet"
    destination.write_bytes(b"a stale copy from an earlier try")
    source = partition_path(landing, ACTIVITY_DATASET, DAY)
    for _ in range(2):
        extract(f"file://{source}", f"file://{destination}")
        assert destination.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landing", "staging.parquet"]


def test_a_missing_partition_fails_without_writing_anything(landing: Path, tmp_path: Path) -> None:
    source = partition_path(landing, ACTIVITY_DATASET, dt.date(2026, 2, 1))
    destination = tmp_path / "staging" / "x.parquet"
    with pytest.raises(DataNotFound, match=re.escape(f"Partition {source} does not exist")) as err:
        extract(str(source), str(destination))
    assert "landing_path param" in str(err.value)
    assert not destination.parent.exists()
    with pytest.raises(DataNotFound):  # a directory is not a partition file
        extract(str(source.parent.parent), str(destination))


def test_the_uris_and_the_connection_are_templated() -> None:
    assert set(ExtractPartitionOperator.template_fields) == {"source_uri", "destination_uri", "conn_id"}
    op = ExtractPartitionOperator(
        task_id="extract",
        source_uri="{{ params.landing }}/customer_activity/date={{ ds }}/part-00000.parquet",
        destination_uri="/staging/{{ ds }}.parquet",
    )
    op.render_template_fields({"params": {"landing": "/landing"}, "ds": "2026-01-02"})
    assert op.source_uri == "/landing/customer_activity/date=2026-01-02/part-00000.parquet"
    assert op.destination_uri == "/staging/2026-01-02.parquet" and op.conn_id is None
