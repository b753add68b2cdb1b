"""Keep MLflow's first request from importing feast.

MLflow loads its ``mlflow.request_header_provider`` entry points on the first REST call of a process,
and feast 0.67 registers one (``FeastMLflowHeaderProvider``). Loading it imports the whole ``feast``
package: 10 to 20 s on 2 cores, paid by every task process that talks to MLflow, for a provider that
adds headers only while feast's own MLflow data sources run a request.

:func:`defer_feast_request_headers` loads MLflow's registry without that entry point and registers a
stand-in that delegates to feast's provider once feast's module is imported by anyone; until then the
provider's token (a ContextVar of that very module) cannot be set, so it would add nothing anyway.
"""

from __future__ import annotations

import functools
import sys

FEAST_HEADER_MODULE = "feast.infra.data_sources.mlflow.auth"
_FEAST_ENTRY_POINT = f"{FEAST_HEADER_MODULE}:FeastMLflowHeaderProvider"
_GROUP = "mlflow.request_header_provider"


class DeferredFeastHeaderProvider:
    """feast's MLflow request-header provider, consulted only when feast's module is loaded."""

    @staticmethod
    def _provider():  # -> FeastMLflowHeaderProvider | None
        module = sys.modules.get(FEAST_HEADER_MODULE)
        return module.FeastMLflowHeaderProvider() if module is not None else None

    def in_context(self) -> bool:
        provider = self._provider()
        return bool(provider is not None and provider.in_context())

    def request_headers(self) -> dict[str, str]:
        provider = self._provider()
        return provider.request_headers() if provider is not None else {}


@functools.cache
def defer_feast_request_headers() -> bool:
    """Load MLflow's request-header registry without importing feast; True if feast's provider was deferred.

    Call it before the process's first MLflow request; later calls, or a registry already loaded,
    change nothing.
    """
    if "mlflow.tracking.request_header.registry" in sys.modules:
        return False
    from mlflow.utils import plugins

    original = plugins.get_entry_points
    deferred = []

    def without_feast(group: str):
        found = original(group)
        if group != _GROUP:
            return found
        deferred.extend(ep for ep in found if ep.value == _FEAST_ENTRY_POINT)
        return [ep for ep in found if ep.value != _FEAST_ENTRY_POINT]

    plugins.get_entry_points = without_feast
    try:
        from mlflow.tracking.request_header import registry
    finally:
        plugins.get_entry_points = original
    if deferred:
        registry._request_header_provider_registry.register(DeferredFeastHeaderProvider)
    return bool(deferred)
