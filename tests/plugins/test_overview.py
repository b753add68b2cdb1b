"""model_overview against a real ``mlflow server`` and real registry state (tests/plugins/conftest.py)."""

from __future__ import annotations

import json

import pytest
from tools.services import free_port

from mlops_provider.exceptions import ServiceUnavailable
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.plugins.overview import model_overview
from tests.mlflow_helpers import connection_env
from tests.plugins.conftest import UI, XDIST_GROUP

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)


def by_version(overview: dict) -> dict[str, dict]:
    return {v["version"]: v for v in overview["versions"]}


def test_a_canary_in_progress_shows_every_alias_with_metrics_gate_and_lineage(state) -> None:
    rolling, _, hook, _ = state

    [overview] = model_overview(hook, names=[rolling])

    assert overview["name"] == rolling and overview["url"] == f"{UI}/#/models/{rolling}"
    assert overview["aliases"] == {"champion": "1", "challenger": "2", "canary": "2"}
    versions = by_version(overview)
    assert list(versions) == ["1", "2"] and overview["latest_version"] == "2"
    assert versions["1"]["aliases"] == ["champion"] and versions["2"]["aliases"] == ["challenger", "canary"]
    champion = versions["1"]
    # The run's summary metrics; a per-epoch curve's latest value is not the kept model's, so it is left out.
    assert champion["metrics"] == pytest.approx(
        {
            "best_epoch": 2,
            "early_stop_log_loss": 0.21,
            "early_stop_roc_auc": 0.82,
            "eval_log_loss": 0.25,
            "eval_positives": 61,
            "eval_roc_auc": 0.81,
            "eval_rows": 500,
        }
    )
    assert champion["gate"]["decision"] == "pass" and "first model" in champion["gate"]["reason"]
    assert "key" not in champion["gate"] and "result" not in champion["gate"]
    assert champion["lineage"]["dag_id"] == "churn_training"
    assert champion["lineage"]["data_interval_start"] == "2026-01-03T00:00:00+00:00"
    assert champion["lineage"]["data_fingerprint"] == "s3://lake/train.parquet@sha256:truth"
    assert champion["lineage"]["training_set_uri"] == "s3://lake/train"
    assert not any(k.startswith(("canary.", "gate.", "drift.")) for k in champion["lineage"])
    assert champion["dag_run"] == {
        "dag_id": "churn_training",
        "run_id": "scheduled__2026-01-03T00:00:00+00:00",
        "path": "dags/churn_training/runs/scheduled__2026-01-03T00%3A00%3A00%2B00%3A00",
    }
    assert champion["url"] == f"{UI}/#/models/{rolling}/versions/1"
    assert champion["run_url"].startswith(f"{UI}/#/experiments/") and champion["run_url"].endswith(
        champion["run_id"]
    )
    assert versions["2"]["gate"]["champion_version"] == "1"
    assert versions["2"]["canary"] == {"status": "progressing", "step": 1, "weight": 50, "reason": None}
    json.dumps(overview)  # the JSON endpoint returns it as it is


def test_the_canary_weight_and_its_history_come_from_the_controllers_state(state) -> None:
    rolling, _, hook, _ = state

    [overview] = model_overview(hook, names=[rolling])

    assert overview["canary"] == {"champion": "1", "canary": "2", "weight": 50}
    rollout = overview["rollout"]
    assert (
        rollout["version"] == "2" and rollout["status"] == "progressing" and rollout["steps"] == [10, 50, 100]
    )
    assert [(h["action"], h["weight"]) for h in rollout["history"]] == [
        ("start", 0),
        ("step_up", 10),
        ("hold_passed", 10),
        ("step_up", 50),
    ]
    [verdict] = rollout["verdicts"]
    assert verdict["step"] == 0 and verdict["weight"] == 10 and verdict["verdict"] == "pass"
    assert {c["metric"] for c in verdict["checks"]} == {
        "error_rate",
        "latency_p95_ms",
        "prediction_psi",
        "roc_auc",
    }


def test_the_latest_drift_run_is_summarised(state) -> None:
    rolling, promoted, hook, detected = state

    promoted_view, rolling_view = model_overview(hook, names=[rolling, promoted])  # sorted by name

    drift = rolling_view["drift"]
    assert drift["run_id"] == detected["run_id"] and drift["url"].endswith(detected["run_id"])
    assert drift["model_version"] == "1" and drift["dataset_drift"] is True
    assert drift["drifted_features"] == detected["drifted_features"]
    assert drift["drift_share"] == pytest.approx(detected["drift_share"])
    assert drift["drift_share_threshold"] == 0.3 and drift["current_rows"] == "2000"
    psi = dict(drift["top_psi"])
    assert list(psi.values()) == sorted(psi.values(), reverse=True) and len(psi) <= 5
    assert set(detected["drifted_features"]) & set(psi)
    assert promoted_view["drift"] is None


def test_after_a_promotion_the_old_champion_is_previous_and_the_finished_rollout_is_shown(state) -> None:
    _, promoted, hook, _ = state

    [overview] = model_overview(hook, names=[promoted])

    assert overview["aliases"] == {"champion": "2", "previous": "1"}
    assert overview["canary"] == {"champion": "2", "canary": None, "weight": 0}
    assert [v["aliases"] for v in overview["versions"]] == [["champion"], ["previous"]]
    assert by_version(overview)["1"]["gate"] == {}  # never gated
    rollout = overview["rollout"]
    assert rollout["version"] == "2" and rollout["status"] == "promoted" and rollout["weight"] == 100
    actions = [h["action"] for h in rollout["history"]]
    assert actions == ["start", "step_up", "hold_passed", "promote"]
    assert [v["weight"] for v in rollout["verdicts"]] == [50]


def test_every_registered_model_is_listed_when_no_names_are_given(state) -> None:
    rolling, promoted, hook, _ = state

    names = [m["name"] for m in model_overview(hook, max_models=1000)]

    assert names == sorted(names) and {rolling, promoted} <= set(names)


def test_an_unreachable_server_raises_service_unavailable_at_once(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(ServiceUnavailable, match="could not be reached"):
        model_overview(MLflowHook(http_max_retries=0))


def test_the_gate_evidence_is_shown_as_n_and_the_interval(state) -> None:
    from mlops_provider.plugins.page import render_page

    rolling, _, hook, _ = state

    [overview] = model_overview(hook, names=[rolling])

    versions = by_version(overview)
    first, second = versions["1"]["gate"], versions["2"]["gate"]  # first model; then against it
    assert int(first["n"]) >= int(first["positives"]) > 0 and "ci_low" not in first
    assert second["n"] == first["n"] and second["metric"] == "roc_auc" and second["method"] == "delong"
    low, difference, high = (float(second[k]) for k in ("ci_low", "difference", "ci_high"))
    assert low <= difference <= high and second["confidence"] == "0.95"
    words = " ".join(render_page([overview], source="mlflow", nonce="n").split())
    interval = f"roc_auc {difference:+.3f} [95% CI {low:+.3f}, {high:+.3f}]"
    assert f"{interval}, n={second['n']} ({second['positives']} positives)" in words
    assert f"n={first['n']} ({first['positives']} positives)" in words
