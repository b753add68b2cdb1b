"""Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point.

Connection forms are declared here as data (``conn-fields`` / ``ui-field-behaviour``) so the API
server can draw them without importing our hooks and their heavy libraries.
"""

from __future__ import annotations

from typing import Any

from mlops_provider import __version__

_DOCS = "https://github.com/airflow-provider-mlops/airflow-provider-mlops/tree/main/docs"
_HIDDEN_HOST_FIELDS = ["host", "schema", "login", "password", "port"]


def _text(label: str, description: str, *, secret: bool = False, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "description": description, "schema": schema}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-mlops",
        "name": "MLOps",
        "description": "Feast, Great Expectations, GPU training on Kubernetes, MLflow gates and canary "
        "rollouts for Apache Airflow 3.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "Feast", "external-doc-url": "https://docs.feast.dev/", "tags": ["ml"]},
            {
                "integration-name": "Great Expectations",
                "external-doc-url": "https://docs.greatexpectations.io/docs/core/introduction/",
                "tags": ["software"],
            },
            {
                "integration-name": "MLflow",
                "external-doc-url": "https://mlflow.org/docs/latest/",
                "tags": ["ml"],
            },
            {
                "integration-name": "GPU training",
                "external-doc-url": f"{_DOCS}/training.md",
                "tags": ["ml", "kubernetes"],
            },
            {
                "integration-name": "Canary deployment",
                "external-doc-url": f"{_DOCS}/canary.md",
                "tags": ["ml", "kubernetes"],
            },
            {
                "integration-name": "Drift detection",
                "external-doc-url": f"{_DOCS}/drift.md",
                "tags": ["ml"],
            },
            {
                "integration-name": "Landing area",
                "external-doc-url": f"{_DOCS}/operators/landing.md",
                "tags": ["software"],
            },
            {
                "integration-name": "DAG run conf",
                "external-doc-url": f"{_DOCS}/configuration.md",
                "tags": ["software"],
            },
            {
                "integration-name": "KServe",
                "external-doc-url": "https://kserve.github.io/website/",
                "tags": ["ml"],
            },
            {
                "integration-name": "Prometheus",
                "external-doc-url": "https://prometheus.io/docs/",
                "tags": ["service"],
            },
        ],
        "operators": [
            {"integration-name": "Feast", "python-modules": ["mlops_provider.operators.feast"]},
            {"integration-name": "Great Expectations", "python-modules": ["mlops_provider.operators.gx"]},
            {"integration-name": "MLflow", "python-modules": ["mlops_provider.operators.mlflow"]},
            {
                "integration-name": "GPU training",
                "python-modules": [
                    "mlops_provider.operators.training",
                    "mlops_provider.operators.kubernetes",
                ],
            },
            {"integration-name": "Canary deployment", "python-modules": ["mlops_provider.operators.canary"]},
            {"integration-name": "Drift detection", "python-modules": ["mlops_provider.operators.drift"]},
            {"integration-name": "Landing area", "python-modules": ["mlops_provider.operators.landing"]},
            {"integration-name": "DAG run conf", "python-modules": ["mlops_provider.operators.run_conf"]},
        ],
        "sensors": [
            {"integration-name": "Feast", "python-modules": ["mlops_provider.sensors.feast"]},
            {"integration-name": "MLflow", "python-modules": ["mlops_provider.sensors.mlflow"]},
            {"integration-name": "Canary deployment", "python-modules": ["mlops_provider.sensors.canary"]},
        ],
        "hooks": [
            {"integration-name": "Feast", "python-modules": ["mlops_provider.hooks.feast"]},
            {"integration-name": "Great Expectations", "python-modules": ["mlops_provider.hooks.gx"]},
            {"integration-name": "MLflow", "python-modules": ["mlops_provider.hooks.mlflow"]},
            {"integration-name": "KServe", "python-modules": ["mlops_provider.hooks.kserve"]},
            {"integration-name": "Prometheus", "python-modules": ["mlops_provider.hooks.prometheus"]},
        ],
        "triggers": [
            {"integration-name": "Feast", "python-modules": ["mlops_provider.triggers.feast"]},
            {"integration-name": "MLflow", "python-modules": ["mlops_provider.triggers.mlflow"]},
            {"integration-name": "Canary deployment", "python-modules": ["mlops_provider.triggers.canary"]},
        ],
        "extra-links": [
            "mlops_provider.links.gx.GXDataDocsLink",
            "mlops_provider.links.mlflow.MLflowRunLink",
            "mlops_provider.links.mlflow.MLflowModelVersionLink",
        ],
        # The "ML models" UI view, loaded from the installed package (no plugins folder needed). The
        # name must be the class's ``name``: Airflow keeps one plugin per name, so a copy of the class in
        # a plugins folder (the repository's plugins/ml_models.py) is the same plugin, not a second one.
        "plugins": [
            {"name": "ml_models", "plugin-class": "mlops_provider.plugins.ml_models.MLModelsPlugin"},
        ],
        "connection-types": [
            {
                "connection-type": "feast",
                "hook-class-name": "mlops_provider.hooks.feast.FeastHook",
                "hook-name": "Feast feature store",
                "conn-fields": {
                    "repo_path": _text("Repo path", "Directory holding feature_store.yaml."),
                    "config_overrides": _text(
                        "feature_store.yaml overrides (JSON)",
                        'Merged over feature_store.yaml, e.g. {"online_store": {"type": "redis", '
                        '"connection_string": "redis:6379"}}.',
                    ),
                },
                "ui-field-behaviour": {"hidden-fields": _HIDDEN_HOST_FIELDS},
            },
            {
                "connection-type": "mlflow",
                "hook-class-name": "mlops_provider.hooks.mlflow.MLflowHook",
                "hook-name": "MLflow",
                "conn-fields": {
                    "registry_uri": _text(
                        "Registry URI", "Model registry URI when it differs from tracking."
                    ),
                    "token": _text("Token", "Bearer token (MLFLOW_TRACKING_TOKEN).", secret=True),
                    "insecure_tls": {
                        "label": "Insecure TLS",
                        "description": "Skip TLS certificate verification (MLFLOW_TRACKING_INSECURE_TLS).",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "ui_base_url": _text("UI base URL", "Where links to runs and models point."),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "Tracking URI", "login": "Username", "password": "Password"},
                    "placeholders": {"host": "http://mlflow:5000 or sqlite:///mlflow.db"},
                },
            },
            {
                "connection-type": "prometheus",
                "hook-class-name": "mlops_provider.hooks.prometheus.PrometheusHook",
                "hook-name": "Prometheus",
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (s)",
                        "description": "Seconds to wait for a query (default 10).",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {"host": "Base URL", "login": "Username", "password": "Password"},
                    "placeholders": {"host": "http://prometheus:9090"},
                },
            },
        ],
    }
