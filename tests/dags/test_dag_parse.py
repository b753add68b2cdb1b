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

# A fresh interpreter per file: this test process has the heavy libraries loaded already.
_PROBE = """
import json, runpy, sys
runpy.run_path(sys.argv[1])
heavy = json.loads(sys.argv[2])
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library(dag_file):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(dag_file), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{dag_file.name} imports {loaded} at parse time; import them inside execute()"


def test_there_are_dag_files():
    assert any(p.name == "feature_pipeline.py" for p in DAG_FILES)
