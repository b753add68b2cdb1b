"""The canary operators on the batch backend against a real ``mlflow server``: steps, promotion, rollback,
and batch scoring, of binary models and of a regression model. The ``rollout`` fixture (binary models) is
in tests/canary_rollout.py."""

from __future__ import annotations

import json
import re

import pytest

from mlops_provider.constants import (
    CANARY_STATE_TAG,
    EVAL_SET_URI_TAG,
    GATE_CHAMPION_VERSION_TAG,
    TASK_TYPE_TAG,
)
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
    if kind == "flaky":  # the errors lead the message: a count per class and the first error's cause
        assert re.match(
            r"canary \d+ error\(s\): RuntimeError x\d+; first: RuntimeError: flaky model: cannot score a "
            r"tenure divisible by 5; error_rate: canary",
            verdict["message"],
        )
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
        entity_column="customer_id",
        keep_columns=["churned"],
    )
    results = [op.execute(task_context()) for _ in range(2)]
    assert results[0] == results[1]
    assert results[0]["champion"] == "1" and results[0]["canary"] == version and results[0]["weight"] == 10
    log = read_log(output)
    assert len(log) == results[0]["rows"] == log["customer_id"].nunique()
    assert set(log["model_version"]) == {"1", version}
    assert results[0]["task_type"] == "binary"  # the champion has no mlops.task_type tag
    assert list(log.columns[:2]) == ["customer_id", "churned"]  # keep_columns; no timestamp by default


def test_when_the_champion_fails_too_the_pipeline_is_misconfigured_and_nothing_is_rolled_back(
    rollout, mlflow_conn, eval_data, tmp_path
) -> None:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from mlops_provider.operators.mlflow import MLflowRegisterModelOperator
    from mlops_provider.sensors.canary import CanaryAnalysisSensor
    from tests.mlflow_helpers import ChurnRuleModel

    # The canary: the truth model with a signature, so MLflow enforces its inputs (and dumps the data).
    features = pd.read_parquet(eval_data).drop(columns=["customer_id", "churned"])
    mlflow.set_tracking_uri(mlflow_conn.tracking_uri)
    mlflow.set_experiment("mlops-tests")
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=ChurnRuleModel("truth"),
            signature=infer_signature(features, ChurnRuleModel("truth").predict(None, features)),
            pip_requirements=["mlflow"],
        )
    register = MLflowRegisterModelOperator(task_id="register", name=rollout.name, run_id=run.info.run_id)
    version = register.execute(task_context())["version"]
    # The traffic lacks a feature both models need: neither can score it.
    broken = tmp_path / "no_tenure.parquet"
    pd.read_parquet(eval_data).drop(columns=["tenure_days"]).to_parquet(broken, index=False)
    rollout.common["backend_config"] = rollout.config | {"traffic_uri": str(broken)}
    rollout.run(CanaryDeployOperator, version=version)
    rollout.run(CanaryDeployOperator, version=version, step=0)

    with pytest.raises(ConfigurationError) as failed:
        rollout.analyse(version, 0)

    message = str(failed.value)
    assert message.startswith(
        f"Canary analysis of {rollout.name!r} v{version} step 1: the champion fails as well (error rate 1, "
        "canary 1, limit 0.01, on the same traffic of step 1), so the pipeline is misconfigured, not the "
        "canary: canary "
    )
    canary_errors = re.search(
        r"canary (\d+) error\(s\): MlflowException x\1; first: (.*?); champion", message
    )
    assert canary_errors and canary_errors[2] == "MlflowException: Model is missing inputs ['tenure_days']."
    assert re.search(r"champion \d+ error\(s\): KeyError x\d+; first: KeyError: 'tenure_days'", message)
    assert "Failed to enforce schema" not in message  # no data dump
    assert message.endswith(
        "The traffic does not fit the models (e.g. it has columns they do not take, or lacks one they "
        "need): fix the traffic or backend_config, then start the rollout again. The canary was not "
        "rolled back: its rollout was stopped (refused)."
    )
    assert rollout.aliases() == {"champion": "1"}  # the champion stays; the canary's traffic is gone
    state = stored(rollout, version)
    assert state["status"] == "refused" and "pipeline is misconfigured" in state["reason"]
    assert state["verdicts"] == {}  # no verdict on the canary: it was never judged
    assert actions(rollout, version) == ["start", "step_up", "refuse"]
    refusal = state["history"][-1]
    assert "Model is missing inputs ['tenure_days']" in refusal["errors"]["canary"]
    assert re.match(r"(\d+) error\(s\): KeyError x\1; first: KeyError", refusal["errors"]["champion"])
    with pytest.raises(ConfigurationError, match="it was refused: the champion fails as well"):
        rollout.run(CanaryAnalysisSensor, version=version, step=0, deferrable=False)  # a retry
    with pytest.raises(ConfigurationError, match="its rollout is refused"):
        rollout.run(PromoteModelOperator, version=version)
    rollout.common["backend_config"] = rollout.config  # fixed: the rollout starts again
    assert rollout.run(CanaryDeployOperator, version=version, step=0)["status"] == "progressing"


def test_a_first_model_that_cannot_score_is_not_promoted(mlflow_conn, models, eval_data, tmp_path) -> None:
    from mlflow import MlflowClient

    from mlops_provider.operators.mlflow import MLflowRegisterModelOperator
    from tests.mlflow_helpers import unique_name

    name = unique_name("first")
    client = MlflowClient(mlflow_conn.tracking_uri)
    config = {"traffic_uri": str(eval_data), "log_root": str(tmp_path), "entity_column": "customer_id"}
    common = {"name": name, "backend": "batch", "backend_config": config, "strategy": STRATEGY}

    def register(kind: str) -> str:
        op = MLflowRegisterModelOperator(task_id="register", name=name, run_id=models[kind]["run_id"])
        return op.execute(task_context())["version"]

    flaky = register("flaky")  # raises on a fifth of the customers: every 256-row request fails
    cannot = (
        rf"Canary '{name}' v1 refused: first model failed its smoke test: 300 error\(s\): RuntimeError x300; "
        r"first: RuntimeError: flaky model: cannot score a tenure divisible by 5 \(error rate 1 > 0\.01 on "
        rf"300 rows of {re.escape(str(eval_data))}\); it cannot score the traffic, so it was not promoted"
    )
    for _ in range(2):  # a retry refuses again, with no second history entry
        with pytest.raises(ConfigurationError, match=cannot):
            CanaryDeployOperator(task_id="start", version=flaky, **common).execute(task_context())
    assert dict(client.get_registered_model(name).aliases) == {}  # no alias moved
    state = json.loads(client.get_model_version(name, flaky).tags[CANARY_STATE_TAG])
    assert state["status"] == "refused" and [e["action"] for e in state["history"]] == ["refuse"]
    assert state["history"][0]["smoke_test"]["error_rate"] == 1.0

    good = register("truth")
    started = CanaryDeployOperator(task_id="start", version=good, **common).execute(task_context())
    assert (
        started["status"] == "promoted"
        and "after its smoke test (300 rows, error rate 0)" in started["reason"]
    )
    assert dict(client.get_registered_model(name).aliases) == {"champion": good}


def test_batch_scoring_needs_the_entity_column() -> None:
    with pytest.raises(TypeError, match="entity_column"):
        BatchScoreOperator(  # type: ignore[call-arg]
            task_id="score", name="m", features_uri="f", output_uri="o"
        )


def test_a_regression_canary_walks_every_step_on_the_default_checks_and_is_promoted(
    mlflow_conn, eval_data, tmp_path
) -> None:
    """Nothing says "regression" but the versions' mlops.task_type tags: the backend reads them, the
    default checks judge the canary on error rate, latency, prediction shift and rmse, and batch scoring
    reads the champion's tag."""
    from mlflow import MlflowClient

    from mlops_provider.sensors.canary import CanaryAnalysisSensor
    from tests.canary.backends.test_batch import log_regression_model, regression_traffic
    from tests.mlflow_helpers import unique_name

    traffic = regression_traffic(eval_data, tmp_path / "spend.parquet")
    run_id = log_regression_model(mlflow_conn.tracking_uri, traffic)  # predict() returns a 1-D array
    name, client = unique_name("spend"), MlflowClient(mlflow_conn.tracking_uri)
    config = {
        "traffic_uri": str(traffic),
        "log_root": str(tmp_path / "predictions"),
        "entity_column": "customer_id",
        "label_column": "spend_next_30d",
    }
    strategy = STRATEGY | {"min_samples": 20, "min_positives": 1}  # 300 rows: rmse judges from step 2
    common = {"name": name, "backend": "batch", "backend_config": config, "strategy": strategy}

    client.create_registered_model(name)

    def register() -> str:  # the same model again: a retrained model as good as the champion
        version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version
        client.set_model_version_tag(name, version, TASK_TYPE_TAG, "regression")
        return str(version)

    def run(operator_class, **kwargs):
        return operator_class(task_id="t", **(common | kwargs)).execute(task_context())

    first = register()
    assert run(CanaryDeployOperator, version=first)["status"] == "promoted"  # after its smoke test
    version = register()
    run(CanaryDeployOperator, version=version)
    judged = []
    for step in range(len(STRATEGY["steps"])):
        run(CanaryDeployOperator, version=version, step=step)
        verdict = run(CanaryAnalysisSensor, version=version, step=step, deferrable=False)
        assert verdict["verdict"] == "pass", verdict["message"]
        checks = {c["metric"]: c for c in verdict["checks"]}
        assert list(checks) == ["error_rate", "latency_p95_ms", "prediction_psi", "rmse"]
        judged += [checks["rmse"]] if checks["rmse"]["status"] != "no_data" else []
    assert judged and all(c["status"] == "pass" and c["canary"] == c["champion"] for c in judged)
    assert run(PromoteModelOperator, version=version)["status"] == "promoted"

    output = str(tmp_path / "daily" / "predictions.parquet")
    scored = BatchScoreOperator(
        task_id="score",
        name=name,
        features_uri=str(traffic),
        output_uri=output,
        entity_column="customer_id",
        keep_columns=["spend_next_30d"],  # the label is no feature
    ).execute(task_context())
    assert (scored["task_type"], scored["champion"], scored["errors"]) == ("regression", version, 0)
    log = read_log(output)
    assert log["prediction"].dtype == float and log["probability"].isna().all()
    typo = BatchScoreOperator(
        task_id="score",
        name=name,
        features_uri=str(tmp_path / "never-read.parquet"),
        output_uri=output,
        entity_column="customer_id",
        task_type="Regression",
    )
    assert "model_task_type" in typo.template_fields  # templated, as BaseOperator owns task_type
    with pytest.raises(ConfigurationError, match=rf"{name}' v{version}: Unknown task type 'Regression'"):
        typo.execute(task_context())  # before any data is read or model loaded
