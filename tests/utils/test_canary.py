"""The canary tasks' shared base: JSON arguments, the strategy, the backend, the version, the values.

Alias lookups, storage URIs and models come from a real ``mlflow server``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from mlflow import MlflowClient

from mlops_provider.canary.backends.batch import BatchCanaryBackend
from mlops_provider.canary.backends.kserve import DEFAULT_KSERVE_CHECKS, KServeCanaryBackend
from mlops_provider.canary.strategy import DEFAULT_BATCH_CHECKS, CanaryStrategy, MetricCheck
from mlops_provider.constants import EVAL_SET_URI_TAG
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.links.mlflow import MLflowModelVersionLink
from mlops_provider.utils.canary import CanaryTask, as_dict, build_backend, fetch_values
from tests.mlflow_helpers import unique_name

KSERVE = {"service": "churn", "namespace": "models"}


def task(**kwargs: Any) -> CanaryTask:
    return CanaryTask(task_id="canary", **({"name": "churn"} | kwargs))


@pytest.fixture
def registered(mlflow_conn: Any, models: dict[str, dict[str, str]]) -> tuple[MlflowClient, str]:
    """A registered model with two versions of the truth model and no alias."""
    client = MlflowClient(mlflow_conn.tracking_uri)
    name = unique_name("utils")
    client.create_registered_model(name)
    model = models["truth"]
    for _ in range(2):
        client.create_model_version(
            name,
            model["model_uri"],
            run_id=model["run_id"],
            model_id=model["model_uri"].removeprefix("models:/"),
        )
    return client, name


def test_as_dict_accepts_objects_and_their_rendered_json() -> None:
    assert as_dict(None, "strategy") == {} and as_dict("", "strategy") == {}
    assert as_dict({"steps": [5]}, "strategy") == {"steps": [5]}
    assert as_dict('{"steps": [5, 50]}', "strategy") == {"steps": [5, 50]}
    with pytest.raises(ConfigurationError, match=r"^strategy is not valid JSON: Expecting"):
        as_dict("{'steps': [5]}", "strategy")  # a Python repr, not JSON
    with pytest.raises(ConfigurationError, match="backend_config must be an object, not list"):
        as_dict("[1, 2]", "backend_config")
    with pytest.raises(ConfigurationError, match="backend_config must be an object, not int"):
        as_dict(3, "backend_config")


def test_the_strategy_defaults_per_backend_and_is_checked_against_it() -> None:
    batch = {"traffic_uri": "/t.parquet", "log_root": "/logs", "entity_column": "customer_id"}
    assert task(backend_config=batch).parsed_strategy() == CanaryStrategy()
    assert task(backend_config=batch).parsed_strategy().metrics == DEFAULT_BATCH_CHECKS
    kserve = task(backend="kserve", backend_config=KSERVE, strategy='{"steps": [10, 100]}').parsed_strategy()
    assert kserve.metrics == DEFAULT_KSERVE_CHECKS and kserve.steps == (10, 100)
    own = [dataclasses.asdict(DEFAULT_KSERVE_CHECKS[0])]
    assert task(
        backend="kserve", backend_config=KSERVE, strategy={"metrics": own}
    ).parsed_strategy().metrics == (DEFAULT_KSERVE_CHECKS[0],)
    with pytest.raises(ConfigurationError, match="cannot compute"):  # PromQL on the batch backend
        task(backend_config=batch, strategy={"metrics": own}).parsed_strategy()
    with pytest.raises(ConfigurationError, match=r"needs config key\(s\) \['log_root', 'entity_column'\]"):
        task().parsed_strategy()
    with pytest.raises(ConfigurationError, match=r"needs config key\(s\) \['entity_column'\]"):
        task(backend_config={"log_root": "/logs"}).parsed_strategy()  # no default: the data's own key
    no_traffic = {"log_root": "/logs", "entity_column": "id"}  # the version's eval-set tag
    assert task(backend_config=no_traffic).parsed_strategy() == CanaryStrategy()


def test_the_version_given_wins_else_the_first_alias_set(registered: tuple[MlflowClient, str]) -> None:
    client, name = registered
    controller = task(name=name, backend="kserve", backend_config=KSERVE).controller(
        client, with_backend=False
    )
    assert controller.backend is None and controller.name == name
    assert task(name=name, version=2).resolved_version(controller) == "2"
    for unset in (None, "", "None"):  # "None": how Jinja renders an unset param
        with pytest.raises(ConfigurationError, match=r"has none of the aliases \['canary', 'challenger'\]"):
            task(name=name, version=unset).resolved_version(controller)
    client.set_registered_model_alias(name, "challenger", "1")
    assert task(name=name, version="None").resolved_version(controller) == "1"
    client.set_registered_model_alias(name, "canary", "2")
    assert task(name=name).resolved_version(controller) == "2"


def test_build_backend_batch_takes_the_config_as_it_is() -> None:
    hook, log = MLflowHook(), logging.getLogger("t")
    backend = build_backend(
        "batch",
        {
            "traffic_uri": "/t/*.parquet",
            "log_root": "/logs/",
            "label_column": "churned",
            "entity_column": "id",
        },
        hook,
        log,
    )
    assert isinstance(backend, BatchCanaryBackend)
    assert (backend.hook, backend.traffic_uri, backend.log_root) == (hook, "/t/*.parquet", "/logs")
    assert (backend.label_column, backend.entity_column, backend.log) == ("churned", "id", log)
    with pytest.raises(TypeError, match="unexpected keyword argument 'service'"):
        build_backend(
            "batch", {"traffic_uri": "x", "log_root": "y", "entity_column": "id", "service": "z"}, hook
        )


def test_build_backend_batch_reads_version_tags_from_the_registry(
    registered: tuple[MlflowClient, str],
) -> None:
    client, name = registered
    client.set_model_version_tag(name, "2", EVAL_SET_URI_TAG, "s3://data/eval_sets/v2.parquet")
    backend = build_backend("batch", {"log_root": "/logs", "entity_column": "customer_id"}, MLflowHook())
    assert isinstance(backend, BatchCanaryBackend) and backend.version_tags is not None
    assert backend.version_tags(name, "2")[EVAL_SET_URI_TAG] == "s3://data/eval_sets/v2.parquet"
    assert backend.traffic(name, "1", "2") == {
        "traffic_uri": "s3://data/eval_sets/v2.parquet",
        "traffic_source": EVAL_SET_URI_TAG,
    }


def test_build_backend_kserve_resolves_storage_uris_from_the_registry(
    registered: tuple[MlflowClient, str],
) -> None:
    client, name = registered
    config = KSERVE | {"kubernetes_conn_id": "k8s_models", "render": {"model_format": "sklearn"}}
    backend = build_backend("kserve", config, MLflowHook())
    assert isinstance(backend, KServeCanaryBackend)
    assert backend.hook.kubernetes_conn_id == "k8s_models"
    assert (backend.service, backend.namespace) == ("churn", "models")
    assert backend.storage_uri(name, "2") == client.get_model_version_download_uri(name, "2")
    manifest = backend.manifest("s3://m/2", 5)
    assert manifest["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}
    assert build_backend("kserve", KSERVE, MLflowHook()).hook.kubernetes_conn_id == "kubernetes_default"
    with pytest.raises(ConfigurationError, match="name 'Churn' is invalid"):
        build_backend("kserve", {"service": "Churn", "namespace": "models"}, MLflowHook())


def test_fetch_values_for_batch_reads_the_steps_log(
    registered: tuple[MlflowClient, str], eval_data: Any, tmp_path: Any
) -> None:
    _, name = registered
    config = {
        "traffic_uri": str(eval_data),
        "log_root": str(tmp_path),
        "label_column": "churned",
        "entity_column": "customer_id",
    }
    hook = MLflowHook()
    BatchCanaryBackend(hook, **config).set_weight(name, "1", "2", 100, step=0)
    strategy = CanaryStrategy()
    values = fetch_values("batch", config, hook, name, "2", 0, strategy, poll=0)
    assert values == BatchCanaryBackend(hook, **config).values(name, "2", 0, strategy, poll=0)
    assert set(values) == {"error_rate", "latency_p95_ms", "prediction_psi", "roc_auc"}
    assert values["prediction_psi"] == (0.0, 0.0)  # the same model on both sides
    # The poll index reaches the backend: the next poll judges other customers.
    mean = MetricCheck("mean", "mean_probability", compare="absolute", threshold=1.0)
    polls = [
        fetch_values("batch", config, hook, name, "2", 0, CanaryStrategy(metrics=(mean,)), poll=poll)
        for poll in (0, 1)
    ]
    assert polls[0]["mean"] != polls[1]["mean"]


def test_every_canary_task_links_to_its_model_version() -> None:
    assert [type(link) for link in CanaryTask.operator_extra_links] == [MLflowModelVersionLink]
    assert CanaryTask.default_aliases == ("canary", "challenger")
