"""DAG parse time: each shipped DAG file vs a trivial airflow.sdk DAG, median of 5 fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench.common import median

DAGS = Path(__file__).resolve().parents[2] / "dags"
TRIVIAL = '''
import datetime as dt
from airflow.sdk import DAG, task
with DAG(dag_id="trivial", schedule="@daily", start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
    @task
    def noop():
        return None
    noop()
'''
# The same trivial DAG using the Airflow features our DAGs use (a cron data-interval timetable, an Asset):
# shows how much of the gap is Airflow's own modules rather than ours.
TRIVIAL_WITH_ASSETS = '''
import datetime as dt
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, task
with DAG(dag_id="trivial_assets", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
    @task(outlets=[Asset(name="a", uri="feast://x/y")])
    def noop():
        return None
    noop()
'''
# What the DAG processor does per file: Airflow is already imported, then the file is executed.
PROBE = '''
import sys, time, runpy
import airflow.sdk
from airflow.sdk import DAG, task
t = time.perf_counter()
runpy.run_path(sys.argv[1])
print(time.perf_counter() - t)
'''


# The DAG processor runs with bytecode caching on; a shell with PYTHONDONTWRITEBYTECODE would make every
# parse recompile our modules (but not Airflow's, compiled at install) and inflate the ratio unfairly.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def parse_seconds(path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True,
                         cwd=DAGS, env=ENV)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trivial = Path(tmp) / "trivial_dag.py"
        trivial.write_text(TRIVIAL)
        with_assets = Path(tmp) / "trivial_with_assets.py"
        with_assets.write_text(TRIVIAL_WITH_ASSETS)
        files = [with_assets, *sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))]
        samples: dict[str, list[float]] = {p.name: [] for p in files} | {"trivial": []}
        for p in [trivial, *files]:  # warm-up round, discarded: writes the bytecode caches
            parse_seconds(p)
        for _ in range(5):  # interleaved rounds so every file sees the same noise
            samples["trivial"].append(parse_seconds(trivial))
            for p in files:
                samples[p.name].append(parse_seconds(p))
    base = median(samples["trivial"])
    print("### DAG parse time (target ≤ 1.2× a trivial DAG)\n")
    print("Each file is executed in a fresh interpreter that has already imported airflow.sdk (what the DAG")
    print("processor does per file), with bytecode caches warm; interleaved rounds, median of 5.\n")
    print("| DAG file | median parse (ms) | ratio vs trivial |")
    print("|---|---:|---:|")
    print(f"| trivial airflow.sdk DAG | {base * 1000:.1f} | 1.00 |")
    for name in (p.name for p in files):
        m = median(samples[name])
        print(f"| {name} | {m * 1000:.1f} | {m / base:.2f} |")


if __name__ == "__main__":
    main()
