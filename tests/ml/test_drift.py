"""Feature drift on the example generator's data: quiet days stay quiet, drifted days are named."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from mlops_provider.example_data.generator import GeneratorConfig, activity_table
from mlops_provider.exceptions import ConfigurationError, DataNotFound
from mlops_provider.ml import drift

START = dt.date(2026, 1, 1)
DRIFT_FROM = START + dt.timedelta(days=45)
ROWS = 2000
CATEGORICAL = ["plan", "country"]
# What the generator's drift moves: country mix, engagement (sessions, minutes watched) and prices.
DRIFTING = {"country", "sessions_7d", "minutes_watched_7d", "spend_30d"}
STABLE = {"plan", "tenure_days", "failed_payments_90d"}


def features_of(day_offset: int, **config) -> pd.DataFrame:
    cfg = GeneratorConfig(rows_per_day=ROWS, drift_from=DRIFT_FROM, **config)
    table = activity_table(cfg, START + dt.timedelta(days=day_offset)).to_pandas()
    return table.drop(columns=["customer_id", "event_timestamp"])


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return features_of(0)


@pytest.fixture(scope="module")
def drifted_day() -> pd.DataFrame:
    return features_of(DRIFT_FROM.toordinal() - START.toordinal())


def test_a_quiet_day_has_no_drift_in_any_feature(reference) -> None:
    report = drift.detect(reference, features_of(7))

    assert report["dataset_drift"] is False and report["drift_share"] == 0.0
    assert report["drifted_features"] == []
    assert report["features_tested"] == len(reference.columns)
    assert {f for f, r in report["features"].items() if r["type"] == "categorical"} == set(CATEGORICAL)
    for feature, r in report["features"].items():
        assert r["drifted"] is False and r["status"] == "ok", drift.describe(feature, r)
        assert r["reference_rows"] == r["current_rows"] == ROWS
        assert r["reference_null_fraction"] == r["current_null_fraction"] == r["null_fraction"] == 0.0
        assert r["new_category_share"] == (0.0 if feature in CATEGORICAL else None)
        assert "reason" not in r
    assert report["features"]["spend_30d"]["psi"] < 0.1 and report["features"]["spend_30d"]["ks_p"] > 0.05
    assert report["features"]["country"]["js"] < 0.05 and report["features"]["country"]["chi2_p"] > 0.05
    json.dumps(report, allow_nan=False)  # plain JSON, no NaN


def test_a_drifted_day_names_the_drifted_features(reference, drifted_day) -> None:
    report = drift.detect(reference, drifted_day)

    assert report["dataset_drift"] is True
    assert set(report["drifted_features"]) == DRIFTING
    assert report["drift_share"] == pytest.approx(len(DRIFTING) / len(reference.columns))
    for feature in STABLE:
        assert report["features"][feature]["drifted"] is False
    spend = report["features"]["spend_30d"]
    assert spend["psi"] >= 0.25 and spend["ks_p"] < 0.05 and spend["status"] == "drift"
    country = report["features"]["country"]
    assert country["js"] >= 0.1 and country["chi2_p"] < 0.05
    assert "'spend_30d' drifted: PSI" in drift.describe("spend_30d", spend)
    assert "'country' drifted: JS distance" in drift.describe("country", country)
    json.dumps(report, allow_nan=False)


def test_thirty_quiet_days_raise_no_false_alarm(reference) -> None:
    alarms = {}
    for offset in range(1, 31):
        report = drift.detect(reference, features_of(offset))
        if report["dataset_drift"] or report["drifted_features"]:
            alarms[offset] = report["drifted_features"]
    assert alarms == {}


def test_a_weak_drift_stays_below_the_dataset_threshold(reference) -> None:
    weak = features_of(DRIFT_FROM.toordinal() - START.toordinal(), drift_strength=0.2)
    report = drift.detect(reference, weak)
    assert report["dataset_drift"] is False and report["drift_share"] < 0.3


def test_large_samples_do_not_alarm_on_a_tiny_shift() -> None:
    """KS alone rejects a 0.03-sd shift at 200k rows; the PSI effect size keeps it quiet."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 200_000)})
    current = pd.DataFrame({"x": rng.normal(0.03, 1, 200_000)})

    x = drift.detect(reference, current)["features"]["x"]

    assert x["ks_p"] < 0.05 and x["psi"] < 0.1
    assert x["drifted"] is False and x["status"] == "ok"


def test_threshold_overrides_per_feature_and_for_all(reference, drifted_day) -> None:
    lenient = {"spend_30d": {"psi": 50.0}, "country": {"js": 0.9}}
    report = drift.detect(reference, drifted_day, thresholds=lenient)
    assert set(report["drifted_features"]) == DRIFTING - {"spend_30d", "country"}
    assert report["features"]["spend_30d"]["thresholds"] == {
        "psi": 50.0,
        "psi_warn": 0.1,
        "p_value": 0.05,
        "js": 0.1,
        "max_null_fraction_increase": 0.1,
        "max_new_category_share": 0.05,
    }
    assert report["features"]["spend_30d"]["status"] == "warn"  # past psi_warn, short of drift

    strict_p = drift.detect(reference, drifted_day, thresholds={"*": {"p_value": 1e-300}})
    assert strict_p["drifted_features"] == []
    assert drift.detect(reference, drifted_day, drift_share=0.5)["dataset_drift"] is False


def test_explicit_categorical_and_feature_subset(reference, drifted_day) -> None:
    report = drift.detect(
        reference, drifted_day, features=["plan", "failed_payments_90d"], categorical=["failed_payments_90d"]
    )
    assert report["features_tested"] == 2
    assert report["features"]["failed_payments_90d"]["type"] == "categorical"
    assert report["features"]["plan"]["type"] == "categorical"
    assert report["dataset_drift"] is False


def test_unseen_categories_fall_in_other_and_count_as_drift(reference) -> None:
    current = reference.copy()
    current.loc[: ROWS // 2, "country"] = "ZZ"  # half the rows from a market the model never saw

    country = drift.detect(reference, current)["features"]["country"]

    assert country["unseen_fraction"] == country["new_category_share"] == pytest.approx(0.5, abs=0.01)
    assert country["drifted"] is True and country["chi2_p"] < 1e-10
    assert "categories the reference never saw" in country["reason"]


def test_a_partition_that_loses_values_drifts_in_that_feature(reference) -> None:
    """60% nulls leave a random 40% that the tests find unchanged; the null-share check sees the loss."""
    current = features_of(7)
    current.loc[current.index % 5 < 3, "spend_30d"] = np.nan

    report = drift.detect(reference, current)

    spend = report["features"]["spend_30d"]
    assert spend["psi"] < 0.1 and spend["ks_p"] > 0.05  # what is left looks like the reference
    assert spend["drifted"] is True and spend["status"] == "drift"
    assert spend["null_fraction"] == spend["current_null_fraction"] == 0.6
    assert spend["reference_null_fraction"] == 0.0
    assert (
        spend["reason"] == "its null share rose from 0.0% in the reference to 60.0% (allowed increase 10.0%)"
    )
    assert report["drifted_features"] == ["spend_30d"]
    assert report["dataset_drift"] is False  # one feature of nine, under drift_share 0.3
    line = drift.describe("spend_30d", spend)
    assert line.startswith("Feature 'spend_30d' drifted: its null share rose from 0.0%") and "PSI" in line
    page = drift.render_html(report)
    assert '<tr class="drift"><td>spend_30d</td>' in page and "its null share rose" in page

    lenient = drift.detect(reference, current, thresholds={"spend_30d": {"max_null_fraction_increase": 0.7}})
    assert lenient["drifted_features"] == []


def test_a_null_share_that_stays_or_rises_a_little_does_not_drift(reference) -> None:
    sparse = reference.copy()
    sparse.loc[sparse.index % 10 == 0, "minutes_watched_7d"] = np.nan  # 10% null in the reference
    current = features_of(7)
    current.loc[current.index % 5 == 0, "minutes_watched_7d"] = np.nan  # 20%: ten points more, not past

    minutes = drift.detect(sparse, current)["features"]["minutes_watched_7d"]

    assert minutes["reference_null_fraction"] == pytest.approx(0.1)
    assert minutes["null_fraction"] == pytest.approx(0.2)
    assert minutes["drifted"] is False and "reason" not in minutes
    assert "null share 20.0% (reference 10.0%, allowed increase 10.0%)" in drift.describe(
        "minutes_watched_7d", minutes
    )
    assert drift.detect(reference, current)["features"]["minutes_watched_7d"]["drifted"] is True


@pytest.mark.parametrize(("share", "drifted"), [(0.04, False), (0.08, True)])
def test_new_categories_past_their_share_drift_on_their_own(reference, share, drifted) -> None:
    """With the JS and chi-squared tests made lenient, the new-category share alone decides."""
    current = features_of(7)
    current.loc[: int(share * ROWS) - 1, "country"] = "JP"  # a market the reference never saw

    country = drift.detect(reference, current, thresholds={"country": {"js": 1.0}})["features"]["country"]

    assert country["new_category_share"] == pytest.approx(share)
    assert country["drifted"] is drifted
    line = drift.describe("country", country)
    if drifted:
        assert country["reason"] == (
            "8.0% of its current values are categories the reference never saw (threshold 5.0%)"
        )
        assert line.startswith("Feature 'country' drifted: 8.0% of its current values are categories")
    else:
        assert "reason" not in country
        assert "4.0% new categories (threshold 5.0%)" in line


def test_a_feature_that_becomes_all_null_drifts(reference) -> None:
    current = reference.assign(spend_30d=np.nan)
    spend = drift.detect(reference, current)["features"]["spend_30d"]
    assert spend["drifted"] is True and spend["psi"] is None
    assert spend["current_null_fraction"] == 1.0 and "null in the current data" in spend["reason"]


def test_errors_name_what_is_wrong(reference) -> None:
    with pytest.raises(ConfigurationError, match=r"\['spend_30d'\] are missing from the current data"):
        drift.detect(reference, reference.drop(columns=["spend_30d"]))
    with pytest.raises(DataNotFound, match="current partition has no rows"):
        drift.detect(reference, reference.iloc[:0])
    with pytest.raises(ConfigurationError, match="'tenure_days' changed type: numeric"):
        drift.detect(reference, reference.assign(tenure_days=reference["tenure_days"].astype(str)))
    with pytest.raises(ConfigurationError, match=r"'spend_30d' have unknown key\(s\) \['psi_max'\]"):
        drift.detect(reference, reference, thresholds={"spend_30d": {"psi_max": 1}})
    with pytest.raises(ConfigurationError, match=r"feature\(s\) \['spend30d'\] that are not tested"):
        drift.detect(reference, reference, thresholds={"spend30d": {"psi": 0.3}})
    with pytest.raises(ConfigurationError, match="'p_value' must be in"):
        drift.detect(reference, reference, thresholds={"spend_30d": {"p_value": 5}})
    with pytest.raises(ConfigurationError, match=r"'max_new_category_share' must be in \[0, 1\]"):
        drift.detect(reference, reference, thresholds={"*": {"max_new_category_share": 2}})
    with pytest.raises(ConfigurationError, match="drift_share"):
        drift.detect(reference, reference, drift_share=0)
    with pytest.raises(ConfigurationError, match=r"Categorical feature\(s\) \['colour'\]"):
        drift.detect(reference, reference, categorical=["colour"])


def test_html_report_is_self_contained(reference, drifted_day) -> None:
    page = drift.render_html(drift.detect(reference, drifted_day), title="drift <v1>")
    assert page.startswith("<!DOCTYPE html>") and "drift &lt;v1&gt;" in page
    assert '<tr class="drift"><td>spend_30d</td>' in page
    assert "DRIFT" in page
    assert "http" not in page and "<script" not in page and "<link" not in page
