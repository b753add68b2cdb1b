"""The drift reference any trainer logs: a seeded sample of its features, in the active MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mlops_provider.ml.reference import REFERENCE_SAMPLE, log_reference_sample


def test_a_seeded_sample_of_the_features_is_logged_where_drift_detection_reads_it(
    mlflow_server: Any, tmp_path: Path
) -> None:
    import mlflow

    features = pd.DataFrame({"amount": range(50), "store": [f"s{i % 3}" for i in range(50)]})
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    mlflow.set_experiment("reference-sample")
    samples = []
    for _ in range(2):
        with mlflow.start_run() as run:
            log_reference_sample(features, max_rows=20)
        local = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=REFERENCE_SAMPLE, dst_path=str(tmp_path / run.info.run_id)
        )
        samples.append(pd.read_parquet(local))
    assert list(samples[0].columns) == ["amount", "store"] and len(samples[0]) == 20
    pd.testing.assert_frame_equal(samples[0], samples[1])  # the same data logs the same sample
