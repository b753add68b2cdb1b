"""The "ML models" page: rendered from a real model_overview (tests/plugins/conftest.py), escaped,
self-contained, with its links and its SVG plots."""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from mlops_provider.plugins.overview import model_overview
from mlops_provider.plugins.page import metrics_svg, render_page, weight_svg
from tests.plugins.conftest import HOSTILE, UI, XDIST_GROUP

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)


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

    # Our own SVG, rendered from our own state: not untrusted input.
    weight = ET.fromstring(weight_svg(rollout["history"]))  # noqa: S314
    metrics = ET.fromstring(metrics_svg(rollout["verdicts"]))  # noqa: S314

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


def test_held_out_evidence_comes_first_and_early_stopping_is_labelled_as_such(state) -> None:
    rolling, _, hook, _ = state
    [model] = model_overview(hook, names=[rolling])
    gate = {v["version"]: v["gate"] for v in model["versions"]}["2"]

    text = render_page([model], source="mlflow", nonce="n")

    assert "Version Held-out evidence Training run Lineage Canary" in " ".join(
        " ".join(Page(text).text).split()
    )
    start = text.index('<tr data-version="2">')
    row = text[start : text.index("</tr>", start)]
    held_out, training = (
        " ".join(" ".join(Page(f"<td{cell}").text).split()) for cell in row.split("<td")[2:4]
    )
    interval = f"[95% CI {float(gate['ci_low']):+.3f}, {float(gate['ci_high']):+.3f}], n={gate['n']}"
    assert held_out.startswith(f"Gate : pass roc_auc {float(gate['difference']):+.3f} {interval}")
    evaluation = "Evaluation set (trainer, held out) roc_auc 0.83 log_loss 0.25 rows 500 positives 61"
    assert held_out.endswith(evaluation)
    assert training.startswith(
        "Early stopping (the slice of the training window that picked the epoch; not held out) "
        "roc_auc 0.84 log_loss 0.21 best_epoch 2"
    )
    assert "epoch_" not in row  # the per-epoch curves stay in MLflow


@pytest.mark.parametrize(
    ("task_type", "counted"),
    [(None, "n=500 (40 positives)"), ("multiclass", "n=500 (rarest class 40 rows)"), ("regression", "n=500")],
)
def test_the_gate_evidence_counts_what_the_task_type_has(task_type, counted) -> None:
    from mlops_provider.plugins.page import _gate_evidence

    tags = {"metric": "rmse", "difference": "0.1", "ci_low": "0.05", "ci_high": "0.15", "confidence": "0.95"}
    tags |= {"n": "500", "positives": "40", "task_type": task_type}
    assert _gate_evidence(tags).endswith(f"[95% CI +0.050, +0.150], {counted}</span>")
