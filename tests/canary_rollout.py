"""A canary rollout on the batch backend against the session's ``mlflow server``, driven through the
operators as the DAGs drive it: the ``rollout`` fixture shared by the operator, sensor and trigger tests.

Registered in tests/conftest.py, so the fixture is visible everywhere under tests/. A plugin module is
imported before tests/conftest.py's ``pytest_configure`` sets each worker's AIRFLOW_HOME, so nothing here
imports Airflow (or the operators) at module level.
"""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from mlops_provider.constants import CANARY_STATE_TAG
from tests.mlflow_helpers import log_model, task_context, unique_name

STRATEGY = {"steps": [10, 50, 100], "interval_seconds": 0.05, "checks_per_step": 2, "failure_threshold": 1}


@pytest.fixture
def rollout(mlflow_conn, models, eval_data, tmp_path):
    """A fresh registered model whose v1 (the truth) is the champion; returns a helper namespace.

    ``run(operator_class, **kwargs)`` executes an operator with the rollout's name, backend and strategy;
    ``analyse(version, step)`` runs the analysis sensor in the worker (not deferred).
    """
    from mlops_provider.operators.canary import CanaryDeployOperator
    from mlops_provider.operators.mlflow import MLflowRegisterModelOperator
    from mlops_provider.sensors.canary import CanaryAnalysisSensor

    name = unique_name("canary")
    client = MlflowClient(mlflow_conn.tracking_uri)
    config = {
        "traffic_uri": str(eval_data),
        "log_root": str(tmp_path / "predictions"),
        "entity_column": "customer_id",
        "label_column": "churned",
    }
    common = {"name": name, "backend": "batch", "backend_config": config, "strategy": STRATEGY}

    class Rollout:
        def register(self, kind: str, *, new_run: bool = False) -> str:
            run_id = (
                log_model(mlflow_conn.tracking_uri, kind)["run_id"] if new_run else models[kind]["run_id"]
            )
            op = MLflowRegisterModelOperator(task_id="register", name=name, run_id=run_id)
            return op.execute(task_context())["version"]

        def run(self, operator_class, **kwargs):
            return operator_class(task_id="t", **(common | kwargs)).execute(task_context())

        def analyse(self, version: str | None, step: int, **kwargs) -> dict:
            return self.run(CanaryAnalysisSensor, version=version, step=step, deferrable=False, **kwargs)

        def aliases(self) -> dict[str, str]:
            return dict(client.get_registered_model(name).aliases)

        def tags(self, version: str) -> dict[str, str]:
            return client.get_model_version(name, version).tags

        def history(self, version: str) -> list[dict]:
            return json.loads(self.tags(version)[CANARY_STATE_TAG])["history"]

    r = Rollout()
    r.name, r.config, r.common, r.client = name, config, common, client
    first = r.register("truth")
    assert r.run(CanaryDeployOperator, version=first)["status"] == "promoted"
    return r
