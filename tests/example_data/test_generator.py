"""The example-data generator is deterministic, scales, drifts on request and breaks data on request."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from mlops_provider.example_data.generator import (
    ACTIVITY_DATASET,
    ACTIVITY_SCHEMA,
    BAD_MODES,
    LABELS_DATASET,
    GeneratorConfig,
    activity_table,
    generate,
    partition_path,
    write_day,
)

DAY = dt.date(2026, 1, 5)


def test_same_seed_same_bytes_and_days_are_independent(tmp_path):
    generate(GeneratorConfig(rows_per_day=300), tmp_path / "a", dt.date(2026, 1, 1), 5)
    write_day(GeneratorConfig(rows_per_day=300), tmp_path / "b", DAY)  # day 5 alone
    a = pq.read_table(partition_path(tmp_path / "a", ACTIVITY_DATASET, DAY))
    b = pq.read_table(partition_path(tmp_path / "b", ACTIVITY_DATASET, DAY))
    assert a.equals(b)
    assert not a.equals(activity_table(GeneratorConfig(rows_per_day=300, seed=7), DAY))


def test_schema_matches_the_documented_one_and_rows_per_day():
    table = activity_table(GeneratorConfig(rows_per_day=1234), DAY)
    assert table.num_rows == 1234
    assert {f.name: str(f.type) for f in table.schema} == {k: v[0] for k, v in ACTIVITY_SCHEMA.items()}
    ts = table["event_timestamp"].to_pandas()
    assert ts.min() >= dt.datetime(2026, 1, 5, tzinfo=dt.UTC) and ts.max() < dt.datetime(
        2026, 1, 6, tzinfo=dt.UTC
    )
    assert table["customer_id"].to_pandas().is_unique


def test_labels_arrive_later_and_point_at_earlier_snapshots(tmp_path):
    cfg = GeneratorConfig(rows_per_day=200, label_delay_days=2)
    write_day(cfg, tmp_path, DAY)
    labels = pq.read_table(partition_path(tmp_path, LABELS_DATASET, DAY)).to_pandas()
    assert set(labels["churned"].unique()) == {0, 1}
    assert (labels["event_timestamp"].dt.date == dt.date(2026, 1, 3)).all()
    assert (labels["label_timestamp"].dt.date == DAY).all()


def test_drift_changes_distributions_from_the_configured_day_only():
    cfg = GeneratorConfig(rows_per_day=5000, drift_from=DAY)
    before = activity_table(cfg, DAY - dt.timedelta(days=1)).to_pandas()
    after = activity_table(cfg, DAY).to_pandas()
    quiet = activity_table(GeneratorConfig(rows_per_day=5000), DAY).to_pandas()
    assert after["sessions_7d"].mean() < 0.75 * before["sessions_7d"].mean()
    assert after["country"].isin(["IN", "BR"]).mean() > before["country"].isin(["IN", "BR"]).mean() + 0.2
    assert (
        abs(quiet["sessions_7d"].mean() - before["sessions_7d"].mean()) < 0.05 * before["sessions_7d"].mean()
    )


@pytest.mark.parametrize("mode", BAD_MODES)
def test_every_bad_mode_writes_something_malformed(tmp_path, mode):
    written = write_day(GeneratorConfig(rows_per_day=100, bad_mode=mode), tmp_path, DAY)
    path = partition_path(tmp_path, ACTIVITY_DATASET, DAY)
    if mode == "missing_partition":
        assert not path.exists() and written["activity"] is None
        return
    if mode == "corrupt":
        import pyarrow as pa

        with pytest.raises(pa.ArrowInvalid):
            pq.read_table(path)
        return
    table = pq.read_table(path)
    clean = activity_table(GeneratorConfig(rows_per_day=100), DAY)
    assert not table.equals(clean)


@pytest.mark.parametrize(
    ("mode", "column", "null_share"),
    [("null_feature", "minutes_watched_7d", 1.0), ("partly_null_feature", "country", 0.6)],
)
def test_null_feature_modes_null_one_feature_and_keep_the_schema(tmp_path, mode, column, null_share):
    write_day(GeneratorConfig(rows_per_day=500, bad_mode=mode), tmp_path, DAY)
    table = pq.read_table(partition_path(tmp_path, ACTIVITY_DATASET, DAY))
    clean = activity_table(GeneratorConfig(rows_per_day=500), DAY)

    assert table.schema.equals(clean.schema)  # types unchanged: only a null rule can notice
    assert table[column].null_count == null_share * 500
    assert table.drop_columns([column]).equals(clean.drop_columns([column]))
    kept = table[column].drop_null()
    assert kept.equals(clean[column].filter(table[column].is_valid()))  # the rest is the clean values


def test_bad_days_limit_the_corruption(tmp_path):
    cfg = GeneratorConfig(rows_per_day=50, bad_mode="empty", bad_days=(DAY,))
    generate(cfg, tmp_path, DAY - dt.timedelta(days=1), 2)
    assert pq.read_table(partition_path(tmp_path, ACTIVITY_DATASET, DAY)).num_rows == 0
    assert (
        pq.read_table(partition_path(tmp_path, ACTIVITY_DATASET, DAY - dt.timedelta(days=1))).num_rows == 50
    )


def test_an_unknown_bad_mode_is_refused():
    with pytest.raises(ValueError, match="unknown bad_mode"):
        GeneratorConfig(bad_mode="nope")
