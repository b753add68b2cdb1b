"""A real ``mlflow server`` on loopback for the whole test session (sqlite store, proxied artifacts).

Register it with ``pytest_plugins = ["tests.mlflow_server"]`` in tests/conftest.py, or import the
fixture into a test module. ``stop()`` and ``start()`` restart the same server on the same port and
store, so a test can check how a client behaves while MLflow is down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.services import free_port

_MLFLOW = Path(sys.executable).with_name("mlflow")
_START_TIMEOUT_S = 240.0  # a loaded 2-core CI box needs far more than the usual 15 s


class MLflowServer:
    """One ``mlflow server`` process with a sqlite backend store and a local artifact destination.

    :param root: directory holding ``mlflow.db``, ``artifacts/`` and ``server.log``.
    :param port: TCP port on 127.0.0.1; a free one when omitted.
    """

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.backend_store_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts_destination = str(root / "artifacts")
        self.tracking_uri = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (a no-op when it runs) and wait until ``/health`` answers."""
        if self.running:
            return
        command = [
            str(_MLFLOW),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            self.artifacts_destination,
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        # No background job workers: four extra processes per server slow start-up on 2 cores.
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": "",
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        with self.log_path.open("ab") as log:
            # A new session so stop() can end the server and its uvicorn workers together.
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_healthy()

    def stop(self) -> None:
        """Stop the server and its workers; the store and artifacts stay for a later ``start()``."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, 15)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, 9)
                self._process.wait(timeout=10)
        self._process = None

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"mlflow server exited early; see {self.log_path}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"mlflow server did not become healthy in {_START_TIMEOUT_S:.0f} s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MLflowServer]:
    """A running MLflow tracking server shared by the session (one per xdist worker)."""
    server = MLflowServer(Path(tempfile.mkdtemp(prefix="mlops-mlflow-")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
