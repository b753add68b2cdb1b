"""
### Training pipeline: point-in-time training set → train (local or Kubernetes GPU)

Runs whenever the feature pipeline updates the `feast_churn_customer_activity` Asset, or on demand.

1. **training_set**: joins every churn label that has landed with the features of the snapshot each
   label refers to (Feast historical retrieval, point-in-time correct) and writes one parquet file per
   day under `{data_root}/training_sets/churn_model_v1/`; it updates the `training_set_churn_model_v1` Asset;
2. **train**: runs the reference trainer (`python -m mlops_provider.trainer`), either as a subprocess on
   the worker (`training_backend = local`, the default) or in a GPU pod through the
   KubernetesPodOperator (`kubernetes`). Same command, same result: `{"run_id", "model_uri", "metrics"}`
   logged to MLflow. Retried with exponential backoff; bad data fails at once.

**Trigger**: `airflow dags trigger training_pipeline --conf '{"hyperparameters": {"epochs": 5}}'`.
Conf keys: `day` (which training set to build, default the run's day), `training_backend`
(`local` | `kubernetes`, default the `mlops_training_backend` Variable, else `local`), `hyperparameters`
(passed to the trainer; unknown names are refused), `landing_path`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from mlops_provider.assets import feature_view_asset, training_set_asset
from mlops_provider.operators.feast import FeastHistoricalFeaturesOperator
from mlops_provider.operators.training import TrainModelOperator
from mlops_provider.partitions import PARTITION_MACROS

FEATURE_SERVICE = "churn_model_v1"
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"
LANDING = "{{ params.landing_path or (var.value.get('mlops_data_root', '/tmp/mlops-data') ~ '/landing') }}"
BACKEND = "{{ params.training_backend or var.value.get('mlops_training_backend', 'local') }}"

with DAG(
    dag_id="training_pipeline",
    description="Build a point-in-time training set from Feast and train the churn model.",
    schedule=[feature_view_asset("churn", "customer_activity")],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml-platform", "retries": 0},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(None, type=["null", "string"], format="date",
                     description="Day whose training set to build, YYYY-MM-DD. Empty: the run's day."),
        "training_backend": Param(
            None, type=["null", "string"], enum=[None, "local", "kubernetes"],
            description="Where the trainer runs. Empty: the mlops_training_backend Variable, else local.",
        ),
        "hyperparameters": Param(
            {"epochs": 8, "patience": 3},
            type="object",
            description="Trainer hyperparameters: epochs, lr, batch_size, hidden, dropout, patience, seed, "
            "val_fraction, weight_decay.",
        ),
        "landing_path": Param(None, type=["null", "string"],
                              description="Landing root holding churn_labels/. Empty: mlops_data_root/landing."),
    },
    tags=["mlops", "training", "feast", "mlflow", "kubernetes"],
    doc_md=__doc__,
) as dag:
    training_set = FeastHistoricalFeaturesOperator(
        task_id="training_set",
        feature_service=FEATURE_SERVICE,
        entity_df=f"{LANDING}/churn_labels/date=*/part-00000.parquet",
        entity_columns=["customer_id", "churned"],
        output_uri=f"{DATA_ROOT}/training_sets/{FEATURE_SERVICE}/date={{{{ partition_day() }}}}/training_set.parquet",
        outlets=[training_set_asset(FEATURE_SERVICE)],
    )

    train = TrainModelOperator(
        task_id="train",
        backend=BACKEND,
        training_set_uri="{{ ti.xcom_pull(task_ids='training_set')['uri'] }}",
        label_column="churned",
        hyperparameters="{{ params.hyperparameters | tojson }}",
        experiment="churn",
        retries=2,
        retry_delay=dt.timedelta(seconds=30),
        retry_exponential_backoff=True,
    )

    training_set >> train
