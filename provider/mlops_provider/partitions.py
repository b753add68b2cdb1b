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

One asset-triggered run may stand for several days: while a consumer with ``max_active_runs=1`` runs,
the Asset events of further materializations (a backfill) queue, and Airflow starts ONE run with all
of them. :func:`partition_days` lists every day those events announce (``partition_days(context)`` in a
``@task``, ``{{ partition_days() }}`` in a template), so a DAG can map its tasks over them; for any
other run it is the one day above. A window announces the day of its last instant and
every earlier day it covers whole: a partial first day is the overlap re-loaded for late rows
(``materialize_overlap_hours``), whose own run announced it already.
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
    if logical_date is not None and _is_manual(run_type):
        return logical_date.astimezone(dt.UTC).date()
    if asset_window_ends:
        return _last_day(max(_instant(end) for end in asset_window_ends))
    if data_interval_start is not None:
        return data_interval_start.astimezone(dt.UTC).date()
    queued = (run_after or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return queued.date() - dt.timedelta(days=1)


def resolve_partition_days(
    *,
    day: str | None,
    run_type: str | None,
    logical_date: dt.datetime | None,
    data_interval_start: dt.datetime | None,
    run_after: dt.datetime | None,
    asset_windows: list[tuple[str | None, str]] | None = None,
) -> list[dt.date]:
    """Every day a run processes, sorted, each once: the days that its triggering asset windows
    (``(start, end)`` pairs, ``start`` may be None) announce, else the one day of the rule above."""
    if asset_windows and not day and not (logical_date is not None and _is_manual(run_type)):
        return sorted({d for start, end in asset_windows for d in window_days(start, end)})
    return [
        resolve_partition_day(
            day=day,
            run_type=run_type,
            logical_date=logical_date,
            data_interval_start=data_interval_start,
            run_after=run_after,
        )
    ]


def window_days(start: str | None, end: str) -> list[dt.date]:
    """Days one announced window ``[start, end)`` stands for: the day of its last instant, and every
    earlier day it covers whole (only the last day when ``start`` is None)."""
    last = _last_day(_instant(end))
    first = last
    if start is not None:
        begin = _instant(start)
        first = begin.date() if begin.time() == dt.time() else begin.date() + dt.timedelta(days=1)
    first = min(first, last)  # a window within one day still announces that day
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def day_window(day: str) -> tuple[str, str]:
    """``(start, end)`` ISO timestamps of one ``YYYY-MM-DD`` day, UTC, end exclusive."""
    start = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC)
    return start.isoformat(), (start + dt.timedelta(days=1)).isoformat()


def _is_manual(run_type: str | None) -> bool:
    return str(run_type).endswith("manual")


def _instant(text: str) -> dt.datetime:
    """An ISO 8601 timestamp in UTC; one without a timezone is taken as UTC."""
    try:
        value = dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise ConfigurationError(
            f"Asset event window bound {text!r} is not an ISO 8601 timestamp like 2026-01-31T00:00:00+00:00."
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _last_day(end: dt.datetime) -> dt.date:
    """The day of the last instant before an exclusive ``end``."""
    return (end - dt.timedelta(microseconds=1)).date()


def _asset_windows(ctx: Any) -> list[tuple[str | None, str]]:
    """``(start, end)`` of each triggering asset event whose extra has an ``end``."""
    events = ctx.get("triggering_asset_events") or {}
    try:
        extras = [e.extra or {} for per_asset in events.values() for e in per_asset]
    except (AttributeError, TypeError):
        return []
    return [(extra.get("start"), extra["end"]) for extra in extras if "end" in extra]


def _run_values(ctx: Any) -> dict[str, Any]:
    dag_run = ctx.get("dag_run")
    params = ctx.get("params") or {}
    return {
        "day": params.get("day") if hasattr(params, "get") else None,
        "run_type": str(getattr(dag_run, "run_type", "") or ""),
        "logical_date": ctx.get("logical_date"),
        "data_interval_start": ctx.get("data_interval_start"),
        "run_after": getattr(dag_run, "run_after", None),
    }


def _day_from_context(ctx: Any) -> dt.date:
    ends = [end for _, end in _asset_windows(ctx)]
    return resolve_partition_day(asset_window_ends=ends, **_run_values(ctx))


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


@pass_context
def partition_days(ctx: Any) -> list[str]:
    """``YYYY-MM-DD`` of every day the run processes (see :func:`resolve_partition_days`), oldest first.

    Also a plain function of a task's context: ``partition_days(context)`` in a ``@task``.
    """
    days = resolve_partition_days(asset_windows=_asset_windows(ctx), **_run_values(ctx))
    return [d.isoformat() for d in days]


PARTITION_MACROS = {
    "partition_day": partition_day,
    "partition_days": partition_days,
    "partition_start": partition_start,
    "partition_end": partition_end,
}
