"""What the "ML models" view shows, per registered model, gathered from MLflow through one connection.

:func:`model_overview` returns plain JSON-able data: the versions behind the ``champion``,
``challenger``, ``canary`` and ``previous`` aliases (training metrics, gate decision, lineage), the
current canary weight and the rollout history (parsed by :class:`~mlops_provider.canary.CanaryController`),
and the latest drift check (runs of :class:`~mlops_provider.operators.drift.DriftDetectOperator`).
:mod:`mlops_provider.plugins.page` renders it; the Airflow plugin in ``plugins/`` serves both.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlops_provider.canary import CanaryController, CanaryStrategy
from mlops_provider.constants import (
    ALIASES,
    CANARY,
    CANARY_TAG,
    DATASET_DRIFT_TAG,
    DRIFT_EXPERIMENT,
    DRIFT_MODEL_TAG,
    DRIFT_MODEL_VERSION_TAG,
    DRIFT_TAG,
    DRIFTED_FEATURES_TAG,
    GATE_TAG,
    TAG_PREFIX,
)
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.hooks.mlflow_client import filter_literal
from mlops_provider.trainer import EPOCH_METRIC_PREFIX

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Tags that are rollout, gate or drift state, not lineage.
_NOT_LINEAGE = (GATE_TAG, CANARY_TAG, DRIFT_TAG)
# Gate tags that are bookkeeping (a cache key, the full JSON result), not something to read.
_GATE_HIDDEN = ("key", "result")
_TOP_PSI = 5


def model_overview(
    hook: MLflowHook,
    *,
    names: list[str] | None = None,
    max_models: int = 50,
    drift_experiment: str = DRIFT_EXPERIMENT,
) -> list[dict[str, Any]]:
    """One JSON-able overview per registered model, sorted by name.

    :param hook: the MLflow hook (its connection's ``ui_base_url`` extra, else host, makes the links).
    :param names: the models to show; default every registered model (up to ``max_models``).
    :param max_models: how many registered models to list when ``names`` is not given.
    :param drift_experiment: the MLflow experiment holding the drift runs.
    :return: per model ``{"name", "url", "aliases": {alias: version}, "latest_version", "versions":
        [see _version], "canary": {"champion", "canary", "weight"}, "rollout": {state of the canary
        version, else of the newest shown version with a rollout} or None, "drift": {latest drift run} or
        None}``; an empty list when no model is registered.
    :raises ServiceUnavailable: MLflow could not be reached.
    """
    with hook.session() as client:
        if names is None:
            found = client.search_registered_models(max_results=max_models, order_by=["name ASC"])
            names = [m.name for m in found]
        experiment = client.get_experiment_by_name(drift_experiment)
        drift_experiment_id = experiment.experiment_id if experiment else None
        return [_model(client, hook, name, drift_experiment_id) for name in sorted(names)]


def _model(
    client: MlflowClient, hook: MLflowHook, name: str, drift_experiment_id: str | None
) -> dict[str, Any]:
    registered = client.get_registered_model(name)
    aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
    controller = CanaryController(client, name, CanaryStrategy())
    latest = _latest_version(client, name)
    by_version: dict[str, list[str]] = {}
    for alias in ALIASES:
        if alias in aliases:
            by_version.setdefault(aliases[alias], []).append(alias)
    if latest is not None and latest not in by_version:  # e.g. a retrained version the gate refused
        by_version[latest] = []
    versions = [_version(client, hook, controller, v, shown) for v, shown in by_version.items()]
    base = hook.ui_base_url()
    return {
        "name": name,
        "url": f"{base}/#/models/{quote(name, safe='')}" if base else None,
        "aliases": aliases,
        "latest_version": latest,
        "versions": versions,
        "canary": controller.split(),
        "rollout": _rollout(controller, aliases, versions),
        "drift": _latest_drift(client, hook, drift_experiment_id, name),
    }


def _latest_version(client: MlflowClient, name: str) -> str | None:
    found = client.search_model_versions(
        f"name = {filter_literal(name)}", max_results=1, order_by=["version_number DESC"]
    )
    return str(found[0].version) if found else None


def _version(
    client: MlflowClient, hook: MLflowHook, controller: CanaryController, version: str, aliases: list[str]
) -> dict[str, Any]:
    """One version: ``{"version", "aliases", "status", "created", "url", "run_id", "run_url", "metrics",
    "gate", "lineage", "dag_run", "canary"}``.

    ``metrics`` are the training run's summary metrics, without the per-epoch curves (whose latest value
    is the last epoch's, not the kept model's); their prefixes say which rows produced them
    (:mod:`mlops_provider.trainer`: ``eval_`` held out, ``early_stop_`` the slice that picked the epoch).
    """
    from mlflow.exceptions import MlflowException

    mv = client.get_model_version(controller.name, version)
    tags = mv.tags or {}
    run_id, run_url, metrics = mv.run_id or None, None, {}
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as err:  # the run was deleted; the version outlives it
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise
        else:
            metrics = {
                k: v for k, v in sorted(run.data.metrics.items()) if not k.startswith(EPOCH_METRIC_PREFIX)
            }
            run_url = hook.ui_url_for_run(run_id, run.info.experiment_id)
    gate = {
        k.removeprefix(GATE_TAG): v
        for k, v in sorted(tags.items())
        if k.startswith(GATE_TAG) and k.removeprefix(GATE_TAG) not in _GATE_HIDDEN
    }
    lineage = {
        k.removeprefix(TAG_PREFIX): v
        for k, v in sorted(tags.items())
        if k.startswith(TAG_PREFIX) and not k.startswith(_NOT_LINEAGE)
    }
    state = controller.state(version)
    return {
        "version": version,
        "aliases": aliases,
        "status": mv.status,
        "created": _iso(mv.creation_timestamp),
        "url": hook.ui_url_for_model_version(controller.name, version),
        "run_id": run_id,
        "run_url": run_url,
        "metrics": metrics,
        "gate": gate,
        "lineage": lineage,
        "dag_run": _dag_run(lineage.get("dag_id"), lineage.get("dag_run_id")),
        "canary": {key: state[key] for key in ("status", "step", "weight", "reason")},
    }


def _dag_run(dag_id: str | None, run_id: str | None) -> dict[str, str] | None:
    """The Airflow DAG run that registered the version; ``path`` is relative to the Airflow UI root."""
    if not dag_id or not run_id:
        return None
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "path": f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}",
    }


def _rollout(
    controller: CanaryController, aliases: dict[str, str], versions: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The rollout to plot: the canary's, else the newest shown version's that has one."""
    version = aliases.get(CANARY)
    if version is None:
        started = [v["version"] for v in versions if v["canary"]["status"]]
        version = max(started, key=int) if started else None
    if version is None:
        return None
    state = controller.state(version)
    weights = state["steps"] or []
    verdicts = [
        {"step": step, "weight": weights[step] if step < len(weights) else None, **verdict}
        for step, verdict in sorted(state["verdicts"].items())
    ]
    return {
        key: state[key] for key in ("version", "status", "step", "weight", "steps", "history", "reason")
    } | {
        "verdicts": verdicts  # a list: JSON object keys cannot be the integer steps
    }


def _latest_drift(
    client: MlflowClient, hook: MLflowHook, experiment_id: str | None, name: str
) -> dict[str, Any] | None:
    """Summary of the newest finished drift run of ``name``, or None when there is none."""
    if experiment_id is None:
        return None
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{DRIFT_MODEL_TAG}` = {filter_literal(name)} AND attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    psi = {k.removeprefix("psi_"): v for k, v in metrics.items() if k.startswith("psi_")}
    drifted = tags.get(DRIFTED_FEATURES_TAG, "")
    return {
        "run_id": run.info.run_id,
        "url": hook.ui_url_for_run(run.info.run_id, experiment_id),
        "at": _iso(run.info.start_time),
        "model_version": tags.get(DRIFT_MODEL_VERSION_TAG),
        "dataset_drift": tags.get(DATASET_DRIFT_TAG) == "true",
        "drifted_features": [f for f in drifted.split(",") if f],
        "drift_share": metrics.get("drift_share"),
        "drift_share_threshold": _float(params.get("drift_share_threshold")),
        "current_uri": params.get("current_uri"),
        "current_rows": params.get("current_rows"),
        "top_psi": sorted(psi.items(), key=lambda item: -item[1])[:_TOP_PSI],
    }


def _iso(millis: int | None) -> str | None:
    if not millis:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC).isoformat(timespec="seconds")


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
