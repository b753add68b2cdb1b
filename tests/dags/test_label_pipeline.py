"""The shipped label pipeline with dag.test(): labels are validated, published by snapshot day and
announced; a bad label partition is quarantined with the file named, and nothing is published."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mlops_provider.example_data.generator import (
    LABELS_DATASET,
    GeneratorConfig,
    labels_table,
    partition_path,
)
from tests.dags.conftest import run_dag

pytestmark = pytest.mark.xdist_group("label_pipeline")

LANDED = dt.date(2026, 1, 5)
SNAPSHOT = dt.date(2026, 1, 3)  # labels land two days after their snapshot
ROWS = 300


@pytest.fixture(scope="module")
def dag():
    from label_pipeline import dag

    return dag


def land(pipeline_env, table: pa.Table) -> None:
    path = partition_path(pipeline_env["landing"], LABELS_DATASET, LANDED)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def published(pipeline_env):
    return (
        pipeline_env["root"]
        / "labels"
        / LABELS_DATASET
        / f"date={SNAPSHOT.isoformat()}"
        / "part-00000.parquet"
    )


def clean() -> pa.Table:
    return labels_table(GeneratorConfig(rows_per_day=ROWS), LANDED)


def test_clean_labels_are_published_by_their_snapshot_day_and_announced(dag, pipeline_env):
    land(pipeline_env, clean())
    for _ in range(2):  # a re-run leaves the same file
        run, states = run_dag(dag, day=LANDED.isoformat())
        assert run.state == "success", states
        assert pq.read_table(published(pipeline_env)).equals(clean())
    announced = run.get_task_instance("announce").xcom_pull(task_ids="announce")
    assert announced["day"] == SNAPSHOT.isoformat() and announced["landing_day"] == LANDED.isoformat()
    assert announced["end"] == "2026-01-04T00:00:00+00:00"


def _string_label(table: pa.Table) -> pa.Table:
    index = table.column_names.index("churned")
    return table.set_column(index, "churned", pc.cast(table["churned"], pa.string()))


def _duplicates(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 5)])


def _null_label(table: pa.Table) -> pa.Table:
    mask = pa.array([i % 10 == 0 for i in range(table.num_rows)])
    index = table.column_names.index("churned")
    return table.set_column(index, "churned", pc.if_else(mask, pa.scalar(None, pa.int64()), table["churned"]))


def _naive(table: pa.Table) -> pa.Table:
    index = table.column_names.index("event_timestamp")
    return table.set_column(index, "event_timestamp", pc.cast(table["event_timestamp"], pa.timestamp("us")))


def _wrong_snapshot(table: pa.Table) -> pa.Table:
    # The labels of another day (a delivery mix-up): their snapshots are not two days before landing.
    return labels_table(GeneratorConfig(rows_per_day=ROWS), LANDED + dt.timedelta(days=3))


@pytest.mark.parametrize(
    ("corrupt", "named"),
    [
        (_string_label, "churned"),
        (_duplicates, "customer_id"),
        (_null_label, "churned"),
        (_naive, "event_timestamp"),
        (_wrong_snapshot, "event_timestamp"),
    ],
)
def test_a_bad_label_partition_is_quarantined_named_and_never_published(dag, pipeline_env, corrupt, named):
    target = published(pipeline_env)
    target.unlink(missing_ok=True)
    land(pipeline_env, corrupt(clean()))

    run, states = run_dag(dag, day=LANDED.isoformat())

    assert run.state == "failed"
    assert states["validate"] == "failed"
    assert states["publish"] == states["announce"] == "upstream_failed"
    assert not target.exists(), "nothing of a bad batch is published"
    quarantined = pipeline_env["root"] / "quarantine" / LABELS_DATASET / LANDED.isoformat()
    report = json.loads((quarantined / "validation_report.json").read_text())
    assert named in json.dumps(report), f"the report does not name {named!r}"
    assert list(quarantined.glob("*.parquet")), "the bad batch itself is kept in quarantine"
