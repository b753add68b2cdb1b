"""Apache Airflow 3 provider for the ML lifecycle.

Importing this package is cheap on purpose: the scheduler parses DAG files constantly, so nothing
here imports feast, great_expectations, mlflow, torch, kubernetes, boto3 or pandas.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
