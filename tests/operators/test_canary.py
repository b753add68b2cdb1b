"""The canary operators on the batch backend against a real ``mlflow server``: steps, promotion, rollback,
and batch scoring. The ``rollout`` fixture is in tests/canary_rollout.py."""

from __future__ import annotations

import json
import re

import pytest

from mlops_provider.constants import CANARY_STATE_TAG, EVAL_SET_URI_TAG, GATE_CHAMPION_VERSION_TAG
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.ml.scoring import read_log
from mlops_provider.operators.canary import (
    BatchScoreOperator,
    CanaryDeployOperator,
    PromoteModelOperator,
    RollbackModelOperator,
)
from tests.canary_rollout import STRATEGY
from tests.mlflow_helpers import task_context


def stored(rollout, version: str) -> dict:
    """The rollout state as MLflow holds it: one JSON tag on the version."""
    return json.loads(rollout.tags(version)[CANARY_STATE_TAG])


def actions(rollout, version: str) -> list[str]:
    return [entry["action"] for entry in stored(rollout, version)["history"]]


def test_the_first_model_is_promoted_at_once(rollout) -> None:
    assert rollout.aliases() == {"champion": "1"}
    assert stored(rollout, "1")["status"] == "promoted"
    assert "no champion" in stored(rollout, "1")["reason"]


def test_a_good_challenger_walks_every_step_and_is_promoted(rollout) -> None:
    version = rollout.register("truth", new_run=True)  # a retrained model as good as the champion
    rollout.client.set_registered_model_alias(rollout.name, "challenger", version)
    started = rollout.run(CanaryDeployOperator)  # no version: the challenger
    assert started == {
        "name": rollout.name,
        "version": version,
        "status": "progressing",
        "step": -1,
        "weight": 0,
        "reason": None,
    }
    assert rollout.aliases() == {"champion": "1", "canary": version, "challenger": version}
    for step, weight in enumerate(STRATEGY["steps"]):
        assert rollout.run(CanaryDeployOperator, version=version, step=step)["weight"] == weight
        log = read_log(
            f"{rollout.config['log_root']}/rollouts/{rollout.name}/v{version}/step={step}/predictions.parquet"
        )
        assert 0 < (log["variant"] == "canary").mean() <= weight / 100 + 0.08
        verdict = rollout.analyse(version, step)
        assert verdict["verdict"] == "pass" and verdict["polls"] == ["pass", "pass"]
        assert {c["metric"] for c in verdict["checks"]} == {
            "error_rate",
            "latency_p95_ms",
            "prediction_psi",
            "roc_auc",
        }

    promoted = rollout.run(PromoteModelOperator, version=version)

    assert promoted["status"] == "promoted" and promoted["weight"] == 100
    assert rollout.aliases() == {"champion": version, "previous": "1", "challenger": version}
    assert actions(rollout, version) == ["start", *["step_up", "hold_passed"] * 3, "promote"]


def test_steps_are_never_taken_twice_or_skipped(rollout) -> None:
    version = rollout.register("weak")
    rollout.run(CanaryDeployOperator, version=version)
    with pytest.raises(ConfigurationError, match="cannot jump to step 1"):
        rollout.run(CanaryDeployOperator, version=version, step=1)
    for _ in range(3):  # retries and re-runs of the same step
        assert rollout.run(CanaryDeployOperator, version=version, step=0)["step"] == 0
    with pytest.raises(ConfigurationError, match="step 0 has not passed its analysis"):
        rollout.run(CanaryDeployOperator, version=version, step=1)
    first = rollout.analyse(version, 0)
    assert rollout.analyse(version, 0) == first  # resumed: the recorded verdict, no new polls
    taken = actions(rollout, version)
    assert taken.count("step_up") == 1 and taken.count("hold_passed") + taken.count("analysis_failed") == 1


@pytest.mark.parametrize(
    ("kind", "failing_metric"), [("constant", "prediction_psi"), ("flaky", "error_rate")]
)
def test_a_bad_challenger_is_rolled_back_in_one_window_and_the_champion_never_moves(
    rollout, kind, failing_metric
) -> None:
    version = rollout.register(kind)
    rollout.run(CanaryDeployOperator, version=version)
    rollout.run(CanaryDeployOperator, version=version, step=0)

    verdict = rollout.analyse(version, 0)

    assert verdict["verdict"] == "fail" and verdict["polls"] == ["fail"]  # the first poll decides
    assert failing_metric in verdict["message"]
    result = rollout.run(RollbackModelOperator, version=version)
    assert result["status"] == "rolled_back"
    assert rollout.aliases() == {"champion": "1"}
    assert failing_metric in stored(rollout, version)["reason"]
    with pytest.raises(ConfigurationError, match="rolled_back"):
        rollout.run(PromoteModelOperator, version=version)
    assert rollout.run(RollbackModelOperator, version=version)["status"] == "rolled_back"  # idempotent
    assert rollout.run(CanaryDeployOperator, version=version, step=1)["status"] == "rolled_back"


def test_a_new_challenger_supersedes_a_rollout_in_progress(rollout) -> None:
    old, new = rollout.register("weak"), rollout.register("constant")
    rollout.run(CanaryDeployOperator, version=old)
    rollout.run(CanaryDeployOperator, version=new)
    assert stored(rollout, old)["status"] == "rolled_back"
    assert stored(rollout, old)["reason"] == f"superseded by version {new}"
    assert rollout.aliases()["canary"] == new


def test_a_challenger_gated_against_another_champion_fails_the_start_task(rollout) -> None:
    version = rollout.register("truth", new_run=True)
    rollout.client.set_model_version_tag(rollout.name, version, GATE_CHAMPION_VERSION_TAG, "7")
    with pytest.raises(ConfigurationError, match="gated against champion v7, but the champion is now v1"):
        rollout.run(CanaryDeployOperator, version=version, step=0)
    assert rollout.aliases() == {"champion": "1"}  # no canary, no traffic
    assert stored(rollout, version)["status"] == "refused" and actions(rollout, version) == ["refuse"]
    rollout.client.set_model_version_tag(rollout.name, version, GATE_CHAMPION_VERSION_TAG, "1")  # re-gated
    assert rollout.run(CanaryDeployOperator, version=version, step=0)["weight"] == 10


def test_a_champion_change_mid_rollout_fails_the_step_and_leaves_the_champion(rollout) -> None:
    version = rollout.register("truth", new_run=True)
    rollout.client.set_model_version_tag(rollout.name, version, GATE_CHAMPION_VERSION_TAG, "1")
    rollout.run(CanaryDeployOperator, version=version)
    rollout.run(CanaryDeployOperator, version=version, step=0)
    assert rollout.analyse(version, 0)["verdict"] == "pass"  # judged against v1
    other = rollout.register("weak")
    rollout.client.set_registered_model_alias(rollout.name, "champion", other)  # promoted by hand meanwhile

    stopped = (
        f"v{version} stopped at step 1 (10%): champion changed mid-rollout: started against v1, now "
        f"v{other}; the canary was only compared with v1, so its traffic was removed and the champion left "
        f"as it is: re-run the gate against v{other}, then start again."
    )
    with pytest.raises(ConfigurationError, match=re.escape(stopped)):
        rollout.run(CanaryDeployOperator, version=version, step=1)

    assert rollout.aliases() == {"champion": other}  # the champion stays, the canary alias is gone
    state = stored(rollout, version)
    assert (state["status"], state["weight"]) == ("refused", 0) and "champion changed" in state["reason"]
    assert actions(rollout, version) == ["start", "step_up", "hold_passed", "refuse"]
    with pytest.raises(ConfigurationError, match="it was refused: champion changed mid-rollout"):
        rollout.analyse(version, 1)
    with pytest.raises(ConfigurationError, match="its rollout is refused"):
        rollout.run(PromoteModelOperator, version=version)
    with pytest.raises(
        ConfigurationError, match=f"gated against champion v1, but the champion is now v{other}"
    ):
        rollout.run(CanaryDeployOperator, version=version, step=1)  # a retry: refused, nothing moves
    assert rollout.aliases() == {"champion": other}


def test_without_traffic_uri_the_rollout_replays_the_versions_evaluation_set(rollout, eval_data) -> None:
    rollout.common["backend_config"] = {k: v for k, v in rollout.config.items() if k != "traffic_uri"}
    version = rollout.register("truth", new_run=True)
    both_ways = (
        rf"v{version}: no traffic to replay\. .* has no 'mlops\.eval_set_uri' tag\. Either tag the version "
        r"with the URI of the held-out rows its gate scored \(mlops\.eval_set_uri\), or set "
        r"backend_config\['traffic_uri'\] to rows neither model trained on"
    )
    with pytest.raises(ConfigurationError, match=both_ways):
        rollout.run(CanaryDeployOperator, version=version)
    assert rollout.aliases() == {"champion": "1"}  # refused before anything changed: no canary, no state
    assert CANARY_STATE_TAG not in rollout.tags(version)

    rollout.client.set_model_version_tag(rollout.name, version, EVAL_SET_URI_TAG, str(eval_data))
    assert rollout.run(CanaryDeployOperator, version=version, step=0)["weight"] == 10
    [step_up] = [e for e in stored(rollout, version)["history"] if e["action"] == "step_up"]
    assert step_up["backend"]["traffic_uri"] == str(eval_data)
    assert step_up["backend"]["traffic_source"] == EVAL_SET_URI_TAG
    assert rollout.analyse(version, 0)["verdict"] == "pass"


def test_bad_strategy_or_backend_config_fails_before_touching_anything(rollout) -> None:
    version = rollout.register("weak")
    with pytest.raises(ConfigurationError, match="strictly increasing"):
        rollout.run(CanaryDeployOperator, version=version, strategy={"steps": [50, 10]})
    with pytest.raises(ConfigurationError, match="unknown config key"):
        rollout.run(CanaryDeployOperator, version=version, backend_config=rollout.config | {"trafic": "x"})
    with pytest.raises(ConfigurationError, match="cannot compute"):
        rollout.run(
            CanaryDeployOperator,
            version=version,
            strategy={"metrics": [{"name": "x", "query": "sum(rate(x[1m]))"}]},
        )
    assert "canary" not in rollout.aliases()


def test_batch_scoring_follows_the_split_and_a_rerun_replaces_the_log(rollout, eval_data, tmp_path) -> None:
    version = rollout.register("weak")
    rollout.run(CanaryDeployOperator, version=version)
    rollout.run(CanaryDeployOperator, version=version, step=1 - 1)
    output = str(tmp_path / "daily" / "predictions.parquet")
    op = BatchScoreOperator(
        task_id="score",
        name=rollout.name,
        features_uri=str(eval_data),
        output_uri=output,
        keep_columns=["churned"],
    )
    results = [op.execute(task_context()) for _ in range(2)]
    assert results[0] == results[1]
    assert results[0]["champion"] == "1" and results[0]["canary"] == version and results[0]["weight"] == 10
    log = read_log(output)
    assert len(log) == results[0]["rows"] == log["customer_id"].nunique()
    assert set(log["model_version"]) == {"1", version}
