"""
### Batch scoring: each announced day's customers → features (Feast) → predictions with the current canary split

Runs whenever the feature pipeline updates the `feast_churn_customer_activity` Asset, or on demand. It
starts paused: unpause it once a `champion` exists. One run may stand for several days: while a run is
active, further materializations (e.g. a backfill) queue their Asset events, and Airflow starts one run
with all of them. The run scores **every** day those events announce (`partition_days()`: each
window's last day and every earlier day it covers whole), one mapped `features` → `score` pair per
day; a conf `day` or a manual run scores exactly one day.

0. **validate_conf**: refuses a run whose conf has an unknown key;
1. **days**: lists the run's days, oldest first, each with its paths; the tasks below are mapped over
   them (map index 0 is the oldest day);
2. **features** (per day): the day's customers with their point-in-time features from the
   `churn_model_v1` feature service (Feast historical retrieval), written to
   `{data_root}/scoring_sets/churn_model_v1/date=YYYY-MM-DD/features.parquet`;
3. **score** (per day): every customer is scored by the `champion` of `churn_classifier`; while a
   canary rollout runs, the canary's current share of customers (by a stable hash of `customer_id`)
   goes to the `canary` instead. The prediction log (customer, variant, model version, probability,
   prediction, latency, error) is written to
   `{data_root}/predictions/daily/churn_classifier/date=YYYY-MM-DD/`, replacing that day's log whole:
   a re-run writes no duplicate rows.

**Trigger**: `airflow dags trigger batch_scoring --conf '{"day": "2026-01-04"}'`.
Conf keys: `day` (default the run's days), `landing_path`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task, task_group

from mlops_provider.assets import feature_view_asset
from mlops_provider.operators.canary import BatchScoreOperator
from mlops_provider.operators.feast import FeastHistoricalFeaturesOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.partitions import PARTITION_MACROS, partition_days

MODEL_NAME = "churn_classifier"
FEATURE_SERVICE = "churn_model_v1"
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"
LANDING = "{{ params.landing_path or (var.value.get('mlops_data_root', '/tmp/mlops-data') ~ '/landing') }}"

with DAG(
    dag_id="batch_scoring",
    description="Score the day's customers with the champion and the canary's share.",
    schedule=[feature_view_asset("churn", "customer_activity")],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    # Not 1: with one run at a time, Airflow (3.x, apache/airflow#56050) gives the next run only the
    # first of the events that queued up meanwhile, and the rest wait for an event that may never come.
    # Each run handles its own days, so runs side by side are safe.
    max_active_runs=4,
    is_paused_upon_creation=True,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": dt.timedelta(seconds=30)},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Day to score, YYYY-MM-DD. Empty: the run's days.",
        ),
        "landing_path": Param(
            None,
            type=["null", "string"],
            description="Landing root holding customer_activity/. Empty: mlops_data_root/landing.",
        ),
    },
    tags=["mlops", "scoring", "canary", "feast", "mlflow"],
    doc_md=__doc__,
) as dag:
    validate_conf = ValidateRunConfOperator(task_id="validate_conf")

    @task(task_id="days")
    def days(data_root: str, landing: str, **context) -> list[dict[str, str]]:
        """Every day the run announces, oldest first, with what `features` reads and writes and where
        `score` writes its log."""
        return [
            {
                "entity_df": f"{landing}/customer_activity/date={day}/part-00000.parquet",
                "features_uri": f"{data_root}/scoring_sets/{FEATURE_SERVICE}/date={day}/features.parquet",
                "output_uri": f"{data_root}/predictions/daily/{MODEL_NAME}/date={day}/predictions.parquet",
            }
            for day in partition_days(context)
        ]

    @task_group(group_id="each_day", prefix_group_id=False)
    def each_day(entity_df: str, features_uri: str, output_uri: str) -> None:
        """One day: its customers' features, then their predictions."""
        features = FeastHistoricalFeaturesOperator(
            task_id="features",
            feature_service=FEATURE_SERVICE,
            entity_df=entity_df,
            entity_columns=["customer_id"],
            output_uri=features_uri,
            outlets=[],
        )
        # --8<-- [start:batch_score]
        score = BatchScoreOperator(
            task_id="score",
            name=MODEL_NAME,
            # this day's features: the features task of the same map index
            features_uri="{{ ti.xcom_pull(task_ids='features', map_indexes=ti.map_index)['uri'] }}",
            output_uri=output_uri,
            entity_column="customer_id",  # the key customers are routed to the canary on
            keep_columns=["event_timestamp"],  # copied to the log, never sent to the models
        )
        # --8<-- [end:batch_score]
        features >> score

    announced = days(data_root=DATA_ROOT, landing=LANDING)
    validate_conf >> announced
    each_day.expand_kwargs(announced)  # one features → score per day
