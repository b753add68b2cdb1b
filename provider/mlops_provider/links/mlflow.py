"""Extra links from a task instance to the MLflow UI: the run and the registered model version.

Airflow 3 calls ``get_link`` on the worker when the task finishes and stores the URL in XCom, so the
links read the task's own return value (``run_id`` / ``gate_run_id``, ``name``, ``version``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink, BaseXCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def _result(ti_key: TaskInstanceKey) -> dict[str, Any]:
    # Airflow's own types disagree: get_link receives a TaskInstanceKey (a NamedTuple, read-only fields),
    # get_value asks for a TIKeyProtocol with settable ones; it only reads them.
    value = BaseXCom.get_value(ti_key=ti_key, key="return_value")  # type: ignore[arg-type]
    return value if isinstance(value, dict) else {}


# Both links are attached only to the provider's MLflow operators, whose ``hook`` is an MLflowHook; the
# ``operator`` parameter is typed BaseOperator by Airflow's signature, hence the attr-defined ignores.


class MLflowRunLink(BaseOperatorLink):
    """The MLflow run behind the task: the training run for registration, the gate run for the gate."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        result = _result(ti_key)
        run_id = result.get("gate_run_id") or result.get("run_id")
        if not run_id:
            return ""
        return operator.hook.ui_url_for_run(run_id) or ""  # type: ignore[attr-defined]


class MLflowModelVersionLink(BaseOperatorLink):
    """The registered model version the task registered, evaluated or aliased."""

    name = "MLflow model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        result = _result(ti_key)
        if not result.get("name") or not result.get("version"):
            return ""
        return operator.hook.ui_url_for_model_version(result["name"], result["version"]) or ""  # type: ignore[attr-defined]
