"""
### Drift monitor: each announced day's features vs the champion's training data → `drift_churn_classifier` Asset

Runs after feature pipeline runs (it schedules on the `feast_churn_customer_activity` Asset), or on
demand. One run may stand for several days: while a run is active, further materializations (e.g. a
backfill) queue their Asset events, and Airflow starts one run with all of them. The run tests
**every** day those events announce (`partition_days()`: each window's last day and every earlier day
it covers whole), one mapped `detect` → `drift_event` pair per day; a conf `day` or a manual run tests
exactly one day.

1. **validate_conf**: refuses a run whose conf has an unknown key;
2. **days**: lists the run's days, oldest first, each with its partition; the tasks below are mapped
   over them (map index 0 is the oldest day);
3. **detect** (per day): compares the day's validated partition
   (`{data_root}/staging/customer_activity/date=YYYY-MM-DD/part-00000.parquet`) with the reference
   sample that the trainer logged with the `champion` of `churn_classifier`. Numeric features get PSI
   and Kolmogorov-Smirnov, categorical ones Jensen-Shannon and chi-squared; a feature drifts when both
   its effect size (PSI ≥ 0.25, JS ≥ 0.1) and its test (p < 0.05) agree, the dataset when at least
   `drift_share` of the features drift. The result is an MLflow run in the `mlops-drift` experiment
   with `drift_report.html` and `drift_report.json`, and the summary is the task's XCom. Skipped while
   there is no champion yet. A re-run for the same data and champion reuses the run;
4. **drift_event** (per day): when that day's dataset drifted, updates the `drift_churn_classifier`
   Asset, a drift alarm that the `training_pipeline` reads to decide when to retrain; skipped
   otherwise. Each drifted day is its own Asset event, so a consumer sees one window per drifted day,
   never a span that includes quiet days. Its extra: `{"day": "YYYY-MM-DD", "start": <the day's
   00:00 UTC, ISO>, "end": <the next day's 00:00 UTC, ISO, exclusive>, "model_version",
   "drift_share", "drifted_features": [...], "drift_run_id"}`.

**Trigger**: `airflow dags trigger drift_monitor --conf '{"day": "2026-01-04", "drift_share": 0.5}'`.
Conf keys: `day` (default the run's days), `alias` (the reference model, default `champion`),
`drift_share`, `thresholds` (per-feature overrides, e.g. `{"spend_30d": {"psi": 0.4}, "*": {"p_value": 0.01}}`).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task, task_group

from mlops_provider.assets import drift_asset, feature_view_asset
from mlops_provider.operators.drift import DriftDetectOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.partitions import PARTITION_MACROS, day_window, partition_days

MODEL_NAME = "churn_classifier"
FEATURE_VIEW = "customer_activity"
DRIFT_DETECTED = drift_asset(MODEL_NAME)
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"

with DAG(
    dag_id="drift_monitor",
    description="Test the day's features for drift against the champion's training data.",
    schedule=[feature_view_asset("churn", FEATURE_VIEW)],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    # Not 1: with one run at a time, Airflow (3.x, apache/airflow#56050) gives the next run only the
    # first of the events that queued up meanwhile, and the rest wait for an event that may never come.
    # Each run handles its own days, so runs side by side are safe.
    max_active_runs=4,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": dt.timedelta(seconds=30)},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Day whose features to test, YYYY-MM-DD. Empty: the run's days.",
        ),
        "alias": Param(
            "champion",
            type="string",
            enum=["champion", "challenger", "canary", "previous"],
            description="Alias of the model whose training data is the reference.",
        ),
        "drift_share": Param(
            0.3,
            type="number",
            exclusiveMinimum=0,
            maximum=1,
            description="Share of drifted features at which the dataset counts as drifted.",
        ),
        "thresholds": Param(
            {},
            type="object",
            description="Per-feature overrides of psi, psi_warn, p_value, js, max_null_fraction_increase, "
            'max_new_category_share; "*" for every feature. '
            'Example: {"spend_30d": {"psi": 0.4}}.',
        ),
    },
    tags=["mlops", "drift", "monitoring", "mlflow"],
    doc_md=__doc__,
) as dag:
    validate_conf = ValidateRunConfOperator(task_id="validate_conf")

    @task(task_id="drift_event", outlets=[DRIFT_DETECTED])
    def drift_event(summary: dict, day: str, **context) -> dict:
        """Announce one drifted day (a drift alarm for retraining); skip when it did not drift."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not summary["dataset_drift"]:
            raise AirflowSkipException(
                f"No dataset drift on {day} (share {summary['drift_share']:.2f}); nothing to announce."
            )
        start, end = day_window(day)
        extra = {
            "day": day,
            "start": start,
            "end": end,  # one day's window: consumers read the day from it, as for materializations
            "model_version": summary["model_version"],
            "drift_share": summary["drift_share"],
            "drifted_features": summary["drifted_features"],
            "drift_run_id": summary["run_id"],
        }
        context["outlet_events"][DRIFT_DETECTED].extra = extra
        return extra

    # --8<-- [start:drift_detect]
    @task(task_id="days")
    def days(data_root: str, **context) -> list[dict[str, str]]:
        """Every day the run announces, oldest first, with the staged partition that `detect` tests."""
        return [
            {"day": day, "current_uri": f"{data_root}/staging/{FEATURE_VIEW}/date={day}/part-00000.parquet"}
            for day in partition_days(context)
        ]

    @task_group(group_id="each_day", prefix_group_id=False)
    def each_day(day: str, current_uri: str) -> None:
        """One day: test its partition, and announce it when it drifted."""
        detect = DriftDetectOperator(
            task_id="detect",
            name=MODEL_NAME,
            alias="{{ params.alias }}",
            current_uri=current_uri,
            thresholds="{{ params.thresholds | tojson }}",
            drift_share="{{ params.drift_share }}",
            on_missing_reference="skip",  # no champion yet: nothing to compare with
        )
        # --8<-- [end:drift_detect]
        drift_event(detect.output, day=day)

    announced = days(data_root=DATA_ROOT)
    validate_conf >> announced
    each_day.expand_kwargs(announced)  # one detect → drift_event per day
