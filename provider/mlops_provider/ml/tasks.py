"""Task types and the output contract of a model: what ``pyfunc.predict(features)`` returns for each.

- ``binary``: ``probability`` (P(label = 1)) and ``prediction`` (0/1).
- ``multiclass``: ``prediction`` (the class, as the label's values), ``probability`` (the predicted
  class's probability) and one ``probability_<class>`` column per class seen in training (they sum to 1).
- ``regression``: ``prediction`` (a number).

The gate and the canary judge each task with its own metrics (:data:`GATE_METRICS`); nothing here
imports Airflow, MLflow or pandas at module level.
"""

from __future__ import annotations

from typing import Any

BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
TASK_TYPES = (BINARY, MULTICLASS, REGRESSION)
PROBABILITY, PREDICTION = "probability", "prediction"
CLASS_PROBABILITY_PREFIX = "probability_"

# task -> metric -> greater_is_better
GATE_METRICS: dict[str, dict[str, bool]] = {
    BINARY: {
        "roc_auc": True,
        "log_loss": False,
        "accuracy": True,
        "f1": True,
        "precision": True,
        "recall": True,
    },
    MULTICLASS: {"accuracy": True, "macro_f1": True, "log_loss": False},
    REGRESSION: {"rmse": False, "mae": False, "r2": True},
}
DEFAULT_PRIMARY_METRIC = {BINARY: "roc_auc", MULTICLASS: "log_loss", REGRESSION: "rmse"}


def check_task_type(task_type: Any) -> str:
    """``task_type`` itself when it is one of :data:`TASK_TYPES`; else a ValueError naming them."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"Unknown task type {task_type!r}; use one of {', '.join(TASK_TYPES)}.")
    return str(task_type)


def required_columns(task_type: str) -> tuple[str, ...]:
    """The output columns every model of ``task_type`` returns (multiclass adds one per class)."""
    return (PREDICTION,) if task_type == REGRESSION else (PROBABILITY, PREDICTION)


def class_probability_columns(columns: Any) -> dict[str, str]:
    """``{class (as text): column}`` of a multiclass output's ``probability_<class>`` columns."""
    return {
        str(c)[len(CLASS_PROBABILITY_PREFIX) :]: str(c)
        for c in columns
        if str(c).startswith(CLASS_PROBABILITY_PREFIX)
    }


def contract_violation(task_type: str, columns: Any) -> str | None:
    """Why an output with ``columns`` breaks the contract of ``task_type``, or None when it keeps it."""
    present = {str(c) for c in columns}
    missing = [c for c in required_columns(task_type) if c not in present]
    if task_type == MULTICLASS and len(class_probability_columns(present)) < 2:
        missing.append(f"{CLASS_PROBABILITY_PREFIX}<class> for every class (at least two)")
    if not missing:
        return None
    return (
        f"a {task_type} model's predict() must return a DataFrame with column(s) {', '.join(missing)}; "
        f"it returned {sorted(present)}"
    )


def true_class_probability(output: Any, labels: Any) -> Any:
    """P(the row's true class) from a multiclass output: the input of multiclass log loss.

    A class the model never saw gets probability 0 (clipped by the log loss), so it counts against it.
    """
    import numpy as np

    columns = class_probability_columns(output.columns)
    probabilities = np.zeros(len(labels))
    texts = np.asarray([str(v) for v in labels], dtype=object)
    for label, column in columns.items():
        rows = texts == label
        probabilities[rows] = np.asarray(output[column], dtype=float)[rows]
    return probabilities


def encode_classes(labels: Any, *predictions: Any) -> tuple[Any, ...]:
    """Labels and predictions as integer codes over one shared, sorted vocabulary of their texts, so
    ``3`` and ``"3"`` are the same class; returns ``(label codes, prediction codes...)``."""
    import numpy as np

    texts = [np.asarray([str(v) for v in values], dtype=object) for values in (labels, *predictions)]
    vocabulary = np.unique(np.concatenate(texts)) if texts else np.array([], dtype=object)
    return tuple(np.searchsorted(vocabulary, t).astype(np.int64) for t in texts)


def output_frame(task_type: str, output: Any, index: Any = None) -> Any:
    """A model's output as the contract's DataFrame.

    A plain scikit-learn or XGBoost pyfunc returns a 1-D array of predictions: for ``regression`` that
    is the ``prediction`` column, so such models need no wrapper. Anything else is returned as it is,
    for :func:`contract_violation` to judge.
    """
    import numpy as np
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        return output
    values = np.asarray(output)
    if task_type == REGRESSION and values.ndim == 1:
        return pd.DataFrame({PREDICTION: values.astype(float)}, index=index)
    return output
