"""The shipped feature pipeline, run for real with dag.test(): clean days, re-runs and bad input."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from mlops_provider.example_data.generator import ACTIVITY_DATASET, GeneratorConfig, activity_table, write_day
from tests.dags.conftest import run_dag

pytestmark = pytest.mark.xdist_group("feature_pipeline")

DAY1, DAY2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
ROWS = 300


@pytest.fixture(scope="module")
def dag():
    from feature_pipeline import dag

    return dag


def run_day(dag, day: dt.date, **conf):
    return run_dag(dag, day=day.isoformat(), **conf)


def online_rows(repo) -> list[tuple]:
    with sqlite3.connect(repo / "data" / "online_store.db") as db:
        return db.execute(
            "SELECT entity_key, feature_name, value, event_ts FROM churn_customer_activity ORDER BY 1, 2"
        ).fetchall()


def online_features(repo, customer_ids):
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    return store.get_online_features(
        features=store.get_feature_service("churn_model_v1"),
        entity_rows=[{"customer_id": c} for c in customer_ids],
    ).to_dict()


def test_clean_day_lands_in_the_online_store_and_reruns_change_nothing(dag, pipeline_env):
    cfg = GeneratorConfig(rows_per_day=ROWS)
    write_day(cfg, pipeline_env["landing"], DAY1)
    run, states = run_day(dag, DAY1)
    assert run.state == "success", states
    first = online_rows(pipeline_env["repo"])
    assert len({row[0] for row in first}) == ROWS

    expected = activity_table(cfg, DAY1).to_pandas().set_index("customer_id")
    got = online_features(pipeline_env["repo"], [100_000, 100_123])
    for i, cid in enumerate(got["customer_id"]):
        assert got["spend_30d"][i] == pytest.approx(expected.loc[cid, "spend_30d"])
        assert got["plan"][i] == expected.loc[cid, "plan"]

    for _ in range(2):  # cleared and re-run: the same online state, no double-written rows
        run, states = run_day(dag, DAY1)
        assert run.state == "success", states
        assert online_rows(pipeline_env["repo"]) == first
    published = list((pipeline_env["repo"] / "data" / "offline" / ACTIVITY_DATASET).rglob("*.parquet"))
    assert len(published) == 1


@pytest.mark.parametrize(
    ("mode", "named"),
    [
        ("missing_column", "sessions_7d"),
        ("extra_column", "debug_flag"),
        ("renamed_column", "spend30d"),
        ("wrong_dtype", "tenure_days"),
        ("null_keys", "customer_id"),
        ("duplicate_keys", "customer_id"),
        ("out_of_range", "spend_30d"),
        ("empty", "row_count"),
        ("corrupt", "parquet"),
        ("future_timestamps", "event_timestamp"),
        ("naive_timestamps", "event_timestamp"),
        ("null_feature", "not_be_null(minutes_watched_7d)"),
        ("partly_null_feature", "not_be_null(country)"),
    ],
)
def test_bad_batch_is_quarantined_and_the_online_store_is_untouched(dag, pipeline_env, mode, named):
    if not (pipeline_env["repo"] / "data" / "online_store.db").exists():
        write_day(GeneratorConfig(rows_per_day=ROWS), pipeline_env["landing"], DAY1)
        assert run_day(dag, DAY1)[0].state == "success"
    before = online_rows(pipeline_env["repo"])
    write_day(GeneratorConfig(rows_per_day=ROWS, bad_mode=mode), pipeline_env["landing"], DAY2)

    run, states = run_day(dag, DAY2)

    assert run.state == "failed"
    assert states["validate"] == "failed"
    assert states["publish"] == states["materialize"] == "upstream_failed"
    quarantined = pipeline_env["root"] / "quarantine" / ACTIVITY_DATASET / DAY2.isoformat()
    report = json.loads((quarantined / "validation_report.json").read_text())
    assert named in json.dumps(report), f"the report does not name {named!r}"
    assert list(quarantined.glob("*.parquet")), "the bad batch itself is kept in quarantine"
    assert online_rows(pipeline_env["repo"]) == before
    offline_day2 = pipeline_env["repo"] / "data" / "offline" / ACTIVITY_DATASET / f"date={DAY2.isoformat()}"
    assert not offline_day2.exists(), "nothing of the bad batch is published"


def test_missing_partition_fails_at_extract_with_the_path(dag, pipeline_env):
    write_day(GeneratorConfig(rows_per_day=ROWS, bad_mode="missing_partition"), pipeline_env["landing"], DAY2)
    run, states = run_day(dag, DAY2)
    assert run.state == "failed"
    assert states["extract"] == "failed"
    assert states["validate"] == "upstream_failed"


def test_empty_partition_can_be_skipped_by_param(dag, pipeline_env):
    write_day(GeneratorConfig(rows_per_day=ROWS, bad_mode="empty"), pipeline_env["landing"], DAY2)
    _, states = run_day(dag, DAY2, on_empty="skip")
    assert states["validate"] == "skipped"
    assert states["materialize"] == "skipped"
