"""The names shared across modules: tags under one prefix, no value used twice, the trainer in step."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import mlops_provider
from mlops_provider import constants as c

TAG_NAMES = {name: value for name, value in vars(c).items() if name.endswith("_TAG")}
TRAINER_RUN = Path(mlops_provider.__file__).parent / "trainer" / "run.py"


def test_every_tag_lives_under_the_prefix() -> None:
    assert c.TAG_PREFIX == "mlops."
    assert len(TAG_NAMES) >= 25
    assert [n for n, v in TAG_NAMES.items() if not v.startswith(c.TAG_PREFIX) or v == c.TAG_PREFIX] == []
    # Family prefixes end with a dot, and each family's tags sit under theirs.
    families = {"GATE_": c.GATE_TAG, "CANARY_": c.CANARY_TAG, "DRIFT_": c.DRIFT_TAG}
    assert all(prefix.endswith(".") for prefix in families.values())
    for start, prefix in families.items():
        members = {n: v for n, v in TAG_NAMES.items() if n.startswith(start) and v != prefix}
        assert members and all(v.startswith(prefix) and v != prefix for v in members.values()), start
    for name in ("DATASET_DRIFT_TAG", "DRIFTED_FEATURES_TAG"):
        assert TAG_NAMES[name].startswith(c.DRIFT_TAG)


def test_no_two_names_share_a_value() -> None:
    assert len(set(TAG_NAMES.values())) == len(TAG_NAMES)
    assert len(set(c.ALIASES)) == len(c.ALIASES) == 4
    assert c.ALIASES == (c.CHAMPION, c.CHALLENGER, c.CANARY, c.PREVIOUS)
    statuses = (c.PROGRESSING, c.PROMOTED, c.ROLLED_BACK)
    verdicts = (c.PASS, c.FAIL, c.NO_DATA, c.INCONCLUSIVE)
    everything = [*c.ALIASES, *statuses, *verdicts]
    assert len(set(everything)) == len(everything)
    # A leaf tag is never a prefix of another (it would match a prefix search for the family).
    leaves = [v for v in TAG_NAMES.values() if not v.endswith(".")]
    assert [(a, b) for a in leaves for b in leaves if a != b and b.startswith(a + ".")] == []


def test_fingerprint_tags_are_the_lineage_tags_that_decide_reuse() -> None:
    assert c.FINGERPRINT_TAGS == (c.DATA_FINGERPRINT_TAG, c.CODE_VERSION_TAG, c.HYPERPARAMETERS_HASH_TAG)
    assert c.TRAINING_SET_URI_TAG not in c.FINGERPRINT_TAGS  # the URI may move; the bytes decide


def _trainer_run_tags() -> list[str]:
    """The keys of the ``tags`` dict that trainer/run.py passes to ``mlflow.start_run``."""
    tree = ast.parse(TRAINER_RUN.read_text())
    [function] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "train_and_log"]
    [assigned] = [
        n.value
        for n in ast.walk(function)
        if isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets] == ["tags"]
    ]
    assert isinstance(assigned, ast.Dict)
    [start_run] = [
        n for n in ast.walk(function) if isinstance(n, ast.Call) and ast.unparse(n.func) == "mlflow.start_run"
    ]
    assert [ast.unparse(k.value) for k in start_run.keywords if k.arg == "tags"] == ["tags"]
    keys = []
    for key in assigned.keys:
        assert key is not None  # no ** unpacking
        try:
            keys.append(ast.literal_eval(key))
        except ValueError:  # a name: resolve it from constants
            keys.append(getattr(c, ast.unparse(key).removeprefix("constants.")))
    return keys


def test_the_trainer_writes_exactly_the_tags_the_registry_searches_for_and_the_gate_reads() -> None:
    # The values are checked on a real run in tests/trainer/test_run.py; the task type is what the gate
    # and the canary judge the version as when they are not told.
    assert set(_trainer_run_tags()) == {*c.FINGERPRINT_TAGS, c.TRAINING_SET_URI_TAG, c.TASK_TYPE_TAG}


def test_kserve_coordinates_and_the_tag_limit() -> None:
    from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH, MAX_TAG_VAL_LENGTH

    assert c.KSERVE_API_VERSION == "serving.kserve.io/v1beta1" and c.KSERVE_KIND == "InferenceService"
    assert min(MAX_TAG_VAL_LENGTH, MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH) >= c.MAX_TAG_LENGTH


def test_constants_import_nothing() -> None:
    source = inspect.getsource(c)
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imports] == ["from __future__ import annotations"]
    done = subprocess.run(
        [sys.executable, "-c", "import sys, mlops_provider.constants; print(len(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    baseline = subprocess.run(
        [sys.executable, "-c", "import sys, mlops_provider; print(len(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert int(done.stdout) == int(baseline.stdout) + 1  # the module itself, nothing else
