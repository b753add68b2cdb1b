"""Which day a DAG run processes, the same way for every kind of run.

Airflow 3 gives scheduled and backfill runs of a ``CronDataIntervalTimetable`` a one-day data
interval, but a manual run's interval is inferred from when it was triggered (or is empty), whatever
logical date was given. A daily pipeline needs one answer, so the rule is, first match wins:

1. the run's conf ``day`` (``YYYY-MM-DD``);
2. a manual run's logical date;
3. an asset-triggered run: the last day of the newest window its triggering asset events announce
   (``extra["end"]``, exclusive, as FeastMaterializeOperator writes it);
4. the start of the run's data interval (scheduled runs and backfills);
5. the day before the run was queued (the last complete day).

Use it in templates as ``{{ partition_day() }}``, ``{{ partition_start() }}`` and ``{{ partition_end() }}``
after adding :data:`PARTITION_MACROS` to the DAG's ``user_defined_macros``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import pass_context

from mlops_provider.exceptions import ConfigurationError


def resolve_partition_day(
    *,
    day: str | None,
    run_type: str | None,
    logical_date: dt.datetime | None,
    data_interval_start: dt.datetime | None,
    run_after: dt.datetime | None,
    asset_window_ends: list[str] | None = None,
) -> dt.date:
    """Apply the rule above to plain values."""
    if day:
        try:
            return dt.date.fromisoformat(str(day))
        except ValueError:
            raise ConfigurationError(f"conf 'day' must be a date like 2026-01-31, got {day!r}") from None
    if str(run_type).endswith("manual") and logical_date is not None:
        return logical_date.astimezone(dt.UTC).date()
    if asset_window_ends:
        newest = max(dt.datetime.fromisoformat(end) for end in asset_window_ends)
        return (newest - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    if data_interval_start is not None:
        return data_interval_start.astimezone(dt.UTC).date()
    queued = (run_after or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return queued.date() - dt.timedelta(days=1)


def _asset_window_ends(ctx: Any) -> list[str]:
    events = ctx.get("triggering_asset_events") or {}
    try:
        return [
            e.extra["end"] for per_asset in events.values() for e in per_asset if "end" in (e.extra or {})
        ]
    except (AttributeError, TypeError):
        return []


def _day_from_context(ctx: Any) -> dt.date:
    dag_run = ctx.get("dag_run")
    params = ctx.get("params") or {}
    return resolve_partition_day(
        asset_window_ends=_asset_window_ends(ctx),
        day=params.get("day") if hasattr(params, "get") else None,
        run_type=str(getattr(dag_run, "run_type", "") or ""),
        logical_date=ctx.get("logical_date"),
        data_interval_start=ctx.get("data_interval_start"),
        run_after=getattr(dag_run, "run_after", None),
    )


@pass_context
def partition_day(ctx: Any, offset: int = 0) -> str:
    """``YYYY-MM-DD`` of the run's day, shifted by ``offset`` days."""
    return (_day_from_context(ctx) + dt.timedelta(days=offset)).isoformat()


@pass_context
def partition_start(ctx: Any, hours_before: int | str = 0) -> str:
    """ISO timestamp of the day's first instant, UTC, optionally moved ``hours_before`` earlier."""
    start = dt.datetime.combine(_day_from_context(ctx), dt.time(), dt.UTC)
    return (start - dt.timedelta(hours=int(hours_before or 0))).isoformat()


@pass_context
def partition_end(ctx: Any) -> str:
    """ISO timestamp of the next day's first instant, UTC (exclusive end of the window)."""
    day = _day_from_context(ctx) + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), dt.UTC).isoformat()


PARTITION_MACROS = {
    "partition_day": partition_day,
    "partition_start": partition_start,
    "partition_end": partition_end,
}
