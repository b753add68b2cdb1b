"""docker/ is checked statically (no docker engine runs here): names and commands match the code."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def airflow_env(compose: dict[str, Any]) -> dict[str, str]:
    return compose["services"]["airflow-scheduler"]["environment"]


def test_airflow_components_run_real_cli_commands(compose: dict[str, Any]) -> None:
    from airflow.cli.cli_config import core_commands

    known = {command.name for command in core_commands}
    for service, command in AIRFLOW_SERVICES.items():
        assert compose["services"][service]["command"] == [command]
        assert command in known
    assert compose["services"]["airflow-init"]["command"] == ["db", "migrate"]
    database = airflow_env(compose)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@airflow-db:5432/" in database and database.startswith("postgresql")


def test_connection_names_match_the_default_conn_ids(compose: dict[str, Any]) -> None:
    from mlops_provider.hooks.feast import FeastHook
    from mlops_provider.hooks.mlflow import MLflowHook
    from mlops_provider.operators.training import TrainModelOperator

    env = airflow_env(compose)
    training_default = TrainModelOperator(task_id="t", training_set_uri="x").mlflow_conn_id
    assert training_default == MLflowHook.default_conn_name
    mlflow_conn = json.loads(env[f"AIRFLOW_CONN_{MLflowHook.default_conn_name.upper()}"])
    assert mlflow_conn["conn_type"] == "mlflow"
    feast_conn = json.loads(env[f"AIRFLOW_CONN_{FeastHook.default_conn_name.upper()}"])
    assert feast_conn["conn_type"] == "feast"
    assert feast_conn["extra"]["repo_path"] == "/opt/airflow/feature_repo"
    online = feast_conn["extra"]["config_overrides"]["online_store"]
    assert online["type"] == "redis" and online["connection_string"].split(":")[0] in compose["services"]


def test_mlflow_server_command_is_valid_and_matches_the_connection(compose: dict[str, Any]) -> None:
    from mlflow.cli import server

    service = compose["services"]["mlflow"]
    args = service["command"]
    assert args[:2] == ["mlflow", "server"]
    server.make_context("server", list(args[2:]))  # raises on an unknown or malformed option
    port = args[args.index("--port") + 1]
    host = json.loads(airflow_env(compose)["AIRFLOW_CONN_MLFLOW_DEFAULT"])["host"]
    assert host == f"http://mlflow:{port}"
    assert "@mlflow-db:5432/" in args[args.index("--backend-store-uri") + 1]
    assert service["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert service["image"].endswith(importlib.metadata.version("mlflow"))


def test_settings_the_code_reads_are_set(compose: dict[str, Any]) -> None:
    env = airflow_env(compose)
    definitions = (ROOT / "feature_repo" / "definitions.py").read_text()
    assert 'os.environ.get("MLOPS_OFFLINE_ROOT"' in definitions
    assert env["MLOPS_OFFLINE_ROOT"].startswith(env["AIRFLOW_VAR_MLOPS_DATA_ROOT"])
    dag_sources = "\n".join(p.read_text() for p in (ROOT / "dags").glob("*.py"))
    assert "mlops_data_root" in dag_sources
    from mlops_provider.operators.training import BACKENDS

    assert env["AIRFLOW_VAR_MLOPS_TRAINING_BACKEND"] in BACKENDS
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    volumes = compose["services"]["airflow-scheduler"]["volumes"]
    assert f"mlops-data:{env['AIRFLOW_VAR_MLOPS_DATA_ROOT']}" in volumes


def test_prometheus_scrapes_a_service_of_the_stack(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert "mlflow:5000" in targets
    assert "--expose-prometheus" in compose["services"]["mlflow"]["command"]


def test_trainer_image_runs_the_trainer_module_pinned_torch_as_user_1000() -> None:
    import torch

    dockerfile = (DOCKER / "Dockerfile.trainer").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))
    assert entrypoint[:2] == ["python", "-m"]
    assert importlib.util.find_spec(f"{entrypoint[2]}.__main__") is not None
    assert re.search(r"^FROM nvidia/cuda:[\w.-]+-runtime-", dockerfile, re.M)
    assert f"ARG TORCH_VERSION={torch.__version__.split('+')[0]}" in dockerfile
    assert '".[training]"' in dockerfile
    assert re.search(r"^USER 1000:1000$", dockerfile, re.M)
    from mlops_provider.operators.kubernetes import RUN_AS_USER

    assert RUN_AS_USER == 1000


def test_airflow_image_matches_the_installed_airflow() -> None:
    import airflow

    dockerfile = (DOCKER / "Dockerfile.airflow").read_text()
    assert f"FROM apache/airflow:{airflow.__version__}-python3.11" in dockerfile
    assert f"ARG AIRFLOW_VERSION={airflow.__version__}" in dockerfile
    assert "[feast,gx,mlflow,kubernetes,training]" in dockerfile
    assert "COPY --chown=airflow:root dags /opt/airflow/dags" in dockerfile
    assert "COPY --chown=airflow:root feature_repo /opt/airflow/feature_repo" in dockerfile
