"""The built docs site works offline: it loads no script from another host and serves mermaid.js itself.

mkdocs-material fetches mermaid.js from a CDN unless a global ``mermaid`` is already defined when the
page's DOMContentLoaded fires; mkdocs.yml lists the copy that ``make docs`` places in docs/javascripts/
as a plain (neither async nor deferred) ``extra_javascript``, so it has run by then.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.browser import chromium
from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("docs_site")

MERMAID_SOURCE = ROOT / "docs" / "javascripts" / "mermaid.min.js"
MERMAID_PATH = "javascripts/mermaid.min.js"  # in the built site, as listed in mkdocs.yml
# The last statement of mermaid's IIFE build (dist/mermaid.min.js): the global the theme checks for.
GLOBAL = b'globalThis.__esbuild_esm_mermaid_nm["mermaid"].default;'


class Page(HTMLParser):
    """What the offline check needs from one built page: its scripts, stylesheets and diagrams."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.stylesheets: list[str] = []
        self.diagrams = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "script" and attr.get("src"):
            self.scripts.append(attr)
        elif tag == "link" and "stylesheet" in (attr.get("rel") or "").split() and attr.get("href"):
            self.stylesheets.append(attr["href"])
        elif tag == "pre" and "mermaid" in (attr.get("class") or "").split():
            self.diagrams += 1


def external(url: str) -> bool:
    """True for a URL that names another host: ``http(s)://...`` or protocol-relative ``//...``."""
    return bool(urlsplit(url.strip()).netloc) or url.strip().lower().startswith(("http:", "https:"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs site built from this checkout with ``mkdocs build --strict`` into a temporary directory."""
    if not MERMAID_SOURCE.is_file() or MERMAID_SOURCE.stat().st_size == 0:
        pytest.fail(
            f"{MERMAID_SOURCE.relative_to(ROOT)} is missing: run `make docs`, which fetches the pinned "
            "mermaid package with npm and copies its mermaid.min.js there (`make test` runs it first)."
        )
    site_dir = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    build = subprocess.run(
        [str(mkdocs), "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "--site-dir", str(site_dir)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return site_dir


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[str, Page]:
    """Every built HTML page, by its path in the site."""
    parsed = {}
    for path in sorted(site.rglob("*.html")):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        parsed[path.relative_to(site).as_posix()] = page
    assert "index.html" in parsed and "architecture/index.html" in parsed
    return parsed


def test_no_page_loads_a_script_or_stylesheet_from_another_host(pages: dict[str, Page]) -> None:
    found = {
        name: [s["src"] for s in page.scripts if external(s["src"])]
        + [href for href in page.stylesheets if external(href)]
        for name, page in pages.items()
    }
    found = {name: urls for name, urls in found.items() if urls}
    assert not found, f"built pages load from other hosts, which an offline reader cannot reach: {found}"


def test_pages_with_diagrams_load_the_sites_own_mermaid_before_the_theme_looks_for_it(
    site: Path, pages: dict[str, Page]
) -> None:
    with_diagrams = {name: page for name, page in pages.items() if page.diagrams}
    assert "architecture/index.html" in with_diagrams, "docs/architecture.md's diagrams were not built"

    served = site / MERMAID_PATH
    assert served.is_file(), f"the built site lacks {MERMAID_PATH}"
    assert served.read_bytes() == MERMAID_SOURCE.read_bytes()
    # The build that defines the global the theme checks for (`typeof mermaid`), not an ES module.
    assert served.read_bytes().rstrip().endswith(b'globalThis["mermaid"] = ' + GLOBAL), "not the IIFE build"

    for name, page in with_diagrams.items():
        mermaid = [s for s in page.scripts if urljoin(f"/{name}", s["src"]) == f"/{MERMAID_PATH}"]
        assert len(mermaid) == 1, f"{name} has {page.diagrams} diagram(s) but loads no {MERMAID_PATH}"
        # Run before DOMContentLoaded, when the theme looks for the global: a plain, classic script.
        assert not {"async", "defer"} & mermaid[0].keys(), f"{name} loads {MERMAID_PATH} async or deferred"
        assert mermaid[0].get("type") in (None, "text/javascript"), f"{name}: {mermaid[0]}"


@pytest.fixture(scope="module")
def served(site: Path):
    """The built site over HTTP on loopback, as a reader's browser gets it."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_every_diagram_renders_in_a_browser_with_no_network(served: str, pages: dict[str, Page]) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    elsewhere: list[str] = []
    errors: list[str] = []

    def offline(route) -> None:
        if route.request.url.startswith(served + "/"):
            route.continue_()
            return
        # The theme also asks GitHub for the repository's stars (repo_url in mkdocs.yml), a fetch whose
        # failure it ignores; code, styles and fonts must all come from the site.
        if route.request.resource_type not in ("fetch", "xhr"):
            elsewhere.append(f"{route.request.resource_type} {route.request.url}")
        route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", offline)
            page.on("pageerror", lambda error: errors.append(str(error)))
            for name, built in pages.items():
                if not built.diagrams:
                    continue
                page.goto(f"{served}/{name}")
                # The theme replaces each <pre class="mermaid"> with a <div class="mermaid"> holding the
                # rendered SVG once mermaid.render() has resolved; a failed load leaves the <pre> as it was.
                page.wait_for_function(
                    "n => document.querySelectorAll('div.mermaid').length === n"
                    " && document.querySelectorAll('pre.mermaid').length === 0",
                    arg=built.diagrams,
                    timeout=30_000,
                )
        finally:
            browser.close()
    assert not errors, errors
    assert not elsewhere, f"the pages loaded resources from other hosts: {elsewhere}"
