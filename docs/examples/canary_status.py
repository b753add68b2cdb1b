"""
### Example: report where a canary rollout stands

Reads the rollout state of a model version from MLflow without changing anything: by default the
version behind the `canary` alias, else the `challenger`. Use it for reports, alerts or branching
outside the rollout DAG. The strategy and backend settings are the ones the rollout uses (they are
validated, but no backend is called).

Trigger with `--conf '{"model_name": "churn_classifier"}'`; tested by `tests/docs/test_examples.py`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from mlops_provider.operators.canary import CanaryStatusOperator

DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"

with DAG(
    dag_id="example_canary_status",
    description="Report the state of the current canary rollout.",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    default_args={"owner": "ml-platform"},
    params={
        "model_name": Param("churn_classifier", type="string", description="Registered model name."),
        "version": Param(
            None,
            type=["null", "string"],
            description="Version to report. Empty: the canary alias, else the challenger alias.",
        ),
    },
    tags=["mlops", "example", "canary"],
    doc_md=__doc__,
) as dag:
    # --8<-- [start:canary_status]
    status = CanaryStatusOperator(
        task_id="status",
        name="{{ params.model_name }}",
        version="{{ params.version }}",  # empty: the canary alias, else the challenger
        backend="batch",
        backend_config={
            "traffic_uri": DATA_ROOT + "/eval_sets/churn_model_v1/date=*/eval_set.parquet",
            "log_root": DATA_ROOT + "/predictions",
            "entity_column": "customer_id",
        },
    )

    @task
    def report(state: dict) -> str:
        """One line for a chat message or a dashboard."""
        return (
            f"{state['name']} v{state['version']}: {state['status'] or 'no rollout'}, "
            f"step {state['step'] + 1} of {len(state['steps'] or [])}, weight {state['weight']} %"
        )

    report(status.output)
    # --8<-- [end:canary_status]
