"""Register model versions with lineage, gate them against the champion, and move aliases (MLflow 3).

Every operator is idempotent: registering the same MLflow run twice returns the first version, setting
an alias that is already set is a no-op, and re-running the gate for the same version, data and
champion reuses the recorded decision.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, SkipMixin

from mlops_provider.constants import (
    DAG_ID_TAG,
    DAG_RUN_ID_TAG,
    DATA_INTERVAL_END_TAG,
    DATA_INTERVAL_START_TAG,
    GATE_CHAMPION_VERSION_TAG,
    GATE_CI_HIGH_TAG,
    GATE_CI_LOW_TAG,
    GATE_CONFIDENCE_TAG,
    GATE_DECISION_TAG,
    GATE_DIFFERENCE_TAG,
    GATE_FAIL,
    GATE_INSUFFICIENT,
    GATE_KEY_TAG,
    GATE_METHOD_TAG,
    GATE_METRIC_TAG,
    GATE_N_TAG,
    GATE_PASS,
    GATE_POSITIVES_TAG,
    GATE_REASON_TAG,
    GATE_RESULT_TAG,
    GATE_RUN_ID_TAG,
    GATE_TASK_TYPE_TAG,
    GATE_THRESHOLDS_TAG,
    MLFLOW_RUN_ID_TAG,
    SOURCE_TAG,
    TAG_PREFIX,
    TASK_TYPE_TAG,
)
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.hooks.mlflow_client import (
    alias_version,
    filter_literal,
    find_run_by_key,
    is_missing,
    record_run,
    tag_value,
)
from mlops_provider.links.mlflow import MLflowModelVersionLink, MLflowRunLink
from mlops_provider.ml.io import read_parquet
from mlops_provider.ml.lineage import frame_fingerprint
from mlops_provider.ml.stats import (
    PROBABILITY_METRICS,
    Comparison,
    GateSettings,
    compare,
    count_positives,
    decide,
    evidence_shortfall,
    true_class_log_losses,
)
from mlops_provider.ml.tasks import (
    BINARY,
    DEFAULT_PRIMARY_METRIC,
    GATE_METRICS,
    MULTICLASS,
    PREDICTION,
    PROBABILITY,
    REGRESSION,
    check_task_type,
    contract_violation,
    output_frame,
    true_class_probability,
)

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# Every metric some task type judges (ml.tasks.GATE_METRICS): a name outside it is a typo.
_KNOWN_METRICS = sorted({metric for metrics in GATE_METRICS.values() for metric in metrics})
# The gate's non-inferiority margin for binary and multiclass metrics (rates, AUC, log loss); regression
# metrics are in the target's units, so regression has no default.
DEFAULT_TOLERANCE = 0.005
_THRESHOLD_KEYS = {"threshold", "min_absolute_change", "min_relative_change", "greater_is_better"}


class _MLflowOperator(BaseOperator):
    """Shared plumbing: a lazily built hook from ``mlflow_conn_id``."""

    def __init__(self, *, mlflow_conn_id: str = MLflowHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook(mlflow_conn_id=self.mlflow_conn_id)


class MLflowRegisterModelOperator(_MLflowOperator):
    """Register a model as a new version of ``name`` with lineage tags, once per MLflow run.

    :param name: registered model name.
    :param model_uri: model to register: ``models:/<model_id>``, ``runs:/<run_id>/<path>`` or a storage URI.
    :param run_id: MLflow run that produced the model; without ``model_uri``, the run's logged model.
    :param lineage_tags: extra lineage (feature service, training-set URI, data fingerprint, GX
        validation summary id, trainer image, code version); keys are prefixed with ``mlops.``.
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"name", "version", "model_uri": "models:/<name>/<version>", "run_id", "created"}``;
        ``created`` is False when a version from the same run already existed.
    """

    template_fields = ("name", "model_uri", "run_id", "lineage_tags", "mlflow_conn_id")
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())

    def __init__(
        self,
        *,
        name: str,
        model_uri: str | None = None,
        run_id: str | None = None,
        lineage_tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.model_uri = model_uri
        self.run_id = run_id
        self.lineage_tags = lineage_tags

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hook.session() as client:
            run_id, source, model_id = self._resolve_source(client)
            existing = self._existing_version(client, run_id, source)
            tags = self._lineage(context, client, run_id, source)
            if existing is not None:
                for key, value in tags.items():
                    if key not in existing.tags:
                        client.set_model_version_tag(self.name, existing.version, key, value)
                version, created = existing.version, False
                self.log.info(
                    "Version %s of %r already holds run %s; reusing it.", version, self.name, run_id
                )
            else:
                _ensure_registered_model(client, self.name)
                mv = client.create_model_version(
                    name=self.name,
                    source=source,
                    run_id=run_id,
                    tags=tags,
                    model_id=model_id,
                    await_creation_for=0,
                )
                version, created = mv.version, True
                self.log.info("Registered %r version %s from %s.", self.name, version, source)
        return {
            "name": self.name,
            "version": str(version),
            "model_uri": f"models:/{self.name}/{version}",
            "run_id": run_id,
            "created": created,
        }

    def _resolve_source(self, client: MlflowClient) -> tuple[str | None, str, str | None]:
        """Return (run id, source URI, logged model id) of what to register."""
        uri, run_id = self.model_uri, self.run_id
        if not uri:
            if not run_id:
                raise ConfigurationError(
                    f"Registering {self.name!r} needs model_uri or run_id; both are empty."
                )
            outputs = client.get_run(run_id).outputs
            model_outputs = list(outputs.model_outputs) if outputs else []
            if model_outputs:
                model_id = max(model_outputs, key=lambda o: o.step).model_id
                return run_id, f"models:/{model_id}", model_id
            uri = f"runs:/{run_id}/model"
        if uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].partition("/")
            run = client.get_run(run_id)
            found = client.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=f"source_run_id = {filter_literal(run_id)} AND name = {filter_literal(path)}",
            )
            if found:
                return run_id, f"models:/{found[0].model_id}", found[0].model_id
            return run_id, f"{run.info.artifact_uri}/{path}", None
        if uri.startswith("models:/m-"):
            model_id = uri[len("models:/") :].split("/")[0]
            return run_id or client.get_logged_model(model_id).source_run_id, uri, model_id
        return run_id, uri, None

    def _existing_version(self, client: MlflowClient, run_id: str | None, source: str) -> ModelVersion | None:
        name = f"name = {filter_literal(self.name)}"
        key = (
            f"run_id = {filter_literal(run_id)}"
            if run_id
            else f"tags.`{SOURCE_TAG}` = {filter_literal(source)}"
        )
        try:
            versions = client.search_model_versions(f"{name} AND {key}")
        except Exception as err:
            if is_missing(err):
                return None
            raise
        return min(versions, key=lambda v: int(v.version)) if versions else None

    def _lineage(
        self, context: Context, client: MlflowClient, run_id: str | None, source: str
    ) -> dict[str, str]:
        tags: dict[str, Any] = {}
        if run_id:
            run_tags = client.get_run(run_id).data.tags
            tags.update({k: v for k, v in run_tags.items() if k.startswith(TAG_PREFIX)})
        for key, value in (self.lineage_tags or {}).items():
            if value is not None:
                tags[key if key.startswith(TAG_PREFIX) else TAG_PREFIX + key] = value
        dag_run = context.get("dag_run")
        tags.update(
            {
                DAG_ID_TAG: getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", None),
                DAG_RUN_ID_TAG: getattr(dag_run, "run_id", None) or context.get("run_id"),
                DATA_INTERVAL_START_TAG: context.get("data_interval_start"),
                DATA_INTERVAL_END_TAG: context.get("data_interval_end"),
                MLFLOW_RUN_ID_TAG: run_id,
                SOURCE_TAG: source,
            }
        )
        return {k: tag_value(v) for k, v in tags.items() if v is not None}


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


class MLflowSetAliasOperator(_MLflowOperator):
    """Point ``alias`` of model ``name`` at ``version`` (a no-op when it already does).

    :param name: registered model name.
    :param alias: alias to set, e.g. ``champion``.
    :param version: model version number.
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"name", "alias", "version", "previous_version", "changed"}``.
    """

    template_fields = ("name", "alias", "version", "mlflow_conn_id")
    operator_extra_links = (MLflowModelVersionLink(),)

    def __init__(self, *, name: str, alias: str, version: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.alias = alias
        self.version = version

    def execute(self, context: Context) -> dict[str, Any]:
        version = str(self.version)
        with self.hook.session() as client:
            previous = alias_version(client, self.name, self.alias)
            if previous != version:
                client.set_registered_model_alias(self.name, self.alias, version)
        self.log.info("Alias %r of %r: %s -> %s.", self.alias, self.name, previous, version)
        return {
            "name": self.name,
            "alias": self.alias,
            "version": version,
            "previous_version": previous,
            "changed": previous != version,
        }


class MLflowDeleteAliasOperator(_MLflowOperator):
    """Remove ``alias`` from model ``name`` (a no-op when it is not set).

    :param name: registered model name.
    :param alias: alias to remove.
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"name", "alias", "previous_version", "changed"}``.
    """

    template_fields = ("name", "alias", "mlflow_conn_id")

    def __init__(self, *, name: str, alias: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.alias = alias

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hook.session() as client:
            previous = alias_version(client, self.name, self.alias)
            if previous is not None:
                client.delete_registered_model_alias(self.name, self.alias)
        self.log.info("Alias %r of %r removed (was %s).", self.alias, self.name, previous)
        return {
            "name": self.name,
            "alias": self.alias,
            "previous_version": previous,
            "changed": previous is not None,
        }


class MLflowFindModelVersionOperator(_MLflowOperator):
    """Look for a registered version trained on the same data, code and hyperparameters.

    The trainer tags its run with ``mlops.data_fingerprint``, ``mlops.code_version`` and
    ``mlops.hyperparameters_hash`` (see :func:`mlops_provider.hooks.mlflow.hyperparameters_hash`);
    registration copies them to the version.

    :param name: registered model name.
    :param data_fingerprint: fingerprint of the training set.
    :param code_version: trainer code version; default: the package version plus a hash of the
        reference trainer's sources, which the trainer computes the same way on a worker and in its
        image. Pass your image's ``MLOPS_CODE_VERSION`` when you run your own trainer.
    :param hyperparameters: the training hyperparameters, a dict or its JSON text.
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"found": bool, "name", "version", "model_uri", "run_id"}``; the last three are None
        when nothing matches.
    """

    template_fields = ("name", "data_fingerprint", "code_version", "hyperparameters", "mlflow_conn_id")
    operator_extra_links = (MLflowModelVersionLink(),)

    def __init__(
        self,
        *,
        name: str,
        data_fingerprint: str,
        code_version: str | None = None,
        hyperparameters: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.data_fingerprint = data_fingerprint
        self.code_version = code_version
        self.hyperparameters = hyperparameters

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.ml.lineage import code_version, hyperparameters_hash

        # The local backend runs this very package, so its version is the trainer's.
        self.code_version = self.code_version or code_version()
        mv = self.hook.find_version_by_fingerprint(
            self.name,
            data_fingerprint=self.data_fingerprint,
            code_version=self.code_version,
            hyperparameters_hash=hyperparameters_hash(self.hyperparameters),
        )
        if mv is None:
            self.log.info(
                "No version of %r matches data %s and code %s: training is needed.",
                self.name,
                self.data_fingerprint,
                self.code_version,
            )
            return {"found": False, "name": self.name, "version": None, "model_uri": None, "run_id": None}
        self.log.info(
            "Version %s of %r was trained on the same data, code and hyperparameters: "
            "skipping training and reusing it.",
            mv.version,
            self.name,
        )
        return {
            "found": True,
            "name": self.name,
            "version": str(mv.version),
            "model_uri": f"models:/{self.name}/{mv.version}",
            "run_id": mv.run_id,
        }


def _check_threshold_specs(thresholds: dict[str, dict[str, Any]]) -> None:
    """Refuse a metric no task type knows (a typo) and unknown keys; the task's own metrics are checked
    at execute, where the task type may come from the version's tag."""
    for metric, spec in thresholds.items():
        if metric not in _KNOWN_METRICS:
            raise ConfigurationError(
                f"Gate threshold on unknown metric {metric!r}; use one of {_KNOWN_METRICS}."
            )
        if unknown := set(spec) - _THRESHOLD_KEYS:
            raise ConfigurationError(f"Gate threshold for {metric!r} has unknown keys {sorted(unknown)}.")


def _settings(
    tolerance: float, confidence: float, require_improvement: bool, min_samples: int, min_positives: int
) -> GateSettings:
    try:
        return GateSettings(
            tolerance=float(tolerance),
            confidence=float(confidence),
            require_improvement=bool(require_improvement),
            min_samples=int(min_samples),
            min_positives=int(min_positives),
        )
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"MLflowEvaluateGateOperator: {err}") from err


def _finite(value: float | None) -> float | None:
    """The value, or None when it is missing or NaN (undefined), so that XCom and tags carry JSON."""
    return None if value is None or math.isnan(value) else value


class MLflowEvaluateGateOperator(_MLflowOperator, SkipMixin):
    """Evaluate a candidate version and the current champion on the same held-out rows and decide.

    The champion comparison is statistical (:mod:`mlops_provider.ml.stats`): the difference in
    ``primary_metric`` between candidate and champion on the same rows (positive: the candidate is
    better) gets a confidence interval, by DeLong's test for ``roc_auc`` and a paired bootstrap over rows
    otherwise. The candidate **passes** when the interval's lower bound is above ``-tolerance``
    (non-inferior), or above 0 with ``require_improvement``; else it **fails**. Fewer than
    ``min_samples`` labelled rows (or, binary: ``min_positives`` rows with label 1; multiclass:
    ``min_positives`` rows of the rarest class) is ``insufficient_evidence``, never a promotion.
    ``thresholds`` adds absolute bounds on the candidate (e.g. a minimum ``roc_auc``); without a champion
    only they apply, after the same minimum evidence.

    Task types (:mod:`mlops_provider.ml.tasks`), their metrics and defaults:

    - ``binary``: roc_auc, log_loss, accuracy, f1, precision, recall; primary metric ``roc_auc``,
      tolerance 0.005.
    - ``multiclass``: accuracy, macro_f1, log_loss (of the probability given to the true class); primary
      metric ``log_loss``, tolerance 0.005.
    - ``regression``: rmse, mae, r2; primary metric ``rmse``; no default tolerance: it is in the
      target's units, so set it (and the thresholds) yourself.

    On pass the ``challenger`` alias moves to the candidate. On fail or insufficient evidence aliases
    stay, the version is tagged with the decision, the reason and the evidence (``mlops.gate.n``,
    ``ci_low``, ``ci_high``, ...), and (with ``short_circuit_on_fail``) all downstream tasks are skipped
    while this task succeeds with the decision as its XCom. The version also gets ``mlops.task_type``
    when it has none.

    Models must follow the output contract of their task (:mod:`mlops_provider.ml.tasks`):
    ``pyfunc.predict(features)`` returns a DataFrame with ``probability`` (P(label=1)) and ``prediction``
    (0/1) for binary; ``prediction`` (the class), ``probability`` and one ``probability_<class>`` column
    per class for multiclass; ``prediction`` (or a plain 1-D array of predictions) for regression.

    :param name: registered model name.
    :param version: candidate version.
    :param eval_data_uri: held-out parquet file or directory (local or ``s3://``) with the label column.
    :param label: the label column of the held-out data (0/1, the class, or the number); required, the
        provider assumes no dataset.
    :param task_type: ``binary``, ``multiclass`` or ``regression``; default: the candidate version's
        ``mlops.task_type`` tag (the reference trainer sets it), else ``binary`` (logged).
    :param thresholds: absolute bounds on the candidate: metric -> ``{"threshold", "greater_is_better"}``,
        on the task's metrics (above). ``min_absolute_change`` and ``min_relative_change`` are accepted
        for compatibility and ignored (logged): the champion comparison uses the confidence interval.
    :param primary_metric: the metric the champion comparison is decided on; default per task (above).
    :param tolerance: non-inferiority margin in ``primary_metric``'s units; default 0.005 for binary and
        multiclass, required for regression.
    :param confidence: two-sided confidence of the interval (the one-sided error rate is half the rest).
    :param require_improvement: pass only when the candidate is shown better (lower bound above 0).
    :param min_samples: labelled held-out rows needed to decide.
    :param min_positives: held-out rows with label 1 (binary) or of the rarest class (multiclass) needed
        to decide; regression ignores it.
    :param champion_alias: alias of the model in production.
    :param challenger_alias: alias set on the candidate when it passes.
    :param experiment: MLflow experiment that receives one gate run per evaluation.
    :param feature_columns: columns passed to the models; default every column except the label, less
        the columns a model's signature does not take (entity keys, timestamps) when it has a signature.
    :param short_circuit_on_fail: skip downstream tasks when the gate does not pass.
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"decision": "pass"|"fail"|"insufficient_evidence", "reasons", "name", "version",
        "task_type", "candidate": {metrics}, "champion": {"version", metrics...} | None, "n", "positives"
        (label-1 rows, rows of the rarest class, or n for regression), "comparison": {"metric",
        "candidate", "champion", "difference", "ci_low", "ci_high", "confidence", "p_value", "method",
        ...} | None, "settings": {"task_type", "primary_metric", "tolerance", ...}, "gate_run_id",
        "eval_fingerprint", "reused"}``.
    """

    template_fields = (
        "name",
        "version",
        "eval_data_uri",
        "label_column",
        "model_task_type",
        "primary_metric",
        "champion_alias",
        "challenger_alias",
        "experiment",
        "feature_columns",
        "mlflow_conn_id",
    )
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())
    inherits_from_skipmixin = True
    # Resolved by execute() from task_type (or the version's tag), primary_metric and tolerance.
    _task: str
    _metric: str
    settings: GateSettings

    def __init__(
        self,
        *,
        name: str,
        version: str | int,
        eval_data_uri: str,
        label: str,
        task_type: str | None = None,
        thresholds: dict[str, dict[str, Any]] | None = None,
        primary_metric: str | None = None,
        tolerance: float | None = None,
        confidence: float = 0.95,
        require_improvement: bool = False,
        min_samples: int = 500,
        min_positives: int = 50,
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
        experiment: str = "mlops-model-gate",
        feature_columns: list[str] | None = None,
        short_circuit_on_fail: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        thresholds = thresholds or {}
        _check_threshold_specs(thresholds)
        # Refuse nonsense now; the tolerance's default depends on the task type, known at execute.
        _settings(tolerance or 0.0, confidence, require_improvement, min_samples, min_positives)
        self.name = name
        self.version = version
        self.eval_data_uri = eval_data_uri
        # BaseOperator owns ``task_type`` (the operator's class name), so the model's lives here.
        self.model_task_type = task_type
        self.thresholds = thresholds
        # BaseOperator owns ``label`` (the task's display label), so the column lives in ``label_column``.
        self.label_column = label
        self.primary_metric = primary_metric
        self.tolerance = tolerance
        self.confidence = confidence
        self.require_improvement = require_improvement
        self.min_samples = min_samples
        self.min_positives = min_positives
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias
        self.experiment = experiment
        self.feature_columns = feature_columns
        self.short_circuit_on_fail = short_circuit_on_fail

    def execute(self, context: Context) -> dict[str, Any]:
        if self.primary_metric and self.primary_metric not in _KNOWN_METRICS:
            raise ConfigurationError(
                f"Gate primary_metric {self.primary_metric!r} is unknown; use one of {_KNOWN_METRICS}."
            )
        version = str(self.version)
        if self.model_task_type:
            self._task_type(version, {})  # an unknown task type fails before any I/O
        with self.hook.session() as client:
            # An unknown version fails here, named by MLflow.
            previous_tags = client.get_model_version(self.name, version).tags or {}
            self._configure(version, previous_tags)
            data = self._load_eval_data()
            fingerprint = frame_fingerprint(data)
            champion = alias_version(client, self.name, self.champion_alias)
            if champion == version:
                self.log.info(
                    "Version %s of %r is already the %s; nothing to gate.",
                    version,
                    self.name,
                    self.champion_alias,
                )
                return self._result(
                    GATE_PASS, [f"version {version} is already the {self.champion_alias}"], {}, None
                )
            key = self._gate_key(version, fingerprint, champion)
            result = self._reuse(client, key)
            if result is None:
                result = self._evaluate(version, champion, data, fingerprint, key)
                result["gate_run_id"] = self._record(version, key, result, client)
            # Tagged on every run, reused or not: a gate killed after its run was recorded still tags.
            self._tag_version(client, version, key, result, previous_tags)
            if result["decision"] == GATE_PASS:
                client.set_registered_model_alias(self.name, self.challenger_alias, version)
        for reason in result["reasons"]:
            self.log.info("Gate %s", reason)
        self.log.info("Gate for %r version %s: %s.", self.name, version, result["decision"].upper())
        if result["decision"] != GATE_PASS and self.short_circuit_on_fail:
            self._short_circuit(context, result)
        return result

    def _configure(self, version: str, tags: dict[str, str]) -> None:
        """Resolve the task type, the primary metric and the tolerance; check the thresholds' metrics."""
        task = self._task_type(version, tags)
        metrics = GATE_METRICS[task]
        metric = self.primary_metric or DEFAULT_PRIMARY_METRIC[task]
        if metric not in metrics:
            raise ConfigurationError(
                f"Gate primary_metric {metric!r} does not apply to a {task} model; use one of "
                f"{sorted(metrics)}."
            )
        if wrong := [m for m in self.thresholds if m not in metrics]:
            raise ConfigurationError(
                f"Gate thresholds on {wrong} do not apply to a {task} model; use one of {sorted(metrics)}."
            )
        tolerance = self.tolerance
        if tolerance is None:
            if task == REGRESSION:
                raise ConfigurationError(
                    f"The gate of regression model {self.name!r} needs a tolerance: set tolerance in the "
                    f"target's units (e.g. 0.5 for an rmse in kWh), how much worse than the champion in "
                    f"{metric} the candidate may be and still pass; there is no default for regression."
                )
            tolerance = DEFAULT_TOLERANCE
        self._task, self._metric = task, metric
        self.settings = _settings(
            tolerance, self.confidence, self.require_improvement, self.min_samples, self.min_positives
        )

    def _task_type(self, version: str, tags: dict[str, str]) -> str:
        """``task_type`` when set, else the version's tag, else binary."""
        tagged = tags.get(TASK_TYPE_TAG)
        value = self.model_task_type or tagged
        if not value:
            self.log.info(
                "Version %s of %r has no %s tag and task_type is not set: judging it as a binary model.",
                version,
                self.name,
                TASK_TYPE_TAG,
            )
            return BINARY
        try:
            task = check_task_type(value)
        except ValueError as err:
            source = "task_type" if self.model_task_type else f"the version's tag {TASK_TYPE_TAG}"
            raise ConfigurationError(
                f"Gate of {self.name!r} version {version}: {err} (from {source})"
            ) from None
        if self.model_task_type and tagged and tagged != task:
            self.log.warning(
                "task_type=%r overrides the %s tag %r of %r version %s.",
                task,
                TASK_TYPE_TAG,
                tagged,
                self.name,
                version,
            )
        return task

    def _load_eval_data(self) -> pd.DataFrame:
        data = read_parquet(
            self.eval_data_uri,
            f"Held-out data for the gate of {self.name!r}",
            "Check that the latest labelled partition was published.",
        )
        missing = [c for c in [self.label_column, *(self.feature_columns or [])] if c not in data.columns]
        if missing:
            raise ConfigurationError(f"Held-out data {self.eval_data_uri!r} lacks column(s) {missing}.")
        if data.empty:
            raise DataNotFound(f"Held-out data {self.eval_data_uri!r} has no rows; the gate cannot evaluate.")
        return data

    def _settings_record(self) -> dict[str, Any]:
        return {"task_type": self._task, "primary_metric": self._metric, **asdict(self.settings)}

    def _gate_key(self, version: str, fingerprint: str, champion: str | None) -> str:
        spec = [
            self.name,
            version,
            fingerprint,
            champion,
            self.label_column,
            self.feature_columns,
            self.thresholds,
            self._settings_record(),
        ]
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _reuse(self, client: MlflowClient, key: str) -> dict[str, Any] | None:
        """Return the recorded decision when the same version, data, champion and settings were gated."""
        run = find_run_by_key(client, self.experiment, GATE_KEY_TAG, key)
        if run is None or not run.data.tags.get(GATE_RESULT_TAG):
            return None
        self.log.info("Reusing gate run %s: same data, champion and settings.", run.info.run_id)
        recorded = json.loads(run.data.tags[GATE_RESULT_TAG])
        return {**recorded, "gate_run_id": run.info.run_id, "reused": True}

    def _evaluate(
        self, version: str, champion: str | None, data: pd.DataFrame, fingerprint: str, key: str
    ) -> dict[str, Any]:
        labels = self._labels(data)
        candidate_output = self._predict(version, data, labels)
        candidate_metrics = _metrics(self._task, labels, candidate_output)
        champion_block, comparison = None, None
        if champion is not None:
            champion_output = self._predict(champion, data, labels)
            champion_block = {"version": champion, **_metrics(self._task, labels, champion_output)}
            comparison = compare(
                self._metric,
                labels,
                _compared(self._metric, candidate_output),
                _compared(self._metric, champion_output),
                task_type=self._task,
                confidence=self.settings.confidence,
                seed=int(key, 16),  # the same gate draws the same bootstrap resamples
            )
        self._warn_ignored_thresholds()
        n, positives = len(labels), count_positives(labels, self._task)
        decision, reasons = self._decide(n, positives, candidate_metrics, comparison)
        result = self._result(decision, reasons, candidate_metrics, champion_block)
        result |= {
            "n": n,
            "positives": positives,
            "comparison": _comparison_record(comparison),
            "eval_fingerprint": fingerprint,
        }
        return result

    def _labels(self, data: pd.DataFrame) -> Any:
        """The label column as the task reads it: 0/1, the classes as they are, or numbers."""
        column = data[self.label_column]
        if self._task == BINARY:
            return column.astype(int).to_numpy()
        return column.astype(float).to_numpy() if self._task == REGRESSION else column.to_numpy()

    def _decide(
        self, n: int, positives: int, candidate: dict[str, float], comparison: Comparison | None
    ) -> tuple[str, list[str]]:
        """Minimum evidence first, then the absolute thresholds, then the champion comparison."""
        shortfall = evidence_shortfall(n, positives, self.settings, task_type=self._task)
        if shortfall is not None:
            return GATE_INSUFFICIENT, [shortfall] + ([comparison.summary()] if comparison else [])
        failures = self._absolute_failures(candidate)
        if comparison is None:  # the first model has nothing to beat: absolute thresholds only
            if failures:
                return GATE_FAIL, failures
            return GATE_PASS, [f"passed {len(self.thresholds)} absolute threshold(s) (first model)"]
        decision, reason = decide(comparison, self.settings)
        if decision == GATE_PASS and failures:
            decision = GATE_FAIL
        return decision, [reason, *failures]

    def _absolute_failures(self, candidate: dict[str, float]) -> list[str]:
        failures = []
        for metric, spec in self.thresholds.items():
            threshold = spec.get("threshold")
            if threshold is None:
                continue
            greater_is_better = spec.get("greater_is_better")
            if greater_is_better is None:
                greater_is_better = GATE_METRICS[self._task][metric]
            value = candidate.get(metric)
            if value is None:
                why = "constant labels" if self._task == REGRESSION else "a single class"
                failures.append(f"{metric} is undefined on the held-out rows ({why})")
            elif value < threshold if greater_is_better else value > threshold:
                bound = "below the minimum" if greater_is_better else "above the maximum"
                failures.append(f"{metric} {value:.4f} is {bound} {threshold}")
        return failures

    def _warn_ignored_thresholds(self) -> None:
        ignored = [
            f"{metric}.{k}"
            for metric, spec in self.thresholds.items()
            for k in ("min_absolute_change", "min_relative_change")
            if spec.get(k) is not None
        ]
        if ignored:
            self.log.warning(
                "Gate thresholds %s are ignored: the champion comparison uses the confidence interval "
                "of %s (tolerance=%s, require_improvement=%s). Remove them from thresholds.",
                ", ".join(ignored),
                self._metric,
                self.settings.tolerance,
                self.settings.require_improvement,
            )

    def _predict(self, version: str, data: pd.DataFrame, labels: Any) -> tuple[Any, ...]:
        """What the metrics read of one version's output on the held-out rows: ``(P(label=1), 0/1
        prediction)`` (binary), ``(P(true class), predicted class)`` (multiclass) or ``(prediction,)``
        (regression)."""
        import numpy as np

        model = self.hook.load_model(self.name, version)
        features = self._features(model, data, version)
        output = output_frame(self._task, model.predict(features), features.index)
        violation = contract_violation(self._task, getattr(output, "columns", []))
        if violation is None and len(output) != len(features):
            violation = f"predict() returned {len(output)} rows for {len(features)}"
        if violation is not None:
            raise ConfigurationError(
                f"Model {self.name!r} version {version} broke the output contract: {violation} "
                "(mlops_provider.ml.tasks)."
            )
        if self._task == REGRESSION:
            return (output[PREDICTION].to_numpy(dtype=float),)
        if self._task == MULTICLASS:
            return true_class_probability(output, labels), output[PREDICTION].to_numpy()
        proba = np.clip(output[PROBABILITY].to_numpy(dtype=float), 1e-7, 1 - 1e-7)
        return proba, output[PREDICTION].to_numpy().astype(int)

    def _features(self, model: Any, data: pd.DataFrame, version: str) -> pd.DataFrame:
        """``feature_columns``; else every column but the label, less those the model's signature does
        not take, so entity keys and timestamps never reach a model that declares its inputs."""
        if self.feature_columns:
            return data[list(self.feature_columns)]
        features = data.drop(columns=[self.label_column])
        schema = model.metadata.get_input_schema() if getattr(model, "metadata", None) else None
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return features
        missing = [c for c in schema.required_input_names() if c not in features.columns]
        if missing:
            raise ConfigurationError(
                f"Held-out data {self.eval_data_uri!r} lacks column(s) {missing} that model {self.name!r} "
                f"version {version} takes (its signature)."
            )
        inputs = [c for c in schema.input_names() if c in features.columns]
        if dropped := [c for c in features.columns if c not in inputs]:
            self.log.info(
                "Not passing column(s) %s to %r version %s: its signature does not take them.",
                dropped,
                self.name,
                version,
            )
        return features[inputs]

    def _result(
        self, decision: str, reasons: list[str], candidate: dict[str, float], champion: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "decision": decision,
            "reasons": reasons,
            "name": self.name,
            "version": str(self.version),
            "task_type": self._task,
            "candidate": candidate,
            "champion": champion,
            "n": None,
            "positives": None,
            "comparison": None,
            "settings": self._settings_record(),
            "gate_run_id": None,
            "eval_fingerprint": None,
            "reused": False,
        }

    def _record(self, version: str, key: str, result: dict[str, Any], client: MlflowClient) -> str:
        """Log the gate as a run in ``experiment``; return its id."""
        champion = result["champion"] or {}
        comparison = result["comparison"] or {}
        metrics = {f"candidate_{k}": v for k, v in result["candidate"].items()}
        metrics |= {f"champion_{k}": v for k, v in champion.items() if k != "version"}
        metrics |= {"n": result["n"], "positives": result["positives"]}
        metrics |= {
            k: comparison[k]
            for k in ("difference", "ci_low", "ci_high", "p_value")
            if comparison.get(k) is not None
        }
        return record_run(
            client,
            self.experiment,
            f"gate-{self.name}-v{version}",
            key_tag=GATE_KEY_TAG,
            key=key,
            metrics=metrics,
            params={
                "model_name": self.name,
                "candidate_version": version,
                "champion_version": str(champion.get("version")),
                "eval_data_uri": self.eval_data_uri,
                "method": comparison.get("method"),
                **result["settings"],
            },
            tags={
                GATE_DECISION_TAG: result["decision"],
                GATE_REASON_TAG: "; ".join(result["reasons"]),
                GATE_THRESHOLDS_TAG: self.thresholds,
                GATE_RESULT_TAG: json.dumps(result, sort_keys=True),
            },
        )

    def _tag_version(
        self,
        client: MlflowClient,
        version: str,
        key: str,
        result: dict[str, Any],
        previous_tags: dict[str, str],
    ) -> None:
        """Put the decision and its evidence on the candidate version, where the canary and the ML models
        view read them; evidence tags left by an earlier gate of the version that this one lacks go."""
        champion = result["champion"] or {}
        comparison = result["comparison"] or {}
        tags = {
            GATE_DECISION_TAG: result["decision"],
            GATE_REASON_TAG: "; ".join(result["reasons"]),
            GATE_RUN_ID_TAG: result["gate_run_id"],
            GATE_KEY_TAG: key,
            GATE_CHAMPION_VERSION_TAG: str(champion.get("version")),
            GATE_METRIC_TAG: result["settings"]["primary_metric"],
            GATE_N_TAG: result["n"],
            GATE_POSITIVES_TAG: result["positives"],
            GATE_CONFIDENCE_TAG: result["settings"]["confidence"],
            GATE_DIFFERENCE_TAG: comparison.get("difference"),
            GATE_CI_LOW_TAG: comparison.get("ci_low"),
            GATE_CI_HIGH_TAG: comparison.get("ci_high"),
            GATE_METHOD_TAG: comparison.get("method"),
            GATE_TASK_TYPE_TAG: self._task,
        }
        for tag, value in tags.items():
            if value is not None:
                client.set_model_version_tag(self.name, version, tag, tag_value(value))
            elif tag in previous_tags:
                client.delete_model_version_tag(self.name, version, tag)
        if TASK_TYPE_TAG not in previous_tags:  # what the trainer said is never overwritten
            client.set_model_version_tag(self.name, version, TASK_TYPE_TAG, self._task)

    def _short_circuit(self, context: Context, result: dict[str, Any]) -> None:
        """Keep the decision in XCom, then skip every downstream task (this task stays successful)."""
        to_skip = list(context["task"].get_flat_relatives(upstream=False))
        if not to_skip:
            return
        context["ti"].xcom_push(key="return_value", value=result)
        self.log.info(
            "Gate decision %s: skipping %d downstream task(s).", result["decision"].upper(), len(to_skip)
        )
        self.skip(ti=context["ti"], tasks=to_skip)


def _compared(metric: str, output: tuple[Any, ...]) -> Any:
    """What ``metric`` reads of a :meth:`MLflowEvaluateGateOperator._predict` output: its first item, the
    probability, for roc_auc and log_loss; else the last, the prediction."""
    return output[0] if metric in PROBABILITY_METRICS else output[-1]


def _metrics(task_type: str, labels: Any, output: tuple[Any, ...]) -> dict[str, float]:
    """Every gate metric of the task of one model on the held-out rows (``roc_auc`` only with both
    classes, ``r2`` only when the labels vary)."""
    import numpy as np
    from sklearn import metrics as skm

    if task_type == REGRESSION:
        (predicted,) = output
        result = {
            "rmse": skm.root_mean_squared_error(labels, predicted),
            "mae": skm.mean_absolute_error(labels, predicted),
        }
        if np.ptp(labels) > 0:  # r2 is undefined on constant labels
            result["r2"] = skm.r2_score(labels, predicted)
    elif task_type == MULTICLASS:
        true_class, predicted = output
        texts, predicted_texts = ([str(v) for v in values] for values in (labels, predicted))
        result = {
            "accuracy": skm.accuracy_score(texts, predicted_texts),
            "macro_f1": skm.f1_score(texts, predicted_texts, average="macro", zero_division=0),
            "log_loss": true_class_log_losses(true_class).mean(),
        }
    else:
        proba, predicted = output
        result = {
            "accuracy": skm.accuracy_score(labels, predicted),
            "f1": skm.f1_score(labels, predicted, zero_division=0),
            "precision": skm.precision_score(labels, predicted, zero_division=0),
            "recall": skm.recall_score(labels, predicted, zero_division=0),
            "log_loss": skm.log_loss(labels, proba, labels=[0, 1]),
        }
        if len(np.unique(labels)) == 2:  # AUC is undefined on a single class
            result["roc_auc"] = skm.roc_auc_score(labels, proba)
    return {k: round(float(v), 6) for k, v in result.items()}


def _comparison_record(comparison: Comparison | None) -> dict[str, Any] | None:
    """The comparison as JSON-able data: undefined values (NaN) become None."""
    if comparison is None:
        return None
    record = comparison.as_dict()
    for k in ("candidate", "champion", "difference", "ci_low", "ci_high", "p_value"):
        value = _finite(record[k])
        record[k] = None if value is None else round(value, 6)
    return record
