"""The trainer's command line as both backends build it, and the hyperparameters a template rendered."""

from __future__ import annotations

import json

import pytest

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.trainer.cli import parser
from mlops_provider.trainer.command import as_dict, trainer_command


def test_the_command_runs_the_trainer_module_with_one_flag_per_setting() -> None:
    argv = trainer_command("s3://lake/train.parquet", "churned", {"lr": 0.01, "epochs": 4}, "churn")
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
    ]
    assert trainer_command("x.parquet") == [
        "-m",
        "mlops_provider.trainer",
        "--training-set",
        "x.parquet",
        "--label",
        "churned",
        "--experiment",
        "churn",
        "--hyperparameters",
        "{}",
    ]


def test_the_same_hyperparameters_give_the_same_command_however_they_were_rendered() -> None:
    as_object = trainer_command("x", hyperparameters={"hidden": [8, 4], "epochs": 3})
    assert trainer_command("x", hyperparameters='{"epochs": 3, "hidden": [8, 4]}') == as_object
    assert trainer_command("x", hyperparameters="{'epochs': 3, 'hidden': [8, 4]}") == as_object


def test_the_trainer_parses_the_command_it_is_given() -> None:
    argv = trainer_command("s3://lake/t.parquet", "label", {"epochs": 2}, "exp")
    args = parser().parse_args(argv[2:])  # after "-m mlops_provider.trainer"
    assert (args.training_set, args.label, args.experiment) == ("s3://lake/t.parquet", "label", "exp")
    assert json.loads(args.hyperparameters) == {"epochs": 2}


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
