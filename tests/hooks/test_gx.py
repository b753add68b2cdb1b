"""GXHook against real GX Core: suites, reading batches, DataFrame and SQL validation, data docs, quarantine."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.hooks.gx import GXHook

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "dags" / "expectations" / "customer_activity.json"
DAY = dt.date(2026, 1, 2)
PARAMS = {
    "min_event_timestamp": "2026-01-02T00:00:00+00:00",
    "max_event_timestamp": "2026-01-03T00:00:00+00:00",
}


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data_docs")


@pytest.fixture(scope="module")
def hook(docs_dir: Path) -> GXHook:
    """One hook, and so one GX context, for the whole module."""
    return GXHook(data_docs_dir=str(docs_dir))


def _write(tmp_path: Path, bad_mode: str | None = None, rows: int = 200) -> str | None:
    from mlops_provider.example_data.generator import GeneratorConfig, write_day

    return write_day(GeneratorConfig(rows_per_day=rows, bad_mode=bad_mode), tmp_path / "landing", DAY)[
        "activity"
    ]


def test_load_suite_keeps_every_expectation(hook: GXHook) -> None:
    suite = hook.load_suite(SUITE)
    assert suite.name == "customer_activity"
    assert len(suite.expectations) == len(json.loads(SUITE.read_text())["expectations"])


def test_load_suite_rejects_invalid_expectation(hook: GXHook, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"name": "bad", "expectations": [{"type": "expect_no_such_thing", "kwargs": {}}]})
    )
    with pytest.raises(ConfigurationError, match="invalid expectations"):
        hook.load_suite(bad)
    with pytest.raises(ConfigurationError, match=r"missing\.json"):
        hook.load_suite(tmp_path / "missing.json")


def test_read_batch_parquet_csv_missing_and_corrupt(hook: GXHook, tmp_path: Path) -> None:
    path = _write(tmp_path)
    frame = hook.read_batch(path)
    assert len(frame) == 200
    assert str(frame["event_timestamp"].dtype) == "datetime64[us, UTC]"

    csv = tmp_path / "batch.csv"
    frame.head(5).to_csv(csv, index=False)
    assert list(hook.read_batch(str(csv)).columns) == list(frame.columns)

    with pytest.raises(DataNotFound, match=r"nowhere\.parquet"):
        hook.read_batch(str(tmp_path / "nowhere.parquet"))

    corrupt = _write(tmp_path / "c", "corrupt")
    with pytest.raises(ValueError, match=r"cannot read .*part-00000.parquet.*magic bytes"):
        hook.read_batch(corrupt)


def test_validate_dataframe_builds_data_docs(hook: GXHook, docs_dir: Path, tmp_path: Path) -> None:
    suite = hook.load_suite(SUITE)
    frame = hook.read_batch(_write(tmp_path))
    result, url = hook.validate(
        suite, data_asset_name="customer_activity", dataframe=frame, suite_parameters=PARAMS
    )
    assert result.success, [r.expectation_config.type for r in result.results if not r.success]
    assert result.statistics["success_percent"] == 100.0
    assert url.startswith("file://") and Path(url.removeprefix("file://").replace("%3A", ":")).exists()
    assert (docs_dir / "index.html").exists()

    # The same hook validates the same asset again (the asset is rebuilt, not duplicated).
    late = {
        "min_event_timestamp": "2026-01-03T00:00:00+00:00",
        "max_event_timestamp": "2026-01-04T00:00:00+00:00",
    }
    again, _ = hook.validate(
        suite, data_asset_name="customer_activity", dataframe=frame, suite_parameters=late
    )
    assert not again.success


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    """moto's S3 server on loopback, found by clients through AWS_ENDPOINT_URL; a bucket ``docs``."""
    import boto3
    from moto.server import ThreadedMotoServer
    from tools.services import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3")
    client.create_bucket(Bucket="docs")
    yield client
    server.stop()


def test_data_docs_on_s3_are_built_locally_and_copied_up(s3, tmp_path: Path) -> None:
    frame = GXHook().read_batch(_write(tmp_path))
    urls = []
    for run in ("first", "second"):  # two tasks, two hooks: the second leaves the first page alone
        hook = GXHook(data_docs_dir="s3://docs/data_docs")
        _, url = hook.validate(
            hook.load_suite(SUITE),
            data_asset_name="customer_activity",
            dataframe=frame,
            suite_parameters=PARAMS,
            run_name=run,
        )
        urls.append(url)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="docs")["Contents"]}
    assert "data_docs/index.html" in keys
    for url in urls:
        assert url.startswith("s3://docs/data_docs/validations/") and url.removeprefix("s3://docs/") in keys
    assert urls[0] != urls[1]


def test_validate_sql_table_and_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE scores (id INTEGER, score REAL)")
        con.executemany("INSERT INTO scores VALUES (?, ?)", [(i, i / 10) for i in range(20)])
    monkeypatch.setenv("AIRFLOW_CONN_GX_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    suite_file = tmp_path / "scores.json"
    suite_file.write_text(
        json.dumps(
            {
                "name": "scores",
                "expectations": [
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
                    {
                        "type": "expect_column_values_to_be_between",
                        "kwargs": {
                            "column": "score",
                            "min_value": 0,
                            "max_value": {"$PARAMETER": "max_score"},
                        },
                    },
                ],
            }
        )
    )
    hook = GXHook(conn_id="gx_warehouse")
    assert hook.sqlalchemy_url() == f"sqlite:///{db}"
    assert hook.test_connection()[0]
    suite = hook.load_suite(suite_file)

    table, url = hook.validate(
        suite, data_asset_name="scores", sql="scores", suite_parameters={"max_score": 5}
    )
    assert table.success and url is None
    query, _ = hook.validate(
        suite,
        data_asset_name="scores",
        sql="SELECT id, score * 10 AS score FROM scores",
        suite_parameters={"max_score": 5},
    )
    assert not query.success
    assert query.results[1].result["unexpected_count"] == 14


def test_quarantine_moves_batch_and_overwrites(hook: GXHook, tmp_path: Path) -> None:
    destination = tmp_path / "quarantine" / "customer_activity" / "run_1"
    for attempt in (1, 2):
        path = _write(tmp_path, "null_keys")
        report = hook.quarantine(path, str(destination), {"attempt": attempt})
        assert not Path(path).exists()
        assert (destination / "part-00000.parquet").exists()
        assert json.loads(Path(report).read_text()) == {"attempt": attempt}

    only_report = tmp_path / "quarantine" / "frames" / "run_1"
    hook.quarantine(None, str(only_report), {"attempt": 3})
    assert sorted(p.name for p in only_report.iterdir()) == ["validation_report.json"]


def test_an_int64_column_with_nulls_passes_the_type_rule_and_the_null_rule_decides(
    hook: GXHook, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 100
    ids = pa.array([None if i % 10 == 0 else i for i in range(rows)], pa.int64())  # 10 % null
    pq.write_table(pa.table({"id": ids, "visits": pa.array(range(rows), pa.int64())}), tmp_path / "b.parquet")
    lines = "".join(f"{i if i % 10 else ''},{i}\n" for i in range(rows))
    (tmp_path / "b.csv").write_text(f"id,visits\n{lines}")
    checks = [
        ("be_of_type", {"column": "id", "type_": "int64"}),
        ("be_of_type", {"column": "visits", "type_": "int64"}),
        ("not_be_null", {"column": "id", "mostly": 0.85}),
        ("not_be_null", {"column": "id", "mostly": 0.95}),
        ("be_between", {"column": "id", "min_value": 1, "max_value": 99}),
    ]
    expectations = [{"type": f"expect_column_values_to_{t}", "kwargs": k} for t, k in checks]
    suite_file = tmp_path / "ints.json"
    suite_file.write_text(json.dumps({"name": "ints", "expectations": expectations}))
    suite = hook.load_suite(suite_file)
    for name in ("b.parquet", "b.csv"):
        frame = hook.read_batch(str(tmp_path / name))
        # Only the column with nulls changes: pandas' nullable integers, not float64.
        assert (str(frame["id"].dtype), str(frame["visits"].dtype)) == ("Int64", "int64")
        assert frame["id"].isna().sum() == 10

        result, _ = hook.validate(suite, data_asset_name="ints", dataframe=frame)

        outcome = {
            (
                r.expectation_config.type.removeprefix("expect_column_values_to_"),
                r.expectation_config.kwargs["column"],
                r.expectation_config.kwargs.get("mostly"),
            ): (r.success, r.result.get("unexpected_count"))
            for r in result.results
        }
        assert outcome == {
            ("be_of_type", "id", None): (True, None),  # of type int64, nulls and all
            ("be_of_type", "visits", None): (True, None),
            ("not_be_null", "id", 0.85): (True, 10),  # 90 % not null: at least 85 % is enough
            ("not_be_null", "id", 0.95): (False, 10),  # at least 95 % is not
            ("be_between", "id", None): (True, 0),  # nulls are not out of range
        }
