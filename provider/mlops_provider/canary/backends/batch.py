"""The ``batch`` canary backend, the embedded default.

Each step replays a batch of labelled entity rows through both models with the step's split, writes a
prediction log per step, and the analysis reads that log. The champion also scores the canary's rows in
shadow, so prediction shift and quality compare both models on the same entities. Promotion and
rollback need no serving change: the batch-scoring DAG reads the split from the MLflow aliases.

Which rows: only rows neither model trained on may judge them. By default the step replays the canary
version's own held-out evaluation set, the rows its gate scored, named on the version by the tag
:data:`~mlops_provider.constants.EVAL_SET_URI_TAG`; when both versions also carry their time windows
(:data:`~mlops_provider.constants.TRAINING_WINDOW_TAG`, :data:`~mlops_provider.constants.EVALUATION_WINDOW_TAG`),
a champion trained on any day of that set is refused. An explicit ``traffic_uri`` replaces the
tag, and the caller vouches for its rows.

Fresh evidence per poll: the step's log is split into ``strategy.max_polls`` disjoint, equal slices
(per variant, in the order of a stable hash of the entity key salted with the model name and the step),
and poll ``i`` judges slice ``i`` only. No two polls of a step see the same rows, and the step is decided
before the slices run out (see :attr:`~mlops_provider.canary.CanaryStrategy.max_polls`).

What the models predict: ``task_type`` (``binary``, ``multiclass`` or ``regression``) says how their
outputs are read and which quality metrics judge them (:func:`mlops_provider.ml.scoring.analyse`). By
default it is the canary version's :data:`~mlops_provider.constants.TASK_TYPE_TAG` tag (set by the
trainer), ``binary`` when the version has none; a champion tagged with another task than the canary's
cannot be compared with it and the rollout is refused.

Smoke test: the first version of a model (no champion to compare with) is promoted at once, but only
after it scored a sample of the same rows (:data:`SMOKE_ROWS`) with an error rate within the strategy's
limit (:meth:`BatchCanaryBackend.smoke_test`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from mlops_provider.constants import (
    CANARY,
    CHAMPION,
    EVAL_SET_URI_TAG,
    EVALUATION_WINDOW_TAG,
    TASK_TYPE_TAG,
    TRAINING_WINDOW_TAG,
)
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.ml import scoring, tasks
from mlops_provider.ml.io import newest_match, read_parquet

if TYPE_CHECKING:
    from mlops_provider.canary.strategy import CanaryStrategy

SMOKE_ROWS = 300  # rows of the traffic a first model scores before it is promoted


class ModelLoader(Protocol):
    """Loads a registered model version as a pyfunc model, and opens a registry client (in Airflow, the
    MLflow hook)."""

    def load_model(self, name: str, version: str | int) -> Any: ...

    def session(self) -> AbstractContextManager[Any]: ...


# ``version_tags(model name, version)``: the version's tags (in Airflow, read through the MLflow hook).
VersionTags = Callable[[str, str], dict[str, str]]


class BatchCanaryBackend:
    """Replay a batch of traffic through champion and canary per step; analyse the prediction log.

    Every keyword but ``version_tags`` and ``log`` is a ``backend_config`` key:

    :param mlflow_hook: loads the model versions (and reads their task type when ``version_tags`` is
        None).
    :param log_root: where the per-step prediction logs go (required).
    :param entity_column: the key traffic is routed on and polls are sliced on (required).
    :param traffic_uri: parquet file (or local glob: the newest match) of the rows replayed at each step;
        None (default): the canary version's held-out evaluation set, its ``mlops.eval_set_uri`` tag.
    :param version_tags: reads a version's tags; needed when ``traffic_uri`` is None.
    :param label_column: when present in the traffic, quality metrics are computed (default None: none).
    :param task_type: ``binary``, ``multiclass`` or ``regression``; None (default): the canary version's
        ``mlops.task_type`` tag, ``binary`` when it has none.
    :param timestamp_column: a column of the traffic copied to the prediction logs unscored, not fed
        to the models (default None: none is kept; any column but the entity and the label is a feature).
    :param request_rows: rows per model request (default 256).
    """

    def __init__(
        self,
        mlflow_hook: ModelLoader,
        *,
        log_root: str,
        entity_column: str,
        traffic_uri: str | None = None,
        version_tags: VersionTags | None = None,
        label_column: str | None = None,
        task_type: str | None = None,
        timestamp_column: str | None = None,
        request_rows: int = 256,
        log: Any = None,
    ) -> None:
        self.hook, self.traffic_uri, self.log_root = mlflow_hook, traffic_uri, log_root.rstrip("/")
        self.version_tags = version_tags
        self.entity_column, self.label_column, self.request_rows = entity_column, label_column, request_rows
        self.task_type = _known_task(task_type, "backend_config['task_type']") if task_type else None
        self.timestamp_column = timestamp_column
        self.log = log

    def task_type_of(self, name: str, canary: str, champion: str | None = None) -> str:
        """What the models predict: ``task_type`` when given, else the canary's ``mlops.task_type`` tag
        (``binary`` when untagged).

        :raises ConfigurationError: an unknown task type, or a ``champion`` tagged with another task
            than the canary's (it cannot be compared with it).
        """
        if self.task_type:
            return self.task_type
        tagged = self._tags(name, canary).get(TASK_TYPE_TAG)
        task = _known_task(tagged or tasks.BINARY, f"{name!r} v{canary}'s tag {TASK_TYPE_TAG!r}")
        other = self._tags(name, champion).get(TASK_TYPE_TAG) if champion else None
        if other and other != task:
            raise ConfigurationError(
                f"Batch canary of {name!r} v{canary}: it is a {task} model ({TASK_TYPE_TAG}) and the "
                f"champion v{champion} a {other} one; their predictions cannot be compared. Fix the tag "
                "if it is wrong; a model of another task can only replace the champion by hand (set the "
                "'champion' alias)."
            )
        return task

    def _tags(self, name: str, version: str) -> dict[str, str]:
        if self.version_tags is not None:
            return self.version_tags(name, version)
        with self.hook.session() as client:
            return dict(client.get_model_version(name, version).tags or {})

    def _kept(self) -> list[str]:
        """The traffic's columns copied to the log unscored (the entity is always kept)."""
        return [c for c in (self.label_column, self.timestamp_column) if c]

    def traffic(self, name: str, champion: str | None, canary: str) -> dict[str, str]:
        """The rows a step replays: ``{"traffic_uri", "traffic_source"}``: ``traffic_uri`` when given,
        else the canary's held-out evaluation set (its ``mlops.eval_set_uri`` tag). ``champion`` is None
        for the smoke test of a first model.

        :raises ConfigurationError: no ``traffic_uri`` and no evaluation-set tag on ``canary``, or a
            model's training window overlaps the canary's evaluation window (both tagged).
        """
        if self.traffic_uri:
            return {"traffic_uri": newest_match(self.traffic_uri), "traffic_source": "traffic_uri"}
        tags = self.version_tags(name, canary) if self.version_tags else {}
        uri = tags.get(EVAL_SET_URI_TAG)
        if not uri or self.version_tags is None:
            raise ConfigurationError(
                f"Batch canary of {name!r} v{canary}: no traffic to replay. Without "
                f"backend_config['traffic_uri'] the version's held-out evaluation set is replayed, but it "
                f"has no {EVAL_SET_URI_TAG!r} tag. Either tag the version with the URI of the held-out "
                f"rows its gate scored ({EVAL_SET_URI_TAG}), or set backend_config['traffic_uri'] to rows "
                "neither model trained on."
            )
        trained = {canary: tags} | ({champion: self.version_tags(name, champion)} if champion else {})
        _check_unseen(name, canary, tags, trained)
        return {"traffic_uri": uri, "traffic_source": EVAL_SET_URI_TAG}

    def check(self, name: str, champion: str, canary: str) -> None:
        """Refuse, before any traffic moves, a rollout with no rows to replay (see :meth:`traffic`), or
        whose models predict different things (see :meth:`task_type_of`)."""
        self.traffic(name, champion, canary)
        self.task_type_of(name, canary, champion)

    def step_log_uri(self, name: str, version: str, step: int) -> str:
        return f"{self.log_root}/rollouts/{name}/v{version}/step={step}/predictions.parquet"

    def set_weight(self, name: str, champion: str, canary: str, weight: int, step: int) -> dict[str, Any]:
        traffic = self.traffic(name, champion, canary)
        task_type = self.task_type_of(name, canary, champion)
        resolved = traffic["traffic_uri"]
        frame = read_parquet(resolved, "Canary traffic")
        if frame.empty:
            raise DataNotFound(f"Canary traffic {resolved!r} has no rows; nothing to compare the models on.")
        models = {
            CHAMPION: (champion, self.hook.load_model(name, champion)),
            CANARY: (canary, self.hook.load_model(name, canary)),
        }
        predictions = scoring.score(
            frame,
            models,
            entity_column=self.entity_column,
            weight=weight,
            salt=name,
            task_type=task_type,
            keep_columns=self._kept(),
            request_rows=self.request_rows,
            shadow=True,
            log=self.log,
        )
        uri = scoring.write_log(predictions, self.step_log_uri(name, canary, step))
        counts = predictions["variant"].value_counts().to_dict()
        return {
            **traffic,
            "prediction_log": uri,
            "rows": {k: int(v) for k, v in counts.items()},
        }

    def smoke_test(self, name: str, version: str) -> dict[str, Any]:
        """Score up to :data:`SMOKE_ROWS` rows of the traffic (a first model's: its held-out evaluation
        set) with ``version`` alone; return ``{"traffic_uri", "traffic_source", "rows", "error_rate",
        "errors"}`` (``errors``: the error summary, None without errors).

        :raises ConfigurationError: no traffic to score (see :meth:`traffic`).
        """
        traffic = self.traffic(name, None, version)
        frame = read_parquet(traffic["traffic_uri"], "Smoke-test traffic")
        if frame.empty:
            raise DataNotFound(f"Smoke-test traffic {traffic['traffic_uri']!r} has no rows to score.")
        sample = frame.sample(n=min(SMOKE_ROWS, len(frame)), random_state=0)
        predictions = scoring.score(
            sample,
            {CHAMPION: (version, self.hook.load_model(name, version))},
            entity_column=self.entity_column,
            weight=0,
            salt=name,
            task_type=self.task_type_of(name, version),
            keep_columns=self._kept(),
            request_rows=self.request_rows,
            log=self.log,
        )
        return {
            **traffic,
            "rows": len(predictions),
            "error_rate": float(predictions["error"].notna().mean()),
            "errors": scoring.error_summary(predictions["error"]),
        }

    def promote(self, name: str, canary: str) -> None:
        """Nothing to change: batch scoring reads the ``champion`` alias."""

    def rollback(self, name: str, champion: str | None, canary: str) -> None:
        """Nothing to change: without the ``canary`` alias batch scoring sends everything to the champion."""

    def poll_rows(self, name: str, version: str, step: int, poll: int, strategy: CanaryStrategy) -> Any:
        """The rows of the step's log that poll ``poll`` (0-based) judges: its own slice, no other's."""
        log = scoring.read_log(self.step_log_uri(name, version, step))
        if self.entity_column not in log.columns:
            raise DataNotFound(
                f"Prediction log of {name!r} v{version} step {step} lacks the entity column "
                f"{self.entity_column!r} that polls are sliced on."
            )
        mask = scoring.poll_slice(
            log[self.entity_column], poll, strategy.max_polls, f"{name}|step={step}", strata=log["variant"]
        )
        return log.loc[mask]

    def values(
        self, name: str, version: str, step: int, strategy: CanaryStrategy, *, poll: int
    ) -> dict[str, Any]:
        """``{check name: (canary, champion)}`` from poll ``poll``'s slice of the step's log, for the
        checks that apply to the canary's task (see :meth:`task_type_of`); the others are left out."""
        task_type = self.task_type_of(name, version)
        metrics = scoring.analyse(
            self.poll_rows(name, version, step, poll, strategy),
            self.label_column,
            task_type=task_type,
            min_samples=strategy.min_samples,
            min_positives=strategy.min_positives,
        )
        return {check.name: metrics[check.query] for check in strategy.checks_for(task_type)}

    def errors(
        self, name: str, version: str, step: int, strategy: CanaryStrategy, *, poll: int
    ) -> dict[str, Any]:
        """``{"canary", "champion"}``: each variant's error summary in poll ``poll``'s slice (None: no
        errors), see :func:`mlops_provider.ml.scoring.error_summaries`."""
        return scoring.error_summaries(self.poll_rows(name, version, step, poll, strategy))


def _known_task(task_type: str, source: str) -> str:
    if task_type not in tasks.TASK_TYPES:
        raise ConfigurationError(
            f"Batch canary: {source} is {task_type!r}, not a task type; use one of {list(tasks.TASK_TYPES)}."
        )
    return task_type


def _window(tags: dict[str, str], tag: str, name: str, version: str) -> tuple[dt.date, dt.date] | None:
    """The inclusive ``(first, last)`` days of a ``YYYY-MM-DD/YYYY-MM-DD`` window tag; None when untagged."""
    text = tags.get(tag)
    if not text:
        return None
    try:
        first, last = (dt.date.fromisoformat(part.strip()) for part in text.split("/"))
    except ValueError as err:
        raise ConfigurationError(
            f"{name!r} v{version}: tag {tag!r} is {text!r}, not 'YYYY-MM-DD/YYYY-MM-DD' ({err})."
        ) from err
    return first, last


def _check_unseen(
    name: str, canary: str, canary_tags: dict[str, str], trained: dict[str, dict[str, str]]
) -> None:
    """Refuse the canary's evaluation set when a model (``{version: its tags}``) trained on any of its
    days; a window that is not tagged cannot be checked."""
    evaluated = _window(canary_tags, EVALUATION_WINDOW_TAG, name, canary)
    for version, tags in trained.items():
        window = _window(tags, TRAINING_WINDOW_TAG, name, version)
        if evaluated and window and evaluated[0] <= window[1] and window[0] <= evaluated[1]:
            raise ConfigurationError(
                f"Batch canary of {name!r} v{canary}: its evaluation set covers {evaluated[0]}/{evaluated[1]}, "
                f"days that v{version} trained on ({window[0]}/{window[1]}); a model judged on its own "
                "training rows looks better than it is. Set backend_config['traffic_uri'] to rows after "
                "both models' training windows."
            )
