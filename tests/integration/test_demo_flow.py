"""The main job of `make demo`, under a real scheduler (airflow standalone on SQLite + mlflow server).

The same code path as `make demo` (mlops_provider.demo.run_pipeline) on fewer rows: a backfill of the
feature pipeline; the training pipeline through register and gate, whose challenger Asset starts the
canary rollout (the first model is promoted at once); a retraining whose challenger walks the canary
steps; batch scoring; then a script's `airflow dags trigger` re-running one day, which must change nothing. One test function, so that one
xdist worker runs the whole flow against one stack.
"""

from __future__ import annotations

import json

import pytest

from mlops_provider.demo import FIRST, demo_days, generate_data, model_summary, run_pipeline
from mlops_provider.example_data.generator import GeneratorConfig, activity_table

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("standalone")]

ROWS = 1500
DAYS = demo_days(4)


def online(stack, customer_ids):
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(stack.feature_repo))
    return store.get_online_features(
        features=["customer_activity:spend_30d", "customer_activity:plan"],
        entity_rows=[{"customer_id": c} for c in customer_ids],
    ).to_dict()


def test_demo_flow_under_a_real_scheduler(stack):
    import mlflow

    generate_data(stack, DAYS, ROWS)
    results = run_pipeline(stack, DAYS, hyperparameters=FIRST)

    # Every run succeeds, and the bundle has no import errors.
    states = {dag: [r["state"] for r in runs] for dag, runs in results.items()}
    assert states["feature_pipeline"] == ["success"] * len(DAYS), results
    assert states["training_pipeline"] == ["success", "success"], results
    assert states["canary_rollout"] and set(states["canary_rollout"]) == {"success"}, results
    assert states["batch_scoring"] == ["success"], results
    assert stack.api("importErrors")["total_entries"] == 0

    # The online store holds the newest day's values.
    expected = activity_table(GeneratorConfig(rows_per_day=ROWS), DAYS[-1]).to_pandas().set_index("customer_id")
    got = online(stack, [100_000, 100_000 + ROWS - 1])
    assert got["spend_30d"] == pytest.approx(list(expected.loc[got["customer_id"], "spend_30d"]))
    assert got["plan"] == list(expected.loc[got["customer_id"], "plan"])

    # The first model was registered with lineage, passed the gate and, with no champion, was promoted.
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    first = client.get_model_version("churn_classifier", "1")
    assert first.tags["mlops.gate.decision"] == "pass" and first.tags["mlops.dag_id"] == "training_pipeline"
    assert first.tags["mlops.canary.status"] == "promoted"
    champion = client.get_model_version_by_alias("churn_classifier", "champion")
    # The retrained version either failed the gate (no rollout), or went out as a canary step by step
    # and ended promoted (champion moved, v1 kept as previous) or rolled back (champion untouched).
    second = client.get_model_version("churn_classifier", "2")
    outcome = second.tags.get("mlops.canary.status")
    if second.tags["mlops.gate.decision"] == "fail":
        assert outcome is None and champion.version == "1"
    else:
        history = json.loads(second.tags["mlops.canary.history"])
        assert [e["action"] for e in history[:2]] == ["start", "step_up"], history
        steps = [e["weight"] for e in history if e["action"] == "hold_passed"]
        assert len(steps) == len(set(steps)), history  # no step analysed twice
        assert outcome in ("promoted", "rolled_back"), second.tags
        assert champion.version == ("2" if outcome == "promoted" else "1")
    summary = "\n".join(model_summary(stack))
    assert "champion" in summary and "canary=promoted" in summary

    # Batch scoring wrote the newest day's predictions with the champion.
    from mlops_provider.scoring import read_log

    log = read_log(f"{stack.data_root}/predictions/daily/churn_classifier/date={DAYS[-1]}/predictions.parquet")
    assert len(log) == ROWS and set(log["model_version"]) == {champion.version}

    # A script's `airflow dags trigger` re-runs the newest day: success, and nothing changes online.
    before = online(stack, [100_000, 100_001, 100_002])
    stack.airflow("dags", "trigger", "feature_pipeline", "--conf", json.dumps({"day": DAYS[-1].isoformat()}))
    runs = stack.wait_for_runs("feature_pipeline", count=len(DAYS) + 1, timeout=600)
    assert any(r["run_type"] == "manual" for r in runs)
    assert all(r["state"] == "success" for r in runs), runs
    assert online(stack, [100_000, 100_001, 100_002]) == before
