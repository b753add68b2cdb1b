"""KServe InferenceServices: manifests, a small apply over the Kubernetes API, and the canary backend.

KServe splits traffic itself (serverless mode): with ``canaryTrafficPercent`` set, a new predictor
revision gets that share and the last rolled-out revision (the champion) the rest; without it, the
latest ready revision gets everything. :class:`KServeCanaryBackend` drives a rollout with only those
two fields, and :data:`DEFAULT_KSERVE_CHECKS` compares the revisions on Knative's queue-proxy metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from mlops_provider.canary import MetricCheck
from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
API_VERSION = f"{GROUP}/{VERSION}"
PROTOCOL_VERSIONS = ("v1", "v2", "grpc-v1", "grpc-v2")
# KServe names become Knative service and DNS names: a DNS-1123 label that starts with a letter.
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

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
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"predictor": predictor}}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


class KServeHook(BaseHook):
    """Read, create and merge-patch InferenceServices through the cncf.kubernetes provider's connection.

    :param kubernetes_conn_id: the Airflow connection of type ``kubernetes``.
    :param api: a ``kubernetes.client.CustomObjectsApi`` to use instead of one built from the connection.
    """

    hook_name = "KServe"

    def __init__(self, kubernetes_conn_id: str = "kubernetes_default", *, api: Any = None) -> None:
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id
        self._api = api

    @cached_property
    def api(self) -> Any:
        """The ``CustomObjectsApi`` (built from the connection on first use)."""
        if self._api is not None:
            return self._api
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.kubernetes_conn_id).custom_object_client

    def _call(self, what: str, method: str, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Call ``self.api.<method>``; turn transport and server errors into the provider's.

        :param missing_ok: return None on HTTP 404 instead of raising.
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return getattr(self.api, method)(*args, **kwargs)
        except ApiException as err:
            if err.status in (401, 403):
                raise ConfigurationError(
                    f"Kubernetes refused to {what} (HTTP {err.status}) with connection "
                    f"{self.kubernetes_conn_id!r}; give its service account rights on {PLURAL}.{GROUP}."
                ) from None
            if err.status == 404 and missing_ok:
                return None
            if err.status == 404:
                raise ConfigurationError(
                    f"Kubernetes cannot {what}: not found (is KServe installed, with its {PLURAL}.{GROUP} "
                    "CRD, and does the namespace exist?)."
                ) from None
            if err.status is None or err.status >= 500 or err.status == 429:
                raise ServiceUnavailable(
                    f"Kubernetes could not {what}: HTTP {err.status} {err.reason}."
                ) from None
            raise ConfigurationError(
                f"Kubernetes rejected the request to {what}: {err.body or err.reason}"
            ) from None
        except (HTTPError, OSError) as err:
            raise ServiceUnavailable(f"Kubernetes API unreachable while trying to {what}: {err}") from None

    def get(self, name: str, namespace: str) -> dict[str, Any] | None:
        """Return the InferenceService ``namespace/name``, or None when it does not exist."""
        return self._call(
            f"read InferenceService {namespace}/{name}",
            "get_namespaced_custom_object", GROUP, VERSION, namespace, PLURAL, name, missing_ok=True,
        )  # fmt: skip

    def patch(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """JSON-merge-patch the InferenceService ``namespace/name``; a None value removes its key."""
        return self._call(
            f"patch InferenceService {namespace}/{name}",
            "patch_namespaced_custom_object", GROUP, VERSION, namespace, PLURAL, name, body,
            _content_type="application/merge-patch+json",
        )  # fmt: skip

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the InferenceService when absent, else merge-patch its spec (and labels, annotations).

        :param manifest: a full manifest; a None value in its spec removes that key from the live object
            (e.g. ``canaryTrafficPercent``) and is left out on create.
        :return: the object the API server returned.
        """
        metadata = manifest["metadata"]
        name, namespace = metadata["name"], metadata["namespace"]
        if self.get(name, namespace) is None:
            self.log.info("Creating InferenceService %s/%s.", namespace, name)
            return self._call(
                f"create InferenceService {namespace}/{name}",
                "create_namespaced_custom_object", GROUP, VERSION, namespace, PLURAL, _without_nulls(manifest),
            )  # fmt: skip
        body: dict[str, Any] = {"spec": manifest["spec"]}
        meta = {key: metadata[key] for key in ("labels", "annotations") if metadata.get(key)}
        if meta:
            body["metadata"] = meta
        self.log.info("Patching InferenceService %s/%s: %s", namespace, name, body["spec"])
        return self.patch(name, namespace, body)


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
        hook: KServeHook,
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
            name=self.service, namespace=self.namespace, storage_uri=uri,
            canary_traffic_percent=canary_traffic_percent, **self.render_kwargs,
        )  # fmt: skip
        manifest["spec"]["predictor"].setdefault("canaryTrafficPercent", None)
        return manifest

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
            self.hook.log.info("InferenceService %s/%s does not exist; nothing to roll back.", self.namespace,
                               self.service)  # fmt: skip
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
            "champion": predictor.get("latestRolledoutRevision"),
            "canary": predictor.get("latestCreatedRevision"),
        }
