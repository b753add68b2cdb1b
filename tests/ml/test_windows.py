"""Training and evaluation windows: bounded, disjoint, reproducible; and when drift retrains."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops_provider.ml.windows import DriftAlarm, TrainedVersion, Window, decide_retrain, plan

D = dt.date(2026, 3, 20)


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


def test_the_evaluation_window_is_the_newest_days_and_the_training_window_the_days_before():
    windows = plan(D, training_days=28, evaluation_days=2)
    assert windows.evaluation == Window(day(-1), D)
    assert windows.training == Window(day(-29), day(-2))
    assert len(windows.training.days) == 28
    assert not set(windows.training.days) & set(windows.evaluation.days)
    assert max(windows.training.days) < min(windows.evaluation.days)  # judged on "the future"


def test_windows_depend_only_on_the_day_so_a_rerun_builds_the_same_sets():
    assert plan(D, training_days=7, evaluation_days=1) == plan(D, training_days=7, evaluation_days=1)


@pytest.mark.parametrize(("training", "evaluation"), [(0, 1), (3, 0), (-1, 2)])
def test_empty_windows_are_refused(training, evaluation):
    with pytest.raises(ValueError, match="at least 1"):
        plan(D, training_days=training, evaluation_days=evaluation)


def test_a_window_round_trips_through_its_tag_text():
    window = Window(day(-3), D)
    assert str(window) == "2026-03-17/2026-03-20"
    assert Window.parse(str(window)) == window
    with pytest.raises(ValueError, match="not a window"):
        Window.parse("2026-03-17")


def test_without_a_champion_the_first_model_is_trained_on_the_default_windows():
    decision = decide_retrain(D, training_days=5, evaluation_days=1, champion=None)
    assert decision.train and decision.windows == plan(D, training_days=5, evaluation_days=1)


def test_with_a_champion_and_no_drift_nothing_is_retrained():
    decision = decide_retrain(D, training_days=5, evaluation_days=1, champion="3")
    assert not decision.train and "no drift alarm against the champion (version 3)" in decision.reason


def test_alarms_against_an_older_champion_do_not_count():
    alarms = [DriftAlarm(day(-5), "2")]
    decision = decide_retrain(D, training_days=5, evaluation_days=1, champion="3", alarms=alarms)
    assert not decision.train


def test_a_drift_alarm_waits_until_labels_cover_it_and_a_later_day_can_judge():
    alarms = [DriftAlarm(day(0), "3"), DriftAlarm(day(1), "3")]
    waiting = decide_retrain(D, training_days=5, evaluation_days=1, champion="3", alarms=alarms)
    assert not waiting.train and "waiting for labels" in waiting.reason
    # One labelled shifted day to train on, the next one to judge on.
    due = decide_retrain(day(1), training_days=5, evaluation_days=1, champion="3", alarms=alarms)
    assert due.train
    assert due.windows is not None
    assert due.windows.training == Window(D, D)  # cut at the drift: older days teach the old relation
    assert due.windows.evaluation == Window(day(1), day(1))


def test_once_retrained_for_a_drift_it_is_not_retrained_again_but_a_rerun_of_that_day_still_trains():
    alarms = [DriftAlarm(D, "3")]
    retrained = TrainedVersion("4", Window(D, D), Window(day(1), day(1)))
    later = decide_retrain(
        day(4), training_days=5, evaluation_days=1, champion="3", alarms=alarms, versions=[retrained]
    )
    assert not later.train and "already retrained for: version 4" in later.reason
    # The run that trained version 4, re-run: its own version does not count as "done before".
    rerun = decide_retrain(
        day(1), training_days=5, evaluation_days=1, champion="3", alarms=alarms, versions=[retrained]
    )
    assert rerun.train


def test_policy_always_trains_on_every_day_and_unknown_policies_are_refused():
    assert decide_retrain(D, training_days=5, evaluation_days=1, champion="3", policy="always").train
    with pytest.raises(ValueError, match="retrain policy"):
        decide_retrain(D, training_days=5, evaluation_days=1, champion="3", policy="weekly")


def test_as_dict_lists_the_days():
    decision = decide_retrain(D, training_days=2, evaluation_days=1, champion=None)
    assert decision.as_dict() == {
        "train": True,
        "reason": decision.reason,
        "training_window": "2026-03-18/2026-03-19",
        "evaluation_window": "2026-03-20/2026-03-20",
        "training_days": ["2026-03-18", "2026-03-19"],
        "evaluation_days": ["2026-03-20"],
    }
