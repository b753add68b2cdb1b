"""Training and evaluation windows over labelled days, and when to retrain.

Labels arrive late, so a model is trained and judged on *labelled snapshot days*. For the newest
labelled day ``S``, with ``W`` training days and ``h`` evaluation days::

    training window    [S - h - W + 1, S - h]    the model learns here (early stopping included)
    evaluation window  [S - h + 1,     S    ]    never trained on: the gate and the canary judge here

Both are bounded, disjoint (evaluation strictly after training, so a model is judged on "the
future"), and a pure function of ``S`` and the two sizes: re-running day ``S`` a month later builds
the same sets. A newer champion's evaluation window is never inside an older one's training window.

After a drift alarm on day ``X``, the training window starts at ``X`` (the concept may have changed;
data from before it teaches the old one), and retraining waits until labels cover ``X`` and the
evaluation window after it. No Airflow here: operators call these functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

RETRAIN_POLICIES = ("drift", "always")


@dataclass(frozen=True, order=True)
class Window:
    """An inclusive range of days."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"a window cannot end ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    @classmethod
    def parse(cls, text: str) -> Window:
        """Read ``YYYY-MM-DD/YYYY-MM-DD`` (as ``str()`` writes it, and as versions are tagged)."""
        try:
            start, end = text.split("/")
            return cls(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
        except ValueError:
            raise ValueError(f"{text!r} is not a window like 2026-01-01/2026-01-14") from None


@dataclass(frozen=True)
class Windows:
    """Where one training run learns and where its model is judged."""

    training: Window
    evaluation: Window


def plan(newest_labelled: dt.date, *, training_days: int, evaluation_days: int) -> Windows:
    """The default windows for the newest labelled day (see the module docstring)."""
    if training_days < 1 or evaluation_days < 1:
        raise ValueError(
            f"training_days and evaluation_days must be at least 1, got {training_days} and {evaluation_days}"
        )
    evaluation = Window(newest_labelled - dt.timedelta(days=evaluation_days - 1), newest_labelled)
    training_end = evaluation.start - dt.timedelta(days=1)
    return Windows(Window(training_end - dt.timedelta(days=training_days - 1), training_end), evaluation)


@dataclass(frozen=True)
class DriftAlarm:
    """Dataset drift found on ``day`` against the reference of model version ``model_version``."""

    day: dt.date
    model_version: str


@dataclass(frozen=True)
class TrainedVersion:
    """A registered version and the windows it was trained and evaluated on (from its tags)."""

    version: str
    training: Window
    evaluation: Window


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to train now, why, and on which windows (``None`` when not training)."""

    train: bool
    reason: str
    windows: Windows | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "train": self.train,
            "reason": self.reason,
            "training_window": str(self.windows.training) if self.windows else None,
            "evaluation_window": str(self.windows.evaluation) if self.windows else None,
            "training_days": [d.isoformat() for d in self.windows.training.days] if self.windows else [],
            "evaluation_days": [d.isoformat() for d in self.windows.evaluation.days] if self.windows else [],
        }


def decide_retrain(
    newest_labelled: dt.date,
    *,
    training_days: int,
    evaluation_days: int,
    champion: str | None,
    alarms: Iterable[DriftAlarm] = (),
    versions: Sequence[TrainedVersion] = (),
    policy: str = "drift",
) -> RetrainDecision:
    """Decide whether newly landed labels should train a challenger.

    - ``always``, or no champion yet: train on the default windows.
    - ``drift``: train once per drift episode of the champion. ``X`` is the earliest alarm raised
      against the current champion; the training window is the default one cut to start at ``X``,
      and training waits until at least one labelled day on or after ``X`` precedes the evaluation
      window. An alarm is handled once a version has been trained on a window starting on or after
      ``X`` for an earlier day (a version trained for this same day is this run's own, re-run).
    """
    if policy not in RETRAIN_POLICIES:
        raise ValueError(f"retrain policy must be one of {', '.join(RETRAIN_POLICIES)}, got {policy!r}")
    default = plan(newest_labelled, training_days=training_days, evaluation_days=evaluation_days)
    if champion is None:
        return RetrainDecision(True, "there is no champion yet: training the first model", default)
    if policy == "always":
        return RetrainDecision(True, "retrain policy 'always': training on every new labelled day", default)
    against = sorted({a.day for a in alarms if str(a.model_version) == str(champion)})
    if not against:
        return RetrainDecision(
            False, f"no drift alarm against the champion (version {champion}); nothing to retrain for"
        )
    shift = against[0]
    handled = [v for v in versions if v.training.start >= shift and v.evaluation.end < default.evaluation.end]
    if handled:
        done = max(handled, key=lambda v: v.evaluation.end)
        return RetrainDecision(
            False,
            f"the drift from {shift} (against version {champion}) was already retrained for: version "
            f"{done.version} trained on {done.training}, evaluated on {done.evaluation}",
        )
    if default.training.end < shift:
        return RetrainDecision(
            False,
            f"drift from {shift} against version {champion}: waiting for labels. The newest labelled day "
            f"is {newest_labelled}; training starts once the labels of {shift} and of "
            f"{evaluation_days} later day(s) have landed",
        )
    windows = Windows(Window(max(default.training.start, shift), default.training.end), default.evaluation)
    return RetrainDecision(
        True,
        f"drift from {shift} against version {champion}, and labels now cover it: training on "
        f"{windows.training} (from the drift on), evaluating on {windows.evaluation}",
        windows,
    )
