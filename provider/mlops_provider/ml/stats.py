"""Paired comparison of two models scored on the same rows, and the gate's decision rule.

Both models are judged on the same held-out rows, so their errors are correlated and the comparison is
paired: ``roc_auc`` uses DeLong's test (the variance of the AUC difference from the structural
components, Sun and Xu's O(n log n) algorithm); every other metric a paired bootstrap over rows (the
same resampled rows for both models). Differences are oriented so that positive means "the candidate is
better", for every metric, ``log_loss``, ``rmse`` and ``mae`` included.

Each task type has its metrics (:data:`mlops_provider.ml.tasks.GATE_METRICS`): ``binary`` roc_auc,
log_loss, accuracy, f1, precision and recall; ``multiclass`` accuracy, macro_f1 and log_loss (of the
probability given to the true class); ``regression`` rmse, mae and r2.

:func:`decide` turns a comparison into ``pass``, ``fail`` or ``insufficient_evidence``: the candidate
passes when the lower bound of the confidence interval of the difference is above ``-tolerance``
(non-inferior), or above 0 with ``require_improvement`` (superior); too few labelled rows (or positives,
or rows of the rarest class) is never a promotion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from mlops_provider.constants import GATE_FAIL, GATE_INSUFFICIENT, GATE_PASS
from mlops_provider.ml.tasks import (
    BINARY,
    GATE_METRICS,
    MULTICLASS,
    REGRESSION,
    check_task_type,
    encode_classes,
)

if TYPE_CHECKING:
    import numpy as np

# Metrics that read a probability: P(label = 1) for binary, P(the true class) for multiclass. The others
# read the prediction: the 0/1 label, the class, or the number.
PROBABILITY_METRICS = frozenset({"roc_auc", "log_loss"})
# Metrics that are the mean of a per-row value: the bootstrap resamples one column, the per-row difference.
_MEAN_METRICS = frozenset({"log_loss", "accuracy", "mae"})
DELONG, BOOTSTRAP = "delong", "paired_bootstrap"
DEFAULT_RESAMPLES = 1000
_CHUNK_CELLS = 4_000_000  # resampled row indices held in memory at once (16 MB of int32)
_PROBABILITY_CLIP = 1e-7
_EXACT_FLOAT_INTEGERS = 2.0**53  # every integer below it is a float


@dataclass(frozen=True)
class GateSettings:
    """How sure the gate must be.

    :param tolerance: non-inferiority margin: how much worse than the champion (in the metric's units)
        the candidate may be and still pass.
    :param confidence: two-sided confidence of the interval of the difference; the gate tests its lower
        bound, so the one-sided error rate is ``(1 - confidence) / 2``.
    :param require_improvement: pass only when the interval lies above 0 (superiority).
    :param min_samples: labelled rows needed to decide at all.
    :param min_positives: rows with label 1 (binary), or rows of the rarest class (multiclass), needed to
        decide at all; regression ignores it.
    """

    tolerance: float = 0.005
    confidence: float = 0.95
    require_improvement: bool = False
    min_samples: int = 500
    min_positives: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {self.confidence!r}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance!r}")
        if self.min_samples < 1 or self.min_positives < 0:
            raise ValueError(
                f"min_samples must be >= 1 and min_positives >= 0, got {self.min_samples!r} "
                f"and {self.min_positives!r}"
            )


@dataclass(frozen=True)
class Comparison:
    """Candidate against champion on one metric, on the same ``n`` rows.

    ``difference`` is oriented so that positive means the candidate is better (for ``log_loss``, ``rmse``
    and ``mae``: champion minus candidate); ``ci_low``/``ci_high`` bound it at ``confidence``;
    ``p_value`` is the two-sided p-value of "no difference" where the method defines one (DeLong), else
    None. Values are NaN when the metric is undefined on these rows (AUC on a single class, r2 on
    constant labels). ``positives`` counts the label-1 rows (binary), the rows of the rarest class in the
    labels (multiclass) or every row (regression).
    """

    metric: str
    n: int
    positives: int
    candidate: float
    champion: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float | None
    method: str
    task_type: str = BINARY

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """E.g. ``roc_auc: candidate 0.781 vs champion 0.776, difference +0.005 [95% CI -0.002, +0.012],
        n=2000 (157 positives)``; multiclass ends ``(rarest class 40 rows)``, regression at ``n=2000``."""
        evidence = {
            BINARY: f" ({self.positives} positives)",
            MULTICLASS: f" (rarest class {self.positives} rows)",
        }.get(self.task_type, "")
        return (
            f"{self.metric}: candidate {self.candidate:.3f} vs champion {self.champion:.3f}, "
            f"difference {self.difference:+.3f} [{self.confidence:.0%} CI {self.ci_low:+.3f}, "
            f"{self.ci_high:+.3f}], n={self.n}{evidence}"
        )


def compare(
    metric: str,
    labels: Any,
    candidate: Any,
    champion: Any,
    *,
    task_type: str = BINARY,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare two models' outputs on the same rows.

    :param metric: one of ``GATE_METRICS[task_type]`` (:mod:`mlops_provider.ml.tasks`).
    :param labels: the labels: 0/1 (binary), the classes as any values (multiclass; ``3`` and ``"3"`` are
        one class), numbers (regression).
    :param candidate: the candidate's output per row: for :data:`PROBABILITY_METRICS` P(label=1) (binary)
        or P(the row's true class) (multiclass, :func:`mlops_provider.ml.tasks.true_class_probability`);
        else the prediction: 0/1, the class, or the number.
    :param champion: the champion's output on the same rows.
    :param task_type: ``binary``, ``multiclass`` or ``regression``.
    :param confidence: two-sided confidence of the interval.
    :param resamples: bootstrap resamples (metrics other than ``roc_auc``).
    :param seed: the bootstrap's random seed: the same inputs and seed give the same interval.
    :raises ValueError: an unknown task type or metric (for the task), or arrays of different lengths.
    """
    task_type = check_task_type(task_type)
    metrics = GATE_METRICS[task_type]
    if metric not in metrics:
        raise ValueError(f"Unknown metric {metric!r} for a {task_type} model; use one of {sorted(metrics)}.")
    y, a, b = _arrays(task_type, metric, labels, candidate, champion)
    if not y.shape == a.shape == b.shape or y.ndim != 1:
        raise ValueError(
            f"labels, candidate and champion must be 1-D and of equal length; got {y.shape}, {a.shape}, "
            f"{b.shape}."
        )
    if metric == "roc_auc":
        return _delong(y, a, b, confidence)
    return _bootstrap(task_type, metric, y, a, b, confidence, resamples, seed)


def count_positives(labels: Any, task_type: str = BINARY) -> int:
    """The evidence count the gate's ``min_positives`` reads: label-1 rows (binary), rows of the rarest
    class in the labels (multiclass), every row (regression)."""
    return _positives(task_type, _labels(task_type, labels))


def _positives(task_type: str, y: np.ndarray) -> int:
    """:func:`count_positives` of labels already made numbers (class codes for multiclass)."""
    import numpy as np

    if task_type == MULTICLASS:
        counts = np.bincount(y)
        return int(counts[counts > 0].min()) if y.size else 0
    return int(y.size) if task_type == REGRESSION else int(y.sum())


def _labels(task_type: str, labels: Any) -> np.ndarray:
    """Labels as numbers: 0/1 (binary), class codes (multiclass), floats (regression)."""
    import numpy as np

    if task_type == MULTICLASS:
        return encode_classes(labels)[0]
    return np.asarray(labels, dtype=float) if task_type == REGRESSION else np.asarray(labels).astype(int)


def _arrays(task_type: str, metric: str, labels: Any, candidate: Any, champion: Any) -> tuple[Any, Any, Any]:
    """``(labels, candidate, champion)`` as numbers; classes become codes over one shared vocabulary."""
    import numpy as np

    if task_type == MULTICLASS and metric not in PROBABILITY_METRICS:
        codes, candidate_codes, champion_codes = encode_classes(labels, candidate, champion)
        return codes, candidate_codes, champion_codes
    return _labels(task_type, labels), np.asarray(candidate, dtype=float), np.asarray(champion, dtype=float)


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


# -- DeLong ---------------------------------------------------------------------------------------------


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their average rank."""
    import numpy as np

    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size)
    ranks[order] = ((starts + 1 + ends) / 2)[group]
    return ranks


def delong_components(labels: Any, scores: Any) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and its structural components: one per positive (``v10``) and one per negative (``v01``).

    ``v10[i]`` is the share of negatives ranked below positive ``i`` (ties count half), ``v01[j]`` the
    share of positives ranked above negative ``j``; both average to the AUC.
    """
    import numpy as np

    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=float)
    positives, negatives = s[y], s[~y]
    m, n = positives.size, negatives.size
    overall = _midranks(np.r_[positives, negatives])
    v10 = (overall[:m] - _midranks(positives)) / n
    v01 = 1.0 - (overall[m:] - _midranks(negatives)) / m
    return float(v10.mean()), v10, v01


def delong_variance(labels: Any, candidate: Any, champion: Any) -> tuple[float, float, float]:
    """``(candidate AUC, champion AUC, variance of candidate AUC - champion AUC)`` by DeLong's method."""
    import numpy as np

    auc_a, v10_a, v01_a = delong_components(labels, candidate)
    auc_b, v10_b, v01_b = delong_components(labels, champion)
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s10 @ contrast / v10_a.size + contrast @ s01 @ contrast / v01_a.size
    return auc_a, auc_b, float(max(variance, 0.0))


def _delong(y: np.ndarray, a: np.ndarray, b: np.ndarray, confidence: float) -> Comparison:
    import math

    n, positives = int(y.size), int(y.sum())
    if positives < 2 or n - positives < 2:  # AUC (and its variance) needs two rows of each class
        nan = float("nan")
        return Comparison("roc_auc", n, positives, nan, nan, nan, nan, nan, confidence, None, DELONG)
    auc_a, auc_b, variance = delong_variance(y, a, b)
    difference, se = auc_a - auc_b, math.sqrt(variance)
    half = _z(confidence) * se
    # No spread (identical rankings): no doubt about the difference, whatever it is.
    p_value = 2 * (1 - NormalDist().cdf(abs(difference) / se)) if se > 0 else float(difference == 0)
    return Comparison(
        "roc_auc",
        n,
        positives,
        auc_a,
        auc_b,
        difference,
        difference - half,
        difference + half,
        confidence,
        p_value,
        DELONG,
    )


# -- paired bootstrap -----------------------------------------------------------------------------------


def _log_losses(y: np.ndarray, probability: np.ndarray) -> np.ndarray:
    import numpy as np

    p = np.clip(probability, _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def true_class_log_losses(probability: Any) -> np.ndarray:
    """Per-row multiclass log loss, ``-log P(true class)``, the probability clipped away from 0."""
    import numpy as np

    return -np.log(np.clip(np.asarray(probability, dtype=float), _PROBABILITY_CLIP, 1.0))


def _per_row(task_type: str, metric: str, y: np.ndarray, output: np.ndarray) -> np.ndarray:
    """One model's per-row value of a mean metric (:data:`_MEAN_METRICS`): the metric is its mean."""
    import numpy as np

    if metric == "accuracy":
        return (output == y).astype(float)
    if metric == "mae":
        return np.abs(y - output)
    if task_type == MULTICLASS:  # log_loss of P(true class)
        return true_class_log_losses(output)
    return _log_losses(y, output)


def _ratio_statistics(
    task_type: str, metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row columns whose sums over any set of rows give both models' metric on those rows (numerators
    and denominators, or sums of squares), and None; or, for ``macro_f1``, the columns of each distinct
    (label, candidate, champion) triple and how many rows each stands for."""
    import numpy as np

    if metric == "macro_f1":
        return _macro_f1_statistics(y, a, b)
    if task_type == REGRESSION:
        squared = [(y - a) ** 2, (y - b) ** 2]
        if metric == "rmse":
            return np.column_stack(squared), None
        # r2 needs the total sum of squares of each resample: sum of y and of y**2, centred on the mean
        # of every row so that float32 sums do not cancel when the mean is large against the spread.
        centred = y - y.mean()
        return np.column_stack([*squared, centred, centred**2]), None
    ya, yb = (a == 1).astype(float), (b == 1).astype(float)
    columns = {
        "precision": [ya * y, ya, yb * y, yb],
        "recall": [ya * y, yb * y, y],
        "f1": [ya * y, ya, yb * y, yb, y],
    }[metric]
    return np.column_stack(columns).astype(float), None


def _macro_f1_statistics(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct (label, candidate, champion) triple of class codes: one-hot columns of, per
    class, the candidate's true positives and predictions, the champion's, and the labels (5 blocks of
    one column per class); and how many rows hold the triple. At most classes**3 triples, so the
    statistics never hold rows x 5 x classes values."""
    import numpy as np

    triples, counts = np.unique(np.column_stack([y, a, b]), axis=0, return_counts=True)
    one_hot = np.eye(int(triples.max()) + 1)
    label, candidate, champion = (one_hot[triples[:, i]] for i in range(3))
    stats = np.hstack([candidate * label, candidate, champion * label, champion, label])
    return stats, counts


def _ratios(metric: str, sums: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Both models' ratio metric from column sums (one row per resample); a zero denominator gives 0
    (NaN for r2: undefined on constant labels)."""
    import numpy as np

    def ratio(top: np.ndarray, bottom: np.ndarray, empty: float = 0.0) -> np.ndarray:
        return np.divide(top, bottom, out=np.full_like(top, empty), where=bottom > 0)

    if metric == "precision":
        return ratio(sums[:, 0], sums[:, 1]), ratio(sums[:, 2], sums[:, 3])
    if metric == "recall":
        return ratio(sums[:, 0], sums[:, 2]), ratio(sums[:, 1], sums[:, 2])
    if metric == "f1":  # 2 TP / (predicted positives + actual positives)
        return ratio(2 * sums[:, 0], sums[:, 1] + sums[:, 4]), ratio(2 * sums[:, 2], sums[:, 3] + sums[:, 4])
    if metric == "rmse":
        return np.sqrt(sums[:, 0] / n), np.sqrt(sums[:, 1] / n)
    if metric == "r2":
        total = sums[:, 3] - sums[:, 2] ** 2 / n
        return 1 - ratio(sums[:, 0], total, np.nan), 1 - ratio(sums[:, 1], total, np.nan)
    # macro_f1: per class 2 TP / (predicted + actual), averaged over the classes in labels or predictions
    tp_a, predicted_a, tp_b, predicted_b, actual = np.split(sums, 5, axis=1)

    def macro(tp: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        bottom = predicted + actual
        f1 = np.divide(2 * tp, bottom, out=np.zeros_like(tp), where=bottom > 0)
        return f1.sum(axis=1) / np.maximum((bottom > 0).sum(axis=1), 1)

    return macro(tp_a, predicted_a), macro(tp_b, predicted_b)


def _distinct_rows(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``stats`` (every value -1, 0 or 1) and how often each appears."""
    import numpy as np

    if 3.0 ** stats.shape[1] < _EXACT_FLOAT_INTEGERS:  # base-3 codes of the rows are exact floats
        codes = (stats + 1) @ (3.0 ** np.arange(stats.shape[1]))
        _, first, counts = np.unique(codes, return_index=True, return_counts=True)
    else:
        _, first, counts = np.unique(stats.astype(np.int8), axis=0, return_index=True, return_counts=True)
    return stats[first], counts


def resampled_sums(
    stats: np.ndarray, resamples: int, rng: np.random.Generator, counts: np.ndarray | None = None
) -> np.ndarray:
    """Column sums of ``resamples`` resamples of the rows of ``stats``, drawn with replacement.

    With ``counts``, row ``i`` of ``stats`` stands for ``counts[i]`` identical rows. When every value is
    -1, 0 or 1 (statistics of 0/1 predictions), the rows take a few distinct values. Then a resample is
    a multinomial draw of how many times each distinct row appears, which has exactly the law of drawing
    ``n`` rows with replacement and costs next to nothing; otherwise row indices are drawn, a chunk of
    resamples at a time.
    """
    import numpy as np

    if counts is None and np.isin(stats, (-1.0, 0.0, 1.0)).all():  # 0/1 predictions
        stats, counts = _distinct_rows(stats)
    if counts is not None:
        n = int(counts.sum())
        return rng.multinomial(n, counts / n, size=resamples) @ stats
    n = stats.shape[0]
    # float32 halves the memory traffic of the gather, the cost that matters; sums of up to millions
    # of rows keep ~6 significant digits, far finer than any interval.
    columns = [np.ascontiguousarray(column, dtype=np.float32) for column in stats.T]
    chunk = max(1, _CHUNK_CELLS // n)
    parts = []
    for start in range(0, resamples, chunk):
        rows = rng.integers(0, n, size=(min(chunk, resamples - start), n), dtype=np.int32)
        parts.append(np.stack([np.take(column, rows).sum(axis=1) for column in columns], axis=1))
    return np.concatenate(parts).astype(float)


def _bootstrap(
    task_type: str,
    metric: str,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    confidence: float,
    resamples: int,
    seed: int,
) -> Comparison:
    import numpy as np

    n = int(y.size)
    sign = 1.0 if GATE_METRICS[task_type][metric] else -1.0
    rng = np.random.Generator(np.random.SFC64(seed))  # faster than the default PCG64 at drawing indices
    if metric in _MEAN_METRICS:
        rows_a, rows_b = _per_row(task_type, metric, y, a), _per_row(task_type, metric, y, b)
        value_a, value_b = float(rows_a.mean()), float(rows_b.mean())
        differences = resampled_sums((sign * (rows_a - rows_b))[:, None], resamples, rng)[:, 0] / n
    else:
        stats, counts = _ratio_statistics(task_type, metric, y, a, b)
        totals = stats.sum(axis=0) if counts is None else counts @ stats
        candidate, champion = _ratios(metric, totals[None, :], n)
        value_a, value_b = float(candidate[0]), float(champion[0])
        candidate, champion = _ratios(metric, resampled_sums(stats, resamples, rng, counts), n)
        differences = sign * (candidate - champion)
    alpha = 1 - confidence
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    return Comparison(
        metric,
        n,
        _positives(task_type, y),
        value_a,
        value_b,
        sign * (value_a - value_b),
        float(low),
        float(high),
        confidence,
        None,
        BOOTSTRAP,
        task_type,
    )


# -- the decision ---------------------------------------------------------------------------------------


def evidence_shortfall(
    n: int, positives: int, settings: GateSettings, *, task_type: str = BINARY
) -> str | None:
    """Why ``n`` labelled rows are too few to decide on, or None.

    ``positives`` is :func:`count_positives`' count: rows with label 1 (binary, against
    ``min_positives``), rows of the rarest class (multiclass, against ``min_positives``); regression
    needs ``min_samples`` rows only.
    """
    enough_rows = n >= settings.min_samples
    if task_type == REGRESSION:
        if enough_rows:
            return None
        needs, has = f"{settings.min_samples} rows (min_samples)", ""
    elif enough_rows and positives >= settings.min_positives:
        return None
    elif task_type == MULTICLASS:
        has = f", the rarest class with {positives} row(s)"
        needs = (
            f"{settings.min_samples} rows and {settings.min_positives} rows of every class (min_samples, "
            "min_positives)"
        )
    else:
        has = f" with {positives} positive(s)"
        needs = (
            f"{settings.min_samples} rows and {settings.min_positives} positives (min_samples, min_positives)"
        )
    return (
        f"insufficient evidence: {n} labelled row(s){has}; the gate needs at least {needs}. Wait for more "
        "labels or evaluate on a longer window."
    )


def decide(comparison: Comparison, settings: GateSettings) -> tuple[str, str]:
    """``(decision, reason)`` for the candidate against the champion.

    ``insufficient_evidence`` when the rows are too few (or the metric undefined on them); else ``pass``
    when the lower confidence bound of the difference is above ``-tolerance`` (above 0 with
    ``require_improvement``), else ``fail``. The reason reads e.g. ``roc_auc: candidate 0.781 vs
    champion 0.776, difference +0.005 [95% CI -0.002, +0.012], n=2000 (157 positives): PASS
    (non-inferior within 0.005)``.
    """
    import math

    shortfall = evidence_shortfall(
        comparison.n, comparison.positives, settings, task_type=comparison.task_type
    )
    if shortfall is None and math.isnan(comparison.ci_low):
        why = "constant labels" if comparison.task_type == REGRESSION else "one class only"
        shortfall = f"insufficient evidence: {comparison.metric} is undefined on these rows ({why})"
    if shortfall is not None:
        return GATE_INSUFFICIENT, f"{comparison.metric}: {shortfall}"
    low = comparison.ci_low
    if settings.require_improvement:
        passed = low > 0
        why = (
            f"better than the champion: lower bound {low:+.3f} > 0"
            if passed
            else f"no improvement shown: lower bound {low:+.3f} <= 0 (require_improvement)"
        )
    else:
        passed = low > -settings.tolerance
        why = (
            f"non-inferior within {settings.tolerance:g}"
            if passed
            else f"may be worse by more than {settings.tolerance:g}: lower bound {low:+.3f}"
        )
    decision = GATE_PASS if passed else GATE_FAIL
    return decision, f"{comparison.summary()}: {decision.upper()} ({why})"
