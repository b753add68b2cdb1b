"""MLflow tracking and registry access through one Airflow connection.

MLflow reads credentials, TLS and HTTP-retry settings only from environment variables, so the hook
sets them for the span of a call (:meth:`MLflowHook.credentials_env`) and restores them afterwards;
the tracking and registry URIs go to ``MlflowClient`` directly and never touch global state.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.sdk import BaseHook

from mlops_provider.constants import FINGERPRINT_TAGS
from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable
from mlops_provider.hooks.mlflow_client import defer_feast_request_headers, filter_literal

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# Substrings of MLflow's REST errors that mean "the server did not answer", not "the server said no".
_UNREACHABLE = ("Max retries exceeded", "Connection refused", "ConnectionError", "timeout exception")


def strip_userinfo(uri: str) -> str:
    """Return ``uri`` without ``user:password@`` so it can appear in messages and links."""
    parts = urlsplit(uri)
    if not parts.netloc or "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class MLflowHook(BaseHook):
    """Build an ``MlflowClient`` from an Airflow connection of type ``mlflow``.

    Connection fields: host = tracking URI (``http(s)://...``, ``sqlite:///...`` or a path),
    login/password = basic auth; extras ``registry_uri``, ``token``, ``insecure_tls``, ``ui_base_url``,
    and optionally ``http_max_retries`` / ``http_timeout`` (MLflow's own HTTP retry policy).

    :param mlflow_conn_id: the Airflow connection id.
    :param tracking_uri: overrides the connection's host.
    :param registry_uri: overrides the ``registry_uri`` extra (default: the tracking URI).
    :param http_max_retries: overrides the ``http_max_retries`` extra.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(
        self,
        mlflow_conn_id: str = default_conn_name,
        *,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        http_max_retries: int | None = None,
    ) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self._tracking_uri = tracking_uri
        self._registry_uri = registry_uri
        self._http_max_retries = http_max_retries

    @cached_property
    def _conn(self) -> Any:
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except Exception as error:  # the SDK's AirflowNotFoundException moved across versions
            if type(error).__name__ != "AirflowNotFoundException":
                raise
            raise ConfigurationError(
                f"MLflow connection {self.mlflow_conn_id!r} is not defined; create it with host = tracking URI "
                '(e.g. AIRFLOW_CONN_MLFLOW_DEFAULT=\'{"conn_type": "mlflow", "host": "http://mlflow:5000"}\')'
            ) from error
        for secret in (conn.password, (conn.extra_dejson or {}).get("token")):
            if secret:
                from airflow.sdk.log import mask_secret

                mask_secret(secret)
        return conn

    @property
    def _extras(self) -> dict[str, Any]:
        return self._conn.extra_dejson or {}

    @cached_property
    def tracking_uri(self) -> str:
        """The tracking URI, from the constructor or the connection's host."""
        if self._tracking_uri:
            return self._tracking_uri
        host = (self._conn.host or "").strip()
        if not host:
            raise ConfigurationError(
                f"Connection {self.mlflow_conn_id!r} has no host; set it to the MLflow tracking URI, "
                "e.g. http://mlflow:5000 or sqlite:///mlflow.db."
            )
        if re.match(r"^[a-z][a-z0-9+.-]*:", host) or host.startswith(("/", ".")):
            return host
        port = f":{self._conn.port}" if self._conn.port else ""
        return f"http://{host}{port}"

    @cached_property
    def registry_uri(self) -> str:
        """The model registry URI; the tracking URI unless set."""
        return self._registry_uri or self._extras.get("registry_uri") or self.tracking_uri

    @property
    def safe_tracking_uri(self) -> str:
        """The tracking URI without credentials, for messages."""
        return strip_userinfo(self.tracking_uri)

    def get_client(self) -> MlflowClient:
        """Return the cached ``MlflowClient``; call it inside :meth:`session` when the server needs auth."""
        return self._client

    @cached_property
    def _client(self) -> MlflowClient:
        from mlflow import MlflowClient

        defer_feast_request_headers()  # else the first request imports feast: 10-20 s per process
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def credentials(self) -> dict[str, str]:
        """MLflow's credential variables from the connection (secret: for a subprocess's environment only)."""
        conn = self._conn
        env = {
            "MLFLOW_TRACKING_USERNAME": conn.login,
            "MLFLOW_TRACKING_PASSWORD": conn.password,
            "MLFLOW_TRACKING_TOKEN": self._extras.get("token"),
        }
        return {key: str(value) for key, value in env.items() if value not in (None, "")}

    def client_settings(self) -> dict[str, str]:
        """MLflow's TLS and HTTP retry/timeout variables from the connection (nothing secret)."""
        extras = self._extras
        env: dict[str, Any] = {}
        if extras.get("insecure_tls") in (True, "true", "True", "1", 1):
            env["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
        retries = (
            self._http_max_retries if self._http_max_retries is not None else extras.get("http_max_retries")
        )
        if retries is not None:
            env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(retries))
        if extras.get("http_timeout") is not None:
            env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(extras["http_timeout"]))
        return {key: str(value) for key, value in env.items() if value not in (None, "")}

    def _env(self) -> dict[str, str]:
        return {**self.credentials(), **self.client_settings()}

    def process_env(self) -> dict[str, str]:
        """Everything a separate MLflow client process needs: the tracking and registry URIs, the
        credentials and the client settings (the local trainer's environment). Secrets are masked in logs.
        """
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.registry_uri,
            **self._env(),
        }

    @contextlib.contextmanager
    def credentials_env(self) -> Iterator[None]:
        """Set MLflow's credential and HTTP environment variables for the block, then restore them.

        Environment variables are process-wide: do not share one process between hooks of
        different connections running in parallel threads.
        """
        env = self._env()
        previous = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    @contextlib.contextmanager
    def session(self) -> Iterator[MlflowClient]:
        """Yield the client with credentials in place; turn "server unreachable" into ``ServiceUnavailable``."""
        from mlflow.exceptions import MlflowException

        with self.credentials_env():
            try:
                yield self.get_client()
            except MlflowException as err:
                if not any(marker in str(err.message) for marker in _UNREACHABLE):
                    raise
                raise ServiceUnavailable(
                    f"MLflow at {self.safe_tracking_uri} (connection {self.mlflow_conn_id!r}) could not be "
                    "reached; check that the server is up and the URI is right. Retrying the task is safe."
                ) from None

    def test_connection(self) -> tuple[bool, str]:
        """List one experiment to prove the tracking server answers and accepts the credentials."""
        try:
            with self.session() as client:
                client.search_experiments(max_results=1)
        except Exception as err:
            return False, self._redact(str(err))
        return True, f"Connected to MLflow at {self.safe_tracking_uri}."

    def _redact(self, text: str) -> str:
        for secret in (self._conn.password, self._extras.get("token")):
            if secret:
                text = text.replace(str(secret), "***")
        return text

    def ui_base_url(self) -> str | None:
        """Where the MLflow UI lives: the ``ui_base_url`` extra, else an http(s) tracking URI."""
        base = self._extras.get("ui_base_url") or self.safe_tracking_uri
        return base.rstrip("/") if base.startswith(("http://", "https://")) else None

    def ui_url_for_run(self, run_id: str, experiment_id: str | None = None) -> str | None:
        """Return the UI page of an MLflow run, or None when the tracking URI has no web UI."""
        base = self.ui_base_url()
        if base is None:
            return None
        if experiment_id is None:
            with self.session() as client:
                experiment_id = client.get_run(run_id).info.experiment_id
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"

    def ui_url_for_model_version(self, name: str, version: str | int) -> str | None:
        """Return the UI page of a registered model version, or None without a web UI."""
        base = self.ui_base_url()
        return None if base is None else f"{base}/#/models/{quote(name, safe='')}/versions/{version}"

    def load_model(self, name: str, version: str | int) -> Any:
        """Download version ``version`` of ``name`` and load it as an ``mlflow.pyfunc`` model."""
        import tempfile

        import mlflow

        with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
            # Resolve through our client: MLflow resolves "models:/" URIs with the process-global
            # registry URI, whatever registry_uri is passed.
            with self.session() as client:
                source = client.get_model_version_download_uri(name, str(version))
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=source,
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                )
            return mlflow.pyfunc.load_model(path)

    def download_artifact(self, run_id: str, artifact_path: str, dst_path: str) -> str:
        """Download one artifact of run ``run_id`` into ``dst_path``; return its local path."""
        import mlflow

        with self.session():
            return mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=dst_path, tracking_uri=self.tracking_uri
            )

    def model_inputs(self, model_uri: str) -> list[str] | None:
        """The input column names of a logged model's signature (None when it has no signature).

        Reads the model's ``MLmodel`` file only, not its weights.
        """
        import tempfile

        import mlflow
        from mlflow.models import Model

        with tempfile.TemporaryDirectory(prefix="mlops-mlmodel-") as tmp, self.session() as client:
            location = model_uri.rstrip("/")
            if location.startswith("models:/m-"):  # an MLflow 3 logged model, not a registered name
                location = client.get_logged_model(location.removeprefix("models:/")).artifact_location
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{location}/MLmodel",
                dst_path=tmp,
                tracking_uri=self.tracking_uri,
                registry_uri=self.registry_uri,
            )
            signature = Model.load(path).signature
        return None if signature is None else list(signature.inputs.input_names())

    def list_artifact_paths(self, run_id: str, path: str) -> list[str]:
        """The artifact paths directly under ``path`` of run ``run_id``."""
        with self.session() as client:
            return [item.path for item in client.list_artifacts(run_id, path)]

    def read_artifact_text(self, run_id: str, artifact_path: str) -> str:
        """The text of one artifact of run ``run_id`` (a JSON report, say)."""
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="mlops-artifact-") as tmp:
            return Path(self.download_artifact(run_id, artifact_path, tmp)).read_text()

    def find_version_by_fingerprint(
        self, name: str, *, data_fingerprint: str, code_version: str, hyperparameters_hash: str
    ) -> ModelVersion | None:
        """Return the newest READY version of ``name`` trained on the same data, code and hyperparameters."""
        from mlflow.exceptions import MlflowException

        values = (data_fingerprint, code_version, hyperparameters_hash)
        clauses = [f"name = {filter_literal(name)}"]
        clauses += [
            f"tags.`{tag}` = {filter_literal(value)}"
            for tag, value in zip(FINGERPRINT_TAGS, values, strict=True)
        ]
        with self.session() as client:
            try:
                versions = client.search_model_versions(" AND ".join(clauses))
            except MlflowException as err:
                if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return None
                raise
        ready = [v for v in versions if v.status == "READY"]
        return max(ready, key=lambda v: int(v.version)) if ready else None
