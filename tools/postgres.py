"""A private PostgreSQL cluster on loopback, run from Debian's postgresql binaries.

PostgreSQL refuses to run as root, so as root the cluster belongs to (and runs as) the ``postgres``
user the Debian package creates (``nobody`` without it); its directory's parents must be traversable by
that user. Missing binaries are an error naming the package to install (``make system-deps``).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
from pathlib import Path

from tools.services import Service, ServiceError, run_as

ROLE = "mlops"  # the superuser initdb creates; loopback connections need no password (trust)


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ServiceError(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin; run `make system-deps` "
            "(apt-get install -y postgresql)."
        )
    return Path(found[-1]).parent


def _owner() -> str | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


class PostgresCluster:
    """One cluster in ``root`` (``data/`` and its unix socket) listening on ``127.0.0.1:port``.

    :param root: the cluster's directory, created when missing.
    :param port: its TCP port.
    """

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.owner = _owner()

    def url(self, database: str) -> str:
        """A SQLAlchemy URL of ``database`` with the psycopg2 driver (SQLAlchemy 2.1's default is psycopg 3)."""
        return f"postgresql+psycopg2://{ROLE}@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        """Create the cluster unless it exists."""
        if (self.data / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if self.owner:
            shutil.chown(self.root, user=self.owner)
        result = subprocess.run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ROLE,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            text=True,
            cwd=self.root,
            **run_as(self.owner),
        )
        if result.returncode:
            raise ServiceError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def service(self) -> Service:
        """The server in the foreground; SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients)."""
        return Service(
            name="postgres",
            argv=[
                str(bin_dir() / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                # A process crash loses nothing without fsync, only a machine crash would: fine on loopback.
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",  # each Airflow component and Celery process keeps a pool
            ],
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
            cwd=self.root,
            port=self.port,
            ready=self.accepting,
            user=self.owner,
            stop_signal=signal.SIGINT,
        )

    def accepting(self) -> bool:
        """Whether the server accepts connections (not only listens, as it does while recovering)."""
        result = subprocess.run(
            [str(bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, "-t", "2"],
            capture_output=True,
        )
        return result.returncode == 0

    def createdb(self, *names: str) -> None:
        """Create each database unless it exists."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=ROLE, dbname="postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                for name in names:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
