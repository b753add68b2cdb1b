"""The demo tells the same true story whatever today's date is.

The generator seeds each day by its offset from the story's first day, so the data are the same
numbers on any date; this runs the story's decisions (the windows, the reference trainer, the gate's
statistics) for three "today" dates far apart and checks they agree, and that the story is true: the
challenger retrained on the shifted day beats the champion on the held-out day, with an interval
above zero, and against the generator's own churn probabilities too. The Airflow side of the same
story runs once, under the real scheduler, in test_demo_flow.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from tools.demo import HISTORY, LABEL_DELAY, demo_days, generator_config

from mlops_provider.example_data.generator import activity_columns, churn_probability
from mlops_provider.ml.stats import GateSettings, compare, decide
from mlops_provider.ml.windows import DriftAlarm, decide_retrain
from tests.bench.bench_concept_shift import expected_auc, labelled_days, train

pytestmark = pytest.mark.xdist_group("trainer")

ROWS = 2000
TODAYS = (dt.date(2026, 11, 29), dt.date(2031, 2, 14), dt.date(2024, 7, 1))


def story(today: dt.date) -> dict:
    days = demo_days(today)
    cfg = generator_config(days, ROWS)
    # The first model: the newest labelled day when history ends is days[1]; no champion yet.
    first = decide_retrain(days[1], training_days=28, evaluation_days=1, champion=None)
    assert first.windows is not None
    champion = train(labelled_days(cfg, first.windows.training.end, 1))
    # The drift alarms on the arriving days; labels of the newest arriving day land last.
    alarms = [DriftAlarm(day, "1") for day in days[HISTORY:]]
    newest = days[-1] - dt.timedelta(days=LABEL_DELAY)
    retrain = decide_retrain(newest, training_days=28, evaluation_days=1, champion="1", alarms=alarms)
    assert retrain.train and retrain.windows is not None, retrain.reason
    challenger = train(labelled_days(cfg, retrain.windows.training.start, len(retrain.windows.training.days)))
    held_out = labelled_days(cfg, retrain.windows.evaluation.start, 1)
    features = held_out.drop(columns=["customer_id", "event_timestamp", "churned"])
    comparison = compare("roc_auc", held_out["churned"], challenger(features), champion(features))
    decision, _ = decide(comparison, GateSettings())
    truth = churn_probability(activity_columns(cfg, newest), shift=cfg.shift_on(newest))
    return {
        "windows": (
            [(d - days[0]).days for d in first.windows.evaluation.days],
            [(d - days[0]).days for d in retrain.windows.training.days],
            [(d - days[0]).days for d in retrain.windows.evaluation.days],
        ),
        "decision": decision,
        "difference": round(comparison.difference, 10),
        "ci": (round(comparison.ci_low, 10), round(comparison.ci_high, 10)),
        "n": (comparison.n, comparison.positives),
        "true_gain": expected_auc(truth, challenger(features)) - expected_auc(truth, champion(features)),
    }


def test_the_demo_story_is_the_same_and_true_on_any_date():
    stories = [story(today) for today in TODAYS]
    first = stories[0]
    for other in stories[1:]:
        assert other == first
    # Windows by day offset: v1 judged on day 1; v2 trained on the first shifted day, judged on the next.
    assert first["windows"] == ([1], [HISTORY], [HISTORY + 1])
    assert first["decision"] == "pass"
    assert first["difference"] > 0.02 and first["ci"][0] > 0, first
    assert first["true_gain"] > 0.02, first  # against the generator's own probabilities
