"""What lint-imports cannot see on its own: a module left out of every layer, an import cycle, and whether
the Airflow-free core really runs without Airflow.

The contracts themselves are in pyproject.toml ([tool.importlinter]); ``lint-imports`` checks them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections import deque
from pathlib import Path
from typing import Any

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mlops_provider"
# What must import without Airflow, whatever the forbidden contract lists (it may list more).
AIRFLOW_FREE = {
    "mlops_provider.canary",
    "mlops_provider.ml",
    "mlops_provider.trainer",
    "mlops_provider.example_data",
    "mlops_provider.hooks.mlflow_client",
    "mlops_provider.constants",
    "mlops_provider.exceptions",
}


def contracts() -> list[dict[str, Any]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def layer_modules() -> list[str]:
    """Every module named in a layer of a layers contract: ``"a | b"`` (or ``"a : b"``) is two modules;
    ``(a)`` is an optional layer; ``containers`` prefix the layers."""
    layers_contracts = [c for c in contracts() if c["type"] == "layers"]
    assert layers_contracts, "pyproject.toml has no import-linter layers contract"
    modules = []
    for contract in layers_contracts:
        containers = contract.get("containers", [""])
        for layer in contract["layers"]:
            for name in re.split(r"[|:]", layer.strip().strip("()")):
                modules += [f"{c}.{name.strip()}" if c else name.strip() for c in containers]
    return modules


def in_module(module: str, parents: list[str] | set[str]) -> bool:
    return any(module == parent or module.startswith(f"{parent}.") for parent in parents)


def strongly_connected_components(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components in reverse topological order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def shortest_cycle(start: str, members: set[str], edges: dict[str, set[str]]) -> list[str]:
    """``[start, ..., start]``: a shortest import chain from ``start`` back to itself inside one component."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(edges[node] & members):
            if successor == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [start, *reversed(chain[:-1]), start] if node != start else [start, start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in no cycle")


def import_cycles(graph: grimp.ImportGraph) -> list[str]:
    """One description per cycle-bearing component: its modules and a shortest chain with the import lines.

    Every import grimp finds counts, at module level, inside functions or under TYPE_CHECKING.
    """
    modules = set(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
    reports = []
    for component in strongly_connected_components(edges):
        if len(component) == 1 and component[0] not in edges[component[0]]:
            continue
        chain = shortest_cycle(component[0], set(component), edges)
        lines = []
        for importer, imported in itertools.pairwise(chain):
            details = graph.get_import_details(importer=importer, imported=imported)
            where = "; ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)
            lines.append(f"    {importer} -> {imported}  ({where})")
        reports.append(
            f"cycle among {len(component)} modules {component}:\n  {' -> '.join(chain)}\n" + "\n".join(lines)
        )
    return reports


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None)


def test_every_module_is_in_a_layer_of_the_layers_contract(graph: grimp.ImportGraph) -> None:
    layers = layer_modules()
    stale = sorted(set(layers) - graph.modules)
    assert not stale, f"the layers contract in pyproject.toml names modules that do not exist: {stale}"
    uncovered = sorted(m for m in graph.modules if m != PACKAGE and not in_module(m, layers))
    assert not uncovered, (
        f"modules in no layer of the layers contract ([tool.importlinter] in pyproject.toml): {uncovered}; "
        "add each to a layer (or put it under a module that is in one)"
    )


def test_the_package_has_no_import_cycle(graph: grimp.ImportGraph) -> None:
    cycles = import_cycles(graph)
    for cycle in cycles:
        print(cycle)
    assert not cycles, f"{len(cycles)} import cycle(s) in {PACKAGE}:\n" + "\n".join(cycles)


def test_the_cycle_finder_reports_a_cycle_with_its_import_lines() -> None:
    graph = grimp.ImportGraph()
    for importer, imported, line in [
        ("p.a", "p.b", 3),
        ("p.b", "p.c", 4),
        ("p.c", "p.a", 9),  # a function-level import closes the loop
        ("p.c", "p.d", 5),
        ("p.d", "p.d", 2),
        ("p.e", "p.a", 1),
    ]:
        graph.add_import(
            importer=importer, imported=imported, line_number=line, line_contents=f"import {imported}"
        )

    cycles = import_cycles(graph)

    assert len(cycles) == 2
    (loop,) = [c for c in cycles if "['p.a', 'p.b', 'p.c']" in c]
    assert "p.a -> p.b -> p.c -> p.a" in loop and "p.c -> p.a  (line 9: import p.a)" in loop
    (self_import,) = [c for c in cycles if "['p.d']" in c]
    assert "p.d -> p.d  (line 2: import p.d)" in self_import
    assert not any("p.e" in c for c in cycles)


# Run by a fresh interpreter: Airflow made unimportable, then the modules imported (argv: "import" and
# module names) or a module run as `python -m` (argv: "run", module, its arguments). Writes a JSON report
# to $MLOPS_REPORT.
WITHOUT_AIRFLOW = textwrap.dedent(
    """
    import importlib, importlib.util, json, os, runpy, sys, traceback

    class NoAirflow:
        attempts = []
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                self.attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (made unimportable)", name=name)
            return None

    assert not [m for m in sys.modules if m.split(".")[0] == "airflow"], "airflow was imported at startup"
    sys.meta_path.insert(0, NoAirflow())
    report = {"imported": [], "skipped_no_torch": [], "failed": {}, "exit_code": None}
    mode, *args = sys.argv[1:]
    if mode == "import":
        for name in args:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as error:
                if (error.name or "").split(".")[0] == "torch" and importlib.util.find_spec("torch") is None:
                    report["skipped_no_torch"].append(name)
                else:
                    report["failed"][name] = traceback.format_exc()
            except BaseException:
                report["failed"][name] = traceback.format_exc()
            else:
                report["imported"].append(name)
    else:
        sys.argv = [args[0], *args[1:]]
        try:
            runpy.run_module(args[0], run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            report["exit_code"] = exit.code
        except BaseException:
            report["failed"][args[0]] = traceback.format_exc()
    exceptions = sys.modules.get("mlops_provider.exceptions")
    if exceptions is not None:
        report["fail_exception_base"] = exceptions.AirflowFailException.__module__
    report["airflow_attempts"] = sorted(set(NoAirflow.attempts))
    report["airflow_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] == "airflow")
    with open(os.environ["MLOPS_REPORT"], "w") as out:
        json.dump(report, out)
    """
)


def without_airflow(tmp_path: Path, *argv: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    report = tmp_path / f"report-{argv[0]}.json"
    env = {**os.environ, "MLOPS_REPORT": str(report)}
    env.pop("MLOPS_CODE_VERSION", None)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_AIRFLOW, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), f"the interpreter wrote no report (exit {done.returncode}):\n{done.stderr}"
    return json.loads(report.read_text()), done


def airflow_free_modules(graph: grimp.ImportGraph) -> list[str]:
    (contract,) = [c for c in contracts() if c["type"] == "forbidden" and "airflow" in c["forbidden_modules"]]
    sources = set(contract["source_modules"])
    assert sources >= AIRFLOW_FREE, f"the no-Airflow contract lost {sorted(AIRFLOW_FREE - sources)}"
    # A __main__ runs its program when imported; the trainer's is run below instead.
    return sorted(m for m in graph.modules if in_module(m, sources) and not m.endswith(".__main__"))


def test_the_core_and_the_trainer_import_without_airflow(graph: grimp.ImportGraph, tmp_path: Path) -> None:
    modules = airflow_free_modules(graph)
    assert in_module("mlops_provider.trainer.train", modules)

    report, done = without_airflow(tmp_path, "import", *modules)

    assert not report["failed"], (
        "these modules need Airflow (or fail) with Airflow unimportable:\n"
        + "\n".join(f"{name}:\n{trace}" for name, trace in report["failed"].items())
    )
    assert sorted(report["imported"] + report["skipped_no_torch"]) == modules
    assert report["airflow_loaded"] == []
    # The one allowed Airflow import (ignore_imports in pyproject.toml) fell back to a plain base class.
    assert report["fail_exception_base"] == "mlops_provider.exceptions"
    assert done.returncode == 0, done.stderr


def test_the_trainer_starts_without_airflow(tmp_path: Path) -> None:
    report, done = without_airflow(tmp_path, "run", "mlops_provider.trainer", "--help")

    assert not report["failed"], report["failed"]
    assert report["exit_code"] in (0, None), done.stderr
    assert "--training-set" in done.stdout and "python -m mlops_provider.trainer" in done.stdout
    assert report["airflow_loaded"] == []
