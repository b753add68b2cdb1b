"""Every shipped DAG loads without import errors and carries what the UI's trigger form needs."""

from __future__ import annotations

import pytest

from tests.conftest import DAGS_DIR


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "feature_pipeline" in dagbag.dag_ids


def test_dags_are_documented_and_owned(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} has no doc_md"
        assert all(t.owner and t.owner != "airflow" for t in dag.tasks), f"{dag_id} has no owner"
        for name, param in dag.params.items():
            assert param.description, f"{dag_id} param {name} has no description"
            assert "type" in param.schema or "enum" in param.schema, f"{dag_id} param {name} has no type"
