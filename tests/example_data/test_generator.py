"""The example-data generator is deterministic, scales, drifts on request and breaks data on request."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_provider.example_data.generator import (
    ACTIVITY_DATASET,
    ACTIVITY_SCHEMA,
    BAD_MODES,
    LABELS_DATASET,
    GeneratorConfig,
    activity_columns,
    activity_table,
    churn_probability,
    generate,
    labels_table,
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


def _microseconds(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy()


@pytest.mark.parametrize("offset", [-3, 0, 1, 2, 5])
def test_the_data_depends_on_the_days_since_the_epoch_not_on_the_calendar(offset):
    # Two epochs 20 years apart, the drift on the same day after each: only the timestamps move.
    early, late = dt.date(2026, 1, 1), dt.date(2046, 7, 15)
    shift_us = (late - early).days * 86_400 * 1_000_000
    tables = {}
    for epoch in (early, late):
        cfg = GeneratorConfig(rows_per_day=300, epoch=epoch, drift_from=epoch + dt.timedelta(days=2))
        day = epoch + dt.timedelta(days=offset)
        tables[epoch] = (activity_table(cfg, day), labels_table(cfg, day))

    for a, b in zip(tables[early], tables[late], strict=True):
        stamps = [c for c in a.column_names if c.endswith("timestamp")]
        assert a.drop_columns(stamps).equals(b.drop_columns(stamps))
        for column in stamps:
            assert (_microseconds(b[column]) - _microseconds(a[column]) == shift_us).all()


def test_days_before_the_epoch_are_days_of_their_own():
    cfg = GeneratorConfig(rows_per_day=300)
    before, after = (activity_table(cfg, cfg.epoch + dt.timedelta(days=d)) for d in (-1, 1))
    assert not before.drop_columns(["event_timestamp"]).equals(after.drop_columns(["event_timestamp"]))
    tenure = [activity_table(cfg, cfg.epoch + dt.timedelta(days=d))["tenure_days"].to_numpy() for d in (0, 9)]
    assert ((tenure[1] - tenure[0] == 9) | (tenure[1] == 3650)).all()


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


SHIFT_ROWS = 50_000  # AUC standard error about 0.003


def _labels_of_snapshot(cfg: GeneratorConfig, snapshot: dt.date) -> np.ndarray:
    return labels_table(cfg, snapshot + dt.timedelta(days=cfg.label_delay_days))["churned"].to_numpy()


def test_after_the_concept_shift_the_old_ground_truth_ranks_churners_clearly_worse():
    cfg = GeneratorConfig(rows_per_day=SHIFT_ROWS, drift_from=DAY)
    columns = activity_columns(cfg, DAY)
    churned = _labels_of_snapshot(cfg, DAY)

    old_rule = roc_auc_score(churned, churn_probability(columns))
    new_rule = roc_auc_score(churned, churn_probability(columns, shift=cfg.shift_on(DAY)))

    assert cfg.shift_on(DAY) == 1.0 and cfg.shift_on(DAY - dt.timedelta(days=1)) == 0.0
    assert new_rule - old_rule >= 0.04


def test_a_concept_shift_of_zero_keeps_the_old_rule_and_days_before_the_shift_never_change():
    unshifted = GeneratorConfig(rows_per_day=SHIFT_ROWS, drift_from=DAY, concept_shift=0.0)
    shifted = GeneratorConfig(rows_per_day=SHIFT_ROWS, drift_from=DAY)
    columns = activity_columns(unshifted, DAY)
    churned = _labels_of_snapshot(unshifted, DAY)
    old_rule = churn_probability(columns)

    assert unshifted.shift_on(DAY) == 0.0
    assert roc_auc_score(churned, old_rule) - roc_auc_score(churned, churn_probability(columns, 1.0)) >= 0.04
    assert abs(churned.mean() - old_rule.mean()) < 4 * np.sqrt(old_rule.mean() / SHIFT_ROWS)
    earlier = DAY - dt.timedelta(days=1)
    assert (_labels_of_snapshot(unshifted, earlier) == _labels_of_snapshot(shifted, earlier)).all()


FEATURES = [c for c in ACTIVITY_SCHEMA if c not in ("customer_id", "event_timestamp")]


def _fit_logistic_regression(cfg: GeneratorConfig, first: dt.date) -> Any:
    """A linear model trained on two labelled days from ``first``."""
    days = [first, first + dt.timedelta(days=1)]
    features = pd.concat(pd.DataFrame(activity_columns(cfg, day))[FEATURES] for day in days)
    labels = np.concatenate([_labels_of_snapshot(cfg, day) for day in days])
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan", "country"]), remainder=StandardScaler()
    )
    return make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(features, labels)


def test_a_model_retrained_after_the_shift_beats_one_trained_before_it():
    cfg = GeneratorConfig(rows_per_day=2_000, drift_from=DAY)
    before = _fit_logistic_regression(cfg, DAY - dt.timedelta(days=2))
    after = _fit_logistic_regression(cfg, DAY)
    later = DAY + dt.timedelta(days=10)
    fresh = GeneratorConfig(rows_per_day=SHIFT_ROWS, seed=7, drift_from=DAY)  # customers neither saw
    features = pd.DataFrame(activity_columns(fresh, later))[FEATURES]
    churned = _labels_of_snapshot(fresh, later)

    gain = roc_auc_score(churned, after.decision_function(features)) - roc_auc_score(
        churned, before.decision_function(features)
    )
    assert gain >= 0.04


def test_a_negative_concept_shift_is_refused():
    with pytest.raises(ValueError, match="concept_shift must be >= 0"):
        GeneratorConfig(concept_shift=-0.5)


@pytest.mark.parametrize("mode", BAD_MODES)
def test_every_bad_mode_writes_something_malformed(tmp_path, mode):
    written = write_day(GeneratorConfig(rows_per_day=100, bad_mode=mode), tmp_path, DAY)
    path = partition_path(tmp_path, ACTIVITY_DATASET, DAY)
    if mode == "missing_partition":
        assert not path.exists() and written["activity"] is None
        return
    if mode == "corrupt":
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
