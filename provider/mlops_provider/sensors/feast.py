"""Sensor that waits until a Feast feature view's online data is fresh to a given time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from mlops_provider.exceptions import MlopsProviderError
from mlops_provider.hooks.feast import FeastHook, parse_instant


class FeatureFreshnessSensor(BaseSensorOperator):
    """Wait until the registry's materialization intervals of a feature view reach ``fresh_as_of``.

    :param feature_view: the feature view to watch. (templated)
    :param fresh_as_of: ISO 8601 time with timezone the online data must be fresh to. (templated)
    :param feast_conn_id: the Feast connection. (templated)
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poke_interval: seconds between checks.
    :param timeout: seconds before the sensor fails.
    :return: ``{"feature_view", "fresh_until"}`` with the end of the latest materialized interval.
    """

    template_fields: Sequence[str] = ("feature_view", "fresh_as_of", "feast_conn_id")

    def __init__(
        self,
        *,
        feature_view: str,
        fresh_as_of: str = "{{ data_interval_end }}",
        feast_conn_id: str = FeastHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.feature_view = feature_view
        self.fresh_as_of = fresh_as_of
        self.feast_conn_id = feast_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> FeastHook:
        return FeastHook(feast_conn_id=self.feast_conn_id)

    def poke(self, context: Context) -> PokeReturnValue:
        target = parse_instant(self.fresh_as_of, "fresh_as_of")
        fresh_until = self.hook.fresh_until(self.feature_view)
        done = fresh_until is not None and fresh_until >= target
        self.log.info("%s is materialized until %s; waiting for %s", self.feature_view, fresh_until, target)
        return PokeReturnValue(is_done=done, xcom_value=self._result(fresh_until))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        # Imported here: airflow.triggers.base costs ~9 ms on every DAG parse.
        from mlops_provider.triggers.feast import FeatureFreshnessTrigger

        self.defer(
            trigger=FeatureFreshnessTrigger(
                feature_view=self.feature_view,
                fresh_as_of=parse_instant(self.fresh_as_of, "fresh_as_of").isoformat(),
                repo_path=str(self.hook.repo_path),
                config_overrides=self.hook.config_overrides,
                poll_interval=self.poke_interval,
                timeout=self.timeout,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") == "timeout":
            raise AirflowSensorTimeout(f"Feature view {self.feature_view!r}: {event.get('message')}")
        if event.get("status") != "success":
            raise MlopsProviderError(
                f"Feature view {self.feature_view!r} did not become fresh as of {self.fresh_as_of}: "
                f"{event.get('message')}"
            )
        self.log.info(event["message"])
        return {"feature_view": self.feature_view, "fresh_until": event.get("fresh_until")}

    def _result(self, fresh_until: dt.datetime | None) -> dict[str, Any]:
        return {
            "feature_view": self.feature_view,
            "fresh_until": fresh_until.isoformat() if fresh_until else None,
        }
