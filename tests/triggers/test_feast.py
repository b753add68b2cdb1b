"""FeatureFreshnessTrigger: serialisation and its success, timeout and error events against real Feast."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil

import pytest

from mlops_provider.example_data.generator import GeneratorConfig, generate
from mlops_provider.hooks.feast import FeastHook
from mlops_provider.triggers.feast import FeatureFreshnessTrigger
from tests.conftest import FEATURE_REPO, START_DAY

VIEW = "customer_activity"
DAY_END = "2026-01-02T00:00:00+00:00"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """An applied repo whose view was materialized up to DAY_END."""
    base = tmp_path_factory.mktemp("feast_trigger")
    repo = base / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    generate(GeneratorConfig(rows_per_day=20), repo / "data" / "offline", START_DAY, 1)
    hook = FeastHook(repo_path=str(repo), config_overrides={})
    hook.apply()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    hook.get_store().materialize(start, start + dt.timedelta(days=1), feature_views=[VIEW])
    return repo


def first_event(trigger: FeatureFreshnessTrigger) -> dict:
    async def collect() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger yielded nothing")

    return asyncio.run(collect())


def trigger(repo, **kwargs) -> FeatureFreshnessTrigger:
    args = {"feature_view": VIEW, "fresh_as_of": DAY_END, "repo_path": str(repo), "poll_interval": 0.01}
    return FeatureFreshnessTrigger(**{**args, **kwargs})


def test_serialize_round_trips():
    original = FeatureFreshnessTrigger(
        VIEW, DAY_END, "/repo", {"online_store": {"type": "redis"}}, 30.0, 600.0
    )
    classpath, kwargs = original.serialize()

    assert classpath == "mlops_provider.triggers.feast.FeatureFreshnessTrigger"
    rebuilt = FeatureFreshnessTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "feature_view": VIEW,
        "fresh_as_of": DAY_END,
        "repo_path": "/repo",
        "config_overrides": {"online_store": {"type": "redis"}},
        "poll_interval": 30.0,
        "timeout": 600.0,
    }


def test_success_once_materialized(repo):
    assert first_event(trigger(repo)) == {
        "status": "success",
        "message": f"{VIEW} is fresh until 2026-01-02 00:00:00+00:00",
        "fresh_until": DAY_END,
    }


def test_timeout_when_not_fresh_enough(repo):
    event = first_event(trigger(repo, fresh_as_of="2026-01-05T00:00:00+00:00", timeout=0.05))
    assert event["status"] == "timeout" and event["fresh_until"] == DAY_END
    assert "not yet 2026-01-05T00:00:00+00:00" in event["message"]


def test_errors_become_error_events(repo, tmp_path):
    unknown = first_event(trigger(repo, feature_view="nope"))
    assert unknown["status"] == "error" and "known views: customer_activity" in unknown["message"]

    no_repo = first_event(trigger(tmp_path))
    assert no_repo["status"] == "error" and "No feature_store.yaml" in no_repo["message"]
