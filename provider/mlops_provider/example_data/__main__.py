"""Command line: ``python -m mlops_provider.example_data --landing data/landing --start 2026-01-01 --days 7``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from mlops_provider.example_data.generator import BAD_MODES, GeneratorConfig, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_provider.example_data", description=__doc__)
    parser.add_argument("--landing", required=True, help="landing root; partitions go under it")
    parser.add_argument("--start", required=True, type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1, help="number of consecutive days (default 1)")
    parser.add_argument("--rows-per-day", type=int, default=1_000, help="customers per day (default 1000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--epoch",
        type=dt.date.fromisoformat,
        default=GeneratorConfig.epoch,
        help=f"day 0 of the data: the same offset from it gives the same values (default {GeneratorConfig.epoch})",
    )
    parser.add_argument("--drift-from", type=dt.date.fromisoformat, default=None, help="first drifted day")
    parser.add_argument("--drift-strength", type=float, default=1.0)
    parser.add_argument(
        "--concept-shift",
        type=float,
        default=1.0,
        help="from --drift-from, how far churn moves to its new rule (0 keeps the old one; default 1)",
    )
    parser.add_argument("--label-delay-days", type=int, default=2)
    parser.add_argument("--bad-mode", choices=BAD_MODES, default=None, help="write malformed partitions")
    parser.add_argument(
        "--bad-day",
        type=dt.date.fromisoformat,
        action="append",
        default=[],
        help="day to corrupt (repeatable; default: every generated day)",
    )
    args = parser.parse_args(argv)
    cfg = GeneratorConfig(
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        epoch=args.epoch,
        drift_from=args.drift_from,
        drift_strength=args.drift_strength,
        concept_shift=args.concept_shift,
        label_delay_days=args.label_delay_days,
        bad_mode=args.bad_mode,
        bad_days=tuple(args.bad_day),
    )
    for written in generate(cfg, args.landing, args.start, args.days):
        print(json.dumps(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
