"""GXValidateOperator with real GX Core on generated partitions: every bad mode, every failure policy."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from mlops_provider.exceptions import BatchQuarantined, ConfigurationError, DataNotFound, ValidationFailed
from mlops_provider.operators.gx import GXValidateOperator

ROOT = Path(__file__).resolve().parents[2]
SUITE = str(ROOT / "dags" / "expectations" / "customer_activity.json")
DAY = dt.date(2026, 1, 2)
START = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
PARAMS = {
    "min_event_timestamp": "2026-01-02T00:00:00+00:00",
    "max_event_timestamp": "2026-01-03T00:00:00+00:00",
}
CONTEXT = {"logical_date": START}


def _write(landing: Path, bad_mode: str | None = None) -> str:
    from mlops_provider.example_data.generator import GeneratorConfig, partition_path, write_day

    write_day(GeneratorConfig(rows_per_day=200, bad_mode=bad_mode), landing, DAY)
    return str(partition_path(landing, "customer_activity", DAY))


def _operator(tmp_path: Path, **kwargs) -> GXValidateOperator:
    defaults = {
        "task_id": "validate",
        "suite_path": SUITE,
        "suite_parameters": PARAMS,
        "batch_id": DAY.isoformat(),
        "quarantine_root": str(tmp_path / "quarantine"),
        "data_docs_dir": str(tmp_path / "docs"),
    }
    return GXValidateOperator(**{**defaults, **kwargs})


def test_clean_partition_passes_with_datetime_parameters(tmp_path: Path) -> None:
    path = _write(tmp_path / "landing")
    interval = {"min_event_timestamp": START, "max_event_timestamp": START + dt.timedelta(days=1)}
    summary = _operator(tmp_path, data=path, suite_parameters=interval).execute(CONTEXT)

    assert summary["success"] is True
    assert summary["statistics"]["success_percent"] == 100.0
    assert summary["statistics"]["unsuccessful_expectations"] == 0
    assert summary["row_count"] == 200
    assert summary["failed_expectations"] == [] and summary["report"] is None
    assert summary["suite"] == summary["data_asset"] == "customer_activity"
    assert summary["data_docs"].startswith("file://")
    assert (tmp_path / "docs" / "index.html").exists()
    json.dumps(summary)  # XCom-ready


# bad mode -> what the message must name
BAD_CASES = {
    "missing_column": ["expect_table_columns_to_match_set: missing ['sessions_7d']"],
    "extra_column": ["expect_table_columns_to_match_set: unexpected ['debug_flag']"],
    "renamed_column": ["missing ['spend_30d']", "unexpected ['spend30d']"],
    "wrong_dtype": ["expect_column_values_to_be_of_type(tenure_days): 200 unexpected"],
    "null_keys": ["expect_column_values_to_not_be_null(customer_id): 20 unexpected"],
    "duplicate_keys": ["expect_column_values_to_be_unique(customer_id): 40 unexpected"],
    "out_of_range": ["expect_column_values_to_be_between(spend_30d): 20 unexpected, e.g. -50.0"],
    "future_timestamps": ["expect_column_values_to_be_between(event_timestamp): 20 unexpected, e.g. 2027-"],
    "naive_timestamps": ["expect_column_values_to_be_of_type(event_timestamp): datetime64"],
    "empty": ["customer_activity 2026-01-02: the partition is empty (0 rows)"],
    "corrupt": ["part-00000.parquet", "Parquet magic bytes not found"],
    # Nulls in a double or string feature keep its type and are skipped by range and set rules; only the
    # feature's not-null rule (mostly 0.95) sees them.
    "null_feature": [
        "failed 1 of 35",
        "expect_column_values_to_not_be_null(minutes_watched_7d): 200 unexpected",
    ],
    "partly_null_feature": ["failed 1 of 35", "expect_column_values_to_not_be_null(country): 120 unexpected"],
}


@pytest.mark.parametrize("bad_mode", sorted(BAD_CASES))
def test_bad_partition_is_quarantined_with_its_report(tmp_path: Path, bad_mode: str) -> None:
    path = _write(tmp_path / "landing", bad_mode)
    with pytest.raises(BatchQuarantined) as raised:
        _operator(tmp_path, data=path, on_failure="quarantine").execute(CONTEXT)

    message = str(raised.value)
    for expected in BAD_CASES[bad_mode]:
        assert expected in message
    batch_dir = tmp_path / "quarantine" / "customer_activity" / "2026-01-02"
    assert not Path(path).exists()
    assert (batch_dir / "part-00000.parquet").exists()
    report = json.loads((batch_dir / "validation_report.json").read_text())
    assert report["summary"]["success"] is False
    assert report["message"] in message


def test_fail_mode_raises_and_leaves_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "landing", "null_keys")
    with pytest.raises(ValidationFailed) as raised:
        _operator(tmp_path, data=path).execute(CONTEXT)
    assert not isinstance(raised.value, BatchQuarantined)
    # Null keys break the not-null rule only: an int64 column with nulls is still of type int64.
    assert raised.value.args[0].startswith(
        "customer_activity 2026-01-02 failed 1 of 35 expectations: expect_column_values_to_not_be_null(customer_id)"
    )
    assert Path(path).exists() and not (tmp_path / "quarantine").exists()


def test_warn_mode_returns_failed_summary(tmp_path: Path) -> None:
    summary = _operator(
        tmp_path, data=_write(tmp_path / "landing", "out_of_range"), on_failure="warn"
    ).execute(CONTEXT)
    assert summary["success"] is False
    assert summary["failed_expectations"] == [
        {
            "expectation": "expect_column_values_to_be_between",
            "column": "spend_30d",
            "observed": "e.g. -50.0",
            "unexpected_count": 20,
        }
    ]
    json.dumps(summary)


# (seed, day, drift_strength) of clean partitions: four seeds over a year of dates, each without drift
# (strength 0), with the generator's usual drift and with twice that.
CLEAN_DAYS = [
    (seed, dt.date(2026, 1, 1) + dt.timedelta(days=offset), strength)
    for seed, offset in [(42, 0), (7, 45), (1234, 180), (2026, 364)]
    for strength in (0.0, 1.0, 2.0)
]


def test_clean_generated_days_pass_the_suite(tmp_path: Path) -> None:
    """The null, range and set rules refuse no clean day: every seed, date and drift strength passes."""
    from mlops_provider.example_data.generator import GeneratorConfig, activity_table

    failures = {}
    for seed, day, strength in CLEAN_DAYS:
        cfg = GeneratorConfig(rows_per_day=2000, seed=seed, drift_from=day, drift_strength=strength)
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        interval = {"min_event_timestamp": start, "max_event_timestamp": start + dt.timedelta(days=1)}
        summary = _operator(
            tmp_path,
            data=activity_table(cfg, day).to_pandas(),
            suite_parameters=interval,
            batch_id=f"{seed}-{day}-{strength}",
            data_docs_dir="",
            on_failure="warn",
        ).execute({"logical_date": start})
        assert summary["statistics"]["evaluated_expectations"] == 35
        if not summary["success"]:
            failures[(seed, day.isoformat(), strength)] = summary["failed_expectations"]
    assert failures == {}


def test_sporadic_feature_nulls_pass_up_to_five_percent(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(_write(tmp_path / "landing"))  # 200 rows
    few = frame.assign(
        spend_30d=frame["spend_30d"].mask(frame.index < 10), plan=frame["plan"].mask(frame.index < 10)
    )
    assert _operator(tmp_path, data=few).execute(CONTEXT)["success"] is True  # 5% null: tolerated

    many = frame.assign(spend_30d=frame["spend_30d"].mask(frame.index < 11))  # 5.5% null: refused
    with pytest.raises(ValidationFailed, match=r"failed 1 of 35 .*not_be_null\(spend_30d\): 11 unexpected"):
        _operator(tmp_path, data=many).execute(CONTEXT)


def test_a_country_outside_iso_3166_fails(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(_write(tmp_path / "landing"))
    frame.loc[:4, "country"] = "UK"  # the ISO code is GB
    with pytest.raises(ValidationFailed, match=r"be_in_set\(country\): 5 unexpected, e\.g\. UK"):
        _operator(tmp_path, data=frame).execute(CONTEXT)
    assert _operator(tmp_path, data=frame.assign(country="JP")).execute(CONTEXT)["success"] is True


def test_timestamps_outside_the_interval_fail(tmp_path: Path) -> None:
    next_day = {
        "min_event_timestamp": "2026-01-03T00:00:00+00:00",
        "max_event_timestamp": "2026-01-04T00:00:00+00:00",
    }
    with pytest.raises(ValidationFailed, match=r"be_between\(event_timestamp\): 200 unexpected"):
        _operator(tmp_path, data=_write(tmp_path / "landing"), suite_parameters=next_day).execute(CONTEXT)


def test_empty_partition_skips(tmp_path: Path) -> None:
    with pytest.raises(AirflowSkipException, match="empty"):
        _operator(tmp_path, data=_write(tmp_path / "landing", "empty"), on_empty="skip").execute(CONTEXT)


def test_missing_partition_is_data_not_found(tmp_path: Path) -> None:
    path = _write(tmp_path / "landing", "missing_partition")
    with pytest.raises(DataNotFound, match=r"date=2026-01-02/part-00000\.parquet"):
        _operator(tmp_path, data=path, on_failure="quarantine").execute(CONTEXT)


def test_rerun_after_quarantine_converges(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    for _ in range(2):  # the same batch quarantined twice: the second move overwrites the first
        with pytest.raises(BatchQuarantined):
            _operator(tmp_path, data=_write(landing, "duplicate_keys"), on_failure="quarantine").execute(
                CONTEXT
            )
    summary = _operator(tmp_path, data=_write(landing), on_failure="quarantine").execute(CONTEXT)
    assert summary["success"] is True


def test_dataframe_input_writes_report_only(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(_write(tmp_path / "landing"))
    assert _operator(tmp_path, data=frame).execute(CONTEXT)["row_count"] == 200

    with pytest.raises(BatchQuarantined, match=r"wrote the report to .*quarantine/scores/2026-01-02"):
        _operator(
            tmp_path, data=frame.drop(columns=["plan"]), data_asset_name="scores", on_failure="quarantine"
        ).execute(CONTEXT)
    assert [p.name for p in (tmp_path / "quarantine" / "scores" / "2026-01-02").iterdir()] == [
        "validation_report.json"
    ]


def test_sql_table_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE customers (customer_id INTEGER, spend_30d REAL)")
        con.executemany("INSERT INTO customers VALUES (?, ?)", [(i, i * 2.5) for i in range(50)])
        con.execute("CREATE TABLE no_customers (customer_id INTEGER, spend_30d REAL)")
    monkeypatch.setenv("AIRFLOW_CONN_GX_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    suite = tmp_path / "customers.json"
    suite.write_text(
        json.dumps(
            {
                "name": "customers",
                "expectations": [
                    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
                    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}},
                    {
                        "type": "expect_column_values_to_be_between",
                        "kwargs": {"column": "spend_30d", "min_value": 0, "max_value": 100},
                    },
                ],
            }
        )
    )

    def sql_operator(table: str, **kwargs) -> GXValidateOperator:
        return _operator(
            tmp_path,
            suite_path=str(suite),
            sql=table,
            conn_id="gx_warehouse",
            suite_parameters=None,
            **kwargs,
        )

    with pytest.raises(
        ValidationFailed, match=r"customers 2026-01-02 failed 1 of 3 .*be_between\(spend_30d\): 9 unexpected"
    ):
        sql_operator("customers").execute(CONTEXT)
    assert sql_operator("SELECT * FROM customers WHERE spend_30d <= 100").execute(CONTEXT)["row_count"] == 41
    with pytest.raises(AirflowSkipException):
        sql_operator("no_customers", on_empty="skip").execute(CONTEXT)


def test_constructor_checks_arguments_without_io(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        GXValidateOperator(task_id="t", suite_path=SUITE)
    with pytest.raises(ConfigurationError, match="quarantine_root"):
        GXValidateOperator(task_id="t", suite_path=SUITE, data="x.parquet", on_failure="quarantine")
    with pytest.raises(ConfigurationError, match="conn_id"):
        GXValidateOperator(task_id="t", suite_path=SUITE, sql="customers")
    assert "suite_parameters" in GXValidateOperator.template_fields


def test_data_docs_extra_link_resolves_in_a_dag_run(airflow_db: Path, tmp_path: Path) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.xcom import XComModel
    from airflow.sdk import dag
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    path = _write(tmp_path / "landing")

    @dag(dag_id="gx_link_test", schedule=None, start_date=START)
    def gx_link_test():
        GXValidateOperator(
            task_id="validate",
            suite_path=SUITE,
            data=path,
            suite_parameters={
                "min_event_timestamp": "{{ data_interval_start }}",
                "max_event_timestamp": "{{ data_interval_end + macros.timedelta(days=1) }}",
            },
            data_docs_dir=str(tmp_path / "docs"),
        )

    the_dag = gx_link_test()
    # dag.test() runs only serialized DAGs; this one lives in a test module, not in a bundle.
    bag = DagBag(dag_folder=str(tmp_path))
    bag.bag_dag(the_dag)
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    run = the_dag.test(logical_date=START)
    assert run.state == DagRunState.SUCCESS
    with create_session() as session:
        values = {
            row.key: row.value
            for row in session.query(XComModel).filter_by(
                dag_id="gx_link_test", run_id=run.run_id, task_id="validate"
            )
        }
    link = values["_link_GXDataDocsLink"]
    assert link.startswith(f"file://{tmp_path / 'docs'}/validations/customer_activity/")
    assert link.endswith("pandas-customer_activity.html")
