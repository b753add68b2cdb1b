"""Wait in the triggerer until a registered model version leaves PENDING_REGISTRATION."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlops_provider.hooks.mlflow import MLflowHook, strip_userinfo


class MLflowModelVersionTrigger(BaseTrigger):
    """Poll a model version until it is READY or FAILED_REGISTRATION.

    Serialised arguments land in Airflow's database, so they hold a connection id and never
    credentials; the hook resolves the connection inside :meth:`run`.

    :param name: registered model name.
    :param version: model version.
    :param conn_id: the MLflow connection id.
    :param tracking_uri: optional override of the connection's tracking URI (credentials are stripped).
    :param registry_uri: optional override of the registry URI (credentials are stripped).
    :param poll_interval: seconds between polls.
    :param timeout: seconds before a ``timeout`` event; None waits forever.
    """

    def __init__(
        self,
        name: str,
        version: str,
        conn_id: str = MLflowHook.default_conn_name,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        poll_interval: float = 5.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.version = str(version)
        self.conn_id = conn_id
        self.tracking_uri = strip_userinfo(tracking_uri) if tracking_uri else None
        self.registry_uri = strip_userinfo(registry_uri) if registry_uri else None
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "version": self.version,
                "conn_id": self.conn_id,
                "tracking_uri": self.tracking_uri,
                "registry_uri": self.registry_uri,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    def _status(self, hook: MLflowHook) -> tuple[str, str]:
        with hook.session() as client:
            mv = client.get_model_version(self.name, self.version)
        return str(mv.status), mv.status_message or ""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        base = {"name": self.name, "version": self.version}
        try:
            hook = MLflowHook(self.conn_id, tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            while True:
                status, message = await asyncio.to_thread(self._status, hook)
                if status == "READY":
                    yield TriggerEvent({**base, "status": "success", "model_status": status})
                    return
                if status == "FAILED_REGISTRATION":
                    yield TriggerEvent(
                        {**base, "status": "error", "model_status": status, "message": message}
                    )
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    yield TriggerEvent(
                        {
                            **base,
                            "status": "timeout",
                            "model_status": status,
                            "message": f"still {status} after {self.timeout} s",
                        }
                    )
                    return
                await asyncio.sleep(self.poll_interval)
        except Exception as err:
            yield TriggerEvent(
                {**base, "status": "error", "model_status": None, "message": f"{type(err).__name__}: {err}"}
            )
