"""ValidateRunConfOperator: unknown conf keys are refused with their likely intended names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.operators.run_conf import ValidateRunConfOperator, unknown_conf_keys


def operator() -> ValidateRunConfOperator:
    from airflow.sdk import DAG, Param

    with DAG(
        "conf_check",
        schedule=None,
        params={
            "day": Param(None, type=["null", "string"]),
            "landing_path": Param(None, type=["null", "string"]),
        },
    ):
        return ValidateRunConfOperator(task_id="validate_conf")


def test_declared_keys_and_an_empty_conf_pass() -> None:
    op = operator()
    assert op.execute({"dag_run": SimpleNamespace(conf={"day": "2026-01-04"})}) == {"day": "2026-01-04"}
    assert op.execute({"dag_run": SimpleNamespace(conf=None)}) == {}


def test_unknown_keys_are_named_with_a_suggestion_and_the_accepted_keys() -> None:
    with pytest.raises(ConfigurationError) as err:
        operator().execute({"dag_run": SimpleNamespace(conf={"dya": "2026-01-04", "zzz": 1})})
    assert str(err.value) == (
        "DAG 'conf_check' refuses this run's conf: unknown key(s) 'dya' (did you mean 'day'?), 'zzz'. "
        "Accepted keys: day, landing_path; see the DAG's docs for each."
    )


def test_unknown_conf_keys_is_sorted_and_empty_when_all_declared() -> None:
    assert unknown_conf_keys({"day": 1}, ["day"]) == []
    assert unknown_conf_keys({"landing_pth": 1, "b": 2}, ["day", "landing_path"]) == [
        "'b'",
        "'landing_pth' (did you mean 'landing_path'?)",
    ]
