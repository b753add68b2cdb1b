"""A small process supervisor for the loopback stacks: start, reuse, wait for and stop servers.

Each service runs in its own session (process group) with its log appended to ``<state>/logs/<name>.log``
and its pid (with its start time, so a reused pid is not mistaken for it) in ``<state>/run/<name>.pid``,
so a later command (``make down``, a second ``make demo``) finds it again. Starting a service whose pid
is alive reuses it; a port held by another program is an error, never a silent second server. Stopping
signals the whole group, then kills what is left, including descendants that moved to a process group
of their own (Airflow's task runners do).

It imports nothing of Airflow: the test session's plugins import it before they configure Airflow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


class ServiceError(RuntimeError):
    """A server of a loopback stack could not start, or is not healthy; the message says why."""


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 5) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def run_as(user: str | None) -> dict[str, Any]:
    """``subprocess`` keyword arguments that run a child as ``user`` (uid, primary group, no root groups)."""
    if user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` runs; a zombie child of this process is not alive (and is reaped)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:  # not our child
        return True


@dataclass
class Service:
    """One long-running server.

    :param name: names its pid and log files.
    :param argv: the command, run without a shell.
    :param env: its environment (default: this process's).
    :param cwd: its working directory (default: the state dir).
    :param port: the TCP port it serves; it must be free before the start and open when healthy.
    :param health_url: an HTTP URL that answers 200 when it is healthy.
    :param ready: one more health check, e.g. a broker ping.
    :param user: run as this user (only root can), e.g. ``postgres``, which refuses to run as root.
    :param stop_signal: asks it to stop; SIGKILL follows when it does not.
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    port: int | None = None
    health_url: str | None = None
    ready: Callable[[], bool] | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM


class Supervisor:
    """Pid and log files of services under ``state_dir``.

    :param state_dir: ``run/<name>.pid`` and ``logs/<name>.log`` live here.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The recorded pid of ``name`` when that very process still runs (not a reuse of its pid), else None."""
        try:
            pid_text, started = self.pid_file(name).read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        try:
            return pid if abs(psutil.Process(pid).create_time() - float(started)) < 1 else None
        except psutil.NoSuchProcess:
            return None

    def healthy(self, service: Service) -> bool:
        """Alive, its port open and its health checks passing."""
        return (
            self.pid(service.name) is not None
            and (service.port is None or port_open(service.port))
            and (service.health_url is None or http_ok(service.health_url))
            and (service.ready is None or service.ready())
        )

    def start(self, service: Service) -> bool:
        """Start ``service`` unless it runs; True when started, False when a running one is reused.

        :raises ServiceError: its port is taken by a program this supervisor did not start.
        """
        if self.pid(service.name) is not None:
            return False
        if service.port is not None and port_open(service.port):
            raise ServiceError(
                f"Port {service.port} for {service.name} is taken by another program; stop it or "
                "choose another port."
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(service.name).open("ab") as log:
            process = subprocess.Popen(
                service.argv,
                env=service.env,
                cwd=service.cwd or self.state_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends it with its children
                **run_as(service.user),
            )
        started = psutil.Process(process.pid).create_time()
        self.pid_file(service.name).write_text(f"{process.pid} {started}\n")
        return True

    def wait(self, service: Service, timeout: float) -> None:
        """Wait until ``service`` is healthy.

        :raises ServiceError: it exited, or was not healthy within ``timeout`` seconds; the
            message holds the end of its log.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid(service.name) is None:
                raise ServiceError(
                    f"{service.name} exited while starting; {self.log_file(service.name)} ends with:\n"
                    f"{self.log_tail(service.name)}"
                )
            if self.healthy(service):
                return
            time.sleep(0.5)
        raise ServiceError(
            f"{service.name} was not healthy after {timeout:.0f} s; {self.log_file(service.name)} ends with:\n"
            f"{self.log_tail(service.name)}"
        )

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 20) -> bool:
        """Send ``sig`` to the service's process group, SIGKILL what is left after ``timeout`` seconds.

        :return: whether it was running.
        """
        pid = self.pid(name)
        self.pid_file(name).unlink(missing_ok=True)
        if pid is None:
            return False
        try:  # collected first: a task runner sits in a process group of its own
            tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return False
        _signal_group(pid, sig)
        _, alive = psutil.wait_procs(tree, timeout=timeout)
        if alive:
            _signal_group(pid, signal.SIGKILL)
            for process in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            psutil.wait_procs(alive, timeout=10)
        pid_alive(pid)  # reap it when it is our child
        return True

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_file(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
