"""Operators for a Feast feature store: apply definitions, publish partitions, materialize, build training sets.

Every operator is idempotent for its data interval: apply converges the registry, publish overwrites
one partition file, materialize rewrites the same online rows, and a training set overwrites its file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator, Context

from mlops_provider.assets import training_set_asset
from mlops_provider.constants import JOIN_KEYS_METADATA, TIMESTAMP_COLUMN_METADATA
from mlops_provider.exceptions import ConfigurationError, DataNotFound, EmptyPartition
from mlops_provider.hooks.feast import FEAST_ENTITY_TIMESTAMP, FeastHook, parse_instant
from mlops_provider.ml.io import write_atomically
from mlops_provider.utils.storage import exists, is_file

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

PART_FILE = "part-00000.parquet"
SQL_PREFIXES = ("select", "with")


def _num_rows(path: ObjectStoragePath) -> int:
    import pyarrow.parquet as pq

    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


class _FeastOperator(BaseOperator):
    def __init__(self, *, feast_conn_id: str = FeastHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feast_conn_id = feast_conn_id

    @cached_property
    def hook(self) -> FeastHook:
        return FeastHook(feast_conn_id=self.feast_conn_id)


class FeastApplyOperator(_FeastOperator):
    """Register the feature repo's definitions and create their online tables, like ``feast apply``.

    Re-running it changes nothing; objects removed from the repo are deleted from the registry.

    :param feast_conn_id: the Feast connection (repo_path, config_overrides). (templated)
    :return: ``{"project", "entities", "data_sources", "feature_views", "feature_services", "changes"}``;
        ``changes`` lists what was created, updated or deleted and is empty when nothing changed.
    """

    template_fields: Sequence[str] = ("feast_conn_id",)

    def execute(self, context: Context) -> dict[str, Any]:
        summary = self.hook.apply()
        self.log.info(
            "Applied Feast project %s: %s", summary["project"], "; ".join(summary["changes"]) or "no changes"
        )
        return summary


class FeastPublishPartitionOperator(_FeastOperator):
    """Copy one validated parquet file into a feature view's FileSource as partition ``date=<partition>``.

    The file lands at ``<source dir>/date=<partition>/part-00000.parquet``, replacing any earlier copy.

    :param feature_view: a FileSource-backed feature view. (templated)
    :param source_uri: the validated parquet file, local path or ``s3://``. (templated)
    :param partition: the partition's day, ``YYYY-MM-DD``, usually ``{{ ds }}``. (templated)
    :param feast_conn_id: the Feast connection. (templated)
    :return: ``{"uri": <published file>, "rows": <row count>}``.
    :raises DataNotFound: ``source_uri`` does not exist.
    """

    template_fields: Sequence[str] = ("feature_view", "source_uri", "partition", "feast_conn_id")

    def __init__(self, *, feature_view: str, source_uri: str, partition: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature_view = feature_view
        self.source_uri = source_uri
        self.partition = partition

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk import ObjectStoragePath  # fsspec/upath: not on the DAG-parse path

        try:
            day = dt.date.fromisoformat(str(self.partition))
        except ValueError:
            raise ConfigurationError(
                f"partition={self.partition!r} is not a day (YYYY-MM-DD); pass e.g. '{{{{ ds }}}}'."
            ) from None
        source = ObjectStoragePath(self.source_uri)
        if not is_file(source):
            raise DataNotFound(
                f"Validated partition {self.source_uri} of feature view {self.feature_view!r} does not exist; "
                "check the upstream validation task's output."
            )
        target = ObjectStoragePath(
            f"{self.hook.batch_source_uri(self.feature_view)}/date={day.isoformat()}/{PART_FILE}"
        )

        def copy(handle: Any) -> None:
            with source.open("rb") as src:
                while chunk := src.read(1 << 20):
                    handle.write(chunk)

        write_atomically(target, copy)
        rows = _num_rows(target)
        self.log.info("Published %d rows of %s to %s", rows, self.feature_view, target)
        return {"uri": str(target), "rows": rows}


class FeastMaterializeOperator(_FeastOperator):
    """Load one interval of feature values from the offline store into the online store.

    Calls ``FeatureStore.materialize(start - overlap, end, feature_views)`` while holding each view's
    lock, so two runs touching the same view never interleave. Re-running an interval rewrites the
    same values, leaving the online store as it was. Materializing an interval older than what is
    already online (a backfill) extends the window up to the newest materialized time, so each entity
    keeps its newest value whatever order the runs finish in. Feast's file offline store includes rows stamped
    exactly at ``end``; the counts below use the same bounds.

    :param feature_views: names of the views to materialize; all views of the project when None. (templated)
    :param start: interval start, ISO 8601 with timezone. (templated)
    :param end: interval end, ISO 8601 with timezone. (templated)
    :param overlap_seconds: also re-load this many seconds before ``start``, to pick up late rows.
    :param feast_conn_id: the Feast connection. (templated)
    :return: ``{"start", "end", "views": {name: {"rows", "entities"}}}``: source rows in the window and
        distinct entities written, per view. Both are None for views not backed by a FileSource.
    """

    template_fields: Sequence[str] = ("feature_views", "start", "end", "feast_conn_id")

    def __init__(
        self,
        *,
        feature_views: list[str] | None = None,
        start: str = "{{ data_interval_start }}",
        end: str = "{{ data_interval_end }}",
        overlap_seconds: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature_views = feature_views
        self.start = start
        self.end = end
        self.overlap_seconds = overlap_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        start = parse_instant(self.start, "start") - dt.timedelta(seconds=self.overlap_seconds)
        end = parse_instant(self.end, "end")
        if start >= end:
            raise ConfigurationError(f"Empty materialization window: start {start} is not before end {end}.")
        names = self.feature_views or [view.name for view in self.hook.get_store().list_feature_views()]
        views = {name: self._materialize_view(name, start, end) for name in names}
        window = {"start": start.isoformat(), "end": end.isoformat()}
        for outlet in self.outlets:  # consumers learn which window is now online
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = dict(window)
        return {**window, "views": views}

    def _materialize_view(self, name: str, start: dt.datetime, end: dt.datetime) -> dict[str, int | None]:
        hook = self.hook
        hook.get_feature_view(name)  # fail fast, listing the known views, before taking a lock
        with hook.view_lock(name):
            counts: dict[str, int | None] = {
                "rows": None,
                "entities": None,
                **(hook.source_window_counts(name, start, end) or {}),
            }
            # Online stores keep the last value written, not the newest. When a later interval is already
            # online (a backfill, or runs finishing out of order), stretch the window to it: Feast writes
            # each entity's latest row in the window, so online values never move back in time.
            online_until = hook.fresh_until(name)
            load_until = max(end, online_until) if online_until else end
            if load_until > end:
                self.log.info(
                    "%s is online up to %s, later than this interval; loading %s..%s so no "
                    "entity goes back to an older value",
                    name,
                    online_until,
                    start,
                    load_until,
                )
            self.log.info("Materializing %s from %s to %s: %s source rows", name, start, end, counts["rows"])
            hook.get_store().materialize(start_date=start, end_date=load_until, feature_views=[name])
        self.log.info("Materialized %s: %s entities written", name, counts["entities"])
        return counts


def _training_set_fingerprint(uri: str, table: pa.Table) -> str:
    """The trainer's ``mlops.data_fingerprint`` of the file just written, without reading it back remotely."""
    import tempfile
    from pathlib import Path

    import pyarrow.parquet as pq

    from mlops_provider.ml.lineage import data_fingerprint

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(uri) if "://" not in uri else Path(tmp) / "training_set.parquet"
        if local.parent == Path(tmp):
            pq.write_table(table, local)  # the same bytes: pyarrow writes deterministically
        return data_fingerprint(local)


class FeastHistoricalFeaturesOperator(_FeastOperator):
    """Build a point-in-time correct training set from a feature service and write it as one parquet file.

    ``entity_df`` is a parquet file, a directory of parquet files (partition folders included), a glob,
    a list of parquet files (or its JSON text, as a template renders it: one file per day of a window),
    or a SQL query (starting with SELECT or WITH) run through ``entity_df_conn_id``'s DB-API hook; each
    row's features are the latest snapshot at or before its timestamp (within the view's TTL).

    The task's default outlet is ``Asset("feast://training-sets/<feature_service>")``; its event carries
    ``{"uri", "rows"}`` as extra.

    :param feature_service: the feature service whose features to retrieve. (templated)
    :param entity_df: where the entity rows (keys, timestamps, labels) come from. (templated)
    :param output_uri: the parquet file to write, local path or ``s3://``; overwritten. (templated)
    :param event_timestamp_column: the entity rows' timestamp column; None takes Feast's own rule: the
        column named with Feast's reserved ``event_timestamp`` if there is one, else the entity_df's only
        datetime column.
        (templated)
    :param entity_columns: keep only these entity_df columns (plus the timestamp and the feature
        service's join keys); all when None. (templated)
    :param drop_missing_features: drop (and count) rows whose features are all null because the entity
        had no snapshot in time.
    :param entity_df_conn_id: a DB-API connection to run a SQL ``entity_df`` through. (templated)
    :param feast_conn_id: the Feast connection. (templated)
    :return: ``{"uri", "rows", "columns", "dropped_rows", "fingerprint", "join_keys",
        "timestamp_column"}`` (``fingerprint`` is the trainer's ``mlops.data_fingerprint`` of the file,
        for the skip-if-unchanged check); ``dropped_rows`` counts entity rows missing from the training
        set, whether Feast's offline store or ``drop_missing_features`` removed them.

    The file records the feature service's join keys and the timestamp column in its parquet metadata
    (:data:`~mlops_provider.constants.JOIN_KEYS_METADATA`, ``TIMESTAMP_COLUMN_METADATA``): the training
    operators and the reference trainer read them from there when not told, so a key never becomes a
    feature and no timestamp name is assumed.
    """

    template_fields: Sequence[str] = (
        "feature_service",
        "entity_df",
        "output_uri",
        "event_timestamp_column",
        "entity_columns",
        "entity_df_conn_id",
        "feast_conn_id",
    )

    def __init__(
        self,
        *,
        feature_service: str,
        entity_df: str | list[str],
        output_uri: str,
        event_timestamp_column: str | None = None,
        entity_columns: list[str] | None = None,
        drop_missing_features: bool = True,
        entity_df_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "outlets",
            [training_set_asset(feature_service)],
        )
        super().__init__(**kwargs)
        self.feature_service = feature_service
        self.entity_df = entity_df
        self.output_uri = output_uri
        self.event_timestamp_column = event_timestamp_column
        self.entity_columns = entity_columns
        self.drop_missing_features = drop_missing_features
        self.entity_df_conn_id = entity_df_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath  # fsspec/upath: not on the DAG-parse path

        service = self.hook.get_feature_service(self.feature_service)
        join_keys = self.hook.join_keys(service)
        entities, ts = self._load_entity_df(join_keys)
        training = self._retrieve(service, entities, ts)
        table = pa.Table.from_pandas(training, preserve_index=False)
        table = table.replace_schema_metadata(
            {
                **(table.schema.metadata or {}),
                JOIN_KEYS_METADATA: ",".join(join_keys),
                TIMESTAMP_COLUMN_METADATA: ts,
            }
        )
        output = ObjectStoragePath(self.output_uri)
        write_atomically(output, lambda handle: pq.write_table(table, handle))

        dropped = len(entities) - len(training)
        result = {
            "uri": self.output_uri,
            "rows": len(training),
            "columns": list(training.columns),
            "dropped_rows": dropped,
            "fingerprint": _training_set_fingerprint(self.output_uri, table),
            "join_keys": join_keys,
            "timestamp_column": ts,
        }
        self.log.info(
            "Wrote %d training rows (%d entity rows dropped) to %s; keys %s, timestamp %r",
            len(training),
            dropped,
            output,
            join_keys,
            ts,
        )
        extra: dict[str, Any] = {
            "uri": self.output_uri,
            "rows": len(training),
            "join_keys": join_keys,
            "timestamp_column": ts,
        }
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = extra
        return result

    def _retrieve(self, service: Any, entities: pd.DataFrame, ts: str) -> pd.DataFrame:
        # Feast looks the entity timestamp up under its reserved name; restore the user's after.
        renamed = (
            entities.rename(columns={ts: FEAST_ENTITY_TIMESTAMP})
            if ts != FEAST_ENTITY_TIMESTAMP
            else entities
        )
        job = self.hook.get_store().get_historical_features(entity_df=renamed, features=service)
        training = job.to_df()
        if ts != FEAST_ENTITY_TIMESTAMP:
            training = training.rename(columns={FEAST_ENTITY_TIMESTAMP: ts})
        features = [f.name for projection in service.feature_view_projections for f in projection.features]
        missing = training[features].isna().all(axis=1)
        if missing.any():
            self.log.warning(
                "%d entity rows have no %s features at their timestamp (no snapshot within the TTL)%s",
                int(missing.sum()),
                self.feature_service,
                "; dropping them" if self.drop_missing_features else "",
            )
            if self.drop_missing_features:
                training = training[~missing]
        # A stable order makes the written file identical on every re-run.
        order = [c for c in entities.columns if c in training.columns]
        return (
            training[order + [c for c in training.columns if c not in order]]
            .sort_values(order)
            .reset_index(drop=True)
        )

    def _load_entity_df(self, join_keys: list[str]) -> tuple[pd.DataFrame, str]:
        """The entity rows and their timestamp column, checked against the service's join keys."""
        source = self._entity_files()
        if isinstance(source, str) and source.lower().startswith(SQL_PREFIXES):
            frame = self._query(source)
        else:
            frame = self._read_parquet(source)
        ts = self.event_timestamp_column or self._infer_timestamp(frame)
        absent = [key for key in join_keys if key not in frame.columns]
        if absent:
            raise ConfigurationError(
                f"entity_df {self._describe()} lacks the join key(s) {absent} of feature service "
                f"{self.feature_service!r}; its columns are {', '.join(map(str, frame.columns))}."
            )
        if ts not in frame.columns:
            raise ConfigurationError(
                f"entity_df {self._describe()} has no timestamp column {ts!r}; its columns are "
                f"{', '.join(map(str, frame.columns))}. Set event_timestamp_column."
            )
        if ts != FEAST_ENTITY_TIMESTAMP and FEAST_ENTITY_TIMESTAMP in frame.columns:
            raise ConfigurationError(
                f"entity_df {self._describe()} has both {ts!r} and {FEAST_ENTITY_TIMESTAMP!r}; Feast reads the latter, "
                "so list the columns to keep in entity_columns."
            )
        if self.entity_columns:
            unknown = sorted(set(self.entity_columns) - set(frame.columns))
            if unknown:
                raise ConfigurationError(f"entity_columns {unknown} are not in entity_df {self._describe()}.")
            frame = frame[[*dict.fromkeys([*join_keys, *self.entity_columns, ts])]]
        if frame.empty:
            raise EmptyPartition(
                f"entity_df {self._describe()} has no rows, so there is no training set for "
                f"{self.feature_service!r}; check that its labels have landed."
            )
        return frame, ts

    def _infer_timestamp(self, frame: pd.DataFrame) -> str:
        """Feast's rule for an entity dataframe: its reserved name, else its only datetime column."""
        import pandas as pd

        if FEAST_ENTITY_TIMESTAMP in frame.columns:
            return FEAST_ENTITY_TIMESTAMP
        stamps = [str(c) for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
        if len(stamps) == 1:
            return stamps[0]
        raise ConfigurationError(
            f"entity_df {self._describe()} has {len(stamps)} datetime columns ({', '.join(stamps) or 'none'}); "
            "set event_timestamp_column to the one the features are looked up at."
        )

    def _entity_files(self) -> str | list[str]:
        """The SQL text or path/glob as given, or the list of files (also from its JSON text)."""
        source = self.entity_df
        if isinstance(source, str) and source.strip().startswith("["):
            try:
                source = json.loads(source)
            except ValueError:
                raise ConfigurationError(
                    f"entity_df {source!r} is neither a path nor a JSON list of files"
                ) from None
        if isinstance(source, str):
            return source.strip()
        if not source or not all(isinstance(item, str) for item in source):
            raise DataNotFound(
                f"entity_df {source!r} names no parquet file; check the window it was built for."
            )
        return list(source)

    def _describe(self) -> str:
        source = self._entity_files()
        return (
            "(SQL query)"
            if isinstance(source, str) and source.lower().startswith(SQL_PREFIXES)
            else repr(source)
        )

    def _read_parquet(self, source: str | list[str]) -> pd.DataFrame:
        import pyarrow.dataset as ds
        from airflow.sdk import ObjectStoragePath  # fsspec/upath: not on the DAG-parse path

        files: Any
        if isinstance(source, list):
            paths = [ObjectStoragePath(item) for item in source]
            absent = [item for item, p in zip(source, paths, strict=True) if not is_file(p)]
            if absent:
                raise DataNotFound(
                    f"entity_df files {absent} do not exist; check the path or re-run their producer."
                )
            path, files = paths[0], [p.path for p in paths]
        else:
            path = ObjectStoragePath(source)
            if any(ch in source for ch in "*?["):
                files = sorted(path.fs.glob(path.path))
            elif exists(path):
                files = path.path
            else:
                files = []
        if not files:
            raise DataNotFound(f"entity_df {source!r} matches no parquet file; check the path or glob.")
        # No partitioning: folder names like date=... must not become extra training columns.
        table: pa.Table = ds.dataset(files, filesystem=path.fs, format="parquet").to_table()
        return table.to_pandas()

    def _query(self, sql: str) -> pd.DataFrame:
        import pandas as pd

        frame = self._sql_hook().get_df(sql, df_type="pandas")
        # DB-API drivers such as sqlite3 return timestamps as text; Feast needs datetimes. Without a
        # named column, Feast's default name is the only one that can be recognised in text.
        column = self.event_timestamp_column or FEAST_ENTITY_TIMESTAMP
        if column in frame.columns and not isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def _sql_hook(self) -> Any:
        from airflow.sdk import BaseHook

        if not self.entity_df_conn_id:
            raise ConfigurationError(
                "entity_df is a SQL query but entity_df_conn_id is not set; name the database connection to run it."
            )
        return BaseHook.get_connection(self.entity_df_conn_id).get_hook()
