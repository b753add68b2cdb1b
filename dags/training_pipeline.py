"""
### Training pipeline: newly landed labels → windows → training set → train → register → gate

Runs whenever the label pipeline announces newly labelled days (the `labels_churn_labels` Asset; for
the newest day announced), or on demand. It starts paused: unpause it once labels have landed.

0. **validate_conf**: refuses a run whose conf has an unknown key;
1. **decide**: plans the windows for the newest labelled day S (docs/evaluation.md): the
   **evaluation window** is the newest `evaluation_days` labelled days, the **training window** the
   `training_days` before it; bounded, disjoint, the same whenever day S is re-run, and tagged on the
   version. It trains when there is no champion yet, or (`retrain_policy = drift`, the default) once
   labels cover a drift alarm raised against the champion (the `drift_churn_classifier` Asset): the
   training window then starts at the drift, since the data before it teaches the old relation.
   `retrain_policy = always` trains on every new labelled day. Otherwise it is skipped, and so is
   everything after it, with the reason in its log;
2. **training_set** / **eval_set**: join each window's labels (`{data_root}/labels/churn_labels/date=*`,
   published by the label pipeline) with the features of the snapshot each label refers to (Feast
   historical retrieval, point-in-time correct) and write one parquet file each; no row of the
   evaluation set is in the training set;
3. **train**: runs the reference trainer (`python -m mlops_provider.trainer`), either as a subprocess on
   the worker (`training_backend = local`, the default) or in a GPU pod through the
   KubernetesPodOperator (`kubernetes`). It early-stops on the last slice of the training window, never on
   the evaluation window. Before that, **find_existing** looks for a registered version trained on the
   same data content, code version and hyperparameters; if there is one, training is skipped and that
   version is reused;
4. **register**: registers the run's model as a version of `churn_classifier` with lineage tags (DAG run,
   windows, feature service, training and evaluation sets, fingerprint, code version); idempotent;
5. **wait_ready**: waits until the version is READY;
6. **gate**: scores the new version and the current `champion` on the same held-out rows (the
   evaluation window) and passes when the confidence interval of the ROC AUC difference (DeLong)
   shows the new version is not worse beyond the tolerance; too few labelled rows or positives decide
   `insufficient_evidence`, never a promotion. On pass the `challenger` alias moves to the new version;
   the decision, interval and n are tagged on the version. The first model needs the absolute
   thresholds and the minimum evidence;
7. **challenger_set**: on pass, updates the `model_churn_classifier_challenger` Asset (once per gate
   decision), which starts the `canary_rollout` DAG.

**Trigger**: `airflow dags trigger training_pipeline --conf '{"day": "2026-01-06", "retrain_policy": "always"}'`.
Conf keys: `day` (the newest labelled snapshot day, default the announced one), `training_days`,
`evaluation_days` and `retrain_policy` (defaults: the `mlops_training_days`, `mlops_evaluation_days` and
`mlops_retrain_policy` Variables, else 28, 1 and `drift`), `training_backend` (`local` | `kubernetes`,
default the `mlops_training_backend` Variable, else `local`), `hyperparameters` (passed to the trainer;
unknown names are refused).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, TriggerRule, task

from mlops_provider.assets import drift_asset, labels_asset, model_alias_asset, training_set_asset
from mlops_provider.operators.feast import FeastHistoricalFeaturesOperator
from mlops_provider.operators.mlflow import (
    MLflowEvaluateGateOperator,
    MLflowFindModelVersionOperator,
    MLflowRegisterModelOperator,
)
from mlops_provider.operators.retrain import RetrainDecisionOperator
from mlops_provider.operators.run_conf import ValidateRunConfOperator
from mlops_provider.operators.training import TrainModelOperator
from mlops_provider.partitions import PARTITION_MACROS
from mlops_provider.sensors.mlflow import MLflowModelVersionSensor

# --8<-- [start:constants]
FEATURE_SERVICE = "churn_model_v1"
MODEL_NAME = "churn_classifier"
TRAINING_SET = "{{ ti.xcom_pull(task_ids='training_set') }}"
HYPERPARAMETERS = "{{ params.hyperparameters | tojson }}"
# Absolute bounds a new version must meet (MLflow MetricThreshold fields); the comparison with the champion
# is the gate's confidence interval (tolerance, confidence, minimum evidence: docs/evaluation.md).
GATE_THRESHOLDS = {
    "roc_auc": {"threshold": 0.6, "greater_is_better": True},
    "log_loss": {"threshold": 0.6, "greater_is_better": False},
}
# The model's run: the one just trained, or the registered one reused when nothing changed.
MODEL_RUN_ID = "{{ (ti.xcom_pull(task_ids='train') or {}).get('run_id') or ti.xcom_pull(task_ids='find_existing')['run_id'] }}"
DATA_ROOT = "{{ var.value.get('mlops_data_root', '/tmp/mlops-data') }}"
LABELS = DATA_ROOT + "/labels/churn_labels/date={day}/part-00000.parquet"
BACKEND = "{{ params.training_backend or var.value.get('mlops_training_backend', 'local') }}"
# --8<-- [end:constants]

with DAG(
    dag_id="training_pipeline",
    description="Build a point-in-time training set from Feast and train the churn model.",
    # Newly labelled days: a model can only be trained and judged where labels exist. Drift alarms are
    # read by `decide` (an inlet), and act once labels cover them.
    schedule=[labels_asset("churn_labels")],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # Unpause once the features it reads have history (make demo does so after the first backfill).
    is_paused_upon_creation=True,
    default_args={"owner": "ml-platform", "retries": 0},
    user_defined_macros=PARTITION_MACROS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Newest labelled snapshot day, YYYY-MM-DD. Empty: the newest day the labels announced.",
        ),
        "training_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Training window in labelled days. Empty: the mlops_training_days Variable, else 28.",
        ),
        "evaluation_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Evaluation window (held out, never trained on) in labelled days. Empty: the "
            "mlops_evaluation_days Variable, else 1.",
        ),
        "retrain_policy": Param(
            None,
            type=["null", "string"],
            enum=[None, "drift", "always"],
            description="drift: train when there is no champion, or once labels cover a drift alarm; always: "
            "on every labelled day. Empty: the mlops_retrain_policy Variable, else drift.",
        ),
        "training_backend": Param(
            None,
            type=["null", "string"],
            enum=[None, "local", "kubernetes"],
            description="Where the trainer runs. Empty: the mlops_training_backend Variable, else local.",
        ),
        "hyperparameters": Param(
            {"epochs": 10, "lr": 0.01, "hidden": [32], "patience": 3},
            type="object",
            description="Trainer hyperparameters: epochs, lr, batch_size, hidden, dropout, patience, seed, "
            "val_fraction, weight_decay.",
        ),
    },
    tags=["mlops", "training", "feast", "mlflow", "kubernetes"],
    doc_md=__doc__,
) as dag:
    validate_conf = ValidateRunConfOperator(task_id="validate_conf")

    # --8<-- [start:decide]
    decide = RetrainDecisionOperator(
        task_id="decide",
        name=MODEL_NAME,
        newest_labelled_day="{{ partition_day() }}",
        label_partition_uri=LABELS,
        training_days="{{ params.training_days or var.value.get('mlops_training_days', 28) }}",
        evaluation_days="{{ params.evaluation_days or var.value.get('mlops_evaluation_days', 1) }}",
        policy="{{ params.retrain_policy or var.value.get('mlops_retrain_policy', 'drift') }}",
        drift_asset=drift_asset(MODEL_NAME),
    )
    # --8<-- [end:decide]

    # --8<-- [start:training_set]
    training_set = FeastHistoricalFeaturesOperator(
        task_id="training_set",
        feature_service=FEATURE_SERVICE,
        entity_df="{{ ti.xcom_pull(task_ids='decide')['training_uris'] | tojson }}",
        entity_columns=["churned"],  # the label; the service's join key and the timestamp always stay
        output_uri=f"{DATA_ROOT}/training_sets/{FEATURE_SERVICE}/date={{{{ partition_day() }}}}/training_set.parquet",
        outlets=[training_set_asset(FEATURE_SERVICE)],
    )
    # --8<-- [end:training_set]

    eval_set = FeastHistoricalFeaturesOperator(
        task_id="eval_set",
        feature_service=FEATURE_SERVICE,
        entity_df="{{ ti.xcom_pull(task_ids='decide')['evaluation_uris'] | tojson }}",
        entity_columns=["churned"],
        output_uri=f"{DATA_ROOT}/eval_sets/{FEATURE_SERVICE}/date={{{{ partition_day() }}}}/eval_set.parquet",
        outlets=[],
    )

    # --8<-- [start:find_existing]
    find_existing = MLflowFindModelVersionOperator(
        task_id="find_existing",
        name=MODEL_NAME,
        data_fingerprint="{{ ti.xcom_pull(task_ids='training_set')['fingerprint'] }}",
        hyperparameters=HYPERPARAMETERS,
    )

    @task.branch(task_id="train_or_reuse")
    def train_or_reuse(existing: dict) -> str:
        """Skip training when a registered version already has this data, code and hyperparameters."""
        return "register" if existing["found"] else "train"

    # --8<-- [end:find_existing]
    # --8<-- [start:train]
    train = TrainModelOperator(
        task_id="train",
        backend=BACKEND,
        training_set_uri="{{ ti.xcom_pull(task_ids='training_set')['uri'] }}",
        # Held out: scored and logged (eval_* metrics), never fitted on or early-stopped on.
        evaluation_set_uri="{{ ti.xcom_pull(task_ids='eval_set')['uri'] }}",
        label_column="churned",
        hyperparameters=HYPERPARAMETERS,
        experiment="churn",
        # No id_columns or timestamp_column: the training set carries its feature service's join key
        # and its timestamp column, so the key never becomes a feature.
        retries=2,
        retry_delay=dt.timedelta(seconds=30),
        retry_exponential_backoff=True,
    )
    # --8<-- [end:train]

    # --8<-- [start:register]
    register = MLflowRegisterModelOperator(
        task_id="register",
        name=MODEL_NAME,
        run_id=MODEL_RUN_ID,
        lineage_tags={
            "feature_service": FEATURE_SERVICE,
            "training_set_uri": "{{ ti.xcom_pull(task_ids='training_set')['uri'] }}",
            "training_rows": "{{ ti.xcom_pull(task_ids='training_set')['rows'] }}",
            "training_backend": BACKEND,
            "training_window": "{{ ti.xcom_pull(task_ids='decide')['training_window'] }}",
            "evaluation_window": "{{ ti.xcom_pull(task_ids='decide')['evaluation_window'] }}",
            "eval_set_uri": "{{ ti.xcom_pull(task_ids='eval_set')['uri'] }}",
        },
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        retries=3,
        retry_delay=dt.timedelta(seconds=20),
    )
    # --8<-- [end:register]

    # --8<-- [start:wait_ready]
    wait_ready = MLflowModelVersionSensor(
        task_id="wait_ready",
        name=MODEL_NAME,
        version="{{ ti.xcom_pull(task_ids='register')['version'] }}",
        poke_interval=5,
        timeout=600,
    )
    # --8<-- [end:wait_ready]

    # --8<-- [start:gate]
    gate = MLflowEvaluateGateOperator(
        task_id="gate",
        name=MODEL_NAME,
        version="{{ ti.xcom_pull(task_ids='register')['version'] }}",
        eval_data_uri="{{ ti.xcom_pull(task_ids='eval_set')['uri'] }}",
        label="churned",
        feature_columns=None,
        thresholds=GATE_THRESHOLDS,
        experiment="churn-gate",
    )
    # --8<-- [end:gate]

    challenger_asset = model_alias_asset(MODEL_NAME, "challenger")

    # The Asset is also an inlet, so the task can read its own past announcements (their extra).
    @task(task_id="challenger_set", inlets=[challenger_asset], outlets=[challenger_asset])
    def challenger_set(decision: dict, *, inlet_events=None, outlet_events=None) -> str:
        """Announce the new challenger once per gate decision, which starts the canary rollout.

        Skipped unless the gate passed (a fail or insufficient evidence promotes nothing). Keyed by the
        announcements themselves (the Asset's events carry the gate run), not by whether the gate decision
        was reused: a decision already announced (a re-run, or the drift-triggered run that follows the
        features-triggered one for the same data) is not announced again, and a gate that died after
        recording its decision but before this task ran still gets its one announcement on the re-run.
        """
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_provider.constants import GATE_PASS

        version = str(decision["version"])
        if decision["decision"] != GATE_PASS:
            raise AirflowSkipException(
                f"Version {version} is not promoted: the gate decided {decision['decision']} "
                f"({' '.join(decision['reasons'])})."
            )
        # Keyed by the gate decision (its MLflow run), which a version number alone is not: a registry
        # can be rebuilt and number its versions from 1 again.
        announced = {(e.extra or {}).get("gate_run_id") for e in inlet_events[challenger_asset]}
        if decision["gate_run_id"] in announced:
            raise AirflowSkipException(
                f"Version {version} was announced as the challenger before (gate run {decision['gate_run_id']})."
            )
        outlet_events[challenger_asset].extra = {"version": version, "gate_run_id": decision["gate_run_id"]}
        return version

    existing = find_existing.output
    validate_conf >> decide >> [training_set, eval_set]
    training_set >> find_existing
    eval_set >> train
    train_or_reuse(existing) >> [train, register]
    train >> register >> wait_ready >> gate
    challenger_set(gate.output)
    eval_set >> register
