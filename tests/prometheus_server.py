"""Real ``prometheus`` and ``prometheus-pushgateway`` on loopback for the session (Debian's binaries).

Prometheus scrapes the Pushgateway every second with ``honor_labels: true``, so a test pushes the series
it needs (:meth:`PrometheusStack.push`) and queries them a second or two later. The Pushgateway keeps
exposing the last pushed values, so a counter pushed twice with a higher value yields a non-zero
``rate()`` over any window that holds both scrapes. The fixture fails, never skips, when the binaries are
missing: install them with ``apt-get install -y prometheus prometheus-pushgateway``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.services import free_port

_START_TIMEOUT_S = 60.0
SCRAPE_INTERVAL_S = 1.0
_INSTALL = "apt-get update && apt-get install -y prometheus prometheus-pushgateway"


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if not found:
        pytest.fail(f"{name} not found on PATH or in /usr/bin; run `{_INSTALL}`.")
    return found


class PrometheusStack:
    """A Prometheus server scraping a Pushgateway, both on free ports of 127.0.0.1.

    :param root: directory for the config, the TSDB and the logs.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prometheus_port, self.pushgateway_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.prometheus_port}"
        self.pushgateway_url = f"http://127.0.0.1:{self.pushgateway_port}"
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start the Pushgateway, then Prometheus; wait until both answer ``/-/ready``."""
        config = self.root / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL_S:g}s\n"
            f"  evaluation_interval: {SCRAPE_INTERVAL_S:g}s\n"
            "scrape_configs:\n"
            "  - job_name: pushgateway\n"
            "    honor_labels: true\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.pushgateway_port}']\n"
        )
        self._spawn(
            "pushgateway",
            [
                _binary("prometheus-pushgateway"),
                f"--web.listen-address=127.0.0.1:{self.pushgateway_port}",
                "--persistence.file=",  # Debian's default file lives in /var/lib/prometheus
            ],
        )
        self._wait_ready("pushgateway", self.pushgateway_url)
        self._spawn(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--storage.tsdb.retention.time=1h",
            ],
        )
        self._wait_ready("prometheus", self.url)
        self._wait_scraping()

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            self._processes.append(
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
                )
            )

    def _wait_ready(self, name: str, url: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._processes[-1].poll() is not None:
                self.stop()
                pytest.fail(f"{name} exited early:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"{name} was not ready in {_START_TIMEOUT_S:.0f} s:\n{self.log_tail(name)}")

    def _wait_scraping(self) -> None:
        """Wait for the first scrape of the Pushgateway: Prometheus applies new targets only every 5 s."""
        query = urllib.parse.urlencode({"query": 'up{job="pushgateway"} == 1'})
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=5) as response:
                if json.loads(response.read())["data"]["result"]:
                    return
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"Prometheus never scraped the Pushgateway:\n{self.log_tail('prometheus')}")

    def log_tail(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop both processes (Prometheus first)."""
        for process in reversed(self._processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        self._processes.clear()

    def push(self, job: str, exposition: str, **grouping: str) -> None:
        """Replace the group ``job`` (+ ``grouping`` labels) on the Pushgateway with ``exposition``.

        :param job: the ``job`` label.
        :param exposition: metrics in the Prometheus text format (``# TYPE`` lines included).
        :param grouping: more grouping-key labels; the Pushgateway adds them to every pushed series.
        """
        path = "/metrics/job/" + urllib.parse.quote(job, safe="")
        for label, value in grouping.items():
            path += f"/{label}/{urllib.parse.quote(value, safe='')}"
        body = exposition if exposition.endswith("\n") else exposition + "\n"
        request = urllib.request.Request(
            self.pushgateway_url + path,
            data=body.encode(),
            method="PUT",
            headers={"Content-Type": "text/plain; version=0.0.4"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 202), response.status

    def wait_scraped(self) -> None:
        """Sleep long enough for Prometheus to scrape what was just pushed."""
        time.sleep(2.5 * SCRAPE_INTERVAL_S)


@pytest.fixture(scope="session")
def prometheus_stack() -> Iterator[PrometheusStack]:
    """Prometheus + Pushgateway shared by the session (one per xdist worker; group their tests)."""
    stack = PrometheusStack(Path(tempfile.mkdtemp(prefix="mlops-prometheus-")))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
