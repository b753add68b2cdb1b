"""Run a command and start it again whenever it exits, as systemd's ``Restart=always`` or a Kubernetes
Deployment would: ``python -m tools.respawn -- airflow scheduler``.

Airflow's scheduler, DAG processor and triggerer exit when their metadata database goes away (a
PostgreSQL restart, a fail-over) and expect their process manager to start them again. SIGTERM or
SIGINT to this process stops the command and ends the loop; a command that keeps dying within
``--min-uptime`` seconds is started again after a pause that grows up to 30 s.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.respawn", description=__doc__)
    parser.add_argument("--min-uptime", type=float, default=30, help="a shorter run counts as a crash loop")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pause = 1.0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(command)
        code = child.wait()
        if stopping:
            return code
        pause = 1.0 if time.monotonic() - started >= args.min_uptime else min(30.0, pause * 2)
        print(f"respawn: {command[0]} exited with {code}; starting it again in {pause:.0f} s", flush=True)
        time.sleep(pause)
    return 0


if __name__ == "__main__":
    sys.exit(main())
