"""What the trainer learns besides weights (preprocessing, reference stats) and how it logs the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from mlops_provider.trainer.model import (
    PIP_REQUIREMENTS,
    QUANTILES,
    TOP_CATEGORIES,
    feature_stats,
    fit_preprocessing,
    fit_task,
    input_example,
    label_stats,
    log_model,
)
from mlops_provider.trainer.serving import TabularMLP, encode
from tests.mlflow_helpers import unique_name

TRAIN = pd.DataFrame(
    {
        "plan": ["basic", "premium", "basic", None, "basic", "premium"],
        "spend": [10.0, None, 30.0, 50.0, 10.0, 20.0],
        "constant": [5, 5, 5, 5, 5, 5],
        "trial": [True, False, True, True, False, False],
        "churned": [1, 0, 0, 1, 0, 0],
    }
)


def test_preprocessing_learns_vocabularies_medians_and_scales_from_the_training_split() -> None:
    spec = fit_preprocessing(TRAIN, ["plan"], ["spend", "constant", "trial"], hidden=[8, 4], dropout=0.2)
    assert spec["categorical"] == {"plan": ["basic", "premium"]}  # most frequent first, nulls left out
    spend = spec["numeric"]["spend"]
    filled = pd.Series([10.0, 20.0, 30.0, 50.0, 10.0, 20.0])  # the null takes the median, 20
    assert spend == {
        "fill": 20.0,
        "mean": pytest.approx(filled.mean()),
        "std": pytest.approx(filled.std(ddof=0)),
    }
    assert spec["numeric"]["constant"] == {
        "fill": 5.0,
        "mean": 5.0,
        "std": 1.0,
    }  # no spread: no division by 0
    assert spec["numeric"]["trial"]["fill"] == 0.5
    assert spec["architecture"] == {
        "cardinalities": [2],
        "embedding_dims": [2],
        "n_numeric": 3,
        "hidden": [8, 4],
        "dropout": 0.2,
        "outputs": 1,
    }
    assert spec["task"] == {"type": "binary"}
    wide = pd.DataFrame({"code": [f"c{i}" for i in range(100)]})
    assert fit_preprocessing(wide, ["code"], [], [4], 0.0)["architecture"]["embedding_dims"] == [16]  # capped
    codes, numbers = encode(TRAIN, spec)  # the spec drives serving's encoding
    assert codes[:, 0].tolist() == [1, 2, 1, 0, 1, 2] and numbers.shape == (6, 3)


def test_feature_stats_describe_the_reference_distribution() -> None:
    stats = feature_stats(TRAIN, ["plan"], ["spend", "trial"], "churned")
    assert stats["rows"] == 6 and stats["label_rate"] == pytest.approx(2 / 6)
    spend = stats["features"]["spend"]
    assert spend["type"] == "numeric" and spend["null_fraction"] == pytest.approx(1 / 6)
    assert (spend["min"], spend["max"], spend["mean"]) == (10.0, 50.0, 24.0)
    assert list(spend["quantiles"]) == [str(q) for q in QUANTILES] and spend["quantiles"]["0.5"] == 20.0
    assert stats["features"]["trial"]["mean"] == 0.5
    plan = stats["features"]["plan"]
    assert plan == {
        "type": "categorical",
        "null_fraction": pytest.approx(1 / 6),
        "frequencies": {"basic": 0.6, "premium": 0.4},
        "other_frequency": 0.0,
    }

    many = pd.DataFrame({"code": [f"c{i % 60}" for i in range(600)], "n": [None] * 600, "y": [0, 1] * 300})
    stats = feature_stats(many, ["code"], ["n"], "y")
    assert len(stats["features"]["code"]["frequencies"]) == TOP_CATEGORIES
    assert stats["features"]["code"]["other_frequency"] == pytest.approx(10 / 60)
    assert stats["features"]["n"] == {
        "type": "numeric",
        "null_fraction": 1.0,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "quantiles": {},
    }


def test_the_input_example_keeps_raw_rows_and_dtypes() -> None:
    example = input_example(
        TRAIN.set_index(pd.Index([10, 11, 12, 13, 14, 15])), ["plan", "spend", "trial"], rows=3
    )
    assert list(example.index) == [0, 1, 2] and list(example.columns) == ["plan", "spend", "trial"]
    assert example.dtypes.to_dict() == TRAIN[["plan", "spend", "trial"]].dtypes.to_dict()


def test_pip_requirements_pin_what_the_model_runs_on() -> None:
    assert [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ] == PIP_REQUIREMENTS


def test_a_logged_model_loads_back_and_predicts_like_the_trained_network(mlflow_server: Any) -> None:
    torch.manual_seed(0)
    spec = fit_preprocessing(TRAIN, ["plan"], ["spend", "trial"], hidden=[4], dropout=0.0)
    network = TabularMLP(**spec["architecture"])
    example = input_example(TRAIN, ["plan", "spend", "trial"])
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    mlflow.set_experiment(unique_name("log-model"))
    with mlflow.start_run():
        info = log_model(network, spec, example)

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.metadata.signature.inputs.input_names() == ["plan", "spend", "trial"]
    assert [o.name for o in loaded.metadata.signature.outputs.inputs] == ["probability", "prediction"]
    predicted = loaded.predict(example)
    codes, numbers = encode(example, spec)
    with torch.inference_mode():
        expected = torch.sigmoid(network.eval()(codes, numbers)).numpy()
    assert predicted["probability"].to_numpy() == pytest.approx(expected, abs=1e-6)
    requirements = Path(mlflow.pyfunc.get_model_dependencies(info.model_uri))
    assert set(PIP_REQUIREMENTS) <= set(requirements.read_text().split())


def test_the_task_spec_holds_the_classes_or_the_targets_scale() -> None:
    assert fit_task(TRAIN["churned"]) == {"type": "binary"}
    classes = fit_task(pd.Series(["b", "a", "c"]), "multiclass", ("a", "b", "c"))
    assert classes == {"type": "multiclass", "classes": ["a", "b", "c"]}
    spec = fit_preprocessing(TRAIN, ["plan"], ["spend"], hidden=[4], dropout=0.0, task=classes)
    assert spec["task"] == classes and spec["architecture"]["outputs"] == 3  # one logit per class
    target = pd.Series([1.0, 3.0, 5.0, 7.0])
    assert fit_task(target, "regression") == {"type": "regression", "mean": 4.0, "std": pytest.approx(5**0.5)}
    assert fit_task(pd.Series([2.0, 2.0]), "regression")["std"] == 1.0  # no spread: no division by 0
    assert (
        fit_preprocessing(TRAIN, [], ["spend"], [4], 0.0, fit_task(target, "regression"))["architecture"][
            "outputs"
        ]
        == 1
    )


def test_the_reference_stats_describe_the_label_by_task() -> None:
    assert label_stats(pd.Series([1, 0, 0, 1]), "binary") == {"label_rate": 0.5}
    assert label_stats(pd.Series(["b", "a", "b", "b"]), "multiclass") == {
        "label_frequencies": {"a": 0.25, "b": 0.75}
    }
    assert label_stats(pd.Series([3, 1, 2]), "multiclass") == {
        "label_frequencies": {"1": pytest.approx(1 / 3), "2": pytest.approx(1 / 3), "3": pytest.approx(1 / 3)}
    }
    assert label_stats(pd.Series([1.0, 3.0]), "regression") == {"label_mean": 2.0, "label_std": 1.0}
    frame = TRAIN.assign(level=["x", "y", "x", "x", "z", "y"])
    stats = feature_stats(frame, ["plan"], ["spend"], "level", "multiclass")
    assert "label_rate" not in stats and set(stats["label_frequencies"]) == {"x", "y", "z"}
