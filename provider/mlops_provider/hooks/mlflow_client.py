"""MLflow client logic with no Airflow in it, shared by the hook, the canary controller and the trainer.

:class:`~mlops_provider.hooks.mlflow.MLflowHook` owns the connection and builds the client; this module
owns what every caller does with one: alias lookups, filter quoting, tag values, get-or-create
experiment, and "reuse the run recorded under this key, else record one". The trainer image imports it
without Airflow.

Keeping MLflow's first request from importing feast:

MLflow loads its ``mlflow.request_header_provider`` entry points on the first REST call of a process,
and feast 0.67 registers one (``FeastMLflowHeaderProvider``). Loading it imports the whole ``feast``
package: 10 to 20 s on 2 cores, paid by every task process that talks to MLflow, for a provider that
adds headers only while feast's own MLflow data sources run a request.

:func:`defer_feast_request_headers` loads MLflow's registry without that entry point and registers a
stand-in that delegates to feast's provider once feast's module is imported by anyone; until then the
provider's token (a ContextVar of that very module) cannot be set, so it would add nothing anyway.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlops_provider.constants import MAX_TAG_LENGTH

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from feast.infra.data_sources.mlflow.auth import FeastMLflowHeaderProvider
    from mlflow import MlflowClient
    from mlflow.entities import Run

FEAST_HEADER_MODULE = "feast.infra.data_sources.mlflow.auth"
_FEAST_ENTRY_POINT = f"{FEAST_HEADER_MODULE}:FeastMLflowHeaderProvider"
_GROUP = "mlflow.request_header_provider"


class DeferredFeastHeaderProvider:
    """feast's MLflow request-header provider, consulted only when feast's module is loaded."""

    @staticmethod
    def _provider() -> FeastMLflowHeaderProvider | None:
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
    deferred: list[EntryPoint] = []

    def without_feast(group: str) -> list[EntryPoint]:
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


# MLflow's error codes for "no such model, version, alias or experiment".
MISSING_ERROR_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def is_missing(err: Exception) -> bool:
    """True when an ``MlflowException`` says the thing asked for does not exist."""
    return getattr(err, "error_code", "") in MISSING_ERROR_CODES


def filter_literal(value: Any) -> str:
    """``value`` as a quoted string literal for an MLflow search filter (``tags.`x` = <here>``).

    MLflow's filter parser strips the outer quotes and never unescapes, so a backslash escape would be
    compared literally: a value with a single quote goes in double quotes instead.
    """
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    from mlops_provider.exceptions import ConfigurationError  # imports Airflow where it is installed

    raise ConfigurationError(
        f"{text!r} holds both quote characters, which an MLflow search filter cannot express; rename it."
    )


def tag_value(value: Any) -> str:
    """A value as MLflow tag text: dates in ISO form, others as JSON, cut to MLflow's tag limit."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_TAG_LENGTH]


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version number ``alias`` of model ``name`` points at, or None when the alias (or model) is absent."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if is_missing(err):
            return None
        raise


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when absent; safe when parallel tasks race to create it."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as err:  # a parallel task created it first
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
        experiment = client.get_experiment_by_name(name)
        if experiment is None:  # deleted again meanwhile: report the original error
            raise
        return experiment.experiment_id


def find_run_by_key(client: MlflowClient, experiment: str, key_tag: str, key: str) -> Run | None:
    """The oldest run of ``experiment`` whose ``key_tag`` is ``key``, or None.

    :func:`record_run` sets the key tag last, so a run found here was recorded completely.
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{key_tag}` = {filter_literal(key)}",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0] if runs else None


def record_run(
    client: MlflowClient,
    experiment: str,
    run_name: str,
    *,
    key_tag: str,
    key: str,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
) -> str:
    """Record a finished run: metrics, params, text artifacts, tags, and ``key_tag = key`` set last.

    A run killed part-way is marked FAILED and carries no key, so :func:`find_run_by_key` never
    reuses it and a re-run records a complete one. Returns the run id.
    """
    from mlflow.entities import Metric, Param

    run_id = client.create_run(get_or_create_experiment(client, experiment), run_name=run_name).info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, tag_value(v)) for k, v in (params or {}).items()],
        )
        for path, text in (texts or {}).items():
            client.log_text(run_id, text, path)
        for tag, value in {**(tags or {}), key_tag: key}.items():  # the key last: it marks the run complete
            client.set_tag(run_id, tag, tag_value(value))
        client.set_terminated(run_id)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    return run_id
