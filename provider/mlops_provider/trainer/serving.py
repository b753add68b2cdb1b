"""The churn model as MLflow logs and serves it: the torch module, its input encoding and a pyfunc.

MLflow logs this file as "model from code", so it must stay self-contained: it imports torch,
numpy, pandas and mlflow only, never ``mlops_provider``, and a serving image needs no provider.
``predict(raw feature frame)`` returns ``probability`` (P(label = 1)) and ``prediction`` (0/1 at 0.5).
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


class TabularMLP(nn.Module):
    """An MLP over embedded categorical codes (0 = unknown) and standardised numeric columns."""

    def __init__(
        self,
        cardinalities: list[int],
        embedding_dims: list[int],
        n_numeric: int,
        hidden: list[int],
        dropout: float,
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
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        embedded = [embedding(codes[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.mlp(torch.cat([*embedded, numbers], dim=1)).squeeze(-1)


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


class ChurnClassifier(PythonModel):
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
            probability = torch.sigmoid(self.model(codes, numbers)).numpy().astype(np.float64)
        return pd.DataFrame(
            {"probability": probability, "prediction": (probability >= THRESHOLD).astype(np.int64)},
            index=model_input.index,
        )


mlflow.models.set_model(ChurnClassifier())
