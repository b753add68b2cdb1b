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


def test_every_dag_refuses_unknown_conf_before_anything_runs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        roots = [t.task_id for t in dag.roots]
        assert roots == ["validate_conf"], f"{dag_id} starts with {roots}"


def test_training_schedules_on_labels_and_reads_drift_alarms(dagbag):
    training = dagbag.dags["training_pipeline"]
    schedule = training.timetable.asset_condition
    assert [a.name for a in schedule.objects] == ["labels_churn_labels"]
    # Drift alarms are an inlet of `decide`: they retrain once labels cover them, never on their own.
    assert [i.name for i in training.get_task("decide").inlets] == ["drift_churn_classifier"]
    labels = dagbag.dags["label_pipeline"]
    assert [o.name for o in labels.get_task("announce").outlets] == ["labels_churn_labels"]
    monitor = dagbag.dags["drift_monitor"]
    assert [o.name for o in monitor.get_task("drift_event").outlets] == ["drift_churn_classifier"]
