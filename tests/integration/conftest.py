"""One real embedded stack (airflow standalone + mlflow server) shared by the integration tests."""

from __future__ import annotations

import shutil

import pytest
from tools.local_stack import LocalStack
from tools.services import free_port

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


@pytest.fixture(scope="session")
def production_stack():
    """The production profile (tools.production) on free ports, started once for its xdist group."""
    import tempfile
    from pathlib import Path

    from tools.production import ProductionStack

    # In /tmp, not pytest's 0700 temp root: as root PostgreSQL runs as the postgres user, who must reach it.
    state = Path(tempfile.mkdtemp(prefix="mlops-production-"))
    state.chmod(0o755)
    repo = state / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".locks"))
    stack = ProductionStack(
        project_dir=ROOT,
        state_dir=state,
        airflow_port=free_port(),
        mlflow_port=free_port(),
        postgres_port=free_port(),
        redis_port=free_port(),
        s3_port=free_port(),
        feature_repo=repo,
    )
    try:
        stack.start(log=lambda line: None)  # its time is this fixture's setup time (--durations)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
