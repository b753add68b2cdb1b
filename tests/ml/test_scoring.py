"""Batch scoring with a canary split, the prediction log and its analysis, on generated data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_provider.example_data.generator import GeneratorConfig, activity_table, labels_table
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.ml import scoring
from tests.mlflow_helpers import ChurnRuleModel

DAY = dt.date(2026, 1, 3)


@pytest.fixture(scope="module")
def traffic() -> pd.DataFrame:
    cfg = GeneratorConfig(rows_per_day=2000)
    features = activity_table(cfg, DAY).to_pandas()
    labels = labels_table(cfg, DAY + dt.timedelta(days=2)).to_pandas()[["customer_id", "churned"]]
    return features.merge(labels, on="customer_id")


def _models(champion: str, canary: str | None = None) -> dict:
    models = {"champion": ("1", ChurnRuleModel(champion))}
    if canary:
        models["canary"] = ("2", ChurnRuleModel(canary))
    return models


class _Pyfunc:
    """What mlflow.pyfunc.load_model returns: predict(frame) without a context."""

    def __init__(self, kind: str) -> None:
        self.model = ChurnRuleModel(kind)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.model.predict(None, frame)


def _score(traffic, weight, champion="truth", canary="truth", **kwargs) -> pd.DataFrame:
    models = {"champion": ("1", _Pyfunc(champion)), "canary": ("2", _Pyfunc(canary))}
    return scoring.score(
        traffic,
        models,
        entity_column="customer_id",
        weight=weight,
        salt="churn",
        keep_columns=["churned", "event_timestamp"],
        **kwargs,
    )


def test_split_is_stable_and_grows_monotonically(traffic) -> None:
    keys = traffic["customer_id"]
    at5, again, at25 = (scoring.canary_mask(keys, w, "churn") for w in (5, 5, 25))
    assert (at5 == again).all()
    assert not (at5 & ~at25).any()  # every customer in the 5 % stays in the 25 %
    assert 0.03 < at5.mean() < 0.07 and 0.21 < at25.mean() < 0.29
    other_model = scoring.canary_mask(keys, 5, "another-model")
    assert (at5 != other_model).any()  # each model splits independently


def test_log_has_one_row_per_entity_with_variants_and_versions(traffic) -> None:
    log = _score(traffic, 25)
    assert len(log) == len(traffic) and log["customer_id"].is_unique
    assert set(log["variant"]) == {"champion", "canary"}
    assert set(log.loc[log["variant"] == "canary", "model_version"]) == {"2"}
    assert list(log.columns[:3]) == ["customer_id", "churned", "event_timestamp"]
    assert log["error"].isna().all() and (log["latency_ms"] > 0).all()
    assert (log["canary_weight"] == 25).all()


def test_weight_zero_or_no_canary_sends_everything_to_the_champion(traffic) -> None:
    assert set(_score(traffic, 0)["variant"]) == {"champion"}
    only = scoring.score(
        traffic, {"champion": ("1", _Pyfunc("truth"))}, entity_column="customer_id", weight=50, salt="churn"
    )
    assert set(only["variant"]) == {"champion"}


def test_a_failing_request_marks_its_rows_as_errors_and_the_analysis_fails_it(traffic) -> None:
    log = _score(traffic, 50, canary="flaky", request_rows=16)
    canary = log[log["variant"] == "canary"]
    assert canary["error"].str.contains("flaky model").any()
    assert canary["probability"][canary["error"].notna()].isna().all()
    values = scoring.analyse(log, "churned")
    assert values["error_rate"][0] > 0.5 and values["error_rate"][1] == 0.0


def test_analysis_sees_a_constant_model_as_a_shift_and_a_quality_drop(traffic) -> None:
    good = scoring.analyse(_score(traffic, 50), "churned")
    bad = scoring.analyse(_score(traffic, 50, canary="constant"), "churned")
    assert good["prediction_psi"][0] < 0.1 and bad["prediction_psi"][0] > 1.0
    assert abs(good["roc_auc"][0] - good["roc_auc"][1]) < 0.05
    assert bad["roc_auc"][0] == pytest.approx(0.5)
    assert scoring.analyse(_score(traffic, 50))["roc_auc"] == (None, None)  # no labels, no quality


def test_missing_columns_are_named(traffic) -> None:
    with pytest.raises(ConfigurationError, match="entity column 'customer'"):
        scoring.score(traffic, _models("truth"), entity_column="customer", weight=5, salt="x")
    with pytest.raises(ConfigurationError, match="needs a champion"):
        scoring.score(traffic, {}, entity_column="customer_id", weight=5, salt="x")


def test_log_is_replaced_whole_and_reads_back(traffic, tmp_path) -> None:
    uri = str(tmp_path / "date=2026-01-03" / "predictions.parquet")
    scoring.write_log(_score(traffic, 5), uri)
    scoring.write_log(_score(traffic, 5), uri)
    assert len(scoring.read_log(uri)) == len(traffic)  # a re-run replaces, never appends
    assert list(tmp_path.rglob("*.tmp")) == []
    with pytest.raises(DataNotFound, match="could not be read"):
        scoring.read_log(str(tmp_path / "missing.parquet"))


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_constant() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(size=5000)
    assert scoring.population_stability(a, a) == pytest.approx(0.0, abs=1e-9)
    assert scoring.population_stability(a, np.full(5000, 0.3)) > 1.0


def test_shadow_scoring_compares_both_models_on_the_canarys_own_rows(traffic) -> None:
    same = _score(traffic, 30, shadow=True)
    canary = same[same["variant"] == "canary"]
    assert canary["shadow_probability"].notna().all()
    assert same.loc[same["variant"] == "champion", "shadow_probability"].isna().all()
    values = scoring.analyse(same, "churned", min_quality_rows=100)
    assert values["prediction_psi"][0] == pytest.approx(0.0, abs=1e-9)
    assert values["roc_auc"][0] == values["roc_auc"][1]  # paired: equal models differ by exactly 0
    worse = scoring.analyse(_score(traffic, 30, canary="weak", shadow=True), "churned", min_quality_rows=100)
    assert worse["roc_auc"][0] < worse["roc_auc"][1] - 0.05
