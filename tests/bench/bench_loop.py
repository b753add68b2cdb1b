"""End-to-end loop time on the embedded default, per DAG and per task, from a new day's landing data
to batch scoring with the promoted model.

    python -m tests.bench.bench_loop
    BENCH_LOOP_ROWS=20000 python -m tests.bench.bench_loop            # one size
    BENCH_LOOP_ROWS=100000,1000000 python -m tests.bench.bench_loop   # one column per size

Each size runs in its own interpreter (a private Airflow database, Feast repo, data root and MLflow
server), which streams one JSON line per finished DAG to this process; so a size that runs past
``BENCH_LOOP_DEADLINE_S`` (default 2700, i.e. 45 min, history included) is stopped and still
reports the DAGs it finished. ``BENCH_LOOP_ROWS`` (default ``100000,1000000``) sets the rows per day,
``BENCH_LOOP_DAYS`` (default 5) the days including the new one (labels land two days late, so the
first model needs two labelled days before the new one).

Untimed history, with the shipped DAGs under ``dag.test()``: ``DAYS - 1`` days of features (every
day's customers are the same, so only the last day is materialized: the online store then holds what
it would after all of them), a first model trained with small hyperparameters, and its canary
rollout, which promotes it at once (no champion yet). Then the new day lands with the generator's
drift knob on, and the clock runs over feature_pipeline, drift_monitor, label_pipeline (the labels
that landed that day), training_pipeline (its default hyperparameters, ``retrain_policy=always``, on
the newest labelled day's windows), canary_rollout (every step to promotion, ``interval_seconds=1``,
``checks_per_step=2``) and batch_scoring, one after the other. Prints one markdown section on stdout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.bench.bench_feature_pipeline import _isolate_airflow, _private_repo
from tests.bench.common import markdown_report

ROWS = [int(n) for n in os.environ.get("BENCH_LOOP_ROWS", "100000,1000000").split(",")]
DAYS = int(os.environ.get("BENCH_LOOP_DAYS", 5))
DEADLINE_S = float(os.environ.get("BENCH_LOOP_DEADLINE_S", 2700))
START = dt.date(2026, 1, 1)
# The untimed first model: small and quick, since the deadline counts the history too (these 3 epochs
# took about 2 min at 1M rows here); the timed retraining uses the DAG's own default hyperparameters.
BOOTSTRAP = {"epochs": 3, "hidden": [32], "lr": 0.01, "batch_size": 512}
FAST = {"interval_seconds": 1, "checks_per_step": 2}
LOOP = [
    "feature_pipeline",
    "drift_monitor",
    "label_pipeline",
    "training_pipeline",
    "canary_rollout",
    "batch_scoring",
]


def _run(dag, **conf) -> dict[str, Any]:
    """dag.test(); return its state, wall seconds and each task's state and seconds, in run order."""
    began = time.perf_counter()
    run = dag.test(run_conf=conf)
    wall = time.perf_counter() - began
    tis = sorted(run.get_task_instances(), key=lambda ti: (ti.start_date is None, ti.start_date or 0))
    tasks = {
        ti.task_id: {
            "state": str(ti.state),
            "seconds": (ti.end_date - ti.start_date).total_seconds()
            if ti.start_date and ti.end_date
            else None,
        }
        for ti in tis
    }
    return {"dag": dag.dag_id, "state": str(run.state), "wall": wall, "tasks": tasks}


def _checked(result: dict[str, Any]) -> dict[str, Any]:
    if result["state"] != "success":
        states = {k: v["state"] for k, v in result["tasks"].items()}
        raise RuntimeError(f"{result['dag']} failed: {states}")
    return result


def one_size(rows: int) -> None:
    """Prepare the history and time the loop at ``rows`` per day; stream JSON events on stdout."""
    events = markdown_report()  # the real stdout; library chatter goes to stderr

    def emit(**event: Any) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    # The parent stops a size at its deadline with SIGTERM: leave through `finally`, which stops
    # the MLflow server (its own process group) and removes the work directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"bench_loop {rows:,} rows: stopped at the deadline"))
    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    _isolate_airflow(work / "airflow")
    _private_repo(work)
    os.environ["AIRFLOW_VAR_MLOPS_DATA_ROOT"] = str(work / "data")
    os.environ.pop("MLOPS_OFFLINE_ROOT", None)
    from airflow.utils import db

    from mlops_provider.example_data.generator import GeneratorConfig, generate
    from tests.mlflow_server import MLflowServer

    (work / "mlflow").mkdir()
    server = MLflowServer(work / "mlflow")
    try:
        db.resetdb()
        server.start()
        emit(kind="started", work=str(work), server_pid=server._process.pid)
        os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps(
            {"conn_type": "mlflow", "host": server.tracking_uri}
        )
        from batch_scoring import dag as scoring
        from canary_rollout import dag as canary
        from drift_monitor import dag as monitor
        from feature_pipeline import dag as features
        from label_pipeline import dag as labels
        from training_pipeline import dag as training

        landing = work / "data" / "landing"
        days = [START + dt.timedelta(days=i) for i in range(DAYS)]
        new_day = days[-1].isoformat()
        cfg = GeneratorConfig(rows_per_day=rows, drift_from=days[-1])  # drift on the new day only

        began = time.perf_counter()
        generate(cfg, landing, days[0], DAYS - 1)
        without_materialize = features.partial_subset(task_ids=["publish"], include_upstream=True)
        for day in days[:-2]:
            _checked(_run(without_materialize, day=day.isoformat()))
        _checked(_run(features, day=days[-2].isoformat()))
        delay = dt.timedelta(days=cfg.label_delay_days)
        for day in days[cfg.label_delay_days : -1]:  # the labels that landed during the history
            _checked(_run(labels, day=day.isoformat()))
        first = (days[-2] - delay).isoformat()
        _checked(_run(training, day=first, hyperparameters=BOOTSTRAP))
        _checked(_run(canary, **FAST))  # the first model becomes the champion at once
        emit(kind="history", seconds=time.perf_counter() - began, days=DAYS - 1)

        began = time.perf_counter()
        generate(cfg, landing, days[-1], 1)
        emit(kind="landing", seconds=time.perf_counter() - began, day=new_day)

        loop_began = time.perf_counter()
        emit(kind="dag", **_checked(_run(features, day=new_day)))
        drift = _checked(_run(monitor, day=new_day))
        emit(kind="dag", **drift)
        emit(kind="dag", **_checked(_run(labels, day=new_day)))
        # Timed as a retraining: every day's labels train with retrain_policy=always (the drift policy
        # would wait until the drifted day's own labels land, two days later).
        newest_labelled = (days[-1] - delay).isoformat()
        trained = _checked(_run(training, day=newest_labelled, retrain_policy="always"))
        emit(kind="dag", **trained)
        conf = dict(FAST)
        if trained["tasks"]["challenger_set"]["state"] != "success":
            # The gate kept the champion; roll the new version out anyway, since the rollout is timed.
            from mlflow import MlflowClient

            versions = MlflowClient(server.tracking_uri).search_model_versions("name='churn_classifier'")
            conf["version"] = str(max(int(v.version) for v in versions))
        emit(kind="dag", note="forced" if "version" in conf else "", **_checked(_run(canary, **conf)))
        emit(kind="dag", **_checked(_run(scoring, day=new_day)))
        emit(kind="done", loop=time.perf_counter() - loop_began)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _stop(proc: subprocess.Popen, started: dict[str, Any]) -> None:
    """End a size's interpreter and what it started, and remove its work directory."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if "server_pid" in started:  # normally stopped by the child already
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(started["server_pid"], sig)
            except ProcessLookupError:
                break
            time.sleep(5)
    if "work" in started:
        shutil.rmtree(started["work"], ignore_errors=True)


def _parse_utc(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    stamp = dt.datetime.fromisoformat(value)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _snapshot(work: str) -> dict[str, Any] | None:
    """The newest DAG run in a running size's Airflow database: its tasks' states and seconds so far.

    Read at the deadline, before the size is stopped, so a DAG cut off mid-run still shows the tasks it
    finished and how long the one it was in had run.
    """
    db = Path(work) / "airflow" / "airflow.db"
    if not db.exists():
        return None
    now = dt.datetime.now(dt.UTC)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        run = con.execute(
            "SELECT dag_id, run_id, start_date FROM dag_run ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if run is None:
            return None
        rows = con.execute(
            "SELECT task_id, state, start_date, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?"
            " ORDER BY start_date IS NULL, start_date",
            run[:2],
        ).fetchall()
    tasks = {}
    for task_id, state, start, end in rows:
        start, end = _parse_utc(start), _parse_utc(end)
        seconds = ((end or now) - start).total_seconds() if start else None
        tasks[task_id] = {"state": state if end or not start else "running", "seconds": seconds}
    began = _parse_utc(run[2])
    return {"dag": run[0], "wall": (now - began).total_seconds() if began else None, "tasks": tasks}


def measure(rows: int) -> dict[str, Any]:
    """Run one size in a fresh interpreter until it finishes or the deadline; return what it reported."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_loop", "--rows", str(rows)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    result: dict[str, Any] = {"rows": rows, "dags": {}, "timed_out": False}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            result["timed_out"] = True
            if "landing" in result:
                result["loop_at_stop"] = time.monotonic() - result["landing"]["received"]
            if "work" in result.get("started", {}):
                result["cut"] = _snapshot(result["started"]["work"])
            print(
                f"-- {rows:,} rows: deadline of {DEADLINE_S:.0f} s reached; stopping",
                file=sys.stderr,
                flush=True,
            )
            _stop(proc, result.get("started", {}))
            break
        if line is None:
            proc.wait()
            break
        event = json.loads(line)
        kind = event.pop("kind")
        if kind == "dag":
            result["dags"][event["dag"]] = event
            tasks = ", ".join(
                f"{k} {v['seconds']:.1f}" for k, v in event["tasks"].items() if v["seconds"] is not None
            )
            print(
                f"-- {rows:,} rows: {event['dag']} {event['wall']:.1f} s ({tasks})",
                file=sys.stderr,
                flush=True,
            )
        else:
            result[kind] = event | {"received": time.monotonic()}
            print(f"-- {rows:,} rows: {kind} {event}", file=sys.stderr, flush=True)
    result["returncode"] = proc.returncode
    return result


def _cell(task: dict[str, Any] | None) -> str:
    if task is None or task["state"] is None:  # not in this size's run, or not started
        return "-"
    if task["state"] == "running":
        return f"running when stopped ({task['seconds']:.0f} s in)"
    if task["seconds"] is None or task["state"] != "success":
        return task["state"]
    return f"{task['seconds']:.1f}"


def _cut(result: dict[str, Any], dag: str) -> dict[str, Any] | None:
    """The loop DAG that was running when the size was stopped, if it is ``dag``."""
    cut = result.get("cut")
    return cut if cut and "landing" in result and cut["dag"] == dag and dag not in result["dags"] else None


def _wall(result: dict[str, Any], dag: str) -> str:
    if dag in result["dags"]:
        return f"**{result['dags'][dag]['wall']:.1f}**"
    if cut := _cut(result, dag):
        return f"stopped after {cut['wall']:.0f} s" if cut["wall"] is not None else "stopped"
    if result["timed_out"]:
        return f"not reached ({DEADLINE_S / 60:.0f} min deadline)"
    return f"not reached (exit {result['returncode']})"


def _tasks(result: dict[str, Any], dag: str) -> dict[str, Any]:
    run = result["dags"].get(dag) or _cut(result, dag)
    return run["tasks"] if run else {}


def _total(result: dict[str, Any]) -> str:
    if "done" in result:
        return f"**{result['done']['loop']:.1f}** ({result['done']['loop'] / 60:.1f} min)"
    if "loop_at_stop" in result:
        return f"**not finished**: stopped {result['loop_at_stop']:.0f} s ({result['loop_at_stop'] / 60:.1f} min) in"
    return "**not measured**"


def table(results: list[dict[str, Any]]) -> list[str]:
    """One column per size: each DAG's wall seconds, then its tasks in run order, then the total."""
    head = "| DAG / task (s) | " + " | ".join(f"{r['rows']:,} rows/day" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for dag in LOOP:
        lines.append(f"| **{dag}** | " + " | ".join(_wall(r, dag) for r in results) + " |")
        for task in dict.fromkeys(t for r in results for t in _tasks(r, dag)):
            cells = [_cell(_tasks(r, dag).get(task)) for r in results]
            lines.append(f"| &nbsp;&nbsp;{task} | " + " | ".join(cells) + " |")
    lines.append("| **loop: landing → batch scoring** | " + " | ".join(_total(r) for r in results) + " |")
    history = [f"{r['history']['seconds']:.0f}" if "history" in r else "not finished" for r in results]
    lines.append("| _untimed: history (features, first model, its rollout)_ | " + " | ".join(history) + " |")
    landing = [f"{r['landing']['seconds']:.1f}" if "landing" in r else "-" for r in results]
    lines.append("| _untimed: writing the new day's landing files_ | " + " | ".join(landing) + " |")
    return lines


def notes(results: list[dict[str, Any]]) -> list[str]:
    """What each size's numbers mean: gate and rollout outcomes, and what was not measured and why."""
    out = []
    for r in results:
        dags, size = r["dags"], f"{r['rows']:,} rows/day"
        if "drift_monitor" in dags:
            fired = dags["drift_monitor"]["tasks"]["drift_event"]["state"] == "success"
            out.append(
                f"- {size}: the drift monitor {'fired' if fired else '**did not fire**'} on the new day."
            )
        if "canary_rollout" in dags:
            tasks = dags["canary_rollout"]["tasks"]
            outcome = "promoted" if tasks["promote"]["state"] == "success" else "**rolled back**"
            how = (
                " (the gate kept the champion; the newest version was rolled out anyway, as the rollout is what is timed)"
                if dags["canary_rollout"].get("note") == "forced"
                else " (the gate set it as challenger)"
            )
            out.append(f"- {size}: the retrained model was {outcome} by the canary{how}.")
        if "done" in r:
            continue
        if not r["timed_out"]:
            out.append(
                f"- {size}: **the loop was not measured**: the run exited with code {r['returncode']} "
                "(its stderr says why)."
            )
            continue
        where = ""
        if cut := r.get("cut"):
            running = [t for t, v in cut["tasks"].items() if v["state"] == "running"]
            where = f", in {cut['dag']}" + (f" (task {', '.join(running)} running)" if running else "")
        if "landing" not in r:
            out.append(
                f"- {size}: **the loop was not measured**: the untimed history did not finish within the "
                f"{DEADLINE_S / 60:.0f}-minute deadline and the run was stopped{where}."
            )
            continue
        unfinished = [d for d in LOOP if d not in dags]
        out.append(
            f"- {size}: **the loop was not measured in full**: the run reached the {DEADLINE_S / 60:.0f}-minute "
            f"deadline (history included) and was stopped{where}. Not measured: "
            f"{', '.join(unfinished)} (a stopped DAG shows the tasks it finished), and so the loop total."
        )
    return out


def main() -> None:
    report = markdown_report()
    results = []
    for rows in ROWS:
        print(f"== bench_loop: {rows:,} rows per day, {DAYS} days", file=sys.stderr, flush=True)
        results.append(measure(rows))
    lines = [
        "### End-to-end loop, per DAG and per task (issue target: 1M rows per day)",
        "",
        f"The shipped DAGs with `dag.test()` in one process, on {DAYS - 1} days of history prepared untimed",
        "(features, a first model and its rollout, which promotes it at once). Then the new day lands with the",
        "generator's drift knob on, and the clock runs from its landing files to the end of batch scoring:",
        "feature_pipeline → drift_monitor → training_pipeline (the DAG's default hyperparameters) →",
        "canary_rollout (every step to promotion; `interval_seconds=1`, `checks_per_step=2`) → batch_scoring.",
        "DAGs run back to back, so the scheduler's latency between Asset events is not counted; under the",
        "scheduler, batch_scoring also starts on the features Asset, next to the drift monitor, and the",
        "training pipeline may run a second time (features or drift), reusing the model. Task seconds are",
        "Airflow's task durations; a DAG's wall time also holds `dag.test()`'s own scheduling. One run per",
        f"size, each stopped at {DEADLINE_S / 60:.0f} min.",
        "",
        *table(results),
        "",
        *notes(results),
    ]
    report.write("\n".join(lines) + "\n")
    report.flush()
    # A size stopped at its deadline is a result (reported above); one that crashed is a failure.
    if any("done" not in r and not r["timed_out"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rows"]:
        one_size(int(sys.argv[2]))
    else:
        main()
