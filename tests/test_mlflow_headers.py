"""MLflow's first request no longer imports feast, and feast's header provider still works once loaded."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from mlops_provider.mlflow_headers import defer_feast_request_headers
assert defer_feast_request_headers() is True
from mlflow.tracking.request_header.registry import resolve_request_headers
headers = resolve_request_headers()
assert "feast" not in sys.modules, "feast was imported"
# Once feast's own module is in use, its provider answers through the stand-in.
from feast.infra.data_sources.mlflow import auth
token = auth._current_mlflow_token.set("t0ken")
assert resolve_request_headers()["Authorization"] == "Bearer t0ken"
auth._current_mlflow_token.reset(token)
assert "Authorization" not in resolve_request_headers()
print("ok", sorted(headers))
"""


def test_first_mlflow_request_headers_skip_feast_until_it_is_used() -> None:
    # A fresh interpreter: this pytest process has long imported mlflow's registry (and feast).
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_a_registry_already_loaded_is_left_alone() -> None:
    import mlflow.tracking.request_header.registry  # noqa: F401

    from mlops_provider.mlflow_headers import defer_feast_request_headers

    defer_feast_request_headers.cache_clear()
    assert defer_feast_request_headers() is False
