"""Paired comparison of two models scored on the same rows, and the gate's decision rule.

Both models are judged on the same held-out rows, so their errors are correlated and the comparison is
paired: ``roc_auc`` uses DeLong's test (the variance of the AUC difference from the structural
components, Sun and Xu's O(n log n) algorithm); every other metric a paired bootstrap over rows (the
same resampled rows for both models). Differences are oriented so that positive means "the candidate is
better", for every metric, ``log_loss`` included.

:func:`decide` turns a comparison into ``pass``, ``fail`` or ``insufficient_evidence``: the candidate
passes when the lower bound of the confidence interval of the difference is above ``-tolerance``
(non-inferior), or above 0 with ``require_improvement`` (superior); too few labelled rows or positives
is never a promotion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from mlops_provider.constants import GATE_FAIL, GATE_INSUFFICIENT, GATE_PASS

if TYPE_CHECKING:
    import numpy as np

# metric -> (greater_is_better, what the metric reads: "probability" of label 1 or 0/1 "prediction").
METRICS: dict[str, tuple[bool, str]] = {
    "roc_auc": (True, "probability"),
    "log_loss": (False, "probability"),
    "accuracy": (True, "prediction"),
    "f1": (True, "prediction"),
    "precision": (True, "prediction"),
    "recall": (True, "prediction"),
}
DELONG, BOOTSTRAP = "delong", "paired_bootstrap"
DEFAULT_RESAMPLES = 1000
_CHUNK_CELLS = 4_000_000  # resampled row indices held in memory at once (16 MB of int32)
_PROBABILITY_CLIP = 1e-7


@dataclass(frozen=True)
class GateSettings:
    """How sure the gate must be.

    :param tolerance: non-inferiority margin: how much worse than the champion (in the metric's units)
        the candidate may be and still pass.
    :param confidence: two-sided confidence of the interval of the difference; the gate tests its lower
        bound, so the one-sided error rate is ``(1 - confidence) / 2``.
    :param require_improvement: pass only when the interval lies above 0 (superiority).
    :param min_samples: labelled rows needed to decide at all.
    :param min_positives: rows with label 1 needed to decide at all.
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

    ``difference`` is oriented so that positive means the candidate is better (for ``log_loss``:
    champion minus candidate); ``ci_low``/``ci_high`` bound it at ``confidence``; ``p_value`` is the
    two-sided p-value of "no difference" where the method defines one (DeLong), else None. Values are
    NaN when the metric is undefined on these rows (AUC on a single class).
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """E.g. ``roc_auc: candidate 0.781 vs champion 0.776, difference +0.005 [95% CI -0.002, +0.012],
        n=2000 (157 positives)``."""
        return (
            f"{self.metric}: candidate {self.candidate:.3f} vs champion {self.champion:.3f}, "
            f"difference {self.difference:+.3f} [{self.confidence:.0%} CI {self.ci_low:+.3f}, "
            f"{self.ci_high:+.3f}], n={self.n} ({self.positives} positives)"
        )


def compare(
    metric: str,
    labels: Any,
    candidate: Any,
    champion: Any,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare two models' outputs on the same rows.

    :param metric: one of :data:`METRICS`.
    :param labels: the 0/1 labels.
    :param candidate: the candidate's output per row: P(label=1) for ``roc_auc`` and ``log_loss``, the 0/1
        prediction for ``accuracy``, ``f1``, ``precision`` and ``recall`` (``METRICS[metric][1]``).
    :param champion: the champion's output on the same rows.
    :param confidence: two-sided confidence of the interval.
    :param resamples: bootstrap resamples (metrics other than ``roc_auc``).
    :param seed: the bootstrap's random seed: the same inputs and seed give the same interval.
    :raises ValueError: an unknown metric, or arrays of different lengths.
    """
    import numpy as np

    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; use one of {sorted(METRICS)}.")
    y = np.asarray(labels).astype(int)
    a, b = np.asarray(candidate, dtype=float), np.asarray(champion, dtype=float)
    if not y.shape == a.shape == b.shape or y.ndim != 1:
        raise ValueError(
            f"labels, candidate and champion must be 1-D and of equal length; got {y.shape}, {a.shape}, "
            f"{b.shape}."
        )
    if metric == "roc_auc":
        return _delong(y, a, b, confidence)
    return _bootstrap(metric, y, a, b, confidence, resamples, seed)


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


def _row_statistics(metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row columns whose sums over any set of rows give the metric's difference on those rows.

    Mean metrics need one column, the per-row difference (oriented: positive = candidate better); ratio
    metrics need their numerators and denominators for both models.
    """
    import numpy as np

    if metric == "log_loss":
        return (_log_losses(y, b) - _log_losses(y, a))[:, None]
    ya, yb = (a == 1).astype(float), (b == 1).astype(float)
    columns = {
        "accuracy": [(ya == y).astype(float) - (yb == y)],
        "precision": [ya * y, ya, yb * y, yb],
        "recall": [ya * y, yb * y, y],
        "f1": [ya * y, ya, yb * y, yb, y],
    }[metric]
    return np.column_stack(columns).astype(float)


def _ratios(metric: str, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both models' ratio metric from column sums (one row per resample); a zero denominator gives 0."""
    import numpy as np

    def ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        return np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)

    if metric == "precision":
        return ratio(sums[:, 0], sums[:, 1]), ratio(sums[:, 2], sums[:, 3])
    if metric == "recall":
        return ratio(sums[:, 0], sums[:, 2]), ratio(sums[:, 1], sums[:, 2])
    # f1 = 2 TP / (predicted positives + actual positives)
    return ratio(2 * sums[:, 0], sums[:, 1] + sums[:, 4]), ratio(2 * sums[:, 2], sums[:, 3] + sums[:, 4])


def _differences(metric: str, sums: np.ndarray, n: int) -> np.ndarray:
    """The oriented difference (candidate better: positive) for each row of column sums."""
    if metric in ("log_loss", "accuracy"):
        return sums[:, 0] / n
    candidate, champion = _ratios(metric, sums)
    return candidate - champion


def _values(metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Both models' metric on all the rows."""
    if metric == "log_loss":
        return float(_log_losses(y, a).mean()), float(_log_losses(y, b).mean())
    if metric == "accuracy":
        return float((a == y).mean()), float((b == y).mean())
    candidate, champion = _ratios(metric, _row_statistics(metric, y, a, b).sum(axis=0)[None, :])
    return float(candidate[0]), float(champion[0])


def resampled_sums(stats: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of ``resamples`` resamples of the rows of ``stats``, drawn with replacement.

    When every value is -1, 0 or 1 (statistics of 0/1 predictions), the rows take a few distinct values
    and a resample is a multinomial draw of how many times each distinct row appears, which has exactly the law of drawing ``n`` rows
    with replacement and costs next to nothing; otherwise row indices are drawn, a chunk of resamples
    at a time.
    """
    import numpy as np

    n = stats.shape[0]
    if np.isin(stats, (-1.0, 0.0, 1.0)).all():  # 0/1 predictions: at most 3**columns distinct rows
        codes = (stats + 1) @ (3.0 ** np.arange(stats.shape[1]))
        _, first, counts = np.unique(codes, return_index=True, return_counts=True)
        return rng.multinomial(n, counts / n, size=resamples) @ stats[first]
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
    metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray, confidence: float, resamples: int, seed: int
) -> Comparison:
    import numpy as np

    n, positives = int(y.size), int(y.sum())
    value_a, value_b = _values(metric, y, a, b)
    stats = _row_statistics(metric, y, a, b)
    rng = np.random.Generator(np.random.SFC64(seed))  # faster than the default PCG64 at drawing indices
    differences = _differences(metric, resampled_sums(stats, resamples, rng), n)
    alpha = 1 - confidence
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    sign = 1.0 if METRICS[metric][0] else -1.0
    return Comparison(
        metric,
        n,
        positives,
        value_a,
        value_b,
        sign * (value_a - value_b),
        float(low),
        float(high),
        confidence,
        None,
        BOOTSTRAP,
    )


# -- the decision ---------------------------------------------------------------------------------------


def evidence_shortfall(n: int, positives: int, settings: GateSettings) -> str | None:
    """Why ``n`` labelled rows with ``positives`` positives are too few to decide on, or None."""
    if n >= settings.min_samples and positives >= settings.min_positives:
        return None
    return (
        f"insufficient evidence: {n} labelled row(s) with {positives} positive(s); the gate needs at "
        f"least {settings.min_samples} rows and {settings.min_positives} positives (min_samples, "
        "min_positives). Wait for more labels or evaluate on a longer window."
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

    shortfall = evidence_shortfall(comparison.n, comparison.positives, settings)
    if shortfall is None and math.isnan(comparison.ci_low):
        shortfall = f"insufficient evidence: {comparison.metric} is undefined on these rows (one class only)"
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
