"""The MLflow extra links read the task's own return value and point at the run and the model version.

The task runs in ``dag.test()`` against the session's real ``mlflow server``; the links ask the task's
hook for the UI URLs, as they do on a worker.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from mlflow import MlflowClient

from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.links.mlflow import MLflowModelVersionLink, MLflowRunLink
from tests.mlflow_helpers import connection_env

UI = "https://mlflow.example.com"


class Returns(BaseOperator):
    """Returns ``result`` as its XCom, with an MLflow hook as the provider's operators have."""

    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())

    def __init__(self, *, result: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result = result

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook()

    def execute(self, context: Any) -> Any:
        return self.result


def test_links_point_at_the_run_the_gate_run_and_the_version(
    run_and_read_xcoms, mlflow_server, monkeypatch
) -> None:
    from airflow.sdk import DAG

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(mlflow_server.tracking_uri, ui_base_url=UI)
    )
    client = MlflowClient(mlflow_server.tracking_uri)
    experiment = client.create_experiment(f"links-{dt.datetime.now(dt.UTC).timestamp()}")
    training, gate = client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id

    with DAG("mlflow_links_unit", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as dag:
        Returns(task_id="register", result={"name": "churn model", "version": "3", "run_id": training})
        Returns(
            task_id="gate", result={"name": "churn", "version": 4, "run_id": training, "gate_run_id": gate}
        )
        Returns(task_id="nothing", result=None)
        Returns(task_id="partial", result={"name": "churn", "version": None, "run_id": ""})

    links = {
        task: {k: v for k, v in xcoms.items() if k.startswith("_link_")}
        for task, xcoms in run_and_read_xcoms(dag).items()
    }

    assert links["register"] == {
        "_link_MLflowRunLink": f"{UI}/#/experiments/{experiment}/runs/{training}",
        "_link_MLflowModelVersionLink": f"{UI}/#/models/churn%20model/versions/3",
    }
    assert links["gate"] == {  # the gate's own run, not the training run it judged
        "_link_MLflowRunLink": f"{UI}/#/experiments/{experiment}/runs/{gate}",
        "_link_MLflowModelVersionLink": f"{UI}/#/models/churn/versions/4",
    }
    assert (
        links["nothing"]
        == links["partial"]
        == {"_link_MLflowRunLink": "", "_link_MLflowModelVersionLink": ""}
    )


def test_without_a_web_ui_the_links_are_empty(run_and_read_xcoms, monkeypatch, tmp_path) -> None:
    from airflow.sdk import DAG

    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(f"sqlite:///{store}"))
    with DAG("mlflow_links_no_ui", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as dag:
        Returns(task_id="register", result={"name": "churn", "version": "1", "run_id": "abc"})

    xcoms = run_and_read_xcoms(dag)["register"]

    assert xcoms["_link_MLflowRunLink"] == "" and xcoms["_link_MLflowModelVersionLink"] == ""
    assert not store.exists()  # decided from the connection alone, without opening the store
    assert [link.name for link in Returns.operator_extra_links] == ["MLflow run", "MLflow model version"]
