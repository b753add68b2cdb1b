"""
### Example: wait until a feature view's online data is fresh

A consumer DAG (batch scoring, a report) that must not read stale online features waits with
`FeatureFreshnessSensor` until the `customer_activity` view has been materialized to the end of the
run's day. Deferrable: the wait runs in the triggerer, not in a worker slot.

Trigger with `--conf '{"day": "2026-01-04"}'`; tested by `tests/docs/test_examples.py`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from mlops_provider.partitions import PARTITION_MACROS
from mlops_provider.sensors.feast import FeatureFreshnessSensor

with DAG(
    dag_id="example_feature_freshness",
    description="Wait until the customer_activity features are materialized to the end of the day.",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    default_args={"owner": "ml-platform"},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Day whose features must be fresh, YYYY-MM-DD. Empty: the run's day.",
        )
    },
    tags=["mlops", "example", "feast"],
    doc_md=__doc__,
) as dag:
    # --8<-- [start:freshness_sensor]
    fresh = FeatureFreshnessSensor(
        task_id="features_fresh",
        feature_view="customer_activity",
        fresh_as_of="{{ partition_end() }}",  # the end of the run's day, as ISO 8601 with time zone
        deferrable=True,
        poke_interval=60,
        timeout=6 * 3600,
    )
    # --8<-- [end:freshness_sensor]
