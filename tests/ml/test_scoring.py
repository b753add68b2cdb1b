"""Batch scoring with a canary split, the prediction log and its analysis, on generated data."""

from __future__ import annotations

import datetime as dt
import re

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
    values = scoring.analyse(same, "churned", min_samples=100)
    assert values["prediction_psi"][0] == pytest.approx(0.0, abs=1e-9)
    assert values["roc_auc"][0] == values["roc_auc"][1]  # paired: equal models differ by exactly 0
    worse = scoring.analyse(_score(traffic, 30, canary="weak", shadow=True), "churned", min_samples=100)
    assert worse["roc_auc"][0] < worse["roc_auc"][1] - 0.05


def test_at_weight_100_the_champion_is_timed_on_its_shadow_requests(traffic) -> None:
    log = _score(traffic, 100, shadow=True)
    assert set(log["variant"]) == {"canary"}  # the champion serves nothing at weight 100
    shadow = log["shadow_latency_ms"]
    assert shadow.notna().all() and (shadow > 0).all()

    latency = scoring.analyse(log, "churned")["latency_p95_ms"]

    assert latency[1] == pytest.approx(float(shadow.quantile(0.95)))
    assert latency[0] == pytest.approx(float(log["latency_ms"].quantile(0.95)))
    # Without shadow scoring there is nothing to time the champion on: the analysis has no value for it.
    assert scoring.analyse(_score(traffic, 100), "churned")["latency_p95_ms"][1] is None


def test_poll_slices_are_disjoint_equal_and_hold_their_share_of_each_variant(traffic) -> None:
    keys = traffic["customer_id"]
    variant = np.where(scoring.canary_mask(keys, 5, "churn"), "canary", "champion")  # 5 %: ~100 canary rows
    masks = [scoring.poll_slice(keys, poll, 9, "churn|step=0", strata=variant) for poll in range(9)]
    assert (sum(m.astype(int) for m in masks) == 1).all()  # every entity in exactly one slice
    for side in ("canary", "champion"):  # dealt out in turn: no slice short of its share, none empty
        sizes = [int((m & (variant == side)).sum()) for m in masks]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) > 0, (side, sizes)
    again = scoring.poll_slice(keys, 2, 9, "churn|step=0", strata=variant)
    assert (again == masks[2]).all()  # stable across calls (and processes: a fixed hash key)
    other_step = scoring.poll_slice(keys, 2, 9, "churn|step=1", strata=variant)
    assert (other_step != masks[2]).any()  # each step slices anew
    plain = [scoring.poll_slice(keys, poll, 4, "churn") for poll in range(4)]  # no strata: one pool
    assert sorted(int(m.sum()) for m in plain) == [500, 500, 500, 500]
    with pytest.raises(ConfigurationError, match=r"Poll 5 has no slice: .* split into 5 slices"):
        scoring.poll_slice(keys, 5, 5, "churn")
    with pytest.raises(ConfigurationError, match="Poll slices must be a whole number"):
        scoring.poll_slice(keys, 0, 0, "churn")


def test_consecutive_polls_judge_different_traffic(traffic) -> None:
    log = _score(traffic, 50, canary="weak", shadow=True)
    slices = [log.loc[scoring.poll_slice(log["customer_id"], poll, 3, "churn|step=0")] for poll in range(3)]
    ids = [set(s["customer_id"]) for s in slices]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    values = [scoring.analyse(s, "churned", min_samples=100) for s in slices]
    for metric in ("rows", "prediction_psi", "mean_probability", "roc_auc"):
        assert len({v[metric] for v in values}) == 3, metric  # no two polls read the same numbers


def test_quality_waits_for_min_samples_labelled_rows_and_min_positives(traffic) -> None:
    log = _score(traffic, 20, shadow=True)
    canary = log[log["variant"] == "canary"]
    labelled = len(canary)
    positives = int(canary["churned"].sum())
    assert 250 < labelled < 550 and positives >= 20
    judged = scoring.analyse(log, "churned", min_samples=labelled, min_positives=positives)
    assert judged["roc_auc"][0] is not None and judged["accuracy"][0] is not None
    too_few = scoring.analyse(log, "churned", min_samples=labelled + 1)
    assert too_few["roc_auc"] == too_few["accuracy"] == (None, None)  # below min_samples: no data
    rare = scoring.analyse(log, "churned", min_samples=labelled, min_positives=positives + 1)
    assert rare["roc_auc"] == (None, None) and rare["accuracy"][0] is not None  # AUC needs positives
    unlabelled = log.assign(churned=log["churned"].where(log.index % 2 == 0))  # half the labels late
    late = scoring.analyse(unlabelled, "churned", min_samples=labelled)
    assert late["roc_auc"] == (None, None)  # rows without a label do not count
    assert scoring.analyse(log, "churned")["roc_auc"][0] is not None  # the default: 200 rows


@pytest.fixture(scope="module")
def signed_model(traffic, tmp_path_factory):
    """The truth model saved with a signature, loaded back as MLflow pyfunc: it enforces its inputs."""
    import mlflow
    from mlflow.models import infer_signature

    features = traffic.drop(columns=["customer_id", "churned", "event_timestamp"]).head(50)
    path = tmp_path_factory.mktemp("signed") / "model"
    output = ChurnRuleModel("truth").predict(None, features)
    mlflow.pyfunc.save_model(
        str(path),
        python_model=ChurnRuleModel("truth"),
        signature=infer_signature(features, output),
        pip_requirements=["mlflow"],
    )
    return mlflow.pyfunc.load_model(str(path))


def test_an_mlflow_schema_error_is_kept_as_its_cause_without_the_data_dump(traffic, signed_model) -> None:
    rows = traffic.drop(columns=["tenure_days"]).head(40)
    with pytest.raises(Exception) as raised:  # noqa: PT011 - MLflow's own error, whatever its class
        signed_model.predict(rows.drop(columns=["customer_id", "churned"]))
    assert str(raised.value).startswith("Failed to enforce schema of data")  # the dump scoring drops

    log = scoring.score(
        rows,
        {"champion": ("1", signed_model)},
        entity_column="customer_id",
        weight=0,
        salt="churn",
        keep_columns=["churned", "event_timestamp"],
        request_rows=16,
    )

    assert set(log["error"]) == {"MlflowException: Model is missing inputs ['tenure_days']."}
    assert scoring.error_summary(log["error"]) == (
        "40 error(s): MlflowException x40; first: MlflowException: Model is missing inputs ['tenure_days']."
    )


def test_error_summaries_count_each_class_and_quote_the_first_cause_clipped(traffic) -> None:
    assert scoring.error_summary(pd.Series([None, np.nan], dtype=object)) is None
    errors = pd.Series([None, "KeyError: 'x'", "RuntimeError: boom", "KeyError: 'y'", "E: " + "z" * 400])
    summary = scoring.error_summary(errors)
    assert summary.startswith("4 error(s): KeyError x2, RuntimeError x1, E x1; first: KeyError: 'x'")
    long = scoring.error_summary(errors.iloc[4:])
    assert long.endswith("z…") and len(long.partition("first: ")[2]) == scoring.FIRST_ERROR_CHARS
    assert scoring.error_text(ValueError("a\n   b\tc")) == "ValueError: a b c"

    log = _score(traffic, 30, canary="flaky", request_rows=16, shadow=True)
    summaries = scoring.error_summaries(log)
    assert summaries["champion"] is None
    assert re.fullmatch(
        r"\d+ error\(s\): RuntimeError x\d+; first: RuntimeError: flaky model: cannot score a tenure "
        r"divisible by 5",
        summaries["canary"],
    )
    assert "shadow_error" in log.columns and log["shadow_error"].isna().all()  # the champion never fails


def test_at_weight_100_the_champions_error_rate_comes_from_its_shadow_requests(traffic) -> None:
    log = _score(traffic, 100, champion="flaky", request_rows=16, shadow=True)
    values = scoring.analyse(log, "churned")
    assert values["error_rate"][0] == 0.0 and values["error_rate"][1] > 0.5
    assert scoring.error_summaries(log)["champion"].split(": ", 1)[1].startswith("RuntimeError x")


# -- other tasks: multiclass and regression models -----------------------------------------------------

CLASSES = ("0", "1", "2")


class _Regressor:
    """A plain regressor as a pyfunc: predict() returns a 1-D array of the spend it expects."""

    def __init__(self, slope: float = 1.2) -> None:
        self.slope = slope

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.slope * frame["spend_30d"].to_numpy() + 0.05 * frame["minutes_watched_7d"].to_numpy()


class _Classifier:
    """A multiclass pyfunc predicting the tenure band ("0", "1" or "2", as text): ``truth``, ``constant``
    (always "0") or ``broken`` (no per-class probabilities: breaks the contract)."""

    def __init__(self, kind: str = "truth") -> None:
        self.kind = kind

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        band = _band(frame) if self.kind != "constant" else np.zeros(len(frame), dtype=int)
        out = pd.DataFrame({"prediction": band.astype(str), "probability": np.full(len(frame), 0.8)})
        if self.kind == "broken":
            return out
        for c in CLASSES:
            out[f"probability_{c}"] = np.where(band.astype(str) == c, 0.8, 0.1)
        return out


class _Renamed:
    """The churn truth's output, its ``prediction`` column misnamed ``label``."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return _Pyfunc("truth").predict(frame).rename(columns={"prediction": "label"})


def _band(frame: pd.DataFrame) -> np.ndarray:
    return np.clip(frame["tenure_days"].to_numpy() // 1200, 0, 2)


@pytest.fixture(scope="module")
def labelled(traffic) -> pd.DataFrame:
    """The traffic with a number to predict (``spend_next_30d``) and a class (``band``, an integer)."""
    noise = np.random.default_rng(1).normal(scale=2.0, size=len(traffic))
    spend = 1.2 * traffic["spend_30d"] + 0.05 * traffic["minutes_watched_7d"] + noise
    return traffic.assign(spend_next_30d=spend, band=_band(traffic))


def _score_task(frame, task_type, champion, canary, weight=40, **kwargs) -> pd.DataFrame:
    return scoring.score(
        frame.drop(columns=["churned", "event_timestamp"]),
        {"champion": ("1", champion), "canary": ("2", canary)},
        entity_column="customer_id",
        weight=weight,
        salt="tasks",
        task_type=task_type,
        keep_columns=["spend_next_30d", "band"],
        shadow=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("task_type", "model", "label", "dtype"),
    [
        ("binary", lambda: _Pyfunc("truth"), "churned", "Int64"),
        ("multiclass", _Classifier, "band", "object"),
        ("regression", _Regressor, "spend_next_30d", "float64"),
    ],
)
def test_equal_models_show_no_prediction_shift_for_every_task(
    labelled, task_type, model, label, dtype, tmp_path
):
    frame = labelled if task_type != "binary" else labelled.drop(columns=["spend_next_30d", "band"])
    log = scoring.score(
        frame,
        {"champion": ("1", model()), "canary": ("2", model())},
        entity_column="customer_id",
        weight=40,
        salt="tasks",
        task_type=task_type,
        keep_columns=[label, "event_timestamp", "churned"],
        shadow=True,
    )
    uri = scoring.write_log(log, str(tmp_path / "log.parquet"))
    log = scoring.read_log(uri)  # the types survive the round trip
    assert str(log["prediction"].dtype) == str(log["shadow_prediction"].dtype) == dtype
    assert log["error"].isna().all()

    values = scoring.analyse(log, label, task_type=task_type, min_samples=100)

    assert values["prediction_psi"] == (pytest.approx(0.0, abs=1e-9), 0.0)
    judged = {m for m, v in values.items() if v != (None, None)}
    health = {"rows", "error_rate", "latency_p95_ms", "prediction_psi"}
    assert (
        judged - health
        == {
            "binary": {"mean_probability", "roc_auc", "accuracy"},
            "multiclass": {"mean_probability", "accuracy", "macro_f1"},
            "regression": {"mean_prediction", "rmse", "mae"},
        }[task_type]
    )


def test_a_regression_model_is_judged_on_rmse_mae_and_the_shift_of_its_predictions(labelled) -> None:
    log = _score_task(labelled, "regression", _Regressor(), _Regressor(slope=0.8))
    canary = log[log["variant"] == "canary"]
    assert canary["probability"].isna().all() and canary["prediction"].notna().all()

    values = scoring.analyse(log, "spend_next_30d", task_type="regression", min_samples=100)

    (rmse, champion_rmse), (mae, champion_mae) = values["rmse"], values["mae"]
    assert 1.5 < champion_rmse < 2.5 and champion_mae < champion_rmse  # the label's noise: sd 2
    assert rmse > 2 * champion_rmse and mae > 2 * champion_mae
    assert values["mean_prediction"][0] < values["mean_prediction"][1]  # a third less spend expected
    assert values["prediction_psi"][0] > 0.25
    assert values["roc_auc"] == values["mean_probability"] == (None, None)
    too_few = scoring.analyse(log, "spend_next_30d", task_type="regression", min_samples=len(canary) + 1)
    assert too_few["rmse"] == too_few["mae"] == (None, None)  # min_samples holds for every task


def test_a_multiclass_model_is_judged_on_its_classes_as_text(labelled) -> None:
    log = _score_task(labelled, "multiclass", _Classifier(), _Classifier("constant"))
    canary = log[log["variant"] == "canary"]
    assert set(canary["prediction"]) == {"0"} and set(canary["shadow_prediction"]) <= set(CLASSES)

    values = scoring.analyse(log, "band", task_type="multiclass", min_samples=100)

    # The integer labels and the text predictions are the same classes: the truth is always right.
    assert values["accuracy"][1] == values["macro_f1"][1] == 1.0
    share = float((canary["band"] == 0).mean())
    assert values["accuracy"][0] == pytest.approx(share) and values["macro_f1"][0] < 0.4
    assert values["mean_probability"] == (pytest.approx(0.8), pytest.approx(0.8))  # the predicted class's
    assert values["prediction_psi"][0] > 1.0  # one class where there were three
    assert values["roc_auc"] == values["rmse"] == (None, None)


@pytest.mark.parametrize(
    ("task_type", "model", "violation"),
    [
        (
            "binary",
            _Regressor,
            r"a binary model's predict\(\) must return a DataFrame with column\(s\) "
            r"probability, prediction; it returned \[\]",
        ),
        (
            "multiclass",
            lambda: _Classifier("broken"),
            r"a multiclass model's predict\(\) must return a "
            r"DataFrame with column\(s\) probability_<class> for every class \(at least two\)",
        ),
        (
            "regression",
            _Renamed,
            r"a regression model's predict\(\) must return a "
            r"DataFrame with column\(s\) prediction; it returned \['label', 'probability'\]",
        ),
    ],
)
def test_an_output_that_breaks_the_contract_is_a_request_error_naming_the_violation(
    labelled, task_type, model, violation
) -> None:
    champion = {"binary": lambda: _Pyfunc("truth"), "multiclass": _Classifier, "regression": _Regressor}
    log = _score_task(labelled, task_type, champion[task_type](), model(), weight=30, request_rows=128)
    served = log[log["variant"] == "canary"]
    assert served["error"].notna().all() and served["prediction"].isna().all()
    summary = scoring.error_summaries(log)
    assert summary["champion"] is None
    assert re.fullmatch(
        rf"(\d+) error\(s\): ContractViolation x\1; first: ContractViolation: {violation}.*",
        summary["canary"],
    )
    values = scoring.analyse(log, None, task_type=task_type)
    assert values["error_rate"][0] == 1.0 and values["prediction_psi"][0] == scoring.PSI_CAP


def test_category_psi_is_zero_for_the_same_shares_and_compares_classes_as_text() -> None:
    assert scoring.category_stability([1, 2, 2, 3], ["3", "2", "1", "2"]) == pytest.approx(0.0)
    assert scoring.category_stability(["a", "b"] * 50, ["a"] * 100) > 1.0
    assert scoring.category_stability(["a", None], ["a"]) == pytest.approx(0.0)  # missing values left out
    assert np.isnan(scoring.category_stability([], ["a"]))


def test_an_unknown_task_type_is_refused_by_name(traffic) -> None:
    with pytest.raises(ConfigurationError, match="Unknown task type 'ordinal'; use one of binary"):
        _score(traffic, 5, task_type="ordinal")
    with pytest.raises(ConfigurationError, match="Unknown task type 'Binary'"):
        scoring.analyse(_score(traffic, 5), "churned", task_type="Binary")
