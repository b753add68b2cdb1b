"""The production profile's cascade (tools.production), with five faults injected on purpose.

One story, the one `make demo` tells (tools.demo.run_pipeline), on Celery workers, PostgreSQL, Redis and
S3, with eleven days of history: ten are backfilled at once, the scheduler runs yesterday's itself.
While it runs, a :class:`~tests.integration.faults.Chaos` thread injects, each at its moment:

* SIGKILL to every process of the Celery worker running the first model's ``train``;
* the S3 endpoint closed for 30 s when the first arriving day's ``publish`` is queued;
* Redis (the broker and the online store) restarted during the next arriving day's ``materialize``;
* PostgreSQL (Airflow's, MLflow's and Feast's registry) restarted during the challenger's first canary
  analysis.

The story is run once (module fixture); each test asserts what one fault (or the whole) must leave:
every run succeeded, nothing was lost or written twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import time

import pytest
from tools.demo import LABEL_DELAY, PIPELINE, demo_days, generate_data, generator_config, run_pipeline

from mlops_provider.constants import CANARY_STATE_TAG
from mlops_provider.example_data.generator import activity_table
from tests.integration.faults import Chaos, Fault, kill_worker, restart, s3_outage, task_instances, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("production")]

ROWS = 2000  # as make demo: the canary needs enough held-out rows per step
HISTORY = 11  # ten days backfilled at once, and yesterday
DAYS = demo_days(history=HISTORY)
ARRIVED = DAYS[HISTORY:]
MODEL = "churn_classifier"
S3_DOWN_S = 30


@pytest.fixture(scope="module")
def cascade(production_stack):
    import mlflow

    stack = production_stack
    generate_data(stack, DAYS, ROWS)
    faults = {
        "worker": Fault(
            "a worker killed", "training_pipeline", "train", ("running",), lambda ti: kill_worker(stack, ti)
        ),
        "s3": Fault(
            "S3 down",
            "feature_pipeline",
            "publish",
            ("scheduled", "queued", "running"),
            lambda ti: s3_outage(stack, S3_DOWN_S),
            run_types=("manual",),
        ),
        "redis": Fault(
            "Redis restarted",
            "feature_pipeline",
            "materialize",
            ("running",),
            lambda ti: restart(stack, "redis", down_s=15),
            run_types=("manual",),
        ),
        "postgres": Fault(
            "PostgreSQL restarted",
            "canary_rollout",
            "step_1_analyse",
            ("deferred", "running"),
            lambda ti: restart(stack, "postgres", down_s=10, sig=signal.SIGINT),
        ),
    }
    chaos = Chaos(stack, list(faults.values()))
    started = time.monotonic()
    chaos.start()
    try:
        results = run_pipeline(stack, DAYS)
    finally:
        chaos.stop()
    print(f"\nproduction cascade: {time.monotonic() - started:.0f} s")
    print("  runs:", {dag: [(r["run_type"], r["state"]) for r in runs] for dag, runs in results.items()})
    print("  prediction logs:", partition_keys(stack, "predictions/daily/"))
    for version in ("1", "2"):
        with contextlib.suppress(Exception):
            tags = mlflow.MlflowClient(tracking_uri=stack.mlflow_url).get_model_version(MODEL, version).tags
            print(f"  v{version}:", {k: v for k, v in tags.items() if "gate" in k or "canary" in k})
    for fault in faults.values():
        print(
            f"  {fault.name}: {fault.task_instance and fault.task_instance['run_id']} {fault.observed} {fault.error!r}"
        )
    return {"stack": stack, "results": results, "faults": faults}


def injected(cascade, key: str) -> Fault:
    fault = cascade["faults"][key]
    assert fault.done.is_set(), f"{fault.name}: never injected (no task instance reached {fault.states})"
    if fault.error:
        raise fault.error
    return fault


def task_tries(stack, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
    return {
        t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else ""): (t["state"], t["try_number"])
        for t in task_instances(stack, dag_id)
        if t["run_id"] == run_id
    }


def partition_keys(stack, prefix: str) -> list[str]:
    listed = stack.s3_client().list_objects_v2(Bucket="mlops-data", Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_every_run_succeeds_online_values_come_from_redis_and_artifacts_and_logs_are_on_s3(cascade):
    import mlflow

    stack, results = cascade["stack"], cascade["results"]
    states = {dag: [r["state"] for r in runs] for dag, runs in results.items()}
    assert set(states) == set(PIPELINE)
    assert all(s == "success" for runs in states.values() for s in runs), states
    assert len(states["feature_pipeline"]) == len(DAYS), states
    assert len(states["label_pipeline"]) == len(DAYS) - LABEL_DELAY, states

    # The online store (Redis, through Feast's SQL registry) holds the newest day's values.
    with pytest.MonkeyPatch.context() as env:
        for key in (
            "AIRFLOW_CONN_FEAST_DEFAULT",
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ):
            env.setenv(key, stack.env()[key])
        from mlops_provider.hooks.feast import FeastHook

        store = FeastHook().get_store()
        assert type(store._get_provider().online_store).__name__ == "RedisOnlineStore"
        got = store.get_online_features(
            features=["customer_activity:spend_30d"],
            entity_rows=[{"customer_id": c} for c in (100_000, 100_000 + ROWS - 1)],
        ).to_dict()
    expected = activity_table(generator_config(DAYS, ROWS), DAYS[-1]).to_pandas().set_index("customer_id")
    assert got["spend_30d"] == pytest.approx(list(expected.loc[got["customer_id"], "spend_30d"]))

    # Every model version's artifacts are on S3 (MLflow's artifact store), and so are the prediction logs.
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    artifact_keys = [
        o["Key"]
        for page in stack.s3_client().get_paginator("list_objects_v2").paginate(Bucket="mlops-artifacts")
        for o in page.get("Contents", [])
    ]
    for version in client.search_model_versions(f"name='{MODEL}'"):
        run = client.get_run(version.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        assert any(version.run_id in key for key in artifact_keys), version.run_id
    for day in ARRIVED:
        keys = partition_keys(stack, f"predictions/daily/{MODEL}/date={day}/")
        assert keys == [f"predictions/daily/{MODEL}/date={day}/predictions.parquet"], keys
    assert partition_keys(stack, "predictions/rollouts/"), "no canary prediction log on S3"


def test_ten_backfilled_days_run_at_once_on_two_workers_with_no_retry(cascade):
    stack = cascade["stack"]
    runs = [r for r in cascade["results"]["feature_pipeline"] if r["run_type"] == "backfill"]
    assert len(runs) == HISTORY - 1
    assert {r["state"] for r in runs} == {"success"}
    # Queued at once, they ran side by side: some runs overlapped in time.
    spans = sorted(
        (dt.datetime.fromisoformat(r["start_date"]), dt.datetime.fromisoformat(r["end_date"])) for r in runs
    )
    overlapping = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    print(f"\nbackfill: {len(runs)} runs, at most {overlapping} at once")
    assert overlapping >= 2, spans
    # No lock error, nor any other: every task of every backfilled day succeeded at its first try.
    for run in runs:
        tries = task_tries(stack, "feature_pipeline", run["dag_run_id"])
        assert tries and set(tries.values()) == {("success", 1)}, (run["dag_run_id"], tries)
    # Each day is one partition object on S3, none half-written beside it.
    for day in DAYS[: HISTORY - 1]:
        prefix = f"offline/customer_activity/date={day}/"
        assert partition_keys(stack, prefix) == [f"{prefix}part-00000.parquet"]


def test_a_worker_killed_during_train_is_retried_on_the_other_and_one_version_results(cascade):
    import mlflow

    stack = cascade["stack"]
    fault = injected(cascade, "worker")
    observed = fault.observed
    assert observed["processes"] >= 3  # the worker, its pool process and the task's processes
    assert observed["retry_try_number"] == fault.task_instance["try_number"] + 1
    others = {"worker1": "worker2", "worker2": "worker1"}
    assert observed["retry_worker"] in (None, others[observed["killed"]]), observed
    tries = task_tries(stack, "training_pipeline", fault.task_instance["run_id"])
    assert tries["train"] == ("success", fault.task_instance["try_number"] + 1), tries
    assert tries["register"][0] == "success", tries
    # One model version per training run that trained: the killed try registered nothing.
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert len({v.run_id for v in versions}) == 2
    # Both workers answer again.
    both = ["worker1", "worker2"]
    assert wait_for(lambda: [n.split("@")[0] for n in stack.celery_workers()] == both, 120, "both workers")


def test_s3_down_for_30_s_during_publish_is_retried_and_nothing_is_half_written(cascade):
    import pyarrow.parquet as pq
    import s3fs

    stack = cascade["stack"]
    fault = injected(cascade, "s3")
    assert fault.observed["down_s"] >= S3_DOWN_S
    tries = task_tries(stack, "feature_pipeline", fault.task_instance["run_id"])
    assert {state for state, _ in tries.values()} == {"success"}, tries
    print(f"\nS3 down {fault.observed['down_s']} s; publish: {tries['publish']}")
    day = ARRIVED[0]
    prefix = f"offline/customer_activity/date={day}/"
    assert partition_keys(stack, prefix) == [f"{prefix}part-00000.parquet"]
    keys = stack.secrets()
    fs = s3fs.S3FileSystem(
        key=keys["aws_access_key_id"], secret=keys["aws_secret_access_key"], endpoint_url=stack.s3_url
    )
    assert pq.read_metadata(fs.open(f"mlops-data/{prefix}part-00000.parquet")).num_rows == ROWS


def test_redis_restarted_during_materialize_converges(cascade):
    stack = cascade["stack"]
    fault = injected(cascade, "redis")
    s3_run = cascade["faults"]["s3"].task_instance["run_id"]
    assert fault.task_instance["run_id"] != s3_run
    tries = task_tries(stack, "feature_pipeline", fault.task_instance["run_id"])
    print(f"\nRedis down {fault.observed['down_s']} s; materialize: {tries['materialize']}")
    assert {state for state, _ in tries.values()} == {"success"}, tries
    # Correct online values after the restart: the first test reads the newest day's back from Redis.
    assert stack.status()["redis"] == "healthy"


def test_postgres_restarted_during_a_canary_analysis_resumes_at_its_step(cascade):
    import mlflow

    stack = cascade["stack"]
    fault = injected(cascade, "postgres")
    tries = task_tries(stack, "canary_rollout", fault.task_instance["run_id"])
    print(f"\nPostgreSQL down {fault.observed['down_s']} s; canary tasks: {tries}")
    assert {state for state, _ in tries.values()} <= {"success", "skipped"}, tries
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    state = json.loads(client.get_model_version(MODEL, "2").tags[CANARY_STATE_TAG])
    assert state["status"] == "promoted"
    # Every step passed once, in order: none was taken twice, none skipped.
    assert [e["weight"] for e in state["history"] if e["action"] == "hold_passed"] == [5, 25, 50, 100]
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"
    assert set(stack.status().values()) == {"healthy"}, stack.status()
