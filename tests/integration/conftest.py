"""One real embedded stack (airflow standalone + mlflow server) shared by the integration tests."""

from __future__ import annotations

import shutil

import pytest
from tools.local_stack import LocalStack, free_port

from tests.conftest import FEATURE_REPO, ROOT


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("stack")
    repo = state / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    port = free_port()
    stack = LocalStack(
        project_dir=ROOT, state_dir=state, airflow_port=port, mlflow_port=free_port(), feature_repo=repo
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
