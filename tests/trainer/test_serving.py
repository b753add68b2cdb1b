"""The reference trainer's model as MLflow serves it: the logged pyfunc, the encoding and the torch module."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from mlops_provider.trainer import serving
from mlops_provider.trainer.serving import THRESHOLD, TabularMLP, TabularModel, encode
from tests.trainer.conftest import XDIST_GROUP

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)

SPEC: dict[str, Any] = {
    "categorical": {"plan": ["basic", "premium"], "country": ["DE", "FR", "US"]},
    "numeric": {
        "spend": {"fill": 10.0, "mean": 20.0, "std": 5.0},
        "trial": {"fill": 0.0, "mean": 0.5, "std": 0.5},
    },
    "architecture": {
        "cardinalities": [2, 3],
        "embedding_dims": [2, 2],
        "n_numeric": 2,
        "hidden": [4],
        "dropout": 0.0,
    },
}


def test_model_loads_and_predicts_probabilities(
    trained: dict[str, Any], training_set: Path, mlflow_server: Any
) -> None:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    model = mlflow.pyfunc.load_model(trained["xcom"]["model_uri"])
    assert model.metadata.signature is not None
    raw = pd.read_parquet(training_set).drop(columns=["customer_id", "event_timestamp", "churned"]).head(50)
    predicted = model.predict(raw)
    assert list(predicted.columns) == ["probability", "prediction"]
    assert predicted["probability"].between(0, 1).all()
    assert (predicted["prediction"] == (predicted["probability"] >= 0.5).astype(int)).all()
    unseen = raw.head(2).assign(country="ZZ")  # an unseen category maps to "unknown", not an error
    assert model.predict(unseen)["probability"].notna().all()


def test_encode_maps_unknown_and_null_categories_to_zero_and_imputes_numbers() -> None:
    frame = pd.DataFrame(
        {
            "country": ["FR", "ZZ", None],
            "plan": ["premium", "basic", "basic"],
            "spend": [30.0, None, 20.0],
            "trial": [True, False, None],
            "unused": [1, 2, 3],
        }
    )
    codes, numbers = encode(frame, SPEC)
    # Columns in the spec's order (plan, country), codes 1-based in vocabulary order, 0 = unknown.
    assert codes.dtype == torch.int64 and codes.tolist() == [[2, 2], [1, 0], [1, 0]]
    assert numbers.dtype == torch.float32
    assert numbers[:, 0].tolist() == pytest.approx([2.0, -2.0, 0.0])  # (30-20)/5, fill 10 -> -2, 0
    assert numbers[:, 1].tolist() == pytest.approx([1.0, -1.0, -1.0])  # booleans as 1/0, null -> fill 0
    with pytest.raises(ValueError, match=r"input is missing feature columns \['spend'\]"):
        encode(frame.drop(columns=["spend"]), SPEC)


def test_the_network_scores_one_logit_per_row() -> None:
    torch.manual_seed(0)
    network = TabularMLP(**SPEC["architecture"]).eval()
    assert [e.num_embeddings for e in network.embeddings] == [3, 4]  # one extra row: the unknown code
    codes, numbers = encode(
        pd.DataFrame(
            {"plan": ["basic"] * 5, "country": ["US"] * 5, "spend": np.arange(5.0), "trial": [0] * 5}
        ),
        SPEC,
    )
    logits = network(codes, numbers)
    assert logits.shape == (5,) and torch.isfinite(logits).all()


def test_the_pyfunc_loads_its_artifacts_and_predicts_probability_and_class(tmp_path: Path) -> None:
    torch.manual_seed(1)
    network = TabularMLP(**SPEC["architecture"])
    torch.save(network.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "preprocessing.json").write_text(json.dumps(SPEC))
    context = SimpleNamespace(
        artifacts={
            "weights": str(tmp_path / "weights.pt"),
            "preprocessing": str(tmp_path / "preprocessing.json"),
        }
    )
    model = TabularModel()
    model.load_context(context)
    assert not model.model.training
    rows = pd.DataFrame(
        {
            "plan": ["basic", "premium", "gold"],
            "country": ["US", "DE", "XX"],
            "spend": [1.0, 50.0, None],
            "trial": [1, 0, 1],
        },
        index=[7, 8, 9],
    )
    predicted = model.predict(None, rows)
    assert list(predicted.index) == [7, 8, 9] and list(predicted.columns) == ["probability", "prediction"]
    codes, numbers = encode(rows, SPEC)
    with torch.inference_mode():
        expected = torch.sigmoid(network.eval()(codes, numbers)).numpy()
    assert predicted["probability"].to_numpy() == pytest.approx(expected)
    assert (predicted["prediction"] == (predicted["probability"] >= THRESHOLD).astype(int)).all()


def test_serving_is_self_contained_for_model_from_code() -> None:
    """MLflow logs serving.py alone: it may import torch, numpy, pandas and mlflow, never the provider."""
    tree = ast.parse(Path(serving.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "json", "typing", "mlflow", "numpy", "pandas", "torch"}


def test_serving_repeats_the_task_names_of_ml_tasks() -> None:
    """serving.py may not import the provider, so it copies these names; they must stay the same."""
    from mlops_provider.ml import tasks

    assert (serving.BINARY, serving.MULTICLASS, serving.REGRESSION) == tasks.TASK_TYPES
    assert (serving.PROBABILITY, serving.PREDICTION) == (tasks.PROBABILITY, tasks.PREDICTION)
    assert serving.CLASS_PROBABILITY_PREFIX == tasks.CLASS_PROBABILITY_PREFIX


def _pyfunc(spec: dict[str, Any], tmp_path: Path) -> tuple[TabularModel, TabularMLP]:
    torch.manual_seed(2)
    network = TabularMLP(**spec["architecture"])
    torch.save(network.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "preprocessing.json").write_text(json.dumps(spec))
    model = TabularModel()
    model.load_context(
        SimpleNamespace(
            artifacts={
                "weights": str(tmp_path / "weights.pt"),
                "preprocessing": str(tmp_path / "preprocessing.json"),
            }
        )
    )
    return model, network.eval()


ROWS = pd.DataFrame(
    {
        "plan": ["basic", "premium", "gold"],
        "country": ["US", "DE", "XX"],
        "spend": [1.0, 50.0, None],
        "trial": [1, 0, 1],
    },
    index=[7, 8, 9],
)


@pytest.mark.parametrize(
    ("classes", "dtype"), [([1, 10, 2], np.int64), (["high", "low", "mid"], object)], ids=["ints", "strings"]
)
def test_a_multiclass_pyfunc_returns_the_class_its_probability_and_one_column_per_class(
    tmp_path: Path, classes: list[Any], dtype: type
) -> None:
    from mlops_provider.ml.tasks import contract_violation

    spec = {
        **SPEC,
        "task": {"type": "multiclass", "classes": classes},
        "architecture": {**SPEC["architecture"], "outputs": 3},
    }
    model, network = _pyfunc(spec, tmp_path)

    predicted = model.predict(None, ROWS)

    assert contract_violation("multiclass", predicted.columns) is None
    per_class = [f"probability_{c}" for c in classes]
    assert list(predicted.columns) == ["prediction", "probability", *per_class]
    assert list(predicted.index) == [7, 8, 9] and predicted["prediction"].dtype == dtype
    with torch.inference_mode():
        expected = torch.softmax(network(*encode(ROWS, spec)), dim=1).numpy()
    assert predicted[per_class].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert predicted[per_class].sum(axis=1).to_numpy() == pytest.approx(np.ones(3))
    best = expected.argmax(axis=1)
    assert predicted["prediction"].tolist() == [classes[i] for i in best]
    assert predicted["probability"].to_numpy() == pytest.approx(expected.max(axis=1), abs=1e-6)


def test_a_regression_pyfunc_returns_the_prediction_on_the_labels_scale(tmp_path: Path) -> None:
    from mlops_provider.ml.tasks import contract_violation

    spec = {**SPEC, "task": {"type": "regression", "mean": 100.0, "std": 20.0}}
    model, network = _pyfunc(spec, tmp_path)

    predicted = model.predict(None, ROWS)

    assert list(predicted.columns) == ["prediction"] and predicted["prediction"].dtype == np.float64
    assert contract_violation("regression", predicted.columns) is None
    with torch.inference_mode():
        standardised = network(*encode(ROWS, spec)).numpy()
    assert predicted["prediction"].to_numpy() == pytest.approx(standardised * 20.0 + 100.0, rel=1e-6)
