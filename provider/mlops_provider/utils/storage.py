"""Existence checks on an ``ObjectStoragePath`` that tell "missing" from "unreachable".

fsspec's ``isfile()`` and ``exists()`` (and so ``ObjectStoragePath.is_file()``) answer False on *any*
error: with the S3 endpoint down, a partition that is there reads as missing, and a task that fails
for good on missing input (``DataNotFound``) would not be retried. Here only "not found" is False;
any other error is :class:`~mlops_provider.exceptions.ServiceUnavailable`, which Airflow retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_provider.exceptions import ServiceUnavailable

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def _info(path: ObjectStoragePath) -> dict[str, Any] | None:
    try:
        return dict(path.fs.info(path.path))
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise ServiceUnavailable(
            f"Could not tell whether {path} exists: its store did not answer "
            f"({type(exc).__name__}: {exc}). Nothing was written; the task is retried."
        ) from exc


def exists(path: ObjectStoragePath) -> bool:
    """Whether ``path`` (a file or a directory) exists; ServiceUnavailable when its store cannot say."""
    return _info(path) is not None


def is_file(path: ObjectStoragePath) -> bool:
    """Whether ``path`` is a file; ServiceUnavailable when its store cannot say."""
    info = _info(path)
    return info is not None and info.get("type") == "file"
