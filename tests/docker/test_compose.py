"""docker/ is checked statically (no docker engine runs here): names and commands match the code."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
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
    training_default = TrainModelOperator(
        task_id="t", training_set_uri="x", label_column="y", experiment="e"
    ).mlflow_conn_id
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
    assert re.search(r"^USER 1000:1000$", dockerfile, re.M)
    from mlops_provider.operators.kubernetes import RUN_AS_USER

    assert RUN_AS_USER == 1000


# Options of `pip install` that take a value (the value is not a thing to install).
PIP_OPTIONS_WITH_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--platform",
    "--python-version",
}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` as docker reads them: continuation lines joined, comment lines dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, arguments = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, f"{path.name} ends inside a continued line"
    return instructions


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a RUN line, split at ``&&``, ``||``, ``;`` and ``|``; redirections kept."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def redirect_targets(command: list[str]) -> list[str]:
    """The files a simple command writes with ``>`` or ``>>``."""
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word in {">", ">>"}]


def pip_installs(commands: list[list[str]]) -> list[tuple[list[str], list[str], list[str]]]:
    """``(command, targets, requirement files)`` of each ``pip install`` / ``python -m pip install``."""
    found = []
    for command in commands:
        words = command[3:] if command[1:3] == ["-m", "pip"] else command[1:]
        if not (command[0] in {"pip", "pip3"} or command[1:3] == ["-m", "pip"]) or words[:1] != ["install"]:
            continue
        targets, files, args = [], [], iter(words[1:])
        for word in args:
            if word in PIP_OPTIONS_WITH_VALUE:
                value = next(args)
                if word in {"-r", "--requirement"}:
                    files.append(value)
            elif word.startswith("--requirement="):
                files.append(word.partition("=")[2])
            elif not word.startswith("-"):
                targets.append(word)
        found.append((command, targets, files))
    return found


def trainer_image() -> tuple[list[tuple[str, str]], list[list[str]]]:
    instructions = dockerfile_instructions(DOCKER / "Dockerfile.trainer")
    commands = [
        c for keyword, arguments in instructions if keyword == "RUN" for c in shell_commands(arguments)
    ]
    return instructions, commands


def training_extra() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["project"]["optional-dependencies"]["training"]


def is_the_project(target: str) -> bool:
    """``.``, ``./x``, ``/opt/mlops[training]``, ``airflow-provider-mlops[...]``: this package, not a requirement."""
    name = target.split("[")[0]
    return name.startswith((".", "/")) or name.lower().replace("_", "-") == "airflow-provider-mlops"


def requirement_name(requirement: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(re.split(r"[\s\[<>=!~;@(]", requirement.strip(), maxsplit=1)[0])


def dependency_closure(requirements: list[str]) -> set[str]:
    """Canonical names of ``requirements`` and everything they pull in, as installed in this environment."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    queue = [(Requirement(r), frozenset()) for r in requirements]
    while queue:
        requirement, parent_extras = queue.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in {"", *parent_extras}
        ):
            continue
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        names.add(name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not for this platform or Python; nothing to walk
        queue.extend((Requirement(r), extras) for r in requires)
    return names


def test_trainer_image_installs_the_package_without_its_airflow_dependency() -> None:
    _, commands = trainer_image()
    installs = pip_installs(commands)
    project = [(command, targets) for command, targets, _ in installs if any(map(is_the_project, targets))]
    assert project, "Dockerfile.trainer no longer installs the package"
    for command, targets in project:
        line = " ".join(command)
        assert "--no-deps" in command, f"{line!r} would install the core dependency apache-airflow"
        assert not any("[" in t for t in targets if is_the_project(t)), f"{line!r}: extras resolve deps"
    for command, targets, _ in installs:
        airflow = [
            t for t in targets if not is_the_project(t) and requirement_name(t).startswith("apache-airflow")
        ]
        assert not airflow, f"{' '.join(command)!r} installs {airflow} into the trainer image"
    training = training_extra()
    assert not [r for r in training if requirement_name(r).startswith("apache-airflow")]
    pulled_in = sorted(n for n in dependency_closure(training) if n.startswith("apache-airflow"))
    assert not pulled_in, f"the training extra pulls in {pulled_in} (resolved in this environment)"


def test_trainer_image_requirements_are_exactly_the_training_extra() -> None:
    """The image writes its requirement file with a python -c over pyproject.toml: run that same code here."""
    import torch

    instructions, commands = trainer_image()
    files = {file for _, _, fs in pip_installs(commands) for file in fs}
    assert len(files) == 1, f"expected one requirement file installed with -r, found {sorted(files)}"
    (requirements_file,) = files
    writers = [c for c in commands if requirements_file in redirect_targets(c)]
    assert (
        len(writers) == 1
        and writers[0][:2] == ["python", "-c"]
        and writers[0][-2:] == [">", requirements_file]
    ), f"{requirements_file} must be written by one `python -c ... > {requirements_file}`, not {writers}"
    copied = [arguments.split() for keyword, arguments in instructions if keyword == "COPY"]
    assert any("pyproject.toml" in sources for sources in copied)
    written = subprocess.run(
        [sys.executable, "-c", writers[0][2]], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert written == training_extra(), (
        "the image's requirement file is not pyproject.toml's `training` extra"
    )
    # The CUDA torch installed first (ARG TORCH_VERSION) is the one the extra pins, so pip keeps it.
    torch_version = dict(a.split("=", 1) for k, a in instructions if k == "ARG")["TORCH_VERSION"]
    assert [r for r in written if requirement_name(r) == "torch"] == [f"torch=={torch_version}"]
    assert torch_version == torch.__version__.split("+")[0]


def test_trainer_image_leaves_the_code_version_to_the_code() -> None:
    """No MLOPS_CODE_VERSION default: the trainer hashes its own sources, as a worker does."""
    from mlops_provider.ml.lineage import code_version, trainer_sources_hash

    instructions, _ = trainer_image()
    setting = [f"{k} {a}" for k, a in instructions if k in {"ARG", "ENV"} and "MLOPS_CODE_VERSION" in a]
    assert not setting, f"Dockerfile.trainer sets a code version default: {setting}"
    copied = [arguments.split() for keyword, arguments in instructions if keyword == "COPY"]
    assert ["provider", "./provider"] in copied  # the sources the hash reads travel into the image
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLOPS_CODE_VERSION", raising=False)
        assert code_version().endswith(f"+src.{trainer_sources_hash()}")


def test_airflow_image_matches_the_installed_airflow() -> None:
    import airflow

    dockerfile = (DOCKER / "Dockerfile.airflow").read_text()
    assert f"FROM apache/airflow:{airflow.__version__}-python3.11" in dockerfile
    assert f"ARG AIRFLOW_VERSION={airflow.__version__}" in dockerfile
    assert "[feast,gx,mlflow,kubernetes,training]" in dockerfile
    assert "COPY --chown=airflow:root dags /opt/airflow/dags" in dockerfile
    assert "COPY --chown=airflow:root feature_repo /opt/airflow/feature_repo" in dockerfile
