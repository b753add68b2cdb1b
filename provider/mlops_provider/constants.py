"""Names shared across modules: model aliases, rollout statuses, verdicts and every ``mlops.*`` tag.

One home per name, so the trainer that writes a tag and the operator that searches for it cannot
drift apart. Imports nothing: every layer, the trainer image included, may read it.
"""

from __future__ import annotations

# -- model aliases (MLflow registered-model aliases) ---------------------------------------------------
CHAMPION, CHALLENGER, CANARY, PREVIOUS = "champion", "challenger", "canary", "previous"
ALIASES = (CHAMPION, CHALLENGER, CANARY, PREVIOUS)

# -- canary rollout statuses and analysis verdicts -----------------------------------------------------
PROGRESSING, PROMOTED, ROLLED_BACK = "progressing", "promoted", "rolled_back"
# A start refused before any traffic moved (the gate compared against another champion); not final:
# start again once the gate has re-run.
REFUSED = "refused"
PASS, FAIL, NO_DATA, INCONCLUSIVE = "pass", "fail", "no_data", "inconclusive"

# -- MLflow tags -------------------------------------------------------------------------------------
# MLflow stores at most this many characters in a tag value (runs and model versions alike).
MAX_TAG_LENGTH = 5000
TAG_PREFIX = "mlops."

# Lineage: set by the trainer on its run, copied to the registered version by the register operator.
DATA_FINGERPRINT_TAG = f"{TAG_PREFIX}data_fingerprint"
TRAINING_SET_URI_TAG = f"{TAG_PREFIX}training_set_uri"
CODE_VERSION_TAG = f"{TAG_PREFIX}code_version"
HYPERPARAMETERS_HASH_TAG = f"{TAG_PREFIX}hyperparameters_hash"
# The three that decide "same data, same code, same hyperparameters: reuse the version".
FINGERPRINT_TAGS = (DATA_FINGERPRINT_TAG, CODE_VERSION_TAG, HYPERPARAMETERS_HASH_TAG)

# Time: the labelled snapshot days a version was trained on and evaluated on ("YYYY-MM-DD/YYYY-MM-DD",
# both ends inclusive; disjoint, the evaluation window after the training window), and the held-out
# evaluation set (the rows the gate scored; the batch canary replays them by default).
TRAINING_WINDOW_TAG = f"{TAG_PREFIX}training_window"
EVALUATION_WINDOW_TAG = f"{TAG_PREFIX}evaluation_window"
EVAL_SET_URI_TAG = f"{TAG_PREFIX}eval_set_uri"
# What the model predicts (binary, multiclass or regression; mlops_provider.ml.tasks): set by the trainer
# on its run, copied to the version, read by the gate and the canary when they are not told.
TASK_TYPE_TAG = f"{TAG_PREFIX}task_type"

# -- training-set files ---------------------------------------------------------------------------------
# Parquet key-value metadata the Feast historical-features operator writes on a training set: the feature
# service's join keys (comma-separated) and the rows' timestamp column. The trainer reads them when it is
# not told, so keys never become features and no timestamp name is assumed.
JOIN_KEYS_METADATA = f"{TAG_PREFIX}join_keys"
TIMESTAMP_COLUMN_METADATA = f"{TAG_PREFIX}timestamp_column"

DAG_ID_TAG = f"{TAG_PREFIX}dag_id"
DAG_RUN_ID_TAG = f"{TAG_PREFIX}dag_run_id"
DATA_INTERVAL_START_TAG = f"{TAG_PREFIX}data_interval_start"
DATA_INTERVAL_END_TAG = f"{TAG_PREFIX}data_interval_end"
MLFLOW_RUN_ID_TAG = f"{TAG_PREFIX}mlflow_run_id"
SOURCE_TAG = f"{TAG_PREFIX}source"

# The evaluation gate: on the gate's MLflow run and on the candidate version.
GATE_TAG = f"{TAG_PREFIX}gate."
GATE_DECISION_TAG = f"{GATE_TAG}decision"
GATE_REASON_TAG = f"{GATE_TAG}reason"
GATE_THRESHOLDS_TAG = f"{GATE_TAG}thresholds"
GATE_RESULT_TAG = f"{GATE_TAG}result"
GATE_RUN_ID_TAG = f"{GATE_TAG}run_id"
GATE_KEY_TAG = f"{GATE_TAG}key"
GATE_CHAMPION_VERSION_TAG = f"{GATE_TAG}champion_version"

# Canary rollout state on the canary version: ONE JSON document (of, status, step, weight, steps,
# verdicts, history, reason, ...), written whole by a single tag write per transition, so a kill between
# two writes can never leave half a transition behind. Nothing searches by status, so there is no mirror.
CANARY_TAG = f"{TAG_PREFIX}canary."
CANARY_STATE_TAG = f"{CANARY_TAG}state"

# Drift detection: one run per (model version, data, thresholds) in DRIFT_EXPERIMENT.
DRIFT_EXPERIMENT = "mlops-drift"
DRIFT_TAG = f"{TAG_PREFIX}drift."
DRIFT_KEY_TAG = f"{DRIFT_TAG}key"
DRIFT_MODEL_TAG = f"{DRIFT_TAG}model"
DRIFT_MODEL_VERSION_TAG = f"{DRIFT_TAG}model_version"
DATASET_DRIFT_TAG = f"{DRIFT_TAG}dataset_drift"
DRIFTED_FEATURES_TAG = f"{DRIFT_TAG}drifted_features"

# -- KServe's InferenceService API coordinates -----------------------------------------------------------
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
KSERVE_KIND = "InferenceService"
KSERVE_API_VERSION = f"{KSERVE_GROUP}/{KSERVE_VERSION}"

# -- the evaluation gate's decisions and its evidence (mlops_provider.ml.stats) ---------------------------
# insufficient_evidence: too few labelled rows or positives to decide; never a promotion.
GATE_PASS, GATE_FAIL, GATE_INSUFFICIENT = PASS, FAIL, "insufficient_evidence"
# On the candidate version: the compared metric, labelled rows and positives, the difference (positive:
# the candidate is better) and its confidence interval, the confidence and the method (delong, bootstrap).
GATE_METRIC_TAG = f"{GATE_TAG}metric"
GATE_N_TAG = f"{GATE_TAG}n"
GATE_POSITIVES_TAG = f"{GATE_TAG}positives"
GATE_DIFFERENCE_TAG = f"{GATE_TAG}difference"
GATE_CI_LOW_TAG = f"{GATE_TAG}ci_low"
GATE_CI_HIGH_TAG = f"{GATE_TAG}ci_high"
GATE_CONFIDENCE_TAG = f"{GATE_TAG}confidence"
GATE_METHOD_TAG = f"{GATE_TAG}method"
# The task type the gate judged the version as (what ``positives`` counts: label-1 rows, the rarest class's
# rows, or every row for regression).
GATE_TASK_TYPE_TAG = f"{GATE_TAG}task_type"
