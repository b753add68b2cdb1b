"""Great Expectations (GX Core 1.x): validate a DataFrame or a SQL table against a suite kept in a JSON file.

Each hook builds its own ephemeral GX context, so tasks running side by side share no GX state. Data
docs are the only thing GX writes to disk: a static site in ``data_docs_dir`` whose index lists every
validation page ever written there. GX Core 1.x writes local files only, so the site of a remote
``data_docs_dir`` (``s3://``) is built in a local temp dir and copied there after each validation.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import weakref
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

from mlops_provider.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.fs as pafs
    from great_expectations import ExpectationSuite
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.datasource.fluent.sql_datasource import QueryAsset, TableAsset

DATA_DOCS_SITE = "airflow"


class GXHook(BaseHook):
    """Run GX Core validations for Airflow tasks.

    GX itself needs no connection; ``conn_id`` names the database connection of SQL batches only.

    :param conn_id: Airflow connection of the database holding SQL batches (any conn type whose
        hook exposes ``sqlalchemy_url`` or ``get_uri()``, and ``sqlite``).
    :param data_docs_dir: directory (local path or ``s3://`` URI) of the data docs site; None builds none.
    """

    conn_name_attr = "conn_id"
    default_conn_name = None
    hook_name = "Great Expectations"

    def __init__(self, *, conn_id: str | None = None, data_docs_dir: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.data_docs_dir = data_docs_dir

    @cached_property
    def context(self) -> EphemeralDataContext:
        """An ephemeral GX context with progress bars off and data docs built into ``data_docs_dir``."""
        gx = _import_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for site in list(context.get_site_names()):
            context.delete_data_docs_site(site)  # the default site writes to a throwaway temp dir
        if self._docs_build_dir:
            backend = {"class_name": "TupleFilesystemStoreBackend", "base_directory": self._docs_build_dir}
            site = {"class_name": "SiteBuilder", "show_how_to_buttons": False, "store_backend": backend}
            context.add_data_docs_site(DATA_DOCS_SITE, site)
        return context

    @cached_property
    def _docs_build_dir(self) -> str | None:
        """Where GX builds the data docs: ``data_docs_dir``, or a local temp dir for a remote one."""
        if not self.data_docs_dir:
            return None
        if not _is_remote(self.data_docs_dir):
            return str(self.data_docs_dir)
        local = tempfile.mkdtemp(prefix="mlops-gx-docs-")
        weakref.finalize(self, shutil.rmtree, local, True)
        return local

    def _publish_docs(self, local_url: str) -> str:
        """Copy the locally built site to the remote ``data_docs_dir``; return the page's remote URI."""
        remote, local = str(self.data_docs_dir).rstrip("/"), str(self._docs_build_dir)
        _copy_tree(local, remote)
        page = urllib.parse.unquote(local_url.removeprefix("file://"))
        return f"{remote}/{os.path.relpath(page, local)}"

    def get_conn(self) -> EphemeralDataContext:
        """Return the GX context."""
        return self.context

    def test_connection(self) -> tuple[bool, str]:
        """Check that GX imports and, when ``conn_id`` is set, that its database answers."""
        try:
            gx = _import_gx()
            if self.conn_id:
                import sqlalchemy

                with sqlalchemy.create_engine(self.sqlalchemy_url()).connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        return True, f"great_expectations {gx.__version__} ready"

    def load_suite(self, path: str | Path) -> ExpectationSuite:
        """Load an expectation suite from a JSON file (the dict form of GX 1.x ``ExpectationSuite``).

        :param path: the suite file.
        :return: the suite, added to this hook's context.
        :raises ConfigurationError: the file is missing, not JSON, or holds an invalid expectation.
        """
        gx = _import_gx()
        try:
            spec = json.loads(Path(path).read_text())
            suite = gx.ExpectationSuite(**spec)
        except (OSError, ValueError, TypeError) as err:
            raise ConfigurationError(f"cannot load expectation suite {path}: {err}") from err
        # GX logs and drops an invalid expectation instead of raising; a dropped check must not pass silently.
        if len(suite.expectations) != len(spec.get("expectations", [])):
            raise ConfigurationError(
                f"expectation suite {path} holds invalid expectations (GX dropped "
                f"{len(spec['expectations']) - len(suite.expectations)}); see the GX error above and fix the file"
            )
        return self.context.suites.add_or_update(suite)

    def read_batch(self, uri: str) -> pd.DataFrame:
        """Read a parquet file or directory, or a CSV file, from a local path or an ``s3://`` URI.

        Integer columns with nulls become pandas' nullable integers (``Int64``...), not float64, so the
        file's type passes ``expect_column_values_to_be_of_type`` and the null rule decides about the
        nulls; every other column converts as pyarrow's ``to_pandas`` does.

        :param uri: where the batch lives; ``.csv`` files are read as CSV, everything else as parquet.
        :return: the batch as a pandas DataFrame.
        :raises DataNotFound: nothing exists at ``uri``.
        :raises ValueError: the file exists but cannot be read (corrupt, not parquet/CSV).
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        fs, path = _filesystem(uri)
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise DataNotFound(f"batch {uri} does not exist; check that the upstream load for it ran")
        try:
            if path.lower().endswith(".csv"):
                with fs.open_input_stream(path) as stream:
                    table = pacsv.read_csv(stream)
            else:
                table = pq.read_table(path, filesystem=fs)
        except (pa.ArrowException, ValueError) as err:
            raise ValueError(f"cannot read {uri}: {err}") from err
        return _to_pandas(table)

    def sqlalchemy_url(self) -> str:
        """Return the SQLAlchemy URL of ``conn_id``, password included (never log it)."""
        if not self.conn_id:
            raise ConfigurationError("GXHook needs conn_id to validate a SQL batch")
        conn = self.get_connection(self.conn_id)
        try:
            db_hook = conn.get_hook()
        except (AirflowException, ImportError) as err:
            # SQLite needs no provider to be validated; every other database needs its provider's hook.
            if conn.conn_type == "sqlite" and conn.host:
                return f"sqlite:///{conn.host}"
            raise ConfigurationError(
                f"connection {self.conn_id!r} (type {conn.conn_type}) has no usable hook: {err}; "
                "install the Airflow provider of that database"
            ) from err
        url = getattr(db_hook, "sqlalchemy_url", None)
        if url is not None:
            return url.render_as_string(hide_password=False)
        return db_hook.get_uri()

    def validate(
        self,
        suite: ExpectationSuite,
        *,
        data_asset_name: str,
        dataframe: pd.DataFrame | None = None,
        sql: str | None = None,
        suite_parameters: dict[str, Any] | None = None,
        run_name: str | None = None,
        run_time: dt.datetime | None = None,
    ) -> tuple[ExpectationSuiteValidationResult, str | None]:
        """Validate one batch, a DataFrame or a SQL table/query, and update the data docs.

        :param suite: a suite from :meth:`load_suite`.
        :param data_asset_name: the name the batch carries in GX results and data docs.
        :param dataframe: the batch, for DataFrame input.
        :param sql: a table name (``[schema.]table``) or a ``SELECT`` query on ``conn_id``, for SQL input.
        :param suite_parameters: values of the suite's ``{"$PARAMETER": name}`` placeholders.
        :param run_name: names the validation in data docs (e.g. the Airflow run id).
        :param run_time: time of the validation in data docs; the same name and time overwrite a page.
        :return: the GX validation result and the file URL of its data docs page (None without data docs).
        """
        gx = _import_gx()
        from great_expectations.core.run_identifier import RunIdentifier

        if (dataframe is None) == (sql is None):
            raise ConfigurationError("pass exactly one of dataframe or sql")
        context = self.context
        if sql is None:  # exactly one is given: the DataFrame
            pandas_source = context.data_sources.add_or_update_pandas("pandas")
            _drop_asset(pandas_source, data_asset_name)
            frame_asset = pandas_source.add_dataframe_asset(data_asset_name)
            batch_definition = frame_asset.add_batch_definition_whole_dataframe("batch")
            batch_parameters: dict[str, Any] | None = {"dataframe": dataframe}
        else:
            sql_source = context.data_sources.add_or_update_sql(
                "sql", connection_string=self.sqlalchemy_url()
            )
            _drop_asset(sql_source, data_asset_name)
            sql_asset: QueryAsset | TableAsset
            if any(ch.isspace() for ch in sql.strip()):
                sql_asset = sql_source.add_query_asset(data_asset_name, query=sql)
            else:
                schema, _, table = sql.strip().rpartition(".")
                sql_asset = sql_source.add_table_asset(
                    data_asset_name, table_name=table, schema_name=schema or None
                )
            batch_definition = sql_asset.add_batch_definition_whole_table("batch")
            batch_parameters = None
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=data_asset_name, data=batch_definition, suite=suite)
        )
        actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if self.data_docs_dir else []
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(name=data_asset_name, validation_definitions=[definition], actions=actions)
        )
        outcome = checkpoint.run(
            batch_parameters=batch_parameters,
            expectation_parameters=suite_parameters or {},
            run_id=RunIdentifier(run_name=run_name, run_time=run_time),
        )
        ((key, result),) = outcome.run_results.items()
        url = None
        if self.data_docs_dir:
            urls = context.get_docs_sites_urls(resource_identifier=key, site_names=[DATA_DOCS_SITE])
            url = urls[0]["site_url"] if urls else None
            if url and _is_remote(self.data_docs_dir):
                url = self._publish_docs(url)
        return result, url

    def quarantine(self, source: str | None, destination: str, report: dict[str, Any]) -> str:
        """Move a bad batch into ``destination`` and write ``validation_report.json`` next to it.

        Whatever an earlier quarantine of the same batch left in ``destination`` is replaced, so a
        re-run converges.

        :param source: the batch file or directory; None writes the report only (DataFrame or SQL input).
        :param destination: the batch's quarantine directory (local path or ``s3://`` URI).
        :param report: JSON-serialisable report.
        :return: the report's path or URI.
        """
        import pyarrow.fs as pafs

        dst_fs, dst = _filesystem(destination)
        dst_fs.create_dir(dst, recursive=True)
        dst_fs.delete_dir_contents(dst, missing_dir_ok=True)
        if source is not None:
            src_fs, src = _filesystem(source)
            target = f"{dst}/{Path(src).name}"
            try:
                if not src_fs.equals(dst_fs):
                    raise OSError("different filesystems")
                src_fs.move(src, target)
            except OSError:  # across filesystems or devices a move is a copy and a delete
                pafs.copy_files(src, target, source_filesystem=src_fs, destination_filesystem=dst_fs)
                _delete(src_fs, src)
        report_path = f"{dst}/validation_report.json"
        with dst_fs.open_output_stream(report_path) as out:
            out.write(json.dumps(report, indent=2, default=str).encode())
        return (
            report_path if "://" not in destination else f"{destination.rstrip('/')}/validation_report.json"
        )


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas()``, except integer columns holding nulls, which keep an integer dtype.

    GX's type rule compares the numpy type, and ``Int64Dtype().type`` is ``numpy.int64``. Columns
    without nulls stay numpy integers: a few GX aggregates (e.g. KL divergence) fail on nullable ones.
    """
    import pandas as pd
    import pyarrow as pa

    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_integer(column.type) and column.null_count:
            # int32 -> Int32, uint8 -> UInt8...: the nullable integer of the same width.
            nullable = pd.Series([], dtype=column.type.to_pandas_dtype()).convert_dtypes().dtype
            frame[name] = column.to_pandas(types_mapper={column.type: nullable}.get)
    return frame


def _import_gx() -> Any:
    # Airflow's structlog shows GX's import-time INFO chatter (thousands of lines); GX must not phone home.
    logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _drop_asset(source: Any, name: str) -> None:
    # A hook validating the same asset twice rebuilds it: the asset holds no state worth keeping.
    if name in source.get_asset_names():
        source.delete_asset(name)


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _copy_tree(source: str, destination: str) -> None:
    """Copy every file under ``source`` to ``destination`` (local paths or URIs), replacing same names."""
    import pyarrow.fs as pafs

    src_fs, src = _filesystem(source)
    dst_fs, dst = _filesystem(destination)
    dst_fs.create_dir(dst, recursive=True)
    pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    import pyarrow.fs as pafs

    if _is_remote(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri.removeprefix("file://"))


def _delete(fs: pafs.FileSystem, path: str) -> None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
    else:
        fs.delete_file(path)
