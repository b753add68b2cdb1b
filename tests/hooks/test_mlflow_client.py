"""The Airflow-free MLflow client logic, against a real ``mlflow server``.

Filter quoting and tag values as the server sees them, get-or-create of experiments (racing parallel
tasks included), "reuse the run recorded under this key, else record one", alias lookups, and MLflow's
first request not importing feast.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops_provider.constants import MAX_TAG_LENGTH
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.mlflow_client import (
    alias_version,
    filter_literal,
    find_run_by_key,
    get_or_create_experiment,
    is_missing,
    record_run,
    tag_value,
)
from tests.mlflow_helpers import unique_name

KEY_TAG = "mlops.test.key"

SCRIPT = """
import sys
from mlops_provider.hooks.mlflow_client import defer_feast_request_headers
assert defer_feast_request_headers() is True
from mlflow.tracking.request_header.registry import resolve_request_headers
headers = resolve_request_headers()
assert "feast" not in sys.modules, "feast was imported"
# Once feast's own module is in use, its provider answers through the stand-in.
from feast.infra.data_sources.mlflow import auth
token = auth._current_mlflow_token.set("t0ken")
assert resolve_request_headers()["Authorization"] == "Bearer t0ken"
auth._current_mlflow_token.reset(token)
assert "Authorization" not in resolve_request_headers()
print("ok", sorted(headers))
"""


def test_first_mlflow_request_headers_skip_feast_until_it_is_used() -> None:
    # A fresh interpreter: this pytest process has long imported mlflow's registry (and feast).
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_a_registry_already_loaded_is_left_alone() -> None:
    import mlflow.tracking.request_header.registry  # noqa: F401

    from mlops_provider.hooks.mlflow_client import defer_feast_request_headers

    defer_feast_request_headers.cache_clear()
    assert defer_feast_request_headers() is False


@pytest.fixture
def client(mlflow_server: Any) -> MlflowClient:
    return MlflowClient(mlflow_server.tracking_uri)


# -- filter quoting and tag values --------------------------------------------------------------------
# Values a filter must match exactly: SQL LIKE wildcards, a double quote, spaces and unicode.
SEARCHABLE = [
    "plain",
    "100%_sure",
    'say "hi"',
    "two  spaces",
    "caf\u00e9 / \u00fc",
    "s3://lake/x@sha256:ab12",
    "it's",
    "back\\slash",
]


def test_filter_literal_matches_exactly_in_a_real_search(client: MlflowClient) -> None:
    experiment = unique_name("quoting")
    recorded = {
        value: record_run(client, experiment, "r", key_tag=KEY_TAG, key=value) for value in SEARCHABLE
    }
    # A decoy that a LIKE-style or prefix match would confuse with "100%_sure".
    record_run(client, experiment, "decoy", key_tag=KEY_TAG, key="100xysure")
    for value, run_id in recorded.items():
        found = find_run_by_key(client, experiment, KEY_TAG, value)
        assert found is not None and found.info.run_id == run_id, value
    assert find_run_by_key(client, experiment, KEY_TAG, "plai") is None
    assert find_run_by_key(client, experiment, KEY_TAG, "PLAIN") is None
    # A value pasted into the filter as it is, for the hook's and operators' hand-built filters.
    quoted = filter_literal('say "hi"')
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        filter_string=f"tags.`{KEY_TAG}` = {quoted}",
    )
    assert [r.info.run_id for r in runs] == [recorded['say "hi"']]
    with pytest.raises(ConfigurationError, match="both quote characters"):
        filter_literal('it\'s "both"')


def test_tag_value_renders_dates_json_and_text_within_the_limit(client: MlflowClient) -> None:
    assert tag_value("text") == "text"
    assert tag_value(dt.date(2026, 1, 3)) == "2026-01-03"
    assert tag_value(dt.datetime(2026, 1, 3, 4, 5, tzinfo=dt.UTC)) == "2026-01-03T04:05:00+00:00"
    assert tag_value({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'  # sorted: same dict, same text
    assert tag_value(1.5) == "1.5" and tag_value(True) == "true" and tag_value(None) == "null"
    assert tag_value({"path": Path("/data/x")}) == '{"path": "/data/x"}'
    assert tag_value({"day": dt.date(2026, 1, 3)}) == '{"day": "2026-01-03"}'
    long = tag_value("x" * (MAX_TAG_LENGTH + 100))
    assert long == "x" * MAX_TAG_LENGTH
    # The server stores a value at the limit as it is.
    run_id = client.create_run(get_or_create_experiment(client, unique_name("tags"))).info.run_id
    client.set_tag(run_id, "mlops.long", long)
    client.set_tag(run_id, "mlops.cut", tag_value(list(range(3000))))
    tags = client.get_run(run_id).data.tags
    assert tags["mlops.long"] == long
    assert len(tags["mlops.cut"]) == MAX_TAG_LENGTH and tags["mlops.cut"].startswith("[0, 1, 2,")


# -- experiments --------------------------------------------------------------------------------------
def test_get_or_create_experiment_creates_once(client: MlflowClient) -> None:
    name = unique_name("experiment")
    created = get_or_create_experiment(client, name)
    assert client.get_experiment_by_name(name).experiment_id == created
    assert get_or_create_experiment(client, name) == created


def test_losing_the_create_race_returns_the_winners_experiment(mlflow_server: Any) -> None:
    """Another task creates the experiment between this task's lookup and its create."""
    name = unique_name("race")

    class LosesTheRace(MlflowClient):
        winner: str | None = None

        def get_experiment_by_name(self, experiment_name: str) -> Any:
            found = super().get_experiment_by_name(experiment_name)
            if found is None and self.winner is None:  # the window between lookup and create
                self.winner = MlflowClient(mlflow_server.tracking_uri).create_experiment(experiment_name)
            return found

    loser = LosesTheRace(mlflow_server.tracking_uri)
    assert get_or_create_experiment(loser, name) == loser.winner is not None


def test_parallel_tasks_creating_one_experiment_all_get_its_id(mlflow_server: Any) -> None:
    name = unique_name("parallel")
    barrier = threading.Barrier(6)
    results: list[str] = []
    errors: list[BaseException] = []

    def task() -> None:
        client = MlflowClient(mlflow_server.tracking_uri)
        barrier.wait()
        try:
            results.append(get_or_create_experiment(client, name))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=task) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(results) == 6 and len(set(results)) == 1
    assert results[0] == MlflowClient(mlflow_server.tracking_uri).get_experiment_by_name(name).experiment_id


def test_other_create_errors_are_raised(client: MlflowClient) -> None:
    with pytest.raises(MlflowException) as err:
        get_or_create_experiment(client, "x" * 600)  # longer than MLflow allows
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


# -- record_run / find_run_by_key ---------------------------------------------------------------------
def test_record_run_logs_everything_then_the_key_and_finishes(client: MlflowClient) -> None:
    experiment = unique_name("record")
    assert find_run_by_key(client, experiment, KEY_TAG, "k1") is None  # no experiment yet
    run_id = record_run(
        client,
        experiment,
        "gate-churn-v3",
        key_tag=KEY_TAG,
        key="k1",
        metrics={"roc_auc": 0.81, "rows": 300},
        params={"thresholds": {"roc_auc": 0.6}, "model": "churn"},
        tags={"mlops.gate.decision": "pass", "mlops.day": dt.date(2026, 1, 3)},
        texts={"gate/report.md": "# ok"},
    )
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "gate-churn-v3"
    assert run.data.metrics == {"roc_auc": 0.81, "rows": 300.0}
    assert run.data.params == {"thresholds": '{"roc_auc": 0.6}', "model": "churn"}
    assert run.data.tags[KEY_TAG] == "k1" and run.data.tags["mlops.day"] == "2026-01-03"
    assert run.data.tags["mlops.gate.decision"] == "pass"
    assert [a.path for a in client.list_artifacts(run_id, "gate")] == ["gate/report.md"]
    assert client.get_experiment(run.info.experiment_id).name == experiment
    found = find_run_by_key(client, experiment, KEY_TAG, "k1")
    assert found is not None and found.info.run_id == run_id
    assert find_run_by_key(client, experiment, KEY_TAG, "k2") is None


def test_a_run_that_fails_midway_is_failed_and_never_found_by_key(client: MlflowClient) -> None:
    experiment = unique_name("midway")
    with pytest.raises(MlflowException) as err:
        record_run(
            client,
            experiment,
            "r",
            key_tag=KEY_TAG,
            key="k",
            metrics={"m": 1.0},
            tags={"mlops.first": "set", "not a\nvalid tag": "x"},
        )
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    [failed] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert failed.info.status == "FAILED"
    assert failed.data.tags["mlops.first"] == "set" and KEY_TAG not in failed.data.tags
    assert find_run_by_key(client, experiment, KEY_TAG, "k") is None

    retried = record_run(client, experiment, "r", key_tag=KEY_TAG, key="k", metrics={"m": 1.0})
    again = record_run(client, experiment, "r", key_tag=KEY_TAG, key="k", metrics={"m": 2.0})
    found = find_run_by_key(client, experiment, KEY_TAG, "k")
    assert found is not None and found.info.run_id == retried != again  # the oldest complete run


def test_a_run_killed_while_logging_is_failed_and_carries_no_key(client: MlflowClient) -> None:
    """SIGTERM turned into SystemExit (as the trainer and Airflow's task runner do) mid-way."""
    experiment = unique_name("killed")

    class KilledAfterOneText(dict):
        def items(self) -> Iterator[tuple[str, str]]:
            yield "first.txt", "logged"
            raise SystemExit(143)

    with pytest.raises(SystemExit):
        record_run(client, experiment, "r", key_tag=KEY_TAG, key="k", texts=KilledAfterOneText(a="b"))
    [killed] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert killed.info.status == "FAILED" and KEY_TAG not in killed.data.tags
    assert [a.path for a in client.list_artifacts(killed.info.run_id)] == ["first.txt"]
    assert find_run_by_key(client, experiment, KEY_TAG, "k") is None


# -- aliases ------------------------------------------------------------------------------------------
def test_alias_version_is_none_for_a_missing_model_or_alias(client: MlflowClient, models: Any) -> None:
    name = unique_name("aliases")
    assert alias_version(client, name, "champion") is None  # no such model
    client.create_registered_model(name)
    truth = models["truth"]
    model_id = truth["model_uri"].removeprefix("models:/")
    version = client.create_model_version(name, truth["model_uri"], run_id=truth["run_id"], model_id=model_id)
    assert alias_version(client, name, "champion") is None  # no such alias
    client.set_registered_model_alias(name, "champion", version.version)
    assert alias_version(client, name, "champion") == str(version.version) == "1"


def test_is_missing_tells_absent_things_from_other_errors(client: MlflowClient) -> None:
    def error_of(call: Any, *args: Any) -> MlflowException:
        with pytest.raises(MlflowException) as err:
            call(*args)
        return err.value

    name = unique_name("missing")
    assert is_missing(error_of(client.get_registered_model, name))
    assert is_missing(error_of(client.get_model_version_by_alias, name, "champion"))
    assert is_missing(error_of(client.get_run, "0" * 32))
    experiment = get_or_create_experiment(client, name)
    assert experiment
    assert not is_missing(error_of(client.create_experiment, name))  # RESOURCE_ALREADY_EXISTS
    assert not is_missing(ValueError("no error code at all"))
