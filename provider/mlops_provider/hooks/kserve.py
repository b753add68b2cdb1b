"""KServe InferenceServices over the Kubernetes API: get, merge-patch and create-or-patch.

The manifests and the canary logic that drives them live in :mod:`mlops_provider.canary.backends.kserve`;
this hook only talks to the API server.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from mlops_provider.constants import KSERVE_GROUP as GROUP
from mlops_provider.constants import KSERVE_PLURAL as PLURAL
from mlops_provider.constants import KSERVE_VERSION as VERSION
from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable


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
            "get_namespaced_custom_object",
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            missing_ok=True,
        )

    def patch(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """JSON-merge-patch the InferenceService ``namespace/name``; a None value removes its key."""
        return self._call(
            f"patch InferenceService {namespace}/{name}",
            "patch_namespaced_custom_object",
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",
        )

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
                "create_namespaced_custom_object",
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                _without_nulls(manifest),
            )
        body: dict[str, Any] = {"spec": manifest["spec"]}
        meta = {key: metadata[key] for key in ("labels", "annotations") if metadata.get(key)}
        if meta:
            body["metadata"] = meta
        self.log.info("Patching InferenceService %s/%s: %s", namespace, name, body["spec"])
        return self.patch(name, namespace, body)
