"""Decide whether newly landed labels train a challenger now, and on which bounded, disjoint windows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from mlops_provider.constants import CHAMPION, EVALUATION_WINDOW_TAG, TRAINING_WINDOW_TAG
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.hooks.mlflow_client import alias_version, filter_literal, is_missing
from mlops_provider.ml.windows import (
    RETRAIN_POLICIES,
    DriftAlarm,
    TrainedVersion,
    Window,
    decide_retrain,
)
from mlops_provider.utils.storage import exists

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context
    from mlflow import MlflowClient


class RetrainDecisionOperator(BaseOperator):
    """Plan the training and evaluation windows for the newest labelled day, and train only when due.

    The windows (see :mod:`mlops_provider.ml.windows`): the evaluation window is the newest
    ``evaluation_days`` labelled days, the training window the ``training_days`` before it; disjoint,
    bounded and the same whenever the day is re-run. With ``policy="drift"`` (the default) a model is
    trained when there is no champion yet, or once per drift episode of the champion: the earliest drift
    alarm against it (the ``drift_asset``'s events, whose extra names the ``day`` or the ``start`` of the
    drifted window and the ``model_version`` it was tested against), once labels cover that day; the
    training window then starts at the drift. ``policy="always"`` trains on every run. When nothing is
    due the task is skipped, with the reason in its log, and so is everything downstream.

    :param name: the registered model. (templated)
    :param newest_labelled_day: ``YYYY-MM-DD``, the newest day whose labels have landed. (templated)
    :param label_partition_uri: where one day's labelled rows are, with ``{day}`` for the day, e.g.
        ``s3://lake/labels/date={day}/part-00000.parquet``. (templated)
    :param training_days: the training window's size in days. (templated)
    :param evaluation_days: the evaluation window's size in days. (templated)
    :param policy: ``drift`` or ``always``. (templated)
    :param drift_asset: the Asset whose events are drift alarms; added to the task's inlets.
    :param alias: the alias of the model in service.
    :param mlflow_conn_id: the MLflow connection. (templated)
    :return: ``{"train", "reason", "training_window", "evaluation_window", "training_days",
        "evaluation_days", "training_uris", "evaluation_uris", "missing_training_days"}``.
    """

    template_fields: Sequence[str] = (
        "name",
        "newest_labelled_day",
        "label_partition_uri",
        "training_days",
        "evaluation_days",
        "policy",
        "mlflow_conn_id",
    )

    def __init__(
        self,
        *,
        name: str,
        newest_labelled_day: str,
        label_partition_uri: str,
        training_days: int | str = 28,
        evaluation_days: int | str = 1,
        policy: str = "drift",
        drift_asset: Asset | None = None,
        alias: str = CHAMPION,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        if drift_asset is not None:
            kwargs["inlets"] = [*kwargs.get("inlets", []), drift_asset]
        super().__init__(**kwargs)
        if "{day}" not in label_partition_uri:
            raise ConfigurationError(
                f"label_partition_uri {label_partition_uri!r} has no {{day}} placeholder for the day"
            )
        self.name = name
        self.newest_labelled_day = newest_labelled_day
        self.label_partition_uri = label_partition_uri
        self.training_days = training_days
        self.evaluation_days = evaluation_days
        self.policy = policy
        self.drift_asset = drift_asset
        self.alias = alias
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        newest = _date(self.newest_labelled_day, "newest_labelled_day")
        if self.policy not in RETRAIN_POLICIES:
            raise ConfigurationError(
                f"policy must be one of {', '.join(RETRAIN_POLICIES)}, got {self.policy!r}"
            )
        with self.hook.session() as client:
            champion = alias_version(client, self.name, self.alias)
            versions = self._trained_versions(client)
        alarms = self._alarms(context)
        decision = decide_retrain(
            newest,
            training_days=_positive(self.training_days, "training_days"),
            evaluation_days=_positive(self.evaluation_days, "evaluation_days"),
            champion=champion,
            alarms=alarms,
            versions=versions,
            policy=self.policy,
        )
        self.log.info(
            "Newest labelled day %s; champion %s; %d drift alarm(s) against it. %s",
            newest,
            champion or "none",
            sum(str(a.model_version) == str(champion) for a in alarms),
            decision.reason,
        )
        if not decision.train or decision.windows is None:
            raise AirflowSkipException(decision.reason)
        result = decision.as_dict()
        evaluation, missing_eval = self._partitions(decision.windows.evaluation)
        if missing_eval:
            raise DataNotFound(
                f"the evaluation window {decision.windows.evaluation} lacks labels for "
                f"{', '.join(missing_eval)} ({self.label_partition_uri}); a model is never judged on a partial "
                "window: land (or re-validate) those labels, then re-run"
            )
        training, missing = self._partitions(decision.windows.training)
        if not training:
            raise DataNotFound(
                f"no labels in the training window {decision.windows.training} ({self.label_partition_uri})"
            )
        if missing:
            self.log.warning("Training window %s lacks labels for %s", decision.windows.training, missing)
        self.log.info("Training on %s, evaluating on %s", training, evaluation)
        return {
            **result,
            "training_uris": training,
            "evaluation_uris": evaluation,
            "missing_training_days": missing,
        }

    def _partitions(self, window: Window) -> tuple[list[str], list[str]]:
        from airflow.sdk import ObjectStoragePath  # fsspec/upath: not on the DAG-parse path

        found, missing = [], []
        for day in window.days:
            uri = self.label_partition_uri.format(day=day.isoformat())
            if exists(ObjectStoragePath(uri)):
                found.append(uri)
            else:
                missing.append(day.isoformat())
        return found, missing

    def _trained_versions(self, client: MlflowClient) -> list[TrainedVersion]:
        from mlflow.exceptions import MlflowException

        try:
            found = client.search_model_versions(f"name = {filter_literal(self.name)}")
        except MlflowException as err:
            if is_missing(err):
                return []
            raise
        versions = []
        for mv in found:
            training, evaluation = mv.tags.get(TRAINING_WINDOW_TAG), mv.tags.get(EVALUATION_WINDOW_TAG)
            if training and evaluation:
                versions.append(
                    TrainedVersion(str(mv.version), Window.parse(training), Window.parse(evaluation))
                )
        return versions

    def _alarms(self, context: Context) -> list[DriftAlarm]:
        if self.drift_asset is None:
            return []
        alarms = []
        for event in context["inlet_events"][self.drift_asset]:
            extra = event.extra or {}
            day = str(extra.get("day") or extra.get("start") or "")[:10]
            version = extra.get("model_version")
            if day and version is not None:
                alarms.append(DriftAlarm(_date(day, "a drift event's day"), str(version)))
        return alarms


def _date(value: Any, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ConfigurationError(f"{name} must be a date like 2026-01-31, got {value!r}") from None


def _positive(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigurationError(f"{name} must be a whole number of days >= 1, got {value!r}")
    return number
