"""A small point-in-time training set from the example generator, joined with pandas like Feast would."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

START_DAY = dt.date(2026, 1, 1)


def build_training_set(
    directory: Path, *, days: int = 6, rows_per_day: int = 500, null_labels: int = 0, null_features: int = 0
) -> Path:
    """Write ``training_set.parquet``: activity snapshots joined with the labels that landed later.

    Labels arrive two days after their snapshot, so ``days`` days of data give ``days - 2`` labelled
    snapshots (``(days - 2) * rows_per_day`` rows). Optionally blank some labels and features.
    """
    import numpy as np
    import pandas as pd

    from mlops_provider.example_data.generator import GeneratorConfig, activity_table, labels_table

    cfg = GeneratorConfig(rows_per_day=rows_per_day)
    day_list = [START_DAY + dt.timedelta(days=i) for i in range(days)]
    activity = pd.concat(activity_table(cfg, day).to_pandas() for day in day_list)
    labels = pd.concat(labels_table(cfg, day).to_pandas() for day in day_list)
    frame = activity.merge(
        labels[["customer_id", "event_timestamp", "churned"]], on=["customer_id", "event_timestamp"]
    )
    frame = frame.sort_values(["event_timestamp", "customer_id"]).reset_index(drop=True)
    rng = np.random.default_rng(7)
    if null_labels:
        frame["churned"] = frame["churned"].astype("Int64")
        frame.loc[rng.choice(len(frame), null_labels, replace=False), "churned"] = pd.NA
    if null_features:
        frame["spend_30d"] = frame["spend_30d"].astype("float64")
        frame.loc[rng.choice(len(frame), null_features, replace=False), "spend_30d"] = np.nan
        frame.loc[rng.choice(len(frame), null_features, replace=False), "plan"] = None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "training_set.parquet"
    frame.to_parquet(path, index=False)
    return path
