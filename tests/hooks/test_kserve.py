"""KServeHook: get, merge-patch and create-or-patch of InferenceServices, and its errors.

The Kubernetes API is the in-memory server of tests/kserve_api.py, except for the connection test,
which builds the real client from a kubeconfig.
"""

from __future__ import annotations

import json

import pytest

from mlops_provider.canary.backends.kserve import render_inference_service
from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable
from mlops_provider.hooks.kserve import KServeHook
from tests.kserve_api import FakeCustomObjects, writes


def _manifest(**kwargs) -> dict:
    return render_inference_service(name="churn", namespace="models", storage_uri="s3://m/1", **kwargs)


def test_get_returns_none_for_a_missing_service_and_a_copy_of_a_live_one(k8s_api: FakeCustomObjects) -> None:
    hook = KServeHook(api=k8s_api)
    assert hook.get("churn", "models") is None
    created = hook.apply(_manifest())
    assert hook.get("churn", "models") == created
    assert hook.get("churn", "other") is None


def test_apply_creates_when_absent_leaving_out_nulls(k8s_api: FakeCustomObjects) -> None:
    manifest = _manifest(labels={"app": "churn"})
    manifest["spec"]["predictor"]["canaryTrafficPercent"] = None  # "remove it": nothing to remove on create
    created = KServeHook(api=k8s_api).apply(manifest)
    ((kind, body),) = writes(k8s_api)
    assert kind == "create" and "canaryTrafficPercent" not in body["spec"]["predictor"]
    assert body["metadata"] == {"name": "churn", "namespace": "models", "labels": {"app": "churn"}}
    assert created == body == k8s_api.objects["models", "churn"]


def test_apply_merge_patches_the_spec_and_metadata_of_a_live_service(k8s_api: FakeCustomObjects) -> None:
    hook = KServeHook(api=k8s_api)
    hook.apply(_manifest(canary_traffic_percent=10, annotations={"team": "ml"}))
    k8s_api.calls.clear()
    update = _manifest(labels={"app": "churn"})
    update["spec"]["predictor"]["canaryTrafficPercent"] = None
    live = hook.apply(update)
    ((kind, body),) = writes(k8s_api)
    # The spec, and labels (annotations absent: left alone); name and namespace are the URL, not the body.
    assert (
        kind == "patch"
        and set(body) == {"spec", "metadata"}
        and body["metadata"] == {"labels": {"app": "churn"}}
    )
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]  # the None removed the live key
    assert live["metadata"] == {
        "name": "churn",
        "namespace": "models",
        "annotations": {"team": "ml"},
        "labels": {"app": "churn"},
    }
    hook.patch("churn", "models", {"spec": {"predictor": {"minReplicas": 2}}})
    assert k8s_api.objects["models", "churn"]["spec"]["predictor"]["minReplicas"] == 2
    assert k8s_api.objects["models", "churn"]["spec"]["predictor"]["model"]["storageUri"] == "s3://m/1"


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (403, ConfigurationError, r"refused to read InferenceService models/churn \(HTTP 403\)"),
        (401, ConfigurationError, r"\(HTTP 401\) with connection 'kubernetes_default'"),
        (500, ServiceUnavailable, "HTTP 500"),
        (429, ServiceUnavailable, "HTTP 429"),
        (422, ConfigurationError, "rejected the request"),
    ],
)
def test_api_errors_are_translated(k8s_api: FakeCustomObjects, status, error, match) -> None:
    from kubernetes.client.exceptions import ApiException

    k8s_api.fail_with = ApiException(status=status, reason="x")
    with pytest.raises(error, match=match) as raised:
        KServeHook(api=k8s_api).get("churn", "models")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_404_on_write_says_kserve_or_the_namespace_is_missing(k8s_api: FakeCustomObjects) -> None:
    with pytest.raises(
        ConfigurationError, match=r"cannot patch InferenceService models/churn: not found \(is KServe"
    ):
        KServeHook(api=k8s_api).patch("churn", "models", {"spec": {}})  # nothing there to patch


def test_transport_errors_are_service_unavailable(k8s_api: FakeCustomObjects) -> None:
    from urllib3.exceptions import MaxRetryError

    k8s_api.fail_with = MaxRetryError(None, "/apis", "connection refused")  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable, match="Kubernetes API unreachable while trying to create"):
        KServeHook(api=k8s_api)._call(
            "create InferenceService models/churn",
            "create_namespaced_custom_object",
            "serving.kserve.io",
            "v1beta1",
            "models",
            "inferenceservices",
            {},
        )


def test_hook_builds_the_client_from_the_kubernetes_connection(monkeypatch, tmp_path) -> None:
    """The real cncf.kubernetes connection path, against an API server that is not there."""
    from kubernetes.client import CustomObjectsApi
    from tools.services import free_port

    port = free_port()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
        "users": [{"name": "t", "user": {"token": "x"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(path)}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(conn))
    hook = KServeHook()
    assert isinstance(hook.api, CustomObjectsApi)
    assert hook.api.api_client.configuration.host == f"http://127.0.0.1:{port}"
    monkeypatch.setattr(hook.api.api_client.configuration, "retries", 0)
    with pytest.raises(
        ServiceUnavailable, match="Kubernetes API unreachable while trying to read InferenceService"
    ):
        hook.get("churn", "models")
