"""What the trainer learns from the training split besides weights, and how it logs the model."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

from mlops_provider.ml.tasks import BINARY, MULTICLASS, REGRESSION
from mlops_provider.trainer import serving

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
TOP_CATEGORIES = 50  # keeps feature_stats.json small for high-cardinality columns
PIP_REQUIREMENTS = [
    f"torch=={torch.__version__.split('+')[0]}",
    f"mlflow=={mlflow.__version__}",
    f"pandas=={pd.__version__}",
    f"numpy=={np.__version__}",
]


def fit_task(labels: pd.Series, task_type: str = BINARY, classes: tuple[Any, ...] = ()) -> dict[str, Any]:
    """The spec's ``task``, which serving reads: the type, plus the classes (multiclass, as the label's
    values, in output order) or the mean and std of the training split's label (regression)."""
    if task_type == MULTICLASS:
        return {"type": task_type, "classes": list(classes)}
    if task_type == REGRESSION:
        values = labels.astype("float64")
        std = float(values.std(ddof=0))
        return {"type": task_type, "mean": float(values.mean()), "std": std if std > 0 else 1.0}
    return {"type": task_type}


def fit_preprocessing(
    train: pd.DataFrame,
    categorical: list[str],
    numeric: list[str],
    hidden: list[int],
    dropout: float,
    task: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Learn vocabularies (most frequent first) and median/mean/std from the training split only.

    :param task: :func:`fit_task`'s result (binary when None); multiclass sets one output per class.
    """
    task = task or {"type": BINARY}
    vocabularies = {c: [str(v) for v in train[c].value_counts().index] for c in categorical}
    scales = {}
    for column in numeric:
        values = pd.to_numeric(train[column], errors="coerce").astype("float64")
        fill = float(values.median()) if values.notna().any() else 0.0
        filled = values.fillna(fill)
        std = float(filled.std(ddof=0))
        scales[column] = {"fill": fill, "mean": float(filled.mean()), "std": std if std > 0 else 1.0}
    cardinalities = [len(v) for v in vocabularies.values()]
    return {
        "categorical": vocabularies,
        "numeric": scales,
        "task": task,
        "architecture": {
            "cardinalities": cardinalities,
            # The fast.ai rule of thumb, capped small: these are low-cardinality business codes.
            "embedding_dims": [min(16, (size + 2) // 2) for size in cardinalities],
            "n_numeric": len(numeric),
            "hidden": hidden,
            "dropout": dropout,
            "outputs": len(task["classes"]) if task["type"] == MULTICLASS else 1,
        },
    }


def feature_stats(
    train: pd.DataFrame, categorical: list[str], numeric: list[str], label: str, task_type: str = BINARY
) -> dict[str, Any]:
    """Reference distribution of the training split for drift detection: quantiles and frequencies.

    The label's by task: ``label_rate`` (binary), ``label_frequencies`` per class (multiclass, class
    as text), ``label_mean`` and ``label_std`` (regression).
    """
    stats: dict[str, Any] = {"rows": len(train), **label_stats(train[label], task_type), "features": {}}
    for column in numeric:
        values = pd.to_numeric(train[column], errors="coerce").astype("float64")
        present = values.dropna()
        stats["features"][column] = {
            "type": "numeric",
            "null_fraction": float(values.isna().mean()),
            "mean": float(present.mean()) if len(present) else None,
            "std": float(present.std(ddof=0)) if len(present) else None,
            "min": float(present.min()) if len(present) else None,
            "max": float(present.max()) if len(present) else None,
            "quantiles": {str(q): float(present.quantile(q)) for q in QUANTILES} if len(present) else {},
        }
    for column in categorical:
        frequencies = train[column].value_counts(normalize=True, dropna=True)
        top = frequencies.head(TOP_CATEGORIES)
        stats["features"][column] = {
            "type": "categorical",
            "null_fraction": float(train[column].isna().mean()),
            "frequencies": {str(k): float(v) for k, v in top.items()},
            "other_frequency": float(frequencies.iloc[TOP_CATEGORIES:].sum()),
        }
    return stats


def label_stats(labels: pd.Series, task_type: str = BINARY) -> dict[str, Any]:
    """The label's distribution on the training split, as :func:`feature_stats` records it."""
    if task_type == MULTICLASS:
        frequencies = labels.map(str).value_counts(normalize=True).sort_index()
        return {"label_frequencies": {str(k): float(v) for k, v in frequencies.items()}}
    if task_type == REGRESSION:
        values = labels.astype("float64")
        return {"label_mean": float(values.mean()), "label_std": float(values.std(ddof=0))}
    return {"label_rate": float(labels.mean())}


def log_model(
    model: torch.nn.Module, spec: dict[str, Any], example: pd.DataFrame
) -> mlflow.models.model.ModelInfo:
    """Log the pyfunc (serving.py as model-from-code) with weights, preprocessing and a signature."""
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as workdir:
        weights = Path(workdir) / "weights.pt"
        preprocessing = Path(workdir) / "preprocessing.json"
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
        preprocessing.write_text(json.dumps(spec))
        predictor = serving.TabularModel()
        predictor.spec, predictor.model = spec, _cpu_copy(model, spec)
        signature = mlflow.models.infer_signature(example, predictor.predict(None, example))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=serving.__file__,
            artifacts={"weights": str(weights), "preprocessing": str(preprocessing)},
            signature=signature,
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
        )


def _cpu_copy(model: torch.nn.Module, spec: dict[str, Any]) -> serving.TabularMLP:
    copy = serving.TabularMLP(**spec["architecture"])
    copy.load_state_dict({k: v.detach().cpu().float() for k, v in model.state_dict().items()})
    return copy.eval()


def input_example(frame: pd.DataFrame, features: list[str], rows: int = 5) -> pd.DataFrame:
    """A few raw training rows: the signature then keeps the training dtypes, which is what the
    feature store serves (MLflow refuses int64 input for a double column, so we do not widen)."""
    return frame[features].head(rows).reset_index(drop=True)
