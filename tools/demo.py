"""``make demo``: generate data, start the embedded stack, run the shipped DAGs, print what happened.

``python -m tools.demo up`` is idempotent: a second run reuses the running servers and the
data already there, and only adds what is missing. ``python -m tools.demo down`` (``make
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
from tools.local_stack import LocalStack

PIPELINE = ["feature_pipeline", "drift_monitor", "training_pipeline", "canary_rollout", "batch_scoring"]
MODEL_NAME = "churn_classifier"
# The first model is a quick bootstrap (3 epochs), trained on demand so the demo has a champion
# early. Every later model comes from the scheduled cascade with the training DAG's defaults (10
# epochs, early stopping), which beat it on the held-out day: a real challenger for the canary.
FIRST = {"epochs": 3, "hidden": [32], "lr": 0.01}
ACTIVE = ("queued", "running")


def demo_days(days: int, today: dt.date | None = None) -> list[dt.date]:
    """``days - 1`` complete days of history ending yesterday, then today: the day that "lands" last.

    Unpausing the feature pipeline makes the scheduler run the latest complete interval (yesterday)
    itself, so history ends there; today's data arrives after the first model, as a script would
    deliver it.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    return [today - dt.timedelta(days=days - 1 - i) for i in range(days)]


def generate_data(stack: LocalStack, days: list[dt.date], rows_per_day: int, *, log=print) -> None:
    """Write every day's partitions; the generator's drift knob is on for the last day."""
    landing = stack.data_root / "landing"
    log(f"Generating {len(days)} days x {rows_per_day} customers into {landing} (drift from {days[-1]}) ...")
    generate(GeneratorConfig(rows_per_day=rows_per_day, drift_from=days[-1]), landing, days[0], len(days))


def _runs(stack: LocalStack, dag_id: str) -> list[dict[str, Any]]:
    return stack.api(f"dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]


def _trigger_and_wait(
    stack: LocalStack, dag_id: str, conf: dict[str, Any], timeout: float = 900
) -> list[dict]:
    earlier = len(_runs(stack, dag_id))
    stack.airflow("dags", "trigger", dag_id, "--conf", json.dumps(conf))
    return stack.wait_for_runs(dag_id, count=earlier + 1, timeout=timeout)


def wait_until_settled(
    stack: LocalStack, at_least: dict[str, int], *, quiet_s: float = 30, timeout: float = 1800, log=print
) -> dict[str, list[dict[str, Any]]]:
    """Wait until each DAG in ``at_least`` has that many runs and no DAG of the bundle has run for
    ``quiet_s``: Asset events start the next DAGs a scheduler loop later, so one idle look is not enough.
    """
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    shown = ""
    while time.monotonic() < deadline:
        runs = {dag_id: _runs(stack, dag_id) for dag_id in PIPELINE}
        active = [d for d, rs in runs.items() for r in rs if r["state"] in ACTIVE]
        short = [d for d, n in at_least.items() if len(runs[d]) < n]
        status = ", ".join(sorted(set(active))) or "nothing"
        if status != shown:
            log(f"  running: {status}")
            shown = status
        if active or short:
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= quiet_s:
            return runs
        time.sleep(3)
    raise TimeoutError(f"The DAGs did not settle in {timeout}s; still running: {shown}")


def run_pipeline(
    stack: LocalStack,
    days: list[dt.date],
    *,
    hyperparameters: dict | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the shipped DAGs under the real scheduler.

    1. Backfill the feature pipeline for the history (``days[:-1]``; the scheduler itself runs the
       last of them, yesterday, on unpause), with the DAGs downstream paused.
    2. Bootstrap: train the first model on demand; its canary rollout promotes it at once (no champion).
    3. Today's data (``days[-1]``) lands and a script triggers the feature pipeline; the rest follows by
       Assets alone. The drift monitor finds the generator's drift and announces it; the training
       pipeline retrains (on new features, or on drift); the gate sets the challenger, whose canary
       walks 5 -> 25 -> 50 -> 100 % to promotion or rollback; batch scoring scores the day.
    """
    stack.wait_for_dags(PIPELINE)
    downstream = ["drift_monitor", "training_pipeline", "canary_rollout", "batch_scoring"]
    for dag_id in downstream:
        stack.airflow("dags", "pause", dag_id)  # until there are features and a champion
    history, today = days[:-1], days[-1]
    log(f"1. Backfilling feature_pipeline for {history[0]} .. {history[-1]} ...")
    if len(history) > 1:
        stack.airflow(
            "backfill",
            "create",
            "--dag-id",
            "feature_pipeline",
            "--from-date",
            history[0].isoformat(),
            "--to-date",
            history[-2].isoformat(),
            "--reprocess-behavior",
            "failed",
        )
    stack.airflow("dags", "unpause", "feature_pipeline")  # the scheduler runs yesterday's interval
    features = stack.wait_for_runs("feature_pipeline", count=len(history), timeout=300 + 90 * len(history))
    log(f"   feature_pipeline: {[r['state'] for r in features]}")

    log(
        "2. Training the first model: training set -> train -> register -> gate -> canary (promoted at once) ..."
    )
    for dag_id in ("training_pipeline", "canary_rollout"):
        stack.airflow("dags", "unpause", dag_id)
    rollouts = len(_runs(stack, "canary_rollout"))
    conf: dict[str, Any] = {"day": history[-1].isoformat()}
    if hyperparameters:
        conf["hyperparameters"] = hyperparameters
    training = _trigger_and_wait(stack, "training_pipeline", conf)
    if stack.task_state("training_pipeline", training[-1]["dag_run_id"], "challenger_set") == "success":
        stack.wait_for_runs("canary_rollout", count=rollouts + 1, timeout=900)

    log(
        f"3. Today's data ({today}) lands: feature_pipeline -> drift_monitor -> training -> gate -> canary ..."
    )
    for dag_id in ("drift_monitor", "batch_scoring"):
        stack.airflow("dags", "unpause", dag_id)
    before = {dag_id: len(_runs(stack, dag_id)) for dag_id in PIPELINE}
    stack.airflow("dags", "trigger", "feature_pipeline", "--conf", json.dumps({"day": today.isoformat()}))
    expected = {d: before[d] + 1 for d in ("feature_pipeline", "drift_monitor", "training_pipeline")}
    return wait_until_settled(stack, expected, log=log)


def model_summary(stack: LocalStack) -> list[str]:
    """Per registered version of the churn model: aliases, metrics, gate and canary decisions."""
    import mlflow

    from mlops_provider.canary import CanaryController, CanaryStrategy
    from mlops_provider.constants import GATE_DECISION_TAG

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    rollouts = CanaryController(client, MODEL_NAME, CanaryStrategy())  # the one reader of rollout state
    lines = []
    found = client.search_model_versions(f"name='{MODEL_NAME}'")
    for version in sorted(int(v.version) for v in found):
        mv = client.get_model_version(MODEL_NAME, str(version))  # search results carry no aliases
        aliases = ",".join(sorted(mv.aliases)) or "-"
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        auc = metrics.get("val_auc")
        rollout = rollouts.state(version)
        canary = rollout["status"] or "-"
        lines.append(
            f"  {MODEL_NAME} v{mv.version:<3} aliases={aliases:<30} val_auc="
            f"{auc if auc is None else round(auc, 3)}  gate={mv.tags.get(GATE_DECISION_TAG, '-')}  "
            f"canary={canary}"
        )
        for entry in rollout["history"]:
            lines.append(
                f"      {entry['action']:<16} weight {entry['weight']:>3} %  {entry['message'][:110]}"
            )
    return lines or ["  (no registered model yet)"]


def drift_summary(stack: LocalStack) -> list[str]:
    """One line per drift detection logged by the drift monitor: data, reference version, verdict."""
    import mlflow

    from mlops_provider.constants import DATASET_DRIFT_TAG, DRIFT_EXPERIMENT, DRIFTED_FEATURES_TAG

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
    if experiment is None:
        return ["  (no drift detection yet)"]
    lines = []
    for run in reversed(
        client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    ):
        tags, data = run.data.tags, run.data.params
        drifted = tags.get(DRIFTED_FEATURES_TAG) or "-"
        lines.append(
            f"  {data.get('current_uri', '?').rsplit('/', 2)[-2]:<16} vs v{data.get('model_version', '?'):<3} "
            f"dataset_drift={tags.get(DATASET_DRIFT_TAG)}  share="
            f"{run.data.metrics.get('drift_share', 0):.2f}  drifted: {drifted}"
        )
    return lines


def print_summary(stack: LocalStack, results: dict[str, Any]) -> None:
    print("\n=== DAG runs ===")
    # In the order they were queued, so the cascade reads top to bottom.
    runs = sorted(
        ((r.get("queued_at") or "", d, r) for d, rs in results.items() for r in rs), key=lambda t: t[0]
    )
    for _, dag_id, run in runs:
        print(f"  {dag_id:<20} {run['run_type']:<16} {run['dag_run_id']:<55} {run['state']}")
    print("\n=== Drift (MLflow experiment mlops-drift) ===")
    print("\n".join(drift_summary(stack)))
    print("\n=== Models ===")
    print("\n".join(model_summary(stack)))
    print(f"\nAirflow UI:  {stack.airflow_url}  (login admin / {stack.password})")
    print(f"             ML models view: {stack.airflow_url}/ (Browse -> ML models)")
    print(
        f"MLflow UI:   {stack.mlflow_url}  (model {MODEL_NAME}; experiments churn, churn-gate, mlops-drift)"
    )
    print(f"Data, logs:  {stack.state_dir}   (source {stack.state_dir / 'env'} to use the airflow CLI)")
    print("Stop everything with `make down`.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument("--state-dir", type=Path, default=None, help="default: <project>/.demo")
    parser.add_argument("--days", type=int, default=int(os.environ.get("DEMO_DAYS", 5)))
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
