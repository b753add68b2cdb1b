"""A throwaway PostgreSQL server for the session, run from Debian's postgresql binaries in a temp dir.

PostgreSQL refuses to run as root, so as root the fixture runs it as the ``postgres`` user (created by
the Debian package). It fails, never skips, when the binaries are missing: install them with
``apt-get install -y postgresql``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mlflow_server import _free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin; run `apt-get install -y postgresql`."
        )
    return Path(found[-1]).parent


def _as_owner(command: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user else command


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL (psycopg2 driver) of an empty database ``mlflow`` on a private server on 127.0.0.1."""
    bin_dir, port = _bin_dir(), _free_port()
    root = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres" if shutil.which("runuser") and _user_exists("postgres") else "nobody"
        shutil.chown(root, user=user)
    data, log = root / "data", root / "server.log"

    def run(*command: str) -> None:
        result = subprocess.run(_as_owner(list(command), user), capture_output=True, text=True, cwd=root)
        if result.returncode:
            pytest.fail(f"{command[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "mlops", "-A", "trust", "--no-sync", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlops", "mlflow")
        yield f"postgresql+psycopg2://mlops@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], user),
            capture_output=True,
            cwd=root,
        )
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
