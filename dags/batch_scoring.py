"""
### Batch scoring: the day's customers → features (Feast) → predictions with the current canary split

Runs whenever the feature pipeline updates the `feast_churn_customer_activity` Asset, for the newest
day it announced, or on demand. It starts paused: unpause it once a `champion` exists.

0. **validate_conf**: refuses a run whose conf has an unknown key;
1. **features**: the day's customers with their point-in-time features from the `churn_model_v1`
   feature service (Feast historical retrieval);
2. **score**: every customer is scored by the `champion` of `churn_classifier`; while a canary rollout
   runs, the canary's current share of customers (by a stable hash of `customer_id`) goes to the
   `canary` instead. The prediction log (customer, variant, model version, probability, prediction,
   latency, error) is written to `{data_root}/predictions/daily/churn_classifier/date=YYYY-MM-DD/`,
   replacing that day's log whole: a re-run writes no duplicate rows.

**Trigger**: `airflow dags trigger batch_scoring --conf '{"day": "2026-01-04"}'`.
Conf keys: `day` (default the run's day), `landing_path`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from mlops_provider.assets import feature_view_asset
from mlops_provider.operators.canary import BatchScoreOperator
from mlops_provider.operators.feast import FeastHistoricalFeaturesOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.partitions import PARTITION_MACROS

MODEL_NAME = "churn_classifier"
FEATURE_SERVICE = "churn_model_v1"
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"
LANDING = "{{ params.landing_path or (var.value.get('mlops_data_root', '/tmp/mlops-data') ~ '/landing') }}"
DAY = "{{ partition_day() }}"

with DAG(
    dag_id="batch_scoring",
    description="Score the day's customers with the champion and the canary's share.",
    schedule=[feature_view_asset("churn", "customer_activity")],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": dt.timedelta(seconds=30)},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Day to score, YYYY-MM-DD. Empty: the run's day.",
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
    features = FeastHistoricalFeaturesOperator(
        task_id="features",
        feature_service=FEATURE_SERVICE,
        entity_df=f"{LANDING}/customer_activity/date={DAY}/part-00000.parquet",
        entity_columns=["customer_id"],
        output_uri=f"{DATA_ROOT}/scoring_sets/{FEATURE_SERVICE}/date={DAY}/features.parquet",
        outlets=[],
    )
    # --8<-- [start:batch_score]
    score = BatchScoreOperator(
        task_id="score",
        name=MODEL_NAME,
        features_uri="{{ ti.xcom_pull(task_ids='features')['uri'] }}",
        output_uri=f"{DATA_ROOT}/predictions/daily/{MODEL_NAME}/date={DAY}/predictions.parquet",
    )
    # --8<-- [end:batch_score]
    validate_conf >> features >> score
