"""model_overview, and the page rendered from it, against a real ``mlflow server`` and real state.

The page tests (mlops_provider.model_overview_page) live here too, so both share the state built once.

Two models, built once per module: ``rolling`` has a gated champion, a gated challenger that is the
canary at 50 % after one analysed step, and a drift run against the champion; ``promoted`` had its
retrained version go out as a canary (one step, at 50 %) and replace the first one, now ``previous``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from mlflow import MlflowClient

from mlops_provider.example_data.generator import GeneratorConfig, activity_table
from mlops_provider.exceptions import ServiceUnavailable
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.local_stack import free_port
from mlops_provider.model_overview import model_overview
from mlops_provider.model_overview_page import metrics_svg, render_page, weight_svg
from mlops_provider.operators.canary import CanaryDeployOperator, PromoteModelOperator
from mlops_provider.operators.drift import DriftDetectOperator
from mlops_provider.operators.mlflow import MLflowEvaluateGateOperator, MLflowRegisterModelOperator
from mlops_provider.sensors.canary import CanaryAnalysisSensor
from tests.mlflow_helpers import connection_env, log_model, task_context, unique_name

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

    def train(self, name: str, kind: str, val_auc: float, *, reference: bool = False) -> str:
        """A new training run (lineage tags, a val_auc metric, optionally a drift reference) registered."""
        tags = {
            "mlops.data_fingerprint": f"s3://lake/train.parquet@sha256:{kind}",
            "mlops.code_version": "0.1.0",
        }
        run_id = log_model(self.tracking_uri, kind, tags=tags)["run_id"]
        self.client.log_metric(run_id, "val_auc", val_auc)
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
        op = MLflowEvaluateGateOperator(task_id="gate", name=name, version=version, thresholds=GATE,
                                        eval_data_uri=str(self.eval_data), short_circuit_on_fail=False)  # fmt: skip
        return op.execute(task_context())

    def canary(self, name: str, operator, **kwargs) -> dict:
        config = {"traffic_uri": str(self.eval_data), "log_root": str(self.tmp_path / "predictions"),
                  "label_column": "churned"}  # fmt: skip
        common = {"name": name, "backend": "batch", "backend_config": config, "strategy": STRATEGY}
        if operator is CanaryAnalysisSensor:
            kwargs["deferrable"] = False
        return operator(task_id="t", **(common | kwargs)).execute(task_context())

    def walk(self, name: str, version: str, steps: int, **kwargs) -> None:
        """Start the rollout of ``version`` and take and analyse its first ``steps`` steps."""
        self.canary(name, CanaryDeployOperator, version=version, **kwargs)
        for step in range(steps):
            self.canary(name, CanaryDeployOperator, version=version, step=step, **kwargs)
            verdict = self.canary(name, CanaryAnalysisSensor, version=version, step=step, **kwargs)
            assert verdict["verdict"] == "pass", verdict

    @staticmethod
    def features_of(day: dt.date):
        table = activity_table(GeneratorConfig(rows_per_day=2000, drift_from=DRIFT_FROM), day).to_pandas()
        return table.drop(columns=ID_COLUMNS)


@pytest.fixture(scope="module")
def state(mlflow_server, eval_data, tmp_path_factory):
    """Build both models once; yields ``(rolling, promoted, hook, the drift operator's result)``."""
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

        yield rolling, promoted, MLflowHook(), drift


def by_version(overview: dict) -> dict[str, dict]:
    return {v["version"]: v for v in overview["versions"]}


def test_a_canary_in_progress_shows_every_alias_with_metrics_gate_and_lineage(state) -> None:
    rolling, _, hook, _ = state

    [overview] = model_overview(hook, names=[rolling])

    assert overview["name"] == rolling and overview["url"] == f"{UI}/#/models/{rolling}"
    assert overview["aliases"] == {"champion": "1", "challenger": "2", "canary": "2"}
    versions = by_version(overview)
    assert list(versions) == ["1", "2"] and overview["latest_version"] == "2"
    assert versions["1"]["aliases"] == ["champion"] and versions["2"]["aliases"] == ["challenger", "canary"]
    champion = versions["1"]
    assert champion["metrics"]["val_auc"] == pytest.approx(0.81)
    assert champion["gate"]["decision"] == "pass" and "first model" in champion["gate"]["reason"]
    assert "key" not in champion["gate"] and "result" not in champion["gate"]
    assert champion["lineage"]["dag_id"] == "churn_training"
    assert champion["lineage"]["data_interval_start"] == "2026-01-03T00:00:00+00:00"
    assert champion["lineage"]["data_fingerprint"] == "s3://lake/train.parquet@sha256:truth"
    assert champion["lineage"]["training_set_uri"] == "s3://lake/train"
    assert not any(k.startswith(("canary.", "gate.", "drift.")) for k in champion["lineage"])
    assert champion["dag_run"] == {
        "dag_id": "churn_training",
        "run_id": "scheduled__2026-01-03T00:00:00+00:00",
        "path": "dags/churn_training/runs/scheduled__2026-01-03T00%3A00%3A00%2B00%3A00",
    }
    assert champion["url"] == f"{UI}/#/models/{rolling}/versions/1"
    assert champion["run_url"].startswith(f"{UI}/#/experiments/") and champion["run_url"].endswith(
        champion["run_id"]
    )
    assert versions["2"]["gate"]["champion_version"] == "1"
    assert versions["2"]["canary"] == {"status": "progressing", "step": 1, "weight": 50, "reason": None}
    json.dumps(overview)  # the JSON endpoint returns it as it is


def test_the_canary_weight_and_its_history_come_from_the_controllers_state(state) -> None:
    rolling, _, hook, _ = state

    [overview] = model_overview(hook, names=[rolling])

    assert overview["canary"] == {"champion": "1", "canary": "2", "weight": 50}
    rollout = overview["rollout"]
    assert (
        rollout["version"] == "2" and rollout["status"] == "progressing" and rollout["steps"] == [10, 50, 100]
    )
    assert [(h["action"], h["weight"]) for h in rollout["history"]] == [
        ("start", 0), ("step_up", 10), ("hold_passed", 10), ("step_up", 50)]  # fmt: skip
    [verdict] = rollout["verdicts"]
    assert verdict["step"] == 0 and verdict["weight"] == 10 and verdict["verdict"] == "pass"
    assert {c["metric"] for c in verdict["checks"]} == {
        "error_rate",
        "latency_p95_ms",
        "prediction_psi",
        "roc_auc",
    }


def test_the_latest_drift_run_is_summarised(state) -> None:
    rolling, promoted, hook, detected = state

    promoted_view, rolling_view = model_overview(hook, names=[rolling, promoted])  # sorted by name

    drift = rolling_view["drift"]
    assert drift["run_id"] == detected["run_id"] and drift["url"].endswith(detected["run_id"])
    assert drift["model_version"] == "1" and drift["dataset_drift"] is True
    assert drift["drifted_features"] == detected["drifted_features"]
    assert drift["drift_share"] == pytest.approx(detected["drift_share"])
    assert drift["drift_share_threshold"] == 0.3 and drift["current_rows"] == "2000"
    psi = dict(drift["top_psi"])
    assert list(psi.values()) == sorted(psi.values(), reverse=True) and len(psi) <= 5
    assert set(detected["drifted_features"]) & set(psi)
    assert promoted_view["drift"] is None


def test_after_a_promotion_the_old_champion_is_previous_and_the_finished_rollout_is_shown(state) -> None:
    _, promoted, hook, _ = state

    [overview] = model_overview(hook, names=[promoted])

    assert overview["aliases"] == {"champion": "2", "previous": "1"}
    assert overview["canary"] == {"champion": "2", "canary": None, "weight": 0}
    assert [v["aliases"] for v in overview["versions"]] == [["champion"], ["previous"]]
    assert by_version(overview)["1"]["gate"] == {}  # never gated
    rollout = overview["rollout"]
    assert rollout["version"] == "2" and rollout["status"] == "promoted" and rollout["weight"] == 100
    actions = [h["action"] for h in rollout["history"]]
    assert actions == ["start", "step_up", "hold_passed", "promote"]
    assert [v["weight"] for v in rollout["verdicts"]] == [50]


def test_every_registered_model_is_listed_when_no_names_are_given(state) -> None:
    rolling, promoted, hook, _ = state

    names = [m["name"] for m in model_overview(hook, max_models=1000)]

    assert names == sorted(names) and {rolling, promoted} <= set(names)


def test_an_unreachable_server_raises_service_unavailable_at_once(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_env(f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(ServiceUnavailable, match="could not be reached"):
        model_overview(MLflowHook(http_max_retries=0))


# -- the page (mlops_provider.model_overview_page), rendered from the same real state ----------------------
class Page(HTMLParser):
    """Collects tags and attributes, and the text, of the rendered page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data) -> None:
        self.text.append(data)


def test_the_page_shows_each_model_escaped_and_self_contained(state) -> None:
    rolling, promoted, hook, _ = state
    models = model_overview(hook, names=[rolling, promoted])

    text = render_page(models, source=hook.safe_tracking_uri, nonce="n0nce")

    page = Page(text)
    words = " ".join(" ".join(page.text).split())
    assert rolling in words and promoted in words
    assert "Canary weight: 50%" in words and "Canary weight: 0%" in words
    assert "Rollout of v2: progressing (step 2 of 3, weight 50%)" in words
    assert "Rollout of v2: promoted" in words and "DRIFT" in words
    assert HOSTILE not in text and html.escape(HOSTILE) in text and HOSTILE in words
    # Nothing is loaded from elsewhere, and the only script is ours.
    assert not [t for t, a in page.tags if t in ("link", "img", "iframe", "object", "embed")]
    assert [a for t, a in page.tags if t == "script"] == [{"nonce": "n0nce"}]
    links = [a for t, a in page.tags if t == "a"]
    airflow = {a["href"] for a in links if a.get("data-nav") == "airflow"}
    assert airflow == {"../dags/churn_training/runs/scheduled__2026-01-03T00%3A00%3A00%2B00%3A00"}
    assert {a["href"].split("/#/")[0] for a in links if a.get("data-nav") == "mlflow"} == {UI}
    badges = [a["class"] for t, a in page.tags if t == "span" and "badge" in (a.get("class") or "")]
    assert {"badge champion", "badge challenger", "badge canary", "badge previous"} <= set(badges)


def test_the_rollout_plots_are_valid_svg_with_one_point_per_event_and_step(state) -> None:
    rolling, _, hook, _ = state
    [model] = model_overview(hook, names=[rolling])
    rollout = model["rollout"]

    weight, metrics = (
        ET.fromstring(weight_svg(rollout["history"])),
        ET.fromstring(metrics_svg(rollout["verdicts"])),
    )

    ns = "{http://www.w3.org/2000/svg}"
    assert len(weight.findall(f"{ns}circle")) == len(rollout["history"])
    titles = [c.find(f"{ns}title").text for c in weight.findall(f"{ns}circle")]
    assert titles[1].startswith("step_up: 10%") and titles[-1].startswith("step_up: 50%")
    panels = [t.text for t in metrics.findall(f"{ns}text") if t.get("font-weight") == "600"]
    assert panels == ["error_rate", "latency_p95_ms", "prediction_psi", "roc_auc"]
    assert weight_svg([]) == "" and metrics_svg([]) == ""


def test_the_page_says_when_there_is_no_model_or_mlflow_cannot_be_read() -> None:
    empty = " ".join(Page(render_page([], source="http://mlflow:5000")).text)
    assert "No registered model yet in MLflow at http://mlflow:5000" in empty

    down = Page(render_page(None, source="http://mlflow:5000", error="MLflow <down>"))
    assert [a for t, a in down.tags if t == "p" and a.get("role") == "alert"]
    assert "MLflow <down>" in down.text
