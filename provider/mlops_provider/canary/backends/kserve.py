"""The ``kserve`` canary backend: KServe splits traffic itself, the analysis reads Prometheus.

KServe splits traffic itself (serverless mode): with ``canaryTrafficPercent`` set, a new predictor
revision gets that share and the last rolled-out revision (the champion) the rest; without it, the
latest ready revision gets everything. :class:`KServeCanaryBackend` drives a rollout with only those
two fields, and :data:`DEFAULT_KSERVE_CHECKS` compares the revisions on Knative's queue-proxy metrics.
The Kubernetes calls go through an injected client with ``get``, ``patch`` and ``apply`` (in Airflow,
:class:`~mlops_provider.hooks.kserve.KServeHook`), so this module imports no Airflow.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from mlops_provider.canary.strategy import MetricCheck
from mlops_provider.constants import CANARY, CHAMPION, KSERVE_API_VERSION, KSERVE_KIND
from mlops_provider.exceptions import ConfigurationError

PROTOCOL_VERSIONS = ("v1", "v2", "grpc-v1", "grpc-v2")
# KServe names become Knative service and DNS names: a DNS-1123 label that starts with a letter.
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
log = logging.getLogger(__name__)


class InferenceServiceClient(Protocol):
    """What the backend needs of the Kubernetes API (KServeHook provides it)."""

    def get(self, name: str, namespace: str) -> dict[str, Any] | None: ...

    def patch(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]: ...


# Knative's queue-proxy metrics, per revision; ``{revision}`` is filled per variant, braces doubled.
DEFAULT_KSERVE_CHECKS = (
    MetricCheck(
        "success_rate",
        'sum(rate(revision_request_count{{revision_name="{revision}",response_code_class!="5xx"}}[1m]))'
        ' / sum(rate(revision_request_count{{revision_name="{revision}"}}[1m]))',
        compare="champion",
        threshold=0.01,
        direction="higher",
    ),
    MetricCheck(
        "latency_p95_ms",
        "histogram_quantile(0.95, sum by (le) ("
        'rate(revision_request_latencies_bucket{{revision_name="{revision}"}}[1m])))',
        compare="champion",
        threshold=50.0,
        direction="lower",
    ),
)


def render_inference_service(
    *,
    name: str,
    namespace: str,
    storage_uri: str,
    canary_traffic_percent: int | None = None,
    model_format: str = "mlflow",
    protocol_version: str = "v2",
    service_account_name: str | None = None,
    resources: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return a ``serving.kserve.io/v1beta1`` InferenceService manifest with one model predictor.

    :param name: the InferenceService name (a DNS-1123 label starting with a letter).
    :param namespace: the Kubernetes namespace.
    :param storage_uri: where the model lives (``s3://...``, ``gs://...``, ``pvc://...``).
    :param canary_traffic_percent: the share of traffic for the latest revision; None leaves the key out.
    :param model_format: the model format name the serving runtime is chosen by.
    :param protocol_version: the inference protocol (``v1``, ``v2``, ``grpc-v1``, ``grpc-v2``).
    :param service_account_name: the predictor's service account (storage credentials).
    :param resources: the model container's ``{"requests": ..., "limits": ...}``.
    :param labels: metadata labels.
    :param annotations: metadata annotations.
    :raises ConfigurationError: when an input is invalid.
    """
    if not isinstance(name, str) or len(name) > 63 or not _NAME.match(name):
        raise ConfigurationError(
            f"InferenceService name {name!r} is invalid: use at most 63 lower-case letters, digits and '-', "
            "starting with a letter and ending with a letter or digit."
        )
    if not isinstance(namespace, str) or len(namespace) > 63 or not _NAMESPACE.match(namespace):
        raise ConfigurationError(f"Namespace {namespace!r} is not a valid DNS-1123 label.")
    if not isinstance(storage_uri, str) or not storage_uri.strip():
        raise ConfigurationError(f"InferenceService {name!r}: storage_uri is empty; give the model's URI.")
    if canary_traffic_percent is not None and (
        isinstance(canary_traffic_percent, bool)
        or not isinstance(canary_traffic_percent, int)
        or not 0 <= canary_traffic_percent <= 100
    ):
        raise ConfigurationError(
            f"InferenceService {name!r}: canary_traffic_percent must be a whole percent 0..100, "
            f"not {canary_traffic_percent!r}."
        )
    if not model_format:
        raise ConfigurationError(f"InferenceService {name!r}: model_format is empty (e.g. 'mlflow').")
    if protocol_version not in PROTOCOL_VERSIONS:
        raise ConfigurationError(
            f"InferenceService {name!r}: protocol_version must be one of {PROTOCOL_VERSIONS}, "
            f"not {protocol_version!r}."
        )
    if resources is not None and (not isinstance(resources, dict) or set(resources) - {"requests", "limits"}):
        raise ConfigurationError(
            f"InferenceService {name!r}: resources must be a mapping with 'requests' and/or 'limits', "
            f"not {resources!r}."
        )
    model: dict[str, Any] = {
        "modelFormat": {"name": model_format},
        "protocolVersion": protocol_version,
        "storageUri": storage_uri,
    }
    if resources:
        model["resources"] = resources
    predictor: dict[str, Any] = {"model": model}
    if service_account_name:
        predictor["serviceAccountName"] = service_account_name
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": KSERVE_KIND,
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


class KServeCanaryBackend:
    """The ``kserve`` :class:`~mlops_provider.canary.CanaryBackend`: one InferenceService per model.

    Every call sends the whole desired predictor (a merge patch), so re-running it converges.

    :param hook: the :class:`KServeHook`.
    :param service: the InferenceService name.
    :param namespace: its namespace.
    :param storage_uri: ``storage_uri(model name, version)`` gives a model version's storage URI (the
        caller resolves it from the registry).
    :param render_kwargs: more arguments of :func:`render_inference_service` (``model_format``,
        ``resources``, ``service_account_name``, ...).
    """

    def __init__(
        self,
        hook: InferenceServiceClient,
        *,
        service: str,
        namespace: str,
        storage_uri: Callable[[str, str], str],
        **render_kwargs: Any,
    ) -> None:
        self.hook, self.service, self.namespace = hook, service, namespace
        self.storage_uri, self.render_kwargs = storage_uri, render_kwargs
        render_inference_service(name=service, namespace=namespace, storage_uri="-", **render_kwargs)

    def manifest(self, uri: str, canary_traffic_percent: int | None) -> dict[str, Any]:
        """The InferenceService serving ``uri``, with ``canaryTrafficPercent`` (None: removed on patch)."""
        manifest = render_inference_service(
            name=self.service,
            namespace=self.namespace,
            storage_uri=uri,
            canary_traffic_percent=canary_traffic_percent,
            **self.render_kwargs,
        )
        manifest["spec"]["predictor"].setdefault("canaryTrafficPercent", None)
        return manifest

    def check(self, name: str, champion: str, canary: str) -> None:
        """Nothing to check before a rollout: the manifest was validated when the backend was built."""

    def smoke_test(self, name: str, version: str) -> dict[str, Any] | None:
        """None: no smoke test of a first model here (it has no traffic before it serves); KServe's own
        readiness check keeps a revision whose model does not load from taking traffic."""
        return None

    def set_weight(self, name: str, champion: str, canary: str, weight: int, step: int) -> dict[str, Any]:
        """Serve ``canary``'s model as the latest revision with ``weight`` percent of the traffic.

        KServe routes the rest to the last rolled-out revision, which serves the champion.
        """
        uri = self.storage_uri(name, canary)
        self.hook.apply(self.manifest(uri, weight))
        return {
            "service": self.service,
            "namespace": self.namespace,
            "storage_uri": uri,
            "canaryTrafficPercent": weight,
        }

    def promote(self, name: str, canary: str) -> None:
        """Serve ``canary``'s model to all traffic: its URI, with ``canaryTrafficPercent`` removed."""
        self.hook.apply(self.manifest(self.storage_uri(name, canary), None))

    def rollback(self, name: str, champion: str | None, canary: str) -> None:
        """Send no traffic to the canary, then point the service back at the champion's model.

        First ``canaryTrafficPercent: 0`` moves every request to the last rolled-out revision (the
        champion) at once. Then the champion's URI is applied with the split kept at 0: removing it would
        route everything to the latest *ready* revision, which is the canary until the champion's new
        revision is up. The champion's old revision keeps serving; the next rollout or promotion replaces
        the pin.
        """
        if self.hook.get(self.service, self.namespace) is None:
            log.info(
                "InferenceService %s/%s does not exist; nothing to roll back.", self.namespace, self.service
            )
            return
        self.hook.patch(self.service, self.namespace, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
        if champion is not None:
            self.hook.apply(self.manifest(self.storage_uri(name, champion), 0))

    def revisions(self) -> dict[str, str | None]:
        """``{"champion": latest rolled-out revision, "canary": latest created revision}`` for PromQL.

        Both are None while the InferenceService does not exist or has no status yet.
        """
        live = self.hook.get(self.service, self.namespace) or {}
        predictor = ((live.get("status") or {}).get("components") or {}).get("predictor") or {}
        return {
            CHAMPION: predictor.get("latestRolledoutRevision"),
            CANARY: predictor.get("latestCreatedRevision"),
        }
