"""
### Drift monitor: the day's features vs the champion's training data → `drift_churn_classifier` Asset

Runs after every feature pipeline run (it schedules on the `feast_churn_customer_activity` Asset, for
the newest day materialization announced), or on demand.

1. **validate_conf**: refuses a run whose conf has an unknown key;
2. **detect**: compares the day's validated partition
   (`{data_root}/staging/customer_activity/date=YYYY-MM-DD/part-00000.parquet`) with the reference
   sample that the trainer logged with the `champion` of `churn_classifier`. Numeric features get PSI
   and Kolmogorov-Smirnov, categorical ones Jensen-Shannon and chi-squared; a feature drifts when both
   its effect size (PSI ≥ 0.25, JS ≥ 0.1) and its test (p < 0.05) agree, the dataset when at least
   `drift_share` of the features drift. The result is an MLflow run in the `mlops-drift` experiment
   with `drift_report.html` and `drift_report.json`, and the summary is the task's XCom. Skipped while
   there is no champion yet. A re-run for the same data and champion reuses the run;
3. **drift_event**: when the dataset drifted, updates the `drift_churn_classifier` Asset (its extra
   names the day, the champion version, the drifted features and the drift run), which starts the
   `training_pipeline`; skipped otherwise.

**Trigger**: `airflow dags trigger drift_monitor --conf '{"day": "2026-01-04", "drift_share": 0.5}'`.
Conf keys: `day` (default the run's day), `alias` (the reference model, default `champion`),
`drift_share`, `thresholds` (per-feature overrides, e.g. `{"spend_30d": {"psi": 0.4}, "*": {"p_value": 0.01}}`).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from mlops_provider.assets import drift_asset, feature_view_asset
from mlops_provider.operators.drift import DriftDetectOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.partitions import PARTITION_MACROS

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
    max_active_runs=1,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": dt.timedelta(seconds=30)},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Day whose features to test, YYYY-MM-DD. Empty: the run's day.",
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

    # --8<-- [start:drift_detect]
    detect = DriftDetectOperator(
        task_id="detect",
        name=MODEL_NAME,
        alias="{{ params.alias }}",
        current_uri=f"{DATA_ROOT}/staging/{FEATURE_VIEW}/date={{{{ partition_day() }}}}/part-00000.parquet",
        thresholds="{{ params.thresholds | tojson }}",
        drift_share="{{ params.drift_share }}",
        on_missing_reference="skip",  # no champion yet: nothing to compare with
    )
    # --8<-- [end:drift_detect]

    @task(task_id="drift_event", outlets=[DRIFT_DETECTED])
    def drift_event(summary: dict, start: str, end: str, **context) -> dict:
        """Announce the drift (the Asset event starts retraining); skip when the dataset did not drift."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not summary["dataset_drift"]:
            raise AirflowSkipException(
                f"No dataset drift (share {summary['drift_share']:.2f}); nothing to announce."
            )
        extra = {
            "start": start,
            "end": end,  # the training DAG reads the day from the newest window end
            "model_version": summary["model_version"],
            "drift_share": summary["drift_share"],
            "drifted_features": summary["drifted_features"],
            "drift_run_id": summary["run_id"],
        }
        context["outlet_events"][DRIFT_DETECTED].extra = extra
        return extra

    validate_conf >> detect
    drift_event(detect.output, start="{{ partition_start() }}", end="{{ partition_end() }}")
