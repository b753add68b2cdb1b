"""``python -m mlops_provider.example_data``: writes the days asked for, one JSON line per day."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlops_provider.example_data.__main__ import main
from mlops_provider.example_data.generator import (
    ACTIVITY_DATASET,
    LABELS_DATASET,
    GeneratorConfig,
    activity_table,
    labels_table,
    partition_path,
)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--landing", str(tmp_path), "--start", "2026-01-01", "--days", "2", "--rows-per-day", "10"])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["day"] for line in lines] == ["2026-01-01", "2026-01-02"]
    assert all(Path(line["activity"]).is_file() and line["bad_mode"] is None for line in lines)


def test_the_module_runs_as_a_program_with_every_option(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "mlops_provider.example_data",
        "--landing",
        str(tmp_path),
        "--start",
        "2026-03-01",
        "--days",
        "3",
        "--rows-per-day",
        "40",
        "--seed",
        "7",
        "--epoch",
        "2026-02-27",
        "--drift-from",
        "2026-03-02",
        "--drift-strength",
        "2",
        "--concept-shift",
        "0.5",
        "--label-delay-days",
        "1",
        "--bad-mode",
        "empty",
        "--bad-day",
        "2026-03-03",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(w["day"], w["bad_mode"]) for w in written] == [
        ("2026-03-01", None),
        ("2026-03-02", None),
        ("2026-03-03", "empty"),
    ]
    second = dt.date(2026, 3, 2)
    cfg = GeneratorConfig(
        rows_per_day=40,
        seed=7,
        epoch=dt.date(2026, 2, 27),
        drift_from=second,
        drift_strength=2.0,
        concept_shift=0.5,
        label_delay_days=1,
    )
    assert pq.read_table(partition_path(tmp_path, ACTIVITY_DATASET, second)).equals(
        activity_table(cfg, second)
    )
    third = dt.date(2026, 3, 3)  # its labels are of the drifted, concept-shifted snapshot of the second
    assert pq.read_table(partition_path(tmp_path, LABELS_DATASET, third)).equals(labels_table(cfg, third))
    assert pq.read_table(partition_path(tmp_path, ACTIVITY_DATASET, dt.date(2026, 3, 3))).num_rows == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --landing, --start"),
        (["--landing", "x", "--start", "01/03/2026"], "argument --start: invalid fromisoformat value"),
        (
            ["--landing", "x", "--start", "2026-03-01", "--bad-mode", "nope"],
            "argument --bad-mode: invalid choice: 'nope'",
        ),
    ],
)
def test_bad_arguments_exit_two_with_usage(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlops_provider.example_data", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m mlops_provider.example_data")
    assert message in done.stderr and done.stdout == ""
