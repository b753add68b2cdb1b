"""Where a canary's traffic is split and where its metrics come from: ``batch`` and ``kserve``.

Backends are built from plain JSON (a backend name and a config dict) so the analysis trigger can
rebuild them in the triggerer from its serialised arguments.

``batch`` (the embedded default): each step replays a batch of entity features (``traffic_uri``, the
newest file when it is a glob) through both models with the step's split, writes a prediction log per
step, and the analysis reads that log. The champion also scores the canary's rows in shadow, so
prediction shift and quality compare both models on the same entities. Promotion and rollback need no serving change: the batch-scoring
DAG reads the split from the MLflow aliases.

``kserve`` (production): each step patches a KServe ``InferenceService``; the analysis reads Prometheus.
"""

from __future__ import annotations

import glob
from typing import TYPE_CHECKING, Any

from mlops_provider import scoring
from mlops_provider.canary import CanaryBackend, CanaryStrategy
from mlops_provider.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    import pandas as pd

    from mlops_provider.hooks.mlflow import MLflowHook

BACKENDS = ("batch", "kserve")
_BATCH_KEYS = {"traffic_uri", "log_root", "entity_column", "label_column", "request_rows"}
_KSERVE_KEYS = {
    "service",
    "namespace",
    "kubernetes_conn_id",
    "prometheus_conn_id",
    "prometheus_url",
    "render",
}


def read_frame(uri: str) -> tuple[str, pd.DataFrame]:
    """Read a parquet file; a local glob resolves to its newest (last-sorting) match."""
    import pyarrow.parquet as pq

    resolved = uri
    if any(ch in uri for ch in "*?[") and "://" not in uri:
        matches = sorted(glob.glob(uri))
        if not matches:
            raise DataNotFound(f"No file matches {uri!r}; publish data there first.")
        resolved = matches[-1]
    try:
        return resolved, pq.read_table(resolved).to_pandas()
    except (FileNotFoundError, OSError) as err:
        raise DataNotFound(f"{resolved!r} could not be read as parquet ({err}).") from err


class BatchCanaryBackend:
    """Replay a batch of traffic through champion and canary per step; analyse the prediction log.

    :param mlflow_hook: loads the model versions.
    :param traffic_uri: parquet file (or local glob: the newest match) of entity feature rows.
    :param log_root: where the per-step prediction logs go.
    :param entity_column: the key routed on.
    :param label_column: when present in the traffic, quality metrics are computed.
    :param request_rows: rows per model request.
    """

    def __init__(
        self,
        mlflow_hook: MLflowHook,
        *,
        traffic_uri: str,
        log_root: str,
        entity_column: str = "customer_id",
        label_column: str | None = None,
        request_rows: int = 256,
        log: Any = None,
    ) -> None:
        self.hook, self.traffic_uri, self.log_root = mlflow_hook, traffic_uri, log_root.rstrip("/")
        self.entity_column, self.label_column, self.request_rows = entity_column, label_column, request_rows
        self.log = log

    def step_log_uri(self, name: str, version: str, step: int) -> str:
        return f"{self.log_root}/rollouts/{name}/v{version}/step={step}/predictions.parquet"

    def set_weight(self, name: str, champion: str, canary: str, weight: int, step: int) -> dict[str, Any]:
        resolved, frame = read_frame(self.traffic_uri)
        if frame.empty:
            raise DataNotFound(f"Canary traffic {resolved!r} has no rows; nothing to compare the models on.")
        models = {
            scoring.CHAMPION: (champion, self.hook.load_model(name, champion)),
            scoring.CANARY: (canary, self.hook.load_model(name, canary)),
        }
        keep = [c for c in (self.label_column, "event_timestamp") if c]
        predictions = scoring.score(
            frame, models, entity_column=self.entity_column, weight=weight, salt=name,
            keep_columns=keep, request_rows=self.request_rows, shadow=True, log=self.log,
        )  # fmt: skip
        uri = scoring.write_log(predictions, self.step_log_uri(name, canary, step))
        counts = predictions["variant"].value_counts().to_dict()
        return {
            "traffic_uri": resolved,
            "prediction_log": uri,
            "rows": {k: int(v) for k, v in counts.items()},
        }

    def promote(self, name: str, canary: str) -> None:
        """Nothing to change: batch scoring reads the ``champion`` alias."""

    def rollback(self, name: str, champion: str | None, canary: str) -> None:
        """Nothing to change: without the ``canary`` alias batch scoring sends everything to the champion."""

    def values(self, name: str, version: str, step: int, strategy: CanaryStrategy) -> dict[str, Any]:
        metrics = scoring.analyse(scoring.read_log(self.step_log_uri(name, version, step)), self.label_column)
        return {check.name: metrics[check.query] for check in strategy.metrics}


def check_config(kind: str, config: dict[str, Any], strategy: CanaryStrategy) -> None:
    """Refuse an unknown backend, unknown config keys, or metric queries the backend cannot answer."""
    if kind not in BACKENDS:
        raise ConfigurationError(f"Unknown canary backend {kind!r}; use one of {list(BACKENDS)}.")
    known = _BATCH_KEYS if kind == "batch" else _KSERVE_KEYS
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigurationError(
            f"Canary backend {kind!r}: unknown config key(s) {unknown}; known: {sorted(known)}."
        )
    required = ("traffic_uri", "log_root") if kind == "batch" else ("service", "namespace")
    missing = [k for k in required if not config.get(k)]
    if missing:
        raise ConfigurationError(f"Canary backend {kind!r} needs config key(s) {missing}.")
    if kind == "batch":
        bad = [m.query for m in strategy.metrics if m.query not in scoring.BATCH_METRICS]
        if bad:
            raise ConfigurationError(
                f"Batch canary analysis cannot compute {bad}; batch metric queries are {list(scoring.BATCH_METRICS)}."
            )
    else:
        bad = [m.name for m in strategy.metrics if "{revision}" not in m.query]
        if bad:
            raise ConfigurationError(
                f"KServe metric check(s) {bad} need a PromQL query with a {{revision}} placeholder."
            )


def build_backend(
    kind: str, config: dict[str, Any], mlflow_hook: MLflowHook, log: Any = None
) -> CanaryBackend:
    """Build the backend ``kind`` from its JSON config."""
    if kind == "batch":
        return BatchCanaryBackend(mlflow_hook, log=log, **config)
    from mlops_provider.hooks.kserve import KServeCanaryBackend, KServeHook

    def storage_uri(name: str, version: str) -> str:
        with mlflow_hook.session() as client:
            return client.get_model_version_download_uri(name, version)

    return KServeCanaryBackend(
        KServeHook(config.get("kubernetes_conn_id", "kubernetes_default")),
        service=config["service"],
        namespace=config["namespace"],
        storage_uri=storage_uri,
        **config.get("render", {}),
    )


def fetch_values(
    kind: str, config: dict[str, Any], mlflow_hook: MLflowHook, name: str, version: str, step: int,
    strategy: CanaryStrategy,
) -> dict[str, tuple[float | None, float | None]]:  # fmt: skip
    """One analysis poll's ``{metric: (canary, champion)}`` values."""
    if kind == "batch":
        return build_backend(kind, config, mlflow_hook).values(name, version, step, strategy)
    from mlops_provider.hooks.prometheus import PrometheusHook

    backend = build_backend(kind, config, mlflow_hook)
    prometheus = PrometheusHook(
        config.get("prometheus_conn_id", "prometheus_default"), base_url=config.get("prometheus_url")
    )
    return prometheus.variant_values(strategy.metrics, backend.revisions())
