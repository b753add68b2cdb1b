"""GXDataDocsLink: Airflow stores the data docs URL the task pushed, or nothing when it built none."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseOperator

from mlops_provider.links.gx import DATA_DOCS_XCOM_KEY, GXDataDocsLink

DOCS = "file:///srv/gx/docs/validations/customer_activity/2026-01-03/pandas-customer_activity.html"


class PushesDataDocs(BaseOperator):
    """Pushes a data docs URL as ``GXValidateOperator`` does, or none."""

    operator_extra_links = (GXDataDocsLink(),)

    def __init__(self, *, url: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url

    def execute(self, context: Any) -> None:
        if self.url is not None:
            context["ti"].xcom_push(key=DATA_DOCS_XCOM_KEY, value=self.url)


def test_the_link_is_the_pushed_data_docs_url_or_empty(run_and_read_xcoms) -> None:
    from airflow.sdk import DAG

    with DAG("gx_link_unit", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as dag:
        PushesDataDocs(task_id="with_docs", url=DOCS)
        PushesDataDocs(task_id="without_docs", url=None)

    xcoms = run_and_read_xcoms(dag)

    assert xcoms["with_docs"]["_link_GXDataDocsLink"] == DOCS
    assert xcoms["with_docs"][DATA_DOCS_XCOM_KEY] == DOCS
    assert xcoms["without_docs"]["_link_GXDataDocsLink"] == ""
    assert GXDataDocsLink.name == "GX Data Docs"
