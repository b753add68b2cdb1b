"""
### Example: train in a Kubernetes GPU pod with GPUTrainingOperator

Runs the reference trainer (`python -m mlops_provider.trainer`) in a pod that asks for one NVIDIA GPU
on the GPU node pool, with MLflow credentials taken from the Kubernetes Secret `mlflow-credentials`.

`GPUTrainingOperator` is a KubernetesPodOperator, so importing it loads the cncf.kubernetes provider
and the kubernetes client at parse time (about a second). The shipped `training_pipeline` avoids that
with `TrainModelOperator(backend="kubernetes")`, which builds this operator when the task runs.

Trigger with `--conf '{"training_set_uri": "s3://ml/training_sets/churn/2026-01-04.parquet"}'`.
Tested by `tests/docs/test_examples.py`, which builds and validates the pod with the real KPO code
(no cluster runs in CI).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from mlops_provider.operators.kubernetes import GPUTrainingOperator

with DAG(
    dag_id="example_gpu_training",
    description="Train the churn model in a Kubernetes pod with one GPU.",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    default_args={"owner": "ml-platform"},
    params={
        "training_set_uri": Param(
            type="string", description="Parquet training set the pod can read, usually s3://..."
        ),
    },
    tags=["mlops", "example", "training", "kubernetes"],
    doc_md=__doc__,
) as dag:
    # --8<-- [start:gpu_training]
    train = GPUTrainingOperator(
        task_id="train",
        training_set_uri="{{ params.training_set_uri }}",
        label_column="churned",
        hyperparameters={"epochs": 20, "hidden": [64, 32]},
        experiment="churn",
        id_columns=["customer_id"],  # the feature service's join key: an identifier, not a feature
        image="ghcr.io/airflow-provider-mlops/trainer:0.1.0",
        gpus=1,
        node_selector={"nvidia.com/gpu.present": "true"},
        namespace="ml",
        service_account_name="trainer",  # its cloud role reads s3:// (IRSA / workload identity)
        mlflow_secret_name="mlflow-credentials",  # noqa: S106 - the Secret's name, not a password
        deferrable=True,
    )
    # --8<-- [end:gpu_training]
