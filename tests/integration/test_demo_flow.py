"""The main job of `make demo`, under a real scheduler (airflow standalone on SQLite + mlflow server).

The same code path as `make demo` (tools.demo.run_pipeline) on fewer rows: a backfill of the
feature pipeline; the first model trained on demand and promoted at once; then the last, drifted day
lands and everything else follows by Assets: drift monitor, retraining, gate, canary walk, promotion,
batch scoring. Then a script's `airflow dags trigger` re-runs that day, which must change nothing, and
bad conf is refused. One test function, so that one xdist worker runs the whole flow on one stack.
"""

from __future__ import annotations

import json

import pytest
from tools.demo import (
    FIRST,
    PIPELINE,
    demo_days,
    drift_summary,
    generate_data,
    model_summary,
    run_pipeline,
)

from mlops_provider.constants import CANARY_STATE_TAG
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


def versions(client) -> dict[str, set[str]]:
    found = client.search_model_versions("name='churn_classifier'")
    return {v.version: set(client.get_model_version("churn_classifier", v.version).aliases) for v in found}


def test_demo_flow_under_a_real_scheduler(stack):
    import mlflow

    generate_data(stack, DAYS, ROWS)
    results = run_pipeline(stack, DAYS, hyperparameters=FIRST)

    # Every run succeeds, and the bundle has no import errors.
    states = {dag: [r["state"] for r in runs] for dag, runs in results.items()}
    assert set(states) == set(PIPELINE)
    assert all(s == "success" for runs in states.values() for s in runs), states
    assert len(states["feature_pipeline"]) == len(DAYS), states
    assert states["drift_monitor"] and states["batch_scoring"], states
    assert stack.api("importErrors")["total_entries"] == 0

    # The online store holds the newest day's values.
    cfg = GeneratorConfig(rows_per_day=ROWS, drift_from=DAYS[-1])
    expected = activity_table(cfg, DAYS[-1]).to_pandas().set_index("customer_id")
    got = online(stack, [100_000, 100_000 + ROWS - 1])
    assert got["spend_30d"] == pytest.approx(list(expected.loc[got["customer_id"], "spend_30d"]))
    assert got["plan"] == list(expected.loc[got["customer_id"], "plan"])

    # The drift monitor found the generator's drift on the last day, and its Asset started a training run.
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    drift_lines = drift_summary(stack)
    assert any(DAYS[-1].isoformat() in line and "dataset_drift=true" in line for line in drift_lines), (
        drift_lines
    )
    triggers = [r["run_type"] for r in results["training_pipeline"]]
    assert triggers[0] == "manual" and "asset_triggered" in triggers[1:], triggers

    # The first model was registered with lineage, passed the gate and, with no champion, was promoted.
    first = client.get_model_version("churn_classifier", "1")
    assert first.tags["mlops.gate.decision"] == "pass" and first.tags["mlops.dag_id"] == "training_pipeline"
    assert json.loads(first.tags[CANARY_STATE_TAG])["status"] == "promoted"
    # The retrained version went out as a canary step by step and was promoted: champion moved, v1 kept
    # as previous; the drift-triggered run for the same data reused it (no third version).
    second = client.get_model_version("churn_classifier", "2")
    history = json.loads(second.tags[CANARY_STATE_TAG])["history"]
    assert [e["action"] for e in history[:2]] == ["start", "step_up"], history
    steps = [e["weight"] for e in history if e["action"] == "hold_passed"]
    assert steps == [5, 25, 50, 100], history  # every step analysed once
    assert json.loads(second.tags[CANARY_STATE_TAG])["status"] == "promoted", second.tags
    final = versions(client)
    assert final == {"1": {"previous"}, "2": {"champion", "challenger"}}, final
    summary = "\n".join(model_summary(stack))
    assert "champion" in summary and "canary=promoted" in summary

    # Batch scoring wrote the newest day's predictions.
    from mlops_provider.ml.scoring import read_log

    log = read_log(
        f"{stack.data_root}/predictions/daily/churn_classifier/date={DAYS[-1]}/predictions.parquet"
    )
    assert len(log) == ROWS

    # Bad conf is refused: a wrong type when the run is created, an unknown key by the first task.
    with pytest.raises(RuntimeError, match="drift_share"):
        stack.airflow("dags", "trigger", "drift_monitor", "--conf", json.dumps({"drift_share": "lots"}))
    stack.airflow("dags", "trigger", "batch_scoring", "--conf", json.dumps({"dya": DAYS[-1].isoformat()}))
    refused = stack.wait_for_runs("batch_scoring", count=len(results["batch_scoring"]) + 1, timeout=300)[-1]
    assert refused["state"] == "failed"
    assert stack.task_state("batch_scoring", refused["dag_run_id"], "validate_conf") == "failed"
    assert stack.task_state("batch_scoring", refused["dag_run_id"], "features") == "upstream_failed"

    # A script's `airflow dags trigger` re-runs the newest day (downstream paused: each of them is
    # idempotent on its own, tested in tests/dags): success, and nothing changes online.
    for dag_id in PIPELINE[1:]:
        stack.airflow("dags", "pause", dag_id)
    before = online(stack, [100_000, 100_001, 100_002])
    stack.airflow("dags", "trigger", "feature_pipeline", "--conf", json.dumps({"day": DAYS[-1].isoformat()}))
    runs = stack.wait_for_runs("feature_pipeline", count=len(DAYS) + 1, timeout=600)
    assert [r["run_type"] for r in runs].count("manual") == 2  # today's landing, and this re-run
    assert all(r["state"] == "success" for r in runs), runs
    assert online(stack, [100_000, 100_001, 100_002]) == before
    assert versions(client) == final
