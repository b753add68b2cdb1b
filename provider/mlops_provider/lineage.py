"""Lineage fingerprints shared by the trainer (which tags its MLflow run) and the DAG side (which looks
registered versions up by the same values before spending GPU hours). Torch-free and cheap to import.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any


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


def data_fingerprint(uri: str, local_copy: Path) -> str:
    """``<uri>@sha256:<hex>`` of a training set whose bytes are at ``local_copy``."""
    return f"{uri}@sha256:{file_sha256(local_copy)}"


def code_version() -> str:
    """MLOPS_CODE_VERSION (set by the trainer image build), else the package version plus the git commit."""
    from mlops_provider import __version__

    if os.environ.get("MLOPS_CODE_VERSION"):
        return os.environ["MLOPS_CODE_VERSION"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}"
