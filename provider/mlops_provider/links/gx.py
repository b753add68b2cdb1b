"""Operator extra link to the GX data docs page of a validation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

DATA_DOCS_XCOM_KEY = "gx_data_docs"


class GXDataDocsLink(BaseOperatorLink):
    """Link to the data docs page that ``GXValidateOperator`` pushed to XCom (``gx_data_docs``).

    The page is a ``file://`` URL on the worker, or the ``s3://`` URI of its copy when ``data_docs_dir``
    is on S3; serve ``data_docs_dir`` from a shared volume or a web server for the link to open from the UI.
    """

    name = "GX Data Docs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the data docs URL of the task instance, or an empty string when it built none."""
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=DATA_DOCS_XCOM_KEY) or ""
