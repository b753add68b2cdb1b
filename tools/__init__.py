"""Project tooling outside the provider wheel: `make demo` (demo.py) and the loopback stacks it runs.

local_stack.py is `airflow standalone` on SQLite; production.py (`make demo PROFILE=production`) is
Celery workers, PostgreSQL, Redis and S3 (s3_server.py). Both share airflow_stack.py (the Airflow
environment and client) and services.py (pid and log files, health checks, stop); postgres.py runs a
private PostgreSQL cluster for them and for the tests.
"""
