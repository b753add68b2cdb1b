"""PrometheusHook against a real Prometheus scraping a real Pushgateway, judged by ``canary.judge_poll``.

The series mimic Knative's queue-proxy metrics (``revision_request_count``,
``revision_request_latencies``), so the production defaults :data:`DEFAULT_KSERVE_CHECKS` run unchanged.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from tools.services import free_port

from mlops_provider.canary import CanaryStrategy, MetricCheck, judge_poll
from mlops_provider.canary.backends.kserve import DEFAULT_KSERVE_CHECKS
from mlops_provider.constants import FAIL, NO_DATA, PASS
from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable
from mlops_provider.hooks.prometheus import PrometheusHook
from tests.prometheus_server import PrometheusStack

pytestmark = pytest.mark.xdist_group("prometheus")

BUCKETS = ("5", "10", "25", "50", "100", "250", "500", "1000", "+Inf")
# Cumulative share of requests at or under each bucket bound (ms).
FAST = (0.10, 0.30, 0.60, 0.85, 0.97, 0.99, 1.0, 1.0, 1.0)  # p95 ~ 92 ms
SLOW = (0.0, 0.0, 0.05, 0.20, 0.40, 0.60, 0.80, 1.0, 1.0)  # p95 ~ 875 ms
STRATEGY = CanaryStrategy(steps=(10, 100), metrics=DEFAULT_KSERVE_CHECKS)


def _exposition(requests: int, error_share: float, cdf: tuple[float, ...]) -> str:
    """Knative-style cumulative counters after ``requests`` requests."""
    errors = round(requests * error_share)
    lines = [
        "# TYPE revision_request_count counter",
        f'revision_request_count{{response_code_class="2xx"}} {requests - errors}',
        f'revision_request_count{{response_code_class="5xx"}} {errors}',
        "# TYPE revision_request_latencies histogram",
    ]
    lines += [
        f'revision_request_latencies_bucket{{le="{le}"}} {round(requests * share)}'
        for le, share in zip(BUCKETS, cdf, strict=True)
    ]
    lines += [
        f"revision_request_latencies_sum {requests * 80}",
        f"revision_request_latencies_count {requests}",
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def revisions(prometheus_stack: PrometheusStack) -> dict[str, str]:
    """Push traffic for a champion and three canaries (good, 20% 5xx, slow); return their revision names."""
    run = uuid.uuid4().hex[:6]
    profiles = {
        "champion": (0.01, FAST),
        "good": (0.005, FAST),
        "errors": (0.20, FAST),
        "slow": (0.01, SLOW),
    }
    names = {key: f"iris-predictor-{run}-{key}" for key in profiles}
    for round_ in range(3):  # counters rise by 1000 requests between pushes, a scrape apart at least
        for key, (error_share, cdf) in profiles.items():
            prometheus_stack.push(
                "knative", _exposition(1000 * round_, error_share, cdf), revision_name=names[key]
            )
        prometheus_stack.wait_scraped()
    hook = PrometheusHook(base_url=prometheus_stack.url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        values = [
            hook.variant_values(DEFAULT_KSERVE_CHECKS, {"canary": n, "champion": n}) for n in names.values()
        ]
        if all(None not in pair for v in values for pair in v.values()):
            return names
        time.sleep(0.5)
    pytest.fail(f"Prometheus never had rate() data for {names}:\n{prometheus_stack.log_tail('prometheus')}")


def _poll(stack: PrometheusStack, canary: str, champion: str, checks=DEFAULT_KSERVE_CHECKS) -> dict:
    values = PrometheusHook(base_url=stack.url).variant_values(
        checks, {"canary": canary, "champion": champion}
    )
    return judge_poll(CanaryStrategy(steps=(10, 100), metrics=tuple(checks)), values)


def test_good_canary_passes_the_default_kserve_checks(prometheus_stack, revisions) -> None:
    verdict = _poll(prometheus_stack, revisions["good"], revisions["champion"])
    assert verdict["status"] == PASS, verdict
    by_metric = {c["metric"]: c for c in verdict["checks"]}
    assert by_metric["success_rate"]["champion"] == pytest.approx(0.99)
    assert by_metric["success_rate"]["canary"] == pytest.approx(0.995)
    # histogram_quantile interpolates inside the (50, 100] bucket: 50 + (0.95 - 0.85) / 0.12 * 50.
    assert by_metric["latency_p95_ms"]["canary"] == pytest.approx(50 + 0.10 / 0.12 * 50)


@pytest.mark.parametrize(("canary", "metric"), [("errors", "success_rate"), ("slow", "latency_p95_ms")])
def test_bad_canary_fails_on_the_metric_at_fault(prometheus_stack, revisions, canary, metric) -> None:
    verdict = _poll(prometheus_stack, revisions[canary], revisions["champion"])
    assert verdict["status"] == FAIL
    failing = [c for c in verdict["checks"] if c["status"] == FAIL]
    assert [c["metric"] for c in failing] == [metric]
    assert failing[0]["message"].startswith(f"{metric}: canary ")


def test_canary_without_traffic_yields_no_data(prometheus_stack, revisions) -> None:
    hook = PrometheusHook(base_url=prometheus_stack.url)
    values = hook.variant_values(
        DEFAULT_KSERVE_CHECKS, {"canary": "no-such-revision", "champion": revisions["champion"]}
    )
    assert values["success_rate"][0] is None and values["success_rate"][1] == pytest.approx(0.99)
    verdict = judge_poll(STRATEGY, values)
    assert verdict["status"] == NO_DATA
    assert all(c["status"] == NO_DATA for c in verdict["checks"])


def test_short_custom_windows_and_absolute_checks(prometheus_stack, revisions) -> None:
    checks = (
        MetricCheck(
            "error_rate",
            'sum(rate(revision_request_count{{revision_name="{revision}",response_code_class="5xx"}}[30s]))'
            ' / sum(rate(revision_request_count{{revision_name="{revision}"}}[30s]))',
            compare="absolute",
            threshold=0.05,
        ),
    )
    assert _poll(prometheus_stack, revisions["good"], revisions["champion"], checks)["status"] == PASS
    verdict = _poll(prometheus_stack, revisions["errors"], revisions["champion"], checks)
    assert verdict["status"] == FAIL
    assert verdict["checks"][0]["canary"] == pytest.approx(0.20)


def test_query_scalar_and_empty(prometheus_stack) -> None:
    hook = PrometheusHook(base_url=prometheus_stack.url)
    assert hook.query("1 + 1") == 2.0
    assert hook.query('up{job="pushgateway"}') == 1.0
    assert hook.query('up{job="no-such-job"}') is None
    assert hook.query("0 / 0") is None  # NaN (no requests in the window) is no data


def test_several_series_ask_for_aggregation(prometheus_stack, revisions) -> None:
    promql = f'revision_request_count{{revision_name="{revisions["champion"]}"}}'
    with pytest.raises(ConfigurationError, match=r"returned 2 series.*sum\(\.\.\.\) or avg") as err:
        PrometheusHook(base_url=prometheus_stack.url).query(promql)
    assert promql in str(err.value)


def test_promql_error_is_a_configuration_error(prometheus_stack) -> None:
    with pytest.raises(
        ConfigurationError, match=r"bad_data error for query 'sum\(rate\(x\[1m\]\)': .*parse error"
    ):
        PrometheusHook(base_url=prometheus_stack.url).query("sum(rate(x[1m])")
    with pytest.raises(ConfigurationError, match="returned a matrix"):
        PrometheusHook(base_url=prometheus_stack.url).query("up[1m]")


def test_template_with_single_braces_is_refused(prometheus_stack) -> None:
    check = MetricCheck("bad", 'sum(up{job="{revision}"})')
    with pytest.raises(ConfigurationError, match="double the PromQL braces"):
        PrometheusHook(base_url=prometheus_stack.url).variant_values(
            [check], {"canary": "a", "champion": "b"}
        )


def test_unreachable_prometheus_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable, match=f"Prometheus at {url}/api/v1/query is unreachable"):
        PrometheusHook(base_url=url).query("up")
    ok, message = PrometheusHook(base_url=url).test_connection()
    assert not ok and url in message


def test_connection_fields_and_test_connection(prometheus_stack, monkeypatch) -> None:
    host, port = prometheus_stack.url.rsplit(":", 1)
    conn = {
        "conn_type": "prometheus",
        "host": host.removeprefix("http://"),
        "port": int(port),
        "login": "alice",
        "password": "s3cr3t-pw",
        "extra": {"timeout": 3},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PROMETHEUS_DEFAULT", json.dumps(conn))
    hook = PrometheusHook()
    assert (hook.base_url, hook.timeout) == (prometheus_stack.url, 3.0)
    assert hook._headers()["Authorization"] == "Basic YWxpY2U6czNjcjN0LXB3"  # alice:s3cr3t-pw
    ok, message = hook.test_connection()  # Prometheus without auth ignores the header
    assert ok and message.startswith("Connected to Prometheus 2.") and "s3cr3t-pw" not in message

    monkeypatch.setenv("AIRFLOW_CONN_PROMETHEUS_DEFAULT", json.dumps(conn | {"port": free_port()}))
    with pytest.raises(ServiceUnavailable) as err:
        PrometheusHook().query("up")
    assert "s3cr3t-pw" not in str(err.value) and "alice" not in str(err.value)


@pytest.mark.parametrize(
    ("fields", "error"),
    [({"host": ""}, "has no host"), ({"host": "http://p:9090", "extra": {"timeout": "soon"}}, "timeout")],
)
def test_bad_connection_is_a_configuration_error(monkeypatch, fields, error) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PROMETHEUS_DEFAULT", json.dumps({"conn_type": "prometheus", **fields}))
    with pytest.raises(ConfigurationError, match=error):
        PrometheusHook().query("up")
