"""Run the embedded stack on one machine: ``airflow standalone`` with our DAG bundle, and an MLflow server.

Used by ``make demo`` (through :mod:`tools.demo`) and by the integration tests, so the tests
exercise exactly what a new user runs. Everything lives under one state directory; nothing is
configured outside it. Servers run in their own process groups (:mod:`tools.services`) so
:meth:`LocalStack.stop` (or ``make down``) ends them and all their children.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.airflow_stack import ADMIN_USER, AirflowStack
from tools.services import Service, Supervisor

__all__ = ["ADMIN_USER", "LocalStack"]


@dataclass
class LocalStack(AirflowStack):
    """``airflow standalone`` on SQLite and an MLflow server on SQLite, data and Feast stores on local disk.

    :param project_dir: the repository root holding dags/ and feature_repo/.
    :param state_dir: where the Airflow home, MLflow store, data and logs go.
    :param airflow_port: the API server / UI port.
    :param mlflow_port: the MLflow tracking server / UI port.
    :param feature_repo: the Feast repo to use (default: ``project_dir/feature_repo``).
    """

    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def landing_dir(self) -> Path:
        return self.data_root / "landing"

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.state_dir)

    def env(self) -> dict[str, str]:
        """The environment every Airflow process (and CLI call) of this stack runs with."""
        env = {
            **self.airflow_env(str(self.data_root)),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home}/airflow.db",
            # The log servers would otherwise clash with a second stack on 8793/8794.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.airflow_port + 1),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.airflow_port + 2),
            "AIRFLOW_CONN_FEAST_DEFAULT": json.dumps(
                {"conn_type": "feast", "extra": {"repo_path": str(self.repo_path)}}
            ),
        }
        env.update(self.extra_env)
        return env

    def services(self, *, with_mlflow: bool = True) -> list[Service]:
        """The servers, in start order."""
        bin_dir = Path(sys.executable).parent
        mlflow_dir = self.state_dir / "mlflow"
        mlflow = self.mlflow_server(f"sqlite:///{mlflow_dir}/mlflow.db", str(mlflow_dir / "artifacts"))
        airflow = Service(
            name="airflow",
            argv=[str(bin_dir / "airflow"), "standalone"],
            env=self.env(),
            port=self.airflow_port,
            health_url=f"{self.airflow_url}/api/v2/monitor/health",
        )
        return [mlflow, airflow] if with_mlflow else [airflow]

    # -- processes ---------------------------------------------------------------------------------

    def start(self, *, with_mlflow: bool = True, timeout: float = 240) -> None:
        """Start the servers (a no-op for those already running) and wait until they are healthy."""
        self.data_root.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
        self.write_passwords()
        services = self.services(with_mlflow=with_mlflow)
        for service in services:
            self.supervisor.start(service)
        self.write_env_file()
        deadline = time.monotonic() + timeout
        for service in services:
            self.supervisor.wait(service, timeout=max(1.0, deadline - time.monotonic()))

    def stop(self) -> list[str]:
        """Stop every server this stack started; return the names stopped."""
        supervisor = self.supervisor
        return [name for name in ("airflow", "mlflow") if supervisor.stop(name, timeout=10)]
