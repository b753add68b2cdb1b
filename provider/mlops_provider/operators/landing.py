"""Take a daily partition out of the landing area into a private staging copy.

The staging copy is what gets validated, quarantined or published, so a landing area that upstream
keeps writing to can never change a batch half-way through the pipeline.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from mlops_provider.exceptions import DataNotFound
from mlops_provider.ml.io import write_atomically
from mlops_provider.utils.storage import is_file


class ExtractPartitionOperator(BaseOperator):
    """Copy one landing partition file (local path or s3://, through ObjectStoragePath) to staging.

    :param source_uri: the partition file to take, e.g.
        ``{landing}/customer_activity/date={{ ds }}/part-00000.parquet``. (templated)
    :param destination_uri: where the staging copy goes; overwritten on re-runs. (templated)
    :param conn_id: optional object-storage connection for remote URIs. (templated)
    :return: ``{"source": ..., "uri": ..., "bytes": ...}``.
    :raises DataNotFound: the partition does not exist (nothing is written).
    """

    template_fields: Sequence[str] = ("source_uri", "destination_uri", "conn_id")

    def __init__(self, *, source_uri: str, destination_uri: str, conn_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_uri = source_uri
        self.destination_uri = destination_uri
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk import ObjectStoragePath  # fsspec/upath: not on the DAG-parse path

        source = ObjectStoragePath(self.source_uri, conn_id=self.conn_id)
        destination = ObjectStoragePath(self.destination_uri, conn_id=self.conn_id)
        if not is_file(source):
            raise DataNotFound(
                f"Partition {self.source_uri} does not exist. Check that upstream delivered this day's file "
                "(and the landing_path param), then clear this task to re-run."
            )
        with source.open("rb") as data:  # readers never see a half-written staging file
            write_atomically(destination, lambda handle: shutil.copyfileobj(data, handle, 1 << 20))
        size = destination.stat().st_size
        self.log.info("Staged %s (%d bytes) at %s", self.source_uri, size, self.destination_uri)
        return {"source": self.source_uri, "uri": self.destination_uri, "bytes": size}
