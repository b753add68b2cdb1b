"""`airflow dags trigger feature_pipeline` under a real scheduler (airflow standalone on SQLite)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_provider.example_data.generator import GeneratorConfig, activity_table, generate

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("standalone")]


def test_triggered_and_scheduled_runs_fill_the_online_store(stack):
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    day_before = yesterday - dt.timedelta(days=1)
    cfg = GeneratorConfig(rows_per_day=200)
    generate(cfg, stack.data_root / "landing", day_before, 2)
    stack.wait_for_dags(["feature_pipeline"])

    # A script's trigger for one day, then unpausing lets the scheduler run the latest interval itself.
    stack.airflow("dags", "trigger", "feature_pipeline", "--conf", json.dumps({"day": day_before.isoformat()}))
    stack.airflow("dags", "unpause", "feature_pipeline")
    runs = stack.wait_for_runs("feature_pipeline", count=2, timeout=900)

    assert [r["state"] for r in runs] == ["success", "success"], runs
    assert {r["run_type"] for r in runs} == {"manual", "scheduled"}
    errors = stack.api("importErrors")
    assert errors["total_entries"] == 0, errors

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(stack.feature_repo))
    online = store.get_online_features(
        features=["customer_activity:spend_30d", "customer_activity:plan"],
        entity_rows=[{"customer_id": 100_000}, {"customer_id": 100_199}],
    ).to_dict()
    expected = activity_table(cfg, yesterday).to_pandas().set_index("customer_id")
    assert online["spend_30d"] == pytest.approx(list(expected.loc[[100_000, 100_199], "spend_30d"]))
    assert online["plan"] == list(expected.loc[[100_000, 100_199], "plan"])
