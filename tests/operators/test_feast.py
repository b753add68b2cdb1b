"""Feast operators against a real Feast store (file offline store, sqlite online store) on a private repo copy."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest

from mlops_provider.constants import JOIN_KEYS_METADATA, TIMESTAMP_COLUMN_METADATA
from mlops_provider.example_data.generator import GeneratorConfig, generate, partition_path
from mlops_provider.exceptions import ConfigurationError, DataNotFound, EmptyPartition
from mlops_provider.hooks.feast import FeastHook
from mlops_provider.ml.io import parquet_metadata
from mlops_provider.operators.feast import (
    FeastApplyOperator,
    FeastHistoricalFeaturesOperator,
    FeastMaterializeOperator,
    FeastPublishPartitionOperator,
)
from tests.conftest import FEATURE_REPO, START_DAY

VIEW = "customer_activity"
SERVICE = "churn_model_v1"
DAYS = [START_DAY + dt.timedelta(days=i) for i in range(3)]
FEATURES = [
    "plan",
    "country",
    "tenure_days",
    "sessions_7d",
    "minutes_watched_7d",
    "spend_30d",
    "support_tickets_30d",
    "failed_payments_90d",
    "days_since_last_login",
]


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def feast_conn(repo: Path, store_dir: Path | None = None) -> str:
    """A feast connection; with store_dir, its own registry and online store (via config_overrides)."""
    extra: dict = {"repo_path": str(repo)}
    if store_dir is not None:
        overrides = {
            "registry": str(store_dir / "registry.db"),
            "online_store": {"path": str(store_dir / "online.db")},
        }
        extra["config_overrides"] = json.dumps(overrides)
    return json.dumps({"conn_type": "feast", "extra": extra})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    """One applied repo with all three landing days published, shared by the module's tests."""
    base = tmp_path_factory.mktemp("feast_ops")
    repo = base / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    landing = base / "landing"
    generate(GeneratorConfig(rows_per_day=500), landing, START_DAY, 3)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLOPS_OFFLINE_ROOT", raising=False)
        mp.setenv("AIRFLOW_CONN_FEAST_DEFAULT", feast_conn(repo))
        first_apply = FeastApplyOperator(task_id="apply").execute({})
        published = [
            FeastPublishPartitionOperator(
                task_id="publish",
                feature_view=VIEW,
                source_uri=str(partition_path(landing, VIEW, day)),
                partition=day.isoformat(),
            ).execute({})
            for day in DAYS
        ]
        yield {"repo": repo, "landing": landing, "first_apply": first_apply, "published": published}


@pytest.fixture
def isolated(env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection with a fresh registry and online store over the shared offline data; returns its id."""
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_ISOLATED", feast_conn(env["repo"], tmp_path))
    FeastApplyOperator(task_id="apply", feast_conn_id="feast_isolated").execute({})
    return "feast_isolated"


def materialize(conn_id: str, day: dt.date, **kwargs) -> dict:
    return FeastMaterializeOperator(
        task_id="materialize",
        feature_views=[VIEW],
        start=midnight(day).isoformat(),
        end=midnight(day + dt.timedelta(days=1)).isoformat(),
        feast_conn_id=conn_id,
        **kwargs,
    ).execute({})


def online_rows(conn_id: str) -> list[tuple]:
    path = FeastHook(feast_conn_id=conn_id).get_store().config.online_store.path
    with sqlite3.connect(path) as con:
        query = f"SELECT * FROM churn_{VIEW} ORDER BY entity_key, feature_name"  # noqa: S608 - a constant table name
        return con.execute(query).fetchall()


def landing_day(env, day: dt.date) -> pd.DataFrame:
    return pd.read_parquet(partition_path(env["landing"], VIEW, day))


def test_apply_registers_the_repo_and_is_idempotent(env):
    first = env["first_apply"]
    assert first["project"] == "churn"
    assert first["feature_views"] == [VIEW] and first["feature_services"] == [SERVICE]
    assert first["entities"] == ["customer"]
    assert f"create feature_view {VIEW}" in first["changes"]

    again = FeastApplyOperator(task_id="apply").execute({})
    assert again["changes"] == []
    assert {k: v for k, v in again.items() if k != "changes"} == {
        k: v for k, v in first.items() if k != "changes"
    }


def test_publish_writes_the_partition_and_overwrites_on_rerun(env):
    day = DAYS[0]
    expected = env["repo"] / f"data/offline/{VIEW}/date={day.isoformat()}/part-00000.parquet"
    assert env["published"][0] == {"uri": str(expected), "rows": 500}
    before = expected.read_bytes()

    again = FeastPublishPartitionOperator(
        task_id="publish",
        feature_view=VIEW,
        source_uri=str(partition_path(env["landing"], VIEW, day)),
        partition=day.isoformat(),
    ).execute({})

    assert again == env["published"][0]
    assert expected.read_bytes() == before
    assert sorted(p.name for p in expected.parent.iterdir()) == ["part-00000.parquet"]  # no partial left


def test_publish_rejects_a_missing_source_and_a_bad_partition(env, tmp_path):
    missing = FeastPublishPartitionOperator(
        task_id="p", feature_view=VIEW, source_uri=str(tmp_path / "nope.parquet"), partition="2026-01-04"
    )
    with pytest.raises(DataNotFound, match=r"nope\.parquet"):
        missing.execute({})
    bad = FeastPublishPartitionOperator(task_id="p", feature_view=VIEW, source_uri="x", partition="yesterday")
    with pytest.raises(ConfigurationError, match="YYYY-MM-DD"):
        bad.execute({})


def test_materialize_one_day_loads_exactly_that_days_values(env, isolated):
    result = materialize(isolated, DAYS[1])

    assert result == {
        "start": "2026-01-02T00:00:00+00:00",
        "end": "2026-01-03T00:00:00+00:00",
        "views": {VIEW: {"rows": 500, "entities": 500}},
    }
    expected = landing_day(env, DAYS[1]).set_index("customer_id")[FEATURES].sort_index()
    store = FeastHook(feast_conn_id=isolated).get_store()
    online = store.get_online_features(
        features=store.get_feature_service(SERVICE),
        entity_rows=[{"customer_id": int(i)} for i in expected.index],
    ).to_df()
    online = online.set_index("customer_id")[FEATURES].sort_index()
    pd.testing.assert_frame_equal(online, expected, check_dtype=False)


def test_materialize_reruns_leave_the_online_store_identical(isolated):
    materialize(isolated, DAYS[0])
    first = online_rows(isolated)
    materialize(isolated, DAYS[0])
    materialize(isolated, DAYS[0])

    assert len(first) == 500 * len(FEATURES)
    assert online_rows(isolated) == first


def test_materialize_counts_the_overlap_window(isolated):
    result = materialize(isolated, DAYS[2], overlap_seconds=86_400)

    assert result["start"] == "2026-01-02T00:00:00+00:00"
    assert result["views"][VIEW] == {"rows": 1000, "entities": 500}
    fresh_until = FeastHook(feast_conn_id=isolated).fresh_until(VIEW)
    assert fresh_until == midnight(DAYS[2] + dt.timedelta(days=1))


def test_materialize_waits_for_the_view_lock(isolated):
    done: list[dict] = []
    worker = threading.Thread(target=lambda: done.append(materialize(isolated, DAYS[0])))
    with FeastHook(feast_conn_id=isolated).view_lock(VIEW):
        worker.start()
        worker.join(timeout=2)
        assert worker.is_alive(), "materialize ran while another run held the view's lock"
        assert FeastHook(feast_conn_id=isolated).fresh_until(VIEW) is None
    worker.join(timeout=60)
    assert done and done[0]["views"][VIEW]["rows"] == 500


def test_concurrent_materializations_of_one_view_are_consistent(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_SINGLE",
        feast_conn(FeastHook(feast_conn_id=isolated).repo_path, tmp_path / "single"),
    )
    (tmp_path / "single").mkdir()
    FeastApplyOperator(task_id="apply", feast_conn_id="feast_single").execute({})
    materialize("feast_single", DAYS[0])

    results: list[dict] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(materialize(isolated, DAYS[0]))
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors
    assert len(results) == 2 and results[0] == results[1]
    assert online_rows(isolated) == online_rows("feast_single")
    intervals = FeastHook(feast_conn_id=isolated).get_feature_view(VIEW).materialization_intervals
    assert len(intervals) == 2  # neither run's registry update was lost


def test_materialize_rejects_unknown_views_and_naive_times(env):
    with pytest.raises(ConfigurationError, match=f"Unknown Feast feature view 'nope'.*{VIEW}"):
        FeastMaterializeOperator(
            task_id="m",
            feature_views=["nope"],
            start="2026-01-01T00:00:00+00:00",
            end="2026-01-02T00:00:00+00:00",
        ).execute({})
    with pytest.raises(ConfigurationError, match="no timezone"):
        FeastMaterializeOperator(task_id="m", start="2026-01-01T00:00:00", end="2026-01-02T00:00:00").execute(
            {}
        )


def _expected_snapshot(env, customer_id: int, at: pd.Timestamp) -> pd.Series | None:
    """The latest snapshot at or before ``at`` and within the view's two-day TTL, straight from the files."""
    rows = pd.concat(landing_day(env, day) for day in DAYS)
    rows = rows[(rows.customer_id == customer_id) & (rows.event_timestamp <= at)]
    rows = rows[rows.event_timestamp >= at - pd.Timedelta(days=2)]
    return None if rows.empty else rows.sort_values("event_timestamp").iloc[-1]


def test_historical_features_are_point_in_time_correct(env, tmp_path):
    snapshots = pd.concat(landing_day(env, day) for day in DAYS).set_index(["customer_id", "event_timestamp"])
    entity_rows = []
    for customer_id in range(100_000, 100_010):
        day1, day2, day3 = (snapshots.xs(customer_id, level=0).index[i] for i in range(3))
        for at in (
            day1 - pd.Timedelta(seconds=1),
            day1,
            day2 - pd.Timedelta(seconds=1),
            day3 + pd.Timedelta(days=3),
        ):
            entity_rows.append({"customer_id": customer_id, "label_time": at, "churned": customer_id % 2})
    entity_file = tmp_path / "entities.parquet"
    pd.DataFrame(entity_rows).to_parquet(entity_file)

    result = FeastHistoricalFeaturesOperator(
        task_id="hist",
        feature_service=SERVICE,
        entity_df=str(entity_file),
        output_uri=str(tmp_path / "out" / "training.parquet"),
        event_timestamp_column="label_time",
    ).execute({"outlet_events": _outlet_events()})

    training = pd.read_parquet(result["uri"])
    assert result["rows"] == len(training) == 20 and result["dropped_rows"] == 20
    for row in training.itertuples():
        expected = _expected_snapshot(env, row.customer_id, row.label_time)
        assert expected is not None
        assert [getattr(row, f) for f in FEATURES] == [expected[f] for f in FEATURES]
    kept = {(r.customer_id, r.label_time) for r in training.itertuples()}
    for row in entity_rows:
        has_snapshot = _expected_snapshot(env, row["customer_id"], row["label_time"]) is not None
        assert ((row["customer_id"], row["label_time"]) in kept) == has_snapshot


def _outlet_events():
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return OutletEventAccessors()


def test_historical_features_write_the_training_set_and_asset_extra(env, tmp_path):
    output = tmp_path / "training.parquet"
    op = FeastHistoricalFeaturesOperator(
        task_id="hist",
        feature_service=SERVICE,
        entity_df=str(env["landing"] / "churn_labels"),
        output_uri=str(output),
        entity_columns=["customer_id", "churned"],
    )
    context = {"outlet_events": _outlet_events()}

    result = op.execute(context)

    (asset,) = op.outlets
    assert asset.uri == f"feast://training-sets/{SERVICE}" and asset.name == f"training_set_{SERVICE}"
    # Only the labels of the 2026-01-01 snapshots have features; the others refer to days before the data.
    assert result == {
        "uri": str(output),
        "rows": 500,
        "columns": ["customer_id", "churned", "event_timestamp", *FEATURES],
        "dropped_rows": 1000,
        "fingerprint": f"sha256:{hashlib.sha256(output.read_bytes()).hexdigest()}",
        "join_keys": ["customer_id"],
        "timestamp_column": "event_timestamp",
    }
    assert context["outlet_events"][asset].extra == {
        "uri": str(output),
        "rows": 500,
        "join_keys": ["customer_id"],
        "timestamp_column": "event_timestamp",
    }
    # The keys and the timestamp travel with the file, for the trainer and the training operators.
    assert parquet_metadata(str(output)) == {
        JOIN_KEYS_METADATA: "customer_id",
        TIMESTAMP_COLUMN_METADATA: "event_timestamp",
    }
    training = pd.read_parquet(output)
    assert list(training.columns) == result["columns"] and not training[FEATURES].isna().any().any()
    before = output.read_bytes()
    op.execute({"outlet_events": _outlet_events()})
    assert output.read_bytes() == before  # idempotent: same rows, same order


def test_historical_features_from_a_glob_and_from_sql(env, tmp_path):
    glob = str(env["landing"] / "churn_labels" / "date=2026-01-03" / "*.parquet")
    from_glob = FeastHistoricalFeaturesOperator(
        task_id="hist", feature_service=SERVICE, entity_df=glob, output_uri=str(tmp_path / "glob.parquet")
    ).execute({"outlet_events": _outlet_events()})
    assert from_glob["rows"] == 500 and from_glob["dropped_rows"] == 0

    db = tmp_path / "labels.db"
    labels = pd.read_parquet(partition_path(env["landing"], "churn_labels", DAYS[2]))
    with sqlite3.connect(db) as con:
        labels.assign(event_timestamp=labels.event_timestamp.astype(str)).drop(
            columns="label_timestamp"
        ).to_sql("labels", con)
    op = FeastHistoricalFeaturesOperator(
        task_id="hist",
        feature_service=SERVICE,
        output_uri=str(tmp_path / "sql.parquet"),
        entity_df="SELECT customer_id, event_timestamp, churned FROM labels",
        entity_df_conn_id="labels_db",
    )
    op._sql_hook = lambda: _SqliteHook(db)  # the database, not Feast, is what this stands in for
    from_sql = op.execute({"outlet_events": _outlet_events()})
    assert from_sql["rows"] == 500
    glob_df = pd.read_parquet(from_glob["uri"]).drop(columns="label_timestamp")
    pd.testing.assert_frame_equal(pd.read_parquet(from_sql["uri"]), glob_df, check_dtype=False)


class _SqliteHook:
    def __init__(self, path: Path) -> None:
        self.path = path

    def get_df(self, sql: str, df_type: str = "pandas") -> pd.DataFrame:
        with sqlite3.connect(self.path) as con:
            return pd.read_sql(sql, con)


def test_historical_features_errors_name_the_problem(env, tmp_path):
    def run(entity_df: str, service: str = SERVICE, **kwargs):
        return FeastHistoricalFeaturesOperator(
            task_id="h",
            feature_service=service,
            entity_df=entity_df,
            output_uri=str(tmp_path / "o.parquet"),
            **kwargs,
        ).execute({"outlet_events": _outlet_events()})

    labels = partition_path(env["landing"], "churn_labels", DAYS[2])
    empty = tmp_path / "empty.parquet"
    pd.read_parquet(labels).iloc[:0].to_parquet(empty)
    with pytest.raises(EmptyPartition, match=r"empty\.parquet"):
        run(str(empty))
    with pytest.raises(ConfigurationError, match="no timestamp column 'label_ts'"):
        run(str(labels), event_timestamp_column="label_ts")
    keyless = tmp_path / "keyless.parquet"
    pd.read_parquet(labels).rename(columns={"customer_id": "account"}).to_parquet(keyless)
    with pytest.raises(ConfigurationError, match=r"lacks the join key\(s\) \['customer_id'\]"):
        run(str(keyless))
    two_clocks = tmp_path / "two_clocks.parquet"
    pd.read_parquet(labels).rename(columns={"event_timestamp": "seen_at"}).to_parquet(two_clocks)
    with pytest.raises(ConfigurationError, match=r"2 datetime columns.*set event_timestamp_column"):
        run(str(two_clocks))
    with pytest.raises(ConfigurationError, match=f"Unknown Feast feature service 'nope'.*{SERVICE}"):
        run(str(labels), service="nope")
    with pytest.raises(DataNotFound, match="matches no parquet"):
        run(str(tmp_path / "missing" / "*.parquet"))
    with pytest.raises(ConfigurationError, match="entity_df_conn_id"):
        run("select 1")
    assert not (tmp_path / "o.parquet").exists()


def test_materialize_before_any_publish_says_what_to_do(tmp_path, monkeypatch):
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_EMPTY", feast_conn(repo))
    FeastApplyOperator(task_id="apply", feast_conn_id="feast_empty").execute({})
    with pytest.raises(DataNotFound, match=f"'{VIEW}' has no parquet files.*FeastPublishPartitionOperator"):
        materialize("feast_empty", DAYS[0])
