"""Loading the training set: every refusal names the column and what to do; the split is by time."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from mlops_provider.trainer.data import (
    TrainingDataError,
    fetch,
    load,
    load_evaluation,
    split_by_time,
    time_range,
)
from tests.trainer.conftest import (
    TABULAR_DAYS,
    TABULAR_KEY,
    TABULAR_LABEL,
    TABULAR_TIMESTAMP,
    feast_metadata,
    tabular_frame,
    write_parquet,
)
from tests.training_data import build_training_set

KEYS = ("customer_id",)  # the example data's entity key: an identifier, not a feature

DAYS, ROWS = 6, 100


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path = build_training_set(tmp_path_factory.mktemp("data"), days=DAYS, rows_per_day=ROWS, null_labels=7)
    return pd.read_parquet(path)


def _save(frame: pd.DataFrame, directory: Path, name: str = "set") -> str:
    path = directory / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


def test_a_good_set_is_checked_typed_and_split_by_time(good: pd.DataFrame, tmp_path: Path) -> None:
    uri = _save(good.assign(label_timestamp=good["event_timestamp"] + pd.Timedelta(days=2)), tmp_path)

    data = load(uri, "churned", "event_timestamp", 0.25, KEYS)

    assert len(data.train) + len(data.validation) == (DAYS - 2) * ROWS - 7  # null labels dropped
    assert data.train["event_timestamp"].max() < data.validation["event_timestamp"].min()
    assert data.categorical == ["plan", "country"]
    assert "customer_id" not in data.features and "label_timestamp" not in data.features  # keys and dates
    assert set(data.numeric) == set(good.columns) - {
        "customer_id",
        "event_timestamp",
        "churned",
        "plan",
        "country",
    }
    assert data.features == [*data.categorical, *data.numeric] and data.label == "churned"
    assert data.train["churned"].dtype == "int64" and set(data.train["churned"]) == {0, 1}
    assert (
        data.fingerprint == f"sha256:{hashlib.sha256(Path(uri).read_bytes()).hexdigest()}" and data.uri == uri
    )
    file_uri = load(f"file://{uri}", "churned", "event_timestamp", 0.25, KEYS)
    assert file_uri.fingerprint == data.fingerprint and len(file_uri.train) == len(data.train)


def test_boolean_and_text_labels_are_read_as_zero_and_one(good: pd.DataFrame, tmp_path: Path) -> None:
    labelled = good.dropna(subset=["churned"])
    as_bool = load(
        _save(labelled.assign(churned=labelled["churned"] == 1), tmp_path, "b"),
        "churned",
        "event_timestamp",
        0.2,
    )
    as_text = load(
        _save(labelled.assign(churned=labelled["churned"].astype(int).astype(str)), tmp_path, "t"),
        "churned",
        "event_timestamp",
        0.2,
    )
    for data in (as_bool, as_text):
        assert data.train["churned"].dtype == "int64"
        assert data.train["churned"].sum() + data.validation["churned"].sum() == int(
            labelled["churned"].sum()
        )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "is empty; check the feature pipeline's date range"),
        ("no_label", "has no column 'churned' (columns: "),
        ("no_timestamp", "pass the right --timestamp-column"),
        ("null_labels", "every 'churned' is null; labels have not landed yet"),
        ("not_binary", "label 'churned' must be 0/1 or boolean, found "),
        ("single_class", "label 'churned' has a single class (0)"),
        ("dict_feature", "feature 'payload' holds dict values the trainer cannot encode"),
        ("bytes_feature", "feature 'blob' holds bytes values"),
        ("only_keys", "has no feature columns besides ['churned', 'customer_id', 'event_timestamp']"),
        ("one_snapshot", "every row has the same 'event_timestamp'"),
    ],
)
def test_bad_sets_are_refused_naming_the_problem(
    good: pd.DataFrame, tmp_path: Path, case: str, message: str
) -> None:
    labelled = good.dropna(subset=["churned"]).reset_index(drop=True)
    n = len(labelled)
    frame = {
        "empty": labelled.head(0),
        "no_label": labelled.drop(columns=["churned"]),
        "no_timestamp": labelled.drop(columns=["event_timestamp"]),
        "null_labels": labelled.assign(churned=pd.array([None] * n, dtype="Int64")),
        "not_binary": labelled.assign(churned=labelled["churned"].astype(int) * 2),
        "single_class": labelled.assign(churned=0),
        "dict_feature": labelled.assign(payload=[{"k": i} for i in range(n)]),
        "bytes_feature": labelled.assign(blob=[b"\x00"] * n),
        "only_keys": labelled[["customer_id", "event_timestamp", "churned"]],
        "one_snapshot": labelled.assign(event_timestamp=labelled["event_timestamp"].iloc[0]),
    }[case]
    uri = _save(frame, tmp_path, case)
    with pytest.raises(TrainingDataError) as err:
        load(uri, "churned", "event_timestamp", 0.2, KEYS)
    assert str(err.value).startswith(f"training set {uri}")
    assert message in str(err.value)


def test_a_missing_local_set_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="does not exist; run the feature pipeline first"):
        fetch(str(tmp_path / "absent.parquet"), tmp_path)
    present = tmp_path / "set.parquet"
    present.write_bytes(b"")
    assert fetch(f"file://{present}", tmp_path / "unused") == present


def test_split_by_time_puts_the_last_fraction_of_the_range_in_validation() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    frame = pd.DataFrame(
        {"ts": [start + dt.timedelta(days=d) for d in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)], "x": range(11)}
    )
    train, validation = split_by_time(frame.sample(frac=1, random_state=0), "ts", 0.3, "t")
    assert sorted(validation["x"]) == [7, 8, 9, 10]  # cut-off at day 7 of 0..10
    assert sorted(train["x"]) == list(range(7)) and list(train.index) == list(range(7))


def _later(good: pd.DataFrame) -> pd.DataFrame:
    """The good set moved past its own time range: the same columns, no row in common."""
    span = good["event_timestamp"].max() - good["event_timestamp"].min() + pd.Timedelta(days=1)
    return good.assign(event_timestamp=good["event_timestamp"] + span)


def test_an_evaluation_set_is_checked_against_the_training_set(good: pd.DataFrame, tmp_path: Path) -> None:
    training = load(_save(good, tmp_path, "train"), "churned", "event_timestamp", 0.25, KEYS)
    later = _later(good).assign(extra_column=1)  # columns the training set lacks are ignored
    uri = _save(later, tmp_path, "eval")

    evaluation = load_evaluation(uri, training)

    assert len(evaluation.frame) == (DAYS - 2) * ROWS - 7  # null labels dropped
    assert evaluation.frame["churned"].dtype == "int64" and set(evaluation.frame["churned"]) == {0, 1}
    assert evaluation.uri == uri
    assert evaluation.fingerprint == f"sha256:{hashlib.sha256(Path(uri).read_bytes()).hexdigest()}"
    assert (
        time_range(training.validation, "event_timestamp").split("/")[1]
        < time_range(evaluation.frame, "event_timestamp").split("/")[0]
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_label", "has no column 'churned' (columns: "),
        ("no_timestamp", "pass the right --timestamp-column"),
        ("no_key", "lacks the training set's columns ['customer_id']"),
        ("no_features", "lacks the training set's columns ['plan', 'tenure_days']; build it from the same"),
        ("text_number", "feature 'tenure_days' is text here but numeric in the training set"),
        ("single_class", "label 'churned' has a single class (1) in "),
        ("training_rows", "shares 393 rows (same ['customer_id', 'event_timestamp']) with the training set"),
    ],
)
def test_bad_evaluation_sets_are_refused_naming_the_column(
    good: pd.DataFrame, tmp_path: Path, case: str, message: str
) -> None:
    training = load(_save(good, tmp_path, "train"), "churned", "event_timestamp", 0.25, KEYS)
    later = _later(good).dropna(subset=["churned"])
    frame = {
        "no_label": later.drop(columns=["churned"]),
        "no_timestamp": later.drop(columns=["event_timestamp"]),
        "no_key": later.drop(columns=["customer_id"]),
        "no_features": later.drop(columns=["plan", "tenure_days"]),
        "text_number": later.assign(tenure_days=later["tenure_days"].astype(str)),
        "single_class": later.assign(churned=1),
        "training_rows": pd.concat([later, good.dropna(subset=["churned"]).head(393)]),
    }[case]
    uri = _save(frame, tmp_path, case)
    with pytest.raises(TrainingDataError) as err:
        load_evaluation(uri, training)
    assert str(err.value).startswith(f"evaluation set {uri}")
    assert message in str(err.value)


def test_an_evaluation_set_overlapping_in_time_is_kept_with_a_warning(
    good: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    training = load(_save(good, tmp_path, "train"), "churned", "event_timestamp", 0.25, KEYS)
    other_customers = good.assign(customer_id=good["customer_id"] + 10**9)  # the same days, other rows

    evaluation = load_evaluation(_save(other_customers, tmp_path, "eval"), training)

    assert len(evaluation.frame) == (DAYS - 2) * ROWS - 7
    assert "before the training window ends" in caplog.text
    no_keys = load(_save(good, tmp_path, "train"), "churned", "event_timestamp", 0.25)
    assert len(load_evaluation(_save(good, tmp_path, "same"), no_keys).frame) == len(evaluation.frame)


# -- columns from the contract: metadata, --features ------------------------------------------------------


def test_the_timestamp_and_id_columns_come_from_the_parquet_metadata(tmp_path: Path) -> None:
    uri = str(write_parquet(tabular_frame("binary"), tmp_path / "set.parquet", feast_metadata()))

    data = load(uri, TABULAR_LABEL, None, 0.2)

    assert data.timestamp_column == TABULAR_TIMESTAMP and data.id_columns == (TABULAR_KEY,)
    assert data.features == ["colour", "x", "z"]  # the key is no feature
    assert data.train[TABULAR_TIMESTAMP].max() < data.validation[TABULAR_TIMESTAMP].min()
    # Flags win over the metadata.
    given = load(uri, TABULAR_LABEL, TABULAR_TIMESTAMP, 0.2, ("colour",))
    assert given.id_columns == ("colour",) and given.features == [TABULAR_KEY, "x", "z"]


def test_without_metadata_there_are_no_id_columns_and_the_timestamp_must_be_given(tmp_path: Path) -> None:
    uri = str(write_parquet(tabular_frame("binary"), tmp_path / "set.parquet"))
    assert load(uri, TABULAR_LABEL, TABULAR_TIMESTAMP, 0.2).id_columns == ()
    with pytest.raises(TrainingDataError) as err:
        load(uri, TABULAR_LABEL, None, 0.2)
    assert str(err.value).startswith(f"training set {uri} does not say which column holds the event time")
    assert "pass --timestamp-column (the training set's event time column: timestamp_column of" in str(
        err.value
    )
    with pytest.raises(TrainingDataError, match=r"no id column\(s\) \['user'\].*pass the right --id-columns"):
        load(uri, TABULAR_LABEL, TABULAR_TIMESTAMP, 0.2, ("user",))


def test_features_are_exactly_the_listed_columns(tmp_path: Path) -> None:
    uri = str(write_parquet(tabular_frame("binary"), tmp_path / "set.parquet", feast_metadata()))
    data = load(uri, TABULAR_LABEL, None, 0.2, features=["z", "colour"])
    assert (data.categorical, data.numeric) == (["colour"], ["z"])
    with pytest.raises(TrainingDataError) as err:
        load(uri, TABULAR_LABEL, None, 0.2, features=["z", "height"])
    assert "has no feature column(s) ['height'] (columns: " in str(err.value)
    assert "pass the right --features (feature_columns of TrainModelOperator)" in str(err.value)
    with pytest.raises(
        TrainingDataError, match=r"of TrainModelOperator\) lists \['account'\], the label, timestamp or id"
    ):
        load(uri, TABULAR_LABEL, None, 0.2, features=["z", TABULAR_KEY])


# -- task types ---------------------------------------------------------------------------------------------


def test_multiclass_labels_keep_their_values_and_the_classes_are_sorted_by_text(tmp_path: Path) -> None:
    frame = tabular_frame("multiclass")
    data = load(_save(frame, tmp_path, "text"), TABULAR_LABEL, TABULAR_TIMESTAMP, 0.2, task_type="multiclass")
    assert data.task_type == "multiclass" and data.classes == ("high", "low", "mid")
    codes = frame[TABULAR_LABEL].map({"low": 2, "mid": 10, "high": 1})
    as_ints = load(
        _save(frame.assign(**{TABULAR_LABEL: codes}), tmp_path, "ints"),
        TABULAR_LABEL,
        TABULAR_TIMESTAMP,
        0.2,
        task_type="multiclass",
    )
    assert as_ints.classes == (1, 10, 2) and all(type(c) is int for c in as_ints.classes)
    assert as_ints.train[TABULAR_LABEL].dtype == "int64"
    as_floats = load(  # whole numbers stored as floats (e.g. after a join) are integer classes
        _save(frame.assign(**{TABULAR_LABEL: codes.astype(float)}), tmp_path, "floats"),
        TABULAR_LABEL,
        TABULAR_TIMESTAMP,
        0.2,
        task_type="multiclass",
    )
    assert as_floats.classes == (1, 10, 2)


@pytest.mark.parametrize(
    ("task_type", "label", "message"),
    [
        (
            "multiclass",
            ["only"] * 360,
            "label 'target' has 1 class ('only') in 360 rows; a multiclass label needs at least two: "
            "widen the training window or pass the right --label (label_column of TrainModelOperator)",
        ),
        ("multiclass", [0.5, 1.0] * 180, "label 'target' holds fractional numbers such as 0.5, not classes"),
        (
            "regression",
            ["high", "low"] * 180,
            "label 'target' must be numeric for a regression, found 'high'",
        ),
        ("regression", [4.0] * 360, "label 'target' has the single value 4.0 in 360 rows; nothing to learn"),
        ("binary", ["a", "b"] * 180, "pass --task-type (task_type of TrainModelOperator) multiclass or"),
    ],
)
def test_a_label_that_does_not_fit_the_task_is_refused(
    tmp_path: Path, task_type: str, label: list[object], message: str
) -> None:
    uri = _save(tabular_frame("binary").assign(**{TABULAR_LABEL: label}), tmp_path)
    with pytest.raises(TrainingDataError) as err:
        load(uri, TABULAR_LABEL, TABULAR_TIMESTAMP, 0.2, task_type=task_type)
    assert message in str(err.value)


def test_a_regression_label_is_a_float(tmp_path: Path) -> None:
    frame = tabular_frame("regression")
    data = load(_save(frame, tmp_path), TABULAR_LABEL, TABULAR_TIMESTAMP, 0.2, task_type="regression")
    assert data.train[TABULAR_LABEL].dtype == "float64" and data.classes == ()
    with pytest.raises(ValueError, match="Unknown task type 'ranking'"):
        load(_save(frame, tmp_path), TABULAR_LABEL, TABULAR_TIMESTAMP, 0.2, task_type="ranking")


def test_evaluation_rows_of_a_class_never_trained_on_are_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    training = load(
        _save(tabular_frame("multiclass"), tmp_path, "train"),
        TABULAR_LABEL,
        TABULAR_TIMESTAMP,
        0.2,
        task_type="multiclass",
    )
    later = tabular_frame("multiclass", rows=60, seed=1, first_day=TABULAR_DAYS)
    later.loc[:4, TABULAR_LABEL] = "extreme"

    evaluation = load_evaluation(_save(later, tmp_path, "eval"), training)

    assert len(evaluation.frame) == 60 and (evaluation.frame[TABULAR_LABEL] == "extreme").sum() == 5
    assert "5 of 60 rows have a class the training set never had (extreme)" in caplog.text
