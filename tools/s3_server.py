"""An S3 endpoint on loopback for the production profile: moto's server in a process of its own.

``python -m tools.s3_server --port 9000 --buckets mlops-data,mlops-artifacts`` serves S3 on
127.0.0.1:9000 and creates the buckets. Objects live in this process's memory: they last as long as it
runs. To simulate an outage without losing them, SIGUSR1 closes the listener (clients get "connection
refused") and SIGUSR2 opens it again on the same port; SIGTERM ends the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.s3_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--buckets", default="", help="comma-separated bucket names to create")
    args = parser.parse_args(argv)

    import boto3
    from moto.server import ThreadedMotoServer

    def serve() -> ThreadedMotoServer:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
        server.start()
        return server

    servers = [serve()]
    stop = threading.Event()

    def outage(signum: int, frame: object) -> None:
        if servers:
            servers.pop().stop()
            print("S3 listener closed (SIGUSR1); objects kept", flush=True)

    def recover(signum: int, frame: object) -> None:
        if not servers:
            servers.append(serve())
            print("S3 listener open again (SIGUSR2)", flush=True)

    signal.signal(signal.SIGUSR1, outage)
    signal.signal(signal.SIGUSR2, recover)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())

    endpoint = f"http://127.0.0.1:{args.port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    for bucket in filter(None, args.buckets.split(",")):
        client.create_bucket(Bucket=bucket)
    print(f"S3 (moto) on {endpoint}; buckets: {args.buckets or '-'}", flush=True)
    while not stop.wait(1):
        pass
    for server in servers:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
