"""The "ML models" view for deployments that load plugins from Airflow's plugins folder.

Thin on purpose: the plugin, its FastAPI app and its page live in the provider package
(``mlops_provider.plugins.ml_models``), which registers it as an ``airflow.plugins`` entry point (and
declares it under ``plugins`` in get_provider_info.py), so the installed wheel serves the view. This file
keeps the folder working where the view is not installed that way, e.g. the package on ``PYTHONPATH``
without its metadata.

Never registered twice: Airflow keeps one plugin per ``name``, loading the plugins folder before entry
points, and reports a skipped duplicate as a plugin import error. So this file exposes the class only when
no ``airflow.plugins`` entry point provides it (tests/plugins/test_ml_models.py). It imports nothing
heavy: every Airflow component, task processes too, imports this folder.
"""

from importlib.metadata import entry_points

_ENTRY_POINT = "mlops_provider.plugins.ml_models:MLModelsPlugin"

if not any(ep.value == _ENTRY_POINT for ep in entry_points(group="airflow.plugins")):
    from mlops_provider.plugins.ml_models import MLModelsPlugin

    __all__ = ["MLModelsPlugin"]
