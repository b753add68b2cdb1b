"""The trainer's command line as both backends build it, and the hyperparameters a template rendered."""

from __future__ import annotations

import json

import pytest

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.trainer.cli import parser
from mlops_provider.trainer.command import as_dict, trainer_command


def test_the_command_runs_the_trainer_module_with_one_flag_per_setting() -> None:
    argv = trainer_command(
        "s3://lake/train.parquet",
        label="churned",
        experiment="churn",
        hyperparameters={"lr": 0.01, "epochs": 4},
        id_columns=["customer_id", "region"],
    )
    assert argv == [
        "-m",
        "mlops_provider.trainer",
        "--training-set",
        "s3://lake/train.parquet",
        "--label",
        "churned",
        "--experiment",
        "churn",
        "--hyperparameters",
        '{"epochs": 4, "lr": 0.01}',
        "--id-columns",
        "customer_id,region",
        "--task-type",
        "binary",
    ]
    assert trainer_command("x.parquet", label="y", experiment="e") == [
        "-m",
        "mlops_provider.trainer",
        "--training-set",
        "x.parquet",
        "--label",
        "y",
        "--experiment",
        "e",
        "--hyperparameters",
        "{}",
        "--id-columns",
        "",
        "--task-type",
        "binary",
    ]


def test_task_type_timestamp_and_features_are_passed_when_known() -> None:
    argv = trainer_command(
        "x",
        label="kwh",
        experiment="e",
        task_type="Regression",
        timestamp_column="reading_time",
        feature_columns='["a", "b"]',
    )
    assert argv[-6:] == [
        "--task-type",
        "regression",
        "--timestamp-column",
        "reading_time",
        "--features",
        "a,b",
    ]
    with pytest.raises(ConfigurationError, match="Unknown task type 'ranking'"):
        trainer_command("x", label="y", experiment="e", task_type="ranking")


def test_id_columns_rendered_by_a_template_give_the_same_command() -> None:
    as_list = trainer_command("x", label="y", experiment="e", id_columns=["a", "b"])
    assert trainer_command("x", label="y", experiment="e", id_columns='["a", "b"]') == as_list
    assert trainer_command("x", label="y", experiment="e", id_columns="['a', 'b']") == as_list
    assert trainer_command("x", label="y", experiment="e", id_columns="a, b") == as_list


def test_the_same_hyperparameters_give_the_same_command_however_they_were_rendered() -> None:
    run = {"label": "y", "experiment": "e"}
    as_object = trainer_command("x", hyperparameters={"hidden": [8, 4], "epochs": 3}, **run)
    assert trainer_command("x", hyperparameters='{"epochs": 3, "hidden": [8, 4]}', **run) == as_object
    assert trainer_command("x", hyperparameters="{'epochs': 3, 'hidden': [8, 4]}", **run) == as_object


def test_the_trainer_parses_the_command_it_is_given() -> None:
    argv = trainer_command(
        "s3://lake/t.parquet",
        label="label",
        experiment="exp",
        hyperparameters={"epochs": 2},
        id_columns=["k"],
    )
    args = parser().parse_args(argv[2:])  # after "-m mlops_provider.trainer"
    assert (args.training_set, args.label, args.experiment) == ("s3://lake/t.parquet", "label", "exp")
    assert args.id_columns == "k"
    assert json.loads(args.hyperparameters) == {"epochs": 2}


def test_the_trainer_assumes_no_dataset_label_or_key() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--training-set", "t.parquet", "--experiment", "e"])  # no --label
    with pytest.raises(SystemExit):
        parser().parse_args(["--training-set", "t.parquet", "--label", "y"])  # no --experiment
    assert parser().parse_args(["--training-set", "t", "--label", "y", "--experiment", "e"]).id_columns == ""


def test_rendered_hyperparameters_are_parsed() -> None:
    assert as_dict('{"epochs": 3}') == {"epochs": 3}
    assert as_dict("{'hidden': [8, 4]}") == {"hidden": [8, 4]}
    assert as_dict(None) == {} and as_dict("") == {}
    original = {"epochs": 1}
    copied = as_dict(original)
    assert copied == original and copied is not original  # the caller's dict is never shared
    with pytest.raises(ConfigurationError, match="must be a mapping, got list"):
        as_dict("[1, 2]")
    with pytest.raises(ConfigurationError, match="are neither JSON nor a dict literal"):
        as_dict("epochs=3")
    with pytest.raises(ConfigurationError, match="are neither JSON nor a dict literal"):
        as_dict("{'lr': __import__('os').getcwd()}")  # never evaluated


def test_an_evaluation_set_adds_its_flag_and_none_or_empty_leaves_it_out() -> None:
    run = {"label": "y", "experiment": "e"}
    argv = trainer_command("s3://lake/train.parquet", evaluation_set_uri="s3://lake/eval.parquet", **run)
    assert argv[2:6] == [
        "--training-set",
        "s3://lake/train.parquet",
        "--evaluation-set",
        "s3://lake/eval.parquet",
    ]
    assert parser().parse_args(argv[2:]).evaluation_set == "s3://lake/eval.parquet"
    without = trainer_command("s3://lake/train.parquet", **run)
    assert "--evaluation-set" not in without and parser().parse_args(without[2:]).evaluation_set is None
    assert (
        trainer_command("s3://lake/train.parquet", evaluation_set_uri="", **run) == without
    )  # an empty template
