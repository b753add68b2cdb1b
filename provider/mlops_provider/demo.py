"""``make demo``: generate data, start the embedded stack, run the shipped DAGs, print what happened.

``python -m mlops_provider.demo up`` is idempotent: a second run reuses the running servers and the
data already there, and only adds what is missing. ``python -m mlops_provider.demo down`` (``make
down``) stops the servers; Ctrl-C during ``up`` does the same.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mlops_provider.example_data.generator import GeneratorConfig, generate
from mlops_provider.local_stack import LocalStack

PIPELINE = ["feature_pipeline", "training_pipeline"]
MODEL_NAME = "churn_classifier"


def demo_days(days: int, today: dt.date | None = None) -> list[dt.date]:
    """The last ``days`` complete days, so the run the scheduler makes on unpause finds data too."""
    today = today or dt.datetime.now(dt.UTC).date()
    return [today - dt.timedelta(days=days - i) for i in range(days)]


def generate_data(stack: LocalStack, days: list[dt.date], rows_per_day: int, *, log=print) -> None:
    landing = stack.data_root / "landing"
    log(f"Generating {len(days)} days x {rows_per_day} customers into {landing} ...")
    generate(GeneratorConfig(rows_per_day=rows_per_day), landing, days[0], len(days))


def run_pipeline(
    stack: LocalStack, days: list[dt.date], *, hyperparameters: dict | None = None, log=print
) -> dict[str, Any]:
    """Run the shipped DAGs under the real scheduler: features for each day, then training on them."""
    stack.wait_for_dags(PIPELINE)
    stack.airflow("dags", "pause", "training_pipeline")  # until the features have history
    log(f"Backfilling feature_pipeline for {days[0]} .. {days[-1]} ...")
    stack.airflow(
        "backfill",
        "create",
        "--dag-id",
        "feature_pipeline",
        "--from-date",
        days[0].isoformat(),
        "--to-date",
        days[-1].isoformat(),
        "--reprocess-behavior",
        "failed",
    )
    stack.airflow("dags", "unpause", "feature_pipeline")
    features = stack.wait_for_runs("feature_pipeline", count=len(days), timeout=300 + 90 * len(days))
    log(f"feature_pipeline: {[r['state'] for r in features]}")
    log("Training on them: training set -> train -> register -> gate ...")
    conf: dict[str, Any] = {"day": days[-1].isoformat()}
    if hyperparameters:
        conf["hyperparameters"] = hyperparameters
    stack.airflow("dags", "unpause", "training_pipeline")  # from now on each new day retrains
    earlier = len(stack.api("dags/training_pipeline/dagRuns?limit=100")["dag_runs"])
    stack.airflow("dags", "trigger", "training_pipeline", "--conf", json.dumps(conf))
    training = stack.wait_for_runs("training_pipeline", count=earlier + 1, timeout=900)
    return {"feature_pipeline": features, "training_pipeline": training}


def model_summary(stack: LocalStack) -> list[str]:
    """One line per registered version of the churn model: its aliases, metrics and gate decision."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    lines = []
    found = client.search_model_versions(f"name='{MODEL_NAME}'")
    for version in sorted(int(v.version) for v in found):
        mv = client.get_model_version(MODEL_NAME, str(version))  # search results carry no aliases
        aliases = ",".join(mv.aliases) or "-"
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        auc = metrics.get("val_auc")
        lines.append(
            f"  {MODEL_NAME} v{mv.version:<3} aliases={aliases:<22} val_auc="
            f"{auc if auc is None else round(auc, 3)}  gate={mv.tags.get('mlops.gate.decision', '-')}"
        )
    return lines or ["  (no registered model yet)"]


def print_summary(stack: LocalStack, results: dict[str, Any]) -> None:
    print("\n=== DAG runs ===")
    for dag_id, runs in results.items():
        for run in runs:
            print(f"  {dag_id:<20} {run['dag_run_id']:<55} {run['state']}")
    print("\n=== Models ===")
    print("\n".join(model_summary(stack)))
    print(f"\nAirflow UI:  {stack.airflow_url}  (login admin / {stack.password})")
    print(f"MLflow UI:   {stack.mlflow_url}  (model {MODEL_NAME}, experiments churn and churn-gate)")
    print(f"Data, logs:  {stack.state_dir}   (source {stack.state_dir / 'env'} to use the airflow CLI)")
    print("Stop everything with `make down`.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_provider.demo", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument("--state-dir", type=Path, default=None, help="default: <project>/.demo")
    parser.add_argument("--days", type=int, default=int(os.environ.get("DEMO_DAYS", 4)))
    parser.add_argument("--rows-per-day", type=int, default=int(os.environ.get("DEMO_ROWS_PER_DAY", 2000)))
    parser.add_argument("--airflow-port", type=int, default=int(os.environ.get("AIRFLOW_PORT", 8080)))
    parser.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT", 5000)))
    args = parser.parse_args(argv)
    stack = LocalStack(
        project_dir=args.project_dir.resolve(),
        state_dir=(args.state_dir or args.project_dir / ".demo").resolve(),
        airflow_port=args.airflow_port,
        mlflow_port=args.mlflow_port,
    )
    if args.action == "down":
        stopped = stack.stop()
        print(f"Stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0

    def interrupted(signum, frame):  # Ctrl-C stops what we started
        print("\nInterrupted: stopping the servers ...")
        stack.stop()
        sys.exit(130)

    signal.signal(signal.SIGINT, interrupted)
    started = time.monotonic()
    days = demo_days(args.days)
    generate_data(stack, days, args.rows_per_day)
    print(f"Starting airflow standalone on {stack.airflow_url} and MLflow on {stack.mlflow_url} ...")
    stack.start()
    results = run_pipeline(stack, days)
    print_summary(stack, results)
    print(f"Done in {time.monotonic() - started:.0f} s.")
    failed = [r for runs in results.values() for r in runs if r["state"] != "success"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
