"""The main job of `make demo`, under a real scheduler (airflow standalone on SQLite + mlflow server).

The same code path as `make demo SCENARIO=worse-challenger` (tools.demo.run_pipeline), same sizes:
history is backfilled and its labels validated; the first model is trained on the oldest labelled
day, judged on the newest and promoted at once; the arriving days' features drift (and the churn
relation shifts), the drift monitor raises an alarm on every one of them and batch scoring scores
each; training waits for their labels, then retrains on the shifted day only, the gate finds the
challenger better on the held-out day, and the canary walks it to promotion. A deliberately
under-trained model is then stopped by the gate. Then a script's `airflow dags trigger` re-runs a day,
which must change nothing, and bad conf is refused. One test function, so that one xdist worker runs
the whole flow on one stack.
"""

from __future__ import annotations

import json

import pytest
from tools.demo import (
    HISTORY,
    LABEL_DELAY,
    PIPELINE,
    demo_days,
    drift_summary,
    generate_data,
    generator_config,
    model_summary,
    run_pipeline,
)

from mlops_provider.constants import CANARY_STATE_TAG
from mlops_provider.example_data.generator import activity_table

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("standalone")]

ROWS = 2000
DAYS = demo_days()
ARRIVED = DAYS[HISTORY:]


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
    results = run_pipeline(stack, DAYS, scenario="worse-challenger")

    # Every run succeeds, and the bundle has no import errors.
    states = {dag: [r["state"] for r in runs] for dag, runs in results.items()}
    assert set(states) == set(PIPELINE)
    assert all(s == "success" for runs in states.values() for s in runs), states
    assert len(states["feature_pipeline"]) == len(DAYS), states
    assert len(states["label_pipeline"]) == len(DAYS) - LABEL_DELAY, states
    assert stack.api("importErrors")["total_entries"] == 0

    # The online store holds the newest day's values.
    expected = activity_table(generator_config(DAYS, ROWS), DAYS[-1]).to_pandas().set_index("customer_id")
    got = online(stack, [100_000, 100_000 + ROWS - 1])
    assert got["spend_30d"] == pytest.approx(list(expected.loc[got["customer_id"], "spend_30d"]))

    # Every arriving day was drift-checked against the champion (v1) and raised an alarm, and scored:
    # the arriving days were triggered back to back, so the consumers saw several days per run.
    drift_lines = drift_summary(stack)
    for day in ARRIVED:
        assert any(day.isoformat() in line and "dataset_drift=true" in line for line in drift_lines), (
            day,
            drift_lines,
        )
    from mlops_provider.ml.scoring import read_log

    for day in ARRIVED:
        log = read_log(f"{stack.data_root}/predictions/daily/churn_classifier/date={day}/predictions.parquet")
        assert len(log) == ROWS, day

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    tags = {v: client.get_model_version("churn_classifier", v).tags for v in ("1", "2", "3")}
    # v1: the first model, trained on the oldest labelled day, judged on the next, promoted at once.
    first_labelled = DAYS[0].isoformat()
    assert tags["1"]["mlops.evaluation_window"] == f"{DAYS[1]}/{DAYS[1]}"
    assert tags["1"]["mlops.training_window"].endswith(f"/{first_labelled}")
    assert json.loads(tags["1"][CANARY_STATE_TAG])["status"] == "promoted"
    # v2: retrained once labels covered the drift, on the shifted day only, judged on the next one; the
    # gate found it better than v1 on those held-out rows, and the canary walked every step to promotion.
    shifted, judged = ARRIVED[0], ARRIVED[1]
    assert tags["2"]["mlops.training_window"] == f"{shifted}/{shifted}"
    assert tags["2"]["mlops.evaluation_window"] == f"{judged}/{judged}"
    assert tags["2"]["mlops.gate.decision"] == "pass" and tags["2"]["mlops.gate.champion_version"] == "1"
    assert float(tags["2"]["mlops.gate.difference"]) > 0.02, tags["2"]
    assert float(tags["2"]["mlops.gate.ci_low"]) > 0, tags["2"]  # better, not only non-inferior
    history = json.loads(tags["2"][CANARY_STATE_TAG])["history"]
    assert [e["weight"] for e in history if e["action"] == "hold_passed"] == [5, 25, 50, 100], history
    assert json.loads(tags["2"][CANARY_STATE_TAG])["status"] == "promoted"
    # Training ran on every labels event but trained only when due: before the drift was labelled it
    # waited, and after v2 it did not train again for the same drift.
    training = results["training_pipeline"]
    assert training[0]["run_type"] == "manual" and any(r["run_type"] == "asset_triggered" for r in training)
    # v3: the deliberately worse model was stopped by the gate; nothing rolled out, v2 stays champion.
    assert tags["3"]["mlops.gate.decision"] == "fail", tags["3"]
    assert float(tags["3"]["mlops.gate.ci_high"]) < 0, tags["3"]
    assert CANARY_STATE_TAG not in tags["3"]
    final = versions(client)
    assert final == {"1": {"previous"}, "2": {"champion", "challenger"}, "3": set()}, final
    summary = "\n".join(model_summary(stack))
    assert "canary=promoted" in summary and "gate=fail" in summary

    # Bad conf is refused: a wrong type when the run is created, an unknown key by the first task.
    with pytest.raises(RuntimeError, match="drift_share"):
        stack.airflow("dags", "trigger", "drift_monitor", "--conf", json.dumps({"drift_share": "lots"}))
    stack.airflow("dags", "trigger", "batch_scoring", "--conf", json.dumps({"dya": DAYS[-1].isoformat()}))
    refused = stack.wait_for_runs("batch_scoring", count=len(results["batch_scoring"]) + 1, timeout=300)[-1]
    assert refused["state"] == "failed"
    assert stack.task_state("batch_scoring", refused["dag_run_id"], "validate_conf") == "failed"

    # A script's `airflow dags trigger` re-runs the newest day (downstream paused: each of them is
    # idempotent on its own, tested in tests/dags): success, and nothing changes online.
    for dag_id in PIPELINE[2:]:
        stack.airflow("dags", "pause", dag_id)
    before = online(stack, [100_000, 100_001, 100_002])
    runs_before = len(results["feature_pipeline"])
    stack.airflow("dags", "trigger", "feature_pipeline", "--conf", json.dumps({"day": DAYS[-1].isoformat()}))
    runs = stack.wait_for_runs("feature_pipeline", count=runs_before + 1, timeout=600)
    assert all(r["state"] == "success" for r in runs), runs
    assert online(stack, [100_000, 100_001, 100_002]) == before
    assert versions(client) == final
