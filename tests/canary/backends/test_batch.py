"""The ``batch`` canary backend: each step replays traffic through both registered models, writes a
prediction log, and each analysis poll reads its metrics from its own slice of that log. Models come from
a real ``mlflow server``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_provider.canary.analysis import judge_poll
from mlops_provider.canary.backends.batch import BatchCanaryBackend
from mlops_provider.canary.strategy import DEFAULT_BATCH_CHECKS, CanaryStrategy, MetricCheck
from mlops_provider.constants import (
    EVAL_SET_URI_TAG,
    EVALUATION_WINDOW_TAG,
    TASK_TYPE_TAG,
    TRAINING_WINDOW_TAG,
)
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.ml.scoring import read_log
from tests.mlflow_helpers import unique_name


@pytest.fixture
def registered(mlflow_conn: Any, models: dict[str, dict[str, str]]) -> str:
    """A registered model: v1 the truth (champion), v2 a constant model (a bad canary), v3 the truth again."""
    client = MlflowClient(mlflow_conn.tracking_uri)
    name = unique_name("batch")
    client.create_registered_model(name)
    for kind in ("truth", "constant", "truth"):
        model = models[kind]
        client.create_model_version(
            name,
            model["model_uri"],
            run_id=model["run_id"],
            model_id=model["model_uri"].removeprefix("models:/"),
        )
    return name


@pytest.fixture
def traffic(eval_data: Path, tmp_path: Path) -> Path:
    """Two days of traffic; the glob resolves to the newest (the held-out customers)."""
    root = tmp_path / "traffic"
    (root / "date=2026-01-02").mkdir(parents=True)
    (root / "date=2026-01-03").mkdir(parents=True)
    frame = pd.read_parquet(eval_data).assign(event_timestamp=pd.Timestamp("2026-01-03", tz="UTC"))
    frame.head(20).to_parquet(root / "date=2026-01-02" / "part.parquet", index=False)
    frame.to_parquet(root / "date=2026-01-03" / "part.parquet", index=False)
    return root


def backend(traffic: Path, tmp_path: Path, **kwargs: Any) -> BatchCanaryBackend:
    options = {"label_column": "churned", "request_rows": 64, "entity_column": "customer_id"} | kwargs
    return BatchCanaryBackend(
        MLflowHook(),
        traffic_uri=str(traffic / "date=*" / "part.parquet"),
        log_root=f"{tmp_path}/logs/",
        **options,
    )


def test_a_step_replays_the_newest_traffic_through_both_models_into_its_log(
    registered: str, traffic: Path, tmp_path: Path, eval_data: Path
) -> None:
    batch = backend(traffic, tmp_path, timestamp_column="event_timestamp")
    evidence = batch.set_weight(registered, "1", "3", 50, step=1)

    uri = batch.step_log_uri(registered, "3", 1)
    assert uri == f"{tmp_path}/logs/rollouts/{registered}/v3/step=1/predictions.parquet"  # no double slash
    newest = str(traffic / "date=2026-01-03" / "part.parquet")
    log = read_log(uri)
    assert evidence == {
        "traffic_uri": newest,
        "traffic_source": "traffic_uri",
        "prediction_log": uri,
        "rows": {
            "champion": int((log["variant"] == "champion").sum()),
            "canary": int((log["variant"] == "canary").sum()),
        },
    }
    held_out = pd.read_parquet(eval_data)
    assert len(log) == len(held_out) and set(log["customer_id"]) == set(held_out["customer_id"])
    assert 0.35 < (log["variant"] == "canary").mean() < 0.65
    assert dict(zip(log["variant"], log["model_version"], strict=True)) == {"champion": "1", "canary": "3"}
    # The label and the timestamp are copied to the log, not fed to the models.
    assert {"churned", "event_timestamp", "shadow_probability"} <= set(log.columns)
    canary = log[log["variant"] == "canary"]
    # Both versions are the same model: the champion's shadow scores equal the canary's, row by row.
    assert (canary["shadow_probability"] - canary["probability"]).abs().max() < 1e-12
    assert log["canary_weight"].eq(50.0).all() and log["error"].isna().all()
    assert str(log["prediction"].dtype) == "Int64"  # untagged versions: binary models

    # Without timestamp_column no timestamp is kept: the step's log holds the entity, the label, scores.
    plain = backend(traffic, tmp_path).set_weight(registered, "1", "3", 50, step=2)
    assert "event_timestamp" not in read_log(plain["prediction_log"]).columns


def tag_reader(client: MlflowClient) -> Any:
    return lambda name, version: dict(client.get_model_version(name, version).tags)


def test_without_traffic_uri_a_step_replays_the_canarys_own_evaluation_set(
    mlflow_conn: Any, registered: str, traffic: Path, tmp_path: Path, eval_data: Path
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    client.set_model_version_tag(registered, "3", EVAL_SET_URI_TAG, str(eval_data))
    client.set_model_version_tag(registered, "1", EVAL_SET_URI_TAG, str(traffic / "never-read.parquet"))
    batch = BatchCanaryBackend(
        MLflowHook(),
        log_root=str(tmp_path),
        entity_column="customer_id",
        version_tags=tag_reader(client),
        label_column="churned",
    )
    batch.check(registered, "1", "3")  # what start() asks before any traffic moves: nothing to refuse

    evidence = batch.set_weight(registered, "1", "3", 50, step=0)

    # The canary's (v3) held-out rows, not the champion's and not the newest day of some glob.
    assert (evidence["traffic_uri"], evidence["traffic_source"]) == (str(eval_data), EVAL_SET_URI_TAG)
    log = read_log(evidence["prediction_log"])
    assert set(log["customer_id"]) == set(pd.read_parquet(eval_data)["customer_id"])
    # An explicit traffic_uri still wins over the tag.
    explicit = backend(traffic, tmp_path, version_tags=tag_reader(client))
    assert explicit.traffic(registered, "1", "3") == {
        "traffic_uri": str(traffic / "date=2026-01-03" / "part.parquet"),
        "traffic_source": "traffic_uri",
    }


def test_without_traffic_uri_or_an_evaluation_set_tag_the_rollout_is_refused(
    mlflow_conn: Any, registered: str, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    both_ways = (
        rf"Batch canary of '{registered}' v2: no traffic to replay\. .* has no 'mlops\.eval_set_uri' tag\. "
        r"Either tag the version .* \(mlops\.eval_set_uri\), or set backend_config\['traffic_uri'\]"
    )
    for tags in (tag_reader(client), None):  # the version is untagged; or no way to read tags at all
        batch = BatchCanaryBackend(
            MLflowHook(), log_root=str(tmp_path), entity_column="customer_id", version_tags=tags
        )
        with pytest.raises(ConfigurationError, match=both_ways):
            batch.check(registered, "1", "2")
        with pytest.raises(ConfigurationError, match=both_ways):
            batch.set_weight(registered, "1", "2", 10, step=0)
    assert not (tmp_path / "rollouts").exists()  # nothing scored, nothing written


def test_an_evaluation_set_a_model_trained_on_is_refused(
    mlflow_conn: Any, registered: str, tmp_path: Path, eval_data: Path
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)

    def tag(version: str, key: str, value: str) -> None:
        client.set_model_version_tag(registered, version, key, value)

    tag("3", EVAL_SET_URI_TAG, str(eval_data))
    tag("3", TRAINING_WINDOW_TAG, "2026-01-01/2026-01-20")
    tag("3", EVALUATION_WINDOW_TAG, "2026-01-21/2026-01-23")
    tag("1", TRAINING_WINDOW_TAG, "2025-12-01/2026-01-20")  # the champion: before the canary's evaluation
    batch = BatchCanaryBackend(
        MLflowHook(), log_root=str(tmp_path), entity_column="customer_id", version_tags=tag_reader(client)
    )
    assert batch.traffic(registered, "1", "3")["traffic_uri"] == str(eval_data)

    tag("1", TRAINING_WINDOW_TAG, "2026-01-05/2026-01-21")  # a champion trained on the first day of it
    with pytest.raises(
        ConfigurationError,
        match=r"covers 2026-01-21/2026-01-23, days that v1 trained on \(2026-01-05/2026-01-21\)",
    ):
        batch.check(registered, "1", "3")
    tag("1", TRAINING_WINDOW_TAG, "last month")
    with pytest.raises(
        ConfigurationError, match=re.escape("'mlops.training_window' is 'last month', not 'YYYY")
    ):
        batch.check(registered, "1", "3")


def test_the_analysis_reads_each_checks_values_from_the_steps_log(
    registered: str, traffic: Path, tmp_path: Path
) -> None:
    batch = backend(traffic, tmp_path)
    batch.set_weight(registered, "1", "2", 100, step=0)  # v2 predicts a constant 0.3, for every customer
    rows = MetricCheck("rows", "rows", compare="absolute", threshold=1e9)
    # One poll decides a step of this strategy: its one slice is the whole log.
    strategy = CanaryStrategy(
        metrics=(*DEFAULT_BATCH_CHECKS, rows), checks_per_step=1, failure_threshold=1, max_no_data=1
    )
    assert strategy.max_polls == 1

    values = batch.values(registered, "2", 0, strategy, poll=0)

    assert list(values) == [m.name for m in strategy.metrics if m.applies_to("binary")]  # untagged: binary
    served = len(read_log(batch.step_log_uri(registered, "2", 0)))
    assert values["rows"] == (served, None)  # at 100 % the champion serves nobody...
    assert values["error_rate"] == (0.0, 0.0)  # the champion's: on its shadow requests
    assert values["latency_p95_ms"][1] > 0  # timed on its shadow requests for the canary's rows
    psi, zero = values["prediction_psi"]
    assert psi > 1.0 and zero == 0.0  # ...but scores every row in shadow: a constant against the truth
    canary_auc, champion_auc = values["roc_auc"]
    assert canary_auc == pytest.approx(0.5) and champion_auc > 0.7


def test_a_rerun_of_a_step_replaces_its_log(registered: str, traffic: Path, tmp_path: Path) -> None:
    batch = backend(traffic, tmp_path)
    first = batch.set_weight(registered, "1", "3", 25, step=0)
    before = read_log(first["prediction_log"])
    second = batch.set_weight(registered, "1", "3", 25, step=0)
    after = read_log(second["prediction_log"])
    assert second["rows"] == first["rows"]
    pd.testing.assert_frame_equal(
        after.drop(columns=["latency_ms", "shadow_latency_ms", "scored_at"]),
        before.drop(columns=["latency_ms", "shadow_latency_ms", "scored_at"]),
    )
    step_dir = Path(first["prediction_log"]).parent
    assert [p.name for p in step_dir.iterdir()] == ["predictions.parquet"]


def test_promotion_and_rollback_change_nothing_on_disk(
    registered: str, traffic: Path, tmp_path: Path
) -> None:
    batch = backend(traffic, tmp_path)
    assert batch.promote(registered, "3") is None
    assert batch.rollback(registered, "1", "3") is None
    assert not (tmp_path / "logs").exists()  # batch scoring reads the aliases; nothing to switch


def test_missing_or_empty_traffic_is_data_not_found(registered: str, tmp_path: Path, eval_data: Path) -> None:
    nowhere = BatchCanaryBackend(
        MLflowHook(),
        traffic_uri=str(tmp_path / "none" / "*.parquet"),
        log_root=str(tmp_path),
        entity_column="customer_id",
    )
    with pytest.raises(DataNotFound, match="No file matches"):
        nowhere.set_weight(registered, "1", "3", 10, step=0)
    empty = tmp_path / "empty.parquet"
    pd.read_parquet(eval_data).head(0).to_parquet(empty, index=False)
    with pytest.raises(DataNotFound, match=re.escape(f"Canary traffic {str(empty)!r} has no rows")):
        BatchCanaryBackend(
            MLflowHook(), traffic_uri=str(empty), log_root=str(tmp_path), entity_column="customer_id"
        ).set_weight(registered, "1", "3", 10, step=0)
    with pytest.raises(DataNotFound, match="Prediction log"):  # analysing a step that never ran
        BatchCanaryBackend(
            MLflowHook(), traffic_uri=str(empty), log_root=str(tmp_path), entity_column="customer_id"
        ).values(registered, "3", 0, CanaryStrategy(), poll=0)


def test_each_poll_of_a_step_judges_its_own_slice_of_the_traffic(
    registered: str, traffic: Path, tmp_path: Path
) -> None:
    batch = backend(traffic, tmp_path)
    batch.set_weight(registered, "1", "2", 100, step=0)  # the constant canary serves (and is judged on) all
    served = read_log(batch.step_log_uri(registered, "2", 0))
    rows = MetricCheck("rows", "rows", compare="absolute", threshold=1e9)
    mean = MetricCheck("mean", "mean_probability", threshold=1.0)  # the champion's (shadow) mean: continuous
    strategy = CanaryStrategy(metrics=(*DEFAULT_BATCH_CHECKS, rows, mean))
    assert strategy.max_polls == 9  # 3 passes, 2 failures, 6 without data: the 9th poll must decide

    slices = [batch.poll_rows(registered, "2", 0, poll, strategy) for poll in range(strategy.max_polls)]
    entities = [set(s["customer_id"]) for s in slices]
    assert sum(len(e) for e in entities) == len(served)  # disjoint, and together the whole step
    assert set().union(*entities) == set(served["customer_id"])
    polls = [batch.values(registered, "2", 0, strategy, poll=poll) for poll in range(strategy.max_polls)]
    assert [p["rows"][0] for p in polls] == [float(len(s)) for s in slices]
    assert len({p["mean"] for p in polls}) == len(polls)  # never the same numbers twice
    with pytest.raises(ConfigurationError, match="Poll 9 has no slice"):
        batch.values(registered, "2", 0, strategy, poll=9)

    # Quality waits for min_samples labelled rows: a ninth of 300 customers is too few at the default 200.
    assert all(p["roc_auc"] == (None, None) for p in polls)
    small = CanaryStrategy(metrics=strategy.metrics, min_samples=20, min_positives=1)
    judged = [batch.values(registered, "2", 0, small, poll=poll) for poll in range(small.max_polls)]
    labelled = [(len(s), int(s["churned"].sum())) for s in slices]
    for (n, positives), values in zip(labelled, judged, strict=True):
        has_auc = n >= 20 and 1 <= positives < n
        assert (values["roc_auc"][0] is not None) == has_auc, (n, positives, values["roc_auc"])
        assert values["roc_auc"][0] is None or values["roc_auc"][0] == pytest.approx(0.5)  # a constant
    assert any(values["roc_auc"][0] is not None for values in judged)


def test_a_first_model_is_smoke_tested_on_a_sample_of_the_traffic(
    registered: str, traffic: Path, tmp_path: Path, eval_data: Path
) -> None:
    batch = backend(traffic, tmp_path)
    newest = str(traffic / "date=2026-01-03" / "part.parquet")
    assert batch.smoke_test(registered, "1") == {
        "traffic_uri": newest,
        "traffic_source": "traffic_uri",
        "rows": len(pd.read_parquet(eval_data)),  # 300: the sample is capped at SMOKE_ROWS
        "error_rate": 0.0,
        "errors": None,
    }
    assert not (tmp_path / "logs").exists()  # a smoke test writes no prediction log
    untagged = BatchCanaryBackend(MLflowHook(), log_root=str(tmp_path), entity_column="customer_id")
    with pytest.raises(ConfigurationError, match="no traffic to replay"):
        untagged.smoke_test(registered, "1")


def test_a_polls_errors_are_summarised_per_variant(registered: str, tmp_path: Path, eval_data: Path) -> None:
    broken = tmp_path / "broken.parquet"
    pd.read_parquet(eval_data).drop(columns=["tenure_days"]).to_parquet(broken, index=False)
    batch = BatchCanaryBackend(
        MLflowHook(), traffic_uri=str(broken), log_root=str(tmp_path), entity_column="customer_id"
    )
    batch.set_weight(registered, "1", "2", 50, step=0)  # v1 needs tenure_days; the constant v2 does not
    errors = batch.errors(registered, "2", 0, CanaryStrategy(checks_per_step=1, max_no_data=1), poll=0)
    assert errors["canary"] is None
    assert re.fullmatch(r"(\d+) error\(s\): KeyError x\1; first: KeyError: 'tenure_days'", errors["champion"])


# -- other tasks: a regression model (scikit-learn: predict() returns a 1-D array) -------------------------

REGRESSION_FEATURES = ["tenure_days", "sessions_7d", "minutes_watched_7d", "spend_30d"]


def regression_traffic(eval_data: Path, path: Path) -> Path:
    """The held-out customers with a numeric label, ``spend_next_30d``, linear in their features."""
    frame = pd.read_parquet(eval_data)[["customer_id", *REGRESSION_FEATURES]]
    noise = np.random.default_rng(0).normal(scale=2.0, size=len(frame))
    frame["spend_next_30d"] = 1.1 * frame["spend_30d"] + 0.05 * frame["minutes_watched_7d"] + noise
    frame.to_parquet(path, index=False)
    return path


def log_regression_model(tracking_uri: str, traffic: Path, kind: str = "linear") -> str:
    """Log a scikit-learn regressor fitted on ``traffic``: ``linear`` (good) or ``mean`` (a constant);
    return its run id. Its pyfunc returns a plain 1-D array of predictions."""
    import mlflow
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression

    frame = pd.read_parquet(traffic)
    model = LinearRegression() if kind == "linear" else DummyRegressor()
    model.fit(frame[REGRESSION_FEATURES], frame["spend_next_30d"])
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlops-tests")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    return run.info.run_id


@pytest.fixture(scope="module")
def regression_runs(mlflow_server: Any, eval_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    traffic = regression_traffic(eval_data, tmp_path_factory.mktemp("regression") / "traffic.parquet")
    runs = {
        kind: log_regression_model(mlflow_server.tracking_uri, traffic, kind) for kind in ("linear", "mean")
    }
    return {"traffic": traffic, **runs}


def register_regression(client: MlflowClient, runs: dict, kinds: tuple[str, ...], tag: bool = True) -> str:
    name = unique_name("regression")
    client.create_registered_model(name)
    for kind in kinds:
        version = client.create_model_version(name, f"runs:/{runs[kind]}/model", run_id=runs[kind]).version
        if tag:
            client.set_model_version_tag(name, version, TASK_TYPE_TAG, "regression")
    return name


def test_a_regression_canary_is_read_from_its_task_type_tag_and_judged_on_rmse(
    mlflow_conn: Any, regression_runs: dict, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    name = register_regression(client, regression_runs, ("linear", "linear", "mean"))
    batch = BatchCanaryBackend(  # no task_type: the canary version's mlops.task_type tag says regression
        MLflowHook(),
        traffic_uri=str(regression_runs["traffic"]),
        log_root=str(tmp_path),
        entity_column="customer_id",
        label_column="spend_next_30d",
    )
    batch.check(name, "1", "2")
    batch.set_weight(name, "1", "2", 100, step=0)
    log = read_log(batch.step_log_uri(name, "2", 0))
    assert log["prediction"].dtype == float and log["probability"].isna().all() and log["error"].isna().all()
    strategy = CanaryStrategy(checks_per_step=1, failure_threshold=1, max_no_data=1, min_samples=100)

    same = batch.values(name, "2", 0, strategy, poll=0)

    # Only the checks of a regression model: no roc_auc, no macro_f1.
    assert list(same) == ["error_rate", "latency_p95_ms", "prediction_psi", "rmse"]
    assert same["prediction_psi"] == (pytest.approx(0.0, abs=1e-9), 0.0)
    assert same["rmse"][0] == same["rmse"][1] < 3.0  # the same model, paired on the same rows
    poll = judge_poll(strategy, same)
    assert poll["status"] == "pass" and [c["metric"] for c in poll["checks"]] == list(same)

    batch.set_weight(name, "1", "3", 100, step=0)  # v3 predicts the mean spend for everyone
    worse = judge_poll(strategy, batch.values(name, "3", 0, strategy, poll=0))
    failed = {c["metric"] for c in worse["checks"] if c["status"] == "fail"}
    assert worse["status"] == "fail" and failed == {"prediction_psi", "rmse"}


def test_task_type_from_the_config_wins_and_mixed_tasks_are_refused(
    mlflow_conn: Any, regression_runs: dict, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_conn.tracking_uri)
    untagged = register_regression(client, regression_runs, ("linear", "linear"), tag=False)
    config = {"log_root": str(tmp_path), "entity_column": "customer_id", "label_column": "spend_next_30d"}
    told = BatchCanaryBackend(
        MLflowHook(), traffic_uri=str(regression_runs["traffic"]), task_type="regression", **config
    )
    assert told.task_type_of(untagged, "2") == "regression"
    assert told.smoke_test(untagged, "1")["error_rate"] == 0.0
    # Untagged and not told: a binary model, whose contract a 1-D array of numbers breaks, by name.
    assumed = BatchCanaryBackend(MLflowHook(), traffic_uri=str(regression_runs["traffic"]), **config)
    assert assumed.task_type_of(untagged, "2") == "binary"
    smoke = assumed.smoke_test(untagged, "1")
    assert smoke["error_rate"] == 1.0
    assert re.fullmatch(
        r"300 error\(s\): ContractViolation x300; first: ContractViolation: a binary model's predict\(\) "
        r"must return a DataFrame with column\(s\) probability, prediction; it returned \[\]",
        smoke["errors"],
    )

    client.set_model_version_tag(untagged, "2", TASK_TYPE_TAG, "regression")  # the champion, v1: binary
    client.set_model_version_tag(untagged, "1", TASK_TYPE_TAG, "binary")
    with pytest.raises(ConfigurationError, match=r"v2: it is a regression model .* champion v1 a binary one"):
        assumed.check(untagged, "1", "2")
    client.set_model_version_tag(untagged, "2", TASK_TYPE_TAG, "ordinal")
    with pytest.raises(ConfigurationError, match=r"tag 'mlops.task_type' is 'ordinal', not a task type"):
        assumed.task_type_of(untagged, "2")
    with pytest.raises(ConfigurationError, match=r"backend_config\['task_type'\] is 'Regression'"):
        BatchCanaryBackend(MLflowHook(), task_type="Regression", **config)
