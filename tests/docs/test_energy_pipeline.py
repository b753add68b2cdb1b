"""docs/examples/energy/: the second reference pipeline (a regression) runs end to end with dag.test().

A temporary copy of the folder is its own DAG bundle, with its own Feast repo and data root, against the
session's real ``mlflow server``. Day 2026-01-04 trains v1 (the first model: smoke-tested, then promoted
at once); day 2026-01-08, after the relation shifted on 2026-01-05, trains v2 on shifted days, which
beats v1 on the gate's held-out day and walks the canary to promotion. A landing file whose target
column was renamed is quarantined.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys

import pytest

from mlops_provider.constants import (
    CANARY_STATE_TAG,
    GATE_CI_HIGH_TAG,
    GATE_CI_LOW_TAG,
    GATE_DECISION_TAG,
    GATE_N_TAG,
    TASK_TYPE_TAG,
)
from tests.conftest import ROOT
from tests.dags.test_dag_parse import HEAVY, PROBE

pytestmark = pytest.mark.xdist_group("energy_pipeline")

EXAMPLE = ROOT / "docs" / "examples" / "energy"
DAG_ID = "energy_demand_pipeline"
MODEL = "energy_demand_regressor"
FIRST_DAY, SHIFT_FROM, SECOND_DAY = "2026-01-04", "2026-01-05", "2026-01-08"
METERS = 1000
FEATURES = {"temperature_c", "kwh_today", "household_size", "tariff", "region"}
NOT_FEATURES = {"meter_id", "reading_time", "kwh_next_day"}
# Short canary polls: one passing poll per step, 0.2 s apart.
FAST = {"canary_interval_seconds": 0.2, "canary_checks_per_step": 1}
STEPS = 3


@pytest.fixture(scope="module")
def energy(tmp_path_factory, airflow_db, mlflow_server):
    """The example copied to a temporary folder that is a DAG bundle, wired to its connections."""
    from airflow.dag_processing.dagbag import DagBag
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("energy")
    pipeline = root / "energy"
    shutil.copytree(EXAMPLE, pipeline, ignore=shutil.ignore_patterns("data", "__pycache__"))
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "energy-example", "classpath": local, "kwargs": {"path": str(pipeline)}},
        {"name": "dags-folder", "classpath": local, "kwargs": {}},  # Airflow's default bundle, kept
    ]
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    feast = {"conn_type": "feast", "extra": {"repo_path": str(pipeline / "feature_repo")}}
    mp.setenv("AIRFLOW_CONN_FEAST_ENERGY", json.dumps(feast))
    mlflow = {"conn_type": "mlflow", "host": mlflow_server.tracking_uri}
    mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(mlflow))
    mp.setenv("AIRFLOW_VAR_ENERGY_DATA_ROOT", str(root / "data"))
    bag = DagBag(dag_folder=str(pipeline))
    assert bag.import_errors == {}
    yield {
        "dag": bag.dags[DAG_ID],
        "data": root / "data",
        "pipeline": pipeline,
        "client": MlflowClient(mlflow_server.tracking_uri),
    }
    mp.undo()


def run_dag(dag, **conf):
    """dag.test() with a run conf; the run and ``{task_id: [state of each (mapped) instance]}``."""
    run = dag.test(run_conf=conf)
    states: dict[str, list[str | None]] = {}
    for ti in sorted(run.get_task_instances(), key=lambda ti: (ti.task_id, ti.map_index)):
        states.setdefault(ti.task_id, []).append(ti.state)
    return run, states


def succeeded_but_rollback(states: dict[str, list[str | None]]) -> bool:
    """Every task instance succeeded; only the rollback branch was skipped."""
    others = [s for task_id, each in states.items() if task_id != "rollback" for s in each]
    return states["rollback"] == ["skipped"] and set(others) == {"success"}


def xcom(run, task_id: str):
    return run.get_task_instance(task_id).xcom_pull(task_ids=task_id)


@pytest.fixture(scope="module")
def first(energy):
    """Day 2026-01-04: v1, trained on 01-01..01-03, gated (no champion) and promoted after its smoke test."""
    return run_dag(energy["dag"], day=FIRST_DAY, **FAST)


@pytest.fixture(scope="module")
def second(energy, first):
    """Day 2026-01-08 after the shift of 01-05: v2, trained on shifted 01-05..01-07, judged on 01-08."""
    return run_dag(energy["dag"], day=SECOND_DAY, shift_from=SHIFT_FROM, **FAST)


def canary_state(client, version: str) -> dict:
    return json.loads(client.get_model_version(MODEL, version).tags[CANARY_STATE_TAG])


def test_the_first_model_is_trained_gated_smoke_tested_and_promoted(energy, first):
    run, states = first
    assert run.state == "success", states
    assert len(states["validate"]) == len(states["publish"]) == 4, states  # 3 training days + 1 held out
    assert succeeded_but_rollback(states), states

    gate = xcom(run, "gate")
    assert gate["decision"] == "pass" and gate["champion"] is None, gate
    assert gate["version"] == "1" and gate["n"] == METERS
    assert xcom(run, "train")["metrics"]["eval_rmse"] < 1.5
    client = energy["client"]
    assert dict(client.get_registered_model(MODEL).aliases)["champion"] == "1"
    state = canary_state(client, "1")
    promoted = state["history"][-1]
    assert state["status"] == "promoted" and promoted["action"] == "promote", state
    assert "first model" in promoted["message"] and "smoke test" in promoted["message"], promoted
    tags = client.get_model_version(MODEL, "1").tags
    assert tags["mlops.training_window"] == "2026-01-01/2026-01-03"
    assert tags["mlops.evaluation_window"] == f"{FIRST_DAY}/{FIRST_DAY}"


def test_a_model_retrained_after_the_shift_beats_the_champion_and_walks_the_canary(energy, first, second):
    run, states = second
    assert run.state == "success", states
    assert succeeded_but_rollback(states), states

    gate = xcom(run, "gate")
    assert gate["decision"] == "pass" and gate["champion"]["version"] == "1", gate
    comparison = gate["comparison"]
    # v1 never saw EV charging: v2's RMSE is lower, and the whole interval of the difference says so.
    assert comparison["metric"] == "rmse" and comparison["ci_low"] > 0, comparison
    assert gate["candidate"]["rmse"] < gate["champion"]["rmse"], gate
    client = energy["client"]
    tags = client.get_model_version(MODEL, "2").tags
    assert tags[GATE_DECISION_TAG] == "pass" and tags[GATE_N_TAG] == str(METERS), tags
    assert float(tags[GATE_CI_LOW_TAG]) > 0 and float(tags[GATE_CI_HIGH_TAG]) >= float(tags[GATE_CI_LOW_TAG])

    state = canary_state(client, "2")
    actions = [entry["action"] for entry in state["history"]]
    assert state["status"] == "promoted" and actions == [
        "start",
        *["step_up", "hold_passed"] * STEPS,
        "promote",
    ]
    # At 100 % the new version serves every meter, and its RMSE is judged against the champion's on them.
    checks = {check["metric"]: check for check in xcom(run, f"step_{STEPS}_analyse")["checks"]}
    assert checks["rmse"]["status"] == "pass", checks
    assert checks["rmse"]["canary"] < checks["rmse"]["champion"], checks
    aliases = dict(client.get_registered_model(MODEL).aliases)
    assert aliases["champion"] == "2" and aliases["previous"] == "1" and "canary" not in aliases


def test_both_versions_take_the_features_only_and_are_tagged_regression(energy, first, second):
    import mlflow

    client = energy["client"]
    mlflow.set_tracking_uri(client.tracking_uri)
    for version in ("1", "2"):
        info = mlflow.models.get_model_info(f"models:/{MODEL}/{version}")
        inputs = set(info.signature.inputs.input_names())
        assert inputs == FEATURES and not inputs & NOT_FEATURES, (version, inputs)
        run = client.get_run(client.get_model_version(MODEL, version).run_id)
        assert run.data.tags[TASK_TYPE_TAG] == "regression"
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "reference")]
        assert artifacts == ["reference/sample.parquet"]


def test_a_landing_file_without_the_target_is_quarantined_and_stops_the_run(energy, second, capsys):
    """A day whose file lost ``kwh_next_day`` (renamed): validation fails, the file goes to quarantine
    with its report, nothing downstream runs, and no new version is registered."""
    import runpy

    bad_day = dt.date(2026, 1, 12)
    generator = runpy.run_path(str(energy["pipeline"] / "energy_data.py"))
    landing = energy["data"] / "landing" / "meter_readings" / f"date={bad_day}" / "part-00000.parquet"
    landing.parent.mkdir(parents=True)
    generator["generate_day"](bad_day).rename(columns={"kwh_next_day": "kwh_tomorrow"}).to_parquet(landing)

    run, states = run_dag(energy["dag"], day=bad_day.isoformat(), training_days=1, **FAST)

    assert run.state == "failed", states
    assert states["validate"] == ["success", "failed"], states  # 01-11 is fine, 01-12 is not
    assert states["publish"] == ["upstream_failed"] and states["train"] == ["upstream_failed"], states
    quarantine = energy["data"] / "quarantine" / "meter_readings" / bad_day.isoformat()
    assert not landing.exists() and (quarantine / "part-00000.parquet").is_file()
    report = json.loads((quarantine / "validation_report.json").read_text())
    assert "expect_table_columns_to_match_set" in report["message"], report["message"]
    assert "missing ['kwh_next_day']" in report["message"] and "kwh_tomorrow" in report["message"]
    assert len(energy["client"].search_model_versions(f"name='{MODEL}'")) == 2
    # The task's error says what is wrong, where the file went, and what to do.
    log = capsys.readouterr().out
    assert "BatchQuarantined" in log and f"Quarantined: moved {landing}" in log, log[-3000:]


def test_the_dag_file_imports_no_heavy_library(energy):
    dag_file = energy["pipeline"] / "energy_pipeline.py"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(dag_file), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
