"""The drift reference a trainer logs with its model: a sample of the features it was trained on.

Public for trainers of your own (docs/training.md, "Bring your own trainer"): call
:func:`log_reference_sample` inside the MLflow run that logs the model, and the drift monitor can
compare new days with it. Torch-free; imports pandas and mlflow when called.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_ARTIFACT_DIR = "reference"
REFERENCE_SAMPLE = f"{REFERENCE_ARTIFACT_DIR}/sample.parquet"
# Enough rows for stable drift tests (PSI bins, KS, chi-squared) while the artifact stays a few MB.
REFERENCE_SAMPLE_ROWS = 10_000


def log_reference_sample(features: pd.DataFrame, max_rows: int = REFERENCE_SAMPLE_ROWS) -> None:
    """Log a seeded sample of ``features`` (the model's input columns only, no keys or label) to the
    active MLflow run as ``reference/sample.parquet``.

    Drift detection compares raw values (KS and PSI need them, summary quantiles are not enough); the
    fixed seed makes a retrain on the same data log the same sample.
    """
    import mlflow

    sample = features.sample(n=min(len(features), max_rows), random_state=0)
    with tempfile.TemporaryDirectory(prefix="mlops-reference-") as workdir:
        path = Path(workdir) / "sample.parquet"
        sample.reset_index(drop=True).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), REFERENCE_ARTIFACT_DIR)
