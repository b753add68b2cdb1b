"""
### Label pipeline: landing labels → validate → publish by snapshot day → `labels_churn_labels` Asset

Labels arrive late: a customer's churn label is known `label_delay_days` (default 2) after the snapshot
it refers to. Runs daily; for the run's day D (the day the labels landed) it:

0. **validate_conf**: refuses a run whose conf has an unknown key;
1. **extract**: copies `{landing_path}/churn_labels/date=D/part-00000.parquet` to staging; a missing
   partition fails here with a message naming the path;
2. **validate**: checks the staged batch against `dags/expectations/churn_labels.json` (GX): exactly
   the four columns, their types, no nulls, one row per customer, a 0/1 label, snapshot timestamps
   inside day D - `label_delay_days` and label timestamps inside day D, all time-zone aware. A bad
   batch (a string label, duplicates, nulls, naive timestamps, a corrupt file) is **quarantined**
   under `{data_root}/quarantine/churn_labels/D/` with its validation report, the task fails naming
   the file, and nothing is published: training never sees it;
3. **publish**: writes the validated labels to `{data_root}/labels/churn_labels/date=S/part-00000.parquet`,
   keyed by the snapshot day S = D - `label_delay_days` (overwritten on re-runs);
4. **announce**: updates the `labels_churn_labels` Asset (extra: the snapshot day S as `day`, `start`,
   `end`), which starts the `training_pipeline`.

Every task is idempotent: clearing and re-running a day leaves the same files.

**Trigger**: `airflow dags trigger label_pipeline --conf '{"day": "2026-01-06"}'`, or backfill a range:
`airflow backfill create --dag-id label_pipeline --from-date 2026-01-03 --to-date 2026-01-06`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task

from mlops_provider.assets import labels_asset
from mlops_provider.operators.gx import GXValidateOperator
from mlops_provider.operators.landing import ExtractPartitionOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.partitions import PARTITION_MACROS

# --8<-- [start:constants]
DATASET = "churn_labels"
LABELS_LANDED = labels_asset(DATASET)
SUITE = str(Path(__file__).parent / "expectations" / f"{DATASET}.json")
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"
LANDING = "{{ params.landing_path or (var.value.get('mlops_data_root', '/tmp/mlops-data') ~ '/landing') }}"
DAY = "{{ partition_day() }}"
SNAPSHOT_DAY = "{{ partition_day(-params.label_delay_days) }}"
STAGED = "{{ ti.xcom_pull(task_ids='extract')['uri'] }}"
# --8<-- [end:constants]

with DAG(
    dag_id="label_pipeline",
    description="Validate the labels that landed today and publish them by the day they refer to.",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Day the labels landed, YYYY-MM-DD. Empty: the run's data interval.",
        ),
        "landing_path": Param(
            None,
            type=["null", "string"],
            description="Landing root holding churn_labels/date=YYYY-MM-DD/. Empty: mlops_data_root/landing.",
        ),
        "label_delay_days": Param(
            2,
            type="integer",
            minimum=0,
            maximum=365,
            description="Days between a snapshot and the landing of its labels.",
        ),
    },
    tags=["mlops", "labels", "great-expectations"],
    doc_md=__doc__,
) as dag:
    validate_conf = ValidateRunConfOperator(task_id="validate_conf")

    extract = ExtractPartitionOperator(
        task_id="extract",
        source_uri=f"{LANDING}/{DATASET}/date={DAY}/part-00000.parquet",
        destination_uri=f"{DATA_ROOT}/staging/{DATASET}/date={DAY}/part-00000.parquet",
    )

    # --8<-- [start:validate_labels]
    validate = GXValidateOperator(
        task_id="validate",
        suite_path=SUITE,
        data=STAGED,
        data_asset_name=DATASET,
        suite_parameters={
            "min_event_timestamp": "{{ partition_day(-params.label_delay_days) }}T00:00:00+00:00",
            "max_event_timestamp": "{{ partition_day(1 - params.label_delay_days) }}T00:00:00+00:00",
            "min_label_timestamp": "{{ partition_start() }}",
            "max_label_timestamp": "{{ partition_end() }}",
        },
        on_failure="quarantine",
        quarantine_root=f"{DATA_ROOT}/quarantine",
        data_docs_dir=f"{DATA_ROOT}/data_docs",
        batch_id=DAY,
    )
    # --8<-- [end:validate_labels]

    publish = ExtractPartitionOperator(
        task_id="publish",
        source_uri=STAGED,
        destination_uri=f"{DATA_ROOT}/labels/{DATASET}/date={SNAPSHOT_DAY}/part-00000.parquet",
    )

    @task(task_id="announce", outlets=[LABELS_LANDED])
    def announce(published: dict, snapshot_day: str, landing_day: str, **context) -> dict:
        """Announce the labelled snapshot day; the training pipeline schedules on it."""
        day = dt.date.fromisoformat(snapshot_day)
        extra = {
            "day": snapshot_day,
            "start": dt.datetime.combine(day, dt.time(), dt.UTC).isoformat(),
            "end": dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).isoformat(),
            "landing_day": landing_day,
            "uri": published["uri"],
        }
        context["outlet_events"][LABELS_LANDED].extra = extra
        return extra

    validate_conf >> extract >> validate >> publish
    announce(publish.output, snapshot_day=SNAPSHOT_DAY, landing_day=DAY)
