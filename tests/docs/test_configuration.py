"""The configuration reference and the production guide stay true to the code they describe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import DAGS_DIR, ROOT

DOCS = ROOT / "docs"


def dag_sections(page: str) -> dict[str, str]:
    """``### <dag_id>`` sections of the configuration reference, each up to the next heading."""
    parts = re.split(r"^(#{2,3} .*)$", page, flags=re.M)
    return {
        head.removeprefix("### ").strip(): body for head, body in zip(parts[1::2], parts[2::2], strict=True)
    }


@pytest.fixture(scope="module")
def shipped_dags(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag.dags


def test_every_param_of_every_shipped_dag_is_in_the_configuration_reference(shipped_dags):
    sections = dag_sections((DOCS / "configuration.md").read_text())
    missing = {
        dag_id: [name for name in dag.params if f"`{name}`" not in sections.get(dag_id, "")]
        for dag_id, dag in shipped_dags.items()
    }
    missing = {dag_id: names for dag_id, names in missing.items() if names}
    assert not missing, (
        f"docs/configuration.md lacks these params under '### <dag_id>': {missing}; add a row for each"
    )


def test_the_local_bundle_in_the_production_guide_is_what_make_demo_configures(tmp_path: Path):
    from airflow.dag_processing.bundles.local import LocalDagBundle
    from tools.local_stack import LocalStack

    page = (DOCS / "production.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", page, flags=re.S)]
    documented = next(b[0] for b in blocks if b[0]["classpath"].endswith("LocalDagBundle"))
    stack = LocalStack(project_dir=ROOT, state_dir=tmp_path)
    (used,) = json.loads(stack.env()["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])

    assert (
        documented["classpath"] == used["classpath"] == "airflow.dag_processing.bundles.local.LocalDagBundle"
    )
    assert documented["name"] == used["name"] and documented["kwargs"].keys() == used["kwargs"].keys()
    bundle = LocalDagBundle(name=used["name"], **used["kwargs"])
    assert bundle.path == DAGS_DIR and bundle.refresh_interval == documented["kwargs"]["refresh_interval"]
