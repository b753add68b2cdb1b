"""Run the benchmarks and write docs/benchmarks.md (``make bench``).

    python -m tests.bench                                  # every tests/bench/bench_*.py except GPU ones
    python -m tests.bench bench_parse bench_feature_pipeline   # only these; other sections are kept

Each module runs as ``python -m tests.bench.<name>`` in its own interpreter and prints markdown on
stdout; its stderr is echoed live. Each section sits between ``<!-- bench:<name> -->`` and
``<!-- /bench:<name> -->`` so a partial run replaces only its own sections. A failing module gets a
failure note with its stderr tail, and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import machine

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->\n.*?<!-- /bench:(?P=name) -->\n?", re.DOTALL)
STDERR_TAIL = 40


def available() -> list[str]:
    """Benchmark modules run by default: every bench_*.py whose name does not mention gpu."""
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py") if "gpu" not in p.stem)


def run_module(name: str) -> tuple[bool, str]:
    """Run one benchmark module; return (succeeded, its markdown section body)."""
    started = time.perf_counter()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"tests.bench.{name}"],
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line)
        proc.wait()
        stdout.seek(0)
        body = stdout.read().strip()
    minutes = (time.perf_counter() - started) / 60
    stamp = f"_Run {dt.date.today().isoformat()} on {machine()}; took {minutes:.1f} min._"
    if proc.returncode == 0:
        return True, f"{stamp}\n\n{body}"
    failure = (
        f"**FAILED**: `python -m tests.bench.{name}` exited with code {proc.returncode}. "
        f"Last {len(tail)} lines of its stderr:\n\n```\n{''.join(tail).rstrip()}\n```"
    )
    return False, f"{stamp}\n\n{failure}" + (f"\n\nPartial output:\n\n{body}" if body else "")


def header(command: str) -> str:
    return (
        "# Benchmarks\n\n"
        f"Written by `make bench`. Last run: {dt.date.today().isoformat()}, `{command}`, on {machine()}.\n\n"
        "Every ratio compares two measurements taken side by side in one run (interleaved, medians), so "
        "machine load hits both alike; absolute seconds depend on the machine and on how busy it was. "
        "Each section says when and where it was last run.\n"
    )


def merge(existing: str, sections: dict[str, str], order: list[str], command: str) -> str:
    """Replace or add ``sections`` in the existing document, keeping the other modules' sections."""
    kept = {m["name"]: m.group(0).rstrip("\n") for m in SECTION.finditer(existing)}
    for name, body in sections.items():
        kept[name] = f"<!-- bench:{name} -->\n## {name}\n\n{body}\n<!-- /bench:{name} -->"
    names = [n for n in order if n in kept] + [n for n in kept if n not in order]
    return header(command) + "\n" + "\n\n".join(kept[n] for n in names) + "\n"


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    cli.add_argument("modules", nargs="*", help="bench modules to run (default: all but GPU ones)")
    args = cli.parse_args(argv)
    names = [n.removesuffix(".py") for n in args.modules] or available()
    unknown = [n for n in names if not (BENCH_DIR / f"{n}.py").is_file()]
    if unknown:
        cli.error(f"no such benchmark module(s): {', '.join(unknown)}; known: {', '.join(available())}")
    command = " ".join(["python -m tests.bench", *args.modules])
    failed = []
    for name in names:
        print(f"== running {name}", file=sys.stderr, flush=True)
        ok, section = run_module(name)
        if not ok:
            failed.append(name)
        # Written after every module, so a long run interrupted later keeps what it measured.
        existing = DOC.read_text() if DOC.exists() else ""
        DOC.write_text(merge(existing, {name: section}, available(), command))
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    if failed:
        print(f"benchmark module(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
