"""Feast definitions of the churn example: one entity, one source, one feature view, one service.

The offline root is a directory of daily parquet partitions (``date=YYYY-MM-DD/part-00000.parquet``)
that the feature pipeline publishes after validation. Set MLOPS_OFFLINE_ROOT to an s3:// URI in
production (with AWS_ENDPOINT_URL for an S3-compatible store); a relative path resolves against this repo.
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

OFFLINE_ROOT = os.environ.get("MLOPS_OFFLINE_ROOT", "data/offline").rstrip("/")

# A subscriber of the streaming service; every feature below describes one customer on one day.
customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A subscriber, keyed by its numeric customer_id.",
)

# Validated daily activity snapshots, one row per customer per day, published by dags/feature_pipeline.py.
customer_activity_source = FileSource(
    name="customer_activity_source",
    path=f"{OFFLINE_ROOT}/customer_activity",
    timestamp_field="event_timestamp",
    # An S3-compatible endpoint other than AWS (AWS_ENDPOINT_URL): pyarrow's S3 filesystem, which
    # Feast builds for s3:// sources, does not read that variable. Empty: AWS itself, or local files.
    s3_endpoint_override=os.environ.get("AWS_ENDPOINT_URL", ""),
)

# Engagement, billing and support signals of the last days; a snapshot stays valid for two days.
customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    ttl=timedelta(days=2),
    schema=[
        Field(name="plan", dtype=String),
        Field(name="country", dtype=String),
        Field(name="tenure_days", dtype=Int64),
        Field(name="sessions_7d", dtype=Int64),
        Field(name="minutes_watched_7d", dtype=Float64),
        Field(name="spend_30d", dtype=Float64),
        Field(name="support_tickets_30d", dtype=Int64),
        Field(name="failed_payments_90d", dtype=Int64),
        Field(name="days_since_last_login", dtype=Int64),
    ],
    source=customer_activity_source,
    online=True,
    tags={"owner": "ml-platform", "dataset": "customer_activity"},
)

# What the churn model reads, for training (historical retrieval) and for serving (online).
churn_model_v1 = FeatureService(
    name="churn_model_v1",
    features=[customer_activity],
    description="Features of the churn classifier.",
)
