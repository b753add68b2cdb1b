"""Airflow UI plugin: the "ML models" view (see docs/ui_plugin.md), shipped in the provider's wheel.

A FastAPI app, mounted by the API server at ``/ml-models``, serves an HTML page and its JSON
(``/ml-models/api/overview``); an external view puts the page in the UI's Browse menu, shown in an
iframe. Both require the Airflow login: the UI's ``_token`` cookie or an ``Authorization: Bearer``
header, checked by Airflow's own dependencies.

Airflow finds the plugin through the provider's metadata (``plugins`` in get_provider_info.py); the
repository's ``plugins/ml_models.py`` only re-exports the class for deployments that use a plugins
folder, and Airflow keeps one plugin per name (see that file).

Every Airflow component loads plugins (task processes too), while only the API server uses the app:
so this module imports nothing at top level but ``AirflowPlugin``, and builds the app on first use.
No ``from __future__ import annotations``: FastAPI reads the route signatures' annotations.
"""

import functools
import logging
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/ml-models"
MLFLOW_CONN_ID = "mlflow_default"
# The hook sets MLflow's credential variables process-wide for each call; one page read at a time.
_MLFLOW_LOCK = threading.Lock()


def read_overview() -> tuple[list[dict[str, Any]] | None, str, str | None]:
    """Return ``(models, source, error)``: the overview of every model, or None and a message saying why not."""
    from mlops_provider.exceptions import ConfigurationError, MlopsProviderError
    from mlops_provider.hooks.mlflow import MLflowHook
    from mlops_provider.plugins.overview import model_overview

    # No retries: a page should say at once that MLflow is down, not after a minute of back-off.
    hook = MLflowHook(MLFLOW_CONN_ID, http_max_retries=0)
    source = f"connection {MLFLOW_CONN_ID!r}"
    try:
        source = hook.safe_tracking_uri
        with _MLFLOW_LOCK:
            return model_overview(hook), source, None
    except ConfigurationError as err:
        if type(err.__cause__).__name__ != "AirflowNotFoundException":  # a connection that is wrong
            return None, source, str(err)
        # The hook's message speaks to DAG authors (an environment variable); the page's reader may
        # add the connection in the UI instead.
        return (
            None,
            source,
            (
                f"The Airflow connection {MLFLOW_CONN_ID!r} is not defined; add it (Admin > Connections, or "
                "an AIRFLOW_CONN_MLFLOW_DEFAULT variable; type mlflow, host = the MLflow tracking URI) to "
                "see the registered models."
            ),
        )
    except MlopsProviderError as err:  # unreachable server
        return None, source, str(err)
    except Exception as err:  # an MLflow error: show it rather than a bare "Internal Server Error"
        return None, source, f"Reading the models from MLflow at {source} failed: {type(err).__name__}: {err}"


def _warm_up() -> None:
    """Import what the first page view needs, so that view does not wait for it.

    MLflow's first REST call loads its request-header plugins, and feast registers one, which would
    import feast (5 to 20 s): the provider defers it (mlops_provider.hooks.mlflow_client). Failures are
    left for the page to report.
    """
    try:
        from mlops_provider.hooks.mlflow_client import defer_feast_request_headers

        defer_feast_request_headers()
        import mlops_provider.plugins.overview  # noqa: F401
    except Exception:  # the page shows the real error when it is viewed
        log.debug("Warming up the ML models view failed; the page reports why.", exc_info=True)


@functools.cache
def build_app() -> Any:
    """The FastAPI app of the view; built once, on first use (by the API server, at start-up)."""
    import contextlib
    import secrets
    from collections.abc import AsyncIterator

    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    from mlops_provider.plugins.page import render_page

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A daemon thread: the API server starts at once and serves everything else meanwhile.
        threading.Thread(target=_warm_up, name="ml-models-warm-up", daemon=True).start()
        yield

    async def require_ui_access(request: Request) -> Any:
        """Airflow's authentication (the JWT of the Bearer header or of the UI's cookie), then the
        WEBSITE permission: 401 without a valid token, 403 for a user who may not use the UI."""
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_view

        user = await get_user(request, None, await bearer_scheme(request))
        requires_access_view(AccessView.WEBSITE)(request, user)
        return user

    app = FastAPI(
        title="ML models",
        dependencies=[Depends(require_ui_access)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        models, source, error = read_overview()
        nonce = secrets.token_urlsafe(16)
        # The page is self-contained: nothing may load from elsewhere, and only our own script runs.
        policy = (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
            "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
        )
        body = render_page(models, source=source, error=error, airflow_root="../", nonce=nonce)
        return HTMLResponse(body, headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"})

    @app.get("/api/overview")
    def overview() -> JSONResponse:
        models, source, error = read_overview()
        status = 503 if error else 200
        return JSONResponse({"source": source, "error": error, "models": models}, status_code=status)

    return app


class _AppsBuiltOnFirstRead:
    """``fastapi_apps`` that builds the app when first read, on the plugin class as on an instance.

    Airflow instantiates the plugins it finds in the plugins folder and through ``airflow.plugins``
    entry points, but registers a provider's plugin (``plugins`` in the provider info) as the class
    itself (airflow/plugins_manager.py, ``_load_providers_plugins``): a ``property`` read on the class
    would give the API server the property object, not the list.
    """

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        return [{"app": build_app(), "url_prefix": URL_PREFIX, "name": "ML models"}]


class MLModelsPlugin(AirflowPlugin):
    """The "ML models" view: per registered MLflow model, its aliases, canary rollout and drift."""

    # Airflow registers one plugin per name: this name makes the plugins-folder copy and the
    # provider's declaration one plugin (get_provider_info.py declares the same name).
    name = "ml_models"
    # AirflowPlugin declares these plain class attributes (list[Any]); a ClassVar would not match it.
    external_views = [  # noqa: RUF012 - read-only, see above
        {
            "name": "ML models",
            # Relative, so the view works when Airflow is served under a base path.
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "url_route": "ml-models",
            "destination": "nav",
            "category": "browse",
        }
    ]
    fastapi_apps = _AppsBuiltOnFirstRead()
