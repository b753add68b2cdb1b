"""The shared base of the canary operators, sensor and trigger: hook, strategy, backend, controller.

It sits outside the operators and sensors packages so both can build on it; it is where the Airflow-free
canary core (:mod:`mlops_provider.canary`) meets the hooks that talk to MLflow, Kubernetes and Prometheus.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider.constants import CANARY, CHALLENGER
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.links.mlflow import MLflowModelVersionLink

if TYPE_CHECKING:
    from mlops_provider.canary import CanaryController, CanaryStrategy
    from mlops_provider.canary.backends import CanaryBackend

CANARY_FIELDS = ("name", "version", "backend", "backend_config", "strategy", "mlflow_conn_id")


class CanaryTask(BaseOperator):
    """Shared plumbing: the MLflow hook, the strategy, the backend and the controller."""

    operator_extra_links = (MLflowModelVersionLink(),)
    # Where the version comes from when none is given, first alias set wins.
    default_aliases: tuple[str, ...] = (CANARY, CHALLENGER)

    def __init__(
        self,
        *,
        name: str,
        version: str | int | None = None,
        backend: str = "batch",
        backend_config: dict[str, Any] | None = None,
        strategy: dict[str, Any] | None = None,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.version = version
        self.backend = backend
        self.backend_config = backend_config or {}
        self.strategy = strategy
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def parsed_strategy(self) -> CanaryStrategy:
        from mlops_provider.canary import CanaryStrategy
        from mlops_provider.canary.backends import check_config

        data = as_dict(self.strategy, "strategy")
        if self.backend == "kserve" and "metrics" not in data:  # PromQL checks instead of the batch ones
            from mlops_provider.canary.backends.kserve import DEFAULT_KSERVE_CHECKS

            data["metrics"] = [dataclasses.asdict(check) for check in DEFAULT_KSERVE_CHECKS]
        strategy = CanaryStrategy.from_dict(data)
        check_config(self.backend, as_dict(self.backend_config, "backend_config"), strategy)
        return strategy

    def controller(self, client: Any, *, with_backend: bool = True) -> CanaryController:
        from mlops_provider.canary import CanaryController

        strategy = self.parsed_strategy()
        backend = (
            build_backend(self.backend, as_dict(self.backend_config, "backend_config"), self.hook, self.log)
            if with_backend
            else None
        )
        return CanaryController(client, self.name, strategy, backend, log=self.log)

    def resolved_version(self, controller: CanaryController) -> str:
        """The version given, else the one behind the first of :attr:`default_aliases` that is set."""
        if self.version not in (None, "", "None"):
            return str(self.version)
        for alias in self.default_aliases:
            version = controller.alias(alias)
            if version:
                return version
        raise ConfigurationError(
            f"No version given and {self.name!r} has none of the aliases {list(self.default_aliases)}."
        )


def as_dict(value: Any, what: str) -> dict[str, Any]:
    import json

    if value in (None, ""):
        return {}
    if isinstance(value, str):  # a rendered Jinja template
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigurationError(f"{what} is not valid JSON: {err}.") from err
    if not isinstance(value, dict):
        raise ConfigurationError(f"{what} must be an object, not {type(value).__name__}.")
    return value


def build_backend(
    kind: str, config: dict[str, Any], mlflow_hook: MLflowHook, log: Any = None
) -> CanaryBackend:
    """Build the backend ``kind`` from its JSON config."""
    if kind == "batch":
        from mlops_provider.canary.backends.batch import BatchCanaryBackend

        def version_tags(name: str, version: str) -> dict[str, str]:
            with mlflow_hook.session() as client:
                return dict(client.get_model_version(name, version).tags or {})

        return BatchCanaryBackend(mlflow_hook, version_tags=version_tags, log=log, **config)
    from mlops_provider.canary.backends.kserve import KServeCanaryBackend
    from mlops_provider.hooks.kserve import KServeHook

    def storage_uri(name: str, version: str) -> str:
        with mlflow_hook.session() as client:
            return client.get_model_version_download_uri(name, version)

    return KServeCanaryBackend(
        KServeHook(config.get("kubernetes_conn_id", "kubernetes_default")),
        service=config["service"],
        namespace=config["namespace"],
        storage_uri=storage_uri,
        **config.get("render", {}),
    )


def fetch_values(
    kind: str,
    config: dict[str, Any],
    mlflow_hook: MLflowHook,
    name: str,
    version: str,
    step: int,
    strategy: CanaryStrategy,
    *,
    poll: int,
) -> dict[str, tuple[float | None, float | None]]:
    """One analysis poll's ``{metric: (canary, champion)}`` values.

    ``poll`` is the poll's index in its step (0-based): the batch backend judges that poll's own slice
    of the step's traffic; Prometheus (kserve) answers for the traffic of the query's window.
    """
    if kind == "batch":
        from mlops_provider.canary.backends.batch import BatchCanaryBackend

        return BatchCanaryBackend(mlflow_hook, **config).values(name, version, step, strategy, poll=poll)
    from mlops_provider.canary.backends.kserve import KServeCanaryBackend
    from mlops_provider.hooks.prometheus import PrometheusHook

    backend = build_backend(kind, config, mlflow_hook)
    assert isinstance(backend, KServeCanaryBackend)  # noqa: S101 - narrows the type for mypy
    prometheus = PrometheusHook(
        config.get("prometheus_conn_id", "prometheus_default"), base_url=config.get("prometheus_url")
    )
    return prometheus.variant_values(strategy.metrics, backend.revisions())


def fetch_errors(
    kind: str,
    config: dict[str, Any],
    mlflow_hook: MLflowHook,
    name: str,
    version: str,
    step: int,
    strategy: CanaryStrategy,
    *,
    poll: int,
) -> dict[str, str | None]:
    """One analysis poll's ``{"canary", "champion"}`` error summaries (batch; kserve: ``{}``)."""
    if kind != "batch":
        return {}
    from mlops_provider.canary.backends.batch import BatchCanaryBackend

    return BatchCanaryBackend(mlflow_hook, **config).errors(name, version, step, strategy, poll=poll)
