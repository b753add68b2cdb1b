"""Generate daily partitions of customer activity (features) and churn labels (which arrive later).

Every partition is a pure function of the seed, the day's offset from ``epoch`` and the knobs: the
generator seeds one random stream per day, so day 30 can be written without writing days 1 to 29
and the same call always writes byte-identical values. Only the offset from ``epoch`` matters, not the
calendar: the days ``epoch + k`` hold the same values for any epoch, but for the timestamps, which move
with the days. Nothing is downloaded.

Layout under ``landing``::

    customer_activity/date=YYYY-MM-DD/part-00000.parquet   one row per customer per day
    churn_labels/date=YYYY-MM-DD/part-00000.parquet        labels of the snapshot taken label_delay_days earlier
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

ACTIVITY_DATASET = "customer_activity"
LABELS_DATASET = "churn_labels"
PART_FILE = "part-00000.parquet"
FIRST_CUSTOMER_ID = 100_000

PLANS = ("basic", "standard", "premium")
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR")
SHIFTED_MARKETS = ("IN", "BR")  # where drift moves customers, and where churn rises after the shift

# column -> (arrow type name, description); the contract the expectation suite enforces.
ACTIVITY_SCHEMA: dict[str, tuple[str, str]] = {
    "customer_id": ("int64", "Entity key; unique within a partition."),
    "event_timestamp": ("timestamp[us, tz=UTC]", "When the snapshot was taken; inside the partition's day."),
    "plan": ("string", "Subscription plan: basic, standard or premium."),
    "country": ("string", "Billing country, ISO 3166 alpha-2."),
    "tenure_days": ("int64", "Days since sign-up, 0 to 3650."),
    "sessions_7d": ("int64", "Sessions in the last 7 days, 0 to 500."),
    "minutes_watched_7d": ("double", "Minutes of content in the last 7 days, 0 to 10080."),
    "spend_30d": ("double", "Spend in the last 30 days in USD, 0 to 10000."),
    "support_tickets_30d": ("int64", "Support tickets opened in the last 30 days, 0 to 100."),
    "failed_payments_90d": ("int64", "Failed payments in the last 90 days, 0 to 50."),
    "days_since_last_login": ("int64", "Days since the last login, 0 to 3650."),
}
LABELS_SCHEMA: dict[str, tuple[str, str]] = {
    "customer_id": ("int64", "Entity key."),
    "event_timestamp": ("timestamp[us, tz=UTC]", "Timestamp of the snapshot the label refers to."),
    "churned": ("int64", "1 if the customer cancelled within 30 days of the snapshot, else 0."),
    "label_timestamp": ("timestamp[us, tz=UTC]", "When the label became known (the partition's day)."),
}

BAD_MODES = (
    "missing_column",
    "extra_column",
    "renamed_column",
    "wrong_dtype",
    "null_keys",
    "duplicate_keys",
    "out_of_range",
    "empty",
    "corrupt",
    "future_timestamps",
    "naive_timestamps",
    "missing_partition",
    "null_feature",
    "partly_null_feature",
)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    :param rows_per_day: customers, and so rows, in each daily activity partition (1k to 1M and more).
    :param seed: the base seed; the same seed gives the same data.
    :param epoch: day 0 of the data: days are seeded by their offset from it and customers signed up
        before it, so ``epoch + k`` holds the same values whatever the epoch.
    :param drift_from: first day whose features drift (fewer sessions, more spend, another country mix)
        and whose churn follows another rule (see ``concept_shift``).
    :param drift_strength: 0 means no drift, 1 a strong one.
    :param concept_shift: from ``drift_from`` on, how far churn moves to its new rule (see
        :func:`churn_probability`); 0 keeps the old rule, 1 is the full change.
    :param label_delay_days: how many days after a snapshot its churn label lands.
    :param bad_mode: one of :data:`BAD_MODES`, applied to the days in ``bad_days`` (all days if empty).
    """

    rows_per_day: int = 1_000
    seed: int = 42
    epoch: dt.date = dt.date(2026, 1, 1)
    drift_from: dt.date | None = None
    drift_strength: float = 1.0
    concept_shift: float = 1.0
    label_delay_days: int = 2
    bad_mode: str | None = None
    bad_days: tuple[dt.date, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.rows_per_day < 1:
            raise ValueError(f"rows_per_day must be at least 1, got {self.rows_per_day}")
        if self.bad_mode is not None and self.bad_mode not in BAD_MODES:
            raise ValueError(f"unknown bad_mode {self.bad_mode!r}; choose one of {', '.join(BAD_MODES)}")
        if self.label_delay_days < 0:
            raise ValueError("label_delay_days must be >= 0")
        if self.concept_shift < 0:
            raise ValueError(f"concept_shift must be >= 0, got {self.concept_shift}")

    def drifted(self, day: dt.date) -> bool:
        """Whether ``day`` is on or after ``drift_from``."""
        return self.drift_from is not None and day >= self.drift_from

    def shift_on(self, day: dt.date) -> float:
        """The concept shift in force for a snapshot taken on ``day`` (0 before ``drift_from``)."""
        return self.concept_shift if self.drifted(day) else 0.0


def partition_path(root: str | Path, dataset: str, day: dt.date) -> Path:
    """Return the parquet file of one daily partition under a landing or offline root."""
    return Path(root) / dataset / f"date={day.isoformat()}" / PART_FILE


def _day_rng(cfg: GeneratorConfig, day: dt.date, stream: str) -> np.random.Generator:
    import numpy as np

    # Seed entropy must be non-negative: "% 2**32" maps days before the epoch there, one to one.
    offset = (day - cfg.epoch).days % 2**32
    # crc32 rather than hash(): Python salts str hashes per process, which would break determinism.
    return np.random.default_rng([cfg.seed, offset, zlib.crc32(stream.encode())])


def _customers(cfg: GeneratorConfig) -> dict[str, Any]:
    """Static attributes of the customer base, identical for every day."""
    import numpy as np

    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.rows_per_day
    return {
        "customer_id": np.arange(FIRST_CUSTOMER_ID, FIRST_CUSTOMER_ID + n, dtype=np.int64),
        "plan_idx": rng.choice(len(PLANS), size=n, p=[0.5, 0.35, 0.15]),
        "country_idx": rng.choice(len(COUNTRIES), size=n, p=[0.35, 0.15, 0.15, 0.15, 0.1, 0.1]),
        "signup_days_before_epoch": rng.integers(2, 9 * 365, n),  # 2 days to 9 years
        "engagement": rng.gamma(2.0, 1.0, size=n),  # latent trait that drives activity and churn
    }


def activity_columns(cfg: GeneratorConfig, day: dt.date) -> dict[str, Any]:
    """Return the clean activity columns of one day as numpy arrays (no bad records)."""
    import numpy as np

    base = _customers(cfg)
    rng = _day_rng(cfg, day, ACTIVITY_DATASET)
    n = cfg.rows_per_day
    drift = cfg.drift_strength if cfg.drifted(day) else 0.0

    country_idx = base["country_idx"].copy()
    if drift:
        # Drift moves a share of customers to the two smallest markets.
        moved = rng.random(n) < 0.4 * drift
        country_idx[moved] = rng.choice([COUNTRIES.index(c) for c in SHIFTED_MARKETS], size=int(moved.sum()))
    engagement = base["engagement"] * (1.0 - 0.45 * drift)
    sessions = rng.poisson(engagement * 6.0 + 0.5)
    minutes = np.clip(rng.gamma(2.0, 1.0, n) * sessions * 14.0, 0, 10_080)
    plan_price = np.array([9.99, 15.49, 22.99])[base["plan_idx"]]
    spend = np.round(plan_price * (1.0 + 0.6 * drift) + rng.gamma(1.5, 4.0, n), 2)
    tickets = rng.poisson(0.3 + 0.4 * (engagement < 0.8))
    failed = rng.poisson(0.15, n)
    last_login = np.minimum(rng.geometric(np.clip(engagement / 3.0, 0.05, 0.95)) - 1, 3650)
    seconds = rng.integers(0, 86_400, n)
    tenure = (day - cfg.epoch).days + base["signup_days_before_epoch"]
    midnight_us = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000
    return {
        "customer_id": base["customer_id"],
        "event_timestamp": midnight_us + seconds.astype(np.int64) * 1_000_000,
        "plan": np.array(PLANS, dtype=object)[base["plan_idx"]],
        "country": np.array(COUNTRIES, dtype=object)[country_idx],
        "tenure_days": np.clip(tenure, 0, 3650).astype(np.int64),
        "sessions_7d": np.minimum(sessions, 500).astype(np.int64),
        "minutes_watched_7d": np.round(minutes, 1),
        "spend_30d": spend,
        "support_tickets_30d": np.minimum(tickets, 100).astype(np.int64),
        "failed_payments_90d": np.minimum(failed, 50).astype(np.int64),
        "days_since_last_login": last_login.astype(np.int64),
    }


def churn_probability(columns: dict[str, Any], shift: float = 0.0) -> Any:
    """The ground-truth churn probability of each row; a trained model can approach its AUC, not beat it.

    Before the concept shift (``shift=0``) churn rises with failed payments, support tickets and days
    since the last login, and falls with sessions, the premium plan and tenure. The shift adds
    ``shift * (1.0 * in_IN_or_BR + 0.05 * (spend_30d - 25) + 0.08 * sessions_7d - 0.8)`` to the logit:
    customers in the IN and BR markets churn much more, spend starts to matter (a price rise), and the
    protective effect of sessions all but vanishes at ``shift=1`` (-0.04 per session; it reverses
    above 1.5). Days before the shift teach a model none of this.
    """
    import numpy as np

    premium = columns["plan"] == "premium"
    logit = (
        -1.6
        + 0.9 * columns["failed_payments_90d"]
        + 0.35 * columns["support_tickets_30d"]
        + 0.08 * np.minimum(columns["days_since_last_login"], 30)
        - 0.12 * columns["sessions_7d"]
        - 0.6 * premium
        - 0.0002 * columns["tenure_days"]
    )
    if shift:
        new_market = np.isin(columns["country"], SHIFTED_MARKETS)
        logit = logit + shift * (
            1.0 * new_market + 0.05 * (columns["spend_30d"] - 25.0) + 0.08 * columns["sessions_7d"] - 0.8
        )
    return 1.0 / (1.0 + np.exp(-logit))


def activity_table(cfg: GeneratorConfig, day: dt.date) -> pa.Table:
    """Return one day's activity partition as an Arrow table with the documented schema."""
    import pyarrow as pa

    cols = activity_columns(cfg, day)
    arrays = {
        name: pa.array(cols[name], type=_arrow_type(type_name))
        for name, (type_name, _) in ACTIVITY_SCHEMA.items()
    }
    return pa.table(arrays)


def labels_table(cfg: GeneratorConfig, day: dt.date) -> pa.Table:
    """Return the labels that land on ``day`` (for the snapshot ``label_delay_days`` earlier)."""
    import numpy as np
    import pyarrow as pa

    snapshot_day = day - dt.timedelta(days=cfg.label_delay_days)
    cols = activity_columns(cfg, snapshot_day)
    rng = _day_rng(cfg, snapshot_day, LABELS_DATASET)
    probability = churn_probability(cols, shift=cfg.shift_on(snapshot_day))
    churned = (rng.random(cfg.rows_per_day) < probability).astype(np.int64)
    midnight_us = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000
    ts = _arrow_type("timestamp[us, tz=UTC]")
    return pa.table(
        {
            "customer_id": pa.array(cols["customer_id"], pa.int64()),
            "event_timestamp": pa.array(cols["event_timestamp"], ts),
            "churned": pa.array(churned, pa.int64()),
            "label_timestamp": pa.array(np.full(cfg.rows_per_day, midnight_us, dtype=np.int64), ts),
        }
    )


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "double": pa.float64(),
        "string": pa.string(),
        "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    }[name]


def _apply_bad_mode(table: pa.Table, mode: str, day: dt.date) -> pa.Table:
    """Corrupt a clean table in one of the ways a landing area really gets corrupted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    some = np.zeros(n, dtype=bool)
    some[:: max(1, n // 20)] = True  # ~5% of rows, at least one
    if mode == "missing_column":
        return table.drop_columns(["sessions_7d"])
    if mode == "extra_column":
        return table.append_column("debug_flag", pa.array(np.ones(n, dtype=np.int64)))
    if mode == "renamed_column":
        return table.rename_columns(["spend30d" if c == "spend_30d" else c for c in table.column_names])
    if mode == "wrong_dtype":
        idx = table.column_names.index("tenure_days")
        return table.set_column(idx, "tenure_days", pc.cast(table["tenure_days"], pa.string()))
    if mode == "null_keys":
        keys = pa.array(table["customer_id"].to_numpy(), pa.int64(), mask=some)
        return table.set_column(0, "customer_id", keys)
    if mode == "duplicate_keys":
        return pa.concat_tables([table, table.filter(pa.array(some))])
    if mode == "out_of_range":
        spend = np.where(some, -50.0, table["spend_30d"].to_numpy())
        return table.set_column(table.column_names.index("spend_30d"), "spend_30d", pa.array(spend))
    if mode == "empty":
        return table.slice(0, 0)
    if mode == "future_timestamps":
        future_us = np.where(some, 400 * 86_400 * 1_000_000, 0)
        ts = pc.cast(table["event_timestamp"], pa.int64()).to_numpy() + future_us
        idx = table.column_names.index("event_timestamp")
        return table.set_column(idx, "event_timestamp", pa.array(ts, pa.timestamp("us", tz="UTC")))
    if mode == "naive_timestamps":
        idx = table.column_names.index("event_timestamp")
        return table.set_column(idx, "event_timestamp", pc.cast(table["event_timestamp"], pa.timestamp("us")))
    if mode == "null_feature":
        # Every value of a double column null: the type still checks and range rules skip nulls.
        idx = table.column_names.index("minutes_watched_7d")
        return table.set_column(idx, "minutes_watched_7d", pa.nulls(n, pa.float64()))
    if mode == "partly_null_feature":
        mostly_null = pa.array(np.arange(n) % 5 < 3)  # 60% of the rows
        country = pc.if_else(mostly_null, pa.scalar(None, pa.string()), table["country"].combine_chunks())
        return table.set_column(table.column_names.index("country"), "country", country)
    raise ValueError(f"bad mode {mode!r} is not a table transformation")  # corrupt/missing handled by caller


def write_day(cfg: GeneratorConfig, landing: str | Path, day: dt.date) -> dict[str, Any]:
    """Write (or overwrite) one day's activity and label partitions; return what was written."""
    import pyarrow.parquet as pq

    bad = cfg.bad_mode if cfg.bad_mode and (not cfg.bad_days or day in cfg.bad_days) else None
    activity_file = partition_path(landing, ACTIVITY_DATASET, day)
    written: dict[str, Any] = {"day": day.isoformat(), "activity": None, "labels": None, "bad_mode": bad}
    if bad != "missing_partition":
        activity_file.parent.mkdir(parents=True, exist_ok=True)
        if bad == "corrupt":
            activity_file.write_bytes(b"PAR1 this is not a parquet file\x00\x01")
        else:
            table = activity_table(cfg, day)
            if bad:
                table = _apply_bad_mode(table, bad, day)
            pq.write_table(table, activity_file)
        written["activity"] = str(activity_file)
    elif activity_file.exists():
        activity_file.unlink()
    labels_file = partition_path(landing, LABELS_DATASET, day)
    labels_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(labels_table(cfg, day), labels_file)
    written["labels"] = str(labels_file)
    return written


def generate(cfg: GeneratorConfig, landing: str | Path, start: dt.date, days: int) -> list[dict[str, Any]]:
    """Write ``days`` consecutive daily partitions starting at ``start``."""
    return [write_day(cfg, landing, start + dt.timedelta(days=i)) for i in range(days)]
