"""``python -m mlops_provider.trainer``: the module runs the CLI and exits with its code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlops_provider.trainer import EXIT_BAD_INPUT, RESULT_MARKER


def trainer(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_provider.trainer", *argv], capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_flag_and_exits_zero() -> None:
    done = trainer("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m mlops_provider.trainer")
    flags = ("--training-set", "--label", "--task-type", "--timestamp-column", "--features", "--epochs")
    for flag in (*flags, "--hyperparameters", "--val-fraction"):
        assert flag in done.stdout


def test_exit_codes_pass_through(tmp_path: Path) -> None:
    usage = trainer()
    assert usage.returncode == 2 and "the following arguments are required: --training-set" in usage.stderr
    refused = trainer(
        "--training-set", str(tmp_path / "absent.parquet"), "--label", "churned", "--experiment", "e"
    )
    assert refused.returncode == EXIT_BAD_INPUT
    assert "refusing to train: training set" in refused.stderr and "does not exist" in refused.stderr
    assert RESULT_MARKER not in refused.stdout
