"""Where a canary's traffic is split and where its metrics come from: ``batch`` and ``kserve``.

Backends are built from plain JSON (a backend name and a config dict) so the analysis trigger can
rebuild them in the triggerer from its serialised arguments; the adapters build them with their hooks
(:func:`mlops_provider.utils.canary.build_backend`).

``backend_config`` keys and their defaults:

- ``batch``: ``log_root`` (required: where the per-step prediction logs go); ``entity_column``
  (required: the key traffic is split and polls are sliced on, the feature service's join key); ``traffic_uri``
  (None: the canary version's held-out evaluation set, named by its ``mlops.eval_set_uri`` tag; a
  version without it is refused before any traffic moves; else a parquet file, directory or local glob
  whose newest match is replayed); ``label_column`` (None: no quality checks; the label of the replayed
  rows); ``request_rows`` (256: rows per model request); ``task_type`` (None: the canary version's
  ``mlops.task_type`` tag, else ``binary``; ``binary``, ``multiclass`` or ``regression``, which picks
  the quality metrics); ``timestamp_column`` (None: no timestamp is kept; else the replayed rows' time
  column, copied to the log and never passed to the models).
- ``kserve``: ``service`` and ``namespace`` (required: the InferenceService); ``kubernetes_conn_id``
  (``kubernetes_default``); ``prometheus_conn_id`` (``prometheus_default``); ``prometheus_url`` (None:
  the connection's host); ``render`` (``{}``: more arguments of
  :func:`~mlops_provider.canary.backends.kserve.render_inference_service`: ``model_format``
  ``mlflow``, ``protocol_version`` ``v2``, ``service_account_name``, ``resources``, ``labels``,
  ``annotations``, each None by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.ml import scoring

if TYPE_CHECKING:
    from mlops_provider.canary.strategy import CanaryStrategy

BACKENDS = ("batch", "kserve")
_BATCH_KEYS = {
    "traffic_uri",
    "log_root",
    "entity_column",
    "label_column",
    "request_rows",
    "task_type",
    "timestamp_column",
}
# Required keys, with what they are for.
_BATCH_REQUIRED = {
    "log_root": "where the per-step prediction logs go",
    "entity_column": "the column of the traffic's entity key (the feature service's join key), which traffic is split on",
}
_KSERVE_REQUIRED = {"service": "the InferenceService's name", "namespace": "the InferenceService's namespace"}
_KSERVE_KEYS = {
    "service",
    "namespace",
    "kubernetes_conn_id",
    "prometheus_conn_id",
    "prometheus_url",
    "render",
}


class CanaryBackend(Protocol):
    """Where traffic is split. The controller calls these; every call must be idempotent."""

    def check(self, name: str, champion: str, canary: str) -> None:
        """Raise ``ConfigurationError`` when this rollout cannot run; called before any traffic moves."""

    def smoke_test(self, name: str, version: str) -> dict[str, Any] | None:
        """Score a sample of traffic with a first model (no champion) before it is promoted: return
        ``{"rows", "error_rate", "errors"}`` (``errors``: the error summary or None), or None when the
        backend has no smoke test."""

    def set_weight(self, name: str, champion: str, canary: str, weight: int, step: int) -> dict[str, Any]:
        """Send ``weight`` percent of traffic to ``canary``; return evidence for the history."""

    def promote(self, name: str, canary: str) -> None:
        """Serve ``canary`` to all traffic, with no split left."""

    def rollback(self, name: str, champion: str | None, canary: str) -> None:
        """Send no traffic to ``canary``; serve ``champion`` alone."""


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
    required = _BATCH_REQUIRED if kind == "batch" else _KSERVE_REQUIRED
    missing = [k for k in required if not config.get(k)]
    if missing:
        needs = "; ".join(f"{k!r} is {required[k]}" for k in missing)
        raise ConfigurationError(f"Canary backend {kind!r} needs config key(s) {missing}: {needs}.")
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
