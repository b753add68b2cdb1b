"""Tests mirror the package file for file: ``provider/mlops_provider/<dir>/<module>.py`` is tested in
``tests/<dir>/test_<module>.py`` (``__main__.py`` in ``test_main.py``, a package's ``__init__.py`` with
logic in ``test_init.py``).

Only the logic-free ``__init__.py`` files below go without one; each says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlops_provider

PACKAGE = Path(mlops_provider.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent

# Package __init__ files that hold no logic (docstring, re-exports, constants), so nothing to test alone.
NO_TEST_FILE = {
    "__init__.py": "the version string only; tests/ml/test_lineage.py checks that code_version() carries it",
    "canary/__init__.py": "re-exports the strategy, analysis and controller, each tested in tests/canary/",
    "example_data/__init__.py": "docstring only",
    "hooks/__init__.py": "docstring only",
    "links/__init__.py": "docstring only",
    "ml/__init__.py": "empty",
    "operators/__init__.py": "docstring only",
    "plugins/__init__.py": "empty",
    "sensors/__init__.py": "docstring only",
    "trainer/__init__.py": "two constants of the CLI contract, asserted in tests/trainer/test_cli.py",
    "triggers/__init__.py": "docstring only",
    "utils/__init__.py": "empty",
}


def mirrored_test(module: Path) -> Path:
    """The test file of a module: its directory under tests/, ``test_`` + its name without dunders."""
    relative = module.relative_to(PACKAGE)
    return TESTS / relative.parent / f"test_{relative.stem.strip('_')}.py"


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_its_mirrored_test_file() -> None:
    missing = [
        f"{mirrored_test(module).relative_to(TESTS.parent)} (for {module.relative_to(PACKAGE.parent.parent)})"
        for module in modules()
        if module.relative_to(PACKAGE).as_posix() not in NO_TEST_FILE and not mirrored_test(module).is_file()
    ]
    assert not missing, "Create the test file(s) of these modules:\n  " + "\n  ".join(missing)


def holds_logic(path: Path) -> int | None:
    """The line of the first statement that is more than a docstring, an import or a literal constant."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            try:
                ast.literal_eval(node.value)
            except ValueError:
                return node.lineno
            continue
        return node.lineno
    return None


def test_the_exempt_init_files_exist_and_hold_no_logic() -> None:
    problems = []
    for name, reason in NO_TEST_FILE.items():
        path = PACKAGE / name
        if not reason:
            problems.append(f"{name}: say why it needs no test file")
        elif not path.is_file():
            problems.append(f"{name}: no such file; drop it from NO_TEST_FILE")
        elif (line := holds_logic(path)) is not None:
            test = mirrored_test(path).relative_to(TESTS.parent)
            problems.append(
                f"{name} line {line} holds logic: test it in {test} and drop it from NO_TEST_FILE"
            )
    assert not problems, "\n".join(problems)


def test_every_test_file_of_a_subpackage_mirrors_a_module() -> None:
    """No strays (e.g. a test file left behind after its module moved)."""
    expected = {mirrored_test(module) for module in modules()}
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    strays = [
        str(test.relative_to(TESTS.parent))
        for name in sorted(subpackages)
        for test in sorted((TESTS / name).rglob("test_*.py"))
        if test not in expected
    ]
    assert not strays, (
        "These test files mirror no module; move them next to what they test:\n  " + "\n  ".join(strays)
    )
