"""features → training → canary_rollout → batch_scoring with dag.test(), on the batch backend.

A good challenger walks every step and is promoted; a bad one (a constant model) is rolled back at
the first step and the champion never moves; a rollout cut off after its first analysis resumes
without stepping twice; a challenger gated against an earlier champion is refused at the start; batch
scoring then follows the champion. One test function: the scenarios
build on each other's registry state, in order.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_provider.constants import CANARY_STATE_TAG, EVAL_SET_URI_TAG, GATE_CHAMPION_VERSION_TAG
from mlops_provider.ml.scoring import read_log
from tests.dags.conftest import features_then_training, run_dag
from tests.mlflow_helpers import log_model

pytestmark = pytest.mark.xdist_group("canary_rollout")

START = dt.date(2026, 1, 1)
DAYS = 4
ROWS = 1500
MODEL = "churn_classifier"
FAST = {"interval_seconds": 0.2, "checks_per_step": 2, "failure_threshold": 1}


@pytest.fixture(scope="module")
def stack(pipeline_env, dag_mlflow):
    """Four days of features, one training run (v1 = challenger), and the MLflow client."""
    from mlflow import MlflowClient

    run, states = features_then_training(
        pipeline_env,
        dag_mlflow,
        start=START,
        days=DAYS,
        rows=ROWS,
        hyperparameters={"epochs": 6, "hidden": [32], "lr": 0.01},
    )
    assert run.state == "success" and states["challenger_set"] == "success", states
    return {"client": MlflowClient(dag_mlflow.tracking_uri), "server": dag_mlflow, **pipeline_env}


def _canary_dag():
    from canary_rollout import dag

    return dag


def _aliases(client) -> dict[str, str]:
    return dict(client.get_registered_model(MODEL).aliases)


def _challenger(
    client,
    source_version: str | None = None,
    *,
    tracking_uri: str | None = None,
    gated_against: str | None = None,
) -> str:
    """Register a new version (a copy of ``source_version``'s model, or a constant model) as challenger.

    A copy carries its source's tags, the gate's among them; it is re-tagged as the gate would tag a new
    candidate: compared with ``gated_against``, default today's champion.
    """
    if source_version:
        version = client.copy_model_version(f"models:/{MODEL}/{source_version}", MODEL).version
        champion = gated_against or _aliases(client)["champion"]
        client.set_model_version_tag(MODEL, version, GATE_CHAMPION_VERSION_TAG, champion)
    else:
        logged = log_model(tracking_uri, "constant")
        model_id = logged["model_uri"].removeprefix("models:/")
        version = client.create_model_version(
            MODEL, logged["model_uri"], run_id=logged["run_id"], model_id=model_id
        ).version
        # Judged, as every candidate the training pipeline registers, on its held-out evaluation set.
        held_out = client.get_model_version(MODEL, "1").tags[EVAL_SET_URI_TAG]
        client.set_model_version_tag(MODEL, version, EVAL_SET_URI_TAG, held_out)
    client.set_registered_model_alias(MODEL, "challenger", version)
    return str(version)


def _state(client, version: str) -> dict:
    return json.loads(client.get_model_version(MODEL, version).tags[CANARY_STATE_TAG])


def _history(client, version: str) -> list[str]:
    return [entry["action"] for entry in _state(client, version)["history"]]


def test_rollout_scenarios_end_to_end(stack) -> None:
    client, dag = stack["client"], _canary_dag()

    # 1. The first model has no champion to compare with: promoted at once.
    run, states = run_dag(dag, **FAST)
    assert run.state == "success", states
    assert states["promote"] == "success" and states["rollback"] == "skipped", states
    assert _aliases(client)["champion"] == "1"

    # 2. A good challenger (the same model, retrained identically) walks 5 → 25 → 50 → 100 % and is promoted.
    good = _challenger(client, "1")
    run, states = run_dag(dag, **FAST)
    assert run.state == "success", states
    assert [states[f"step_{i}_deploy"] for i in range(1, 5)] == ["success"] * 4, states
    assert states["promote"] == "success" and states["rollback"] == "skipped", states
    aliases = _aliases(client)
    assert aliases["champion"] == good and aliases["previous"] == "1" and "canary" not in aliases
    assert _history(client, good) == ["start", *["step_up", "hold_passed"] * 4, "promote"]
    weights = [
        read_log(f"{stack['root']}/predictions/rollouts/{MODEL}/v{good}/step={i}/predictions.parquet")[
            "canary_weight"
        ].iloc[0]
        for i in range(4)
    ]
    assert weights == [5, 25, 50, 100]

    # 3. A bad challenger (predicts a constant) is rolled back at the first step; the champion stays.
    bad = _challenger(client, tracking_uri=stack["server"].tracking_uri)
    run, states = run_dag(dag, **FAST)
    assert run.state == "success", states
    assert states["step_1_decide"] == "success" and states["rollback"] == "success", states
    assert states["step_2_deploy"] == states["promote"] == "skipped", states
    assert _aliases(client)["champion"] == good and "canary" not in _aliases(client)
    state = _state(client, bad)
    assert state["status"] == "rolled_back"
    assert "step 1 analysis fail" in state["reason"] and "prediction_psi" in state["reason"]
    assert _history(client, bad) == ["start", "step_up", "analysis_failed", "rollback"]

    # 4. Cut off after step 1's analysis (scheduler killed), then run again: no step is taken twice.
    resumed = _challenger(client, good)
    first = dag.partial_subset(task_ids=["step_1_analyse"], include_upstream=True)
    run, states = run_dag(first, **FAST)
    assert states == {
        "validate_conf": "success",
        "start": "success",
        "step_1_deploy": "success",
        "step_1_analyse": "success",
    }, states
    run, states = run_dag(dag, **FAST)
    assert run.state == "success" and states["promote"] == "success", states
    assert _history(client, resumed) == ["start", *["step_up", "hold_passed"] * 4, "promote"]
    assert _aliases(client)["champion"] == resumed and _aliases(client)["previous"] == good

    # 5. A challenger the gate compared with the old champion (promoted over meanwhile) is refused at the
    # start: no canary, no traffic, the champion stays, and the state says to re-run the gate.
    stale = _challenger(client, good, gated_against=good)
    run, states = run_dag(dag, **FAST)
    assert run.state == "failed" and states["start"] == "failed", states
    assert states["step_1_deploy"] == "upstream_failed", states
    assert "canary" not in _aliases(client) and _aliases(client)["champion"] == resumed
    state = _state(client, stale)
    assert state["status"] == "refused" and _history(client, stale) == ["refuse"]
    assert (
        state["reason"]
        == f"gated against champion v{good}, but the champion is now v{resumed}: re-run the gate"
    )

    # 6. Batch scoring honours the split (now champion only) and a re-run writes no duplicate rows.
    from batch_scoring import dag as scoring

    day = (START + dt.timedelta(days=DAYS - 1)).isoformat()
    for _ in range(2):
        run, states = run_dag(scoring, day=day)
        assert run.state == "success", states
    log = read_log(f"{stack['root']}/predictions/daily/{MODEL}/date={day}/predictions.parquet")
    assert len(log) == ROWS and log["customer_id"].is_unique
    assert set(log["variant"]) == {"champion"} and set(log["model_version"]) == {resumed}
    assert log["error"].isna().all() and log["probability"].between(0, 1).all()
