"""Overhead of our register + gate tasks over bare MlflowClient calls, on a local ``mlflow server``.

Run: ``python -m tests.bench.bench_mlflow`` from the repository root. Prints a markdown table of the
median of 5 runs of each step.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.models import MetricThreshold
from mlflow.models.evaluation import EvaluationResult
from mlflow.models.evaluation.validation import validate_evaluation_results
from sklearn import metrics as skm

from mlops_provider.operators.mlflow import (
    MLflowEvaluateGateOperator,
    MLflowRegisterModelOperator,
    MLflowSetAliasOperator,
)
from tests.bench.common import markdown_report
from tests.mlflow_helpers import log_model, task_context, unique_name
from tests.mlflow_server import MLflowServer

REPEATS = 5
THRESHOLDS = {"roc_auc": {"threshold": 0.6, "min_absolute_change": 0.01, "greater_is_better": True}}


def _median_ms(step: Callable[[int], object]) -> float:
    times = []
    for i in range(REPEATS):
        start = time.perf_counter()
        step(i)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _holdout() -> str:
    import datetime as dt

    from mlops_provider.example_data.generator import GeneratorConfig, activity_table, labels_table

    cfg, day = GeneratorConfig(rows_per_day=2000), dt.date(2026, 1, 3)  # above the gate's minimum evidence
    labels = labels_table(cfg, day + dt.timedelta(days=2)).to_pandas()[["customer_id", "churned"]]
    data = (
        activity_table(cfg, day).to_pandas().drop(columns=["event_timestamp"]).merge(labels, on="customer_id")
    )
    path = Path(tempfile.mkdtemp()) / "holdout.parquet"
    data.to_parquet(path, index=False)
    return str(path)


def _bare_metrics(client: MlflowClient, uri: str, data, tracking_uri: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri)
        out = mlflow.pyfunc.load_model(path).predict(data.drop(columns=["churned"]))
    return {"roc_auc": skm.roc_auc_score(data["churned"], out["probability"])}


def main() -> None:
    import pandas as pd

    report = markdown_report()
    server = MLflowServer(Path(tempfile.mkdtemp(prefix="bench-mlflow-")))
    server.start()
    try:
        uri = server.tracking_uri
        os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps({"conn_type": "mlflow", "host": uri})
        client = MlflowClient(uri)
        weak, truth = log_model(uri, "weak"), log_model(uri, "truth")
        holdout = _holdout()
        data = pd.read_parquet(holdout)
        ours_names = [unique_name("ours") for _ in range(REPEATS)]
        bare_names = [unique_name("bare") for _ in range(REPEATS)]
        model_id = truth["model_uri"].removeprefix("models:/")

        def ours_register(i: int) -> None:
            result = MLflowRegisterModelOperator(
                task_id="r", name=ours_names[i], run_id=truth["run_id"]
            ).execute(task_context())
            MLflowSetAliasOperator(
                task_id="a", name=ours_names[i], alias="champion", version=result["version"]
            ).execute({})

        def bare_register(i: int) -> None:
            client.create_registered_model(bare_names[i])
            mv = client.create_model_version(
                bare_names[i], truth["model_uri"], run_id=truth["run_id"], model_id=model_id
            )
            client.set_registered_model_alias(bare_names[i], "champion", mv.version)

        rows = [("register + alias (new version)", _median_ms(bare_register), _median_ms(ours_register))]
        rows.append(("register again (idempotent hit)", float("nan"), _median_ms(ours_register)))

        # Gate: each name gets a weak champion (v2) and the truth model as candidate (v1, already registered).
        for names in (ours_names, bare_names):
            for name in names:
                mv = client.create_model_version(
                    name,
                    weak["model_uri"],
                    run_id=weak["run_id"],
                    model_id=weak["model_uri"].removeprefix("models:/"),
                )
                client.set_registered_model_alias(name, "champion", mv.version)

        def ours_gate(i: int) -> None:
            op = MLflowEvaluateGateOperator(
                task_id="g",
                name=ours_names[i],
                version="1",
                eval_data_uri=holdout,
                label="churned",
                thresholds=THRESHOLDS,
                short_circuit_on_fail=False,
            )
            op.execute(task_context())

        def bare_gate(i: int) -> None:
            name = bare_names[i]
            candidate = _bare_metrics(client, f"models:/{name}/1", data, uri)
            champion = _bare_metrics(client, f"models:/{name}@champion", data, uri)
            validate_evaluation_results(
                {"roc_auc": MetricThreshold(threshold=0.6, min_absolute_change=0.01, greater_is_better=True)},
                EvaluationResult(candidate, {}),
                EvaluationResult(champion, {}),
            )
            client.set_registered_model_alias(name, "challenger", "1")

        rows.append(
            ("gate: evaluate 2 models + decide + alias", _median_ms(bare_gate), _median_ms(ours_gate))
        )
        rows.append(("gate again (decision reused)", float("nan"), _median_ms(ours_gate)))
    finally:
        server.stop()

    print(f"| step (median of {REPEATS}) | bare MlflowClient (ms) | our task (ms) | overhead |", file=report)
    print("| --- | ---: | ---: | ---: |", file=report)
    for step, bare, ours in rows:
        overhead = "" if bare != bare else f"{ours - bare:+.0f} ms ({ours / bare:.2f}x)"
        bare_text = "-" if bare != bare else f"{bare:.0f}"
        print(f"| {step} | {bare_text} | {ours:.0f} | {overhead} |", file=report)


if __name__ == "__main__":
    main()
