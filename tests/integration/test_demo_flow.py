"""The main job of `make demo`, under a real scheduler (airflow standalone on SQLite + mlflow server).

The same code path as `make demo` (mlops_provider.demo.run_pipeline) on fewer rows: a backfill of the
feature pipeline, then the training pipeline through register and gate; then a script's
`airflow dags trigger` re-running one day, which must change nothing. One test function, so that one
xdist worker runs the whole flow against one stack.
"""

from __future__ import annotations

import json

import pytest

from mlops_provider.demo import demo_days, generate_data, model_summary, run_pipeline
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
    results = run_pipeline(stack, DAYS, hyperparameters={"epochs": 8, "hidden": [32], "lr": 0.01})

    # Every run succeeds, and the bundle has no import errors.
    states = {dag: [r["state"] for r in runs] for dag, runs in results.items()}
    assert states["feature_pipeline"] == ["success"] * len(DAYS), results
    assert states["training_pipeline"] == ["success"], results
    assert stack.api("importErrors")["total_entries"] == 0

    # The online store holds the newest day's values.
    expected = activity_table(GeneratorConfig(rows_per_day=ROWS), DAYS[-1]).to_pandas().set_index("customer_id")
    got = online(stack, [100_000, 100_000 + ROWS - 1])
    assert got["spend_30d"] == pytest.approx(list(expected.loc[got["customer_id"], "spend_30d"]))
    assert got["plan"] == list(expected.loc[got["customer_id"], "plan"])

    # The trained model is registered with lineage and passed the gate.
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    challenger = client.get_model_version_by_alias("churn_classifier", "challenger")
    assert challenger.tags["mlops.gate.decision"] == "pass"
    assert challenger.tags["mlops.dag_id"] == "training_pipeline"
    assert any("challenger" in line for line in model_summary(stack))

    # A script's `airflow dags trigger` re-runs the newest day: success, and nothing changes online.
    before = online(stack, [100_000, 100_001, 100_002])
    stack.airflow("dags", "trigger", "feature_pipeline", "--conf", json.dumps({"day": DAYS[-1].isoformat()}))
    runs = stack.wait_for_runs("feature_pipeline", count=len(DAYS) + 1, timeout=600)
    assert any(r["run_type"] == "manual" for r in runs)
    assert all(r["state"] == "success" for r in runs), runs
    assert online(stack, [100_000, 100_001, 100_002]) == before
