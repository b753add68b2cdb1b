"""Existence checks that tell a missing object from an unreachable store (a real S3 API: moto's server)."""

from __future__ import annotations

import pytest
from tools.services import free_port

from mlops_provider.exceptions import DataNotFound, ServiceUnavailable
from mlops_provider.utils.storage import exists, is_file


@pytest.fixture
def s3(monkeypatch):
    """An S3 endpoint on loopback with one object, ``s3://data/day/part.parquet``; stop() takes it down."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3")
    client.create_bucket(Bucket="data")
    client.put_object(Bucket="data", Key="day/part.parquet", Body=b"rows")
    yield server
    server.stop()


def test_a_present_object_a_missing_one_and_a_prefix(s3):
    from airflow.sdk import ObjectStoragePath

    assert is_file(ObjectStoragePath("s3://data/day/part.parquet"))
    assert not is_file(ObjectStoragePath("s3://data/day/other.parquet"))
    assert not exists(ObjectStoragePath("s3://data/day/other.parquet"))
    assert exists(ObjectStoragePath("s3://data/day"))
    assert not is_file(ObjectStoragePath("s3://data/day"))


def test_an_unreachable_store_is_retriable_and_named_never_missing(s3):
    """fsspec's own is_file() answers False here, which would fail the task for good as missing input."""
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath("s3://data/day/part.parquet")
    s3.stop()
    assert path.is_file() is False  # the trap this module exists for
    with pytest.raises(
        ServiceUnavailable, match=r"s3://data/day/part.parquet exists: its store did not answer"
    ):
        is_file(path)
    with pytest.raises(ServiceUnavailable) as raised:
        exists(path)
    assert not isinstance(raised.value, DataNotFound)  # retried by Airflow, not failed for good


def test_local_paths(tmp_path):
    from airflow.sdk import ObjectStoragePath

    (tmp_path / "part.parquet").write_bytes(b"rows")
    assert is_file(ObjectStoragePath(f"file://{tmp_path}/part.parquet"))
    assert not is_file(ObjectStoragePath(f"file://{tmp_path}"))
    assert exists(ObjectStoragePath(f"file://{tmp_path}"))
    assert not exists(ObjectStoragePath(f"file://{tmp_path}/none.parquet"))
