"""Feast definitions of the energy example: one entity, one source, one feature view, one service.

The source is a directory of daily parquet partitions (``date=YYYY-MM-DD/part-00000.parquet``) that
the energy_pipeline DAG publishes after validation; the path is relative to this repo, as Feast reads it.
The target, ``kwh_next_day``, is in those files too but is no feature: the view does not list it.
"""

from datetime import timedelta

# Feast reads this file (`feast apply`, the pipeline's apply task); the scheduler never imports it.
from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

# A household's smart meter; every feature below describes one meter on one day.
meter = Entity(
    name="meter",
    join_keys=["meter_id"],
    value_type=ValueType.INT64,
    description="A household electricity meter, keyed by its numeric meter_id.",
)

# Validated daily readings, one row per meter per day, stamped when the reading was taken.
meter_readings_source = FileSource(
    name="meter_readings_source",
    path="data/offline/meter_readings",
    timestamp_field="reading_time",
)

# The day's use, weather and household; a reading stays valid for one day.
meter_readings = FeatureView(
    name="meter_readings",
    entities=[meter],
    ttl=timedelta(days=1),
    schema=[
        Field(name="temperature_c", dtype=Float64),
        Field(name="kwh_today", dtype=Float64),
        Field(name="household_size", dtype=Int64),
        Field(name="tariff", dtype=String),
        Field(name="region", dtype=String),
    ],
    source=meter_readings_source,
    online=True,
    tags={"owner": "ml-platform", "dataset": "meter_readings"},
)

# What the demand model reads, for training (historical retrieval) and for serving (online).
demand_model_v1 = FeatureService(
    name="demand_model_v1",
    features=[meter_readings],
    description="Features of the next-day electricity demand regressor.",
)
