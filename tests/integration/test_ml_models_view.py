"""The "ML models" view in a real browser (Debian's chromium, driven by Playwright) against the real stack.

The test seeds its own model in the stack's MLflow (a champion, a canary at 50 % after one analysed step,
a drift run), logs in to the Airflow UI, opens the view from the Browse menu and reads it in the UI's
iframe; it does not depend on test_demo_flow having run. It also checks that the plugin's app answers
only with Airflow's login.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request

import pytest
from tools.local_stack import ADMIN_USER

from tests.browser import chromium

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("standalone")]

MODEL = "ml_models_view_churn"  # not the demo's churn_classifier
DRIFT_FROM = dt.date(2026, 1, 21)
STEPS = (10, 50, 100)


def features_of(day: dt.date):
    from mlops_provider.example_data.generator import GeneratorConfig, activity_table

    table = activity_table(GeneratorConfig(rows_per_day=1000, drift_from=DRIFT_FROM), day).to_pandas()
    return table.drop(columns=["customer_id", "event_timestamp"])


def seed(stack, tmp_path) -> dict[str, str]:
    """Register two versions through the operators, roll the second out as a canary, detect drift."""
    from mlflow import MlflowClient

    from mlops_provider.canary import CanaryController, CanaryStrategy, judge_poll
    from mlops_provider.operators.drift import DriftDetectOperator
    from mlops_provider.operators.mlflow import MLflowRegisterModelOperator
    from tests.mlflow_helpers import log_model, task_context

    client = MlflowClient(stack.mlflow_url)
    versions = []
    for eval_roc_auc in (0.81, 0.84):
        run_id = log_model(stack.mlflow_url, "truth", tags={"mlops.data_fingerprint": "sha256:ab"})["run_id"]
        client.log_metric(run_id, "eval_roc_auc", eval_roc_auc)
        sample = tmp_path / run_id / "sample.parquet"  # the trainer's drift reference
        sample.parent.mkdir()
        features_of(dt.date(2026, 1, 1)).to_parquet(sample, index=False)
        client.log_artifact(run_id, str(sample), "reference")
        op = MLflowRegisterModelOperator(task_id="register", name=MODEL, run_id=run_id)
        versions.append(op.execute(task_context())["version"])
    first, second = versions
    client.set_registered_model_alias(MODEL, "challenger", second)

    # The controller's own transitions, without a traffic backend: the state the view reads.
    strategy = CanaryStrategy(steps=STEPS, checks_per_step=1)
    canary = CanaryController(client, MODEL, strategy)
    canary.start(first)  # no champion yet: promoted at once
    canary.start(second)
    canary.deploy_step(second, 0)
    poll = judge_poll(
        strategy,
        {
            "error_rate": (0.0, 0.0),
            "latency_p95_ms": (12.0, 10.0),
            "prediction_psi": (0.02, None),
            "roc_auc": (0.84, 0.81),
        },
    )
    canary.record_verdict(
        second,
        0,
        {
            "verdict": "pass",
            "step": 0,
            "weight": STEPS[0],
            "polls": ["pass"],
            "checks": poll["checks"],
            "message": "every check passed",
        },
    )
    canary.deploy_step(second, 1)

    current = tmp_path / "current.parquet"
    features_of(DRIFT_FROM + dt.timedelta(days=10)).to_parquet(current, index=False)
    drift = DriftDetectOperator(task_id="drift", name=MODEL, current_uri=str(current)).execute(task_context())
    assert drift["dataset_drift"], drift
    return {"champion": first, "canary": second, "drifted": ", ".join(drift["drifted_features"])}


def token(stack) -> str:
    """A JWT of the admin user, from the simple auth manager."""
    body = json.dumps({"username": ADMIN_USER, "password": stack.password}).encode()
    request = urllib.request.Request(
        f"{stack.airflow_url}/auth/token",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.loads(resp.read())["access_token"]


def get(url: str, bearer: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_ml_models_view_in_a_real_browser(stack, tmp_path, monkeypatch) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": stack.mlflow_url})
    )
    seeded = seed(stack, tmp_path)

    # The plugin's app sits behind Airflow's login: refused without a token, served with one.
    assert get(f"{stack.airflow_url}/ml-models/")[0] == 401
    assert get(f"{stack.airflow_url}/ml-models/api/overview", "not-a-jwt")[0] == 403
    status, body = get(f"{stack.airflow_url}/ml-models/api/overview", token(stack))
    assert status == 200, body
    [model] = [m for m in json.loads(body)["models"] if m["name"] == MODEL]
    assert model["canary"] == {"champion": seeded["champion"], "canary": seeded["canary"], "weight": 50}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1400})
            page.set_default_timeout(60_000)
            page.goto(stack.airflow_url)
            page.get_by_label("Username").fill(ADMIN_USER)
            page.get_by_label("Password").fill(stack.password)
            page.get_by_role("button", name="Sign in").click()

            page.get_by_role("button", name="Browse").click()
            page.get_by_role("menuitem", name="ML models").click()
            expect(page).to_have_url(re.compile(r"/plugin/ml-models"))
            view = page.frame_locator('iframe[title="ML models"]')
            section = view.locator(f'section[data-model="{MODEL}"]')
            expect(section.locator("h2")).to_contain_text(MODEL)
            rows = section.locator("table.versions tbody tr")
            expect(rows.filter(has=view.locator(".badge.champion"))).to_contain_text(f"v{seeded['champion']}")
            canary_row = rows.filter(has=view.locator(".badge.canary"))
            expect(canary_row).to_contain_text(f"v{seeded['canary']}")
            expect(canary_row.locator(".badge.challenger")).to_be_visible()
            expect(section.locator("[data-canary-weight]")).to_have_attribute("data-canary-weight", "50")
            expect(section.locator("p.split")).to_contain_text("Canary weight: 50%")
            expect(section.locator("svg.rollout-weight circle")).to_have_count(4)  # start, step, pass, step
            expect(section.locator("svg.rollout-metrics")).to_be_visible()
            drift = section.locator("p.drift-summary")
            expect(drift).to_contain_text("DRIFT")
            expect(drift).to_contain_text(seeded["drifted"])
            expect(drift).to_contain_text(f"against v{seeded['champion']}")

            screenshot = tmp_path / "ml_models_view.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"\nScreenshot of the ML models view: {screenshot}")

            # A DAG run link navigates the Airflow UI itself, not the iframe.
            section.locator('a[data-nav="airflow"]').first.click()
            expect(page).to_have_url(
                f"{stack.airflow_url}/dags/churn_training/runs/scheduled__2026-01-03T00%3A00%3A00%2B00%3A00"
            )
        finally:
            browser.close()
