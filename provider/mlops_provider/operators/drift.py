"""Detect feature drift of the latest partition against the reference sample of a registered model.

The trainer logs ``reference/sample.parquet`` (a seeded sample of the training split) in the model's
run; the operator compares the latest feature partition with it (see :mod:`mlops_provider.ml.drift`)
and records one MLflow run per (model version, data, thresholds), so re-runs reuse it.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from mlops_provider.constants import (
    DATASET_DRIFT_TAG,
    DRIFT_EXPERIMENT,
    DRIFT_KEY_TAG,
    DRIFT_MODEL_TAG,
    DRIFT_MODEL_VERSION_TAG,
    DRIFTED_FEATURES_TAG,
)
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.hooks.mlflow_client import find_run_by_key, is_missing, record_run
from mlops_provider.links.mlflow import MLflowModelVersionLink, MLflowRunLink
from mlops_provider.ml.drift import check_thresholds
from mlops_provider.ml.io import read_parquet
from mlops_provider.ml.lineage import frame_fingerprint

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context
    from mlflow import MlflowClient

REFERENCE_DIR = "reference"
REFERENCE_SAMPLE = f"{REFERENCE_DIR}/sample.parquet"
REPORT_JSON, REPORT_HTML = "drift_report.json", "drift_report.html"
# Bumped whenever detection gains a check: 2 added null-share and new-category checks.
REPORT_VERSION = 2


class DriftDetectOperator(BaseOperator):
    """Compare the latest feature partition with the reference sample of the model behind ``alias``.

    Numeric features are tested with PSI and Kolmogorov-Smirnov, categorical ones with the
    Jensen-Shannon distance and chi-squared; a feature drifts when both its effect size and its test
    pass their thresholds, the dataset when the share of drifted features reaches ``drift_share``
    (see :func:`mlops_provider.ml.drift.detect`). Each detection is an MLflow run in ``experiment`` with
    the metrics, ``drift_report.json``, ``drift_report.html`` and the tag
    ``mlops.drift.dataset_drift``; a re-run for the same model version, data and thresholds reuses it.

    :param name: registered model name.
    :param alias: alias of the model whose training data is the reference.
    :param current_uri: parquet file or directory (local, ``file://`` or ``s3://``) of the latest
        feature partition.
    :param feature_columns: features to test; default every column of the reference sample.
    :param categorical: features to test as categories even when numeric (e.g. integer codes);
        strings are always categorical.
    :param thresholds: per-feature overrides, ``{"feature": {"psi": 0.3, "p_value": 0.01, "js": 0.2}}``;
        ``"*"`` overrides every feature. (templated: a JSON object)
    :param drift_share: share of drifted features at which the dataset drifts. (templated)
    :param experiment: MLflow experiment that receives one run per detection.
    :param on_missing_reference: ``fail`` (default) or ``skip`` the task when the model has no such
        alias yet (nothing to compare with, e.g. before the first model is promoted).
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"dataset_drift", "drift_share", "drifted_features", "model_version", "run_id",
        "reused", "features": {name: {"psi", "p_value", "drifted"}}, "name", "version"}``; ``run_id``
        is the drift run, ``p_value`` the KS (numeric) or chi-squared (categorical) p-value, and
        ``name``/``version`` (the model) feed the task's MLflow links.
    """

    template_fields = (
        "name",
        "alias",
        "current_uri",
        "feature_columns",
        "categorical",
        "thresholds",
        "drift_share",
        "experiment",
        "mlflow_conn_id",
    )
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())

    def __init__(
        self,
        *,
        name: str,
        current_uri: str,
        alias: str = "champion",
        feature_columns: list[str] | None = None,
        categorical: list[str] | None = None,
        thresholds: dict[str, dict[str, float]] | None = None,
        drift_share: float = 0.3,
        experiment: str = DRIFT_EXPERIMENT,
        on_missing_reference: str = "fail",
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_missing_reference not in ("fail", "skip"):
            raise ConfigurationError(
                f"on_missing_reference must be 'fail' or 'skip', got {on_missing_reference!r}."
            )
        # Keys and values are checked now, so a typo fails the DAG import, not a run (templated ones
        # after rendering); feature names can only be checked once the reference sample is known.
        if not _is_template(thresholds):
            check_thresholds(thresholds)
        if not _is_template(drift_share):
            _check_drift_share(drift_share)
        self.name = name
        self.alias = alias
        self.current_uri = current_uri
        self.feature_columns = feature_columns
        self.categorical = categorical
        self.thresholds = thresholds
        self.drift_share = drift_share
        self.experiment = experiment
        self.on_missing_reference = on_missing_reference
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.ml import drift

        # Templated values arrive as strings: a JSON object, a number.
        if isinstance(self.thresholds, str):
            self.thresholds = json.loads(self.thresholds) if self.thresholds.strip() else None
        check_thresholds(self.thresholds)
        self.drift_share = _check_drift_share(self.drift_share)
        with self.hook.session() as client:
            try:
                version, run_id = self._resolve_model(client)
            except DataNotFound as err:
                if self.on_missing_reference == "fail":
                    raise
                raise AirflowSkipException(f"Skipped: {err}") from None
            current = self._load_current()
            reference = self._load_reference(client, version, run_id)
            features = self._features(reference)
            key = self._key(version, features, current)
            report, drift_run_id = self._reuse(client, key)
            reused = report is not None
            if report is None:
                report = drift.detect(
                    reference[features],
                    current[features],
                    categorical=self.categorical,
                    thresholds=self.thresholds,
                    drift_share=self.drift_share,
                )
                drift_run_id = self._record(client, version, run_id, key, report)
        for feature in report["drifted_features"]:
            self.log.warning(drift.describe(feature, report["features"][feature]))
        self.log.info(
            "%s: %d of %d feature(s) of %r drifted against version %s (share %.2f, threshold %.2f)%s.",
            "Dataset DRIFT" if report["dataset_drift"] else "No dataset drift",
            len(report["drifted_features"]),
            report["features_tested"],
            self.current_uri,
            version,
            report["drift_share"],
            report["drift_share_threshold"],
            f"; reused run {drift_run_id}" if reused else "",
        )
        return {
            "dataset_drift": report["dataset_drift"],
            "drift_share": report["drift_share"],
            "drifted_features": report["drifted_features"],
            "name": self.name,
            "model_version": version,
            # The model-version link reads ``version``.
            "version": version,
            "run_id": drift_run_id,
            "reused": reused,
            "features": {
                f: {"psi": r["psi"], "p_value": drift.p_value(r), "drifted": r["drifted"]}
                for f, r in report["features"].items()
            },
        }

    def _load_current(self) -> pd.DataFrame:
        return read_parquet(
            self.current_uri,
            "Current feature partition",
            "Check that the feature pipeline published it.",
        )

    def _resolve_model(self, client: MlflowClient) -> tuple[str, str]:
        """Return (version, run id) of the model behind the alias."""
        from mlflow.exceptions import MlflowException

        try:
            mv = client.get_model_version_by_alias(self.name, self.alias)
        except MlflowException as err:
            if not is_missing(err):
                raise
            raise DataNotFound(
                f"Model {self.name!r} has no {self.alias!r} alias, so there is no reference to test drift "
                "against; register and promote a model first."
            ) from None
        if not mv.run_id:
            raise DataNotFound(
                f"Version {mv.version} of {self.name!r} ({self.alias}) has no MLflow run, so it has no "
                f"{REFERENCE_SAMPLE}; register a model trained by the provider's trainer."
            )
        return str(mv.version), mv.run_id

    def _load_reference(self, client: MlflowClient, version: str, run_id: str) -> pd.DataFrame:
        import tempfile

        logged = {a.path for a in client.list_artifacts(run_id, REFERENCE_DIR)}
        if REFERENCE_SAMPLE not in logged:
            raise DataNotFound(
                f"Version {version} of {self.name!r} ({self.alias}, run {run_id}) has no {REFERENCE_SAMPLE}: "
                "it was trained before the trainer logged reference samples. Retrain it with the current "
                "trainer to get a drift reference."
            )
        with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
            return read_parquet(
                self.hook.download_artifact(run_id, REFERENCE_SAMPLE, tmp), "Reference sample"
            )

    def _features(self, reference: pd.DataFrame) -> list[str]:
        if not self.feature_columns:
            return [str(c) for c in reference.columns]
        missing = [c for c in self.feature_columns if c not in reference.columns]
        if missing:
            raise ConfigurationError(
                f"Feature(s) {missing} are not in the reference sample of {self.name!r} ({self.alias}); "
                f"it has {sorted(map(str, reference.columns))}."
            )
        return list(self.feature_columns)

    def _key(self, version: str, features: list[str], current: pd.DataFrame) -> str:
        missing = [c for c in features if c not in current.columns]
        if missing:  # checked here too, as the fingerprint below needs the columns
            raise ConfigurationError(
                f"Feature(s) {missing} are missing from the current partition {self.current_uri!r}; "
                f"it has {sorted(map(str, current.columns))}."
            )
        spec = [
            self.name,
            version,
            frame_fingerprint(current[features]),
            features,
            self.categorical,
            self.thresholds,
            self.drift_share,
            REPORT_VERSION,  # a report from older checks is not reused as if it ran the current ones
        ]
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _reuse(self, client: MlflowClient, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """Return the report and run of an earlier detection with the same key, else (None, None)."""
        run = find_run_by_key(client, self.experiment, DRIFT_KEY_TAG, key)
        if run is None:
            return None, None
        report = json.loads(self.hook.read_artifact_text(run.info.run_id, REPORT_JSON))
        self.log.info("Reusing drift run %s: same model version, data and thresholds.", run.info.run_id)
        return report, run.info.run_id

    def _record(
        self, client: MlflowClient, version: str, model_run_id: str, key: str, report: dict[str, Any]
    ) -> str:
        from mlops_provider.ml.drift import render_html

        metrics = {
            "drift_share": report["drift_share"],
            "dataset_drift": float(report["dataset_drift"]),
            "drifted_features": float(len(report["drifted_features"])),
        }
        metrics |= {f"psi_{f}": r["psi"] for f, r in report["features"].items() if r["psi"] is not None}
        title = f"Feature drift of {self.name} v{version} ({self.alias}): {self.current_uri}"
        return record_run(
            client,
            self.experiment,
            f"drift-{self.name}-v{version}",
            key_tag=DRIFT_KEY_TAG,
            key=key,
            metrics=metrics,
            params={
                "model_name": self.name,
                "model_alias": self.alias,
                "model_version": version,
                "model_run_id": model_run_id,
                "current_uri": self.current_uri,
                "current_rows": report["current_rows"],
                "drift_share_threshold": report["drift_share_threshold"],
            },
            texts={
                REPORT_JSON: json.dumps(report, indent=2, sort_keys=True),
                REPORT_HTML: render_html(report, title=title),
            },
            tags={
                DATASET_DRIFT_TAG: str(report["dataset_drift"]).lower(),
                DRIFTED_FEATURES_TAG: ",".join(report["drifted_features"]),
                DRIFT_MODEL_TAG: self.name,
                DRIFT_MODEL_VERSION_TAG: version,
            },
        )


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _check_drift_share(value: Any) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = math.nan
    if not 0 < share <= 1:
        raise ConfigurationError(f"drift_share must be a number in (0, 1], got {value!r}.")
    return share
