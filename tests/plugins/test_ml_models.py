"""The "ML models" plugin: cheap to load everywhere, a valid external view, clear error messages, and
served from the installed package, once, whether or not the plugins folder holds plugins/ml_models.py.

The view itself, behind Airflow's login in a real API server and browser, is tested in
tests/integration/test_ml_models_view.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
from tools.services import free_port

from mlops_provider.plugins import ml_models
from tests.conftest import ROOT
from tests.mlflow_helpers import connection_env

FOLDER_FILE = ROOT / "plugins" / "ml_models.py"
PLUGIN_CLASS = "mlops_provider.plugins.ml_models:MLModelsPlugin"
ALREADY_REGISTERED = "Plugin 'ml_models' already registered, skipping"


def load_folder_file():
    """plugins/ml_models.py, loaded as Airflow loads a plugins-folder file (by path, not as a package)."""
    spec = importlib.util.spec_from_file_location("ml_models_under_test", FOLDER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "load",
    [
        pytest.param("import mlops_provider.plugins.ml_models", id="package"),
        pytest.param(
            f"spec = importlib.util.spec_from_file_location('ml_models', {str(FOLDER_FILE)!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)",
            id="plugins-folder",
        ),
    ],
)
def test_loading_the_plugin_imports_neither_fastapi_nor_mlflow(load: str) -> None:
    # Every Airflow component, task processes included, loads the plugins.
    code = (
        "import importlib.util, sys\n"
        f"{load}\n"
        "heavy = ('fastapi', 'mlflow', 'pandas', 'airflow.api_fastapi', 'mlops_provider.plugins.overview')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_plugins_folder_file_steps_aside_for_the_installed_entry_point() -> None:
    # Airflow takes every AirflowPlugin subclass in a plugins-folder module's namespace.
    from airflow.plugins_manager import is_valid_plugin

    module = load_folder_file()

    assert _entry_point_installed()
    assert [v for v in vars(module).values() if is_valid_plugin(v)] == []


def test_without_the_entry_point_the_plugins_folder_file_is_the_packages_class(monkeypatch) -> None:
    from importlib import metadata as importlib_metadata

    from airflow.plugins_manager import is_valid_plugin

    monkeypatch.setattr(importlib_metadata, "entry_points", lambda **_: [])
    module = load_folder_file()

    assert [v for v in vars(module).values() if is_valid_plugin(v)] == [ml_models.MLModelsPlugin]


# Airflow instantiates plugins from the plugins folder and entry points, but registers a provider's
# plugin as the class itself: both must give the API server the same view and app.
@pytest.mark.parametrize("as_registered", ["instance", "class"])
def test_the_external_view_and_app_are_what_the_api_server_expects(as_registered: str) -> None:
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    plugin = ml_models.MLModelsPlugin() if as_registered == "instance" else ml_models.MLModelsPlugin

    [view] = [ExternalViewResponse.model_validate(v) for v in plugin.external_views]
    assert (view.name, view.href, view.url_route, view.category) == (
        "ML models",
        "ml-models/",
        "ml-models",
        "browse",
    )
    [app] = plugin.fastapi_apps
    assert app["url_prefix"] == "/ml-models" and not app["url_prefix"].startswith(
        tuple(RESERVED_URL_PREFIXES)
    )
    assert plugin.fastapi_apps[0]["app"] is app["app"]  # built once
    assert ml_models.MLModelsPlugin().fastapi_apps[0]["app"] is app["app"]
    assert {r.path for r in app["app"].routes} == {"/", "/api/overview"}


def test_without_the_connection_the_page_says_how_to_add_it(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)

    models, source, error = ml_models.read_overview()

    assert models is None and source == "connection 'mlflow_default'"
    assert "connection 'mlflow_default' is not defined" in error and "Admin > Connections" in error


def test_a_connection_without_host_gives_the_hooks_message(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow"}))

    models, _, error = ml_models.read_overview()

    assert models is None and "'mlflow_default' has no host" in error


def test_an_unreachable_mlflow_gives_a_message_not_an_error_page(monkeypatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(url, http_max_retries=5))

    models, source, error = ml_models.read_overview()

    assert models is None and source == url
    assert f"MLflow at {url}" in error and "could not be reached" in error


# --- Airflow's own plugins manager, in a fresh interpreter each time: it caches the plugins it found
# (functools.cache on _get_plugins and friends, the ProvidersManager singleton) for the process.

PROBE = """
import json
from fastapi import FastAPI
from airflow import plugins_manager
from airflow.api_fastapi.app import init_plugins
from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse

plugins, errors = plugins_manager._get_plugins()
views, _ = plugins_manager._get_ui_plugins()
app = FastAPI()
init_plugins(app)  # what the API server does with the plugins' fastapi_apps
print(json.dumps({
    "plugins": [[p.name, str(p.source) if p.source else None] for p in plugins],
    "import_errors": errors,
    "view_routes": [v["url_route"] for v in views],
    "mounts": [r.path for r in app.routes if r.path.startswith("/ml-models")],
    "listed": [PluginResponse.model_validate(i).name for i in plugins_manager.get_plugin_info()],
}))
"""


def _entry_point_installed() -> bool:
    """Whether the installed distribution declares the plugin as an ``airflow.plugins`` entry point."""
    eps = metadata.distribution("airflow-provider-mlops").entry_points
    return any(ep.group == "airflow.plugins" and ep.value == PLUGIN_CLASS for ep in eps)


def load_plugins(tmp_path, plugins_folder, *, lazy_discover_providers: bool) -> dict:
    """What Airflow's plugins manager registers, in a fresh interpreter with its own AIRFLOW_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow_home"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins_folder),
        # Airflow loads providers' "plugins" only with eager discovery (plugins_manager._get_plugins).
        AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS=str(lazy_discover_providers),
    )
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_served_once(found: dict) -> None:
    assert [name for name, _ in found["plugins"]] == ["ml_models"], found
    assert found["view_routes"] == ["ml-models"], found
    assert found["mounts"] == ["/ml-models"], found
    assert found["listed"] == ["ml_models"], found


@pytest.mark.parametrize("lazy_discover_providers", [True, False], ids=["default", "eager-providers"])
def test_with_the_plugins_folder_and_the_provider_the_view_is_registered_once(
    tmp_path, lazy_discover_providers: bool
) -> None:
    found = load_plugins(tmp_path, ROOT / "plugins", lazy_discover_providers=lazy_discover_providers)

    assert_served_once(found)
    # The folder file steps aside for the entry point, so nothing is skipped as a duplicate by default;
    # with eager provider discovery Airflow also reads get_provider_info's "plugins" and skips that copy.
    if lazy_discover_providers:
        assert found["import_errors"] == {}
    else:
        assert set(found["import_errors"].values()) <= {ALREADY_REGISTERED}


def test_with_an_empty_plugins_folder_the_provider_alone_serves_the_view(tmp_path) -> None:
    (tmp_path / "plugins").mkdir()

    found = load_plugins(tmp_path, tmp_path / "plugins", lazy_discover_providers=False)

    assert_served_once(found)
    assert found["plugins"][0][1] is None or "airflow-provider-mlops" in found["plugins"][0][1]
    assert found["import_errors"] == {} or set(found["import_errors"].values()) == {ALREADY_REGISTERED}


def test_with_an_empty_plugins_folder_and_default_settings_the_package_serves_the_view(tmp_path) -> None:
    (tmp_path / "plugins").mkdir()

    found = load_plugins(tmp_path, tmp_path / "plugins", lazy_discover_providers=True)

    assert_served_once(found)
    assert found["import_errors"] == {}
