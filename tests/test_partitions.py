"""Which day a run processes, for every kind of run."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from jinja2 import Environment

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.partitions import (
    PARTITION_MACROS,
    day_window,
    partition_day,
    partition_days,
    resolve_partition_day,
    resolve_partition_days,
    window_days,
)

UTC = dt.UTC


BASE = {
    "day": None,
    "run_type": "scheduled",
    "logical_date": None,
    "data_interval_start": None,
    "run_after": dt.datetime(2026, 3, 10, 9, tzinfo=UTC),
}


def day(**kw):
    return resolve_partition_day(**(BASE | kw))


def days(**kw):
    return [d.isoformat() for d in resolve_partition_days(**(BASE | kw))]


def midnight(iso_day: str) -> str:
    return f"{iso_day}T00:00:00+00:00"


def test_conf_day_wins():
    assert day(day="2026-01-05", data_interval_start=dt.datetime(2026, 2, 1, tzinfo=UTC)) == dt.date(
        2026, 1, 5
    )


def test_bad_conf_day_is_refused_clearly():
    with pytest.raises(ConfigurationError, match="2026-01-31"):
        day(day="Jan 5")


def test_manual_run_uses_its_logical_date_not_the_inferred_interval():
    got = day(
        run_type="manual",
        logical_date=dt.datetime(2026, 1, 3, tzinfo=UTC),
        data_interval_start=dt.datetime(2026, 3, 9, tzinfo=UTC),
    )
    assert got == dt.date(2026, 1, 3)


def test_asset_triggered_run_uses_the_newest_announced_window():
    ends = ["2026-01-03T00:00:00+00:00", "2026-01-05T00:00:00+00:00"]
    assert day(run_type="asset_triggered", asset_window_ends=ends) == dt.date(2026, 1, 4)


def test_scheduled_and_backfill_runs_use_the_interval_start():
    assert day(data_interval_start=dt.datetime(2026, 1, 2, tzinfo=UTC)) == dt.date(2026, 1, 2)


def test_otherwise_the_last_complete_day():
    assert day(run_type="manual") == dt.date(2026, 3, 9)


# --- every day a run processes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (midnight("2026-01-04"), midnight("2026-01-05"), ["2026-01-04"]),
        # a multi-day window announces each day it covers
        (midnight("2026-01-02"), midnight("2026-01-05"), ["2026-01-02", "2026-01-03", "2026-01-04"]),
        # a partial first day is the overlap for late rows, announced by its own run already
        ("2026-01-03T18:00:00+00:00", midnight("2026-01-05"), ["2026-01-04"]),
        # an end within a day announces that day, as partition_day() does
        (midnight("2026-01-03"), "2026-01-04T12:00:00+00:00", ["2026-01-03", "2026-01-04"]),
        # a window within one day (an hourly materialization) announces its day
        ("2026-01-04T05:00:00+00:00", "2026-01-04T06:00:00+00:00", ["2026-01-04"]),
        (None, midnight("2026-01-05"), ["2026-01-04"]),
        # other timezones and naive timestamps (taken as UTC)
        ("2026-01-04T01:00:00+01:00", "2026-01-05T01:00:00+01:00", ["2026-01-04"]),
        ("2026-01-04T00:00:00", "2026-01-05T00:00:00", ["2026-01-04"]),
    ],
)
def test_the_days_one_window_announces(start, end, expected):
    assert [d.isoformat() for d in window_days(start, end)] == expected


def test_several_events_announce_every_day_sorted_once():
    windows = [
        (midnight("2026-01-05"), midnight("2026-01-06")),
        (midnight("2026-01-02"), midnight("2026-01-04")),  # two days
        (midnight("2026-01-03"), midnight("2026-01-04")),  # repeats the 3rd
        ("2026-01-03T18:00:00+00:00", midnight("2026-01-05")),  # overlap, then the 4th
    ]
    got = days(run_type="asset_triggered", asset_windows=windows)
    assert got == ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]
    # partition_day() stays the newest of them
    ends = [end for _, end in windows]
    assert day(run_type="asset_triggered", asset_window_ends=ends).isoformat() == got[-1]


def test_the_conf_day_is_exactly_one_day_even_with_triggering_events():
    windows = [(midnight("2026-01-02"), midnight("2026-01-05"))]
    assert days(day="2026-01-09", run_type="asset_triggered", asset_windows=windows) == ["2026-01-09"]


def test_a_manual_run_is_its_logical_date():
    got = days(
        run_type="manual",
        logical_date=dt.datetime(2026, 1, 3, tzinfo=UTC),
        asset_windows=[(midnight("2026-01-05"), midnight("2026-01-07"))],
    )
    assert got == ["2026-01-03"]


def test_runs_without_windows_are_the_one_day_of_partition_day():
    assert days(data_interval_start=dt.datetime(2026, 1, 2, tzinfo=UTC)) == ["2026-01-02"]
    assert days(run_type="manual") == ["2026-03-09"]
    assert days(run_type="asset_triggered", asset_windows=[]) == ["2026-03-09"]


def test_a_bad_window_bound_is_refused_clearly():
    with pytest.raises(ConfigurationError, match="'yesterday' is not an ISO 8601"):
        window_days("yesterday", midnight("2026-01-05"))


def test_day_window_is_the_utc_day_end_exclusive():
    assert day_window("2026-01-04") == (midnight("2026-01-04"), midnight("2026-01-05"))


def event(**extra):
    return SimpleNamespace(extra=extra)


def asset_context(**kw):
    """The parts of an Airflow context that the partition helpers read; the events are grouped per
    asset, as ``triggering_asset_events`` is."""
    return {
        "dag_run": SimpleNamespace(
            run_type="asset_triggered", run_after=dt.datetime(2026, 3, 10, tzinfo=UTC)
        ),
        "params": {"day": None},
        "logical_date": None,
        "data_interval_start": None,
        "triggering_asset_events": {
            "feast_churn_customer_activity": [
                event(start=midnight("2026-01-04"), end=midnight("2026-01-05")),
                event(start=midnight("2026-01-02"), end=midnight("2026-01-04")),
                event(rows=3),  # no window: not a day
            ],
        },
    } | kw


def test_partition_days_of_a_task_context():
    assert partition_days(asset_context()) == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert partition_day(asset_context()) == "2026-01-04"
    assert partition_days(asset_context(params={"day": "2026-02-01"})) == ["2026-02-01"]
    manual = asset_context(
        dag_run=SimpleNamespace(run_type="manual", run_after=None),
        logical_date=dt.datetime(2026, 1, 7, 15, tzinfo=UTC),
        triggering_asset_events={},
    )
    assert partition_days(manual) == ["2026-01-07"]


def test_partition_days_as_a_template_macro():
    env = Environment(autoescape=True)
    env.globals.update(PARTITION_MACROS)
    rendered = env.from_string("{{ partition_days() | join(',') }}").render(asset_context())
    assert rendered == "2026-01-02,2026-01-03,2026-01-04"
