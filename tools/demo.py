"""``make demo``: generate data, start the embedded stack, run the shipped DAGs, print what happened.

``python -m tools.demo up`` is idempotent: a second run reuses the running servers and the
data already there, and only adds what is missing. ``--profile production`` (``make demo
PROFILE=production``) runs the same story on PostgreSQL, Redis, S3 and Celery workers
(:mod:`tools.production`). ``python -m tools.demo down`` (``make down``) stops the servers of
both profiles; Ctrl-C during ``up`` does the same for the one it started.
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
from tools import production
from tools.airflow_stack import AirflowStack
from tools.local_stack import LocalStack

PIPELINE = [
    "feature_pipeline",
    "label_pipeline",
    "drift_monitor",
    "training_pipeline",
    "canary_rollout",
    "batch_scoring",
]
MODEL_NAME = "churn_classifier"
ACTIVE = ("queued", "running")
# The story's days: HISTORY days up to yesterday, then ARRIVING days that land one after another from
# today on. The generator's drift (features and the churn relation alike) starts with the first
# arriving day. Labels land LABEL_DELAY days after their snapshot.
HISTORY, ARRIVING, LABEL_DELAY = 4, 4, 2
SCENARIOS = ("retrain", "worse-challenger")
PROFILES = ("local", "production")
# The "worse-challenger" scenario's last training run: a deliberately under-trained model.
WORSE = {"epochs": 1, "lr": 0.0005, "hidden": [4]}


def demo_days(today: dt.date | None = None, history: int = HISTORY) -> list[dt.date]:
    """``history`` days ending yesterday, then ARRIVING days from today on.

    Unpausing the daily pipelines makes the scheduler run the latest complete interval (yesterday)
    itself, so the history ends there; the arriving days are delivered by this script, as a landing
    job would, and the rest follows by Assets. The data are a function of the day's offset in this
    list, not of the date, so every date tells the same story with the same numbers.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    return [today + dt.timedelta(days=i - history) for i in range(history + ARRIVING)]


def generator_config(days: list[dt.date], rows_per_day: int) -> GeneratorConfig:
    """The demo's data: seeded per day offset from ``days[0]``, drifting from the first arriving day."""
    return GeneratorConfig(
        rows_per_day=rows_per_day,
        epoch=days[0],
        drift_from=days[-ARRIVING],
        label_delay_days=LABEL_DELAY,
    )


def generate_data(stack: AirflowStack, days: list[dt.date], rows_per_day: int, *, log=print) -> None:
    """Write every day's feature and label partitions into the landing area."""
    landing = stack.landing_dir
    log(
        f"Generating {len(days)} days x {rows_per_day} customers into {landing} "
        f"(features and churn drift from {days[-ARRIVING]}; labels land {LABEL_DELAY} days late) ..."
    )
    generate(generator_config(days, rows_per_day), landing, days[0], len(days))
    if copied := stack.publish_landing():
        log(f"  uploaded {copied} files to the landing area the DAGs read")


def _runs(stack: AirflowStack, dag_id: str) -> list[dict[str, Any]]:
    return stack.api(f"dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]


def _trigger(stack: AirflowStack, dag_id: str, conf: dict[str, Any]) -> None:
    stack.airflow("dags", "trigger", dag_id, "--conf", json.dumps(conf))


def create_backfill(stack: AirflowStack, dag_id: str, first: dt.date, last: dt.date, *, log=print) -> None:
    """``airflow backfill create`` for ``first`` .. ``last``; a backfill of the DAG that runs already is kept.

    Idempotent: a second ``make demo`` finds the first one's backfill, and a CLI call retried after
    "database is locked" may find the one its first attempt created.
    """
    try:
        stack.airflow(
            "backfill",
            "create",
            "--dag-id",
            dag_id,
            "--from-date",
            first.isoformat(),
            "--to-date",
            last.isoformat(),
            "--reprocess-behavior",
            "failed",
        )
    except RuntimeError as err:
        if "AlreadyRunningBackfill" not in str(err):
            raise
        log(f"  {dag_id}: a backfill runs already; kept")


def wait_until_settled(
    stack: AirflowStack, at_least: dict[str, int], *, quiet_s: float = 20, timeout: float = 1800, log=print
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
    stack: AirflowStack, days: list[dt.date], *, scenario: str = "retrain", log=print
) -> dict[str, Any]:
    """Run the shipped DAGs under the real scheduler and tell the story of ``days``.

    1. History: the feature pipeline is backfilled up to yesterday, and the label pipeline validates
       the labels that landed meanwhile (those of the first HISTORY - LABEL_DELAY days).
    2. The first model: trained on the oldest labelled day, judged on the newest (never trained on),
       and promoted at once (there is no champion).
    3. The arriving days' features land: the drift monitor raises an alarm against the champion on
       every one of them (the generator's shift), batch scoring scores each, and training waits: the
       labels of the shifted days do not exist yet.
    4. Their labels land, two days late: once a shifted day is labelled and a later one can judge,
       the training pipeline retrains on the shifted days only, the gate compares it with the champion
       on the held-out day with a confidence interval, and the canary walks 5 -> 25 -> 50 -> 100 %.
    5. ``worse-challenger``: a deliberately under-trained model is then trained on the same windows;
       the gate stops it (worse than the champion beyond the tolerance) and nothing is rolled out.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    stack.wait_for_dags(PIPELINE)
    downstream = ["drift_monitor", "training_pipeline", "canary_rollout", "batch_scoring"]
    for dag_id in downstream:
        stack.airflow("dags", "pause", dag_id)  # until there are features, labels and a champion
    history, arriving = days[:-ARRIVING], days[-ARRIVING:]
    labelled = history[LABEL_DELAY:]  # landing days whose labels refer to a day of the history

    log(
        f"1. History: features of {history[0]} .. {history[-1]}; the labels that landed on {labelled[0]} .. {labelled[-1]} ..."
    )
    # Backfills queue their days at once (up to 10 runs active per backfill); yesterday's interval is
    # the scheduler's own, once the DAGs are unpaused.
    for dag_id, backfilled in (("feature_pipeline", history[:-1]), ("label_pipeline", labelled[:-1])):
        if backfilled:
            create_backfill(stack, dag_id, backfilled[0], backfilled[-1], log=log)
    for dag_id in ("feature_pipeline", "label_pipeline"):
        stack.airflow("dags", "unpause", dag_id)
    stack.wait_for_runs("feature_pipeline", count=len(history), timeout=300 + 90 * len(history))
    stack.wait_for_runs("label_pipeline", count=len(labelled), timeout=600)

    first_labelled = labelled[-1] - dt.timedelta(days=LABEL_DELAY)
    log(f"2. The first model: trained and judged on the labels up to {first_labelled}, promoted at once ...")
    for dag_id in ("training_pipeline", "canary_rollout"):
        stack.airflow("dags", "unpause", dag_id)
    before = {dag_id: len(_runs(stack, dag_id)) for dag_id in PIPELINE}
    _trigger(stack, "training_pipeline", {"day": first_labelled.isoformat()})
    wait_until_settled(stack, {"training_pipeline": before["training_pipeline"] + 1}, log=log)

    log(f"3. The features of {arriving[0]} .. {arriving[-1]} land: drift monitor, batch scoring ...")
    for dag_id in ("drift_monitor", "batch_scoring"):
        stack.airflow("dags", "unpause", dag_id)
    before = {dag_id: len(_runs(stack, dag_id)) for dag_id in PIPELINE}
    for day in arriving:
        _trigger(stack, "feature_pipeline", {"day": day.isoformat()})
    wait_until_settled(
        stack,
        {
            "feature_pipeline": before["feature_pipeline"] + len(arriving),
            "drift_monitor": before["drift_monitor"] + 1,
        },
        log=log,
    )

    log(
        f"4. Their labels land ({LABEL_DELAY} days late): retraining once labels cover the drift, gate, canary ..."
    )
    before = {dag_id: len(_runs(stack, dag_id)) for dag_id in PIPELINE}
    for day in arriving:
        _trigger(stack, "label_pipeline", {"day": day.isoformat()})
    results = wait_until_settled(
        stack,
        {
            "label_pipeline": before["label_pipeline"] + len(arriving),
            "training_pipeline": before["training_pipeline"] + 1,
        },
        log=log,
    )
    if scenario == "worse-challenger":
        newest = arriving[-1] - dt.timedelta(days=LABEL_DELAY)
        log(f"5. A worse challenger: an under-trained model ({WORSE}) on the windows of {newest} ...")
        before = {dag_id: len(_runs(stack, dag_id)) for dag_id in PIPELINE}
        conf = {"day": newest.isoformat(), "retrain_policy": "always", "hyperparameters": WORSE}
        _trigger(stack, "training_pipeline", conf)
        results = wait_until_settled(stack, {"training_pipeline": before["training_pipeline"] + 1}, log=log)
    return results


def model_summary(stack: AirflowStack) -> list[str]:
    """Per registered version: aliases, windows, the gate's held-out evidence, the canary's walk."""
    import mlflow

    from mlops_provider import constants as c
    from mlops_provider.canary import CanaryController, CanaryStrategy

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    rollouts = CanaryController(client, MODEL_NAME, CanaryStrategy())  # the one reader of rollout state
    lines = []
    found = client.search_model_versions(f"name='{MODEL_NAME}'")
    for version in sorted(int(v.version) for v in found):
        mv = client.get_model_version(MODEL_NAME, str(version))  # search results carry no aliases
        tags = mv.tags
        aliases = ",".join(sorted(mv.aliases)) or "-"
        rollout = rollouts.state(version)
        lines.append(
            f"  {MODEL_NAME} v{mv.version:<3} aliases={aliases:<28} trained on {tags.get(c.TRAINING_WINDOW_TAG, '?')}"
            f"  judged on {tags.get(c.EVALUATION_WINDOW_TAG, '?')}"
        )
        lines.append(f"      gate={tags.get(c.GATE_DECISION_TAG, '-')}  {gate_evidence(tags)}")
        lines.append(f"      canary={rollout['status'] or '-'}")
        for entry in rollout["history"]:
            lines.append(
                f"      {entry['action']:<16} weight {entry['weight']:>3} %  {entry['message'][:110]}"
            )
    return lines or ["  (no registered model yet)"]


def gate_evidence(tags: dict[str, str]) -> str:
    """The gate's comparison as one phrase: metric difference, its interval, n and positives."""
    from mlops_provider import constants as c

    difference = tags.get(c.GATE_DIFFERENCE_TAG)
    n = f"n={tags.get(c.GATE_N_TAG, '?')} ({tags.get(c.GATE_POSITIVES_TAG, '?')} positives)"
    if not difference:
        return f"{n}; no champion to compare with"
    confidence = float(tags.get(c.GATE_CONFIDENCE_TAG, 0.95))
    return (
        f"{tags.get(c.GATE_METRIC_TAG, '?')} vs champion v{tags.get(c.GATE_CHAMPION_VERSION_TAG, '?')}: "
        f"{float(difference):+.4f}, {confidence:.0%} CI [{float(tags[c.GATE_CI_LOW_TAG]):+.4f}, "
        f"{float(tags[c.GATE_CI_HIGH_TAG]):+.4f}], {n}"
    )


def drift_summary(stack: AirflowStack) -> list[str]:
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


def print_summary(stack: AirflowStack, results: dict[str, Any]) -> None:
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


def make_stack(args: argparse.Namespace, profile: str) -> AirflowStack:
    """The stack of ``profile`` (``local``: .demo/, ``production``: .production/) from the command line."""
    project = args.project_dir.resolve()
    if profile == "production":
        return production.from_args(args)
    return LocalStack(
        project_dir=project,
        state_dir=(args.state_dir or project / ".demo").resolve(),
        airflow_port=args.airflow_port,
        mlflow_port=args.mlflow_port,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="default: <project>/.demo, or .production"
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="local (default): airflow standalone on SQLite; production: Celery, PostgreSQL, Redis, S3. "
        "down without it stops both.",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=os.environ.get("DEMO_SCENARIO") or "retrain",
        help="retrain: drift, retraining and a promotion; worse-challenger: then a worse model the gate stops",
    )
    parser.add_argument("--rows-per-day", type=int, default=int(os.environ.get("DEMO_ROWS_PER_DAY", 2000)))
    parser.add_argument("--airflow-port", type=int, default=int(os.environ.get("AIRFLOW_PORT", 8080)))
    parser.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT", 5000)))
    production.add_arguments(parser)  # the production profile's PostgreSQL, Redis and S3 ports
    args = parser.parse_args(argv)
    if args.action == "down":
        for profile in [args.profile] if args.profile else PROFILES:
            stopped = make_stack(args, profile).stop()
            print(f"Stopped ({profile}): {', '.join(stopped) or 'nothing was running'}")
        return 0
    stack = make_stack(args, args.profile or "local")

    def interrupted(signum, frame):  # Ctrl-C stops what we started
        print("\nInterrupted: stopping the servers ...")
        stack.stop()
        sys.exit(130)

    signal.signal(signal.SIGINT, interrupted)
    started = time.monotonic()
    days = demo_days()
    if isinstance(stack, production.ProductionStack):
        # The landing files go to S3, which must run first.
        print(f"Starting the production profile (Celery, PostgreSQL, Redis, S3) in {stack.state_dir} ...")
        stack.start()
        generate_data(stack, days, args.rows_per_day)
    else:
        generate_data(stack, days, args.rows_per_day)
        print(f"Starting airflow standalone on {stack.airflow_url} and MLflow on {stack.mlflow_url} ...")
        stack.start()
    results = run_pipeline(stack, days, scenario=args.scenario)
    print_summary(stack, results)
    print(f"Done in {time.monotonic() - started:.0f} s.")
    failed = [r for runs in results.values() for r in runs if r["state"] != "success"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
