"""The browser the UI tests drive: Debian's chromium (``make system-deps``), never a downloaded build."""

from __future__ import annotations

import os
import shutil

import pytest


def chromium() -> str:
    """Debian's chromium; skipped without it only outside CI, where it must be installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed; run `make system-deps` (apt-get install chromium).")
        pytest.skip("chromium is not installed; `make system-deps` installs it.")
    return found
