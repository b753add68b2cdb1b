"""The ``kserve`` canary backend: InferenceService manifests against KServe's own API models, and the
exact create and merge-patch calls each rollout step sends to the Kubernetes API.

The schema and the in-memory API server are in tests/kserve_api.py.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from mlops_provider.canary.backends.kserve import (
    DEFAULT_KSERVE_CHECKS,
    KServeCanaryBackend,
    render_inference_service,
)
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.kserve import KServeHook
from tests.kserve_api import FakeCustomObjects, writes

# -- rendering --------------------------------------------------------------------------------------
RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"canary_traffic_percent": 5},
        {"canary_traffic_percent": 50},
        {"canary_traffic_percent": 100},
        {"canary_traffic_percent": 0},
        {"resources": RESOURCES, "service_account_name": "models-s3", "canary_traffic_percent": 25},
        {
            "labels": {"app": "churn"},
            "annotations": {"serving.kserve.io/deploymentMode": "Serverless"},
            "model_format": "sklearn",
            "protocol_version": "v1",
        },
    ],
)
def test_rendered_manifests_validate(schema, kwargs) -> None:
    manifest = render_inference_service(
        name="churn", namespace="models", storage_uri="s3://models/churn/3", **kwargs
    )
    schema.validate(manifest)
    predictor = manifest["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://models/churn/3"
    assert predictor["model"]["modelFormat"] == {"name": kwargs.get("model_format", "mlflow")}
    assert predictor.get("canaryTrafficPercent") == kwargs.get("canary_traffic_percent")
    assert ("canaryTrafficPercent" in predictor) == ("canary_traffic_percent" in kwargs)


def test_full_manifest_shape() -> None:
    manifest = render_inference_service(
        name="churn",
        namespace="models",
        storage_uri="s3://m/1",
        canary_traffic_percent=10,
        service_account_name="sa",
        resources=RESOURCES,
        labels={"app": "churn"},
    )
    assert manifest == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "churn", "namespace": "models", "labels": {"app": "churn"}},
        "spec": {
            "predictor": {
                "serviceAccountName": "sa",
                "canaryTrafficPercent": 10,
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    "protocolVersion": "v2",
                    "storageUri": "s3://m/1",
                    "resources": RESOURCES,
                },
            }
        },
    }


def test_the_schema_is_strict(schema) -> None:
    manifest = render_inference_service(name="churn", namespace="models", storage_uri="s3://m/1")
    typo = copy.deepcopy(manifest)
    typo["spec"]["predictor"]["model"]["storageURI"] = typo["spec"]["predictor"]["model"].pop("storageUri")
    with pytest.raises(
        AssertionError, match=r"\$\.spec\.predictor\.model\.storageURI: unknown field of V1beta1ModelSpec"
    ):
        schema.validate(typo)
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["predictor"]["canaryTrafficPercent"] = "50"
    with pytest.raises(AssertionError, match="canaryTrafficPercent: expected int"):
        schema.validate(wrong_type)
    no_predictor = copy.deepcopy(manifest)
    del no_predictor["spec"]["predictor"]
    with pytest.raises(AssertionError, match=r"\$\.spec\.predictor: required by V1beta1InferenceServiceSpec"):
        schema.validate(no_predictor)
    bad_resources = copy.deepcopy(manifest)
    bad_resources["spec"]["predictor"]["model"]["resources"] = {"limits": {"cpu": 1}, "request": {}}
    with pytest.raises(AssertionError, match="request: unknown field of V1ResourceRequirements") as err:
        schema.validate(bad_resources)
    assert "limits.cpu: expected str" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "Churn"}, "name 'Churn' is invalid"),
        ({"name": "1churn"}, "starting with a letter"),
        ({"name": "c" * 64}, "at most 63"),
        ({"namespace": "my_ns"}, "Namespace 'my_ns'"),
        ({"storage_uri": " "}, "storage_uri is empty"),
        ({"canary_traffic_percent": 101}, "0..100, not 101"),
        ({"canary_traffic_percent": -1}, "0..100"),
        ({"canary_traffic_percent": True}, "0..100"),
        ({"canary_traffic_percent": 5.5}, "0..100"),
        ({"protocol_version": "v3"}, "protocol_version must be one of"),
        ({"resources": {"cpu": "1"}}, "'requests' and/or 'limits'"),
    ],
)
def test_invalid_inputs_are_refused(kwargs, error) -> None:
    args = {"name": "churn", "namespace": "models", "storage_uri": "s3://m/1"} | kwargs
    with pytest.raises(ConfigurationError, match=re.escape(error)):
        render_inference_service(**args)


def test_default_checks_are_templates() -> None:
    for check in DEFAULT_KSERVE_CHECKS:
        promql = check.query.format(revision="churn-predictor-00002")
        assert 'revision_name="churn-predictor-00002"' in promql and "{revision}" not in promql
    assert {c.name: (c.compare, c.direction, c.threshold) for c in DEFAULT_KSERVE_CHECKS} == {
        "success_rate": ("champion", "higher", 0.01),
        "latency_p95_ms": ("champion", "lower", 50.0),
    }


URIS = {"1": "s3://models/churn/1", "2": "s3://models/churn/2", "3": "s3://models/churn/3"}


@pytest.fixture
def api(k8s_api: FakeCustomObjects) -> FakeCustomObjects:
    return k8s_api


@pytest.fixture
def backend(api) -> KServeCanaryBackend:
    return KServeCanaryBackend(
        KServeHook(api=api),
        service="churn",
        namespace="models",
        storage_uri=lambda name, version: URIS[version],
        service_account_name="models-s3",
    )


def _spec(uri: str, percent: int | None) -> dict[str, Any]:
    return {
        "predictor": {
            "model": {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2", "storageUri": uri},
            "serviceAccountName": "models-s3",
            "canaryTrafficPercent": percent,
        }
    }


def test_rollout_sends_exact_manifests_and_patches(schema, api, backend) -> None:
    live = lambda: api.objects["models", "churn"]["spec"]["predictor"]  # noqa: E731

    backend.promote("churn", "1")  # first model: created with no split
    ((kind, created),) = writes(api)
    assert kind == "create"
    assert created == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "churn", "namespace": "models"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    "protocolVersion": "v2",
                    "storageUri": URIS["1"],
                },
                "serviceAccountName": "models-s3",
            }
        },
    }
    schema.validate(created)

    api.calls.clear()
    evidence = [backend.set_weight("churn", "1", "2", weight, step) for step, weight in enumerate((5, 50))]
    assert evidence[0] == {
        "service": "churn",
        "namespace": "models",
        "storage_uri": URIS["2"],
        "canaryTrafficPercent": 5,
    }
    assert writes(api) == [
        ("patch", {"spec": _spec(URIS["2"], 5)}),
        ("patch", {"spec": _spec(URIS["2"], 50)}),
    ]
    assert live()["canaryTrafficPercent"] == 50 and live()["model"]["storageUri"] == URIS["2"]

    api.calls.clear()
    backend.promote("churn", "2")
    assert writes(api) == [("patch", {"spec": _spec(URIS["2"], None)})]
    assert "canaryTrafficPercent" not in live() and live()["model"]["storageUri"] == URIS["2"]

    api.calls.clear()
    backend.set_weight("churn", "2", "3", 5, 0)
    backend.rollback("churn", "2", "3")
    assert writes(api) == [
        ("patch", {"spec": _spec(URIS["3"], 5)}),
        ("patch", {"spec": {"predictor": {"canaryTrafficPercent": 0}}}),  # all traffic to the champion first
        ("patch", {"spec": _spec(URIS["2"], 0)}),  # then its model back, the split pinned at 0
    ]
    assert live()["canaryTrafficPercent"] == 0 and live()["model"]["storageUri"] == URIS["2"]

    for kind, body in writes(api):
        schema.validate(body, patch=kind == "patch")
    schema.validate(api.objects["models", "churn"])


def test_every_call_is_idempotent(api, backend) -> None:
    backend.promote("churn", "1")
    for _ in range(2):
        backend.set_weight("churn", "1", "2", 25, 1)
    first = api.objects["models", "churn"]
    backend.set_weight("churn", "1", "2", 25, 1)
    assert api.objects["models", "churn"] == first
    for _ in range(2):
        backend.rollback("churn", "1", "2")
    assert api.objects["models", "churn"]["spec"]["predictor"]["model"]["storageUri"] == URIS["1"]


def test_rollback_without_champion_or_service(schema, api, backend) -> None:
    backend.rollback("churn", "1", "2")  # nothing deployed: nothing to do
    assert writes(api) == []
    backend.set_weight("churn", "1", "2", 5, 0)  # creates the service (champion served elsewhere)
    api.calls.clear()
    backend.rollback("churn", None, "2")
    assert writes(api) == [("patch", {"spec": {"predictor": {"canaryTrafficPercent": 0}}})]
    schema.validate(api.objects["models", "churn"])


def test_revisions_from_status(api, backend) -> None:
    assert backend.revisions() == {"champion": None, "canary": None}
    backend.promote("churn", "1")
    api.objects["models", "churn"]["status"] = {
        "components": {
            "predictor": {
                "latestCreatedRevision": "churn-predictor-00002",
                "latestRolledoutRevision": "churn-predictor-00001",
            }
        }
    }
    assert backend.revisions() == {"champion": "churn-predictor-00001", "canary": "churn-predictor-00002"}
