"""The KubernetesExecutor and Feast engine configurations of docs/production.md, checked with no cluster.

The page shows four files, and tests/docs/test_snippets.py keeps each block on the page identical to its file:

- docker/kubernetes/pod_template.yaml is validated strictly against the Kubernetes OpenAPI schema
  (kubernetes-validate), read into a V1Pod as the executor reads it, and turned by the executor's own code
  (PodGenerator.construct_pod) into the pod it would create for a task, which is validated again;
- docker/kubernetes/airflow.env: each AIRFLOW__ name must be an option Airflow (with the cncf.kubernetes
  provider) knows, so a typo fails; Airflow's config parser, the executor's KubeConfig and the
  DagBundlesManager read the values;
- feature_repo/production/{spark,ray}.yaml go through the FeastHook (deep merge over feature_store.yaml, then
  Feast's RepoConfig), and Feast's own resolver picks and validates the engine's and the offline store's
  config classes, which refuse unknown keys.

pyspark and ray are not installed here, and Feast defines its Spark and Ray config classes in modules that
import them at the top. Those modules are imported in a fresh interpreter in which the two missing libraries
are empty stand-ins (see probe_engines): the classes that validate are still Feast's own, none of their fields
is typed by a stand-in, and no stand-in is ever called, so no engine code runs against one.

Not checked: that a cluster, the image, the Secrets or a Spark or Ray cluster exist, or that Spark and Ray
accept their settings; no pod starts and nothing is materialized on either engine.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FEATURE_REPO, ROOT

pytestmark = pytest.mark.xdist_group("docs_production_configs")

KUBERNETES = ROOT / "docker" / "kubernetes"
POD_TEMPLATE = KUBERNETES / "pod_template.yaml"
AIRFLOW_ENV = KUBERNETES / "airflow.env"
ENGINES = {name: FEATURE_REPO / "production" / f"{name}.yaml" for name in ("spark", "ray")}
# The ConfigMap made of airflow.env (`kubectl create configmap airflow-env --from-env-file=...`).
CONFIG_MAP = "airflow-env"
CONNECTION_SECRET = "mlops-connections"
# Settings only the scheduler and API server hold, from Secrets: never in a ConfigMap or a worker pod.
SECRET_SETTINGS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "FERNET_KEY")
# Missing here, and imported at the top of the modules that define Feast's Spark and Ray config classes.
ENGINE_LIBRARIES = ("pyspark", "ray")


def kube_versions() -> list[str]:
    import kubernetes_validate

    return ["1.30.0", kubernetes_validate.utils.latest_version()]


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as ``kubectl create configmap --from-env-file`` reads them: blank and ``#`` lines
    skipped, the value taken verbatim (no quotes removed)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and name.isidentifier() and name not in env, f"{path.name}: bad or repeated line {line!r}"
        env[name] = value
    return env


def base_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
    return container


@pytest.fixture(scope="module")
def airflow_env() -> dict[str, str]:
    return read_env_file(AIRFLOW_ENV)


@pytest.fixture
def configured(airflow_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """airflow.env in this process's environment, where Airflow's config parser reads it first."""
    for name, value in airflow_env.items():
        monkeypatch.setenv(name, value)
    return airflow_env


# -- KubernetesExecutor: the pod template ------------------------------------------------------------


def test_pod_template_is_a_valid_pod() -> None:
    import kubernetes_validate

    manifest = yaml.safe_load(POD_TEMPLATE.read_text())
    for version in kube_versions():
        kubernetes_validate.validate(manifest, version, strict=True)
    assert (manifest["apiVersion"], manifest["kind"]) == ("v1", "Pod")


def test_pod_template_reads_as_the_executor_reads_it() -> None:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import ApiClient

    from mlops_provider.hooks.feast import FeastHook
    from mlops_provider.hooks.mlflow import MLflowHook

    pod = ApiClient().sanitize_for_serialization(PodGenerator.deserialize_model_file(str(POD_TEMPLATE)))
    assert pod == yaml.safe_load(POD_TEMPLATE.read_text()), "the V1Pod lost or renamed a field"
    container = base_container(pod)
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert container["image"] == compose["x-airflow"]["image"]  # the image of docker/Dockerfile.airflow
    assert pod["spec"]["restartPolicy"] == "Never"
    assert container["envFrom"] == [{"configMapRef": {"name": CONFIG_MAP}}]
    env = {e["name"]: e for e in container["env"]}
    for hook in (FeastHook, MLflowHook):
        secret = env[f"AIRFLOW_CONN_{hook.default_conn_name.upper()}"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": CONNECTION_SECRET, "key": hook.default_conn_name}
    assert env["AIRFLOW_VAR_MLOPS_DATA_ROOT"]["value"].startswith("s3://")  # shared by every task's pod
    assert env["AWS_ENDPOINT_URL"]["value"].startswith("http")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["optional"] is True  # absent on AWS with IRSA
    assert container["resources"]["requests"] and container["resources"]["limits"]
    text = POD_TEMPLATE.read_text()
    assert not [s for s in SECRET_SETTINGS if s in text], "worker pods get no Airflow secret"


def test_executor_builds_a_valid_task_pod_from_the_template(configured: dict[str, str]) -> None:
    """The executor's own steps (KubeConfig, get_base_pod_from_template, construct_pod), minus the API call."""
    import kubernetes_validate
    from airflow.providers.cncf.kubernetes.executors.kubernetes_executor_utils import (
        get_base_pod_from_template,
    )
    from airflow.providers.cncf.kubernetes.kube_config import KubeConfig
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import ApiClient

    kube_config = KubeConfig()
    assert Path(kube_config.pod_template_file).name == POD_TEMPLATE.name
    assert kube_config.delete_worker_pods and not kube_config.delete_worker_pods_on_failure
    command = ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", "{}"]
    pod = PodGenerator.construct_pod(
        dag_id="feature_pipeline",
        task_id="materialize",
        pod_id="feature-pipeline-materialize",
        try_number=1,
        kube_image=kube_config.kube_image,
        date=None,
        args=command,
        pod_override_object=None,
        base_worker_pod=get_base_pod_from_template(str(POD_TEMPLATE), kube_config),
        namespace=kube_config.kube_namespace,
        scheduler_job_id="1",
        run_id="scheduled__2026-01-02T00:00:00+00:00",
    )
    manifest = ApiClient().sanitize_for_serialization(pod)

    for version in kube_versions():
        kubernetes_validate.validate(manifest, version, strict=True)
    container = base_container(manifest)
    template = base_container(yaml.safe_load(POD_TEMPLATE.read_text()))
    assert container["image"] == kube_config.kube_image == template["image"]
    assert container["args"] == command
    assert manifest["metadata"]["namespace"] == configured["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"]
    names = [e["name"] for e in container["env"]]
    assert names == [e["name"] for e in template["env"]] + ["AIRFLOW_IS_K8S_EXECUTOR_POD"]
    assert container["envFrom"] == template["envFrom"] and container["resources"] == template["resources"]


# -- KubernetesExecutor: the Airflow settings --------------------------------------------------------


def test_every_airflow_setting_is_an_option_airflow_knows(configured: dict[str, str]) -> None:
    from airflow.configuration import conf

    unknown = []
    for name, value in configured.items():
        if not name.startswith("AIRFLOW__"):
            continue
        _, section, key = name.split("__", 2)  # how Airflow splits an AIRFLOW__SECTION__KEY name
        section, key = section.lower(), key.lower()
        if key not in conf.get_options_including_defaults(section):
            unknown.append(name)
        else:
            assert conf.get(section, key) == value, name
    assert not unknown, f"not options of Airflow or its installed providers: {unknown}"
    assert conf.getboolean("logging", "remote_logging")
    assert not [s for s in SECRET_SETTINGS if any(s in name for name in configured)], (
        "secrets belong in Secrets"
    )


def test_the_executor_is_the_kubernetes_executor(configured: dict[str, str]) -> None:
    from airflow.executors.executor_loader import ExecutorLoader
    from airflow.providers.cncf.kubernetes.executors.kubernetes_executor import KubernetesExecutor

    module, _, name = ExecutorLoader.executors[configured["AIRFLOW__CORE__EXECUTOR"]].rpartition(".")
    assert getattr(importlib.import_module(module), name) is KubernetesExecutor
    assert configured["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith("/execution/")


def test_the_bundle_is_the_dags_folder_the_image_holds(configured: dict[str, str]) -> None:
    from airflow.dag_processing.bundles.local import LocalDagBundle
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    from tests.docker.test_compose import dockerfile_instructions

    bundle = DagBundlesManager().get_bundle("mlops")
    assert isinstance(bundle, LocalDagBundle)
    instructions = dockerfile_instructions(ROOT / "docker" / "Dockerfile.airflow")
    copies = [args.split()[-2:] for op, args in instructions if op == "COPY"]
    assert ["dags", str(bundle.path)] in copies, "the image copies dags/ where the bundle looks"


# -- Feast: Spark and Ray compute engines ------------------------------------------------------------


class _StandIn:
    """What a stand-in module's attribute is: a class, so annotations and subclassing still work."""

    CALLS: list[str] = []  # noqa: RUF012 - one record per interpreter, read at the end of the probe

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _StandIn.CALLS.append(type(self).__qualname__)


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (_StandIn,), {"__module__": self.__name__})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an empty module for each missing top-level package named (and its submodules)."""

    def __init__(self, roots: set[str]) -> None:
        self.roots = roots
        self.served: set[str] = set()

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] not in self.roots:
            return None
        self.served.add(fullname)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StandInModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []


def _typed_by_a_stand_in(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, _StandIn):
        return True
    return any(_typed_by_a_stand_in(arg) for arg in typing.get_args(annotation))


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def probe_engines() -> None:
    """Run in a fresh interpreter (``argv``: repo path, overrides per engine as JSON); prints a JSON report.

    Feast's Spark and Ray config classes are defined in modules that import pyspark or ray at the top. The
    missing libraries are served as empty stand-ins so that those modules import; everything else is Feast's
    and the hook's own code. The report lists the stand-ins imported, any stand-in ever called (none may
    be), and any config field whose type mentions one (none may).
    """
    import runpy

    from feast.importer import import_class
    from feast.repo_config import BATCH_ENGINE_CLASS_FOR_TYPE
    from pydantic import ValidationError

    from mlops_provider.hooks.feast import FeastHook

    repo, overrides = Path(sys.argv[1]), json.loads(sys.argv[2])
    finder = _StandInFinder({r for r in ENGINE_LIBRARIES if importlib.util.find_spec(r) is None})
    sys.meta_path.insert(0, finder)
    view = runpy.run_path(str(repo / "definitions.py"))["customer_activity"]
    report: dict[str, Any] = {}
    for name, override in overrides.items():
        config = FeastHook(repo_path=str(repo), config_overrides=override).get_store().config
        engine, offline = config.batch_engine, config.offline_store  # Feast resolves the classes by type
        engine_cls = import_class(*BATCH_ENGINE_CLASS_FOR_TYPE[engine.type].rsplit(".", 1))
        # As PassthroughProvider.batch_engine builds it; the Spark engine's constructor only stores these.
        spark_conf = None
        if name == "spark":
            built = engine_cls(
                repo_config=config, offline_store=None, online_store=None, **config.batch_engine_config
            )
            spark_conf = built._get_feature_view_engine_config(view)  # what reaches SparkConf().setAll
        try:
            type(engine)(**{**config.batch_engine_config, "spark.master": "local[2]"})
            refused = None
        except ValidationError as err:
            refused = [e["type"] for e in err.errors()]
        report[name] = {
            "engine_config_class": _qualname(type(engine)),
            "engine_class": _qualname(engine_cls),
            "engine": engine.model_dump(),
            "offline_config_class": _qualname(type(offline)),
            "offline": offline.model_dump(),
            "online_type": config.online_config["type"],
            "source_class": type(view.batch_source).__name__,
            "spark_session_conf": spark_conf,
            "top_level_key_refused": refused,
            "fields_typed_by_a_stand_in": [
                f"{cls.__name__}.{field}"
                for cls in (type(engine), type(offline))
                for field, info in cls.model_fields.items()
                if _typed_by_a_stand_in(info.annotation)
            ],
        }
    report["stand_ins"] = sorted(finder.served)
    report["stand_in_calls"] = _StandIn.CALLS
    print(json.dumps(report, default=str))


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each engine file merged into the production `feast_default` connection of docker/compose.yaml (Redis
    online store), as a user adds its keys to that connection's config_overrides, probed in one fresh
    interpreter over a private copy of the feature repo."""
    from mlops_provider.hooks.feast import deep_merge

    repo = tmp_path_factory.mktemp("production") / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    connection = json.loads(compose["x-airflow"]["environment"]["AIRFLOW_CONN_FEAST_DEFAULT"])
    production = connection["extra"]["config_overrides"]
    overrides = {
        name: deep_merge(production, yaml.safe_load(path.read_text())) for name, path in ENGINES.items()
    }
    probe = "from tests.docs.test_production_configs import probe_engines; probe_engines()"
    out = subprocess.run(
        [sys.executable, "-c", probe, str(repo), json.dumps(overrides)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-5000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_engine_files_hold_only_engine_and_offline_store_keys() -> None:
    """The rest of the connection (online store, registry) stays as the production guide sets it."""
    for name, path in ENGINES.items():
        assert set(yaml.safe_load(path.read_text())) <= {"batch_engine", "offline_store"}, name


def test_spark_engine_validates_with_feasts_own_classes(engines: dict[str, Any]) -> None:
    spark = engines["spark"]
    assert (
        spark["engine_config_class"] == "feast.infra.compute_engines.spark.compute.SparkComputeEngineConfig"
    )
    assert spark["engine_class"] == "feast.infra.compute_engines.spark.compute.SparkComputeEngine"
    assert spark["online_type"] == "redis"  # the production connection's, merged under the engine
    # The offline store stays the file store: Feast's spark offline store takes only a SparkSource, and the
    # repo declares a FileSource. The day is read in the worker (the Spark driver), then spread over Spark.
    assert spark["offline"]["type"] == "file" and spark["source_class"] == "FileSource"
    # Feast 0.67 gives SparkConf the whole batch_engine mapping (not its spark_conf), and refuses spark.*
    # keys beside `type`: so Spark's own settings go in spark-defaults.conf, as the page says.
    assert spark["spark_session_conf"] == yaml.safe_load(ENGINES["spark"].read_text())["batch_engine"]
    assert spark["top_level_key_refused"] == ["extra_forbidden"]


def test_ray_engine_validates_with_feasts_own_classes(engines: dict[str, Any]) -> None:
    ray = engines["ray"]
    assert ray["engine_config_class"] == "feast.infra.compute_engines.ray.config.RayComputeEngineConfig"
    assert ray["engine_class"] == "feast.infra.compute_engines.ray.compute.RayComputeEngine"
    assert (
        ray["offline_config_class"]
        == "feast.infra.offline_stores.contrib.ray_offline_store.ray.RayOfflineStoreConfig"
    )
    assert ray["source_class"] == "FileSource"  # the only source Feast's Ray offline store reads
    assert ray["engine"]["ray_address"] == ray["offline"]["ray_address"]  # both connect, to one cluster
    assert ray["engine"]["ray_address"].startswith("ray://")
    assert ray["engine"]["write_concurrency"] > 1 and ray["online_type"] == "redis"
    assert ray["top_level_key_refused"] == ["extra_forbidden"]


def test_no_engine_code_ran_against_a_stand_in(engines: dict[str, Any]) -> None:
    stand_in = _StandInModule("pyspark.sql").SparkSession
    assert _typed_by_a_stand_in(dict[str, stand_in | None])  # the field check can fail
    assert {m.split(".")[0] for m in engines["stand_ins"]} <= set(ENGINE_LIBRARIES)
    assert engines["stand_in_calls"] == []
    for name in ENGINES:
        assert engines[name]["fields_typed_by_a_stand_in"] == [], name
