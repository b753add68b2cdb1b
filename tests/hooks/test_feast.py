"""FeastHook against a real Feast store on a private copy of feature_repo/."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.feast import FeastHook, deep_merge


def test_deep_merge_merges_nested_mappings_and_replaces_the_rest():
    base = {"online_store": {"type": "sqlite", "path": "a.db"}, "registry": "r.db", "project": "churn"}
    merged = deep_merge(base, {"online_store": {"path": "b.db"}, "registry": {}})

    assert merged == {"online_store": {"type": "sqlite", "path": "b.db"}, "registry": {}, "project": "churn"}
    assert base["online_store"]["path"] == "a.db"  # the input is left alone


def test_an_override_of_another_type_replaces_the_section_whole():
    """A redis online store over the repo's sqlite one: sqlite's path is no option of redis's."""
    base = {"online_store": {"type": "sqlite", "path": "a.db"}, "project": "churn"}
    redis = {"type": "redis", "connection_string": "localhost:6379"}

    assert deep_merge(base, {"online_store": redis}) == {"online_store": redis, "project": "churn"}


def test_a_redis_online_store_override_gives_a_config_feast_accepts(feature_repo):
    hook = FeastHook(
        repo_path=str(feature_repo),
        config_overrides={"online_store": {"type": "redis", "connection_string": "localhost:6379"}},
    )
    online_store = hook.get_store().config.online_store  # builds the config; connects to nothing yet
    assert online_store.type == "redis" and online_store.connection_string == "localhost:6379"


def test_missing_repo_path_says_how_to_set_it(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_EMPTY", json.dumps({"conn_type": "feast", "extra": {}}))
    with pytest.raises(ConfigurationError, match=r"'feast_empty' has no repo_path.*\"repo_path\""):
        FeastHook(feast_conn_id="feast_empty").get_store()


def test_repo_without_feature_store_yaml_is_rejected(tmp_path):
    with pytest.raises(ConfigurationError, match=f"No feature_store.yaml in Feast repo_path {tmp_path}"):
        FeastHook(repo_path=str(tmp_path), config_overrides={}).get_store()


def test_invalid_overrides_do_not_echo_their_secret(feature_repo):
    hook = FeastHook(config_overrides='{"online_store": {"connection_string": "redis:6379,password=s3cr3t"')
    with pytest.raises(ConfigurationError, match="not valid JSON") as err:
        hook.get_store()
    assert "s3cr3t" not in str(err.value)


def test_unknown_view_and_service_list_the_known_ones(feature_repo):
    hook = FeastHook()
    assert hook.apply()["feature_views"] == ["customer_activity"]

    with pytest.raises(
        ConfigurationError, match=r"Unknown Feast feature view 'nope'.*known views: customer_activity"
    ):
        hook.get_feature_view("nope")
    with pytest.raises(ConfigurationError, match="known services: churn_model_v1"):
        hook.get_feature_service("nope")


def test_unapplied_repo_points_at_apply(feature_repo):
    with pytest.raises(ConfigurationError, match="run FeastApplyOperator first"):
        FeastHook().get_feature_view("customer_activity")


def test_config_overrides_from_the_connection_replace_the_online_store(feature_repo, tmp_path, monkeypatch):
    online = tmp_path / "elsewhere" / "online.db"
    online.parent.mkdir()
    extra = {
        "repo_path": str(feature_repo),
        "config_overrides": json.dumps({"online_store": {"path": str(online)}}),
    }
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_DEFAULT", json.dumps({"conn_type": "feast", "extra": extra}))
    hook = FeastHook()

    store = hook.get_store()
    assert hook.get_store() is store  # cached
    assert store.config.online_store.type == "sqlite" and store.config.online_store.path == str(online)
    assert store.config.project == "churn"  # the rest of feature_store.yaml still applies
    hook.apply()
    assert online.is_file() and not (feature_repo / "data" / "online_store.db").exists()


def test_constructor_arguments_override_the_connection(feature_repo, tmp_path):
    online = tmp_path / "arg.db"
    hook = FeastHook(repo_path=str(feature_repo), config_overrides={"online_store": {"path": str(online)}})
    assert hook.get_store().config.online_store.path == str(online)


def test_test_connection_reports_views_and_failures(feature_repo, tmp_path):
    hook = FeastHook()
    hook.apply()
    assert hook.test_connection() == (True, "Feast project 'churn' with 1 feature view(s): customer_activity")

    ok, message = FeastHook(repo_path=str(tmp_path), config_overrides={}).test_connection()
    assert not ok and "No feature_store.yaml" in message


def test_batch_source_uri_resolves_against_the_repo(feature_repo):
    hook = FeastHook()
    hook.apply()
    assert hook.batch_source_uri("customer_activity") == str(feature_repo / "data/offline/customer_activity")
    assert hook.fresh_until("customer_activity") is None


def test_view_lock_excludes_other_holders_in_the_same_process(feature_repo):
    events: list[str] = []

    def contender() -> None:
        with FeastHook().view_lock("customer_activity"):
            events.append("contender")

    with FeastHook().view_lock("customer_activity"):
        thread = threading.Thread(target=contender)
        thread.start()
        time.sleep(0.5)
        events.append("holder releases")
    thread.join(timeout=10)

    assert events == ["holder releases", "contender"]
    assert Path(feature_repo / ".locks" / "customer_activity.lock").is_file()


def test_invalid_merged_config_names_the_field_not_the_secret(feature_repo):
    hook = FeastHook(config_overrides={"online_store": {"type": "sqlite", "path": {"password": "s3cr3t"}}})
    with pytest.raises(
        ConfigurationError, match=r"not a valid Feast config \(path: Input should be a valid string\)"
    ) as err:
        hook.get_store()
    assert "s3cr3t" not in str(err.value)
