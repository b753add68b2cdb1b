"""The code the docs show is the code the tested DAGs run: each snippet block is a copy of a source section.

A page shows code as a plain fenced block, so it reads the same in the repository as on the built site.
The comment right above the fence names the section it copies:

    <!-- snippet: dags/feature_pipeline.py:gx_validate -->
    ```python
    # from mlops_provider.operators.gx import GXValidateOperator
    ...the lines between `# --8<-- [start:gx_validate]` and `# --8<-- [end:gx_validate]`...
    ```

The block may open with import hints (``# from PACKAGE.MODULE import NAME``, each naming a class or function
that module defines); every line after them is the section, cut the way pymdownx.snippets cuts it with
``dedent_subsections: true``: other sections' marker lines are dropped and the common indent is removed.
When a section changes, the failure prints the block to paste. Pure text: nothing here imports Airflow.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PACKAGE_ROOT = ROOT / "provider"  # mlops_provider lives in provider/mlops_provider

# `<!-- snippet: dags/feature_pipeline.py:gx_validate -->`, alone on its line, right above the fence.
SNIPPET_COMMENT = re.compile(r"^<!-- snippet: (?P<path>[^\s:]+):(?P<section>[a-z][-_0-9a-z]*) -->$")
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})")
# A section marker in a source file, as pymdownx.snippets matches it: `# --8<-- [start:NAME]`.
SECTION_MARKER = re.compile(
    r"(?i)-+8<-+[ \t]+\[[ \t]*(?P<type>start|end)[ \t]*:[ \t]*(?P<name>[a-z][-_0-9a-z]*)[ \t]*\]"
)
# An include marker on a page (`--8<-- "dags/x.py:name"`, or a `--8<--` block): pymdownx.snippets would
# expand it on the site, and the repository shows the bare marker.
INCLUDE_MARKER = re.compile(r"^\s*;*-+8<-+")
IMPORT_HINT = re.compile(r"^# from (?P<module>[A-Za-z_][\w.]*) import (?P<name>[A-Za-z_]\w*)$")


@dataclass(frozen=True)
class Snippet:
    """One `<!-- snippet: ... -->` comment on a page and the fenced block under it (None: no fence follows)."""

    page: Path
    line: int  # 1-based line of the comment
    source: str
    section: str
    fence: str | None
    opener: str | None
    block: tuple[str, ...] | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def find_snippets(page: Path) -> list[Snippet]:
    lines = page.read_text(encoding="utf-8").split("\n")
    found = []
    for i, line in enumerate(lines):
        m = SNIPPET_COMMENT.match(line.rstrip())
        if not m:
            continue
        fence = opener = block = None
        f = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if f:
            fence, opener = f.group("fence"), lines[i + 1]
            body: list[str] = []
            for inner in lines[i + 2 :]:
                if inner.rstrip() == fence:
                    block = tuple(body)
                    break
                body.append(inner)
        found.append(Snippet(page, i + 1, m.group("path"), m.group("section"), fence, opener, block))
    return found


def extract_section(source: Path, name: str) -> list[str] | None:
    """The section's lines as pymdownx.snippets includes them with dedent_subsections; None if it is missing."""
    section: list[str] = []
    inside = found = False
    for line in source.read_text(encoding="utf-8").split("\n"):
        m = SECTION_MARKER.search(line)
        if m and m.group("name") == name:
            if m.group("type") == "start":
                inside = found = True
                continue
            break  # its end (or an end before any start)
        if m:
            continue  # another section's marker, nested in this one or not
        if inside:
            section.append(line)
    return textwrap.dedent("\n".join(section)).split("\n") if found else None


def defines(module: str, name: str) -> bool:
    """Whether the provider module ``module`` (a file under provider/) defines ``name`` at top level."""
    base = PACKAGE_ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            return re.search(rf"^(?:class|def) {name}\b|^{name}\s*[:=]", text, re.M) is not None
    return False


SNIPPETS = [s for page in pages() for s in find_snippets(page)]


def test_docs_have_snippets() -> None:
    """Guards the parser: if it found nothing, every other test here would pass vacuously."""
    assert SNIPPETS, "no `<!-- snippet: path:section -->` comment found under docs/"


def test_no_include_marker_left() -> None:
    """A page shows its code literally; an include marker would show as a bare `--8<--` line in the repository."""
    left = [
        f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
        for page in pages()
        for n, line in enumerate(page.read_text(encoding="utf-8").split("\n"), start=1)
        if INCLUDE_MARKER.match(line)
    ]
    assert not left, (
        "include markers left in docs/ (the repository shows them as-is):\n  " + "\n  ".join(left) + "\n"
        "Replace each with the section's code inside the fence, and put `<!-- snippet: PATH:SECTION -->` on the "
        "line above the fence; then run this test, whose failure prints the exact block to paste."
    )


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"{s.where}-{s.source}:{s.section}" for s in SNIPPETS])
def test_snippet_matches_source(snippet: Snippet) -> None:
    ref = f"{snippet.source}:{snippet.section}"
    assert snippet.opener is not None and snippet.fence is not None, (
        f"{snippet.where}: `<!-- snippet: {ref} -->` must sit on the line right above a fenced code block"
    )
    assert snippet.block is not None, (
        f"{snippet.where}: the fence under `<!-- snippet: {ref} -->` is never closed"
    )
    source = ROOT / snippet.source
    assert source.is_file(), (
        f"{snippet.where}: {snippet.source} does not exist (paths are from the repository root)"
    )
    section = extract_section(source, snippet.section)
    assert section is not None, (
        f"{snippet.where}: {snippet.source} has no section {snippet.section!r} "
        f"(`# --8<-- [start:{snippet.section}]` ... `# --8<-- [end:{snippet.section}]`)"
    )

    block = list(snippet.block)
    split = len(block) - len(section)
    hints = block[:split] if split >= 0 else []
    if split < 0 or block[split:] != section or not all(IMPORT_HINT.match(h) for h in hints):
        kept = []  # the block's leading import hints stay in the block to paste
        for line in block:
            if not IMPORT_HINT.match(line):
                break
            kept.append(line)
        expected = [f"<!-- snippet: {ref} -->", snippet.opener, *kept, *section, snippet.fence]
        diff = "\n".join(
            difflib.unified_diff(block, kept + section, "page", snippet.source, lineterm="", n=1)
        )
        pytest.fail(
            f"{snippet.where}: the code block differs from section {snippet.section!r} of {snippet.source}.\n"
            f"Replace the comment and the block on the page with:\n\n" + "\n".join(expected) + "\n\n"
            f"Difference (page -> source):\n{diff}",
            pytrace=False,
        )

    named = [IMPORT_HINT.fullmatch(h) for h in hints]
    unknown = [m.group(0) for m in named if m and not defines(m.group("module"), m.group("name"))]
    assert not unknown, (
        f"{snippet.where}: import hints naming nothing that provider/ defines: {unknown} "
        "(renamed or moved? fix the `# from ... import ...` line)"
    )
