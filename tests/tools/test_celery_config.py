"""tools.celery_config: Airflow's Celery settings plus the libraries each worker imports once."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_celery_config_imports_nothing_heavy_itself():
    """The scheduler loads it too: only the workers import the preloaded libraries (Celery's ``imports``)."""
    probe = (
        "import sys, tools.celery_config as c; "
        "assert not {'feast', 'great_expectations', 'mlflow', 'pandas'} & set(sys.modules), sys.modules.keys(); "
        "assert c.CELERY_CONFIG['imports'] == c.PRELOADED and 'broker_url' in c.CELERY_CONFIG; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]
