"""A throwaway PostgreSQL server for the session (tools.postgres.PostgresCluster in a temp dir).

It fails, never skips, when the binaries are missing: install them with ``make system-deps``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.postgres import PostgresCluster
from tools.services import Supervisor, free_port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL (psycopg2 driver) of an empty database ``mlflow`` on a private server on 127.0.0.1."""
    root = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    root.chmod(0o755)  # as root the server runs as the postgres user, who must reach its directory
    cluster, supervisor = PostgresCluster(root / "cluster", free_port()), Supervisor(root)
    service = cluster.service()
    try:
        cluster.initdb()
        supervisor.start(service)
        supervisor.wait(service, timeout=120)
        cluster.createdb("mlflow")
        yield cluster.url("mlflow")
    finally:
        supervisor.stop(service.name, sig=service.stop_signal)
        shutil.rmtree(root, ignore_errors=True)
