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

PIPELINE = ["feature_pipeline", "training_pipeline", "canary_rollout", "batch_scoring"]
MODEL_NAME = "churn_classifier"
# The first model, then a retraining with a wider network: a new challenger for the canary rollout.
FIRST = {"epochs": 10, "hidden": [32], "lr": 0.01}
RETRAIN = {"epochs": 10, "hidden": [64, 32], "lr": 0.005}


def demo_days(days: int, today: dt.date | None = None) -> list[dt.date]:
    """The last ``days`` complete days, so the run the scheduler makes on unpause finds data too."""
    today = today or dt.datetime.now(dt.UTC).date()
    return [today - dt.timedelta(days=days - i) for i in range(days)]


def generate_data(stack: LocalStack, days: list[dt.date], rows_per_day: int, *, log=print) -> None:
    landing = stack.data_root / "landing"
    log(f"Generating {len(days)} days x {rows_per_day} customers into {landing} ...")
    generate(GeneratorConfig(rows_per_day=rows_per_day), landing, days[0], len(days))


def _trigger_and_wait(stack: LocalStack, dag_id: str, conf: dict[str, Any], timeout: float = 900) -> list[dict]:
    earlier = len(stack.api(f"dags/{dag_id}/dagRuns?limit=100")["dag_runs"])
    stack.airflow("dags", "trigger", dag_id, "--conf", json.dumps(conf))
    return stack.wait_for_runs(dag_id, count=earlier + 1, timeout=timeout)


def _train_and_roll_out(
    stack: LocalStack, day: dt.date, hyperparameters: dict | None, log=print
) -> tuple[list[dict], list[dict]]:
    """Trigger a training run; when its gate passes, wait for the canary rollout it starts."""
    rollouts_before = len(stack.api("dags/canary_rollout/dagRuns?limit=100")["dag_runs"])
    conf: dict[str, Any] = {"day": day.isoformat()}
    if hyperparameters:
        conf["hyperparameters"] = hyperparameters
    training = _trigger_and_wait(stack, "training_pipeline", conf)
    gate = stack.task_state("training_pipeline", training[-1]["dag_run_id"], "challenger_set")
    if gate != "success":
        log("  the gate did not pass: no canary rollout")
        return training, stack.api("dags/canary_rollout/dagRuns?limit=100")["dag_runs"]
    log("  gate passed: the challenger Asset starts canary_rollout (5 % -> 25 % -> 50 % -> 100 %) ...")
    return training, stack.wait_for_runs("canary_rollout", count=rollouts_before + 1, timeout=900)


def run_pipeline(
    stack: LocalStack,
    days: list[dt.date],
    *,
    hyperparameters: dict | None = None,
    retrain_hyperparameters: dict | None = RETRAIN,
    log=print,
) -> dict[str, Any]:
    """Run the shipped DAGs under the real scheduler.

    Features for each day; training, gate and the canary rollout of the first model (promoted at once:
    no champion yet); a retraining with ``retrain_hyperparameters`` whose challenger goes out as a
    canary in steps and is promoted or rolled back; then batch scoring of the newest day.
    """
    stack.wait_for_dags(PIPELINE)
    for dag_id in ("training_pipeline", "batch_scoring"):
        stack.airflow("dags", "pause", dag_id)  # until there are features and a champion
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
    for dag_id in ("training_pipeline", "canary_rollout"):  # from now on each new day retrains
        stack.airflow("dags", "unpause", dag_id)
    log("Training the first model: training set -> train -> register -> gate -> canary ...")
    training, rollouts = _train_and_roll_out(stack, days[-1], hyperparameters, log)
    if retrain_hyperparameters:
        log(f"Retraining with {retrain_hyperparameters}: a challenger to the champion ...")
        training, rollouts = _train_and_roll_out(stack, days[-1], retrain_hyperparameters, log)
    log("Scoring the newest day with the champion (and the canary's share during a rollout) ...")
    stack.airflow("dags", "unpause", "batch_scoring")
    scoring = _trigger_and_wait(stack, "batch_scoring", {"day": days[-1].isoformat()})
    return {
        "feature_pipeline": features,
        "training_pipeline": training,
        "canary_rollout": rollouts,
        "batch_scoring": scoring,
    }


def model_summary(stack: LocalStack) -> list[str]:
    """Per registered version of the churn model: aliases, metrics, gate and canary decisions."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    lines = []
    found = client.search_model_versions(f"name='{MODEL_NAME}'")
    for version in sorted(int(v.version) for v in found):
        mv = client.get_model_version(MODEL_NAME, str(version))  # search results carry no aliases
        aliases = ",".join(sorted(mv.aliases)) or "-"
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        auc = metrics.get("val_auc")
        canary = mv.tags.get("mlops.canary.status", "-")
        lines.append(
            f"  {MODEL_NAME} v{mv.version:<3} aliases={aliases:<30} val_auc="
            f"{auc if auc is None else round(auc, 3)}  gate={mv.tags.get('mlops.gate.decision', '-')}  "
            f"canary={canary}"
        )
        for entry in json.loads(mv.tags.get("mlops.canary.history", "[]")):
            lines.append(f"      {entry['action']:<16} weight {entry['weight']:>3} %  {entry['message'][:110]}")
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
    results = run_pipeline(stack, days, hyperparameters=FIRST)
    print_summary(stack, results)
    print(f"Done in {time.monotonic() - started:.0f} s.")
    failed = [r for runs in results.values() for r in runs if r["state"] != "success"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
