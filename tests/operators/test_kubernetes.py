"""GPUTrainingOperator's pod, built by the real KubernetesPodOperator code and validated strictly.

No cluster runs here: the kubeconfig points at an unused loopback port, which building a pod
never contacts. The pod is checked against the Kubernetes OpenAPI schema by kubernetes-validate.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from mlops_provider.operators.kubernetes import GPUTrainingOperator
from mlops_provider.trainer.command import trainer_command

SENTINEL_PASSWORD = "sentinel-Pa55word-7f3a"
SENTINEL_TOKEN = "sentinel-token-91c2"
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: loopback
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
contexts:
- name: loopback
  context: {cluster: loopback, user: tester}
current-context: loopback
users:
- name: tester
  user: {token: not-a-real-token}
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps(
            {
                "conn_type": "mlflow",
                "host": "http://mlflow.mlops.svc:5000",
                "login": "trainer",
                "password": SENTINEL_PASSWORD,
                "extra": {"token": SENTINEL_TOKEN},
            }
        ),
    )
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


def context() -> dict[str, Any]:
    ti = types.SimpleNamespace(dag_id="training_pipeline", task_id="train", map_index=-1, try_number=1)
    return {"ti": ti, "run_id": "scheduled__2026-01-06T00:00:00+00:00", "dag": types.SimpleNamespace()}


def render(kubeconfig: str, **kwargs: Any) -> dict[str, Any]:
    operator = GPUTrainingOperator(
        task_id="train",
        training_set_uri="s3://mlops/training/2026-01-06.parquet",
        label_column="churned",
        experiment="churn",
        id_columns=["customer_id"],
        hyperparameters={"epochs": 5, "hidden": [64, 32]},
        config_file=kubeconfig,
        **kwargs,
    )
    pod = operator.build_pod_request_obj(context())
    manifest = ApiClient().sanitize_for_serialization(pod)
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    return manifest


def trainer_container(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in manifest["spec"]["containers"] if c["name"] == "base")


@pytest.mark.parametrize("gpus", [0, 1, 8])
def test_gpu_limits_and_default_tolerations(kubeconfig: str, gpus: int) -> None:
    manifest = render(kubeconfig, gpus=gpus)
    limits = trainer_container(manifest)["resources"]["limits"]
    tolerations = manifest["spec"].get("tolerations") or []
    if gpus:
        assert limits["nvidia.com/gpu"] == str(gpus)
        assert tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    else:
        assert "nvidia.com/gpu" not in limits
        assert tolerations == []


def test_custom_tolerations_node_selector_and_resource_name(kubeconfig: str) -> None:
    toleration = k8s.V1Toleration(key="gpu-pool", operator="Equal", value="a100", effect="NoSchedule")
    manifest = render(
        kubeconfig,
        gpus=2,
        gpu_resource="amd.com/gpu",
        tolerations=[toleration],
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
        namespace="ml",
        service_account_name="trainer",
        cpu_limit="8",
    )
    spec = manifest["spec"]
    assert spec["tolerations"] == [
        {"key": "gpu-pool", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}
    ]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert spec["serviceAccountName"] == "trainer" and manifest["metadata"]["namespace"] == "ml"
    assert trainer_container(manifest)["resources"]["limits"] == {
        "amd.com/gpu": "2",
        "memory": "16Gi",
        "cpu": "8",
    }


def test_no_tolerations_when_asked(kubeconfig: str) -> None:
    assert not render(kubeconfig, gpus=1, tolerations=[])["spec"].get("tolerations")


def test_shm_tmp_and_restricted_security_context(kubeconfig: str) -> None:
    manifest = render(kubeconfig, shm_size="4Gi")
    volumes = {v["name"]: v for v in manifest["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    container = trainer_container(manifest)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/dev/shm"] == "dshm" and mounts["/tmp"] == "tmp" and "/airflow/xcom" in mounts
    assert manifest["spec"]["securityContext"]["runAsNonRoot"] is True
    assert manifest["spec"]["securityContext"]["runAsUser"] == 1000
    for each in manifest["spec"]["containers"]:  # the XCom sidecar too
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True


def test_command_is_the_shared_trainer_command(kubeconfig: str) -> None:
    container = trainer_container(render(kubeconfig))
    expected = trainer_command(
        "s3://mlops/training/2026-01-06.parquet",
        label="churned",
        experiment="churn",
        hyperparameters={"epochs": 5, "hidden": [64, 32]},
        id_columns=["customer_id"],
    )
    assert container["command"] == ["python"]
    assert container["args"] == expected


def test_an_evaluation_set_reaches_the_trainer_command(kubeconfig: str) -> None:
    container = trainer_container(
        render(kubeconfig, evaluation_set_uri="s3://mlops/evaluation/2026-01-07.parquet")
    )
    assert container["args"] == trainer_command(
        "s3://mlops/training/2026-01-06.parquet",
        label="churned",
        experiment="churn",
        hyperparameters={"epochs": 5, "hidden": [64, 32]},
        id_columns=["customer_id"],
        evaluation_set_uri="s3://mlops/evaluation/2026-01-07.parquet",
    )
    assert "--evaluation-set" in container["args"]


def test_credentials_only_as_secret_references(kubeconfig: str) -> None:
    manifest = render(kubeconfig, mlflow_secret_name="mlflow-auth")
    env = {e["name"]: e for e in trainer_container(manifest)["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.mlops.svc:5000"
    for variable, key in [
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
        ("MLFLOW_TRACKING_TOKEN", "token"),
    ]:
        assert "value" not in env[variable]
        assert env[variable]["valueFrom"]["secretKeyRef"] == {
            "name": "mlflow-auth",
            "key": key,
            "optional": True,
        }
    serialised = json.dumps(manifest)
    assert SENTINEL_PASSWORD not in serialised and SENTINEL_TOKEN not in serialised


def test_no_secret_references_when_disabled_and_user_env_kept(kubeconfig: str) -> None:
    manifest = render(kubeconfig, mlflow_secret_name=None, env_vars={"AWS_ENDPOINT_URL": "http://minio:9000"})
    env = {e["name"]: e for e in trainer_container(manifest)["env"]}
    assert "MLFLOW_TRACKING_PASSWORD" not in env
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"


def test_defaults(kubeconfig: str) -> None:
    operator = GPUTrainingOperator(
        task_id="train", training_set_uri="s3://b/k.parquet", label_column="y", experiment="e"
    )
    assert operator.image == "ghcr.io/airflow-provider-mlops/trainer:0.1.0"
    assert operator.on_finish_action.value == "delete_succeeded_pod"
    assert operator.do_xcom_push is True
    assert operator.gpus == 1
    assert {"training_set_uri", "evaluation_set_uri", "hyperparameters", "mlflow_conn_id", "image"} <= set(
        operator.template_fields
    )
    assert operator.evaluation_set_uri is None
