"""Validate a batch (a file, a DataFrame or a SQL table) with Great Expectations and act on the outcome."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from mlops_provider.exceptions import BatchQuarantined, ConfigurationError, ValidationFailed
from mlops_provider.hooks.gx import GXHook
from mlops_provider.links.gx import DATA_DOCS_XCOM_KEY, GXDataDocsLink

if TYPE_CHECKING:
    from airflow.sdk import Context
    from great_expectations.core import ExpectationSuiteValidationResult

ON_FAILURE = ("fail", "warn", "quarantine")
ON_EMPTY = ("fail", "skip")
_MAX_OBSERVED = 160


class GXValidateOperator(BaseOperator):
    """Validate one batch against a GX expectation suite kept in a JSON file.

    :param suite_path: the suite file (GX 1.x ``ExpectationSuite`` as JSON); a relative path is
        resolved against the DAG file's folder.
    :param data: a parquet file or directory, or a ``.csv`` file (local path or ``s3://`` URI), or a
        pandas DataFrame (e.g. an upstream task's XComArg). Exactly one of ``data`` and ``sql``.
    :param sql: a table name (``[schema.]table``) or a ``SELECT`` query, read through ``conn_id``.
    :param conn_id: Airflow connection of the database ``sql`` runs on.
    :param data_asset_name: the batch's name in messages, reports, data docs and the quarantine
        area; defaults to the suite's name.
    :param suite_parameters: values of the suite's ``{"$PARAMETER": name}`` placeholders, e.g. the
        data interval bounds.
    :param on_failure: ``fail`` raises ``ValidationFailed``; ``warn`` logs and returns the summary
        with ``success`` False; ``quarantine`` moves a file batch to
        ``<quarantine_root>/<data_asset_name>/<batch_id>/`` with ``validation_report.json`` (DataFrame
        and SQL batches get the report only) and raises ``BatchQuarantined``.
    :param on_empty: a batch of 0 rows is skipped (``skip``: downstream tasks are skipped) or is a
        validation failure (``fail``) handled as ``on_failure`` says.
    :param quarantine_root: where ``quarantine`` puts bad batches (local path or ``s3://`` URI).
    :param data_docs_dir: directory of the data docs site, a local path or an ``s3://`` URI; defaults
        to ``$AIRFLOW_HOME/gx_data_docs``; an empty string builds no data docs.
    :param batch_id: names the batch in messages, data docs and the quarantine area.
    :return: the summary: ``success``, ``suite``, ``data_asset``, ``batch_id``, ``statistics``
        (GX's evaluated, successful and unsuccessful expectation counts and success percent),
        ``row_count``, ``failed_expectations`` (``expectation``, ``column``, ``observed``,
        ``unexpected_count`` each), ``data_docs`` (page URL or None) and ``report`` (None unless
        quarantined).
    """

    template_fields: Sequence[str] = (
        "suite_path",
        "data",
        "sql",
        "conn_id",
        "data_asset_name",
        "suite_parameters",
        "on_failure",
        "on_empty",
        "quarantine_root",
        "data_docs_dir",
        "batch_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql", "suite_parameters": "json"}
    operator_extra_links = (GXDataDocsLink(),)

    def __init__(
        self,
        *,
        suite_path: str,
        data: Any = None,
        sql: str | None = None,
        conn_id: str | None = None,
        data_asset_name: str | None = None,
        suite_parameters: dict[str, Any] | None = None,
        on_failure: str = "fail",
        on_empty: str = "fail",
        quarantine_root: str | None = None,
        data_docs_dir: str | None = None,
        batch_id: str = "{{ run_id }}",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (data is None) == (sql is None):
            raise ConfigurationError(f"{self.task_id}: pass exactly one of data (file or DataFrame) or sql")
        if sql is not None and not conn_id:
            raise ConfigurationError(f"{self.task_id}: sql needs conn_id, the connection of its database")
        self.suite_path = suite_path
        self.data = data
        self.sql = sql
        self.conn_id = conn_id
        self.data_asset_name = data_asset_name
        self.suite_parameters = suite_parameters
        self.on_failure = on_failure
        self.on_empty = on_empty
        self.quarantine_root = quarantine_root
        self.data_docs_dir = data_docs_dir
        self.batch_id = batch_id
        if "{{" not in f"{on_failure}{on_empty}":  # templated choices are checked once rendered
            self._check_choices()

    @cached_property
    def hook(self) -> GXHook:
        """The GX hook, built on first use."""
        docs = self.data_docs_dir
        if docs is None:
            from airflow.configuration import AIRFLOW_HOME

            docs = str(Path(AIRFLOW_HOME) / "gx_data_docs")
        return GXHook(conn_id=self.conn_id, data_docs_dir=docs or None)

    def execute(self, context: Context) -> dict[str, Any]:
        self._check_choices()
        suite = self.hook.load_suite(self._suite_file())
        asset = self.data_asset_name or suite.name
        batch_id = str(self.batch_id)
        source = self.data if isinstance(self.data, str) else None
        frame = None
        if self.sql is None:
            try:
                frame = (
                    self.hook.read_batch(source) if source is not None else _as_frame(self.data, self.task_id)
                )
            except ValueError as err:  # unreadable file: as bad as a failed expectation
                summary = _summary(suite.name, asset, batch_id, None, None, row_count=None)
                summary["failed_expectations"] = [
                    {
                        "expectation": "read_batch",
                        "column": None,
                        "observed": str(err),
                        "unexpected_count": None,
                    }
                ]
                return self._fail(summary, f"{asset} {batch_id}: {err}", source, None)
            if len(frame) == 0 and self.on_empty == "skip":
                self._skip(asset, batch_id)

        result, docs_url = self.hook.validate(
            suite,
            data_asset_name=asset,
            dataframe=frame,
            sql=self.sql,
            suite_parameters=self.suite_parameters,
            run_name=batch_id,
            run_time=context.get("logical_date"),
        )
        if docs_url and "ti" in context:
            context["ti"].xcom_push(key=DATA_DOCS_XCOM_KEY, value=docs_url)
        row_count = len(frame) if frame is not None else _row_count(result)
        if row_count == 0 and self.on_empty == "skip":
            self._skip(asset, batch_id)
        summary = _summary(suite.name, asset, batch_id, result, docs_url, row_count=row_count)
        if row_count == 0:
            summary["success"] = False
            return self._fail(summary, f"{asset} {batch_id}: the partition is empty (0 rows)", source, result)
        if not summary["success"]:
            return self._fail(summary, _failure_message(summary), source, result)
        stats = summary["statistics"]
        self.log.info(
            "%s %s passed %s expectations on %s rows; data docs: %s",
            asset,
            batch_id,
            stats["evaluated_expectations"],
            row_count,
            docs_url,
        )
        return summary

    def _check_choices(self) -> None:
        if self.on_failure not in ON_FAILURE:
            raise ConfigurationError(
                f"{self.task_id}: on_failure must be one of {ON_FAILURE}, got {self.on_failure!r}"
            )
        if self.on_empty not in ON_EMPTY:
            raise ConfigurationError(
                f"{self.task_id}: on_empty must be one of {ON_EMPTY}, got {self.on_empty!r}"
            )
        if self.on_failure == "quarantine" and not self.quarantine_root:
            raise ConfigurationError(f"{self.task_id}: on_failure='quarantine' needs quarantine_root")

    def _suite_file(self) -> Path:
        path = Path(self.suite_path)
        if not path.is_absolute() and self.has_dag():
            path = Path(self.dag.folder) / path
        return path

    def _skip(self, asset: str, batch_id: str) -> None:
        message = (
            f"{asset} {batch_id} is empty (0 rows); skipping it and its downstream tasks (on_empty='skip')"
        )
        self.log.info(message)
        raise AirflowSkipException(message)

    def _fail(
        self,
        summary: dict[str, Any],
        message: str,
        source: str | None,
        result: ExpectationSuiteValidationResult | None,
    ) -> dict[str, Any]:
        if summary["data_docs"]:
            message += f". Data docs: {summary['data_docs']}"
        if self.on_failure == "warn":
            self.log.warning("%s (on_failure='warn': carrying on)", message)
            return summary
        if self.on_failure == "fail":
            raise ValidationFailed(f"{message}. Fix the data or the suite, then clear this task.")
        destination = (
            f"{str(self.quarantine_root).rstrip('/')}/{summary['data_asset']}/{_safe(summary['batch_id'])}"
        )
        report = {
            "summary": summary,
            "message": message,
            "validation_result": result.to_json_dict() if result is not None else None,
        }
        summary["report"] = self.hook.quarantine(source, destination, report)
        moved = f"moved {source} and its report" if source else "wrote the report"
        raise BatchQuarantined(
            f"{message}. Quarantined: {moved} to {destination}; fix the batch, put it back and clear this task."
        )


def _as_frame(data: Any, task_id: str) -> Any:
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(
            f"{task_id}: data must be a file path/URI or a pandas DataFrame, got {type(data).__name__}"
        )
    return data


def _summary(
    suite: str,
    asset: str,
    batch_id: str,
    result: ExpectationSuiteValidationResult | None,
    docs_url: str | None,
    *,
    row_count: int | None,
) -> dict[str, Any]:
    stats = dict(result.statistics) if result is not None else {}
    return {
        "success": bool(result.success) if result is not None else False,
        "suite": suite,
        "data_asset": asset,
        "batch_id": batch_id,
        "statistics": {
            key: stats.get(key)
            for key in (
                "evaluated_expectations",
                "successful_expectations",
                "unsuccessful_expectations",
                "success_percent",
            )
        },
        "row_count": row_count,
        "failed_expectations": [_failed(r) for r in result.results if not r.success]
        if result is not None
        else [],
        "data_docs": docs_url,
        "report": None,
    }


def _failed(res: Any) -> dict[str, Any]:
    config = res.expectation_config
    return {
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        "observed": _observed(res),
        "unexpected_count": res.result.get("unexpected_count"),
    }


def _observed(res: Any) -> str:
    """What GX saw, in a line: the error, the column mismatch, the observed value or unexpected samples."""
    error = _exception_message(res.exception_info or {})
    if error:
        return error[:_MAX_OBSERVED]
    out = res.result
    mismatched = (out.get("details") or {}).get("mismatched")
    if isinstance(mismatched, dict):
        return "; ".join(f"{kind} {sorted(cols)}" for kind, cols in sorted(mismatched.items()))[
            :_MAX_OBSERVED
        ]
    if "observed_value" in out:
        return str(out["observed_value"])[:_MAX_OBSERVED]
    samples = list(dict.fromkeys(str(v) for v in out.get("partial_unexpected_list") or []))[:3]
    return f"e.g. {', '.join(samples)}" if samples else ""


def _exception_message(info: dict[str, Any]) -> str | None:
    # GX puts one error at the top level, or one per failed metric keyed by the metric's id.
    if info.get("raised_exception"):
        return info.get("exception_message")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return value.get("exception_message")
    return None


def _failure_message(summary: dict[str, Any]) -> str:
    stats = summary["statistics"]
    parts = []
    for failed in summary["failed_expectations"]:
        name = failed["expectation"] + (f"({failed['column']})" if failed["column"] else "")
        if failed["unexpected_count"]:
            detail = f"{failed['unexpected_count']} unexpected, {failed['observed']}"
        else:
            detail = failed["observed"]
        parts.append(f"{name}: {detail}")
    return (
        f"{summary['data_asset']} {summary['batch_id']} failed {stats['unsuccessful_expectations']} of "
        f"{stats['evaluated_expectations']} expectations: " + "; ".join(parts)
    )


def _row_count(result: ExpectationSuiteValidationResult) -> int | None:
    """The batch's row count as GX measured it (a row count expectation, else any column map's size)."""
    results = result.results
    counts = [
        r.result.get("observed_value")
        for r in results
        if r.expectation_config is not None and "table_row_count" in r.expectation_config.type
    ]
    counts += [r.result.get("element_count") for r in results]
    return next((c for c in counts if isinstance(c, int)), None)


def _safe(name: str) -> str:
    # Run ids hold ':' and '+'; keep quarantine paths portable across filesystems and object stores.
    return re.sub(r"[^A-Za-z0-9._=-]", "_", name)
