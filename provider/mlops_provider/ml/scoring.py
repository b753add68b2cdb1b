"""Batch scoring with a canary split, the prediction log, and the batch canary analysis.

Entities are routed by a stable hash of their key: an entity in the canary share at 5 % stays in it at
25 %, and the split does not change between runs or machines. Each variant scores its rows in requests
of ``request_rows``; a request that raises marks all of its rows as errors (as a failed HTTP request
would), so ``error_rate`` is the share of rows that got no prediction. An error is kept as the
exception's class and cause, without the data dump MLflow's schema errors open with
(:func:`error_text`), and summarised per exception class (:func:`error_summary`). ``latency_ms`` is
the request's wall time, recorded on each of its rows.

Each model is scored as a ``task_type`` (:mod:`mlops_provider.ml.tasks`): its output is read through
:func:`~mlops_provider.ml.tasks.output_frame` (a regression model may return a plain 1-D array) and must
keep that task's contract; an output that breaks it is a request error naming the violation, not a crash.
The log's ``probability`` is P(label = 1) (binary), the predicted class's probability (multiclass) or NaN
(regression); ``prediction`` is a nullable integer (binary), the class as text (multiclass, None when the
request failed) or a float (regression, NaN when it failed).

The canary analysis judges one poll on one slice of a step's log (:func:`poll_slice`): the rows are
dealt into disjoint, equal slices in the order of another stable hash of the entity key, so each poll
sees traffic no earlier poll of the step saw.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from mlops_provider.constants import CANARY, CHAMPION
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.ml import tasks
from mlops_provider.ml.io import read_parquet, write_parquet

if TYPE_CHECKING:
    import pandas as pd

# Metrics the batch analysis computes from a prediction log, usable as MetricCheck queries.
# Which of them apply depends on the task (see :func:`analyse`); the others stay None.
BATCH_METRICS = (
    "rows",
    "error_rate",
    "latency_p95_ms",
    "prediction_psi",
    "mean_probability",
    "mean_prediction",
    "roc_auc",
    "accuracy",
    "macro_f1",
    "rmse",
    "mae",
)
LOG_COLUMNS = (
    "variant",
    "model_version",
    "probability",
    "prediction",
    "latency_ms",
    "error",
    "canary_weight",
    "scored_at",
)
_BUCKETS = 10_000
PSI_CAP = 99.0
# Defaults of CanaryStrategy.min_samples and .min_positives: the labelled rows (and positive labels, for
# AUC) a poll needs before quality metrics judge.
MIN_SAMPLES = 200
MIN_POSITIVES = 10
ERROR_CHARS = 300  # an error as kept in the log: the exception's class and its cause, no data dump
FIRST_ERROR_CHARS = 160  # the first error as quoted in an error summary
# MLflow's pyfunc schema errors open with a dump of the input data; the cause follows "Error: ".
_SCHEMA_DUMP = re.compile(r"^Failed to enforce schema .*? with schema .*?\. Error: ", re.DOTALL)


def _entity_hash(keys: pd.Series, salt: str) -> Any:
    """A stable 64-bit hash per key: pandas' object hash uses a fixed key, the same in every process."""
    import pandas as pd

    return pd.util.hash_pandas_object(keys.astype(str) + f"|{salt}", index=False).to_numpy()


def canary_mask(keys: pd.Series, weight: float, salt: str) -> Any:
    """Boolean mask of the rows whose entity falls in the canary's ``weight`` percent.

    The buckets are the same in every process and run.
    """
    if not 0 <= weight <= 100:
        raise ConfigurationError(f"Canary weight {weight!r} must be between 0 and 100.")
    return (_entity_hash(keys, salt) % _BUCKETS) < round(weight * _BUCKETS / 100)


def poll_slice(keys: pd.Series, poll: int, slices: int, salt: str, strata: Any = None) -> Any:
    """Boolean mask of the rows in slice ``poll`` of ``slices`` disjoint, equal slices of the entities.

    Rows are ordered by a stable hash of their key and dealt out in turn, so every row is in exactly one
    slice and the slices differ in size by at most one row; with ``strata`` (e.g. the log's ``variant``)
    they are dealt out per stratum, so each slice holds its share of the canary's rows and of the
    champion's. ``salt`` should differ from the split's (e.g. add the step).
    """
    import numpy as np

    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
        raise ConfigurationError(f"Poll slices must be a whole number >= 1, not {slices!r}.")
    if isinstance(poll, bool) or not isinstance(poll, int) or not 0 <= poll < slices:
        raise ConfigurationError(
            f"Poll {poll!r} has no slice: a step's traffic is split into {slices} slices, one per poll "
            "(numbered from 0), and the analysis must decide the step within them."
        )
    hashed = _entity_hash(keys, salt)
    groups = np.zeros(len(hashed), dtype=np.int64)
    if strata is not None:
        groups = np.unique(np.asarray(strata, dtype=str), return_inverse=True)[1].reshape(-1)
    turn = np.empty(len(hashed), dtype=np.int64)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        turn[rows[np.argsort(hashed[rows], kind="stable")]] = np.arange(len(rows))
    return (turn % slices) == poll


def score(
    frame: pd.DataFrame,
    models: dict[str, tuple[str, Any]],
    *,
    entity_column: str,
    weight: float,
    salt: str,
    task_type: str = tasks.BINARY,
    feature_columns: list[str] | None = None,
    keep_columns: list[str] | None = None,
    request_rows: int = 256,
    shadow: bool = False,
    log: Any = None,
) -> pd.DataFrame:
    """Score ``frame`` with the champion and, for ``weight`` percent of entities, the canary.

    :param frame: one row per entity to score, with ``entity_column`` and the feature columns.
    :param models: ``{"champion": (version, pyfunc model), "canary": (version, model)}``; no canary
        (or ``weight`` 0) sends everything to the champion.
    :param entity_column: the column routed on.
    :param weight: percent of entities sent to the canary.
    :param salt: mixed into the hash (the model name), so models split independently.
    :param task_type: what the models predict, ``binary``, ``multiclass`` or ``regression``: the output
        contract each request is held to, and the types of the log's ``probability`` and ``prediction``.
    :param feature_columns: columns passed to the models; default every column except ``keep_columns``.
    :param keep_columns: columns copied to the log unscored (e.g. the label); the entity is always kept.
    :param request_rows: rows per model request.
    :param shadow: also score the canary's rows with the champion, unserved, into ``shadow_probability``,
        ``shadow_prediction``, ``shadow_latency_ms`` and ``shadow_error`` (typed as their served
        columns), so the analysis compares both models on the same entities, at the same time (at weight
        100 the champion serves nothing to time otherwise, nor to take its error rate on).
    :return: the prediction log: entity, ``keep_columns``, then :data:`LOG_COLUMNS` (and the shadow
        columns).
    """
    import numpy as np
    import pandas as pd

    task_type = _task(task_type)
    if entity_column not in frame.columns:
        raise ConfigurationError(
            f"Scoring input lacks the entity column {entity_column!r}; it has {sorted(frame.columns)}."
        )
    if CHAMPION not in models:
        raise ConfigurationError("Scoring needs a champion model: set the 'champion' alias first.")
    keep = list(dict.fromkeys([entity_column, *[c for c in keep_columns or [] if c in frame.columns]]))
    features = feature_columns or [c for c in frame.columns if c not in keep]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ConfigurationError(f"Scoring input lacks feature column(s) {missing}.")
    in_canary = np.zeros(len(frame), dtype=bool)
    if CANARY in models and weight > 0:
        in_canary = canary_mask(frame[entity_column], weight, salt)
    parts = []
    for variant, rows in ((CHAMPION, ~in_canary), (CANARY, in_canary)):
        subset = frame.loc[rows]
        if subset.empty:
            continue
        version, model = models[variant]
        part = _score_variant(subset, model, features, request_rows, task_type)
        part.insert(0, "variant", variant)
        part.insert(1, "model_version", str(version))
        if log is not None:
            log.info(
                "Scored %d row(s) with the %s (v%s): %s, p95 latency %.1f ms.",
                len(part),
                variant,
                version,
                error_summary(part["error"]) or "0 errors",
                float(part["latency_ms"].quantile(0.95)),
            )
        if shadow:
            shadowed = (
                _score_variant(subset, models[CHAMPION][1], features, request_rows, task_type)
                if variant == CANARY
                else _unscored(len(subset), task_type)
            )
            for column in ("probability", "prediction", "latency_ms", "error"):
                part[f"shadow_{column}"] = shadowed[column]  # both indexed 0..n-1
        parts.append(pd.concat([subset[keep].reset_index(drop=True), part.reset_index(drop=True)], axis=1))
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keep, *LOG_COLUMNS])
    result["canary_weight"] = float(weight if CANARY in models else 0)
    result["scored_at"] = pd.Timestamp(dt.datetime.now(dt.UTC))
    return result


def _task(task_type: str) -> str:
    """``task_type`` when it is a known task, else a ConfigurationError naming the known ones."""
    try:
        return tasks.check_task_type(task_type)
    except ValueError as err:
        raise ConfigurationError(str(err)) from None


class ContractViolation(Exception):
    """A model's output breaks its task's contract (:func:`mlops_provider.ml.tasks.contract_violation`);
    recorded as the request's error, like any other failed request."""


def _unscored(n: int, task_type: str) -> pd.DataFrame:
    """``n`` rows of a variant's columns with nothing scored: the types of :func:`_score_variant`."""
    import numpy as np
    import pandas as pd

    if task_type == tasks.BINARY:  # nullable integers: 0/1, missing where nothing was scored
        prediction: Any = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), mask=np.ones(n, dtype=bool))
    elif task_type == tasks.MULTICLASS:
        prediction = np.full(n, None, dtype=object)
    else:
        prediction = np.full(n, np.nan)
    return pd.DataFrame(
        {
            "probability": np.full(n, np.nan),
            "prediction": prediction,
            "latency_ms": np.full(n, np.nan),
            "error": np.full(n, None, dtype=object),
        }
    )


def _score_variant(
    subset: pd.DataFrame, model: Any, features: list[str], request_rows: int, task_type: str
) -> pd.DataFrame:
    import numpy as np

    frame = _unscored(len(subset), task_type)
    probability, latency = frame["probability"].to_numpy(copy=True), np.zeros(len(subset))
    prediction, error = frame["prediction"].array.copy(), frame["error"].to_numpy(copy=True)
    # Warm up on one row, untimed, as a server does before it takes traffic (lazy imports, caches); an
    # error is not lost: the timed requests below record it.
    with contextlib.suppress(Exception):
        model.predict(subset.iloc[:1][features])
    for start in range(0, len(subset), request_rows):
        stop = min(start + request_rows, len(subset))
        began = time.perf_counter()
        try:
            got = _predictions(model, subset.iloc[start:stop][features], task_type)
            probability[start:stop], prediction[start:stop] = got
        except Exception as err:  # a failing request is data for the analysis, not a task failure
            error[start:stop] = error_text(err)
        latency[start:stop] = (time.perf_counter() - began) * 1000
    return frame.assign(probability=probability, prediction=prediction, latency_ms=latency, error=error)


def _predictions(model: Any, rows: pd.DataFrame, task_type: str) -> tuple[Any, Any]:
    """``(probability, prediction)`` arrays of one request, typed for the log; a ContractViolation
    when the output breaks the task's contract."""
    import numpy as np

    out = tasks.output_frame(task_type, model.predict(rows), index=rows.index)
    violation = tasks.contract_violation(task_type, getattr(out, "columns", ()))
    if violation:
        raise ContractViolation(violation)
    if len(out) != len(rows):
        raise ContractViolation(f"predict() returned {len(out)} row(s) for {len(rows)}")
    if task_type == tasks.REGRESSION:
        return np.full(len(rows), np.nan), np.asarray(out[tasks.PREDICTION], dtype=float)
    probability = np.asarray(out[tasks.PROBABILITY], dtype=float)
    if task_type == tasks.MULTICLASS:
        return probability, np.asarray([str(v) for v in out[tasks.PREDICTION]], dtype=object)
    return probability, np.asarray(out[tasks.PREDICTION]).astype(np.int64)


def error_text(err: BaseException) -> str:
    """``"Class: cause"`` of a failed request, as the log keeps it: MLflow's dump of the input data
    dropped (its cause, e.g. ``Model is missing inputs [...]``, kept), whitespace collapsed, clipped."""
    message = _SCHEMA_DUMP.sub("", str(err), count=1)
    return _clip(" ".join(f"{type(err).__name__}: {message}".split()), ERROR_CHARS)


def error_summary(errors: pd.Series) -> str | None:
    """What went wrong in a log's ``error`` column, for a log line or a verdict; None without errors.

    E.g. ``56 error(s): MlflowException x56; first: MlflowException: Model is missing inputs ['x']``:
    the rows that got no prediction, a count per exception class (most frequent first), and the first
    error's class and cause.
    """
    failed = [str(e) for e in errors.dropna()]
    if not failed:
        return None
    kinds = Counter(e.partition(":")[0] for e in failed)
    counts = ", ".join(f"{kind} x{n}" for kind, n in kinds.most_common())
    return f"{len(failed)} error(s): {counts}; first: {_clip(failed[0], FIRST_ERROR_CHARS)}"


def error_summaries(log_frame: pd.DataFrame) -> dict[str, str | None]:
    """``{"canary", "champion"}``: :func:`error_summary` of the rows each variant served; a champion
    that served nothing (weight 100) is summarised on its shadow requests for the canary's rows."""
    summaries: dict[str, str | None] = {}
    for variant in (CANARY, CHAMPION):
        served = log_frame.loc[log_frame["variant"] == variant, "error"]
        if served.empty and variant == CHAMPION and "shadow_error" in log_frame.columns:
            served = log_frame.loc[log_frame["variant"] == CANARY, "shadow_error"]
        summaries[variant] = error_summary(served)
    return summaries


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_log(log_frame: pd.DataFrame, uri: str) -> str:
    """Write the prediction log to ``uri`` (local or s3://), replacing it whole; return the URI."""
    return write_parquet(log_frame, uri)


def read_log(uri: str) -> pd.DataFrame:
    """Read a prediction log written by :func:`write_log`."""
    return read_parquet(uri, "Prediction log")


def population_stability(expected: Any, actual: Any, bins: int | None = None) -> float:
    """PSI of ``actual`` against ``expected`` over ``expected``'s quantile bins (empty bins smoothed).

    By default up to 10 bins, fewer for small samples (about 25 rows per bin of the smaller sample):
    with few rows per bin, sampling noise alone pushes PSI past the usual 0.25 alarm.
    """
    import numpy as np

    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    expected, actual = expected[~np.isnan(expected)], actual[~np.isnan(actual)]
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    bins = bins or int(min(10, max(2, min(expected.size, actual.size) // 25)))
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # a constant reference: everything else is a shift
        same = np.isclose(actual, expected[0]).mean()
        e, a = np.array([1.0, 1e-4]), np.array([same, 1 - same])
    else:
        e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / expected.size
        a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / actual.size
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def category_stability(expected: Any, actual: Any) -> float:
    """PSI of ``actual`` against ``expected`` over their categories, compared as text (``3`` and ``"3"``
    are one): each category's share of each sample, a share of 0 smoothed as in
    :func:`population_stability`. Missing values are left out."""
    import numpy as np
    import pandas as pd

    expected, actual = (
        pd.Series(np.asarray(v, dtype=object)).dropna().astype(str) for v in (expected, actual)
    )
    if expected.empty or actual.empty:
        return float("nan")
    shares = pd.concat(
        [expected.value_counts(normalize=True), actual.value_counts(normalize=True)], axis=1
    ).fillna(0.0)
    e, a = (np.clip(shares.iloc[:, i].to_numpy(dtype=float), 1e-4, None) for i in (0, 1))
    return float(np.sum((a - e) * np.log(a / e)))


def analyse(
    log_frame: pd.DataFrame,
    label_column: str | None = None,
    *,
    task_type: str = tasks.BINARY,
    min_samples: int = MIN_SAMPLES,
    min_positives: int = MIN_POSITIVES,
) -> dict[str, tuple[float | None, float | None]]:
    """Per-metric ``(canary, champion)`` values from a prediction log, the input of ``judge_poll``.

    Health (error rate, latency) compares the rows each variant served; when the champion served none
    (weight 100), its shadow requests for the canary's rows stand in. With shadow columns, the
    prediction shift (PSI) and quality compare both models on the canary's own rows (a paired
    comparison: two equal models differ by exactly 0); without them, on the rows each variant served.
    ``prediction_psi`` is the canary's distribution against the champion's (champion side 0): of
    ``probability`` (binary), of ``prediction`` (regression), of the predicted classes' frequencies
    (multiclass, :func:`category_stability`).

    Per ``task_type`` (the other metrics stay None):

    - ``binary``: ``mean_probability``, ``roc_auc``, ``accuracy``;
    - ``multiclass``: ``mean_probability`` (of the predicted class), ``accuracy``, ``macro_f1``, labels
      and predictions compared as text (``3`` and ``"3"`` are one class);
    - ``regression``: ``mean_prediction``, ``rmse``, ``mae``.

    Quality (all but the means) needs ``label_column`` and ``min_samples`` labelled rows (AUC on a few
    dozen rows swings by ±0.1), else it is None. ``roc_auc`` also needs ``min_positives`` positive labels
    and at least one negative; ``min_positives`` applies to nothing else (a multiclass poll needs no
    count per class: ``macro_f1`` counts a class the slice lacks as the model's miss, if it predicts it).
    """
    import pandas as pd

    task_type = _task(task_type)
    values: dict[str, list[float | None]] = {m: [None, None] for m in BATCH_METRICS}
    served = {v: log_frame[log_frame["variant"] == v] for v in (CANARY, CHAMPION)}
    for i, variant in enumerate((CANARY, CHAMPION)):
        rows = served[variant]
        if not rows.empty:
            values["rows"][i] = float(len(rows))
            values["error_rate"][i] = float(rows["error"].notna().mean())
            values["latency_p95_ms"][i] = float(rows["latency_ms"].quantile(0.95))
    if served[CHAMPION].empty and "shadow_latency_ms" in log_frame.columns:
        # The champion served nothing (weight 100): time it on its shadow requests for the canary's rows,
        # made right after the canary's, rather than against a baseline from an earlier, differently
        # loaded step.
        shadow_latency = served[CANARY]["shadow_latency_ms"].dropna()
        if not shadow_latency.empty:
            values["latency_p95_ms"][1] = float(shadow_latency.quantile(0.95))
        if "shadow_error" in log_frame.columns and not served[CANARY].empty:
            # Its error rate on the same rows: a champion that fails too points at the input, not the canary.
            values["error_rate"][1] = float(served[CANARY]["shadow_error"].notna().mean())
    canary = served[CANARY]
    if canary.empty:
        return {k: (v[0], v[1]) for k, v in values.items()}
    canary_ok = canary[canary["error"].isna()]
    if "shadow_error" in log_frame.columns:
        paired = canary_ok[canary_ok["shadow_error"].isna()]
        champion = pd.DataFrame(
            {"probability": paired["shadow_probability"], "prediction": paired["shadow_prediction"]}
        )
        if label_column and label_column in paired.columns:
            champion[label_column] = paired[label_column]
        canary_ok = paired
    else:
        champion = served[CHAMPION][served[CHAMPION]["error"].isna()]
    if canary_ok.empty:
        # Nothing but errors: as far from the champion as it gets (finite, so it serialises as JSON).
        values["prediction_psi"] = [PSI_CAP, 0.0]
    elif not champion.empty:
        values["prediction_psi"] = [_prediction_psi(task_type, champion, canary_ok), 0.0]
    for i, rows in enumerate((canary_ok, champion)):
        if rows.empty:
            continue
        mean = "mean_prediction" if task_type == tasks.REGRESSION else "mean_probability"
        column = tasks.PREDICTION if task_type == tasks.REGRESSION else tasks.PROBABILITY
        values[mean][i] = float(rows[column].astype(float).mean())
        for metric, value in _quality(rows, label_column, task_type, min_samples, min_positives).items():
            values[metric][i] = value
    return {k: (v[0], v[1]) for k, v in values.items()}


def _prediction_psi(task_type: str, champion: pd.DataFrame, canary: pd.DataFrame) -> float:
    if task_type == tasks.MULTICLASS:
        return category_stability(champion[tasks.PREDICTION], canary[tasks.PREDICTION])
    column = tasks.PROBABILITY if task_type == tasks.BINARY else tasks.PREDICTION
    return population_stability(champion[column].astype(float), canary[column].astype(float))


def _quality(
    rows: pd.DataFrame, label_column: str | None, task_type: str, min_samples: int, min_positives: int
) -> dict[str, float | None]:
    """The quality metrics of ``task_type`` on the labelled ``rows``; ``{}`` where they are too few."""
    import numpy as np
    from sklearn import metrics as skm

    if not label_column or label_column not in rows.columns:
        return {}
    labelled = rows[rows[label_column].notna()]
    if len(labelled) < min_samples:
        return {}
    if task_type == tasks.REGRESSION:
        residuals = labelled[tasks.PREDICTION].to_numpy(dtype=float) - labelled[label_column].to_numpy(
            dtype=float
        )
        return {"rmse": float(np.sqrt(np.mean(residuals**2))), "mae": float(np.mean(np.abs(residuals)))}
    if task_type == tasks.MULTICLASS:
        labels, predictions = tasks.encode_classes(labelled[label_column], labelled[tasks.PREDICTION])
        return {
            "accuracy": float(np.mean(labels == predictions)),
            "macro_f1": float(skm.f1_score(labels, predictions, average="macro", zero_division=0)),
        }
    labels = labelled[label_column].astype(int).to_numpy()
    quality: dict[str, float | None] = {
        "accuracy": float(skm.accuracy_score(labels, labelled[tasks.PREDICTION].astype(int)))
    }
    positives = int((labels == 1).sum())
    if positives >= max(min_positives, 1) and positives < len(labels):  # AUC needs both classes
        quality["roc_auc"] = float(skm.roc_auc_score(labels, labelled[tasks.PROBABILITY]))
    return quality
