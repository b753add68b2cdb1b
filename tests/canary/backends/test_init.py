"""``check_config``: a canary backend's config and metric checks are refused by name before anything runs."""

from __future__ import annotations

import re

import pytest

from mlops_provider.canary.backends import BACKENDS, check_config
from mlops_provider.canary.backends.kserve import DEFAULT_KSERVE_CHECKS
from mlops_provider.canary.strategy import CanaryStrategy, MetricCheck
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.ml.scoring import BATCH_METRICS

BATCH = {"traffic_uri": "/data/traffic/*.parquet", "log_root": "/data/predictions", "entity_column": "id"}
KSERVE = {"service": "churn", "namespace": "models"}
KSERVE_STRATEGY = CanaryStrategy(metrics=DEFAULT_KSERVE_CHECKS)


def test_valid_configs_pass() -> None:
    assert BACKENDS == ("batch", "kserve")
    check_config("batch", BATCH, CanaryStrategy())
    check_config("batch", BATCH | {"label_column": "y", "request_rows": 64}, CanaryStrategy())
    every_metric = tuple(MetricCheck(m, m, compare="absolute", threshold=1.0) for m in BATCH_METRICS)
    check_config("batch", BATCH, CanaryStrategy(metrics=every_metric))
    check_config("kserve", KSERVE, KSERVE_STRATEGY)
    check_config(
        "kserve",
        KSERVE
        | {
            "kubernetes_conn_id": "k8s",
            "prometheus_conn_id": "prom",
            "prometheus_url": "http://p:9090",
            "render": {"model_format": "sklearn"},
        },
        KSERVE_STRATEGY,
    )


@pytest.mark.parametrize(
    ("kind", "config", "strategy", "message"),
    [
        (
            "seldon",
            BATCH,
            CanaryStrategy(),
            "Unknown canary backend 'seldon'; use one of ['batch', 'kserve'].",
        ),
        (
            "batch",
            BATCH | {"trafic_uri": "x"},
            CanaryStrategy(),
            "Canary backend 'batch': unknown config key(s) ['trafic_uri']",
        ),
        ("batch", BATCH | {"service": "churn"}, CanaryStrategy(), "unknown config key(s) ['service']"),
        (
            "kserve",
            KSERVE | {"log_root": "/x"},
            KSERVE_STRATEGY,
            "Canary backend 'kserve': unknown config key(s) ['log_root']",
        ),
        (
            "batch",
            {"traffic_uri": "x", "entity_column": "id"},
            CanaryStrategy(),
            "Canary backend 'batch' needs config key(s) ['log_root']: 'log_root' is where the per-step "
            "prediction logs go.",
        ),
        (
            "batch",
            {"traffic_uri": "", "log_root": "", "entity_column": "id"},  # no traffic_uri: the eval set
            CanaryStrategy(),
            "needs config key(s) ['log_root']",
        ),
        (
            "batch",
            {"log_root": "/x"},  # no default: the key is the data's, not the provider's
            CanaryStrategy(),
            "Canary backend 'batch' needs config key(s) ['entity_column']: 'entity_column' is the column "
            "of the traffic's entity key (the feature service's join key), which traffic is split on.",
        ),
        (
            "kserve",
            {"service": "churn"},
            KSERVE_STRATEGY,
            "Canary backend 'kserve' needs config key(s) ['namespace']: 'namespace' is the "
            "InferenceService's namespace.",
        ),
        ("batch", BATCH, KSERVE_STRATEGY, "Batch canary analysis cannot compute"),
        (
            "kserve",
            KSERVE,
            CanaryStrategy(),
            "KServe metric check(s) ['error_rate', 'latency_p95_ms', 'prediction_psi', 'roc_auc', 'macro_f1', 'rmse'] need a PromQL query with a {revision} placeholder.",
        ),
    ],
)
def test_bad_configs_are_refused_by_name(kind, config, strategy, message) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        check_config(kind, config, strategy)


def test_the_batch_refusal_lists_the_queries_it_can_compute() -> None:
    strategy = CanaryStrategy(
        metrics=(MetricCheck("p99", "latency_p99_ms"), MetricCheck("err", "error_rate"))
    )
    with pytest.raises(ConfigurationError) as err:
        check_config("batch", BATCH, strategy)
    assert str(err.value) == (
        f"Batch canary analysis cannot compute ['latency_p99_ms']; batch metric queries are {list(BATCH_METRICS)}."
    )
