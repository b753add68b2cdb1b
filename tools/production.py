"""The production profile of the demo: the same DAGs on the servers a production deployment runs.

``make demo PROFILE=production`` starts, on loopback and under one state directory (``.production/``):

* PostgreSQL (one cluster; databases ``airflow``, ``mlflow`` and ``feast``),
* Redis (append-only file on): the Celery broker (db 0) and Feast's online store (db 1),
* an S3 endpoint (moto, :mod:`tools.s3_server`) with the buckets ``mlops-data`` (the data root, Feast's
  offline parquet) and ``mlops-artifacts`` (MLflow's artifacts),
* an MLflow server on PostgreSQL and S3,
* Airflow with the CeleryExecutor: api-server, scheduler, dag-processor and triggerer as separate
  processes sharing one JWT secret, and two Celery workers.

Clients find S3 through ``AWS_ENDPOINT_URL`` and the credentials in the environment, nothing else.
A second ``start()`` reuses whatever runs; ``stop()`` (``make down``) ends it all, the data stays.
``python -m tools.production up|down|status`` drives the stack alone.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tools.airflow_stack import AirflowStack
from tools.postgres import PostgresCluster
from tools.services import Service, ServiceError, Supervisor

DATA_BUCKET = "mlops-data"
ARTIFACTS_BUCKET = "mlops-artifacts"
DATABASES = ("airflow", "mlflow", "feast")
WORKERS = ("worker1", "worker2")
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", *WORKERS)
# Stopped stage by stage, each stage at once: what uses a server stops before it.
STOP_STAGES = (AIRFLOW_COMPONENTS, ("mlflow", "s3", "redis"), ("postgres",))
STOP_SIGNALS = {"postgres": signal.SIGINT}  # PostgreSQL's fast shutdown; SIGTERM waits for clients
# The scheduler, DAG processor and triggerer exit when their database goes away, and expect their process
# manager to start them again (systemd's Restart=always, a Kubernetes Deployment): tools.respawn does, for
# them and the API server.
RESPAWN = [sys.executable, "-m", "tools.respawn", "--"]
# The API's /monitor/health key of each component that reports a heartbeat there.
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise ServiceError(
            "redis-server not found on PATH or in /usr/bin; run `make system-deps` (apt-get install -y redis-server)."
        )
    return found


@dataclass
class ProductionStack(AirflowStack):
    """Airflow on Celery, PostgreSQL, Redis, S3 (moto) and MLflow, all on loopback.

    :param project_dir: the repository root holding dags/ and feature_repo/.
    :param state_dir: PostgreSQL's cluster, Redis's append-only file, the Airflow home, secrets, logs.
    :param airflow_port: the API server / UI port; the next three serve the workers' and the
        triggerer's logs.
    :param mlflow_port: the MLflow tracking server / UI port.
    :param postgres_port: PostgreSQL's port.
    :param redis_port: Redis's port.
    :param s3_port: the S3 endpoint's port.
    :param worker_concurrency: tasks each Celery worker runs at once.
    :param feature_repo: the Feast repo to use (default: ``project_dir/feature_repo``).
    """

    postgres_port: int = 15432
    redis_port: int = 16379
    s3_port: int = 19000
    worker_concurrency: int = 2

    ENV_FILE_PREFIXES: ClassVar[tuple[str, ...]] = ("AIRFLOW", "MLFLOW", "GX_", "AWS_", "MLOPS_")

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.state_dir)

    @property
    def postgres(self) -> PostgresCluster:
        return PostgresCluster(self.state_dir / "postgres", self.postgres_port)

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def data_root(self) -> str:
        return f"s3://{DATA_BUCKET}"

    @property
    def landing_dir(self) -> Path:
        """Where the demo generates landing files before :meth:`publish_landing` uploads them."""
        return self.state_dir / "landing"

    def secrets(self) -> dict[str, str]:
        """The stack's secrets, made once and kept in ``<state_dir>/secrets.json`` (mode 600).

        Every component gets them by environment: left to Airflow, the first process to start would
        write its own random JWT secret and Fernet key into airflow.cfg, racing the others.
        """
        path = self.state_dir / "secrets.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        from cryptography.fernet import Fernet

        made = {
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret_key": secrets.token_urlsafe(32),
            "fernet_key": Fernet.generate_key().decode(),
            "aws_access_key_id": "mlops-demo",
            "aws_secret_access_key": secrets.token_urlsafe(24),
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(made))
        return made

    def env(self) -> dict[str, str]:
        """The environment of every process of this stack (and of CLI calls on it)."""
        keys = self.secrets()
        airflow_db = self.postgres.url("airflow")
        base = {k: v for k, v in self.airflow_env(self.data_root).items() if not k.startswith("AWS_")}
        feast_overrides = {
            "registry": {
                "registry_type": "sql",
                "path": self.postgres.url("feast"),
                "cache_ttl_seconds": 60,
            },
            "online_store": {"type": "redis", "connection_string": f"127.0.0.1:{self.redis_port},db=1"},
        }
        env = {
            **base,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            # Airflow's Celery settings, plus Feast, GX, MLflow and pandas imported once per worker.
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "tools.celery_config.CELERY_CONFIG",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.project_dir), base.get("PYTHONPATH")])),
            # One message per free slot, acknowledged when the task ends: a killed worker's task is
            # delivered again, and no worker hoards tasks behind a long one.
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
            "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",  # 1 s by default: too short on a busy 2-core box
            # A task whose worker died (its heartbeats stop) is failed and retried after 1 min, not 5.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            # The bundle's files do not change under a running stack: parse them every 2 min, not 10 s,
            # which leaves the CPU to the tasks.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.airflow_port + 1),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.airflow_port + 3),
            "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLOPS_OFFLINE_ROOT": f"s3://{DATA_BUCKET}/offline",
            "AIRFLOW_CONN_FEAST_DEFAULT": json.dumps(
                {
                    "conn_type": "feast",
                    "extra": {"repo_path": str(self.repo_path), "config_overrides": feast_overrides},
                }
            ),
        }
        env.update(self.extra_env)
        return env

    # -- services --------------------------------------------------------------------------------------

    def backing_services(self) -> list[Service]:
        """PostgreSQL, Redis and S3: they need nothing else and start together."""
        redis_dir = self.state_dir / "redis"
        redis = Service(
            name="redis",
            argv=[
                redis_server_binary(),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(redis_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            port=self.redis_port,
            ready=self._redis_ping,
        )
        s3 = Service(
            name="s3",
            argv=[
                sys.executable,
                "-m",
                "tools.s3_server",
                "--port",
                str(self.s3_port),
                "--buckets",
                f"{DATA_BUCKET},{ARTIFACTS_BUCKET}",
            ],
            env=self.env(),
            cwd=self.project_dir,
            port=self.s3_port,
            health_url=f"{self.s3_url}/{DATA_BUCKET}",  # lists the bucket once it exists
        )
        return [self.postgres.service(), redis, s3]

    def mlflow_service(self) -> Service:
        return self.mlflow_server(
            self.postgres.url("mlflow"), f"s3://{ARTIFACTS_BUCKET}", "--serve-artifacts"
        )

    def airflow_services(self) -> list[Service]:
        """The API server first: the other components' health is read from its /monitor/health."""
        airflow = str(Path(sys.executable).parent / "airflow")
        env = self.env()
        services = [
            Service(
                name="api-server",
                argv=[*RESPAWN, airflow, "api-server"],
                env=env,
                port=self.airflow_port,
                health_url=f"{self.airflow_url}/api/v2/monitor/health",
            ),
            # Celery workers run the tasks, so the scheduler serves no logs.
            Service(name="scheduler", argv=[*RESPAWN, airflow, "scheduler", "--skip-serve-logs"], env=env),
            Service(name="dag-processor", argv=[*RESPAWN, airflow, "dag-processor"], env=env),
            Service(name="triggerer", argv=[*RESPAWN, airflow, "triggerer"], env=env),
        ]
        for component in services[1:]:
            component.ready = self._reports_healthy(HEALTH_KEYS[component.name])
        for offset, worker in enumerate(WORKERS, start=1):
            services.append(
                Service(
                    name=worker,
                    argv=[
                        airflow,
                        "celery",
                        "worker",
                        "--celery-hostname",
                        f"{worker}@%h",
                        "--concurrency",
                        str(self.worker_concurrency),
                        "--pid",
                        str(self.airflow_home / f"{worker}.pid"),
                    ],
                    # Each worker serves its own task logs.
                    env={**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.airflow_port + offset)},
                    ready=self._worker_answers(worker),
                )
            )
        return services

    # -- start, stop, status ---------------------------------------------------------------------------

    def start(self, *, timeout: float = 600, log: Callable[[str], object] = print) -> None:
        """Start what is not running, reuse what is, and wait until every service is healthy."""
        deadline = time.monotonic() + timeout
        supervisor = self.supervisor

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "redis").mkdir(exist_ok=True)
        self.write_passwords()
        self.write_env_file()
        self.postgres.initdb()
        backing = self.backing_services()
        self._start_all(backing, log)
        for service in backing:
            supervisor.wait(service, remaining())
        self.postgres.createdb(*DATABASES)
        mlflow, airflow = self.mlflow_service(), self.airflow_services()
        self._start_all([mlflow], log)
        if any(supervisor.pid(service.name) is None for service in airflow):
            log("  airflow db migrate ...")
            self._migrate(remaining())
        self._start_all(airflow, log)
        for service in [mlflow, *airflow]:
            supervisor.wait(service, remaining())

    def _start_all(self, services: list[Service], log: Callable[[str], object]) -> None:
        for service in services:
            if self.supervisor.start(service):
                log(f"  started {service.name} (log: {self.supervisor.log_file(service.name)})")
            else:
                log(f"  {service.name} is running: reused")

    def _migrate(self, timeout: float) -> None:
        out = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode:
            raise ServiceError(f"airflow db migrate failed ({out.returncode}):\n{out.stderr[-3000:]}")

    def stop(self) -> list[str]:
        """Stop every service of this stack; return the names stopped. Data and secrets stay."""
        from concurrent.futures import ThreadPoolExecutor

        supervisor = self.supervisor

        def stop(name: str) -> bool:
            return supervisor.stop(name, sig=STOP_SIGNALS.get(name, signal.SIGTERM), timeout=20)

        stopped: list[str] = []
        with ThreadPoolExecutor(max_workers=len(AIRFLOW_COMPONENTS)) as pool:
            for stage in STOP_STAGES:
                stopped += [name for name, ok in zip(stage, pool.map(stop, stage), strict=True) if ok]
        return stopped

    def status(self) -> dict[str, str]:
        """``healthy``, ``running`` (not healthy) or ``stopped``, per service."""
        supervisor = self.supervisor
        services = [*self.backing_services(), self.mlflow_service(), *self.airflow_services()]
        return {
            s.name: "healthy" if supervisor.healthy(s) else "running" if supervisor.pid(s.name) else "stopped"
            for s in services
        }

    # -- health checks ---------------------------------------------------------------------------------

    def _redis_ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def _reports_healthy(self, key: str) -> Callable[[], bool]:
        def check() -> bool:
            try:
                with urllib.request.urlopen(f"{self.airflow_url}/api/v2/monitor/health", timeout=5) as r:
                    health = json.loads(r.read())
            except (OSError, ValueError):
                return False
            return (health.get(key) or {}).get("status") == "healthy"

        return check

    def _worker_answers(self, worker: str) -> Callable[[], bool]:
        return lambda: any(name.startswith(f"{worker}@") for name in self.celery_workers())

    def celery_workers(self) -> list[str]:
        """Names of the Celery workers that answer a ping on the broker (``worker1@host``...)."""
        from celery import Celery

        app = Celery(broker=self.broker_url)
        try:
            replies = app.control.ping(timeout=2) or []
        except Exception:  # the broker is down: no worker answers
            return []
        finally:
            app.close()
        return sorted(name for reply in replies for name in reply)

    # -- data --------------------------------------------------------------------------------------------

    def s3_client(self) -> Any:
        """A boto3 S3 client on this stack's endpoint."""
        import boto3

        keys = self.secrets()
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id=keys["aws_access_key_id"],
            aws_secret_access_key=keys["aws_secret_access_key"],
        )

    def publish_landing(self) -> int:
        """Upload every file under :attr:`landing_dir` to ``s3://mlops-data/landing/``; return how many."""
        client = self.s3_client()
        files = sorted(p for p in self.landing_dir.rglob("*") if p.is_file())
        for path in files:
            client.upload_file(str(path), DATA_BUCKET, f"landing/{path.relative_to(self.landing_dir)}")
        return len(files)


def from_args(args: argparse.Namespace) -> ProductionStack:
    """A stack from the command line's ports and directories (see :func:`add_arguments`)."""
    return ProductionStack(
        project_dir=args.project_dir.resolve(),
        state_dir=(args.state_dir or args.project_dir / ".production").resolve(),
        airflow_port=args.airflow_port,
        mlflow_port=args.mlflow_port,
        postgres_port=args.postgres_port,
        redis_port=args.redis_port,
        s3_port=args.s3_port,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The stack's ports; each defaults to an environment variable, then to a fixed port."""
    env = os.environ
    parser.add_argument("--postgres-port", type=int, default=int(env.get("POSTGRES_PORT", 15432)))
    parser.add_argument("--redis-port", type=int, default=int(env.get("REDIS_PORT", 16379)))
    parser.add_argument("--s3-port", type=int, default=int(env.get("S3_PORT", 19000)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.production", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument("--state-dir", type=Path, default=None, help="default: <project>/.production")
    parser.add_argument("--airflow-port", type=int, default=int(os.environ.get("AIRFLOW_PORT", 8080)))
    parser.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT", 5000)))
    add_arguments(parser)
    args = parser.parse_args(argv)
    stack = from_args(args)
    if args.action == "down":
        print(f"Stopped: {', '.join(stack.stop()) or 'nothing was running'}")
    elif args.action == "up":
        started = time.monotonic()
        stack.start()
        print(f"Healthy in {time.monotonic() - started:.0f} s; source {stack.state_dir / 'env'} for the CLI.")
    else:
        for name, state in stack.status().items():
            print(f"  {name:<14} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
