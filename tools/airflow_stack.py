"""What every loopback stack of the demo shares: the Airflow environment, CLI and REST API client.

:class:`tools.local_stack.LocalStack` (``airflow standalone`` on SQLite) and
:class:`tools.production.ProductionStack` (Celery, PostgreSQL, Redis, S3) differ in the servers they
start and the endpoints they configure; the DAG bundle, the admin login, the variables the shipped DAGs
read and the way a script drives Airflow are the same, and live here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tools.services import Service

ADMIN_USER = "admin"


@dataclass
class AirflowStack:
    """Paths, ports and the Airflow client of one stack.

    :param project_dir: the repository root holding dags/ and feature_repo/.
    :param state_dir: where the Airflow home, stores, data and logs go.
    :param airflow_port: the API server / UI port.
    :param mlflow_port: the MLflow tracking server / UI port.
    :param feature_repo: the Feast repo to use (default: ``project_dir/feature_repo``).
    :param extra_env: added to (and overriding) :meth:`env`.
    """

    project_dir: Path
    state_dir: Path
    airflow_port: int = 8080
    mlflow_port: int = 5000
    feature_repo: Path | None = None
    password: str = "admin"  # noqa: S105 - the throwaway login of the loopback-only demo stack
    extra_env: dict[str, str] = field(default_factory=dict)

    # Which variables of env() go to <state_dir>/env, the file a shell sources to use the CLI.
    ENV_FILE_PREFIXES: ClassVar[tuple[str, ...]] = ("AIRFLOW", "MLFLOW", "GX_")

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def mlflow_server(self, backend_store_uri: str, artifacts_destination: str, *extra: str) -> Service:
        """``mlflow server`` on this stack's MLflow port, with one worker (a small machine)."""
        return Service(
            name="mlflow",
            argv=[
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.mlflow_port),
                "--backend-store-uri",
                backend_store_uri,
                "--artifacts-destination",
                artifacts_destination,
                *extra,
                "--workers",
                "1",
            ],
            env=self.env(),
            port=self.mlflow_port,
            health_url=f"{self.mlflow_url}/health",
        )

    @property
    def repo_path(self) -> Path:
        return self.feature_repo or self.project_dir / "feature_repo"

    @property
    def landing_dir(self) -> Path:
        """Where the demo's generator writes the landing files."""
        raise NotImplementedError

    def publish_landing(self) -> int:
        """Make the files under :attr:`landing_dir` visible to the DAGs; return how many were copied.

        Here the DAGs read them where they are: nothing to copy.
        """
        return 0

    def env(self) -> dict[str, str]:
        """The environment every process (and CLI call) of this stack runs with."""
        raise NotImplementedError

    def airflow_env(self, data_root: str) -> dict[str, str]:
        """This process's environment without any Airflow setting of its own, plus what every stack sets.

        :param data_root: the ``mlops_data_root`` Variable: where the DAGs read and write data.
        """
        bundle = [
            {
                "name": "mlops",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(self.project_dir / "dags"), "refresh_interval": 30},
            }
        ]
        # Inherit nothing of another Airflow (a test session's unit-test mode, say) but its PATH and tools.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        # Airflow starts components and task runners by running `airflow` from PATH: use ours.
        bin_dir = str(Path(sys.executable).parent)
        inherited["PATH"] = os.pathsep.join([bin_dir, inherited.get("PATH", "")])
        return {
            **inherited,
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.project_dir / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.project_dir / "plugins"),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundle),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.airflow_port),
            "AIRFLOW__API__BASE_URL": self.airflow_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / "passwords.json"),
            # A small machine: few tasks at once, and patience with a busy API server.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW_VAR_MLOPS_DATA_ROOT": data_root,
            # A canary walks its four steps in about a minute here, instead of 12 with production's defaults.
            "AIRFLOW_VAR_MLOPS_CANARY_INTERVAL_SECONDS": "3",
            "AIRFLOW_VAR_MLOPS_CANARY_CHECKS_PER_STEP": "2",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "mlflow", "host": self.mlflow_url, "extra": {"ui_base_url": self.mlflow_url}}
            ),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "GX_ANALYTICS_ENABLED": "False",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PYTHONUNBUFFERED": "1",
        }

    def write_env_file(self) -> Path:
        """Write ``<state_dir>/env`` so a shell can ``source`` it and use the airflow CLI on this stack."""
        mine = {k: v for k, v in self.env().items() if k.startswith(self.ENV_FILE_PREFIXES)}
        path = self.state_dir / "env"
        path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(mine.items())))
        path.chmod(0o600)  # it may hold the stack's secrets
        return path

    def write_passwords(self) -> None:
        """The simple auth manager's passwords file: the admin login of this stack."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        (self.airflow_home / "passwords.json").write_text(json.dumps({ADMIN_USER: self.password}))

    # -- Airflow CLI and API ----------------------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 180, attempts: int = 5) -> str:
        """Run an ``airflow`` CLI command against this stack and return its stdout.

        SQLite takes one writer at a time: while the scheduler and DAG processor write (at start-up
        above all), a CLI write can fail with "database is locked". Its transaction is rolled back
        whole, so the command is run again, a few times, after a pause.
        """
        cli = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
        for attempt in range(1, attempts + 1):
            out = subprocess.run(
                [cli, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
            )
            if out.returncode == 0:
                return out.stdout
            if "database is locked" not in out.stderr or attempt == attempts:
                break
            time.sleep(5 * attempt)
        raise RuntimeError(f"airflow {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")

    def api(self, path: str, method: str = "GET", body: Any = None, *, patience_s: float = 120) -> Any:
        """Call the Airflow REST API (``/api/v2/...``) as the admin user.

        An idempotent call (not a POST) that is refused or meets a server error (the metadata database
        restarting, say) is tried again for ``patience_s`` seconds; a client error (4xx) is raised at once.
        """
        deadline = time.monotonic() + (patience_s if method != "POST" else 0)
        while True:
            try:
                req = urllib.request.Request(
                    f"{self.airflow_url}/api/v2/{path.lstrip('/')}",
                    method=method,
                    data=json.dumps(body).encode() if body is not None else None,
                    headers={"Authorization": f"Bearer {self._token()}", "Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=120) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as err:
                if err.code < 500 or time.monotonic() > deadline:
                    raise
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(3)

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        """The state of one task instance of a run."""
        from urllib.parse import quote

        return self.api(f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}")["state"]

    def _token(self) -> str:
        req = urllib.request.Request(
            f"{self.airflow_url}/auth/token",
            method="POST",
            data=json.dumps({"username": ADMIN_USER, "password": self.password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())["access_token"]

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 300) -> None:
        """Wait until the DAG processor has parsed these DAGs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = {d["dag_id"] for d in self.api("dags?limit=100")["dags"]}
            if set(dag_ids) <= known:
                return
            time.sleep(3)
        errors = self.api("importErrors")
        raise TimeoutError(f"DAGs {dag_ids} were not parsed in {timeout}s; import errors: {errors}")

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 900) -> list[dict[str, Any]]:
        """Wait until ``dag_id`` has at least ``count`` runs and all of them have finished."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.api(f"dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]
            if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
                return runs
            time.sleep(3)
        raise TimeoutError(f"{dag_id}: runs still unfinished after {timeout}s: {[r['state'] for r in runs]}")
