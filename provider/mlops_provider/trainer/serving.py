"""The reference trainer's model as MLflow logs and serves it: the torch module, its encoding, a pyfunc.

MLflow logs this file as "model from code", so it must stay self-contained: it imports torch,
numpy, pandas and mlflow only, never ``mlops_provider``, and a serving image needs no provider. The
names below therefore repeat :mod:`mlops_provider.ml.tasks` (a test keeps them equal).
``predict(raw feature frame)`` returns, by the preprocessing spec's ``task``:

- ``binary``: ``probability`` (P(label = 1)) and ``prediction`` (0/1 at 0.5);
- ``multiclass``: ``prediction`` (the most probable class, an int when the training labels were
  integers, else a string), ``probability`` (its probability) and ``probability_<class>`` per class;
- ``regression``: ``prediction`` (float64, on the label's scale).
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel
from torch import nn

THRESHOLD = 0.5
BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
PROBABILITY, PREDICTION = "probability", "prediction"
CLASS_PROBABILITY_PREFIX = "probability_"


class TabularMLP(nn.Module):
    """An MLP over embedded categorical codes (0 = unknown) and standardised numeric columns.

    It returns one value per row when ``outputs`` is 1 (a binary logit or a standardised number),
    else ``outputs`` logits per row (one per class).
    """

    def __init__(
        self,
        cardinalities: list[int],
        embedding_dims: list[int],
        n_numeric: int,
        hidden: list[int],
        dropout: float,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(size + 1, dim) for size, dim in zip(cardinalities, embedding_dims, strict=True)
        )
        layers: list[nn.Module] = []
        width = sum(embedding_dims) + n_numeric
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, outputs))
        self.mlp = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, codes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        embedded = [embedding(codes[:, i]) for i, embedding in enumerate(self.embeddings)]
        out = self.mlp(torch.cat([*embedded, numbers], dim=1))
        return out.squeeze(-1) if self.outputs == 1 else out


def encode(frame: pd.DataFrame, spec: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn raw feature columns into (int64 codes, float32 standardised numbers) with ``spec``.

    Unseen or null categories map to code 0; null numbers take the training median.
    """
    missing = [c for c in [*spec["categorical"], *spec["numeric"]] if c not in frame.columns]
    if missing:
        raise ValueError(f"input is missing feature columns {missing}; send every column of the signature")
    n = len(frame)
    codes = np.zeros((n, len(spec["categorical"])), dtype=np.int64)
    for i, (column, vocabulary) in enumerate(spec["categorical"].items()):
        codes[:, i] = pd.Categorical(frame[column], categories=vocabulary).codes.astype(np.int64) + 1
    numbers = np.zeros((n, len(spec["numeric"])), dtype=np.float32)
    for i, (column, scale) in enumerate(spec["numeric"].items()):
        values = pd.to_numeric(frame[column], errors="coerce").astype("float64").fillna(scale["fill"])
        numbers[:, i] = (values.to_numpy() - scale["mean"]) / scale["std"]
    return torch.from_numpy(codes), torch.from_numpy(numbers)


def task_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's ``task``: ``{"type": ...}`` plus ``classes`` (multiclass) or ``mean``/``std``
    (regression, the training split's label scale); a spec without one is binary."""
    return dict(spec.get("task") or {"type": BINARY})


def output_frame(out: torch.Tensor, spec: dict[str, Any], index: Any = None) -> pd.DataFrame:
    """The network's raw output (logits, or standardised numbers) as the task's output columns."""
    task = task_of(spec)
    out = out.detach().float().cpu()
    if task["type"] == REGRESSION:
        standardised = out.numpy().astype(np.float64)
        return pd.DataFrame({PREDICTION: standardised * task["std"] + task["mean"]}, index=index)
    if task["type"] == MULTICLASS:
        return _class_frame(torch.softmax(out, dim=1).numpy(), task["classes"], index)
    probability = torch.sigmoid(out).numpy().astype(np.float64)
    return pd.DataFrame(
        {PROBABILITY: probability, PREDICTION: (probability >= THRESHOLD).astype(np.int64)}, index=index
    )


def _class_frame(probabilities: np.ndarray, classes: list[Any], index: Any) -> pd.DataFrame:
    probabilities = probabilities.astype(np.float64)
    best = probabilities.argmax(axis=1)
    integers = all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
    values = np.asarray(
        classes if integers else [str(c) for c in classes], dtype=np.int64 if integers else object
    )
    columns = {
        PREDICTION: values[best],
        PROBABILITY: probabilities[np.arange(len(best)), best],
        **{f"{CLASS_PROBABILITY_PREFIX}{c}": probabilities[:, i] for i, c in enumerate(classes)},
    }
    return pd.DataFrame(columns, index=index)


class TabularModel(PythonModel):
    """Loads ``weights`` (a torch state dict) and ``preprocessing`` (JSON) artifacts; runs on CPU."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["preprocessing"]) as handle:
            self.spec = json.load(handle)
        self.model = TabularMLP(**self.spec["architecture"])
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        codes, numbers = encode(model_input, self.spec)
        with torch.inference_mode():
            out = self.model(codes, numbers)
        return output_frame(out, self.spec, index=model_input.index)


mlflow.models.set_model(TabularModel())
