"""KServe manifests against KServe's own generated API models, and the canary backend's API calls.

The schema is the ``kserve`` wheel's OpenAPI-generated models (``kserve/models/*.py``: ``openapi_types``,
``attribute_map`` and the required-field checks), read with ``ast`` from the downloaded wheel and never
imported or installed: ``kserve`` pins ``psutil<6`` and ``protobuf<7``, which Airflow 3.3 and the rest
of the environment cannot take. Kubernetes types (``V1ObjectMeta``, ``V1ResourceRequirements``) come
from the ``kubernetes`` client's models. Validation is strict: unknown keys, wrong types and missing
required fields are errors.

No cluster runs here, so the backend talks to an in-memory ``CustomObjectsApi`` that applies JSON merge
patches (RFC 7386) like the API server; everything above that boundary is the real code.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mlops_provider.canary import CanaryController, CanaryStrategy
from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable
from mlops_provider.hooks.kserve import (
    DEFAULT_KSERVE_CHECKS,
    GROUP,
    PLURAL,
    VERSION,
    KServeCanaryBackend,
    KServeHook,
    render_inference_service,
)

KSERVE_VERSION = "0.21.0"
WHEEL_DIR = Path(sys.prefix) / "schemas"
WHEEL = WHEEL_DIR / f"kserve-{KSERVE_VERSION}-py3-none-any.whl"
DOWNLOAD = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"kserve=={KSERVE_VERSION}"]
_REQUIRED = re.compile(r"Invalid value for `(\w+)`, must not be `None`")


# -- the schema -------------------------------------------------------------------------------------
class Schema:
    """Strict validation of plain JSON data against OpenAPI-generated model classes.

    :param models: ``{class name: (openapi_types, attribute_map, required attributes)}``.
    """

    def __init__(self, models: dict[str, tuple[dict[str, str], dict[str, str], set[str]]]) -> None:
        self.models = models

    def model(self, name: str) -> tuple[dict[str, str], dict[str, str], set[str]]:
        if name not in self.models:
            import inspect

            import kubernetes.client.models as k8s

            cls = getattr(k8s, name, None)
            assert cls is not None, f"type {name} is neither a KServe nor a Kubernetes model"
            required = set(_REQUIRED.findall(inspect.getsource(cls)))
            self.models[name] = (cls.openapi_types, cls.attribute_map, required)
        return self.models[name]

    def errors(self, value: Any, type_: str, path: str = "$", allow_null: bool = False) -> list[str]:
        """Every problem of ``value`` as ``type_``; ``allow_null`` accepts None (a merge patch's delete)."""
        if value is None:
            return [] if allow_null else [f"{path}: null"]
        if match := re.fullmatch(r"list\[(.+)\]", type_):
            if not isinstance(value, list):
                return [f"{path}: expected a list, got {value!r}"]
            return [
                e for i, v in enumerate(value) for e in self.errors(v, match[1], f"{path}[{i}]", allow_null)
            ]
        if match := re.fullmatch(
            r"dict\(str, (.+)\)|dict\[str, (.+)\]", type_
        ):  # KServe's | kubernetes' spelling
            if not isinstance(value, dict):
                return [f"{path}: expected a mapping, got {value!r}"]
            item_type = match[1] or match[2]
            return [e for k, v in value.items() for e in self.errors(v, item_type, f"{path}.{k}", allow_null)]
        simple = {"str": str, "int": int, "float": (int, float), "bool": bool, "datetime": str, "date": str}
        if type_ in simple:
            ok = isinstance(value, simple[type_]) and not (
                type_ in ("int", "float") and isinstance(value, bool)
            )
            return [] if ok else [f"{path}: expected {type_}, got {value!r}"]
        if type_ == "object":
            return []
        types, attributes, required = self.model(type_)
        if not isinstance(value, dict):
            return [f"{path}: expected a {type_} object, got {value!r}"]
        by_key = {key: attr for attr, key in attributes.items()}
        problems = [f"{path}.{key}: unknown field of {type_}" for key in value if key not in by_key]
        if not allow_null:
            problems += [
                f"{path}.{attributes[a]}: required by {type_}" for a in required if attributes[a] not in value
            ]
        for key, item in value.items():
            if key in by_key:
                problems += self.errors(item, types[by_key[key]], f"{path}.{key}", allow_null)
        return problems

    def validate(self, manifest: dict[str, Any], patch: bool = False) -> None:
        """Assert ``manifest`` (or a merge patch of one) is a valid ``serving.kserve.io/v1beta1`` object."""
        problems = self.errors(manifest, "V1beta1InferenceService", allow_null=patch)
        if not patch:
            if (
                manifest.get("apiVersion") != f"{GROUP}/{VERSION}"
                or manifest.get("kind") != "InferenceService"
            ):
                problems.append(f"$: not a {GROUP}/{VERSION} InferenceService")
            problems += [
                f"$.metadata.{k}: missing"
                for k in ("name", "namespace")
                if k not in manifest.get("metadata", {})
            ]
        assert not problems, "\n".join(problems)


def _models_from_wheel(wheel: Path) -> dict[str, tuple[dict[str, str], dict[str, str], set[str]]]:
    models = {}
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if not re.fullmatch(r"kserve/models/\w+\.py", member):
                continue
            source = archive.read(member).decode()
            for node in ast.parse(source).body:
                if not isinstance(node, ast.ClassDef):
                    continue
                found = {
                    stmt.targets[0].id: ast.literal_eval(stmt.value)
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign)
                    and getattr(stmt.targets[0], "id", "") in ("openapi_types", "attribute_map")
                }
                if len(found) == 2:
                    required = set(_REQUIRED.findall(ast.get_source_segment(source, node) or ""))
                    models[node.name] = (found["openapi_types"], found["attribute_map"], required)
    return models


@pytest.fixture(scope="session")
def schema() -> Schema:
    """KServe's models, from the ``kserve`` wheel kept in ``<venv>/schemas`` (downloaded once if absent)."""
    if not WHEEL.exists():
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=WHEEL_DIR) as tmp:
            result = subprocess.run([*DOWNLOAD, "--dest", tmp], capture_output=True, text=True)
            if result.returncode or not (Path(tmp) / WHEEL.name).exists():
                pytest.fail(
                    f"Could not download the kserve wheel (the InferenceService schema): run "
                    f"`{' '.join(DOWNLOAD)} --dest {WHEEL_DIR}`.\n{result.stderr[-2000:]}"
                )
            (Path(tmp) / WHEEL.name).replace(WHEEL)  # atomic: parallel workers may race here
    models = _models_from_wheel(WHEEL)
    assert {"V1beta1InferenceService", "V1beta1PredictorSpec", "V1beta1ModelSpec"} <= set(models)
    return Schema(models)


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
        {"labels": {"app": "churn"}, "annotations": {"serving.kserve.io/deploymentMode": "Serverless"},
         "model_format": "sklearn", "protocol_version": "v1"},
    ],
)  # fmt: skip
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
        name="churn", namespace="models", storage_uri="s3://m/1", canary_traffic_percent=10,
        service_account_name="sa", resources=RESOURCES, labels={"app": "churn"},
    )  # fmt: skip
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


# -- the Kubernetes API boundary --------------------------------------------------------------------
def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class FakeCustomObjects:
    """In-memory ``kubernetes.client.CustomObjectsApi`` (the three calls the hook makes), recording calls."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.fail_with: Exception | None = None

    def _check(self, group: str, version: str, plural: str) -> None:
        assert (group, version, plural) == (GROUP, VERSION, PLURAL)
        if self.fail_with is not None:
            raise self.fail_with

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self._check(group, version, plural)
        self.calls.append(("get", name, None))
        if (namespace, name) not in self.objects:
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.objects[namespace, name])

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kwargs):
        self._check(group, version, plural)
        body = json.loads(json.dumps(body))  # what goes over the wire
        self.calls.append(("create", body["metadata"]["name"], body))
        self.objects[namespace, body["metadata"]["name"]] = body
        return copy.deepcopy(body)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kwargs):
        self._check(group, version, plural)
        assert kwargs.get("_content_type") == "application/merge-patch+json"
        body = json.loads(json.dumps(body))
        self.calls.append(("patch", name, body))
        self.objects[namespace, name] = _merge_patch(self.objects[namespace, name], body)
        return copy.deepcopy(self.objects[namespace, name])


URIS = {"1": "s3://models/churn/1", "2": "s3://models/churn/2", "3": "s3://models/churn/3"}


@pytest.fixture
def api() -> FakeCustomObjects:
    return FakeCustomObjects()


@pytest.fixture
def backend(api) -> KServeCanaryBackend:
    return KServeCanaryBackend(
        KServeHook(api=api), service="churn", namespace="models",
        storage_uri=lambda name, version: URIS[version], service_account_name="models-s3",
    )  # fmt: skip


def _writes(api: FakeCustomObjects) -> list[tuple[str, Any]]:
    return [(kind, body) for kind, _, body in api.calls if kind != "get"]


def _spec(uri: str, percent: int | None) -> dict[str, Any]:
    return {"predictor": {"model": {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2", "storageUri": uri},
                          "serviceAccountName": "models-s3", "canaryTrafficPercent": percent}}  # fmt: skip


def test_rollout_sends_exact_manifests_and_patches(schema, api, backend) -> None:
    live = lambda: api.objects["models", "churn"]["spec"]["predictor"]  # noqa: E731

    backend.promote("churn", "1")  # first model: created with no split
    ((kind, created),) = _writes(api)
    assert kind == "create"
    assert created == {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "churn", "namespace": "models"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2",
                                         "storageUri": URIS["1"]}, "serviceAccountName": "models-s3"}},
    }  # fmt: skip
    schema.validate(created)

    api.calls.clear()
    evidence = [backend.set_weight("churn", "1", "2", weight, step) for step, weight in enumerate((5, 50))]
    assert evidence[0] == {
        "service": "churn",
        "namespace": "models",
        "storage_uri": URIS["2"],
        "canaryTrafficPercent": 5,
    }
    assert _writes(api) == [
        ("patch", {"spec": _spec(URIS["2"], 5)}),
        ("patch", {"spec": _spec(URIS["2"], 50)}),
    ]
    assert live()["canaryTrafficPercent"] == 50 and live()["model"]["storageUri"] == URIS["2"]

    api.calls.clear()
    backend.promote("churn", "2")
    assert _writes(api) == [("patch", {"spec": _spec(URIS["2"], None)})]
    assert "canaryTrafficPercent" not in live() and live()["model"]["storageUri"] == URIS["2"]

    api.calls.clear()
    backend.set_weight("churn", "2", "3", 5, 0)
    backend.rollback("churn", "2", "3")
    assert _writes(api) == [
        ("patch", {"spec": _spec(URIS["3"], 5)}),
        ("patch", {"spec": {"predictor": {"canaryTrafficPercent": 0}}}),  # all traffic to the champion first
        ("patch", {"spec": _spec(URIS["2"], 0)}),  # then its model back, the split pinned at 0
    ]
    assert live()["canaryTrafficPercent"] == 0 and live()["model"]["storageUri"] == URIS["2"]

    for kind, body in _writes(api):
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
    assert _writes(api) == []
    backend.set_weight("churn", "1", "2", 5, 0)  # creates the service (champion served elsewhere)
    api.calls.clear()
    backend.rollback("churn", None, "2")
    assert _writes(api) == [("patch", {"spec": {"predictor": {"canaryTrafficPercent": 0}}})]
    schema.validate(api.objects["models", "churn"])


def test_revisions_from_status(api, backend) -> None:
    assert backend.revisions() == {"champion": None, "canary": None}
    backend.promote("churn", "1")
    api.objects["models", "churn"]["status"] = {
        "components": {"predictor": {"latestCreatedRevision": "churn-predictor-00002",
                                     "latestRolledoutRevision": "churn-predictor-00001"}}
    }  # fmt: skip
    assert backend.revisions() == {"champion": "churn-predictor-00001", "canary": "churn-predictor-00002"}


def test_controller_drives_the_backend(api, backend, monkeypatch) -> None:
    """The controller's calls reach the backend in order (its MLflow state replaced by a stub)."""
    strategy = CanaryStrategy(steps=(10, 100), metrics=DEFAULT_KSERVE_CHECKS)
    controller = CanaryController(client=None, name="churn", strategy=strategy, backend=backend)  # type: ignore[arg-type]
    state = {
        "status": "progressing",
        "step": -1,
        "weight": 0,
        "steps": [10, 100],
        "verdicts": {},
        "history": [],
    }
    monkeypatch.setattr(controller, "alias", lambda alias: {"champion": "1", "canary": "2"}.get(alias))
    monkeypatch.setattr(controller, "state", lambda version: dict(state))
    monkeypatch.setattr(controller, "_tag", lambda version, **values: state.update(values))
    monkeypatch.setattr(controller, "_record", lambda *args, **kwargs: {})
    backend.promote("churn", "1")
    controller.deploy_step("2", 0)
    assert api.objects["models", "churn"]["spec"]["predictor"]["canaryTrafficPercent"] == 10


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (403, ConfigurationError, "refused to read InferenceService models/churn \\(HTTP 403\\)"),
        (500, ServiceUnavailable, "HTTP 500"),
        (422, ConfigurationError, "rejected the request"),
    ],
)
def test_api_errors_are_translated(api, status, error, match) -> None:
    from kubernetes.client.exceptions import ApiException

    api.fail_with = ApiException(status=status, reason="x")
    with pytest.raises(error, match=match):
        KServeHook(api=api).get("churn", "models")


def test_hook_builds_the_client_from_the_kubernetes_connection(monkeypatch, tmp_path) -> None:
    """The real cncf.kubernetes connection path, against an API server that is not there."""
    from kubernetes.client import CustomObjectsApi

    from tests.mlflow_server import _free_port

    port = _free_port()
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
        "users": [{"name": "t", "user": {"token": "x"}}],
    }  # fmt: skip
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
