"""
### Example: move MLflow aliases by hand

An operator's escape hatch next to the gate and the canary rollout: make a chosen version the
`champion` and retire the `challenger` alias. Both tasks check the alias first, so re-running the DAG
changes nothing and reports `changed: false`.

Trigger with `--conf '{"version": "3"}'`; tested by `tests/docs/test_examples.py`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from mlops_provider.operators.mlflow import MLflowDeleteAliasOperator, MLflowSetAliasOperator

with DAG(
    dag_id="example_mlflow_aliases",
    description="Point the champion alias at a chosen version and remove the challenger alias.",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    default_args={"owner": "ml-platform"},
    params={
        "model_name": Param("churn_classifier", type="string", description="Registered model name."),
        "version": Param(type="string", pattern=r"^[0-9]+$", description="Version to make the champion."),
    },
    tags=["mlops", "example", "mlflow"],
    doc_md=__doc__,
) as dag:
    # --8<-- [start:set_alias]
    set_champion = MLflowSetAliasOperator(
        task_id="set_champion",
        name="{{ params.model_name }}",
        alias="champion",
        version="{{ params.version }}",
    )
    # --8<-- [end:set_alias]

    # --8<-- [start:delete_alias]
    clear_challenger = MLflowDeleteAliasOperator(
        task_id="clear_challenger",
        name="{{ params.model_name }}",
        alias="challenger",
    )
    # --8<-- [end:delete_alias]

    set_champion >> clear_challenger
