"""Faults injected into the production profile's stack (tools.production) at chosen moments of a DAG run.

A :class:`Chaos` thread watches Airflow's task instances (in its PostgreSQL database, which every fault
but one leaves up) and injects each :class:`Fault` once, in order, when the first task instance that
matches it reaches one of its states. What each injection did and saw is kept on the fault, for the
tests to assert and print.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from tools.production import WORKERS, ProductionStack


def task_instances(stack: ProductionStack, dag_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
    """The task instances of ``dag_id`` (and ``task_id``), oldest run first; [] while the database is down."""
    import psycopg2

    query = (
        "SELECT ti.id::text, ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.state, ti.try_number,"
        " ti.hostname, dr.run_type FROM task_instance ti JOIN dag_run dr"
        " ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id"
        " WHERE ti.dag_id = %s AND (%s IS NULL OR ti.task_id = %s) ORDER BY dr.id, ti.map_index"
    )
    try:
        conn = psycopg2.connect(
            host="127.0.0.1", port=stack.postgres_port, user="mlops", dbname="airflow", connect_timeout=3
        )
    except psycopg2.OperationalError:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute(query, (dag_id, task_id, task_id))
            names = [c.name for c in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except psycopg2.Error:
        return []
    finally:
        conn.close()


@dataclass
class Fault:
    """One fault: ``inject`` runs once, on the first task instance of ``dag_id``/``task_id`` in ``states``.

    :param name: names the fault in messages.
    :param dag_id: the DAG whose task instance is watched.
    :param task_id: the task watched.
    :param states: the task instance states that set the fault off.
    :param inject: does the damage (and waits for the recovery it needs); returns what it saw.
    :param run_types: only runs of these types (``manual``, ``backfill``, ``scheduled``, ``asset_triggered``).
    """

    name: str
    dag_id: str
    task_id: str
    states: tuple[str, ...]
    inject: Callable[[dict[str, Any]], dict[str, Any]]
    run_types: tuple[str, ...] | None = None
    task_instance: dict[str, Any] | None = None
    observed: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def matches(self, ti: dict[str, Any]) -> bool:
        return ti["state"] in self.states and (self.run_types is None or ti["run_type"] in self.run_types)


class Chaos(threading.Thread):
    """Injects ``faults`` one after another, each on the first matching task instance of a run no earlier
    fault struck."""

    def __init__(self, stack: ProductionStack, faults: list[Fault], poll_s: float = 0.5) -> None:
        super().__init__(name="chaos", daemon=True)
        self.stack, self.faults, self.poll_s = stack, faults, poll_s
        self.stopping = threading.Event()

    def run(self) -> None:
        hit: set[tuple[str, str]] = set()  # each fault strikes a run of its own
        for fault in self.faults:
            while not self.stopping.is_set():
                found = [
                    ti
                    for ti in task_instances(self.stack, fault.dag_id, fault.task_id)
                    if fault.matches(ti) and (ti["dag_id"], ti["run_id"]) not in hit
                ]
                if found:
                    hit.add((found[0]["dag_id"], found[0]["run_id"]))
                    fault.task_instance = found[0]
                    try:
                        fault.observed = fault.inject(found[0])
                    except BaseException as exc:  # kept for the test to raise with its context
                        fault.error = exc
                    fault.done.set()
                    break
                time.sleep(self.poll_s)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=600)


# -- the faults --------------------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll_s: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def service(stack: ProductionStack, name: str):
    """The definition of one of the stack's services (to start it again)."""
    services = [*stack.backing_services(), stack.mlflow_service(), *stack.airflow_services()]
    return next(s for s in services if s.name == name)


def restart(stack: ProductionStack, name: str, *, down_s: float, sig: int = signal.SIGTERM) -> dict[str, Any]:
    """Stop ``name`` (with ``sig``), keep it down ``down_s`` seconds, start it and wait until it is healthy."""
    supervisor = stack.supervisor
    stopped_at = time.monotonic()
    supervisor.stop(name, sig=sig, timeout=20)
    time.sleep(max(0.0, down_s - (time.monotonic() - stopped_at)))
    supervisor.start(service(stack, name))
    supervisor.wait(service(stack, name), timeout=180)
    return {"down_s": round(time.monotonic() - stopped_at, 1)}


def s3_outage(stack: ProductionStack, seconds: float) -> dict[str, Any]:
    """Close the S3 endpoint's listener for ``seconds`` (tools.s3_server: SIGUSR1, SIGUSR2); objects stay."""
    from tools.services import port_open

    pid = stack.supervisor.pid("s3")
    assert pid, "the S3 server is not running"
    os.kill(pid, signal.SIGUSR1)
    closed = time.monotonic()
    wait_for(lambda: not port_open(stack.s3_port), 10, "the S3 listener closing", poll_s=0.1)
    time.sleep(max(0.0, seconds - (time.monotonic() - closed)))
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: port_open(stack.s3_port), 30, "the S3 listener opening", poll_s=0.2)
    return {"down_s": round(time.monotonic() - closed, 1)}


def worker_running(stack: ProductionStack, ti_id: str) -> str | None:
    """The Celery worker (worker1, worker2) whose process tree runs task instance ``ti_id``."""
    title = f"airflow worker -- {ti_id}"
    for worker in WORKERS:
        pid = stack.supervisor.pid(worker)
        if pid is None:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if title in " ".join(child.cmdline()):
                        return worker
    return None


def kill_worker(stack: ProductionStack, ti: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL, at once, every process of the worker running ``ti`` (the machine is gone), wait until the
    task's retry runs on the other worker, then start the killed worker again."""
    worker = wait_for(lambda: worker_running(stack, ti["id"]), 120, f"the worker process of {ti['task_id']}")
    pid = stack.supervisor.pid(worker)
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=10)
    killed_at = time.monotonic()

    def retried() -> dict[str, Any] | None:
        now = [t for t in task_instances(stack, ti["dag_id"], ti["task_id"]) if t["run_id"] == ti["run_id"]]
        if now and now[0]["try_number"] > ti["try_number"] and now[0]["state"] in ("running", "success"):
            return now[0]
        return None

    retry = wait_for(retried, 600, f"a retry of {ti['task_id']} after {worker} was killed")
    retry_worker = (
        worker_running(stack, retry["id"]) if retry["state"] == "running" else None
    )  # a new id per try
    stack.supervisor.start(service(stack, worker))
    stack.supervisor.wait(service(stack, worker), timeout=180)
    return {
        "killed": worker,
        "processes": len(tree),
        "retried_after_s": round(time.monotonic() - killed_at, 1),
        "retry_try_number": retry["try_number"],
        "retry_worker": retry_worker,
    }
