"""MLflowHook against a real ``mlflow server``: connection parsing, scoped credentials, errors, links."""

from __future__ import annotations

import json
import os

import pytest

from mlops_provider.hooks.mlflow import MLflowHook, strip_userinfo
from tests.mlflow_helpers import SENTINEL_PASSWORD, SENTINEL_TOKEN, connection_env


def _set_conn(monkeypatch: pytest.MonkeyPatch, **fields) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", **fields}))


@pytest.mark.parametrize(
    ("fields", "tracking", "registry"),
    [
        ({"host": "http://mlflow:5000"}, "http://mlflow:5000", "http://mlflow:5000"),
        ({"host": "mlflow", "port": 5000}, "http://mlflow:5000", "http://mlflow:5000"),
        (
            {"host": "sqlite:////tmp/m.db", "extra": {"registry_uri": "sqlite:////tmp/r.db"}},
            "sqlite:////tmp/m.db",
            "sqlite:////tmp/r.db",
        ),
        ({"host": "/srv/mlruns"}, "/srv/mlruns", "/srv/mlruns"),
    ],
)
def test_uris_from_connection(monkeypatch, fields, tracking, registry) -> None:
    _set_conn(monkeypatch, **fields)
    hook = MLflowHook()
    assert (hook.tracking_uri, hook.registry_uri) == (tracking, registry)


def test_constructor_overrides_connection(monkeypatch) -> None:
    _set_conn(monkeypatch, host="http://mlflow:5000", extra={"registry_uri": "http://reg:5000"})
    hook = MLflowHook(tracking_uri="http://other:1", registry_uri="http://reg2:1")
    assert (hook.tracking_uri, hook.registry_uri) == ("http://other:1", "http://reg2:1")


def test_credentials_env_is_scoped_and_restored(monkeypatch) -> None:
    _set_conn(
        monkeypatch,
        host="http://mlflow:5000",
        login="u",
        password=SENTINEL_PASSWORD,
        extra={"token": SENTINEL_TOKEN, "insecure_tls": True},
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "previous-user")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    hook = MLflowHook()

    with hook.credentials_env():
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "u"
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SENTINEL_PASSWORD
        assert os.environ["MLFLOW_TRACKING_TOKEN"] == SENTINEL_TOKEN
        assert os.environ["MLFLOW_TRACKING_INSECURE_TLS"] == "true"

    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "previous-user"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ and "MLFLOW_TRACKING_TOKEN" not in os.environ


def test_client_does_not_touch_global_tracking_uri(mlflow_conn) -> None:
    import mlflow

    before = mlflow.get_tracking_uri()
    hook = MLflowHook()
    assert hook.get_client() is hook.get_client()
    with hook.session() as client:
        client.search_experiments(max_results=1)
    assert mlflow.get_tracking_uri() == before


def test_test_connection_ok(mlflow_conn) -> None:
    ok, message = MLflowHook().test_connection()
    assert ok and mlflow_conn.tracking_uri in message
    assert SENTINEL_PASSWORD not in message


def test_unreachable_server_is_service_unavailable_without_credentials(monkeypatch) -> None:
    from mlops_provider.exceptions import ServiceUnavailable

    uri = f"http://mlops:{SENTINEL_PASSWORD}@127.0.0.1:9"  # port 9 (discard) refuses connections
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(uri))
    hook = MLflowHook()

    ok, message = hook.test_connection()
    with pytest.raises(ServiceUnavailable) as err, hook.session() as client:
        client.search_experiments(max_results=1)

    assert not ok and "127.0.0.1:9" in message
    assert "http://127.0.0.1:9" in str(err.value)
    assert SENTINEL_PASSWORD not in message and SENTINEL_PASSWORD not in str(err.value)
    assert err.value.__cause__ is None


def test_strip_userinfo() -> None:
    assert strip_userinfo("https://u:p@host:1/x") == "https://host:1/x"
    assert strip_userinfo("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"


def test_ui_urls(monkeypatch, mlflow_conn) -> None:
    from mlflow import MlflowClient

    run = MlflowClient(mlflow_conn.tracking_uri).create_run("0")
    hook = MLflowHook()
    assert (
        hook.ui_url_for_run(run.info.run_id)
        == f"{mlflow_conn.tracking_uri}/#/experiments/0/runs/{run.info.run_id}"
    )
    assert (
        hook.ui_url_for_model_version("churn model", 3)
        == f"{mlflow_conn.tracking_uri}/#/models/churn%20model/versions/3"
    )

    _set_conn(monkeypatch, host="sqlite:////tmp/m.db")
    assert MLflowHook().ui_url_for_model_version("m", 1) is None
    _set_conn(monkeypatch, host="sqlite:////tmp/m.db", extra={"ui_base_url": "https://mlflow.example.com/"})
    assert MLflowHook().ui_url_for_run("abc", "7") == "https://mlflow.example.com/#/experiments/7/runs/abc"
