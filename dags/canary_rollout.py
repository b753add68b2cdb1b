"""
### Canary rollout: start → step 1 … step 4 (deploy, analyse, decide) → promote or roll back

Runs whenever the training pipeline's gate sets the `challenger` alias of `churn_classifier` (the
`model_churn_classifier_challenger` Asset), or on demand. The challenger goes out as the `canary`
and takes a growing share of traffic: **5 %, 25 %, 50 %, then 100 %**. After every step the
analysis polls its metrics every `interval_seconds` and compares the canary with the `champion`:

- `batch` backend (default): each step replays the canary version's own held-out evaluation set
  (the rows its gate scored, which neither model trained on; the `mlops.eval_set_uri` tag) through
  both models with the step's split, by a stable hash of `customer_id`, and writes a prediction log
  under `{data_root}/predictions/rollouts/`; each poll judges its own slice of that log (new customers,
  never an earlier poll's). Checks: error rate ≤ 1 %, p95 latency within 50 ms of the champion's,
  prediction-distribution shift (PSI) ≤ 0.25, ROC AUC within 0.02 of the champion's (once a poll has
  200 labelled rows);
- `kserve` backend: each step patches the KServe InferenceService's `canaryTrafficPercent`, and the
  analysis reads success rate and latency per revision from Prometheus.

`checks_per_step` passing polls step up; `failure_threshold` failing polls roll back; polls without
data make the step inconclusive, which rolls back too. After the last step the canary is **promoted**:
`champion` moves to it and the old champion is kept as `previous` (the
`model_churn_classifier_champion` and `_previous` Assets are updated; `start` updates `_canary`). A **rollback** removes the canary and tags the
version with why; the champion never moves. The very first model (no champion yet) is promoted at once,
after a smoke test: it must score a sample of its held-out set within the error-rate limit. When the
champion fails on a step's traffic as well, the pipeline is at fault, not the canary: the analysis
task fails and the rollout is stopped (`refused`), not rolled back.

A first task, **validate_conf**, refuses a run whose conf has an unknown key. **start** fails, with no
canary and no traffic, when the gate compared the challenger with another champion than today's (one
was promoted in between): re-run the gate.

Everything is kept in MLflow (aliases, and one JSON tag `mlops.canary.state` on the version, written
whole at every transition), so clearing a task or restarting the scheduler resumes the rollout where it
was, with no step taken twice. A task that errors leaves the rollout holding at its current step; re-run
it.

**Trigger**: `airflow dags trigger canary_rollout --conf '{"interval_seconds": 5, "checks_per_step": 2}'`.
Conf keys: `version` (default the `challenger` alias), `backend` (`batch` | `kserve`),
`interval_seconds`, `checks_per_step`, `failure_threshold`, `traffic_uri` (batch: parquet file or glob
of entity rows, default the version's held-out evaluation set), `kserve_service`, `kserve_namespace`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, TriggerRule, task

from mlops_provider.assets import model_alias_asset
from mlops_provider.operators.canary import CanaryDeployOperator, PromoteModelOperator, RollbackModelOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.sensors.canary import CanaryAnalysisSensor

# --8<-- [start:constants]
MODEL_NAME = "churn_classifier"
STEPS = [5, 25, 50, 100]
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"
# Empty params fall back to Airflow Variables (the demo stack sets short ones), then to the defaults.
STRATEGY = (
    "{{ {'steps': " + str(STEPS) + ","
    " 'interval_seconds': (params.interval_seconds or var.value.get('mlops_canary_interval_seconds', 60)) | float,"
    " 'checks_per_step': (params.checks_per_step or var.value.get('mlops_canary_checks_per_step', 3)) | int,"
    " 'failure_threshold': params.failure_threshold} | tojson }}"
)
# batch: without traffic_uri, each version's own held-out evaluation set (its mlops.eval_set_uri tag):
# rows neither model trained on.
BACKEND_CONFIG = (
    "{{ (dict({'log_root': var.value.get('mlops_data_root', '/tmp/mlops-data') ~ '/predictions',"
    " 'label_column': 'churned', 'entity_column': 'customer_id', 'timestamp_column': 'event_timestamp'},"
    " **({'traffic_uri': params.traffic_uri} if params.traffic_uri else {}))"
    " if params.backend == 'batch' else"
    " {'service': params.kserve_service, 'namespace': params.kserve_namespace}) | tojson }}"
)
VERSION = "{{ ti.xcom_pull(task_ids='start')['version'] }}"
# --8<-- [end:constants]

with DAG(
    dag_id="canary_rollout",
    description="Roll the challenger out as a canary in steps; promote it or roll it back on the metrics.",
    schedule=[model_alias_asset(MODEL_NAME, "challenger")],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": dt.timedelta(seconds=10)},
    params={
        "version": Param(
            None,
            type=["null", "string"],
            description="Model version to roll out. Empty: the challenger alias.",
        ),
        "backend": Param(
            "batch",
            type="string",
            enum=["batch", "kserve"],
            description="batch (embedded default: replayed traffic) or kserve (InferenceService).",
        ),
        "interval_seconds": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            description="Seconds between analysis polls. Empty: the mlops_canary_interval_seconds Variable, else 60.",
        ),
        "checks_per_step": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Passing polls needed to step up. Empty: the mlops_canary_checks_per_step Variable, else 3.",
        ),
        "failure_threshold": Param(
            2, type="integer", minimum=1, description="Failing polls that roll the canary back."
        ),
        "traffic_uri": Param(
            None,
            type=["null", "string"],
            description="batch: parquet file or glob of rows replayed each step. "
            "Empty: the version's held-out evaluation set.",
        ),
        "kserve_service": Param(
            "churn-classifier", type="string", description="kserve: InferenceService name."
        ),
        "kserve_namespace": Param("models", type="string", description="kserve: its namespace."),
    },
    tags=["mlops", "canary", "mlflow", "kserve"],
    doc_md=__doc__,
) as dag:
    # --8<-- [start:common]
    common = {
        "name": MODEL_NAME,
        "backend": "{{ params.backend }}",
        "backend_config": BACKEND_CONFIG,
        "strategy": STRATEGY,
    }
    # --8<-- [end:common]
    validate_conf = ValidateRunConfOperator(task_id="validate_conf")
    # --8<-- [start:start]
    start = CanaryDeployOperator(
        task_id="start",
        version="{{ params.version }}",
        outlets=[model_alias_asset(MODEL_NAME, "canary")],
        **common,
    )
    # --8<-- [end:start]
    # --8<-- [start:promote]
    promote = PromoteModelOperator(
        task_id="promote",
        version=VERSION,
        outlets=[model_alias_asset(MODEL_NAME, "champion"), model_alias_asset(MODEL_NAME, "previous")],
        **common,
    )
    # --8<-- [end:promote]
    # --8<-- [start:rollback]
    rollback = RollbackModelOperator(
        task_id="rollback", version=VERSION, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, **common
    )
    # --8<-- [end:rollback]

    validate_conf >> start
    # --8<-- [start:steps]
    previous = start
    for i, weight in enumerate(STEPS):
        deploy = CanaryDeployOperator(
            task_id=f"step_{i + 1}_deploy",
            version=VERSION,
            step=i,
            doc_md=f"Send {weight} % of traffic to the canary.",
            **common,
        )
        analyse = CanaryAnalysisSensor(
            task_id=f"step_{i + 1}_analyse", version=VERSION, step=i, deferrable=True, **common
        )
        nxt = f"step_{i + 2}_deploy" if i + 1 < len(STEPS) else "promote"

        @task.branch(task_id=f"step_{i + 1}_decide")
        def decide(verdict: dict, on_pass: str = nxt) -> str:
            """Step up (or promote after the last step) on pass; roll back on fail or inconclusive."""
            return on_pass if verdict["verdict"] == "pass" else "rollback"

        decision = decide(analyse.output)
        previous >> deploy >> analyse
        decision >> rollback
        previous = decision
    previous >> promote
    # --8<-- [end:steps]
