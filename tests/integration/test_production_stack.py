"""The production profile's stack (tools.production): every server healthy, and a DAG run through Celery.

One day of the feature pipeline: its landing file on S3 (moto), tasks on the two Celery workers over
Redis, Airflow's and Feast's registries on PostgreSQL, the published partition an S3 object and the
online values in Redis.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request

import pytest

from mlops_provider.example_data.generator import GeneratorConfig, generate

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("production")]

ROWS = 300
TASKS = ("validate_conf", "apply", "extract", "validate", "publish", "materialize")


def test_every_server_is_healthy_and_both_workers_answer(production_stack):
    stack = production_stack
    assert set(stack.status().values()) == {"healthy"}, stack.status()
    assert [name.split("@")[0] for name in stack.celery_workers()] == ["worker1", "worker2"]
    with urllib.request.urlopen(f"{stack.airflow_url}/api/v2/monitor/health", timeout=10) as response:
        health = json.loads(response.read())
    assert {key: part["status"] for key, part in health.items()} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }


def test_a_feature_pipeline_day_runs_through_celery_on_s3_redis_and_postgres(production_stack):
    import psycopg2
    import redis

    stack = production_stack
    # The interval the scheduler runs itself once the DAG is unpaused: yesterday's.
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    generate(GeneratorConfig(rows_per_day=ROWS, epoch=day), stack.landing_dir, day, 1)
    assert stack.publish_landing() == 2  # the day's activity and labels

    started = time.monotonic()
    stack.wait_for_dags(["feature_pipeline"])
    stack.api("dags/feature_pipeline", method="PATCH", body={"is_paused": False})
    (run,) = stack.wait_for_runs("feature_pipeline", count=1, timeout=600)
    print(f"\nfeature_pipeline day {day} finished in {time.monotonic() - started:.0f} s: {run['state']}")

    tis = stack.api(f"dags/feature_pipeline/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
    assert run["state"] == "success", {ti["task_id"]: ti["state"] for ti in tis}
    assert {ti["task_id"]: ti["state"] for ti in tis} == dict.fromkeys(TASKS, "success")
    # Every task went through Celery: the result backend holds one successful Celery task each.
    conn = psycopg2.connect(host="127.0.0.1", port=stack.postgres_port, user="mlops", dbname="airflow")
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] == len(TASKS)
    finally:
        conn.close()

    # The published partition is one object on S3, no partial copy beside it.
    prefix = f"offline/customer_activity/date={day.isoformat()}/"
    listed = stack.s3_client().list_objects_v2(Bucket="mlops-data", Prefix=prefix)
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"{prefix}part-00000.parquet"]
    # The online store (Redis db 1) holds one hash per customer.
    assert redis.Redis(host="127.0.0.1", port=stack.redis_port, db=1).dbsize() == ROWS
