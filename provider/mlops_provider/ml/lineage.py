"""Lineage fingerprints shared by the trainer (which tags its MLflow run) and the DAG side (which looks
registered versions up by the same values before spending GPU hours). Torch-free and cheap to import.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def hyperparameters_hash(hyperparameters: dict[str, Any] | str | None) -> str:
    """16 hex digits identifying a hyperparameter dict (key order does not matter; JSON text accepted)."""
    if isinstance(hyperparameters, str):
        hyperparameters = json.loads(hyperparameters) if hyperparameters.strip() else {}
    canonical = json.dumps(hyperparameters or {}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """Hash a file, or every file of a directory in sorted order together with its relative path."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_fingerprint(local_copy: Path) -> str:
    """``sha256:<hex>`` of a data set whose bytes are at ``local_copy``: its content only. Never its URI,
    which holds the day: the same rows written for another day, or moved, are the same data."""
    return f"sha256:{file_sha256(local_copy)}"


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """16 hex digits identifying a DataFrame's values and column order (the index is ignored)."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.sha256(json.dumps(list(map(str, frame.columns))).encode() + hashed).hexdigest()[:16]


def trainer_sources_hash() -> str:
    """12 hex digits over the reference trainer's source files (and this module, which tags its runs).

    The same on an Airflow worker and in the trainer image, whatever the git checkout: a commit that
    leaves the trainer alone does not retrain.
    """
    digest = hashlib.sha256()
    root = Path(__file__).parents[1] / "trainer"  # a path, not an import: ml sits below the trainer
    for file in sorted([*root.rglob("*.py"), Path(__file__)]):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def code_version() -> str:
    """MLOPS_CODE_VERSION when set (a custom trainer image says what it runs), else the package version
    plus a hash of the trainer's sources."""
    from mlops_provider import __version__

    return os.environ.get("MLOPS_CODE_VERSION") or f"{__version__}+src.{trainer_sources_hash()}"
