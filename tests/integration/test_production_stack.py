"""The production profile's stack (tools.production): every server healthy, both Celery workers answer.

The DAGs' cascade on it, with faults injected, is test_production_cascade.py.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("production")]


def test_every_server_is_healthy_and_both_workers_answer(production_stack):
    stack = production_stack
    assert set(stack.status().values()) == {"healthy"}, stack.status()
    assert [name.split("@")[0] for name in stack.celery_workers()] == ["worker1", "worker2"]
    with urllib.request.urlopen(f"{stack.airflow_url}/api/v2/monitor/health", timeout=10) as response:
        health = json.loads(response.read())
    assert {key: part["status"] for key, part in health.items()} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
