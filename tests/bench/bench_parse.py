"""DAG parse time: each shipped DAG file vs a trivial airflow.sdk DAG, median of 5 fresh interpreters."""

from __future__ import annotations

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
# What the DAG processor does per file: Airflow is already imported, then the file is executed.
PROBE = '''
import sys, time, runpy
import airflow.sdk
from airflow.sdk import DAG, task
t = time.perf_counter()
runpy.run_path(sys.argv[1])
print(time.perf_counter() - t)
'''


def parse_seconds(path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True,
                         cwd=DAGS)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trivial = Path(tmp) / "trivial_dag.py"
        trivial.write_text(TRIVIAL)
        files = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
        samples: dict[str, list[float]] = {p.name: [] for p in files} | {"trivial": []}
        for _ in range(5):  # interleaved rounds so every file sees the same noise
            samples["trivial"].append(parse_seconds(trivial))
            for p in files:
                samples[p.name].append(parse_seconds(p))
    base = median(samples["trivial"])
    print("### DAG parse time (target ≤ 1.2× a trivial DAG)\n")
    print("| DAG file | median parse (ms) | ratio vs trivial |")
    print("|---|---:|---:|")
    print(f"| trivial airflow.sdk DAG | {base * 1000:.1f} | 1.00 |")
    for name in (p.name for p in files):
        m = median(samples[name])
        print(f"| {name} | {m * 1000:.1f} | {m / base:.2f} |")


if __name__ == "__main__":
    main()
