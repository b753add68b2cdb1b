"""The task types' output contract: what a model of each task must return, and the helpers the gate and
the canary read it with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_provider.ml import tasks


def test_an_unknown_task_type_is_refused_naming_the_known_ones() -> None:
    assert tasks.check_task_type("regression") == "regression"
    with pytest.raises(
        ValueError, match="Unknown task type 'ranking'; use one of binary, multiclass, regression"
    ):
        tasks.check_task_type("ranking")


def test_every_task_has_a_default_primary_metric_among_its_gate_metrics() -> None:
    assert set(tasks.GATE_METRICS) == set(tasks.TASK_TYPES) == set(tasks.DEFAULT_PRIMARY_METRIC)
    for task, metric in tasks.DEFAULT_PRIMARY_METRIC.items():
        assert metric in tasks.GATE_METRICS[task]
    assert tasks.GATE_METRICS["regression"] == {"rmse": False, "mae": False, "r2": True}


@pytest.mark.parametrize(
    ("task", "columns", "missing"),
    [
        ("binary", ["probability", "prediction"], None),
        ("binary", ["prediction"], "probability"),
        ("multiclass", ["prediction", "probability", "probability_a", "probability_b"], None),
        ("multiclass", ["prediction", "probability", "probability_a"], "probability_<class> for every class"),
        ("regression", ["prediction"], None),
        ("regression", ["score"], "prediction"),
    ],
)
def test_the_contract_names_the_missing_columns(task, columns, missing) -> None:
    violation = tasks.contract_violation(task, columns)
    if missing is None:
        assert violation is None
    else:
        assert violation is not None and missing in violation and f"a {task} model" in violation


def test_the_true_class_probability_reads_each_rows_own_class_and_zero_for_an_unseen_one() -> None:
    output = pd.DataFrame({"probability_1": [0.7, 0.2, 0.5], "probability_2": [0.3, 0.8, 0.5]})
    labels = [1, "2", 3]  # 1 and "1" name one class; 3 was never seen
    np.testing.assert_allclose(tasks.true_class_probability(output, labels), [0.7, 0.8, 0.0])
    assert tasks.class_probability_columns(["prediction", "probability_x"]) == {"x": "probability_x"}


def test_classes_are_encoded_over_one_vocabulary_of_their_texts() -> None:
    labels, predicted = tasks.encode_classes([3, "b", 3], ["3", "a", "b"])
    assert labels.tolist() == [0, 2, 0] and predicted.tolist() == [0, 1, 2]


def test_a_plain_regressors_array_becomes_the_prediction_column() -> None:
    frame = tasks.output_frame("regression", np.array([1, 2]), index=[5, 6])
    assert list(frame.columns) == ["prediction"] and frame.index.tolist() == [5, 6]
    assert frame["prediction"].dtype == float
    kept = pd.DataFrame({"prediction": [1.0]})
    assert tasks.output_frame("binary", kept) is kept
    array = np.array([0.1, 0.9])
    assert tasks.output_frame("binary", array) is array  # left for the contract check to refuse
