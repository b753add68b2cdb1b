"""
### Feature pipeline: landing partition → validate → publish → materialize

Runs daily. For the run's data interval (one day) it:

0. **validate_conf**: refuses a run whose conf has an unknown key (a typo would otherwise run the
   default day); wrong types are refused by Airflow when the run is triggered;
1. **apply**: registers the Feast definitions of `feature_repo/` (idempotent);
2. **extract**: copies `{landing_path}/customer_activity/date=YYYY-MM-DD/part-00000.parquet` to staging;
   a missing partition fails here with a message naming the path;
3. **validate**: checks the staged batch against `dags/expectations/customer_activity.json` (GX).
   A bad batch (missing/extra/renamed columns, wrong types, null or duplicate keys, out-of-range
   values, timestamps outside the day or without a time zone, a corrupt file) is **quarantined** under
   `{data_root}/quarantine/customer_activity/YYYY-MM-DD/` with its validation report, the task fails
   and nothing downstream runs, so the online store keeps its previous values;
4. **publish**: writes the validated batch into the Feast offline source (one file per day, overwritten
   on re-runs);
5. **materialize**: loads exactly the interval into the online store and updates the
   `feast_churn_customer_activity` Asset, which the training DAG schedules on.

Every task is idempotent: clearing and re-running a day leaves the same files and online values.

**Trigger** from the UI (set `day`), or `airflow dags trigger feature_pipeline --conf '{"day": "2026-01-04"}'`
(add `"landing_path": "/data/landing"` to read another landing area), or backfill a range:
`airflow backfill create --dag-id feature_pipeline --from-date 2026-01-01 --to-date 2026-01-05`.
Which day a run processes: conf `day`, else a manual run's logical date, else the data interval's start.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from mlops_provider.assets import feature_view_asset
from mlops_provider.operators.feast import (
    FeastApplyOperator,
    FeastMaterializeOperator,
    FeastPublishPartitionOperator,
)
from mlops_provider.operators.gx import GXValidateOperator
from mlops_provider.operators.landing import ExtractPartitionOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.partitions import PARTITION_MACROS

# --8<-- [start:constants]
FEATURE_VIEW = "customer_activity"
FEATURES_UPDATED = feature_view_asset("churn", FEATURE_VIEW)
SUITE = str(Path(__file__).parent / "expectations" / f"{FEATURE_VIEW}.json")

# One home for paths: the `mlops_data_root` Airflow Variable (AIRFLOW_VAR_MLOPS_DATA_ROOT), unless a
# run's conf names another landing path.
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"
LANDING = "{{ params.landing_path or (var.value.get('mlops_data_root', '/tmp/mlops-data') ~ '/landing') }}"
DAY = "{{ partition_day() }}"
STAGED = "{{ ti.xcom_pull(task_ids='extract')['uri'] }}"
# --8<-- [end:constants]

with DAG(
    dag_id="feature_pipeline",
    description="Validate a day of customer activity and materialize it into Feast.",
    # Real one-day data intervals (Airflow 3's plain "@daily" gives zero-length ones).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,  # history is loaded with `airflow backfill create`, never by surprise on unpause
    max_active_runs=1,  # online values must land in interval order
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Day to process, YYYY-MM-DD. Empty: the run's data interval (or, for a manual "
            "run, its logical date, else yesterday).",
        ),
        "landing_path": Param(
            None,
            type=["null", "string"],
            description="Landing root holding customer_activity/date=YYYY-MM-DD/ partitions. "
            "Empty: the mlops_data_root Variable + /landing.",
        ),
        "on_empty": Param(
            "fail",
            enum=["fail", "skip"],
            description="An empty partition fails the run (and is quarantined), or skips the day.",
        ),
        "materialize_overlap_hours": Param(
            0,
            type="integer",
            minimum=0,
            maximum=72,
            description="Also re-materialize this many hours before the interval, for late data.",
        ),
    },
    tags=["mlops", "features", "feast", "great-expectations"],
    doc_md=__doc__,
) as dag:
    # --8<-- [start:validate_conf]
    validate_conf = ValidateRunConfOperator(task_id="validate_conf")
    # --8<-- [end:validate_conf]
    # --8<-- [start:feast_apply]
    apply = FeastApplyOperator(task_id="apply")
    # --8<-- [end:feast_apply]

    # --8<-- [start:extract]
    extract = ExtractPartitionOperator(
        task_id="extract",
        source_uri=f"{LANDING}/{FEATURE_VIEW}/date={DAY}/part-00000.parquet",
        destination_uri=f"{DATA_ROOT}/staging/{FEATURE_VIEW}/date={DAY}/part-00000.parquet",
    )
    # --8<-- [end:extract]

    # --8<-- [start:gx_validate]
    validate = GXValidateOperator(
        task_id="validate",
        suite_path=SUITE,
        data=STAGED,
        data_asset_name=FEATURE_VIEW,
        suite_parameters={
            "min_event_timestamp": "{{ partition_start() }}",
            "max_event_timestamp": "{{ partition_end() }}",
        },
        on_failure="quarantine",
        on_empty="{{ params.on_empty }}",
        quarantine_root=f"{DATA_ROOT}/quarantine",
        data_docs_dir=f"{DATA_ROOT}/data_docs",
        batch_id=DAY,
    )
    # --8<-- [end:gx_validate]

    # --8<-- [start:feast_publish]
    publish = FeastPublishPartitionOperator(
        task_id="publish",
        feature_view=FEATURE_VIEW,
        source_uri=STAGED,
        partition=DAY,
    )
    # --8<-- [end:feast_publish]

    # --8<-- [start:feast_materialize]
    materialize = FeastMaterializeOperator(
        task_id="materialize",
        feature_views=[FEATURE_VIEW],
        start="{{ partition_start(hours_before=params.materialize_overlap_hours) }}",
        end="{{ partition_end() }}",
        outlets=[FEATURES_UPDATED],
    )
    # --8<-- [end:feast_materialize]

    validate_conf >> [apply, extract]
    extract >> validate >> publish >> materialize
    apply >> publish  # publishing finds the view's source in the registry
