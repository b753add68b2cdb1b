"""The trainer's command line: its result contract, exit codes, hyperparameters, the FAILED run, and the
three task types.

The binary end-to-end runs go through ``python -m mlops_provider.trainer``, the multiclass and regression
ones through ``cli.main`` in process, all against a real MLflow server.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_provider import constants
from mlops_provider.trainer import EXIT_BAD_INPUT, RESULT_MARKER
from mlops_provider.trainer.cli import (
    DEFAULT_HYPERPARAMETERS,
    BadHyperparameters,
    emit,
    main,
    parser,
    resolve_hyperparameters,
)
from tests.mlflow_helpers import unique_name
from tests.trainer.conftest import (
    FAST,
    TABULAR_DAYS,
    TABULAR_FAST,
    TABULAR_FEATURES,
    TABULAR_KEY,
    TABULAR_LABEL,
    TABULAR_TIMESTAMP,
    XDIST_GROUP,
    feast_metadata,
    run_trainer,
    runs_of,
    tabular_frame,
    write_parquet,
)

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)


def test_result_contract_on_stdout_and_xcom_file(trained: dict[str, Any]) -> None:
    last_line = trained["process"].stdout.strip().splitlines()[-1]
    assert last_line.startswith(RESULT_MARKER)
    printed = json.loads(last_line.removeprefix(RESULT_MARKER))
    assert printed == trained["xcom"]
    assert set(printed) == {"run_id", "model_uri", "metrics"}
    # The kept model's metrics on the early-stopping slice; no evaluation set was given.
    assert set(printed["metrics"]) == {
        "best_epoch",
        "early_stop_roc_auc",
        "early_stop_log_loss",
        "early_stop_accuracy",
        "early_stop_positive_rate",
    }
    assert printed["metrics"]["early_stop_roc_auc"] > 0.65  # the generator's signal is learnable in 3 epochs
    for epoch in range(1, FAST["epochs"] + 1):
        assert f"epoch {epoch}/{FAST['epochs']} train_loss=" in trained["process"].stderr


def _write(frame: pd.DataFrame, directory: Path, name: str) -> Path:
    path = directory / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [  # every refusal of the data itself is tested in-process in test_data.py
        ("missing_label", "has no column 'churned'"),
        ("dict_feature", "feature 'payload' holds dict values"),
        ("unknown_hyperparameter", "unknown hyperparameters ['epoch']"),
        ("evaluation_without_a_feature", "evaluation set "),
    ],
)
def test_bad_input_fails_clearly_without_a_run(
    case: str, message: str, training_set: Path, evaluation_set: Path, mlflow_server: Any, tmp_path: Path
) -> None:
    good = pd.read_parquet(training_set)
    extra: list[str] = []
    frame = {
        "missing_label": good.drop(columns=["churned"]),
        "dict_feature": good.assign(payload=[{"k": i} for i in range(len(good))]),
        "unknown_hyperparameter": good,
        "evaluation_without_a_feature": good,
    }[case]
    if case == "unknown_hyperparameter":
        extra = ["--hyperparameters", '{"epoch": 3}']
    if case == "evaluation_without_a_feature":
        lacking = _write(pd.read_parquet(evaluation_set).drop(columns=["plan"]), tmp_path, "evaluation")
        extra = ["--evaluation-set", str(lacking)]
        message = f"evaluation set {lacking} lacks the training set's columns ['plan']"
    done = run_trainer(_write(frame, tmp_path, case), mlflow_server.tracking_uri, f"bad-{case}", *extra)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr[-2000:]
    assert message in done.stderr
    assert RESULT_MARKER not in done.stdout
    assert runs_of(mlflow_server.tracking_uri, f"bad-{case}") == []


def test_failure_inside_the_run_marks_it_failed(training_set: Path, mlflow_server: Any) -> None:
    done = run_trainer(training_set, mlflow_server.tracking_uri, "crash", "--lr", "-1", "--epochs", "1")
    assert done.returncode == 1
    assert "Invalid learning rate" in done.stderr
    assert [run.info.status for run in runs_of(mlflow_server.tracking_uri, "crash")] == ["FAILED"]


def _args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["--training-set", "x.parquet", "--label", "y", "--experiment", "e", *argv])


def test_hyperparameters_are_defaults_then_json_then_single_flags() -> None:
    resolved, given = resolve_hyperparameters(_args())
    assert resolved == DEFAULT_HYPERPARAMETERS and given == {}
    resolved, given = resolve_hyperparameters(
        _args(
            "--hyperparameters",
            '{"epochs": 5, "lr": 0.1, "hidden": [8]}',
            "--epochs",
            "7",
            "--hidden",
            "32,16",
        )
    )
    assert resolved == DEFAULT_HYPERPARAMETERS | {"epochs": 7, "lr": 0.1, "hidden": [32, 16]}
    # What was given, before defaults, is what the run's hyperparameters hash covers.
    assert given == {"epochs": 7, "lr": 0.1, "hidden": "32,16"}
    resolved, _ = resolve_hyperparameters(
        _args("--hyperparameters", '{"epochs": "4", "dropout": 0, "hidden": "8, 4,"}')
    )
    assert (resolved["epochs"], resolved["dropout"], resolved["hidden"]) == (4, 0.0, [8, 4])
    assert type(resolved["dropout"]) is float and type(resolved["epochs"]) is int


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hyperparameters", "{epochs: 3}"], "--hyperparameters is not valid JSON"),
        (["--hyperparameters", "[3]"], "--hyperparameters must be a JSON object"),
        (["--hyperparameters", '{"epoch": 3, "lr": 1}'], "unknown hyperparameters ['epoch']; known: ["),
        (["--hyperparameters", '{"epochs": "three"}'], "a hyperparameter has the wrong type"),
        (["--hyperparameters", '{"hidden": "8,x"}'], "a hyperparameter has the wrong type"),
        (["--epochs", "0"], "need epochs >= 1"),
        (["--batch-size", "0"], "batch_size >= 1"),
        (["--val-fraction", "1.0"], "0 < val_fraction < 1"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(argv: list[str], message: str) -> None:
    with pytest.raises(BadHyperparameters) as err:
        resolve_hyperparameters(_args(*argv))
    assert message in str(err.value)


def test_every_default_has_a_flag_of_its_type() -> None:
    flags = {a.dest: a for a in parser()._actions}
    for name, value in DEFAULT_HYPERPARAMETERS.items():
        assert flags[name].option_strings == [f"--{name.replace('_', '-')}"] and flags[name].default is None
        assert flags[name].type is (str if isinstance(value, list) else type(value))
    with pytest.raises(SystemExit) as err:
        parser().parse_args([])
    assert err.value.code == 2  # --training-set is required


def test_emit_prints_the_result_last_and_writes_the_xcom_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = {
        "run_id": "abc",
        "model_uri": "models:/m-1",
        "metrics": {"eval_roc_auc": 0.8, "eval_log_loss": math.nan},
    }
    monkeypatch.setenv("MLOPS_XCOM_DIR", str(tmp_path))
    emit(result)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    payload = json.loads(line.removeprefix(RESULT_MARKER))
    assert line.startswith(RESULT_MARKER)
    assert payload == {
        "run_id": "abc",
        "model_uri": "models:/m-1",
        "metrics": {"eval_roc_auc": 0.8, "eval_log_loss": None},
    }
    assert json.loads((tmp_path / "return.json").read_text()) == payload  # NaN is not JSON: null
    monkeypatch.setenv("MLOPS_XCOM_DIR", str(tmp_path / "absent"))
    emit(result)  # no XCom sidecar directory: stdout only
    assert not (tmp_path / "absent").exists() and capsys.readouterr().out.startswith(RESULT_MARKER)


# -- the three task types, in process through cli.main ------------------------------------------------------


def _main(argv: list[str], tracking_uri: str, xcom_dir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """``cli.main(argv)`` against ``tracking_uri``, its result in ``xcom_dir``; restores SIGTERM after."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MLOPS_XCOM_DIR", str(xcom_dir))
    mlflow.set_tracking_uri(tracking_uri)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train_task(
    task_type: str,
    training: Path,
    evaluation: Path,
    tracking_uri: str,
    tmp_path: Path,
    mp: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Train on ``training`` (its metadata names the timestamp and key) and score ``evaluation``."""
    argv = ["--training-set", str(training), "--evaluation-set", str(evaluation), "--label", TABULAR_LABEL]
    argv += ["--experiment", unique_name(task_type), "--task-type", task_type]
    argv += ["--hyperparameters", json.dumps(TABULAR_FAST)]
    assert _main(argv, tracking_uri, tmp_path, mp) == 0
    result = json.loads((tmp_path / "return.json").read_text())
    assert set(result) == {"run_id", "model_uri", "metrics"}
    return dict(result)


def _check_run(result: dict[str, Any], task_type: str, tracking_uri: str, curves: tuple[str, str]) -> Any:
    """The run's task tag and params, columns from the metadata, and the task's curves; returns the run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert constants.TASK_TYPE_TAG == "mlops.task_type"
    assert run.data.tags["mlops.task_type"] == task_type == run.data.params["task_type"]
    assert run.data.params["timestamp_column"] == TABULAR_TIMESTAMP  # from the parquet metadata
    assert run.data.params["id_columns"] == TABULAR_KEY
    assert sorted(run.data.params["features"].split(",")) == sorted(TABULAR_FEATURES)
    for curve in ("train_loss", *(f"early_stop_{name}" for name in curves)):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, f"epoch_{curve}")]
        assert sorted(steps) == list(range(1, TABULAR_FAST["epochs"] + 1)), curve
    return run


def test_a_multiclass_model_trains_end_to_end_and_keeps_the_output_contract(
    mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    from mlops_provider.ml.tasks import contract_violation

    caplog.set_level(logging.INFO, logger="mlops_provider.trainer")
    training = write_parquet(tabular_frame("multiclass"), tmp_path / "train.parquet", feast_metadata())
    later = tabular_frame("multiclass", rows=120, seed=1, first_day=TABULAR_DAYS)
    later.loc[:2, TABULAR_LABEL] = "extreme"  # a class the training set never had: kept, counts against
    evaluation = write_parquet(later, tmp_path / "eval.parquet")

    result = _train_task(
        "multiclass", training, evaluation, mlflow_server.tracking_uri, tmp_path, monkeypatch
    )

    metrics = result["metrics"]
    scored = {"log_loss", "accuracy", "macro_f1"}
    assert set(metrics) == {
        "best_epoch",
        *(f"early_stop_{m}" for m in scored),
        *(f"eval_{m}" for m in scored),
    } | {"eval_rows"}  # no eval_positives: that is binary's
    assert metrics["eval_rows"] == 120 and metrics["eval_accuracy"] > 0.7  # chance is about 1/3
    assert "3 of 120 rows have a class the training set never had (extreme)" in caplog.text
    _check_run(result, "multiclass", mlflow_server.tracking_uri, ("log_loss", "accuracy"))
    stats = mlflow.artifacts.load_dict(f"runs:/{result['run_id']}/reference/feature_stats.json")
    assert set(stats["label_frequencies"]) == {"high", "low", "mid"} and "label_rate" not in stats

    model = mlflow.pyfunc.load_model(result["model_uri"])
    output = model.predict(later[list(TABULAR_FEATURES)])
    assert contract_violation("multiclass", output.columns) is None
    assert set(output["prediction"]) <= {"high", "low", "mid"}
    assert (output["prediction"] == later[TABULAR_LABEL]).mean() == pytest.approx(metrics["eval_accuracy"])


def test_a_regression_model_trains_end_to_end_and_beats_predicting_the_mean(
    mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from sklearn.metrics import r2_score

    from mlops_provider.ml.tasks import contract_violation

    training = write_parquet(tabular_frame("regression"), tmp_path / "train.parquet", feast_metadata())
    later = tabular_frame("regression", rows=120, seed=1, first_day=TABULAR_DAYS)
    evaluation = write_parquet(later, tmp_path / "eval.parquet")

    result = _train_task(
        "regression", training, evaluation, mlflow_server.tracking_uri, tmp_path, monkeypatch
    )

    metrics = result["metrics"]
    scored = {"mse", "rmse", "mae", "r2"}
    assert set(metrics) == {
        "best_epoch",
        *(f"early_stop_{m}" for m in scored),
        *(f"eval_{m}" for m in scored),
    } | {"eval_rows"}
    _check_run(result, "regression", mlflow_server.tracking_uri, ("mse", "rmse"))
    stats = mlflow.artifacts.load_dict(f"runs:/{result['run_id']}/reference/feature_stats.json")
    assert set(stats) >= {"label_mean", "label_std"} and "label_rate" not in stats

    model = mlflow.pyfunc.load_model(result["model_uri"])
    output = model.predict(later[list(TABULAR_FEATURES)])
    assert (
        contract_violation("regression", output.columns) is None and output["prediction"].dtype == "float64"
    )
    r2 = r2_score(later[TABULAR_LABEL], output["prediction"])
    assert r2 > 0.5 and r2 == pytest.approx(metrics["eval_r2"], abs=1e-4)  # held out, better than the mean


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "one_class",
            "label 'target' has 1 class ('only') in 360 rows; a multiclass label needs at least two",
        ),
        ("text_regression", "label 'target' must be numeric for a regression, found '"),
        ("missing_feature", "has no feature column(s) ['height'] (columns: "),
        (
            "no_timestamp",
            "pass --timestamp-column (the training set's event time column: timestamp_column of",
        ),
    ],
)
def test_what_a_task_cannot_train_on_is_refused_without_a_run(
    case: str,
    message: str,
    mlflow_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame, task_type, extra = tabular_frame("multiclass"), "multiclass", []
    metadata: dict[str, str] | None = feast_metadata()
    if case == "one_class":
        frame = frame.assign(**{TABULAR_LABEL: "only"})
    if case == "text_regression":
        task_type = "regression"
    if case == "missing_feature":
        extra = ["--features", "x,height"]
    if case == "no_timestamp":
        metadata = None
    training = write_parquet(frame, tmp_path / f"{case}.parquet", metadata)
    experiment = unique_name(f"refused-{case}")
    argv = ["--training-set", str(training), "--label", TABULAR_LABEL, "--experiment", experiment]
    argv += ["--task-type", task_type, *extra]

    assert _main(argv, mlflow_server.tracking_uri, tmp_path, monkeypatch) == EXIT_BAD_INPUT

    assert "refusing to train: training set" in caplog.text and message in caplog.text
    assert not (tmp_path / "return.json").exists()
    assert runs_of(mlflow_server.tracking_uri, experiment) == []


def test_the_task_type_is_one_of_three() -> None:
    assert _args().task_type == "binary" and _args().timestamp_column is None and _args().features == ""
    assert _args("--task-type", "regression").task_type == "regression"
    with pytest.raises(SystemExit) as err:
        _args("--task-type", "ranking")
    assert err.value.code == 2
