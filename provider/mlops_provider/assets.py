"""Canonical Airflow Assets that the shipped DAGs produce and schedule on.

One definition per asset, shared by producers and consumers, so a typo cannot silently split an asset
in two. URIs use our own schemes; Airflow treats them as opaque identifiers.
"""

from __future__ import annotations

from airflow.sdk import Asset


def feature_view_asset(project: str, feature_view: str) -> Asset:
    """The online data of one Feast feature view; updated after each materialization."""
    return Asset(
        name=f"feast_{project}_{feature_view}", uri=f"feast://{project}/feature-views/{feature_view}"
    )


def training_set_asset(feature_service: str) -> Asset:
    """A point-in-time-correct training set built from a feature service."""
    return Asset(name=f"training_set_{feature_service}", uri=f"feast://training-sets/{feature_service}")


def model_alias_asset(model_name: str, alias: str) -> Asset:
    """A registered MLflow model's alias (``champion``, ``challenger``, ``canary``); updated when it moves."""
    return Asset(name=f"model_{model_name}_{alias}", uri=f"mlflow://models/{model_name}/aliases/{alias}")


def drift_asset(model_name: str) -> Asset:
    """Feature drift found against the training data of a registered model's champion."""
    return Asset(name=f"drift_{model_name}", uri=f"mlflow://models/{model_name}/drift")


def labels_asset(dataset: str) -> Asset:
    """Validated labels of one dataset; each event's extra names the labelled snapshot day (start, end)."""
    return Asset(name=f"labels_{dataset}", uri=f"labels://datasets/{dataset}")
