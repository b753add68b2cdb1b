"""Trigger that waits, in the triggerer, until a Feast feature view is materialized up to a given time."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class FeatureFreshnessTrigger(BaseTrigger):
    """Poll the Feast registry until a view's materialization intervals reach ``fresh_as_of``.

    Takes plain values (the sensor resolves the connection), so it serialises to JSON.

    :param feature_view: the feature view to watch.
    :param fresh_as_of: ISO 8601 time (with timezone) the online data must be fresh to.
    :param repo_path: the feature repo directory (with ``feature_store.yaml``).
    :param config_overrides: overrides merged over ``feature_store.yaml``.
    :param poll_interval: seconds between registry reads.
    :param timeout: give up after this many seconds; None waits for ever.
    """

    def __init__(
        self,
        feature_view: str,
        fresh_as_of: str,
        repo_path: str,
        config_overrides: dict[str, Any] | None = None,
        poll_interval: float = 60.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.feature_view = feature_view
        self.fresh_as_of = fresh_as_of
        self.repo_path = repo_path
        self.config_overrides = config_overrides or {}
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "feature_view": self.feature_view,
                "fresh_as_of": self.fresh_as_of,
                "repo_path": self.repo_path,
                "config_overrides": self.config_overrides,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    def _fresh_until(self) -> dt.datetime | None:
        from mlops_provider.hooks.feast import FeastHook

        hook = FeastHook(repo_path=self.repo_path, config_overrides=self.config_overrides)
        return hook.fresh_until(self.feature_view)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        fresh_until: dt.datetime | None = None
        try:
            target = dt.datetime.fromisoformat(self.fresh_as_of)
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            while True:
                fresh_until = await asyncio.to_thread(self._fresh_until)
                if fresh_until is not None and fresh_until >= target:
                    yield self._event(
                        "success", f"{self.feature_view} is fresh until {fresh_until}", fresh_until
                    )
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    yield self._event(
                        "timeout",
                        f"{self.feature_view} is materialized until {fresh_until or 'never'}, not yet "
                        f"{self.fresh_as_of}, after {self.timeout} s; check the materialization task.",
                        fresh_until,
                    )
                    return
                await asyncio.sleep(self.poll_interval)
        except Exception as err:
            yield self._event(
                "error",
                f"Checking freshness of {self.feature_view}: {type(err).__name__}: {err}",
                fresh_until,
            )

    @staticmethod
    def _event(status: str, message: str, fresh_until: dt.datetime | None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "fresh_until": fresh_until.isoformat() if fresh_until else None,
            }
        )
