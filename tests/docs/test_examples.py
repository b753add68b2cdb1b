"""The example DAGs the docs include (docs/examples/): each loads, and runs with dag.test() against real services.

GPUTrainingOperator cannot run without a cluster: its example's pod is built by the real
KubernetesPodOperator code and validated against the Kubernetes OpenAPI schema instead.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, START_DAY
from tests.dags.conftest import pipeline_env, run_dag  # noqa: F401 - a fixture, used by name
from tests.dags.test_dag_parse import HEAVY

pytestmark = pytest.mark.xdist_group("docs_examples")

EXAMPLES_DIR = ROOT / "docs" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.py"))
VIEW = "customer_activity"
# Importing GPUTrainingOperator means importing KubernetesPodOperator and the kubernetes client; the
# example says so, and points at TrainModelOperator(backend="kubernetes") for cheap parsing.
KPO_EXAMPLES = {"gpu_training.py"}


@pytest.fixture(scope="module")
def examples(airflow_db):
    """The example DAGs, with docs/examples/ configured as a DAG bundle: dag.test() serializes a DAG
    from the bundle that holds it, and by default only dags/ is one."""
    from airflow.dag_processing.dagbag import DagBag

    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "docs-examples", "classpath": local, "kwargs": {"path": str(EXAMPLES_DIR)}},
        {"name": "dags-folder", "classpath": local, "kwargs": {}},  # Airflow's default bundle, kept
    ]
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    bag = DagBag(dag_folder=str(EXAMPLES_DIR))
    assert bag.import_errors == {}
    yield bag.dags
    mp.undo()


def test_every_example_dag_loads_documented_and_owned(examples):
    assert len(examples) == len(EXAMPLE_FILES)
    for dag_id, dag in examples.items():
        assert dag_id.startswith("example_") and "example" in dag.tags, dag_id
        assert dag.doc_md and "tests/docs/test_examples.py" in dag.doc_md, f"{dag_id}: say where it is tested"
        assert all(t.owner == "ml-platform" for t in dag.tasks), dag_id
        assert all(p.description for p in dag.params.values()), dag_id


def test_examples_import_no_heavy_library_at_parse_time():
    # One fresh interpreter for all files (this process has the heavy libraries loaded already); each
    # file is charged with the heavy modules that appeared while it ran.
    probe = (
        "import json, runpy, sys\n"
        "heavy, seen, found = set(json.loads(sys.argv[1])), set(), {}\n"
        "for path in sys.argv[2:]:\n"
        "    runpy.run_path(path)\n"
        "    now = {m.split('.')[0] for m in sys.modules} & heavy\n"
        "    found[path.rsplit('/', 1)[-1]] = sorted(now - seen)\n"
        "    seen |= now\n"
        "print(json.dumps(found))\n"
    )
    files = [str(p) for p in EXAMPLE_FILES if p.name not in KPO_EXAMPLES]
    out = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(HEAVY), *files], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {name.rsplit("/", 1)[-1]: [] for name in files}


# -- Feast: FeatureFreshnessSensor ---------------------------------------------------------------


@pytest.fixture(scope="module")
def materialized_day(pipeline_env):  # noqa: F811 - the imported fixture
    """The private Feast repo with 2026-01-01 applied, published and materialized (not 01-02)."""
    from mlops_provider.example_data.generator import GeneratorConfig, generate, partition_path
    from mlops_provider.operators.feast import (
        FeastApplyOperator,
        FeastMaterializeOperator,
        FeastPublishPartitionOperator,
    )

    generate(GeneratorConfig(rows_per_day=50), pipeline_env["landing"], START_DAY, 1)
    FeastApplyOperator(task_id="apply").execute({})
    FeastPublishPartitionOperator(
        task_id="publish",
        feature_view=VIEW,
        partition=START_DAY.isoformat(),
        source_uri=str(partition_path(pipeline_env["landing"], VIEW, START_DAY)),
    ).execute({})
    FeastMaterializeOperator(
        task_id="materialize",
        feature_views=[VIEW],
        start="2026-01-01T00:00:00+00:00",
        end="2026-01-02T00:00:00+00:00",
    ).execute({})
    return START_DAY


def test_feature_freshness_example_passes_for_a_materialized_day(examples, materialized_day):
    run, states = run_dag(examples["example_feature_freshness"], day=materialized_day.isoformat())

    assert run.state == "success", states
    result = run.get_task_instance("features_fresh").xcom_pull(task_ids="features_fresh")
    assert result == {"feature_view": VIEW, "fresh_until": "2026-01-02T00:00:00+00:00"}


def test_feature_freshness_example_waits_in_the_trigger_and_times_out(
    examples, materialized_day, caplog, capsys
):
    dag = examples["example_feature_freshness"]
    sensor = dag.get_task("features_fresh")
    sensor.timeout, sensor.poke_interval = 3, 1  # the example waits hours; the test cannot

    next_day = materialized_day + dt.timedelta(days=1)
    run, states = run_dag(dag, day=next_day.isoformat())

    assert run.state == "failed" and states == {"features_fresh": "failed"}, states
    assert "running trigger in line" in caplog.text  # it deferred, and dag.test() ran the trigger
    assert "AirflowSensorTimeout" in capsys.readouterr().out


# -- MLflow: MLflowSetAliasOperator, MLflowDeleteAliasOperator -------------------------------------


@pytest.fixture
def mlflow_default(mlflow_server, monkeypatch):
    """mlflow_default points at the session's real ``mlflow server``."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps(
            {"conn_type": "mlflow", "host": mlflow_server.tracking_uri, "extra": {"http_max_retries": 0}}
        ),
    )


def register(tracking_uri: str, name: str, kind: str) -> str:
    """Log a tiny rule model (tests.mlflow_helpers) and register it as the next version of ``name``."""
    from mlops_provider.operators.mlflow import MLflowRegisterModelOperator
    from tests.mlflow_helpers import log_model, task_context

    register_task = MLflowRegisterModelOperator(
        task_id="register", name=name, run_id=log_model(tracking_uri, kind)["run_id"]
    )
    return register_task.execute(task_context())["version"]


def test_mlflow_aliases_example_moves_the_aliases_once(examples, mlflow_default, mlflow_server):
    from mlflow import MlflowClient

    from tests.mlflow_helpers import unique_name

    dag, name = examples["example_mlflow_aliases"], unique_name("docs")
    client = MlflowClient(mlflow_server.tracking_uri)
    version = register(mlflow_server.tracking_uri, name, "truth")
    client.set_registered_model_alias(name, "challenger", version)

    first, states = run_dag(dag, model_name=name, version=version)
    assert first.state == "success", states
    assert dict(client.get_registered_model(name).aliases) == {"champion": version}
    assert first.get_task_instance("set_champion").xcom_pull(task_ids="set_champion")["changed"] is True
    assert first.get_task_instance("clear_challenger").xcom_pull(task_ids="clear_challenger") == {
        "name": name,
        "alias": "challenger",
        "previous_version": version,
        "changed": True,
    }

    again, states = run_dag(dag, model_name=name, version=version)
    assert again.state == "success", states
    for task_id in ("set_champion", "clear_challenger"):  # the aliases are already where they should be
        assert again.get_task_instance(task_id).xcom_pull(task_ids=task_id)["changed"] is False


# -- Canary: CanaryStatusOperator ----------------------------------------------------------------


def test_canary_status_example_reports_the_running_rollout(
    examples, mlflow_default, mlflow_server, eval_data, tmp_path
):
    from mlops_provider.operators.canary import CanaryDeployOperator
    from tests.mlflow_helpers import task_context, unique_name

    name = unique_name("docs-canary")
    common = {
        "name": name,
        "backend_config": {
            "traffic_uri": str(eval_data),
            "log_root": str(tmp_path),
            "entity_column": "customer_id",
        },
        "strategy": {"steps": [10, 100]},
    }
    for kind in ("truth", "weak"):  # v1 becomes champion at once; v2 starts a rollout as the canary
        version = register(mlflow_server.tracking_uri, name, kind)
        CanaryDeployOperator(task_id="start", version=version, **common).execute(task_context())

    run, states = run_dag(examples["example_canary_status"], model_name=name)

    assert run.state == "success", states
    state = run.get_task_instance("status").xcom_pull(task_ids="status")
    assert (state["version"], state["status"], state["step"], state["steps"]) == (
        "2",
        "progressing",
        -1,
        [10, 100],
    )
    assert [entry["action"] for entry in state["history"]] == ["start"]
    line = run.get_task_instance("report").xcom_pull(task_ids="report")
    assert line == f"{name} v2: progressing, step 0 of 2, weight 0 %"


# -- Kubernetes: GPUTrainingOperator ----------------------------------------------------------------


def test_gpu_training_example_builds_a_valid_gpu_pod(examples, tmp_path, monkeypatch):
    """No cluster here: the kubeconfig points at an unused loopback port, which building a pod never contacts."""
    import kubernetes_validate
    from kubernetes.client import ApiClient

    from tests.operators.test_kubernetes import KUBECONFIG, context

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "host": "http://mlflow.ml.svc:5000"}),
    )
    task = examples["example_gpu_training"].get_task("train")
    task.render_template_fields(
        {**context(), "params": {"training_set_uri": "s3://ml/training_sets/churn/2026-01-04.parquet"}}
    )

    manifest = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(context()))

    kubernetes_validate.validate(manifest, kubernetes_validate.utils.latest_version(), strict=True)
    spec = manifest["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "base")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (manifest["metadata"]["namespace"], spec["serviceAccountName"]) == ("ml", "trainer")
    assert "s3://ml/training_sets/churn/2026-01-04.parquet" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.ml.svc:5000"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-credentials"
