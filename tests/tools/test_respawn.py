"""tools.respawn: a component that exits is started again; SIGTERM ends the loop and the component."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.conftest import ROOT


def respawn(tmp_path, script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.respawn", "--min-uptime", "0", "--", sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for_lines(path, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise TimeoutError(f"{path}: fewer than {count} lines after {timeout} s")


def test_a_command_that_exits_is_started_again(tmp_path):
    starts = tmp_path / "starts"
    wrapper = respawn(
        tmp_path, f"import os; open({str(starts)!r}, 'a').write(f'{{os.getpid()}}\\n'); raise SystemExit(3)"
    )
    try:
        pids = wait_for_lines(starts, 2)
    finally:
        wrapper.send_signal(signal.SIGTERM)
        out, _ = wrapper.communicate(timeout=60)
    assert len(set(pids)) == len(pids)  # a new process each time
    assert b"exited with 3; starting it again" in out


def test_sigterm_stops_the_command_and_the_loop(tmp_path):
    starts, stopped = tmp_path / "starts", tmp_path / "stopped"
    script = (
        "import signal, sys, time\n"
        f"open({str(starts)!r}, 'a').write('started\\n')\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(stopped)!r}, 'w').write('bye'), sys.exit(0)))\n"
        "time.sleep(600)\n"
    )
    wrapper = respawn(tmp_path, script)
    wait_for_lines(starts, 1)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=60) == 0
    assert stopped.read_text() == "bye"
    time.sleep(1)
    assert starts.read_text().splitlines() == ["started"]  # not started again
