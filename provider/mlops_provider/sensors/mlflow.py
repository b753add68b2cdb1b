"""Wait until a registered MLflow model version is READY."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator

from mlops_provider.exceptions import ModelRegistrationFailed
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.links.mlflow import MLflowModelVersionLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class MLflowModelVersionSensor(BaseSensorOperator):
    """Succeed once version ``version`` of ``name`` is READY; fail at once on FAILED_REGISTRATION.

    :param name: registered model name.
    :param version: model version.
    :param mlflow_conn_id: the MLflow connection.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: ``{"name", "version", "status": "READY"}``.
    """

    template_fields = ("name", "version", "mlflow_conn_id")
    operator_extra_links = (MLflowModelVersionLink(),)

    def __init__(
        self,
        *,
        name: str,
        version: str | int,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.name = name
        self.version = version
        self.mlflow_conn_id = mlflow_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def _result(self) -> dict[str, Any]:
        return {"name": self.name, "version": str(self.version), "status": "READY"}

    def poke(self, context: Context) -> bool:
        with self.hook.session() as client:
            mv = client.get_model_version(self.name, str(self.version))
        if mv.status == "FAILED_REGISTRATION":
            raise self._failed(mv.status_message)
        self.log.info("Model %r version %s is %s.", self.name, self.version, mv.status)
        return mv.status == "READY"

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.deferrable or self.poke(context):
            if not self.deferrable:
                super().execute(context)
            return self._result()
        timeout = self.timeout.total_seconds() if isinstance(self.timeout, dt.timedelta) else self.timeout
        # Imported here: airflow.triggers.base costs ~9 ms on every DAG parse.
        from mlops_provider.triggers.mlflow import MLflowModelVersionTrigger

        self.defer(
            trigger=MLflowModelVersionTrigger(
                name=self.name,
                version=str(self.version),
                conn_id=self.mlflow_conn_id,
                poll_interval=float(
                    self.poke_interval
                    if not isinstance(self.poke_interval, dt.timedelta)
                    else self.poke_interval.total_seconds()
                ),
                timeout=timeout,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        status = event.get("status")
        if status == "success":
            return self._result()
        if status == "timeout":
            from airflow.sdk.exceptions import AirflowSensorTimeout

            raise AirflowSensorTimeout(
                f"Model {self.name!r} version {self.version} is {event.get('model_status')} after the sensor "
                "timeout; check the registry and raise the timeout if registration is slow."
            )
        if event.get("model_status") == "FAILED_REGISTRATION":
            raise self._failed(event.get("message"))
        raise RuntimeError(
            f"Waiting for model {self.name!r} version {self.version} failed: {event.get('message')}"
        )

    def _failed(self, message: str | None) -> ModelRegistrationFailed:
        return ModelRegistrationFailed(
            f"Model {self.name!r} version {self.version} failed registration ({message or 'no message'}); "
            "register the model again."
        )
