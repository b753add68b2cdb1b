"""KServe's InferenceService schema and an in-memory Kubernetes custom-objects API, for the KServe tests.

The schema is the ``kserve`` wheel's OpenAPI-generated models (``kserve/models/*.py``: ``openapi_types``,
``attribute_map`` and the required-field checks), read with ``ast`` from the downloaded wheel and never
imported or installed: ``kserve`` pins ``psutil<6`` and ``protobuf<7``, which Airflow 3.3 and the rest
of the environment cannot take. Kubernetes types (``V1ObjectMeta``, ``V1ResourceRequirements``) come
from the ``kubernetes`` client's models. Validation is strict: unknown keys, wrong types and missing
required fields are errors.

No cluster runs in the tests, so :class:`FakeCustomObjects` stands in for the API server: it applies
JSON merge patches (RFC 7386) as the API server does; everything above that boundary is the real code.
Registered in tests/conftest.py, so the ``schema`` and ``k8s_api`` fixtures are visible everywhere.
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

from mlops_provider.constants import KSERVE_GROUP as GROUP
from mlops_provider.constants import KSERVE_PLURAL as PLURAL
from mlops_provider.constants import KSERVE_VERSION as VERSION

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
        if (namespace, name) not in self.objects:
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=404, reason="Not Found")
        self.objects[namespace, name] = _merge_patch(self.objects[namespace, name], body)
        return copy.deepcopy(self.objects[namespace, name])


@pytest.fixture
def k8s_api() -> FakeCustomObjects:
    """An empty in-memory InferenceService API."""
    return FakeCustomObjects()


def writes(api: FakeCustomObjects) -> list[tuple[str, Any]]:
    """The create and patch calls ``api`` received, as ``(kind, body)``."""
    return [(kind, body) for kind, _, body in api.calls if kind != "get"]
