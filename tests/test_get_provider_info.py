"""The provider metadata is valid for Airflow and points at classes that exist."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import airflow
import jsonschema

from mlops_provider.get_provider_info import get_provider_info


def test_provider_info_matches_airflows_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_declared_module_and_class_imports():
    info = get_provider_info()
    modules = [
        m
        for kind in ("operators", "sensors", "hooks", "triggers")
        for e in info[kind]
        for m in e["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    classes = info["extra-links"] + [c["hook-class-name"] for c in info["connection-types"]]
    for path in classes:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_declared_plugins_are_airflow_plugins_of_the_same_name():
    # Airflow's schema leaves a plugin entry's fields unchecked; Airflow reads exactly these two, and
    # de-duplicates plugins by the class's ``name``, not the declared one: they must agree.
    from airflow.plugins_manager import is_valid_plugin

    [plugin] = get_provider_info()["plugins"]
    assert set(plugin) == {"name", "plugin-class"}
    module, _, name = plugin["plugin-class"].rpartition(".")
    plugin_class = getattr(importlib.import_module(module), name)
    assert is_valid_plugin(plugin_class)
    assert plugin_class.name == plugin["name"] == "ml_models"


def test_connection_forms_are_declarative_and_hooks_agree():
    for conn in get_provider_info()["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"]
        assert conn["conn-fields"], "forms are declared as data, not built by importing the hook"
        assert "hidden-fields" in conn["ui-field-behaviour"]


def test_airflow_discovers_the_provider_through_its_entry_point():
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "airflow-provider-mlops" in providers
    assert ProvidersManager().hooks["feast"].hook_class_name == "mlops_provider.hooks.feast.FeastHook"
    ours = [p for p in ProvidersManager().plugins if p.provider_name == "airflow-provider-mlops"]
    assert [(p.name, p.plugin_class) for p in ours] == [
        ("ml_models", "mlops_provider.plugins.ml_models.MLModelsPlugin")
    ]
