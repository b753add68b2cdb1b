"""The churn model as MLflow serves it: the logged pyfunc, the input encoding and the torch module."""

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
from mlops_provider.trainer.serving import THRESHOLD, ChurnClassifier, TabularMLP, encode
from tests.trainer.conftest import XDIST_GROUP

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)

SPEC = {
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
    model = ChurnClassifier()
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
