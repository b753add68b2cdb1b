"""Which day a run processes, for every kind of run."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.partitions import resolve_partition_day

UTC = dt.UTC


def day(**kw):
    base = {
        "day": None,
        "run_type": "scheduled",
        "logical_date": None,
        "data_interval_start": None,
        "run_after": dt.datetime(2026, 3, 10, 9, tzinfo=UTC),
    }
    return resolve_partition_day(**(base | kw))


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
