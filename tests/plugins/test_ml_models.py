"""The "ML models" plugin module: cheap to load everywhere, a valid external view, clear error messages.

The view itself, behind Airflow's login in a real API server and browser, is tested in
tests/integration/test_ml_models_view.py.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from mlops_provider.local_stack import free_port
from tests.conftest import ROOT
from tests.mlflow_helpers import connection_env

PLUGIN = ROOT / "plugins" / "ml_models.py"


def load_plugin():
    spec = importlib.util.spec_from_file_location("ml_models_under_test", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loading_the_plugin_imports_neither_fastapi_nor_mlflow() -> None:
    # Every Airflow component, task processes included, imports the plugins folder.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('ml_models', {str(PLUGIN)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "heavy = ('fastapi', 'mlflow', 'pandas', 'airflow.api_fastapi', 'mlops_provider.model_overview')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_external_view_and_app_are_what_the_api_server_expects() -> None:
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    plugin = load_plugin().MLModelsPlugin()

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
    assert {r.path for r in app["app"].routes} == {"/", "/api/overview"}


def test_without_the_connection_the_page_says_how_to_add_it(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)

    models, _, error = load_plugin().read_overview()

    assert models is None and "connection 'mlflow_default' is not defined" in error


def test_an_unreachable_mlflow_gives_a_message_not_an_error_page(monkeypatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(url, http_max_retries=5))

    models, source, error = load_plugin().read_overview()

    assert models is None and source == url
    assert f"MLflow at {url}" in error and "could not be reached" in error
