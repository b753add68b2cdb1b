"""Extra links resolve on the worker when a task ends, and Airflow stores them as XComs: run a DAG, read them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def run_and_read_xcoms(airflow_db: Path, tmp_path: Path) -> Callable[[Any], dict[str, dict[str, Any]]]:
    """``dag.test()`` a DAG defined in a test module; return ``{task_id: {xcom key: value}}`` of the run.

    dag.test() runs only serialized DAGs, so the DAG is first synced to the (test) metadata database.
    """

    def run(dag: Any) -> dict[str, dict[str, Any]]:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState

        bag = DagBag(dag_folder=str(tmp_path))
        bag.bag_dag(dag)
        DagBundlesManager().sync_bundles_to_db()
        sync_bag_to_db(bag, "dags-folder", None)
        dag_run = dag.test()
        assert dag_run.state == DagRunState.SUCCESS, {
            ti.task_id: ti.state for ti in dag_run.get_task_instances()
        }
        found: dict[str, dict[str, Any]] = {}
        with create_session() as session:
            for row in session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id):
                found.setdefault(row.task_id, {})[row.key] = row.value
        return found

    return run
