"""Generated household electricity demand: one reading per smart meter per day, with tomorrow's use.

Seeded and deterministic, no download: day N's rows depend only on ``(day - EPOCH)`` and :data:`SEED`,
so any day can be generated again, in any order, on any machine. A meter keeps its household (size,
tariff, region) from day to day.

``shift=True`` changes the relation the model learns: households on the ``ev`` tariff start charging a
car overnight, so their next-day use rises by :data:`EV_CHARGING_KWH`. A model trained before the shift
under-predicts them; one retrained on shifted days is better on later shifted days.

Columns (the landing file's contract, checked by expectations/meter_readings.json):

- ``meter_id`` (int64): the entity key;
- ``reading_time`` (timestamp, UTC): when the day's reading was taken (the day at 23:00);
- ``temperature_c``, ``kwh_today`` (float64), ``household_size`` (int64): numeric features;
- ``tariff`` (``standard`` | ``time_of_use`` | ``ev``), ``region`` (``north`` | ``south`` | ``east`` |
  ``west``): categorical features;
- ``kwh_next_day`` (float64, >= 0): the regression target, the meter's use on the following day.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

EPOCH = dt.date(2026, 1, 1)
SEED = 42
METERS = 1000
TARIFFS = ("standard", "time_of_use", "ev")
REGIONS = ("north", "south", "east", "west")
EV_CHARGING_KWH = 2.5
READING_HOUR = 23


def generate_day(day: dt.date, shift: bool = False, meters: int = METERS) -> pd.DataFrame:
    """The readings of ``day`` for ``meters`` meters, in ``meter_id`` order.

    :param day: the reading day, on or after :data:`EPOCH`.
    :param shift: households on the ``ev`` tariff charge a car overnight (the changed relation).
    :param meters: how many meters report; meter ``i`` is the same household on every day.
    :raises ValueError: ``day`` is before :data:`EPOCH`.
    """
    import numpy as np
    import pandas as pd

    offset = (day - EPOCH).days
    if offset < 0:
        raise ValueError(f"day {day} is before the generator's epoch {EPOCH}")
    # The households: drawn from the seed alone, so they are the same on every day.
    homes = np.random.default_rng([SEED, 0])
    household_size = homes.integers(1, 6, size=meters)
    tariff = homes.choice(TARIFFS, size=meters, p=[0.6, 0.25, 0.15])
    region_index = homes.integers(0, len(REGIONS), size=meters)
    baseline = 3.0 + 1.6 * household_size + homes.normal(0.0, 1.0, size=meters)
    # The day: drawn from the seed and the day's offset from the epoch only.
    rng = np.random.default_rng([SEED, 1, offset])
    season = 8.0 - 6.0 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365)
    region_offset = np.array([-3.0, 3.0, 0.0, -1.0])[region_index]
    temperature = season + region_offset + rng.normal(0.0, 2.0, size=meters)
    heating = 0.3 * np.maximum(0.0, 15.0 - temperature)
    kwh_today = np.maximum(0.0, baseline + heating + rng.normal(0.0, 0.8, size=meters))
    next_day = 0.5 * kwh_today + 0.5 * (baseline + heating) + rng.normal(0.0, 0.8, size=meters)
    if shift:
        next_day = next_day + EV_CHARGING_KWH * (tariff == "ev")
    reading = dt.datetime.combine(day, dt.time(READING_HOUR), tzinfo=dt.UTC)
    return pd.DataFrame(
        {
            "meter_id": np.arange(1, meters + 1, dtype=np.int64),
            "reading_time": pd.Series([reading] * meters, dtype="datetime64[us, UTC]"),
            "temperature_c": temperature.round(2),
            "kwh_today": kwh_today.round(3),
            "household_size": household_size.astype(np.int64),
            "tariff": tariff.astype(object),
            "region": np.array(REGIONS, dtype=object)[region_index],
            "kwh_next_day": np.maximum(0.0, next_day).round(3),
        }
    )


def land_day(path: Path, day: dt.date, shift: bool = False, meters: int = METERS) -> bool:
    """Write ``day``'s readings to ``path`` (parquet) unless a file is there already; True if written.

    The file appears whole or not at all (written aside, then renamed), so a reader never sees half.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    generate_day(day, shift=shift, meters=meters).to_parquet(partial, index=False)
    os.replace(partial, path)
    return True
