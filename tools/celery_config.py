"""The production profile's Celery settings: Airflow's defaults, and the libraries each worker imports once.

A Celery worker runs every task in a process forked from its pool, so what the worker imported when it
started is already loaded in every task. Feast (about 10 s to import on 2 cores), GX, MLflow, pandas and
pyarrow are imported once per worker instead of once per task. Nothing else differs from Airflow's
defaults. Used with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=tools.celery_config.CELERY_CONFIG``.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

# Celery imports these in the worker's main process at start-up, before it forks its pool.
PRELOADED = ("pandas", "pyarrow.parquet", "feast", "great_expectations", "mlflow")

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": PRELOADED}
