"""A rollout's plan: the traffic steps, the polls that judge each step, and the metric checks."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from typing import Any

from mlops_provider.constants import FAIL, NO_DATA, PASS
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.ml.scoring import MIN_POSITIVES, MIN_SAMPLES
from mlops_provider.ml.tasks import BINARY, MULTICLASS, REGRESSION, TASK_TYPES


@dataclasses.dataclass(frozen=True)
class MetricCheck:
    """One metric the analysis compares, canary against champion or against a fixed bound.

    :param name: the metric's label in logs and evidence.
    :param query: where the value comes from. ``batch``: a metric of the prediction log (see
        :data:`mlops_provider.ml.scoring.BATCH_METRICS`); ``kserve``: a PromQL expression with a
        ``{revision}`` placeholder, evaluated once per variant.
    :param compare: ``champion`` (the canary may be worse than the champion by at most ``threshold``)
        or ``absolute`` (the canary's value must stay within ``threshold``).
    :param threshold: the allowed degradation (``champion``) or the bound (``absolute``).
    :param direction: ``lower`` or ``higher``: which way is better.
    :param required: when False, a poll without data for this metric (labels not landed yet) is judged
        on the other metrics; when True, it makes the poll ``no_data``.
    :param relative: with ``compare: champion``, ``threshold`` is a share of the champion's value
        (0.05: the canary may be 5 % worse), for metrics whose scale is the data's (``rmse``, ``mae``).
    :param task_types: the task types of the models the check judges (``binary``, ``multiclass``,
        ``regression``); empty (the default): every model. The batch backend leaves the checks of
        other tasks out of a poll's values, and the poll skips them (neither judged nor ``no_data``).
    """

    name: str
    query: str
    compare: str = "champion"
    threshold: float = 0.0
    direction: str = "lower"
    required: bool = True
    relative: bool = False
    task_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.query:
            raise ConfigurationError(f"Metric check {self!r} needs a name and a query.")
        if self.compare not in ("champion", "absolute"):
            raise ConfigurationError(
                f"Metric check {self.name!r}: compare must be 'champion' or 'absolute', not {self.compare!r}."
            )
        if self.direction not in ("lower", "higher"):
            raise ConfigurationError(
                f"Metric check {self.name!r}: direction must be 'lower' or 'higher' (which way is better), "
                f"not {self.direction!r}."
            )
        if not isinstance(self.threshold, int | float) or not math.isfinite(self.threshold):
            raise ConfigurationError(f"Metric check {self.name!r}: threshold must be a finite number.")
        if self.compare == "champion" and self.threshold < 0:
            raise ConfigurationError(
                f"Metric check {self.name!r}: the allowed degradation vs the champion cannot be negative."
            )
        if self.relative and self.compare != "champion":
            raise ConfigurationError(
                f"Metric check {self.name!r}: relative applies to compare 'champion' (a share of its value), "
                f"not to {self.compare!r}."
            )
        task_types = (self.task_types,) if isinstance(self.task_types, str) else tuple(self.task_types)
        unknown = [t for t in task_types if t not in TASK_TYPES]
        if unknown:
            raise ConfigurationError(
                f"Metric check {self.name!r}: unknown task type(s) {unknown}; use {list(TASK_TYPES)}."
            )
        object.__setattr__(self, "task_types", task_types)  # a JSON list becomes a tuple: checks hash

    def applies_to(self, task_type: str) -> bool:
        """Whether the check judges a model of ``task_type`` (see ``task_types``)."""
        return not self.task_types or task_type in self.task_types

    def evaluate(self, canary: float | None, champion: float | None) -> dict[str, Any]:
        """Judge one poll's values: ``{"metric", "status", "canary", "champion", "limit", "message"}``."""
        result: dict[str, Any] = {"metric": self.name, "canary": canary, "champion": champion, "limit": None}
        lower = self.direction == "lower"
        # NaN is no data too: a Prometheus ratio over zero requests, a PSI of an empty sample.
        if canary is None or math.isnan(canary):
            return result | {"status": NO_DATA, "message": f"{self.name}: no data for the canary yet"}
        if self.compare == "absolute":
            limit, basis = self.threshold, ""
        elif champion is None or math.isnan(champion):
            return result | {"status": NO_DATA, "message": f"{self.name}: no data for the champion yet"}
        else:
            margin = self.threshold * abs(champion) if self.relative else self.threshold
            limit = champion + margin if lower else champion - margin
            basis = f" (champion {champion:.4g}{f', {self.threshold:.4g} of it' if self.relative else ''})"
        ok = canary <= limit if lower else canary >= limit
        sign = "<=" if lower else ">="
        status = PASS if ok else FAIL
        message = f"{self.name}: canary {canary:.4g} {'' if ok else 'not '}{sign} {limit:.4g}{basis}"
        return result | {"status": status, "limit": limit, "message": message}


# Defaults for the batch backend: health, prediction shift vs the champion, and quality once labels land,
# by the model's task: roc_auc (binary), macro_f1 (multiclass), rmse (regression, at most 5 % above the
# champion's). A model is judged on the quality check of its own task only (see MetricCheck.task_types).
DEFAULT_BATCH_CHECKS = (
    MetricCheck("error_rate", "error_rate", compare="absolute", threshold=0.01, direction="lower"),
    MetricCheck("latency_p95_ms", "latency_p95_ms", compare="champion", threshold=50.0, direction="lower"),
    # Not required: at weight 100 the champion scores nothing to compare the distribution with.
    MetricCheck(
        "prediction_psi",
        "prediction_psi",
        compare="absolute",
        threshold=0.25,
        direction="lower",
        required=False,
    ),
    MetricCheck(
        "roc_auc",
        "roc_auc",
        compare="champion",
        threshold=0.02,
        direction="higher",
        required=False,
        task_types=(BINARY,),
    ),
    MetricCheck(
        "macro_f1",
        "macro_f1",
        compare="champion",
        threshold=0.02,
        direction="higher",
        required=False,
        task_types=(MULTICLASS,),
    ),
    MetricCheck(
        "rmse",
        "rmse",
        compare="champion",
        threshold=0.05,
        direction="lower",
        required=False,
        relative=True,
        task_types=(REGRESSION,),
    ),
)


@dataclasses.dataclass(frozen=True)
class CanaryStrategy:
    """How a rollout proceeds.

    :param steps: canary traffic weights in percent, strictly increasing, each in 1..100.
    :param interval_seconds: time between analysis polls.
    :param checks_per_step: passing polls needed to leave a step.
    :param failure_threshold: failing polls that trigger a rollback.
    :param max_no_data: polls without data after which a step is inconclusive (default
        ``2 * checks_per_step``).
    :param metrics: the metric checks.
    :param min_samples: labelled rows a poll needs before the quality metrics (``roc_auc``,
        ``accuracy``, ``macro_f1``, ``rmse``, ``mae``) judge; with fewer they are ``no_data``. AUC on a
        few dozen rows swings by ±0.1.
    :param min_positives: positive labels (and, for both classes to be there, at least one negative)
        that ``roc_auc`` also needs; at most ``min_samples``. It applies to binary models' AUC only.
    """

    steps: tuple[int, ...] = (5, 25, 50, 100)
    interval_seconds: float = 60.0
    checks_per_step: int = 3
    failure_threshold: int = 2
    max_no_data: int | None = None
    metrics: tuple[MetricCheck, ...] = DEFAULT_BATCH_CHECKS
    min_samples: int = MIN_SAMPLES
    min_positives: int = MIN_POSITIVES

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not steps:
            raise ConfigurationError(
                "Canary strategy: steps is empty; give traffic weights such as [5, 25, 50]."
            )
        for weight in steps:
            if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
                raise ConfigurationError(
                    f"Canary strategy: step weight {weight!r} must be a whole percent between 1 and 100."
                )
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ConfigurationError(f"Canary strategy: steps {list(steps)} must be strictly increasing.")
        if not isinstance(self.interval_seconds, int | float) or not self.interval_seconds > 0:
            raise ConfigurationError(
                f"Canary strategy: interval_seconds must be above 0, not {self.interval_seconds!r}."
            )
        for field in ("checks_per_step", "failure_threshold", "min_samples", "min_positives"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"Canary strategy: {field} must be a whole number >= 1, not {value!r}."
                )
        if self.min_positives > self.min_samples:
            raise ConfigurationError(
                f"Canary strategy: min_positives ({self.min_positives}) cannot exceed min_samples "
                f"({self.min_samples}): positives are counted among the labelled rows."
            )
        if self.max_no_data is not None and (
            isinstance(self.max_no_data, bool)
            or not isinstance(self.max_no_data, int)
            or self.max_no_data < 1
        ):
            raise ConfigurationError(f"Canary strategy: max_no_data must be >= 1, not {self.max_no_data!r}.")
        if not self.metrics:
            raise ConfigurationError(
                "Canary strategy: no metric checks; a rollout needs evidence to promote."
            )
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"Canary strategy: metric check names repeat: {names}.")
        object.__setattr__(self, "steps", steps)

    def checks_for(self, task_type: str) -> tuple[MetricCheck, ...]:
        """The checks that judge a model of ``task_type``: those without ``task_types`` and those of its
        task (with the default checks, four: health, shift and the task's quality check)."""
        return tuple(m for m in self.metrics if m.applies_to(task_type))

    @property
    def no_data_limit(self) -> int:
        return self.max_no_data or 2 * self.checks_per_step

    @property
    def max_polls(self) -> int:
        """The most polls a step can take: one short of every threshold, then one more must decide it.

        The batch backend splits a step's traffic into this many disjoint slices, one per poll, so no
        two polls of a step judge the same rows.
        """
        return (self.checks_per_step - 1) + (self.failure_threshold - 1) + (self.no_data_limit - 1) + 1

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CanaryStrategy:
        """Build from plain data (a DAG param, JSON); unknown keys are refused by name."""
        data = dict(data or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigurationError(f"Canary strategy: unknown key(s) {unknown}; known: {sorted(fields)}.")
        if "metrics" in data:
            metrics = []
            check_fields = {f.name for f in dataclasses.fields(MetricCheck)}
            for raw in data["metrics"] or []:
                bad = sorted(set(raw) - check_fields) if isinstance(raw, dict) else ["<not an object>"]
                if bad:
                    raise ConfigurationError(
                        f"Canary strategy: metric check {raw!r} has unknown key(s) {bad}; "
                        f"known: {sorted(check_fields)}."
                    )
                metrics.append(MetricCheck(**raw))
            data["metrics"] = tuple(metrics)
        if "steps" in data:
            data["steps"] = tuple(data["steps"] or ())
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))
