"""The evaluation gate's false-promotion rate, power and cost (mlops_provider.ml.stats).

Run: ``python -m tests.bench bench_gate`` from the repository root. The simulation is the one of
tests/ml/test_stats.py at a larger scale: held-out days from the example-data generator, models that are
the true churn logit plus Gaussian noise (candidate's noise correlated with the champion's), true AUCs
measured against the true probabilities of 200,000 rows of a later day. Then the power that matters
most: the gate's, at the size of the demo's concept shift, with the real champion and challenger of
tests/bench/bench_concept_shift.py on seeded held-out post-shift days.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time

import numpy as np
import pandas as pd

from mlops_provider.example_data.generator import activity_columns, labels_table
from mlops_provider.ml.stats import Comparison, GateSettings, compare
from tests.bench import bench_concept_shift as story
from tests.bench.common import markdown_report
from tests.ml.test_stats import promotion_rate, simulated_comparisons, true_auc_curve

PAIRS = 200
DIFFERENCES = (-0.01, -0.005, 0.0, 0.005, 0.01, 0.02)
CORRELATIONS = (0.9, 0.8)
OLD_RULE_CHANGE = 0.0001  # the previous gate: MetricThreshold(min_absolute_change=0.0001) on point values
COST_ROWS = (2_000, 100_000)
COST_REPEATS = 5


def _row(difference: float, comparisons: list[Comparison]) -> str:
    """One table line: the true difference, the mean SE and positives, and the three promotion rates."""
    old = sum(c.difference >= OLD_RULE_CHANGE for c in comparisons) / len(comparisons)
    lenient = promotion_rate(comparisons, GateSettings())
    strict = promotion_rate(comparisons, GateSettings(require_improvement=True))
    se = statistics.mean((c.ci_high - c.ci_low) / (2 * 1.96) for c in comparisons)
    positives = statistics.mean(c.positives for c in comparisons)
    truly = "worse" if difference < 0 else "better" if difference > 0 else "equal"
    return (
        f"| {difference:+.3f} ({truly}) | {se:.4f} | {positives:.0f} | {old:.1%} | {lenient:.1%} "
        f"| {strict:.1%} |"
    )


def _rates(curve: tuple[np.ndarray, np.ndarray], correlation: float) -> list[str]:
    return [
        _row(difference, simulated_comparisons(curve, difference, pairs=PAIRS, correlation=correlation))
        for difference in DIFFERENCES
    ]


def _demo_power() -> tuple[story.Story, str]:
    """The gate on ``PAIRS`` seeded held-out post-shift days (2,000 rows, labels from the generator),
    judging the demo's real challenger against its real champion; the true gain from 100k rows."""
    champion, challenger = story.train_champion(), story.train_challenger(story.DEMO)
    truth = story.measure(story.DEMO, champion, challenger)
    comparisons = []
    for pair in range(PAIRS):
        cfg = story.config(story.SCENARIOS[story.DEMO], seed=1000 + pair)
        day = story.EVALUATION_DAY
        features = pd.DataFrame(activity_columns(cfg, day))
        labels = labels_table(cfg, day + dt.timedelta(days=cfg.label_delay_days))
        churned = labels["churned"].to_numpy()
        comparisons.append(compare("roc_auc", churned, challenger(features), champion(features)))
    return truth, _row(truth.gain, comparisons)


def _median_seconds(step) -> float:
    times = []
    for _ in range(COST_REPEATS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _costs() -> list[str]:
    lines = []
    for rows in COST_ROWS:
        rng = np.random.default_rng(rows)
        x = rng.standard_normal(rows)
        y = (rng.random(rows) < 1 / (1 + np.exp(-(-2.5 + 1.2 * x)))).astype(int)
        a, b = x + 0.5 * rng.standard_normal(rows), x + 0.7 * rng.standard_normal(rows)
        pa, pb = 1 / (1 + np.exp(-(-2.5 + 1.2 * a))), 1 / (1 + np.exp(-(-2.5 + 1.2 * b)))
        steps = {
            "roc_auc (DeLong)": lambda y=y, a=a, b=b: compare("roc_auc", y, a, b),
            "log_loss (paired bootstrap, 1000 resamples)": lambda y=y, a=pa, b=pb: compare(
                "log_loss", y, a, b
            ),
            "f1 (paired bootstrap, 1000 resamples)": lambda y=y, a=pa, b=pb: compare(
                "f1", y, (a >= 0.3).astype(int), (b >= 0.3).astype(int)
            ),
        }
        for name, step in steps.items():
            step()  # warm up
            lines.append(f"| {rows:,} | {name} | {_median_seconds(step) * 1000:.0f} |")
    return lines


def main() -> None:
    report = markdown_report()
    started = time.perf_counter()
    curve = true_auc_curve()
    champion_auc = float(np.interp(0.75, *curve))
    print("### False promotions and power (the default gate: tolerance 0.005 AUC, 95 % CI)\n", file=report)
    print(
        f"{PAIRS} seeded held-out days of 2,000 rows per line; the champion's true AUC is "
        f"{champion_auc:.3f}, the candidate's differs by the first column (true AUCs measured against "
        "the true churn probabilities of 200,000 rows of a later day). *SE* is the mean standard error "
        "of the AUC difference (DeLong). Shares are of candidates promoted: by the previous rule (point "
        f"difference >= {OLD_RULE_CHANGE}), by the non-inferiority gate (default) and with "
        "`require_improvement=True`.\n",
        file=report,
    )
    for correlation in CORRELATIONS:
        print(f"Noise correlation between candidate and champion: {correlation}\n", file=report)
        print(
            "| true AUC difference | SE | positives | previous rule | non-inferior (default) "
            "| require_improvement |",
            file=report,
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |", file=report)
        for line in _rates(curve, correlation):
            print(line, file=report)
        print("", file=report)
    truth, demo_row = _demo_power()
    print("### Power at the demo's concept shift\n", file=report)
    print(
        f"The demo's champion and challenger (bench_concept_shift: true AUC {truth.champion:.3f} and "
        f"{truth.challenger:.3f} after the shift, a true gain of {truth.gain:+.3f}) judged by the gate on "
        f"{PAIRS} seeded held-out post-shift days of {story.ROWS_PER_DAY:,} rows, labels drawn by the "
        "generator. Real models rather than the noise model above, where no candidate can beat the "
        f"champion ({champion_auc:.3f}) by more than {curve[1].max() - champion_auc:.3f} (the ceiling).\n",
        file=report,
    )
    print(
        "| true AUC difference | SE | positives | previous rule | non-inferior (default) "
        "| require_improvement |",
        file=report,
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |", file=report)
    print(demo_row + "\n", file=report)
    print(f"_Simulation: {time.perf_counter() - started:.0f} s._\n", file=report)
    print(f"### Cost of the comparison (median of {COST_REPEATS}, one core)\n", file=report)
    load = os.getloadavg()[0]
    print(
        f"Load average when timed: {load:.1f} on {os.cpu_count()} cores (CI jobs share them).\n", file=report
    )
    print("| held-out rows | metric (method) | ms |", file=report)
    print("| ---: | --- | ---: |", file=report)
    for line in _costs():
        print(line, file=report)


if __name__ == "__main__":
    main()
