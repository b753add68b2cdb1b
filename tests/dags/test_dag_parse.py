"""DAG files parse cheaply: no heavy library is imported on the scheduler's parse path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import DAGS_DIR

HEAVY = [
    "feast",
    "great_expectations",
    "mlflow",
    "torch",
    "kubernetes",
    "pandas",
    "pyarrow",
    "boto3",
    "sklearn",
]
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))

# A fresh interpreter per file: this test process has the heavy libraries loaded already. The probe first
# builds an Asset, as every DAG processor does before long: that loads the installed providers' asset URI
# handlers, and the amazon provider's (production extra) imports boto3. What Airflow itself loads is not
# the DAG file's doing; only the modules the file adds are counted.
PROBE = """
import json, runpy, sys
from airflow.sdk import Asset
Asset(name="probe", uri="probe://warm-up")
before = set(sys.modules)
runpy.run_path(sys.argv[1])
added = {m.split('.')[0] for m in set(sys.modules) - before}
print(json.dumps(sorted(added & set(json.loads(sys.argv[2])))))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library(dag_file):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(dag_file), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{dag_file.name} imports {loaded} at parse time; import them inside execute()"


def test_there_are_dag_files():
    assert any(p.name == "feature_pipeline.py" for p in DAG_FILES)
