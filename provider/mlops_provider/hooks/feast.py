"""Hook for a Feast feature store: builds a ``feast.FeatureStore`` from an Airflow connection.

The connection holds where the feature repo lives (``repo_path``, the directory with
``feature_store.yaml``) and optional ``config_overrides`` merged over that file, so production can
swap the online store, registry or offline store by configuration alone.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from mlops_provider.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView
    from feast.repo_contents import RepoContents

FEATURE_STORE_YAML = "feature_store.yaml"
# Feast's reserved name for an entity dataframe's timestamp (feast.infra.offline_stores.offline_utils.
# DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL): Feast's name, not a dataset's; kept here so feast is not imported.
FEAST_ENTITY_TIMESTAMP = "event_timestamp"
# Parsing a repo changes the working directory and sys.path, which are per process.
_PARSE_LOCK = threading.Lock()


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in; nested mappings merge, everything else replaces.

    A mapping whose ``type`` changes (a sqlite online store overridden by a redis one) is replaced
    whole: the old type's keys (``path``) are not options of the new one, and Feast refuses them.
    """
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        current = merged.get(key)
        changes_type = (
            isinstance(value, dict)
            and isinstance(current, dict)
            and "type" in value
            and value["type"] != current.get("type")
        )
        if isinstance(value, dict) and isinstance(current, dict) and not changes_type:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _parse_overrides(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        # The raw text may hold a password (e.g. a Redis connection string), so it is not echoed.
        raise ConfigurationError(
            f"Feast config_overrides is not valid JSON ({err.msg} at position {err.pos}); "
            "fix the connection's config_overrides extra."
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigurationError(
            'Feast config_overrides must be a JSON object, e.g. {"online_store": {...}}.'
        )
    return parsed


def parse_instant(value: str | dt.datetime, what: str) -> dt.datetime:
    """Parse a rendered template (ISO 8601) into a tz-aware datetime; naive values are rejected."""
    parsed = value if isinstance(value, dt.datetime) else None
    if parsed is None:
        try:
            parsed = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ConfigurationError(
                f"{what}={value!r} is not an ISO 8601 timestamp, e.g. 2026-01-01T00:00:00+00:00."
            ) from None
    if parsed.tzinfo is None:
        raise ConfigurationError(f"{what}={value!r} has no timezone; add one, e.g. +00:00.")
    return parsed


class FeastHook(BaseHook):
    """Build and cache a Feast ``FeatureStore`` for a feature repo.

    :param feast_conn_id: connection of type ``feast``; its extras ``repo_path`` and
        ``config_overrides`` (JSON string or object) configure the store.
    :param repo_path: directory holding ``feature_store.yaml``; overrides the connection's extra.
    :param config_overrides: mapping (or JSON string) merged deeply over ``feature_store.yaml``;
        overrides the connection's extra.
    """

    conn_name_attr = "feast_conn_id"
    default_conn_name = "feast_default"
    conn_type = "feast"
    hook_name = "Feast feature store"

    def __init__(
        self,
        feast_conn_id: str = default_conn_name,
        repo_path: str | None = None,
        config_overrides: str | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.feast_conn_id = feast_conn_id
        self._repo_path_arg = repo_path
        self._overrides_arg = config_overrides

    @cached_property
    def _extras(self) -> dict[str, Any]:
        # Both settings given explicitly (e.g. by a trigger): no connection needed.
        if self._repo_path_arg is not None and self._overrides_arg is not None:
            return {}
        return self.get_connection(self.feast_conn_id).extra_dejson

    @cached_property
    def repo_path(self) -> Path:
        """Absolute path of the feature repo; checked to hold ``feature_store.yaml``."""
        raw = self._repo_path_arg or self._extras.get("repo_path")
        if not raw:
            raise ConfigurationError(
                f"Feast connection {self.feast_conn_id!r} has no repo_path: set the extra "
                '{"repo_path": "/path/to/feature_repo"} or pass repo_path= to the hook.'
            )
        path = Path(raw).expanduser().resolve()
        if not (path / FEATURE_STORE_YAML).is_file():
            raise ConfigurationError(
                f"No {FEATURE_STORE_YAML} in Feast repo_path {path} (connection {self.feast_conn_id!r}); "
                "point repo_path at the directory that holds it."
            )
        return path

    @cached_property
    def config_overrides(self) -> dict[str, Any]:
        """The overrides merged over ``feature_store.yaml`` (may hold secrets: never log them)."""
        raw = self._overrides_arg if self._overrides_arg is not None else self._extras.get("config_overrides")
        return _parse_overrides(raw)

    def get_store(self) -> FeatureStore:
        """Return the cached ``FeatureStore``, building it on first use."""
        return self._store

    @cached_property
    def _store(self) -> FeatureStore:
        from feast import FeatureStore, RepoConfig

        repo_path = self.repo_path
        if not self.config_overrides:
            return FeatureStore(repo_path=str(repo_path))
        import yaml

        # Feast expands ${ENV} references in the yaml before parsing; keep that behaviour.
        text = os.path.expandvars((repo_path / FEATURE_STORE_YAML).read_text())
        merged = deep_merge(yaml.safe_load(text) or {}, self.config_overrides)
        try:
            config = RepoConfig(**merged)
        except Exception as err:
            # Field paths and messages only: pydantic's full text echoes input values, secrets included.
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in getattr(err, "errors", list)()
            )
            raise ConfigurationError(
                f"feature_store.yaml of {repo_path} merged with the connection's config_overrides is not a "
                f"valid Feast config ({problems or type(err).__name__}). Check the override keys against "
                "Feast's feature_store.yaml reference."
            ) from None
        config.repo_path = repo_path
        return FeatureStore(config=config, repo_path=str(repo_path))

    def test_connection(self) -> tuple[bool, str]:
        """Build the store and read its registry; the UI's Test button calls this."""
        try:
            store = self.get_store()
            views = [fv.name for fv in store.list_feature_views()]
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        return True, f"Feast project {store.project!r} with {len(views)} feature view(s): {', '.join(views)}"

    def get_feature_view(self, name: str) -> FeatureView:
        """Return a feature view read fresh from the registry.

        :raises ConfigurationError: no view of that name; the message lists the known ones.
        """
        from feast.errors import FeatureViewNotFoundException

        store = self.get_store()
        try:
            return store.get_feature_view(name, allow_registry_cache=False)
        except FeatureViewNotFoundException:
            known = sorted(fv.name for fv in store.list_feature_views())
            raise ConfigurationError(
                f"Unknown Feast feature view {name!r} in project {store.project!r}; known views: "
                f"{', '.join(known) or 'none (run FeastApplyOperator first)'}."
            ) from None

    def get_feature_service(self, name: str) -> FeatureService:
        """Return a feature service read fresh from the registry.

        :raises ConfigurationError: no service of that name; the message lists the known ones.
        """
        from feast.errors import FeatureServiceNotFoundException

        store = self.get_store()
        try:
            return store.get_feature_service(name, allow_cache=False)
        except FeatureServiceNotFoundException:
            known = sorted(fs.name for fs in store.list_feature_services())
            raise ConfigurationError(
                f"Unknown Feast feature service {name!r} in project {store.project!r}; known services: "
                f"{', '.join(known) or 'none (run FeastApplyOperator first)'}."
            ) from None

    def join_keys(self, service: FeatureService) -> list[str]:
        """The entity join keys a feature service's rows are identified by, in first-seen order.

        Each view's keys, renamed by the service's ``join_key_map`` where it maps them: the entity
        columns an entity dataframe must carry, and the columns that are never features.
        """
        keys: dict[str, None] = {}
        for projection in service.feature_view_projections:
            view = self.get_feature_view(projection.name)
            for key in view.join_keys:
                keys[projection.join_key_map.get(key, key)] = None
        return list(keys)

    def batch_source_uri(self, feature_view: str) -> str:
        """Return the absolute path or URI of a FileSource-backed view's offline data.

        Relative paths resolve against the repo, as Feast does.

        :raises ConfigurationError: the view's batch source is not a FileSource.
        """
        from feast import FileSource

        source = self.get_feature_view(feature_view).batch_source
        if not isinstance(source, FileSource):
            raise ConfigurationError(
                f"Feast feature view {feature_view!r} reads a {type(source).__name__}, not a FileSource; "
                "only file-backed views have a directory to publish partitions into."
            )
        return FileSource.get_uri_for_file_path(self.repo_path, source.path).rstrip("/")

    def fresh_until(self, feature_view: str) -> dt.datetime | None:
        """Return the latest end of the view's materialization intervals (tz-aware), or None."""
        intervals = self.get_feature_view(feature_view).materialization_intervals
        return max((end for _, end in intervals), default=None)

    def apply(self) -> dict[str, Any]:
        """Register the repo's definitions and create their tables, like ``feast apply``.

        Objects removed from the repo are deleted from the registry, as ``feast apply`` does.

        :return: ``{"project", "entities", "data_sources", "feature_views", "feature_services",
            "changes"}``; ``changes`` lists what this call created, updated or deleted (empty on a re-run).
        """
        from feast.diff.property_diff import TransitionType
        from feast.feature_view import DUMMY_ENTITY_NAME
        from feast.project import Project
        from feast.repo_operations import apply_total_with_repo_instance

        store = self.get_store()
        contents = self._parse_repo()
        if not contents.projects:
            contents.projects.append(Project(name=store.project))
        elif [p.name for p in contents.projects] != [store.project]:
            raise ConfigurationError(
                f"The Project objects in {self.repo_path} ({', '.join(p.name for p in contents.projects)}) "
                f"do not match feature_store.yaml's project {store.project!r}; keep exactly one, named alike."
            )
        registry_diff, _, _ = store.plan(contents)
        changes = [
            f"{diff.transition_type.name.lower()} {diff.feast_object_type.name.lower()} {diff.name}"
            for diff in registry_diff.feast_object_diffs
            if diff.transition_type != TransitionType.UNCHANGED and diff.name != DUMMY_ENTITY_NAME
        ]
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=False
        )
        return {
            "project": store.project,
            "entities": sorted(e.name for e in contents.entities if e.name != DUMMY_ENTITY_NAME),
            "data_sources": sorted(s.name for s in contents.data_sources),
            "feature_views": sorted(v.name for v in contents.feature_views),
            "feature_services": sorted(s.name for s in contents.feature_services),
            "changes": sorted(changes),
        }

    def _parse_repo(self) -> RepoContents:
        """Import the repo's definition files the way ``feast apply`` does, without leaking modules."""
        from feast.repo_operations import get_repo_files, parse_repo, py_path_to_module

        repo = self.repo_path
        with _PARSE_LOCK:
            cwd = os.getcwd()
            os.chdir(repo)
            sys.path.insert(0, str(repo))
            names = [py_path_to_module(path) for path in get_repo_files(repo)]
            # Another repo's "definitions" module may be cached under the same name: import afresh.
            for name in names:
                sys.modules.pop(name, None)
            try:
                return parse_repo(repo)
            finally:
                for name in names:
                    sys.modules.pop(name, None)
                sys.path.remove(str(repo))
                os.chdir(cwd)

    def source_window_counts(
        self, feature_view: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, int] | None:
        """Count a FileSource-backed view's source rows and distinct entities with start <= ts <= end.

        Reads only the join keys and the timestamp column. The end bound is inclusive because
        Feast's file offline store materializes ``between(start, end, inclusive="both")``.

        :return: ``{"rows", "entities"}``, or None when the view is not backed by a FileSource.
        :raises DataNotFound: the source holds no parquet file at all.
        """
        import pyarrow as pa
        import pyarrow.dataset as ds
        from feast import FileSource

        view = self.get_feature_view(feature_view)
        source = view.batch_source
        if not isinstance(source, FileSource):
            return None
        uri = self.batch_source_uri(feature_view)
        filesystem, path = FileSource.create_filesystem_and_path(
            uri, source.file_options.s3_endpoint_override
        )
        try:
            dataset = ds.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive")
        except FileNotFoundError:
            dataset = None
        if dataset is None or not dataset.files:
            # Feast's file offline store fails with an obscure dask error on an empty source.
            raise DataNotFound(
                f"Feature view {feature_view!r} has no parquet files under {uri}; publish a partition "
                "(FeastPublishPartitionOperator) before materializing it."
            )
        ts = ds.field(source.timestamp_field)
        table = dataset.to_table(
            columns=[*view.join_keys, source.timestamp_field],
            filter=(ts >= pa.scalar(start)) & (ts <= pa.scalar(end)),
        )
        keys = table.select(view.join_keys)
        entities = keys.group_by(view.join_keys).aggregate([]).num_rows if keys.num_rows else 0
        return {"rows": table.num_rows, "entities": entities}

    @contextlib.contextmanager
    def view_lock(self, feature_view: str) -> Iterator[None]:
        """Hold an exclusive lock on one feature view while materializing it.

        An ``flock`` on ``<repo_path>/.locks/<view>.lock`` serialises runs on one host (threads
        included, since each run opens its own file); across hosts, use an Airflow pool with one slot.
        """
        lock_dir = self.repo_path / ".locks"
        lock_dir.mkdir(exist_ok=True)
        lock_file = lock_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', feature_view)}.lock"
        with open(lock_file, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log.info("Feature view %s is being materialized by another run; waiting", feature_view)
                waited = time.monotonic()
                fcntl.flock(handle, fcntl.LOCK_EX)
                self.log.info("Got the lock on %s after %.1f s", feature_view, time.monotonic() - waited)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
