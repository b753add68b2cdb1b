"""
### Energy demand pipeline: land → validate → Feast → train → register → gate → canary → promote

A second, self-contained reference pipeline with another shape than the churn example: a **regression**
(next-day electricity use per household meter), its own data, Feast repo, GX suite and scikit-learn
trainer, all in `docs/examples/energy/`. One run handles one newest labelled day `day` (D):

0. **validate_conf**: refuses a run whose conf has an unknown key;
1. **land**: delivers the landing files of the run's days, one parquet file per day under
   `{energy_data_root}/landing/meter_readings/date=YYYY-MM-DD/`: the **training window** (the
   `training_days` days before D) and the **evaluation window** (D alone: held out, never trained on).
   The data is generated (`energy_data.py`, seeded); a file already there is kept, never rewritten.
   Days from `shift_from` on carry the changed relation (EV charging on the `ev` tariff);
2. **validate** (one mapped task per day): checks each landing file against
   `expectations/meter_readings.json` (GX): columns and types, no null `meter_id`, one row per meter,
   readings inside the day, `kwh_next_day` >= 0. A bad file is **quarantined** under
   `{energy_data_root}/quarantine/meter_readings/<day>/` with its validation report, the task fails and
   nothing downstream runs;
3. **apply** / **publish** (one mapped task per day): registers the Feast definitions of
   `feature_repo/` and copies each validated file into the feature view's offline source;
4. **decide**: plans the windows from the validated days (`RetrainDecisionOperator`, policy `always`:
   every run trains) and names their files;
5. **training_set** / **eval_set**: point-in-time feature retrieval (Feast) for the entity rows
   (`meter_id`, `reading_time`, `kwh_next_day`) of each window, one parquet file each;
6. **train**: runs `demand_trainer.py` (scikit-learn ridge regression) through the trainer contract,
   with `meter_id` as the id column and `reading_time` as the timestamp, so neither becomes a feature;
7. **register** / **wait_ready**: registers the run's model as a version of `energy_demand_regressor`
   with its windows and held-out set as lineage tags;
8. **gate**: scores the new version and the `champion` on the evaluation window and passes when the
   confidence interval of the RMSE difference (paired bootstrap) shows the new version is not worse
   than the champion by more than 0.1 kWh; the first model needs the absolute RMSE bound and enough
   rows. A fail skips everything after it;
9. **canary_start** → **step_N_deploy** / **step_N_analyse** / **step_N_decide** → **promote** or
   **rollback**: the batch canary replays the version's evaluation set, 10 %, 50 %, then 100 % of the
   meters to the new version, comparing it with the champion on the same rows at every step. The very
   first model has no champion: after a smoke test it is promoted at once.

**Connections and Variables**: `feast_energy` (`{"conn_type": "feast", "extra": {"repo_path":
"<this folder>/feature_repo"}}`), `mlflow_default`, and the `energy_data_root` Variable (default
`/tmp/energy-data`). **Trigger**: `airflow dags trigger energy_demand_pipeline --conf '{"day":
"2026-01-04"}'`; then, for a retrained model on shifted data, `--conf '{"day": "2026-01-08",
"shift_from": "2026-01-05"}'`. Tested by `tests/docs/test_energy_pipeline.py`; see README.md here.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, task

from mlops_provider.operators.canary import CanaryDeployOperator, PromoteModelOperator, RollbackModelOperator
from mlops_provider.operators.feast import (
    FeastApplyOperator,
    FeastHistoricalFeaturesOperator,
    FeastPublishPartitionOperator,
)
from mlops_provider.operators.gx import GXValidateOperator
from mlops_provider.operators.mlflow import MLflowEvaluateGateOperator, MLflowRegisterModelOperator
from mlops_provider.operators.retrain import RetrainDecisionOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.operators.training import TrainModelOperator
from mlops_provider.partitions import PARTITION_MACROS
from mlops_provider.sensors.canary import CanaryAnalysisSensor
from mlops_provider.sensors.mlflow import MLflowModelVersionSensor

HERE = Path(__file__).resolve().parent
MODEL_NAME = "energy_demand_regressor"
FEATURE_SERVICE = "demand_model_v1"
FEATURE_VIEW = "meter_readings"
ENTITY, TIMESTAMP, LABEL = "meter_id", "reading_time", "kwh_next_day"
FEAST_CONN = "feast_energy"
DATA_ROOT = "{{ var.value.get('energy_data_root', '/tmp/energy-data') }}"
DAY = "{{ partition_day() }}"
LANDING = f"{{root}}/landing/{FEATURE_VIEW}/date={{day}}/part-00000.parquet"
VERSION = "{{ ti.xcom_pull(task_ids='register')['version'] }}"
# RMSE in kWh: the first model's absolute bound, and how much worse than the champion a new one may be.
MAX_RMSE_KWH = 2.0
TOLERANCE_KWH = 0.1
CANARY_STEPS = [10, 50, 100]
CANARY_STRATEGY = (
    "{{ {'steps': " + str(CANARY_STEPS) + ", 'interval_seconds': params.canary_interval_seconds,"
    " 'checks_per_step': params.canary_checks_per_step, 'failure_threshold': 1} | tojson }}"
)
# The rows replayed at every step: the version's held-out evaluation set (its mlops.eval_set_uri tag),
# checked to be outside both models' training windows.
CANARY_BACKEND = {
    "log_root": f"{DATA_ROOT}/predictions",
    "entity_column": ENTITY,
    "label_column": LABEL,
    "timestamp_column": TIMESTAMP,  # copied to the prediction log, never sent to the models
    "task_type": "regression",
}


def _validation_kwargs(day: dict[str, str]) -> dict[str, Any]:
    """One landed day as the validate task's arguments: the file, its day, the day's bounds."""
    bounds = {"min_reading_time": day["start"], "max_reading_time": day["end"]}
    return {"data": day["uri"], "batch_id": day["day"], "suite_parameters": bounds}


def _publish_kwargs(day: dict[str, str]) -> dict[str, Any]:
    """One landed (and validated) day as the publish task's arguments."""
    return {"source_uri": day["uri"], "partition": day["day"]}


with DAG(
    dag_id="energy_demand_pipeline",
    description="Validate, train, gate and canary-release a next-day electricity demand regressor.",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml-platform", "retries": 0},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Newest labelled day (its readings and next-day use have landed), YYYY-MM-DD: "
            "the evaluation window. Empty: the run's logical date.",
        ),
        "training_days": Param(
            3, type="integer", minimum=1, description="Training window: this many days before `day`."
        ),
        "shift_from": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Generated data only: days from this one on carry the new EV-charging effect. "
            "Empty: no day does.",
        ),
        "meters": Param(
            1000,
            type="integer",
            minimum=500,
            description="Generated data only: meters reporting per day (the gate needs 500 held-out rows).",
        ),
        "hyperparameters": Param(
            {"alpha": 1.0}, type="object", description="Trainer hyperparameters: alpha (ridge penalty)."
        ),
        "canary_interval_seconds": Param(
            60, type="number", exclusiveMinimum=0, description="Seconds between canary analysis polls."
        ),
        "canary_checks_per_step": Param(
            2, type="integer", minimum=1, description="Passing canary polls needed to step up."
        ),
    },
    tags=["mlops", "example", "energy", "regression"],
    doc_md=__doc__,
) as dag:
    validate_conf = ValidateRunConfOperator(task_id="validate_conf")

    @task(task_id="land")
    def land(day: str, data_root: str, params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """Land the run's days that are missing (generated); return each day's file and bounds."""
        import runpy

        # The example's folder is not a package on the worker's path: run the generator's file.
        land_day = runpy.run_path(str(HERE / "energy_data.py"))["land_day"]
        params = params or {}
        newest = dt.date.fromisoformat(day)
        shift_from = dt.date.fromisoformat(params["shift_from"]) if params.get("shift_from") else None
        days = []
        for back in range(int(params["training_days"]), -1, -1):
            current = newest - dt.timedelta(days=back)
            path = Path(LANDING.format(root=data_root, day=current))
            shifted = shift_from is not None and current >= shift_from
            if land_day(path, current, shift=shifted, meters=int(params["meters"])):
                print(f"Landed {current}{' (shifted)' if shifted else ''} at {path}")
            start = dt.datetime.combine(current, dt.time(), tzinfo=dt.UTC)
            days.append(
                {
                    "day": current.isoformat(),
                    "uri": str(path),
                    "start": start.isoformat(),
                    "end": (start + dt.timedelta(days=1)).isoformat(),
                }
            )
        return days

    landed = land(day=DAY, data_root=DATA_ROOT)

    validate = GXValidateOperator.partial(
        task_id="validate",
        suite_path=str(HERE / "expectations" / f"{FEATURE_VIEW}.json"),
        data_asset_name=FEATURE_VIEW,
        on_failure="quarantine",
        quarantine_root=f"{DATA_ROOT}/quarantine",
        data_docs_dir=f"{DATA_ROOT}/data_docs",
    ).expand_kwargs(landed.map(_validation_kwargs))

    apply = FeastApplyOperator(task_id="apply", feast_conn_id=FEAST_CONN)

    publish = FeastPublishPartitionOperator.partial(
        task_id="publish", feature_view=FEATURE_VIEW, feast_conn_id=FEAST_CONN
    ).expand_kwargs(landed.map(_publish_kwargs))

    # The windows of the newest labelled day: evaluation = that day, training = the days before it.
    decide = RetrainDecisionOperator(
        task_id="decide",
        name=MODEL_NAME,
        newest_labelled_day=DAY,
        label_partition_uri=LANDING.format(root=DATA_ROOT, day="{day}"),
        training_days="{{ params.training_days }}",
        evaluation_days=1,
        policy="always",  # an example: every run trains (see docs/evaluation.md for "drift")
    )

    training_set = FeastHistoricalFeaturesOperator(
        task_id="training_set",
        feature_service=FEATURE_SERVICE,
        entity_df="{{ ti.xcom_pull(task_ids='decide')['training_uris'] | tojson }}",
        event_timestamp_column=TIMESTAMP,
        entity_columns=[ENTITY, LABEL],
        output_uri=f"{DATA_ROOT}/training_sets/{FEATURE_SERVICE}/date={DAY}/training_set.parquet",
        feast_conn_id=FEAST_CONN,
    )
    eval_set = FeastHistoricalFeaturesOperator(
        task_id="eval_set",
        feature_service=FEATURE_SERVICE,
        entity_df="{{ ti.xcom_pull(task_ids='decide')['evaluation_uris'] | tojson }}",
        event_timestamp_column=TIMESTAMP,
        entity_columns=[ENTITY, LABEL],
        output_uri=f"{DATA_ROOT}/eval_sets/{FEATURE_SERVICE}/date={DAY}/eval_set.parquet",
        feast_conn_id=FEAST_CONN,
        outlets=[],
    )

    train = TrainModelOperator(
        task_id="train",
        command=[sys.executable, str(HERE / "demand_trainer.py")],
        training_set_uri="{{ ti.xcom_pull(task_ids='training_set')['uri'] }}",
        evaluation_set_uri="{{ ti.xcom_pull(task_ids='eval_set')['uri'] }}",
        label_column=LABEL,
        task_type="regression",
        id_columns=[ENTITY],  # the feature service's join key: an identifier, not a feature
        timestamp_column=TIMESTAMP,
        hyperparameters="{{ params.hyperparameters | tojson }}",
        experiment="energy_demand",
    )

    register = MLflowRegisterModelOperator(
        task_id="register",
        name=MODEL_NAME,
        run_id="{{ ti.xcom_pull(task_ids='train')['run_id'] }}",
        lineage_tags={
            "feature_service": FEATURE_SERVICE,
            "training_set_uri": "{{ ti.xcom_pull(task_ids='training_set')['uri'] }}",
            "training_rows": "{{ ti.xcom_pull(task_ids='training_set')['rows'] }}",
            "training_window": "{{ ti.xcom_pull(task_ids='decide')['training_window'] }}",
            "evaluation_window": "{{ ti.xcom_pull(task_ids='decide')['evaluation_window'] }}",
            "eval_set_uri": "{{ ti.xcom_pull(task_ids='eval_set')['uri'] }}",
        },
    )
    wait_ready = MLflowModelVersionSensor(
        task_id="wait_ready", name=MODEL_NAME, version=VERSION, poke_interval=2, timeout=300
    )

    gate = MLflowEvaluateGateOperator(
        task_id="gate",
        name=MODEL_NAME,
        version=VERSION,
        eval_data_uri="{{ ti.xcom_pull(task_ids='eval_set')['uri'] }}",
        label=LABEL,
        task_type="regression",
        primary_metric="rmse",
        tolerance=TOLERANCE_KWH,
        thresholds={"rmse": {"threshold": MAX_RMSE_KWH, "greater_is_better": False}},
        feature_columns=None,
        experiment="energy_demand_gate",
    )

    common = {
        "name": MODEL_NAME,
        "backend": "batch",
        "backend_config": CANARY_BACKEND,
        "strategy": CANARY_STRATEGY,
    }
    canary_start = CanaryDeployOperator(task_id="canary_start", version=VERSION, **common)
    promote = PromoteModelOperator(task_id="promote", version=VERSION, **common)
    rollback = RollbackModelOperator(
        task_id="rollback", version=VERSION, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, **common
    )

    validate_conf >> [landed, apply]
    validate >> publish
    apply >> publish
    publish >> decide >> [training_set, eval_set]
    [training_set, eval_set] >> train >> register >> wait_ready >> gate >> canary_start
    previous = canary_start
    for i, weight in enumerate(CANARY_STEPS):
        deploy = CanaryDeployOperator(
            task_id=f"step_{i + 1}_deploy",
            version=VERSION,
            step=i,
            doc_md=f"Send {weight} % of the meters to the new version.",
            **common,
        )
        analyse = CanaryAnalysisSensor(
            task_id=f"step_{i + 1}_analyse", version=VERSION, step=i, deferrable=True, **common
        )
        on_pass = f"step_{i + 2}_deploy" if i + 1 < len(CANARY_STEPS) else "promote"

        @task.branch(task_id=f"step_{i + 1}_decide")
        def decide(verdict: dict[str, Any], on_pass: str = on_pass) -> str:
            """Step up (or promote after the last step) on pass; roll back on fail or inconclusive."""
            return on_pass if verdict["verdict"] == "pass" else "rollback"

        decision = decide(analyse.output)
        previous >> deploy >> analyse
        decision >> rollback
        previous = decision
    previous >> promote
