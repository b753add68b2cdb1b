"""Prometheus instant queries for the ``kserve`` canary analysis, over the HTTP API with the stdlib only.

:meth:`PrometheusHook.variant_values` evaluates named PromQL templates (anything with ``name`` and
``query``, such as the canary's metric checks) once per variant (canary and champion revision) and
returns the ``{name: (canary, champion)}`` mapping the canary analysis judges.
"""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any, Protocol

from airflow.sdk import BaseHook

from mlops_provider.exceptions import ConfigurationError, ServiceUnavailable
from mlops_provider.hooks.mlflow import strip_userinfo


class NamedQuery(Protocol):
    """A PromQL template with a ``{revision}`` placeholder, under a name (read-only: a frozen
    :class:`~mlops_provider.canary.MetricCheck` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def query(self) -> str: ...


DEFAULT_TIMEOUT_S = 10.0
# Prometheus error types that a retry can fix; every other one is a bad query.
_TRANSIENT_ERRORS = ("timeout", "canceled", "unavailable")


class PrometheusHook(BaseHook):
    """Query Prometheus through an Airflow connection of type ``prometheus``.

    Connection fields: host = base URL (``http://prometheus:9090``, or a bare host name with the port in
    ``port``), login/password = HTTP basic auth; extra ``timeout`` (seconds, default 10).

    :param prometheus_conn_id: the Airflow connection id.
    :param base_url: the Prometheus base URL; when given, the connection is not read at all.
    """

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "prometheus_default"
    conn_type = "prometheus"
    hook_name = "Prometheus"

    def __init__(self, prometheus_conn_id: str = default_conn_name, *, base_url: str | None = None) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self._base_url = base_url

    @cached_property
    def _conn(self) -> Any:
        if self._base_url:
            return None
        conn = self.get_connection(self.prometheus_conn_id)
        if conn.password:
            from airflow.sdk.log import mask_secret

            mask_secret(conn.password)
        return conn

    @cached_property
    def base_url(self) -> str:
        """The base URL, from the constructor or the connection's host (and port); always http(s)."""
        if self._base_url:
            if not re.match(r"^https?://", self._base_url, re.IGNORECASE):
                # urlopen would also read file:// and ftp:// URLs.
                raise ConfigurationError(
                    f"Prometheus URL {strip_userinfo(self._base_url)!r} must start with http:// or https://."
                )
            return self._base_url.rstrip("/")
        host = (self._conn.host or "").strip()
        if not host:
            raise ConfigurationError(
                f"Connection {self.prometheus_conn_id!r} has no host; set it to the Prometheus base URL, "
                "e.g. http://prometheus:9090."
            )
        if re.match(r"^https?://", host):
            return host.rstrip("/")
        port = f":{self._conn.port}" if self._conn.port else ""
        return f"http://{host}{port}"

    @cached_property
    def timeout(self) -> float:
        """Seconds to wait for an answer (the connection's ``timeout`` extra, default 10)."""
        raw = ((self._conn.extra_dejson or {}) if self._conn else {}).get("timeout", DEFAULT_TIMEOUT_S)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not value > 0:
            raise ConfigurationError(
                f"Connection {self.prometheus_conn_id!r}: extra 'timeout' must be a number of seconds above 0, "
                f"not {raw!r}."
            )
        return value

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._conn and self._conn.login:
            token = base64.b64encode(f"{self._conn.login}:{self._conn.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``path`` and return the ``data`` of Prometheus's JSON envelope."""
        safe_url = strip_userinfo(self.base_url) + path
        url = self.base_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, headers=self._headers())  # noqa: S310 - base_url is http(s)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - ditto
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            # Prometheus answers a bad query with 400/422 and a JSON error envelope.
            try:
                body = json.loads(err.read())
            except ValueError:
                body = None
            if not isinstance(body, dict) or body.get("status") != "error":
                if err.code in (401, 403):
                    raise ConfigurationError(
                        f"Prometheus at {safe_url} refused the credentials of connection "
                        f"{self.prometheus_conn_id!r} (HTTP {err.code})."
                    ) from None
                if err.code >= 500 or err.code == 429:
                    raise ServiceUnavailable(f"Prometheus at {safe_url} answered HTTP {err.code}.") from None
                raise ConfigurationError(f"Prometheus at {safe_url} answered HTTP {err.code}.") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ServiceUnavailable(f"Prometheus at {safe_url} is unreachable: {reason}.") from None
        except ValueError as err:
            raise ServiceUnavailable(
                f"Prometheus at {safe_url} answered something other than JSON: {err}."
            ) from None
        if body.get("status") != "success":
            kind, message = body.get("errorType", "unknown"), body.get("error", "")
            query = f" for query {params['query']!r}" if params and "query" in params else ""
            error = ServiceUnavailable if kind in _TRANSIENT_ERRORS else ConfigurationError
            raise error(f"Prometheus at {safe_url} reported a {kind} error{query}: {message}")
        return body.get("data")

    def query(self, promql: str) -> float | None:
        """Evaluate ``promql`` at the current time and return its single sample's value.

        :param promql: an expression giving one series (aggregate with ``sum()`` or ``avg()``) or a scalar.
        :return: the value; None when the result is empty or NaN (``0/0``: no requests in the window).
        :raises ConfigurationError: on a PromQL error or when the result has more than one series.
        :raises ServiceUnavailable: when Prometheus cannot be reached.
        """
        data = self._get("/api/v1/query", {"query": promql})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            samples = [result]
        elif kind == "vector":
            if len(result) > 1:
                labels = [series.get("metric", {}) for series in result[:5]]
                raise ConfigurationError(
                    f"PromQL query {promql!r} returned {len(result)} series (e.g. {labels}); a canary check "
                    "needs one value: aggregate it, e.g. with sum(...) or avg(...)."
                )
            samples = [series["value"] for series in result]
        else:
            raise ConfigurationError(
                f"PromQL query {promql!r} returned a {kind}, not an instant vector or scalar; wrap range "
                "selectors in rate(...) or another function over time."
            )
        if not samples:
            return None
        value = float(samples[0][1])
        return None if math.isnan(value) else value

    def variant_values(
        self, checks: Iterable[NamedQuery], revisions: Mapping[str, str | None]
    ) -> dict[str, tuple[float | None, float | None]]:
        """Evaluate each check's ``{revision}`` template for the canary and the champion revision.

        :param checks: the metric checks; ``query`` is a PromQL template (braces doubled, ``{revision}``
            replaced by a revision name).
        :param revisions: ``{"canary": revision, "champion": revision}``; a variant without a revision
            gets None (no data).
        :return: ``{check name: (canary value, champion value)}``, the input of
            :func:`mlops_provider.canary.analysis.judge_poll`.
        """
        values: dict[str, tuple[float | None, float | None]] = {}
        for check in checks:
            pair: list[float | None] = []
            for variant in ("canary", "champion"):
                revision = revisions.get(variant)
                if not revision:
                    pair.append(None)
                    continue
                try:
                    promql = check.query.format(revision=revision)
                except (KeyError, IndexError, ValueError) as err:
                    raise ConfigurationError(
                        f"Metric check {check.name!r}: its query is not a valid template ({err!r}); use "
                        '{revision} for the revision and double the PromQL braces: {{label="x"}}.'
                    ) from None
                pair.append(self.query(promql))
            values[check.name] = (pair[0], pair[1])
            self.log.info("Prometheus %s: canary %s, champion %s", check.name, pair[0], pair[1])
        return values

    def test_connection(self) -> tuple[bool, str]:
        """Ask ``/api/v1/status/buildinfo``; return ``(ok, message)`` as the Airflow UI expects."""
        try:
            info = self._get("/api/v1/status/buildinfo") or {}
        except (ConfigurationError, ServiceUnavailable) as err:
            return False, str(err)
        return True, f"Connected to Prometheus {info.get('version', '?')} at {strip_userinfo(self.base_url)}."
