"""The paired comparison (DeLong, paired bootstrap) and the gate's decision rule, judged against truth.

The last tests simulate held-out days with the example-data generator, whose ``churn_probability`` is the
true churn probability of every row. A scoring "model" is the true logit plus Gaussian noise of a chosen
size; the candidate's noise is correlated with the champion's (``NOISE_CORRELATION``), as two models
trained on the same features err on the same rows. A model's TRUE AUC is measured once, against the true
probabilities (the expected AUC over label draws) of 200,000 rows of a later day from another customer
base; the noise size for a wanted true AUC is read off that curve.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mlops_provider.constants import GATE_FAIL, GATE_INSUFFICIENT, GATE_PASS
from mlops_provider.example_data.generator import GeneratorConfig, activity_columns, churn_probability
from mlops_provider.ml.stats import (
    BOOTSTRAP,
    DELONG,
    Comparison,
    GateSettings,
    compare,
    decide,
    delong_components,
    delong_variance,
    evidence_shortfall,
    resampled_sums,
)


def two_models(n: int, seed: int, noise: tuple[float, float] = (0.6, 0.9), prevalence_shift: float = -2.4):
    """Labels and two correlated scores of a synthetic population: ``(y, candidate, champion)``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(prevalence_shift + 1.3 * x)))).astype(int)
    shared = rng.standard_normal(n)
    candidate = x + noise[0] * (0.7 * shared + 0.71 * rng.standard_normal(n))
    champion = x + noise[1] * shared
    return y, candidate, champion


def probabilities(score: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(-2.4 + 1.1 * score)))


# -- the comparison -------------------------------------------------------------------------------------


def test_delong_auc_equals_sklearn_with_and_without_ties() -> None:
    y, candidate, champion = two_models(3000, seed=1)
    tied = np.round(candidate, 1)  # many ties, which count half

    for scores in (candidate, champion, tied):
        auc, v10, v01 = delong_components(y, scores)
        assert auc == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
        assert v10.size == y.sum() and v01.size == (1 - y).sum()
        assert v01.mean() == pytest.approx(auc, abs=1e-12)

    result = compare("roc_auc", y, tied, champion)
    assert result.candidate == pytest.approx(skm.roc_auc_score(y, tied), abs=1e-12)
    assert result.champion == pytest.approx(skm.roc_auc_score(y, champion), abs=1e-12)
    assert result.method == DELONG and result.n == 3000 and result.positives == int(y.sum())


def test_delong_variance_agrees_with_a_bootstrap_of_the_auc_difference() -> None:
    y, candidate, champion = two_models(2000, seed=2)
    rng = np.random.default_rng(3)

    differences = []
    for _ in range(2000):
        rows = rng.integers(0, y.size, y.size)
        differences.append(
            delong_components(y[rows], candidate[rows])[0] - delong_components(y[rows], champion[rows])[0]
        )
    _, _, variance = delong_variance(y, candidate, champion)

    assert variance == pytest.approx(np.var(differences), rel=0.10)
    # Paired: well below the sum of the two AUCs' own variances (what an unpaired test would use).
    own = [delong_components(y, s) for s in (candidate, champion)]
    unpaired = sum(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size for _, v10, v01 in own)
    assert variance < 0.7 * unpaired


def test_identical_models_differ_by_exactly_zero_with_no_doubt() -> None:
    y, candidate, _ = two_models(1000, seed=4)

    result = compare("roc_auc", y, candidate, candidate.copy())

    assert result.difference == result.ci_low == result.ci_high == 0.0 and result.p_value == 1.0


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "accuracy"])
def test_the_interval_covers_a_true_difference_of_zero_about_as_often_as_it_says(metric) -> None:
    # Two exchangeable models (equal noise, correlated as retrained models are): the true difference is 0.
    reps, covered = 150, 0
    for seed in range(reps):
        rng = np.random.default_rng(100 + seed)
        x = rng.standard_normal(800)
        y = (rng.random(800) < 1 / (1 + np.exp(-(-2.4 + 1.3 * x)))).astype(int)
        shared, own_a, own_b = rng.standard_normal((3, 800))
        a, b = x + 0.6 * shared + 0.5 * own_a, x + 0.6 * shared + 0.5 * own_b
        if metric != "roc_auc":
            a, b = probabilities(a), probabilities(b)
        if metric == "accuracy":
            a, b = (a >= 0.25).astype(int), (b >= 0.25).astype(int)
        result = compare(metric, y, a, b, resamples=400, seed=seed)
        covered += result.ci_low <= 0 <= result.ci_high
    assert 0.90 <= covered / reps <= 0.99


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "precision", "recall", "f1"])
def test_bootstrap_point_values_equal_sklearn_and_the_difference_points_to_the_better_model(metric) -> None:
    y, a, b = two_models(2000, seed=5)
    pa, pb = probabilities(a), probabilities(b)
    if metric == "log_loss":
        a, b = pa, pb
        expected = skm.log_loss(y, pa), skm.log_loss(y, pb)
    else:
        a, b = (pa >= 0.3).astype(int), (pb >= 0.3).astype(int)
        score = getattr(skm, f"{metric}_score")
        expected = score(y, a), score(y, b)

    result = compare(metric, y, a, b, resamples=500, seed=1)

    assert (result.candidate, result.champion) == pytest.approx(expected, abs=1e-12)
    sign = -1 if metric == "log_loss" else 1  # lower log loss is better
    assert result.difference == pytest.approx(sign * (expected[0] - expected[1]))
    assert result.ci_low <= result.difference <= result.ci_high
    assert result.method == BOOTSTRAP and result.p_value is None


def test_the_bootstrap_is_deterministic_for_a_seed() -> None:
    y, a, b = two_models(3000, seed=6)
    pa, pb = probabilities(a), probabilities(b)

    first = compare("log_loss", y, pa, pb, seed=11)
    again = compare("log_loss", y, pa, pb, seed=11)
    other = compare("log_loss", y, pa, pb, seed=12)
    binary = [compare("f1", y, (pa > 0.3).astype(int), (pb > 0.3).astype(int), seed=11) for _ in range(2)]

    assert first == again and binary[0] == binary[1]
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_auc_on_a_single_class_is_undefined_and_decides_nothing() -> None:
    y = np.zeros(600, dtype=int)
    scores = np.linspace(0, 1, 600)

    result = compare("roc_auc", y, scores, scores[::-1])

    assert math.isnan(result.difference) and result.positives == 0
    decision, reason = decide(result, GateSettings(min_positives=0))
    assert decision == GATE_INSUFFICIENT and "undefined" in reason


def test_compare_refuses_an_unknown_metric_and_unpaired_rows() -> None:
    with pytest.raises(ValueError, match="Unknown metric 'auc'"):
        compare("auc", [0, 1], [0.1, 0.9], [0.2, 0.8])
    with pytest.raises(ValueError, match="equal length"):
        compare("roc_auc", [0, 1, 1], [0.1, 0.9], [0.2, 0.8])


# -- the decision ---------------------------------------------------------------------------------------


def comparison(low: float, high: float, *, n: int = 2000, positives: int = 157) -> Comparison:
    return Comparison("roc_auc", n, positives, 0.781, 0.776, (low + high) / 2, low, high, 0.95, 0.2, DELONG)


@pytest.mark.parametrize(
    ("low", "high", "require_improvement", "expected", "says"),
    [
        (-0.002, 0.012, False, GATE_PASS, "PASS (non-inferior within 0.005)"),
        (-0.004, 0.010, False, GATE_PASS, "non-inferior"),
        (-0.005, 0.009, False, GATE_FAIL, "may be worse by more than 0.005: lower bound -0.005"),
        (-0.020, -0.010, False, GATE_FAIL, "FAIL"),
        (-0.002, 0.012, True, GATE_FAIL, "no improvement shown"),
        (0.001, 0.015, True, GATE_PASS, "better than the champion: lower bound +0.001 > 0"),
    ],
)
def test_decide_on_the_lower_confidence_bound(low, high, require_improvement, expected, says) -> None:
    decision, reason = decide(
        comparison(low, high), GateSettings(tolerance=0.005, require_improvement=require_improvement)
    )

    assert decision == expected and says in reason


def test_the_reason_reads_as_one_line_with_the_interval_and_the_evidence() -> None:
    _, reason = decide(comparison(-0.002, 0.012), GateSettings())

    assert reason == (
        "roc_auc: candidate 0.781 vs champion 0.776, difference +0.005 [95% CI -0.002, +0.012], "
        "n=2000 (157 positives): PASS (non-inferior within 0.005)"
    )


@pytest.mark.parametrize(("n", "positives"), [(499, 157), (2000, 49), (300, 24)])
def test_too_few_rows_or_positives_is_insufficient_evidence_never_a_pass(n, positives) -> None:
    decision, reason = decide(comparison(0.02, 0.05, n=n, positives=positives), GateSettings())

    assert decision == GATE_INSUFFICIENT
    assert f"{n} labelled row(s) with {positives} positive(s)" in reason
    assert "at least 500 rows and 50 positives" in reason
    assert evidence_shortfall(500, 50, GateSettings()) is None


@pytest.mark.parametrize(
    "kwargs", [{"confidence": 1.0}, {"confidence": 0}, {"tolerance": -0.1}, {"min_samples": 0}]
)
def test_settings_refuse_nonsense(kwargs) -> None:
    with pytest.raises(ValueError, match="must be"):
        GateSettings(**kwargs)


# -- multiclass and regression -----------------------------------------------------------------------------

ANIMALS = np.array(["cat", "dog", "eel", "fox"])


def class_models(n: int, seed: int, noise: tuple[float, float] = (1.0, 1.0), shared: float = 0.6):
    """Class codes (0-3, the last rare) and two models' class probabilities (rows sum to 1): softmax of the
    true class's indicator plus noise that the two models partly share, so they err on the same rows."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    common = rng.standard_normal((n, 4))
    own = math.sqrt(1 - shared**2)

    def probabilities(size: float) -> np.ndarray:
        scores = 1.5 * np.eye(4)[y] + size * (shared * common + own * rng.standard_normal((n, 4)))
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    return y, probabilities(noise[0]), probabilities(noise[1])


def regression_models(n: int, seed: int, noise: tuple[float, float], correlation: float = 0.8):
    """A target of mean 50 and sd 2, and two models' predictions: the target plus correlated Gaussian
    errors of sd ``noise``, so the true rmse is the noise, the true mae noise * sqrt(2/pi) and the true r2
    1 - noise**2 / 4."""
    rng = np.random.default_rng(seed)
    y = 50 + 2 * rng.standard_normal(n)
    shared, own = rng.standard_normal((2, n))
    candidate = y + noise[0] * (correlation * shared + math.sqrt(1 - correlation**2) * own)
    return y, candidate, y + noise[1] * shared


def test_multiclass_values_equal_sklearn_whatever_the_class_values_look_like() -> None:
    y, pa, pb = class_models(3000, seed=21, noise=(1.0, 1.4))
    predicted_a, predicted_b = pa.argmax(axis=1), pb.argmax(axis=1)
    predicted_b[:25] = 4  # the champion sometimes names a class no label has: it counts in its macro F1
    named = np.append(ANIMALS, "gnu")
    true_a, true_b = pa[np.arange(y.size), y], pb[np.arange(y.size), y]

    # Labels as numbers, predictions as text of the same numbers: "3" and 3 are one class.
    accuracy = compare("accuracy", y, predicted_a.astype(str), predicted_b, task_type="multiclass")
    macro_f1 = compare("macro_f1", named[y], named[predicted_a], named[predicted_b], task_type="multiclass")
    log_loss = compare("log_loss", named[y], true_a, true_b, task_type="multiclass")

    assert (accuracy.candidate, accuracy.champion) == pytest.approx(
        (skm.accuracy_score(y, predicted_a), skm.accuracy_score(y, predicted_b)), abs=1e-12
    )
    assert (macro_f1.candidate, macro_f1.champion) == pytest.approx(
        (skm.f1_score(y, predicted_a, average="macro"), skm.f1_score(y, predicted_b, average="macro")),
        abs=1e-12,
    )
    assert (log_loss.candidate, log_loss.champion) == pytest.approx(
        (skm.log_loss(y, pa, labels=range(4)), skm.log_loss(y, pb, labels=range(4))), abs=1e-9
    )
    for result in (accuracy, macro_f1, log_loss):  # the less noisy candidate is better, on every metric
        assert 0 < result.ci_low <= result.difference <= result.ci_high, result.summary()
        assert result.method == BOOTSTRAP and result.task_type == "multiclass"
        assert result.positives == int((y == 3).sum())  # rows of the rarest class
    assert log_loss.difference == pytest.approx(log_loss.champion - log_loss.candidate)


def test_regression_values_equal_sklearn_and_lower_errors_are_a_positive_difference() -> None:
    y, a, b = regression_models(2000, seed=22, noise=(1.0, 1.3))
    expected = {
        "rmse": (skm.root_mean_squared_error(y, a), skm.root_mean_squared_error(y, b)),
        "mae": (skm.mean_absolute_error(y, a), skm.mean_absolute_error(y, b)),
        "r2": (skm.r2_score(y, a), skm.r2_score(y, b)),
    }

    for metric, values in expected.items():
        result = compare(metric, y, a, b, task_type="regression", resamples=500, seed=3)

        assert (result.candidate, result.champion) == pytest.approx(values, abs=1e-10)
        sign = 1 if metric == "r2" else -1  # lower rmse and mae are better
        assert result.difference == pytest.approx(sign * (values[0] - values[1]))
        assert 0 < result.ci_low <= result.difference <= result.ci_high, result.summary()
        assert result.positives == result.n == 2000 and result.task_type == "regression"


@pytest.mark.parametrize(
    ("metric", "truth"),
    [
        ("rmse", 1.15 - 1.0),
        ("mae", (1.15 - 1.0) * math.sqrt(2 / math.pi)),
        ("r2", (1.15**2 - 1.0**2) / 4),
    ],
)
def test_the_regression_interval_covers_the_true_difference_about_as_often_as_it_says(metric, truth) -> None:
    reps, covered = 120, 0
    for seed in range(reps):
        y, a, b = regression_models(500, seed=300 + seed, noise=(1.0, 1.15))
        result = compare(metric, y, a, b, task_type="regression", resamples=400, seed=seed)
        covered += result.ci_low <= truth <= result.ci_high
    assert 0.88 <= covered / reps <= 0.99


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "log_loss"])
def test_the_multiclass_interval_covers_a_true_difference_of_zero_about_as_often_as_it_says(metric) -> None:
    # Two exchangeable models (equal noise, partly shared): the true difference is 0.
    reps, covered = 120, 0
    for seed in range(reps):
        y, pa, pb = class_models(600, seed=500 + seed)
        if metric == "log_loss":
            a, b = pa[np.arange(y.size), y], pb[np.arange(y.size), y]
        else:
            a, b = ANIMALS[pa.argmax(axis=1)], ANIMALS[pb.argmax(axis=1)]
        result = compare(metric, ANIMALS[y], a, b, task_type="multiclass", resamples=400, seed=seed)
        covered += result.ci_low <= 0 <= result.ci_high
    assert 0.88 <= covered / reps <= 0.99


def test_a_rare_class_is_insufficient_evidence_for_a_multiclass_gate() -> None:
    labels = np.array(["cat"] * 600 + ["dog"] * 380 + ["eel"] * 20)
    candidate = labels.copy()
    candidate[::7] = "cat"

    result = compare("accuracy", labels, candidate, np.full(labels.size, "cat"), task_type="multiclass")
    decision, reason = decide(result, GateSettings())

    assert result.positives == 20 and result.difference > 0.3
    assert decision == GATE_INSUFFICIENT
    assert reason.startswith(
        "accuracy: insufficient evidence: 1000 labelled row(s), the rarest class with 20 row(s); the gate "
        "needs at least 500 rows and 50 rows of every class (min_samples, min_positives)."
    )
    assert "(rarest class 20 rows)" in result.summary()


def test_regression_evidence_is_rows_only_and_r2_on_constant_labels_decides_nothing() -> None:
    settings = GateSettings()

    assert evidence_shortfall(500, 0, settings, task_type="regression") is None
    assert evidence_shortfall(499, 499, settings, task_type="regression") == (
        "insufficient evidence: 499 labelled row(s); the gate needs at least 500 rows (min_samples). Wait "
        "for more labels or evaluate on a longer window."
    )
    y = np.full(600, 3.0)
    result = compare("r2", y, y + 0.1, y - 0.2, task_type="regression", resamples=50)
    assert math.isnan(result.candidate) and math.isnan(result.ci_low)
    decision, reason = decide(result, settings)
    assert decision == GATE_INSUFFICIENT and "r2 is undefined on these rows (constant labels)" in reason


@pytest.mark.parametrize(
    ("task_type", "ends"),
    [
        ("binary", "n=2000 (157 positives)"),
        ("multiclass", "n=2000 (rarest class 157 rows)"),
        ("regression", "n=2000"),
    ],
)
def test_the_summary_names_the_evidence_of_the_task(task_type, ends) -> None:
    result = Comparison("m", 2000, 157, 0.5, 0.4, 0.1, 0.05, 0.15, 0.95, None, BOOTSTRAP, task_type)

    assert result.summary().endswith(ends)


def test_a_metric_of_another_task_is_refused_naming_the_tasks_metrics() -> None:
    with pytest.raises(
        ValueError,
        match=r"Unknown metric 'roc_auc' for a regression model; use one of \['mae', 'r2', 'rmse'\]",
    ):
        compare("roc_auc", [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], task_type="regression")
    with pytest.raises(ValueError, match="Unknown task type 'ranking'"):
        compare("accuracy", [1], [1], [1], task_type="ranking")


def test_resampled_sums_keep_rows_apart_when_their_base_3_codes_would_not_be_exact() -> None:
    # 40 columns: base-3 codes reach 3**40 > 2**53, where float codes 1 apart collide. The rows differ only
    # in column 0 (code weight 1) and share column 39 (weight 3**39): both kinds must stay distinct.
    stats = np.zeros((1000, 40))
    stats[:, 39] = 1.0
    stats[:300, 0] = 1.0

    sums = resampled_sums(stats, 400, np.random.default_rng(0))

    assert (sums[:, 39] == 1000).all()
    assert (
        sums[:, 0].min() > 240 and sums[:, 0].max() < 360 and sums[:, 0].mean() == pytest.approx(300, abs=3)
    )


# -- false promotions and power, judged against truth -----------------------------------------------------

DAY = dt.date(2026, 3, 1)
ROWS_PER_DAY = 2000  # one held-out day: ~160 positives
PAIRS = 200
CHAMPION_NOISE = 0.75  # true AUC ~0.760
NOISE_CORRELATION = 0.9  # SE of the AUC difference ~0.005 on a 2,000-row day
TOLERANCE = GateSettings().tolerance


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def expected_auc(probability: np.ndarray, scores: np.ndarray) -> float:
    """AUC of ``scores`` in expectation over labels drawn from ``probability`` (no ties in scores)."""
    order = np.argsort(scores)
    pos, neg = probability[order], 1 - probability[order]
    below = np.cumsum(neg) - neg
    return float((pos * below).sum() / (pos.sum() * neg.sum()))


def true_auc_curve() -> tuple[np.ndarray, np.ndarray]:
    """``(noise sizes, true AUC)`` of "true logit + N(0, noise)" models, on a later day's 200k rows."""
    p = churn_probability(
        activity_columns(GeneratorConfig(rows_per_day=200_000, seed=7), DAY + dt.timedelta(60))
    )
    z = np.random.default_rng(7).standard_normal(p.size)
    noises = np.linspace(0.05, 2.0, 40)
    return noises, np.array([expected_auc(p, _logit(p) + s * z) for s in noises])


@pytest.fixture(scope="module")
def true_auc() -> tuple[np.ndarray, np.ndarray]:
    return true_auc_curve()


def noise_for(curve: tuple[np.ndarray, np.ndarray], auc: float) -> float:
    noises, aucs = curve
    assert aucs.min() < auc < aucs.max()
    return float(np.interp(auc, aucs[::-1], noises[::-1]))  # AUC falls as the noise grows


def simulated_comparisons(
    curve: tuple[np.ndarray, np.ndarray],
    true_difference: float,
    *,
    pairs: int = PAIRS,
    rows: int = ROWS_PER_DAY,
    correlation: float = NOISE_CORRELATION,
) -> list[Comparison]:
    """The comparison on ``pairs`` seeded held-out days of a candidate whose true AUC is the champion's
    (~0.760) plus ``true_difference``."""
    champion_auc = float(np.interp(CHAMPION_NOISE, *curve))
    candidate_noise = noise_for(curve, champion_auc + true_difference)
    own_share = math.sqrt(1 - correlation**2)
    comparisons = []
    for pair in range(pairs):
        p = churn_probability(activity_columns(GeneratorConfig(rows_per_day=rows, seed=1000 + pair), DAY))
        rng = np.random.default_rng(pair)
        labels = (rng.random(p.size) < p).astype(int)
        shared, own = rng.standard_normal((2, p.size))
        champion = _logit(p) + CHAMPION_NOISE * shared
        candidate = _logit(p) + candidate_noise * (correlation * shared + own_share * own)
        comparisons.append(compare("roc_auc", labels, candidate, champion))
    return comparisons


def promotion_rate(comparisons: list[Comparison], settings: GateSettings) -> float:
    return sum(decide(c, settings)[0] == GATE_PASS for c in comparisons) / len(comparisons)


def test_a_candidate_truly_worse_by_twice_the_tolerance_is_promoted_at_most_5_percent(true_auc) -> None:
    assert promotion_rate(simulated_comparisons(true_auc, -2 * TOLERANCE), GateSettings()) <= 0.05


def test_with_require_improvement_an_equally_good_candidate_is_promoted_at_most_5_percent(true_auc) -> None:
    comparisons = simulated_comparisons(true_auc, 0.0)
    assert promotion_rate(comparisons, GateSettings(require_improvement=True)) <= 0.05


def test_a_candidate_truly_better_by_0_02_auc_is_promoted_at_least_80_percent(true_auc) -> None:
    comparisons = simulated_comparisons(true_auc, 0.02)
    assert promotion_rate(comparisons, GateSettings()) >= 0.80
    assert promotion_rate(comparisons, GateSettings(require_improvement=True)) >= 0.80
