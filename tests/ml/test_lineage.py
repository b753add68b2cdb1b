"""Lineage fingerprints: hyperparameters, files, frames, the trainer's sources and the code version."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

import mlops_provider
from mlops_provider.ml.lineage import (
    code_version,
    data_fingerprint,
    file_sha256,
    frame_fingerprint,
    hyperparameters_hash,
    trainer_sources_hash,
)

PACKAGE = Path(mlops_provider.__file__).parent


def test_hyperparameters_hash_ignores_key_order() -> None:
    assert hyperparameters_hash({"a": 1, "b": [1, 2]}) == hyperparameters_hash({"b": [1, 2], "a": 1})
    assert hyperparameters_hash({"a": 1}) != hyperparameters_hash({"a": 2})
    assert len(hyperparameters_hash({})) == 16


def test_hyperparameters_hash_accepts_json_text_and_treats_nothing_as_empty() -> None:
    assert hyperparameters_hash('{"b": [1, 2], "a": 1}') == hyperparameters_hash({"a": 1, "b": [1, 2]})
    empty = hyperparameters_hash({})
    assert hyperparameters_hash(None) == hyperparameters_hash("") == hyperparameters_hash("  ") == empty
    assert empty == hashlib.sha256(b"{}").hexdigest()[:16]
    assert hyperparameters_hash({"lr": 0.01}) != hyperparameters_hash({"lr": "0.01"})  # types matter


def test_file_sha256_of_a_file_and_of_a_directory(tmp_path: Path) -> None:
    data = tmp_path / "train.parquet"
    data.write_bytes(b"x" * 3_000_000)  # more than one read block
    assert file_sha256(data) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    # The content alone: the same bytes at another URI (another day's path) are the same data.
    assert data_fingerprint(data) == f"sha256:{hashlib.sha256(b'x' * 3_000_000).hexdigest()}"

    tree = tmp_path / "dataset"
    (tree / "date=1").mkdir(parents=True)
    (tree / "date=1" / "part.parquet").write_bytes(b"one")
    (tree / "part.parquet").write_bytes(b"two")
    first = file_sha256(tree)
    assert first == file_sha256(tree)
    (tree / "date=1" / "part.parquet").rename(tree / "date=1" / "renamed.parquet")
    assert file_sha256(tree) != first  # relative paths are part of the hash, not only contents
    (tree / "date=1" / "renamed.parquet").rename(tree / "date=1" / "part.parquet")
    assert file_sha256(tree) == first
    (tree / "part.parquet").write_bytes(b"TWO")
    assert file_sha256(tree) != first


def test_frame_fingerprint_is_stable_and_sensitive_to_values_and_column_order() -> None:
    frame = pd.DataFrame(
        {"customer_id": [1, 2, 3], "plan": ["basic", "premium", None], "spend": [1.5, 0.0, 2.0]}
    )
    fingerprint = frame_fingerprint(frame)
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert frame_fingerprint(frame.copy()) == fingerprint
    assert frame_fingerprint(frame.set_index(pd.Index([7, 8, 9]))) == fingerprint  # the index is ignored
    changed = frame.copy()
    changed.loc[1, "spend"] = 0.5
    assert frame_fingerprint(changed) != fingerprint
    assert frame_fingerprint(frame[["plan", "customer_id", "spend"]]) != fingerprint
    assert frame_fingerprint(frame.rename(columns={"spend": "spend_30d"})) != fingerprint
    assert frame_fingerprint(frame.iloc[::-1]) != fingerprint  # row order too
    assert frame_fingerprint(frame.iloc[:2]) != fingerprint


def _lineage_copy(tmp_path: Path) -> tuple[ModuleType, Path]:
    """A copy of the package's lineage module and trainer sources, loaded from the copy."""
    root = tmp_path / "mlops_provider"
    shutil.copytree(PACKAGE / "trainer", root / "trainer", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "ml").mkdir()
    shutil.copy2(PACKAGE / "ml" / "lineage.py", root / "ml" / "lineage.py")
    spec = importlib.util.spec_from_file_location("lineage_copy", root / "ml" / "lineage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, root


def test_trainer_sources_hash_is_stable_and_follows_the_trainers_sources(tmp_path: Path) -> None:
    copy, root = _lineage_copy(tmp_path)
    original = trainer_sources_hash()
    assert len(original) == 12 and original == trainer_sources_hash()
    # Where the checkout lives does not matter: a copy of the same sources hashes the same.
    assert copy.trainer_sources_hash() == original

    serving = root / "trainer" / "serving.py"
    source = serving.read_text()
    serving.write_text(source.replace("THRESHOLD = 0.5", "THRESHOLD = 0.6"))
    changed = copy.trainer_sources_hash()
    assert changed != original
    serving.write_text(source)
    assert copy.trainer_sources_hash() == original

    (root / "trainer" / "extra.py").write_text("VALUE = 1\n")  # a new trainer module counts
    assert copy.trainer_sources_hash() != original
    (root / "trainer" / "extra.py").unlink()
    (root / "trainer" / "README.txt").write_text("docs")  # only Python sources count
    assert copy.trainer_sources_hash() == original

    lineage_py = root / "ml" / "lineage.py"  # the module that tags the runs counts too
    lineage_py.write_text(lineage_py.read_text() + "\n# changed\n")
    assert copy.trainer_sources_hash() != original


def test_code_version_honours_mlops_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_CODE_VERSION", raising=False)
    assert code_version() == f"{mlops_provider.__version__}+src.{trainer_sources_hash()}"
    monkeypatch.setenv("MLOPS_CODE_VERSION", "registry.example.com/trainer:2026.01.3")
    assert code_version() == "registry.example.com/trainer:2026.01.3"
    monkeypatch.setenv("MLOPS_CODE_VERSION", "")  # empty means unset
    assert code_version().startswith(f"{mlops_provider.__version__}+src.")


def test_lineage_is_cheap_to_import_and_use_without_torch_pandas_mlflow_or_airflow() -> None:
    code = (
        "import sys; import mlops_provider.ml.lineage as l; l.hyperparameters_hash({'a': 1}); l.code_version(); "
        "print(sorted(m for m in ('torch', 'pandas', 'mlflow', 'airflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
