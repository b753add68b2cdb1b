"""Registry state for the overview and page tests, built once on a real ``mlflow server``.

Two models: ``rolling`` has a gated champion, a gated challenger that is the canary at 50 % after one
analysed step, and a drift run against the champion; ``promoted`` had its retrained version go out as a
canary (one step, at 50 %) and replace the first one, now ``previous``.

Both test modules use the ``state`` fixture and share one xdist group, so the state is built once per
session, on one worker. Airflow (and so the operators) is imported inside the fixtures: a conftest named
on the command line is imported before tests/conftest.py sets the worker's AIRFLOW_HOME.
"""

from __future__ import annotations

import datetime as dt

import pytest
from mlflow import MlflowClient

from mlops_provider.example_data.generator import GeneratorConfig, activity_table
from tests.mlflow_helpers import connection_env, log_model, task_context, unique_name

XDIST_GROUP = "model_overview"
UI = "http://mlflow.example:5000"
STRATEGY = {"steps": [10, 50, 100], "interval_seconds": 0.05, "checks_per_step": 2, "failure_threshold": 1}
GATE = {"roc_auc": {"threshold": 0.6, "greater_is_better": True}}
START, DRIFT_FROM = dt.date(2026, 1, 1), dt.date(2026, 1, 21)
ID_COLUMNS = ["customer_id", "event_timestamp"]
HOSTILE = "<img src=x onerror=alert(1)>"


class Models:
    """Builds registry state through the operators, as the DAGs do."""

    def __init__(self, tracking_uri: str, eval_data, tmp_path) -> None:
        self.client = MlflowClient(tracking_uri)
        self.tracking_uri, self.eval_data, self.tmp_path = tracking_uri, eval_data, tmp_path

    def train(self, name: str, kind: str, auc: float, *, reference: bool = False) -> str:
        """A new training run registered: lineage tags, the trainer's metrics (``auc`` on its evaluation
        set, per-epoch curves, early stopping at epoch 2 of 3), optionally a drift reference."""
        from mlops_provider.operators.mlflow import MLflowRegisterModelOperator

        tags = {
            "mlops.data_fingerprint": f"s3://lake/train.parquet@sha256:{kind}",
            "mlops.code_version": "0.1.0",
        }
        run_id = log_model(self.tracking_uri, kind, tags=tags)["run_id"]
        for epoch, value in enumerate((auc - 0.02, auc + 0.01, auc - 0.05), start=1):
            self.client.log_metric(run_id, "epoch_early_stop_roc_auc", value, step=epoch)
        trainer = {"best_epoch": 2, "early_stop_roc_auc": auc + 0.01, "early_stop_log_loss": 0.21}
        trainer |= {"eval_roc_auc": auc, "eval_log_loss": 0.25, "eval_rows": 500, "eval_positives": 61}
        for metric, value in trainer.items():
            self.client.log_metric(run_id, metric, value)
        if reference:
            sample = self.tmp_path / run_id / "sample.parquet"  # the trainer's REFERENCE_SAMPLE
            sample.parent.mkdir()
            self.features_of(START).to_parquet(sample, index=False)
            self.client.log_artifact(run_id, str(sample), "reference")
        op = MLflowRegisterModelOperator(
            task_id="register", name=name, run_id=run_id, lineage_tags={"training_set_uri": "s3://lake/train"}
        )
        return op.execute(task_context())["version"]

    def gate(self, name: str, version: str) -> dict:
        from mlops_provider.operators.mlflow import MLflowEvaluateGateOperator

        op = MLflowEvaluateGateOperator(
            task_id="gate",
            name=name,
            version=version,
            thresholds=GATE,
            eval_data_uri=str(self.eval_data),
            label="churned",
            short_circuit_on_fail=False,
            # A 300-row held-out set: below the default minimum evidence, which the gate tests cover.
            min_samples=100,
            min_positives=10,
        )
        return op.execute(task_context())

    def canary(self, name: str, operator, **kwargs) -> dict:
        from mlops_provider.sensors.canary import CanaryAnalysisSensor

        config = {
            "traffic_uri": str(self.eval_data),
            "log_root": str(self.tmp_path / "predictions"),
            "entity_column": "customer_id",
            "label_column": "churned",
        }
        common = {"name": name, "backend": "batch", "backend_config": config, "strategy": STRATEGY}
        if operator is CanaryAnalysisSensor:
            kwargs["deferrable"] = False
        return operator(task_id="t", **(common | kwargs)).execute(task_context())

    def walk(self, name: str, version: str, steps: int, **kwargs) -> None:
        """Start the rollout of ``version`` and take and analyse its first ``steps`` steps."""
        from mlops_provider.operators.canary import CanaryDeployOperator
        from mlops_provider.sensors.canary import CanaryAnalysisSensor

        self.canary(name, CanaryDeployOperator, version=version, **kwargs)
        for step in range(steps):
            self.canary(name, CanaryDeployOperator, version=version, step=step, **kwargs)
            verdict = self.canary(name, CanaryAnalysisSensor, version=version, step=step, **kwargs)
            assert verdict["verdict"] == "pass", verdict

    @staticmethod
    def features_of(day: dt.date):
        table = activity_table(GeneratorConfig(rows_per_day=2000, drift_from=DRIFT_FROM), day).to_pandas()
        return table.drop(columns=ID_COLUMNS)


@pytest.fixture(scope="session")
def built_state(mlflow_server, eval_data, tmp_path_factory):
    """Build both models once per session; return ``(rolling, promoted, the drift operator's result)``."""
    from mlops_provider.operators.canary import CanaryDeployOperator, PromoteModelOperator
    from mlops_provider.operators.drift import DriftDetectOperator

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(mlflow_server.tracking_uri, ui_base_url=UI)
        )
        models = Models(mlflow_server.tracking_uri, eval_data, tmp_path_factory.mktemp("overview"))
        rolling, promoted = unique_name("rolling"), unique_name("promoted")

        first = models.train(rolling, "truth", 0.81, reference=True)
        assert models.gate(rolling, first)["decision"] == "pass"
        assert models.canary(rolling, CanaryDeployOperator, version=first)["status"] == "promoted"
        second = models.train(rolling, "truth", 0.83)
        models.client.set_model_version_tag(rolling, second, "mlops.note", HOSTILE)  # the page must escape it
        assert models.gate(rolling, second)["decision"] == "pass"
        models.walk(rolling, second, steps=1)
        models.canary(rolling, CanaryDeployOperator, version=second, step=1)  # 50 %, not analysed yet
        current = models.tmp_path / "drifted.parquet"
        models.features_of(DRIFT_FROM + dt.timedelta(days=10)).to_parquet(current, index=False)
        drift = DriftDetectOperator(task_id="drift", name=rolling, current_uri=str(current)).execute(
            task_context()
        )
        assert drift["dataset_drift"] is True

        models.train(promoted, "weak", 0.7)
        models.canary(promoted, CanaryDeployOperator, version="1")  # the first model: promoted at once
        models.train(promoted, "truth", 0.82)
        one_step = STRATEGY | {"steps": [50]}  # the cheapest full rollout (at 100 % the champion has no data)
        models.walk(promoted, "2", steps=1, strategy=one_step)
        assert (
            models.canary(promoted, PromoteModelOperator, version="2", strategy=one_step)["status"]
            == "promoted"
        )

    return rolling, promoted, drift


@pytest.fixture
def state(built_state, mlflow_server, monkeypatch):
    """``(rolling, promoted, hook, the drift operator's result)``, with ``mlflow_default`` (UI base URL set)."""
    from mlops_provider.hooks.mlflow import MLflowHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(mlflow_server.tracking_uri, ui_base_url=UI)
    )
    rolling, promoted, drift = built_state
    return rolling, promoted, MLflowHook(), drift
