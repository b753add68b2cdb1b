"""Run the embedded stack on one machine: ``airflow standalone`` with our DAG bundle, and an MLflow server.

Used by ``make demo`` (through :mod:`tools.demo`) and by the integration tests, so the tests
exercise exactly what a new user runs. Everything lives under one state directory; nothing is
configured outside it. Servers run in their own process groups so :meth:`LocalStack.stop` (or
``make down``) ends them and all their children.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_provider.exceptions import ServiceUnavailable

PIDS_FILE = "pids.json"
ADMIN_USER = "admin"


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class LocalStack:
    """Paths and ports of one embedded stack.

    :param project_dir: the repository root holding dags/ and feature_repo/.
    :param state_dir: where the Airflow home, MLflow store, data and logs go.
    :param airflow_port: the API server / UI port.
    :param mlflow_port: the MLflow tracking server / UI port.
    :param feature_repo: the Feast repo to use (default: ``project_dir/feature_repo``).
    """

    project_dir: Path
    state_dir: Path
    airflow_port: int = 8080
    mlflow_port: int = 5000
    feature_repo: Path | None = None
    password: str = "admin"  # noqa: S105 - the throwaway login of the loopback-only demo stack
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def env(self) -> dict[str, str]:
        """The environment every Airflow process (and CLI call) of this stack runs with."""
        repo = self.feature_repo or self.project_dir / "feature_repo"
        bundle = [
            {
                "name": "mlops",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(self.project_dir / "dags"), "refresh_interval": 30},
            }
        ]
        # Inherit nothing of another Airflow (a test session's unit-test mode, say) but its PATH and tools.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        # `airflow standalone` starts its components by running `airflow` from PATH: use ours.
        bin_dir = str(Path(sys.executable).parent)
        inherited["PATH"] = os.pathsep.join([bin_dir, inherited.get("PATH", "")])
        env = {
            **inherited,
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.project_dir / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.project_dir / "plugins"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home}/airflow.db",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundle),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.airflow_port),
            "AIRFLOW__API__BASE_URL": self.airflow_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            # The log servers would otherwise clash with a second stack on 8793/8794.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.airflow_port + 1),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.airflow_port + 2),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / "passwords.json"),
            # A small machine: few tasks at once, and patience with an API server busy writing SQLite.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW_VAR_MLOPS_DATA_ROOT": str(self.data_root),
            # A canary walks its four steps in about a minute here, instead of 12 with production's defaults.
            "AIRFLOW_VAR_MLOPS_CANARY_INTERVAL_SECONDS": "3",
            "AIRFLOW_VAR_MLOPS_CANARY_CHECKS_PER_STEP": "2",
            "AIRFLOW_CONN_FEAST_DEFAULT": json.dumps(
                {"conn_type": "feast", "extra": {"repo_path": str(repo)}}
            ),
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "mlflow", "host": self.mlflow_url, "extra": {"ui_base_url": self.mlflow_url}}
            ),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "GX_ANALYTICS_ENABLED": "False",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.extra_env)
        return env

    def write_env_file(self) -> Path:
        """Write ``<state_dir>/env`` so a shell can ``source`` it and use the airflow CLI on this stack."""
        import shlex

        mine = {k: v for k, v in self.env().items() if k.startswith(("AIRFLOW", "MLFLOW", "GX_"))}
        path = self.state_dir / "env"
        path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(mine.items())))
        return path

    # -- processes ---------------------------------------------------------------------------------

    def start(self, *, with_mlflow: bool = True, timeout: float = 240) -> None:
        """Start the servers (a no-op for those already running) and wait until they are healthy."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        (self.airflow_home / "passwords.json").write_text(json.dumps({ADMIN_USER: self.password}))
        pids = self._read_pids()
        bin_dir = Path(sys.executable).parent
        if with_mlflow and not self._alive(pids.get("mlflow")):
            self._require_free(self.mlflow_port, "MLflow")
            mlflow_dir = self.state_dir / "mlflow"
            mlflow_dir.mkdir(parents=True, exist_ok=True)
            pids["mlflow"] = self._spawn(
                "mlflow",
                [
                    str(bin_dir / "mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.mlflow_port),
                    "--backend-store-uri",
                    f"sqlite:///{mlflow_dir}/mlflow.db",
                    "--artifacts-destination",
                    str(mlflow_dir / "artifacts"),
                    "--workers",
                    "1",
                ],
            )
        if not self._alive(pids.get("airflow")):
            self._require_free(self.airflow_port, "Airflow")
            pids["airflow"] = self._spawn("airflow", [str(bin_dir / "airflow"), "standalone"])
        self._write_pids(pids)
        self.write_env_file()
        deadline = time.monotonic() + timeout
        if with_mlflow:
            self._wait_http(f"{self.mlflow_url}/health", deadline, "MLflow server")
        self._wait_http(f"{self.airflow_url}/api/v2/monitor/health", deadline, "Airflow API server")

    def stop(self) -> list[str]:
        """Stop every server this stack started; return the names stopped."""
        stopped = []
        for name, pid in self._read_pids().items():
            if self._alive(pid):
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                for _ in range(50):
                    if not self._alive(pid):
                        break
                    time.sleep(0.2)
                else:
                    os.killpg(pid, signal.SIGKILL)
                stopped.append(name)
        (self.state_dir / PIDS_FILE).unlink(missing_ok=True)
        return stopped

    def _spawn(self, name: str, argv: list[str]) -> int:
        log = open(self.state_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            argv,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.state_dir,
            start_new_session=True,
        )
        return proc.pid

    @staticmethod
    def _alive(pid: int | None) -> bool:
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie child of ours is not alive
            return os.waitpid(pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return True

    def _read_pids(self) -> dict[str, int]:
        path = self.state_dir / PIDS_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_pids(self, pids: dict[str, int]) -> None:
        (self.state_dir / PIDS_FILE).write_text(json.dumps(pids))

    @staticmethod
    def _require_free(port: int, what: str) -> None:
        if not _port_is_free(port):
            raise ServiceUnavailable(
                f"Port {port} for {what} is taken by another program; stop it or choose "
                "another port (AIRFLOW_PORT / MLFLOW_PORT)."
            )

    def _wait_http(self, url: str, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(2)
        raise ServiceUnavailable(f"{what} did not become healthy at {url}; see logs in {self.state_dir}")

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

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Call the Airflow REST API (``/api/v2/...``) as the admin user."""
        token = self._token()
        req = urllib.request.Request(
            f"{self.airflow_url}/api/v2/{path.lstrip('/')}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read() or b"null")

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
