"""The canonical Assets: one name and URI per thing, so producers and consumers cannot drift apart."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset

from mlops_provider.assets import (
    drift_asset,
    feature_view_asset,
    labels_asset,
    model_alias_asset,
    training_set_asset,
)


@pytest.mark.parametrize(
    ("asset", "name", "uri"),
    [
        (
            feature_view_asset("churn", "customer_activity"),
            "feast_churn_customer_activity",
            "feast://churn/feature-views/customer_activity",
        ),
        (training_set_asset("churn_v1"), "training_set_churn_v1", "feast://training-sets/churn_v1"),
        (
            model_alias_asset("churn", "champion"),
            "model_churn_champion",
            "mlflow://models/churn/aliases/champion",
        ),
        (drift_asset("churn"), "drift_churn", "mlflow://models/churn/drift"),
        (labels_asset("churn_labels"), "labels_churn_labels", "labels://datasets/churn_labels"),
    ],
)
def test_names_and_uris(asset: Asset, name: str, uri: str) -> None:
    assert isinstance(asset, Asset)
    assert (asset.name, asset.uri) == (name, uri)


def test_the_same_arguments_give_equal_assets_and_different_ones_do_not() -> None:
    assert model_alias_asset("churn", "champion") == model_alias_asset("churn", "champion")
    assert model_alias_asset("churn", "champion") != model_alias_asset("churn", "canary")
    assert feature_view_asset("a", "b") != feature_view_asset("b", "a")
    every = [
        feature_view_asset("churn", "churn"),
        training_set_asset("churn"),
        *(model_alias_asset("churn", alias) for alias in ("champion", "challenger", "canary")),
        drift_asset("churn"),
    ]
    assert len({a.name for a in every}) == len({a.uri for a in every}) == len(every)
