"""The ``batch`` canary backend, the embedded default.

Each step replays a batch of entity features (``traffic_uri``, the newest file when it is a glob) through
both models with the step's split, writes a prediction log per step, and the analysis reads that log.
The champion also scores the canary's rows in shadow, so prediction shift and quality compare both
models on the same entities. Promotion and rollback need no serving change: the batch-scoring DAG reads
the split from the MLflow aliases.

Fresh evidence per poll: the step's log is split into ``strategy.max_polls`` disjoint, equal slices
(per variant, in the order of a stable hash of the entity key salted with the model name and the step),
and poll ``i`` judges slice ``i`` only. No two polls of a step see the same rows, and the step is decided
before the slices run out (see :attr:`~mlops_provider.canary.CanaryStrategy.max_polls`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mlops_provider.constants import CANARY, CHAMPION
from mlops_provider.exceptions import DataNotFound
from mlops_provider.ml import scoring
from mlops_provider.ml.io import newest_match, read_parquet

if TYPE_CHECKING:
    from mlops_provider.canary.strategy import CanaryStrategy


class ModelLoader(Protocol):
    """Loads a registered model version as a pyfunc model (in Airflow, the MLflow hook)."""

    def load_model(self, name: str, version: str | int) -> Any: ...


class BatchCanaryBackend:
    """Replay a batch of traffic through champion and canary per step; analyse the prediction log.

    :param mlflow_hook: loads the model versions.
    :param traffic_uri: parquet file (or local glob: the newest match) of entity feature rows.
    :param log_root: where the per-step prediction logs go.
    :param entity_column: the key routed on.
    :param label_column: when present in the traffic, quality metrics are computed.
    :param request_rows: rows per model request.
    """

    def __init__(
        self,
        mlflow_hook: ModelLoader,
        *,
        traffic_uri: str,
        log_root: str,
        entity_column: str = "customer_id",
        label_column: str | None = None,
        request_rows: int = 256,
        log: Any = None,
    ) -> None:
        self.hook, self.traffic_uri, self.log_root = mlflow_hook, traffic_uri, log_root.rstrip("/")
        self.entity_column, self.label_column, self.request_rows = entity_column, label_column, request_rows
        self.log = log

    def step_log_uri(self, name: str, version: str, step: int) -> str:
        return f"{self.log_root}/rollouts/{name}/v{version}/step={step}/predictions.parquet"

    def set_weight(self, name: str, champion: str, canary: str, weight: int, step: int) -> dict[str, Any]:
        resolved = newest_match(self.traffic_uri)
        frame = read_parquet(resolved, "Canary traffic")
        if frame.empty:
            raise DataNotFound(f"Canary traffic {resolved!r} has no rows; nothing to compare the models on.")
        models = {
            CHAMPION: (champion, self.hook.load_model(name, champion)),
            CANARY: (canary, self.hook.load_model(name, canary)),
        }
        keep = [c for c in (self.label_column, "event_timestamp") if c]
        predictions = scoring.score(
            frame,
            models,
            entity_column=self.entity_column,
            weight=weight,
            salt=name,
            keep_columns=keep,
            request_rows=self.request_rows,
            shadow=True,
            log=self.log,
        )
        uri = scoring.write_log(predictions, self.step_log_uri(name, canary, step))
        counts = predictions["variant"].value_counts().to_dict()
        return {
            "traffic_uri": resolved,
            "prediction_log": uri,
            "rows": {k: int(v) for k, v in counts.items()},
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
        """``{check name: (canary, champion)}`` from poll ``poll``'s slice of the step's log."""
        metrics = scoring.analyse(
            self.poll_rows(name, version, step, poll, strategy),
            self.label_column,
            min_samples=strategy.min_samples,
            min_positives=strategy.min_positives,
        )
        return {check.name: metrics[check.query] for check in strategy.metrics}
