"""The trainer's command line: its result contract, exit codes, hyperparameters and the FAILED run.

The end-to-end runs go through ``python -m mlops_provider.trainer`` against a real MLflow server.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_provider.trainer import EXIT_BAD_INPUT, RESULT_MARKER
from mlops_provider.trainer.cli import (
    DEFAULT_HYPERPARAMETERS,
    BadHyperparameters,
    emit,
    parser,
    resolve_hyperparameters,
)
from tests.trainer.conftest import FAST, XDIST_GROUP, run_trainer, runs_of

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
