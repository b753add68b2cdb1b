"""Register model versions with lineage, gate them against the champion, and move aliases (MLflow 3).

Every operator is idempotent: registering the same MLflow run twice returns the first version, setting
an alias that is already set is a no-op, and re-running the gate for the same version, data and
champion reuses the recorded decision.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, SkipMixin

from mlops_provider.constants import (
    DAG_ID_TAG,
    DAG_RUN_ID_TAG,
    DATA_INTERVAL_END_TAG,
    DATA_INTERVAL_START_TAG,
    GATE_CHAMPION_VERSION_TAG,
    GATE_DECISION_TAG,
    GATE_KEY_TAG,
    GATE_REASON_TAG,
    GATE_RESULT_TAG,
    GATE_RUN_ID_TAG,
    GATE_THRESHOLDS_TAG,
    MLFLOW_RUN_ID_TAG,
    SOURCE_TAG,
    TAG_PREFIX,
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

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# greater_is_better of every metric the gate computes; thresholds may name only these.
GATE_METRICS = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
}
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


def _check_thresholds(thresholds: dict[str, dict[str, Any]]) -> None:
    if not thresholds:
        raise ConfigurationError("MLflowEvaluateGateOperator needs at least one metric threshold.")
    for metric, spec in thresholds.items():
        if metric not in GATE_METRICS:
            raise ConfigurationError(
                f"Gate threshold on unknown metric {metric!r}; use one of {sorted(GATE_METRICS)}."
            )
        if unknown := set(spec) - _THRESHOLD_KEYS:
            raise ConfigurationError(f"Gate threshold for {metric!r} has unknown keys {sorted(unknown)}.")


class MLflowEvaluateGateOperator(_MLflowOperator, SkipMixin):
    """Evaluate a candidate version and the current champion on the same held-out data and decide.

    The decision goes through ``mlflow.validate_evaluation_results`` with one ``MetricThreshold``
    per metric. Without a champion only the absolute ``threshold`` values apply. On pass the
    ``challenger`` alias moves to the candidate; on fail aliases stay, the version is tagged with
    ``mlops.gate.decision=fail`` and ``mlops.gate.reason``, and (with ``short_circuit_on_fail``) all
    downstream tasks are skipped while this task succeeds with the decision as its XCom.

    Models must follow the contract ``pyfunc.predict(features)`` -> DataFrame with ``probability``
    (P(label=1)) and ``prediction`` (0/1).

    :param name: registered model name.
    :param version: candidate version.
    :param eval_data_uri: held-out parquet file or directory (local or ``s3://``) with the label column.
    :param label: label column (0/1).
    :param thresholds: metric -> ``{"threshold", "min_absolute_change", "min_relative_change",
        "greater_is_better"}``; metrics: roc_auc, accuracy, f1, precision, recall, log_loss.
    :param champion_alias: alias of the model in production.
    :param challenger_alias: alias set on the candidate when it passes.
    :param experiment: MLflow experiment that receives one gate run per evaluation.
    :param feature_columns: columns passed to the models; default every column except the label.
    :param short_circuit_on_fail: skip downstream tasks when the gate fails.
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"decision": "pass"|"fail", "reasons", "name", "version", "candidate": {metrics},
        "champion": {"version", metrics...} | None, "gate_run_id", "eval_fingerprint", "reused"}``.
    """

    template_fields = (
        "name",
        "version",
        "eval_data_uri",
        "label_column",
        "champion_alias",
        "challenger_alias",
        "experiment",
        "feature_columns",
        "mlflow_conn_id",
    )
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())
    inherits_from_skipmixin = True

    def __init__(
        self,
        *,
        name: str,
        version: str | int,
        eval_data_uri: str,
        thresholds: dict[str, dict[str, Any]],
        label: str = "churned",
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
        experiment: str = "mlops-model-gate",
        feature_columns: list[str] | None = None,
        short_circuit_on_fail: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_thresholds(thresholds)
        self.name = name
        self.version = version
        self.eval_data_uri = eval_data_uri
        self.thresholds = thresholds
        # BaseOperator owns ``label`` (the task's display label), so the column lives in ``label_column``.
        self.label_column = label
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias
        self.experiment = experiment
        self.feature_columns = feature_columns
        self.short_circuit_on_fail = short_circuit_on_fail

    def execute(self, context: Context) -> dict[str, Any]:
        version = str(self.version)
        data = self._load_eval_data()
        fingerprint = frame_fingerprint(data)
        with self.hook.session() as client:
            client.get_model_version(self.name, version)  # an unknown version fails here, named by MLflow
            champion = alias_version(client, self.name, self.champion_alias)
            if champion == version:
                self.log.info(
                    "Version %s of %r is already the %s; nothing to gate.",
                    version,
                    self.name,
                    self.champion_alias,
                )
                return self._result(
                    "pass", [f"version {version} is already the {self.champion_alias}"], {}, None
                )
            key = self._gate_key(version, fingerprint, champion)
            result = self._reuse(client, key)
            if result is None:
                result = self._evaluate(client, version, champion, data, fingerprint)
                result["gate_run_id"] = self._record(version, key, result, client)
            # Tagged on every run, reused or not: a gate killed after its run was recorded still tags.
            self._tag_version(client, version, key, result)
            if result["decision"] == "pass":
                client.set_registered_model_alias(self.name, self.challenger_alias, version)
        self.log.info(
            "Gate for %r version %s: %s. %s",
            self.name,
            version,
            result["decision"].upper(),
            " ".join(result["reasons"]),
        )
        if result["decision"] == "fail" and self.short_circuit_on_fail:
            self._short_circuit(context, result)
        return result

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

    def _gate_key(self, version: str, fingerprint: str, champion: str | None) -> str:
        spec = [
            self.name,
            version,
            fingerprint,
            champion,
            self.label_column,
            self.feature_columns,
            self.thresholds,
        ]
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _reuse(self, client: MlflowClient, key: str) -> dict[str, Any] | None:
        """Return the recorded decision when the same version, data, champion and thresholds were gated."""
        run = find_run_by_key(client, self.experiment, GATE_KEY_TAG, key)
        if run is None or not run.data.tags.get(GATE_RESULT_TAG):
            return None
        self.log.info("Reusing gate run %s: same data, champion and thresholds.", run.info.run_id)
        recorded = json.loads(run.data.tags[GATE_RESULT_TAG])
        return {**recorded, "gate_run_id": run.info.run_id, "reused": True}

    def _evaluate(
        self, client: MlflowClient, version: str, champion: str | None, data: pd.DataFrame, fingerprint: str
    ) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException
        from mlflow.models import MetricThreshold
        from mlflow.models.evaluation import EvaluationResult
        from mlflow.models.evaluation.validation import validate_evaluation_results

        features = (
            data[self.feature_columns] if self.feature_columns else data.drop(columns=[self.label_column])
        )
        labels = data[self.label_column].astype(int).to_numpy()
        candidate_metrics = self._model_metrics(version, features, labels)
        champion_metrics = self._model_metrics(champion, features, labels) if champion else None
        thresholds = {}
        for metric, spec in self.thresholds.items():
            kwargs = {k: v for k, v in spec.items() if v is not None}
            kwargs.setdefault("greater_is_better", GATE_METRICS[metric])
            if champion is None:  # the first model has nothing to beat: absolute thresholds only
                kwargs.pop("min_absolute_change", None)
                kwargs.pop("min_relative_change", None)
                if "threshold" not in kwargs:
                    continue
            thresholds[metric] = MetricThreshold(**kwargs)
        baseline = EvaluationResult(metrics=champion_metrics, artifacts={}) if champion_metrics else None
        try:
            validate_evaluation_results(
                thresholds, EvaluationResult(metrics=candidate_metrics, artifacts={}), baseline
            )
            decision, reasons = (
                "pass",
                [f"passed {len(thresholds)} threshold(s)" + ("" if champion else " (first model)")],
            )
        except MlflowException as err:
            if type(err).__name__ != "ModelValidationFailedException":
                raise
            decision, reasons = "fail", [line for line in str(err.message).splitlines() if line.strip()]
        champion_block = {"version": champion, **champion_metrics} if champion_metrics else None
        result = self._result(decision, reasons, candidate_metrics, champion_block)
        result["eval_fingerprint"] = fingerprint
        return result

    def _model_metrics(self, version: str, features: pd.DataFrame, labels: Any) -> dict[str, float]:
        import numpy as np
        from sklearn import metrics as skm

        output = self.hook.load_model(self.name, version).predict(features)
        if not {"probability", "prediction"} <= set(getattr(output, "columns", [])):
            raise ConfigurationError(
                f"Model {self.name!r} version {version} broke the contract: predict() must return a DataFrame "
                "with columns 'probability' and 'prediction'."
            )
        proba = np.clip(output["probability"].to_numpy(dtype=float), 1e-7, 1 - 1e-7)
        predicted = output["prediction"].to_numpy().astype(int)
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

    def _result(
        self, decision: str, reasons: list[str], candidate: dict[str, float], champion: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "decision": decision,
            "reasons": reasons,
            "name": self.name,
            "version": str(self.version),
            "candidate": candidate,
            "champion": champion,
            "gate_run_id": None,
            "eval_fingerprint": None,
            "reused": False,
        }

    def _record(self, version: str, key: str, result: dict[str, Any], client: MlflowClient) -> str:
        """Log the gate as a run in ``experiment``; return its id."""
        champion = result["champion"] or {}
        metrics = {f"candidate_{k}": v for k, v in result["candidate"].items()}
        metrics |= {f"champion_{k}": v for k, v in champion.items() if k != "version"}
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
            },
            tags={
                GATE_DECISION_TAG: result["decision"],
                GATE_REASON_TAG: "; ".join(result["reasons"]),
                GATE_THRESHOLDS_TAG: self.thresholds,
                GATE_RESULT_TAG: json.dumps(result, sort_keys=True),
            },
        )

    def _tag_version(self, client: MlflowClient, version: str, key: str, result: dict[str, Any]) -> None:
        """Put the decision on the candidate version, where the canary and the ML models view read it."""
        champion = result["champion"] or {}
        tags = {
            GATE_DECISION_TAG: result["decision"],
            GATE_REASON_TAG: "; ".join(result["reasons"]),
            GATE_RUN_ID_TAG: result["gate_run_id"],
            GATE_KEY_TAG: key,
            GATE_CHAMPION_VERSION_TAG: str(champion.get("version")),
        }
        for tag, value in tags.items():
            client.set_model_version_tag(self.name, version, tag, tag_value(value))

    def _short_circuit(self, context: Context, result: dict[str, Any]) -> None:
        """Keep the decision in XCom, then skip every downstream task (this task stays successful)."""
        to_skip = list(context["task"].get_flat_relatives(upstream=False))
        if not to_skip:
            return
        context["ti"].xcom_push(key="return_value", value=result)
        self.log.info("Gate failed: skipping %d downstream task(s).", len(to_skip))
        self.skip(ti=context["ti"], tasks=to_skip)
