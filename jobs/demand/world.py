"""A synthetic retail world, generated with Spark and deterministic by seed.

Every random draw is a hash of (seed, stream, keys) computed per row (xxhash64 -> uniform -> normal by
Box-Muller), never a driver-side random generator, so the rows are identical whatever the master,
the partitioning or the number of executors, and the world scales to tens of millions of rows.

What is in it
- items in 8 categories, each with a cube (cubic feet per unit), list price, seller and launch date;
  ~45% are an intermittent long tail (Poisson rates of 0.03-0.4 units/day: mostly zeros), ~12% are
  new products launched inside the period (no rows before launch: cold start, ramping up after it).
- locations = demand regions (R01..); location_id in the demand tables equals region_id in `network`.
- daily demand per item x location: trend, weekly and yearly seasonality (per category), holidays
  (Christmas season), Prime-Day-like (second Tuesday+Wednesday of July) and Black-Friday/Cyber-Monday
  peaks, regular price changes (91-day blocks) and promotions (discounts lasting 3-7 days, more of them
  on peak days) acting through a per-item price elasticity; counts are Poisson-lognormal (exact
  inverse-CDF Poisson for rates <= 1, its Cornish-Fisher quantile above: within 1% total variation).
- stockouts: short episodes per item x location where in_stock=0 and sales are below demand (censored).

Tables, all published with echelon.lake.publish under one partition ds = the world's end date
- source/demand/sales   item_id, location_id, timestamp (date), target (units sold, double), price,
                        promo (0/1), category, in_stock (0/1): every day from max(start, launch) to end.
                        `target` is what was sold, so it is censored on in_stock=0 days.
- source/demand/plan    item_id, location_id, timestamp, price, promo, category: the retailer's price
                        and promotion calendar for the `plan_days` (56) days after end.
- reference/demand/items   item_id, category, cube_cuft, price (list price), seller_id, launch_date.
- reference/demand/events  timestamp, event: the known retail calendar (black_friday, prime_day, ...)
                           from start to end + plan_days, one named event per day at most.
- reference/network/{regions,facilities,delivery_lanes,transfer_lanes}: the shared reference network,
                        made by echelon/reference_world.py (network_from_sales) from this world's sales:
                        regions (a synthetic map, demand shares), DCs and FCs with capacities that bind at
                        peaks, FC -> region delivery lanes and DC -> FC transfer lanes. Columns: see there.

CLI: python -m echelon.jobs.demand.world --items 200 --locations 4 --start 2024-01-01 \
         --end 2026-11-20 --seed 42 [--master spark://host:7077]

Size: one Spark generator whose streams share the hashing scheme that makes it deterministic.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import pandas as pd

from echelon import lake, reference_world
from echelon.lake import Table
from echelon.progress import steps

from echelon.catalog.demand import EVENTS, ITEMS, SOURCE_PLAN, SOURCE_SALES
from echelon.catalog.network import DELIVERY_LANES, FACILITIES, REGIONS, TRANSFER_LANES

TABLES = [ITEMS, SOURCE_SALES, SOURCE_PLAN, EVENTS, REGIONS, FACILITIES, DELIVERY_LANES, TRANSFER_LANES]

SALES_COLUMNS = ["item_id", "location_id", "timestamp", "target", "price", "promo", "category", "in_stock"]
PLAN_COLUMNS = ["item_id", "location_id", "timestamp", "price", "promo", "category"]
ITEM_COLUMNS = ["item_id", "category", "cube_cuft", "price", "seller_id", "launch_date"]
PLAN_DAYS = 56

POISSON_EXACT_UP_TO = 1.0    # inverse-CDF Poisson below this rate, Cornish-Fisher above
POISSON_TERMS = 10           # P(X >= 10 | rate 1) ~ 1e-7


class Category(NamedTuple):
    name: str
    price: float          # median list price
    cube: float           # median cubic feet per unit
    elasticity: float     # demand ~ (price / list price) ** -elasticity
    season_peak_doy: int  # day of year of the yearly peak
    season_amp: float     # yearly amplitude (fraction of the level)
    week_peak_dow: int    # Spark dayofweek of the weekly peak (1 = Sunday)
    week_amp: float
    event_sensitivity: float  # how strongly peaks (Prime Day, Black Friday) move it


CATEGORIES: tuple[Category, ...] = (
    Category("grocery", 5.5, 0.08, 0.8, 355, 0.08, 1, 0.10, 0.6),
    Category("household", 14.0, 0.45, 1.2, 15, 0.10, 2, 0.08, 0.9),
    Category("beauty", 22.0, 0.06, 1.4, 45, 0.12, 1, 0.10, 1.0),
    Category("toys", 28.0, 0.90, 1.8, 352, 0.65, 7, 0.15, 1.4),
    Category("electronics", 85.0, 0.35, 2.2, 335, 0.35, 1, 0.10, 1.5),
    Category("apparel", 32.0, 0.25, 1.6, 110, 0.30, 1, 0.12, 1.0),
    Category("garden", 38.0, 1.60, 1.3, 140, 0.75, 7, 0.20, 0.7),
    Category("books", 15.0, 0.07, 1.0, 240, 0.20, 1, 0.08, 0.8),
)


class Event(NamedTuple):
    day: dt.date
    name: str
    demand_multiplier: float
    promo_probability: float  # share of items promoted that day (on top of their own calendar)


@dataclass(frozen=True)
class WorldConfig:
    items: int = 200
    locations: int = 4
    start: dt.date = dt.date(2024, 1, 1)
    end: dt.date = dt.date(2026, 11, 20)
    seed: int = 42
    plan_days: int = PLAN_DAYS
    long_tail_share: float = 0.45      # items that are slow, intermittent movers
    new_item_share: float = 0.12       # items launched inside the period (cold start)
    promo_block_probability: float = 0.15  # chance of a promotion in an item's 14-day block
    stockout_block_probability: float = 0.20  # chance of a stockout episode in a 28-day block
    fcs: int | None = None             # default: max(2, round(1.5 * locations))
    dcs: int | None = None             # default: max(1, ceil(locations / 3))

    def __post_init__(self):
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, dt.date):
                object.__setattr__(self, name, dt.date.fromisoformat(str(value)))
        if self.items < 1 or self.locations < 1:
            raise ValueError(f"a world needs at least one item and one location, got {self}")
        if self.history_days < 14:
            raise ValueError(f"the period {self.start}..{self.end} must span at least 14 days")
        if self.plan_days < 0:
            raise ValueError(f"plan_days must be >= 0, got {self.plan_days}")
        for name in ("long_tail_share", "new_item_share", "promo_block_probability",
                     "stockout_block_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    @property
    def history_days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def n_fcs(self) -> int:
        return self.fcs or max(2, round(1.5 * self.locations))

    @property
    def n_dcs(self) -> int:
        return self.dcs or max(1, math.ceil(self.locations / 3))

    @property
    def ds(self) -> str:
        return self.end.isoformat()

    def rows_estimate(self) -> int:
        """History rows, roughly (new items have no rows before their launch)."""
        return self.items * self.locations * self.history_days


# ----------------------------------------------------------------------------------------------
# Deterministic per-row randomness
# ----------------------------------------------------------------------------------------------

def _hash(seed: int, stream: int, *keys):
    """64 random bits from (seed, stream, keys): the same keys give the same bits on any executor."""
    from pyspark.sql import functions as F

    return F.xxhash64(F.lit(seed).cast("long"), F.lit(stream).cast("long"), *[k.cast("long") for k in keys])


def _bits(bits, part: int = 0, parts: int = 1):
    """U[0,1) from slice `part` of `parts` equal slices of a 64-bit hash (53 bits when whole), so one
    hash feeds several independent draws (16 bits each for four: plenty for a synthetic world) and
    the compiled stage stays small."""
    from pyspark.sql import functions as F

    if parts == 1:
        return F.shiftrightunsigned(bits, 11) / float(1 << 53)
    width = 64 // parts
    sliced = F.shiftrightunsigned(bits, 64 - width * (part + 1)).bitwiseAND(F.lit((1 << width) - 1))
    return sliced / float(1 << width)


def _cents(amount):
    """Round to cents: cheaper to compile than F.round, which goes through BigDecimal."""
    from pyspark.sql import functions as F

    return F.floor(amount * 100.0 + 0.5) / 100.0


def _box_muller(u1, u2):
    """Standard normal from two independent U[0,1)."""
    from pyspark.sql import functions as F

    return F.sqrt(-2.0 * F.log(1.0 - u1)) * F.cos(2.0 * math.pi * u2)   # 1 - u1 > 0: log is finite


def _uniform(seed: int, stream: int, *keys):
    return _bits(_hash(seed, stream, *keys))


def _normal(seed: int, stream: int, *keys):
    bits = _hash(seed, stream, *keys)
    return _box_muller(_bits(bits, 0, 2), _bits(bits, 1, 2))


# Stream ids: one per independent quantity, so adding a draw never shifts the others.
(S_CATEGORY, S_PRICE, S_CUBE, S_SELLER, S_TAIL, S_RATE, S_TREND, S_ELASTIC, S_PROMO_RATE, S_NEW,
 S_LAUNCH, S_RAMP, S_SEASON_AMP, S_EVENT_SENS, S_PRICE_OFFSET, S_PROMO_OFFSET, S_LOCATION,
 S_PRICE_STEP, S_PROMO, S_NOISE, S_POISSON, S_STOCK_OFFSET, S_STOCK) = range(1, 24)


# ----------------------------------------------------------------------------------------------
# Calendar
# ----------------------------------------------------------------------------------------------

def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """n-th given weekday (Monday = 0) of a month."""
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def events_calendar(start: dt.date, end: dt.date) -> list[Event]:
    """The retail calendar between start and end (inclusive): one event per day at most."""
    by_day: dict[dt.date, Event] = {}
    for year in range(start.year, end.year + 1):
        for offset in range(20):   # holiday season: gift buying from December 1st
            day = dt.date(year, 12, 1) + dt.timedelta(days=offset)
            by_day[day] = Event(day, "holiday_season", 1.35, 0.0)
        prime = _nth_weekday(year, 7, 1, 2)          # second Tuesday of July, two days
        thanksgiving = _nth_weekday(year, 11, 3, 4)  # fourth Thursday of November
        black_friday = thanksgiving + dt.timedelta(days=1)
        for event in (
            Event(dt.date(year, 1, 1), "new_year", 0.6, 0.0),
            Event(prime - dt.timedelta(days=1), "prime_day_eve", 1.2, 0.0),
            Event(prime, "prime_day", 2.6, 0.55),
            Event(prime + dt.timedelta(days=1), "prime_day", 2.3, 0.55),
            Event(thanksgiving, "thanksgiving", 0.85, 0.0),
            Event(black_friday, "black_friday", 3.0, 0.6),
            Event(black_friday + dt.timedelta(days=1), "cyber_weekend", 1.8, 0.4),
            Event(black_friday + dt.timedelta(days=2), "cyber_weekend", 1.7, 0.4),
            Event(black_friday + dt.timedelta(days=3), "cyber_monday", 2.4, 0.5),
            Event(dt.date(year, 12, 24), "christmas_eve", 0.7, 0.0),
            Event(dt.date(year, 12, 25), "christmas", 0.3, 0.0),
        ):
            by_day[event.day] = event
    return [by_day[d] for d in sorted(by_day) if start <= d <= end]


# ----------------------------------------------------------------------------------------------
# Spark frames
# ----------------------------------------------------------------------------------------------

def _id_width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(n - 1, 0))))


def _literal_frame(spark, rows: list[tuple], schema: str):
    """A small frame held in the plan itself (no Python RDD), so executors never need a Python worker.

    `schema` is "name type, ..."; an empty `rows` gives an empty frame of that schema."""
    from pyspark.sql import functions as F

    fields = [f.strip().split() for f in schema.split(",")]
    if not rows:
        return spark.range(0).select(*[F.lit(None).cast(t).alias(n) for n, t in fields])
    structs = [F.struct(*[F.lit(v).cast(t).alias(n) for v, (n, t) in zip(row, fields)]) for row in rows]
    return spark.range(1).select(F.inline(F.array(*structs)))


def items_frame(spark, cfg: WorldConfig):
    """One row per item with its public attributes and the hidden parameters of its demand."""
    from pyspark.sql import functions as F

    seed = cfg.seed
    # Seasonal peaks as phases, so a row's seasonality is amplitude * (cos, sin) . (cos, sin) of its day.
    cats = _literal_frame(
        spark, [(i, c.name, c.price, c.cube, c.elasticity, c.season_amp,
                 math.cos(2 * math.pi * c.season_peak_doy / 365.25), math.sin(2 * math.pi * c.season_peak_doy / 365.25),
                 c.week_amp * math.cos(2 * math.pi * c.week_peak_dow / 7.0),
                 c.week_amp * math.sin(2 * math.pi * c.week_peak_dow / 7.0), c.event_sensitivity)
                for i, c in enumerate(CATEGORIES)],
        "cat_idx long, category string, cat_price double, cat_cube double, cat_elasticity double, "
        "cat_season_amp double, year_peak_cos double, year_peak_sin double, week_cos_amp double, "
        "week_sin_amp double, event_sensitivity double")
    i = F.col("item_idx")
    n_sellers = max(3, cfg.items // 8)
    hist = cfg.history_days
    launch_lo = min(60, hist // 3)
    launch_hi = max(launch_lo + 1, hist - 7)   # every item has at least a week of history at `end`
    is_long_tail = _uniform(seed, S_TAIL, i) < cfg.long_tail_share
    is_new = _uniform(seed, S_NEW, i) < cfg.new_item_share
    u_rate = _uniform(seed, S_RATE, i)
    season_amp = F.least(F.lit(0.9), F.col("cat_season_amp") * (0.6 + 0.8 * _uniform(seed, S_SEASON_AMP, i)))
    launch_idx = F.when(is_new, F.floor(launch_lo + _uniform(seed, S_LAUNCH, i) * (launch_hi - launch_lo)))
    # Established items "launched" before the period: they have rows from its first day.
    launch_idx = launch_idx.otherwise(-30 - F.floor(_uniform(seed, S_LAUNCH, i) * 1000)).cast("long")
    return (
        spark.range(cfg.items).withColumnRenamed("id", "item_idx")
        .withColumn("cat_idx", F.floor(_uniform(seed, S_CATEGORY, i) * len(CATEGORIES)).cast("long"))
        .join(F.broadcast(cats), "cat_idx")
        .select(
            "item_idx", "category", "week_cos_amp", "week_sin_amp",
            F.format_string(f"I%0{_id_width(cfg.items, 5)}d", i).alias("item_id"),
            F.greatest(F.lit(0.99), F.round(F.col("cat_price") * F.exp(0.5 * _normal(seed, S_PRICE, i)), 2))
            .alias("list_price"),
            F.greatest(F.lit(0.005), F.round(F.col("cat_cube") * F.exp(0.6 * _normal(seed, S_CUBE, i)), 3))
            .alias("cube_cuft"),
            # Squared uniform: a few large sellers and many small ones.
            F.format_string(f"S%0{_id_width(n_sellers, 4)}d",
                            F.floor(F.pow(_uniform(seed, S_SELLER, i), 2) * n_sellers)).alias("seller_id"),
            is_long_tail.alias("is_long_tail"),
            # Slow movers: 0.03-0.4 units/day; the rest 1-30 units/day (log-uniform).
            F.when(is_long_tail, F.exp(math.log(0.03) + u_rate * math.log(0.4 / 0.03)))
            .otherwise(F.exp(u_rate * math.log(30.0))).alias("base_rate"),
            F.least(F.lit(0.4), F.greatest(F.lit(-0.3), 0.03 + 0.15 * _normal(seed, S_TREND, i))).alias("trend"),
            (F.col("cat_elasticity") * F.exp(0.2 * _normal(seed, S_ELASTIC, i))).alias("elasticity"),
            (cfg.promo_block_probability * (0.5 + _uniform(seed, S_PROMO_RATE, i))).alias("promo_rate"),
            is_new.alias("is_new"),
            launch_idx.alias("launch_idx"),
            F.date_add(F.lit(cfg.start), launch_idx.cast("int")).alias("launch_date"),
            (7.0 + 21.0 * _uniform(seed, S_RAMP, i)).alias("ramp_days"),
            (season_amp * F.col("year_peak_cos")).alias("season_cos_amp"),
            (season_amp * F.col("year_peak_sin")).alias("season_sin_amp"),
            (F.col("event_sensitivity") * (0.7 + 0.6 * _uniform(seed, S_EVENT_SENS, i))).alias("event_response"),
            F.floor(_uniform(seed, S_PRICE_OFFSET, i) * 91).alias("price_offset"),
            F.floor(_uniform(seed, S_PROMO_OFFSET, i) * 14).alias("promo_offset"),
            F.floor(_uniform(seed, S_STOCK_OFFSET, i) * 28).alias("stock_offset"),
        )
    )


def items_reference(items):
    """The public `items` table from items_frame."""
    from pyspark.sql import functions as F

    return items.select("item_id", "category", "cube_cuft", F.col("list_price").alias("price"),
                        "seller_id", "launch_date")


def _locations_frame(spark, cfg: WorldConfig):
    from pyspark.sql import functions as F

    loc = F.col("loc_idx")
    return (spark.range(cfg.locations).withColumnRenamed("id", "loc_idx")
            .select("loc_idx", F.format_string(f"R%0{_id_width(cfg.locations + 1, 2)}d", loc + 1).alias("location_id"),
                    F.exp(0.35 * _normal(cfg.seed, S_LOCATION, loc)).alias("loc_weight")))


def _calendar_frame(spark, cfg: WorldConfig, first_day: int, n_days: int):
    from pyspark.sql import functions as F

    events = events_calendar(cfg.start, cfg.start + dt.timedelta(days=first_day + n_days - 1))
    event_frame = _literal_frame(
        spark, [((e.day - cfg.start).days, e.name, e.demand_multiplier, e.promo_probability) for e in events],
        "day_idx long, event string, event_multiplier double, event_promo_probability double")
    day = F.col("day_idx")
    return (spark.range(first_day, first_day + n_days).withColumnRenamed("id", "day_idx")
            .withColumn("timestamp", F.date_add(F.lit(cfg.start), day.cast("int")))
            # Harmonics of the day, so a row's seasonality is a dot product with its item's phase.
            .withColumn("week_angle", 2 * math.pi * F.dayofweek("timestamp") / 7.0)
            .withColumn("year_angle", 2 * math.pi * F.dayofyear("timestamp") / 365.25)
            .select("day_idx", "timestamp", (day / 365.25).alias("years"),
                    F.cos("week_angle").alias("week_cos"), F.sin("week_angle").alias("week_sin"),
                    F.cos("year_angle").alias("year_cos"), F.sin("year_angle").alias("year_sin"))
            .join(F.broadcast(event_frame), "day_idx", "left")
            .fillna({"event_multiplier": 1.0, "event_promo_probability": 0.0}))


def _poisson(frame, rate: str, uniform: str, normal: str, out: str, steps_per_projection: int = 3):
    """Poisson(rate) draws: exact inverse CDF for small rates, Cornish-Fisher above.

    The CDF recurrence is unrolled over POISSON_TERMS terms in a few projections (the expression grows
    quadratically within one projection). Above POISSON_EXACT_UP_TO the continuity-corrected
    Cornish-Fisher quantile of `normal` is within 1% total variation of the exact Poisson and costs
    one expression, which keeps the compiled stage small (see daily_frame)."""
    from pyspark.sql import functions as F

    small = F.least(F.col(rate), F.lit(POISSON_EXACT_UP_TO))
    others = [c for c in frame.columns if c not in ("_pk", "_n", "_cdf")]
    frame = frame.select(*others, F.exp(-small).alias("_pk"), F.lit(0).alias("_n"), F.exp(-small).alias("_cdf"))
    k = 1
    while k < POISSON_TERMS:
        pk, n, cdf = F.col("_pk"), F.col("_n"), F.col("_cdf")
        for _ in range(min(steps_per_projection, POISSON_TERMS - k)):
            n = n + (F.col(uniform) > cdf).cast("int")
            pk = pk * small / k
            cdf = cdf + pk
            k += 1
        frame = frame.select(*others, pk.alias("_pk"), n.alias("_n"), cdf.alias("_cdf"))
    lam, z = F.col(rate), F.col(normal)
    root = F.sqrt(lam)
    w = (z + (z * z - 1.0) / (6.0 * root) + (z * z * z - 3.0 * z) / (24.0 * lam)
         - (2.0 * z * z * z - 5.0 * z) / (36.0 * lam))
    cornish_fisher = F.greatest(F.lit(0.0), F.ceil(lam + root * w - 0.5).cast("double"))
    return frame.select(*others, F.when(lam <= POISSON_EXACT_UP_TO, F.col("_n").cast("double"))
                        .otherwise(cornish_fisher).alias(out))


def _split_compiled_code(frame):
    """A no-op for the data (each row comes out once), but Spark compiles what follows into a
    separate Java method. Whole-stage codegen otherwise puts this job in one method near the
    JVM's 8,000-byte limit for JIT compilation; above it the JVM interprets the method and the
    job runs 3-10x slower (measured)."""
    from pyspark.sql import functions as F

    return frame.select("*", F.explode(F.array(F.lit(0))).alias("_split")).drop("_split")


def daily_frame(spark, cfg: WorldConfig, first_day: int = 0, n_days: int | None = None, items=None,
                partitions: int | None = None):
    """Every item x location x day in [start + first_day, start + first_day + n_days), from launch on.

    Returns the canonical columns plus the hidden truth used to check the world: demand (before
    censoring), mu (expected demand), event, is_long_tail, is_new, launch_date, list_price, cube_cuft.
    `partitions` (default: the cluster's parallelism, at least one per 2M rows) never changes the rows."""
    from pyspark.sql import functions as F

    n_days = cfg.history_days - first_day if n_days is None else n_days
    seed, n_locs = cfg.seed, cfg.locations
    items = items_frame(spark, cfg) if items is None else items
    rows = cfg.items * n_locs * n_days
    partitions = partitions or max(spark.sparkContext.defaultParallelism, math.ceil(rows / 2_000_000))
    i, loc, day = F.col("item_idx"), F.col("loc_idx"), F.col("day_idx")

    frame = (
        spark.range(0, rows, 1, partitions)
        # Integer division keeps the decomposition exact at any size.
        .select(F.expr(f"id div {n_locs * n_days}").alias("item_idx"),
                F.expr(f"(id div {n_days}) % {n_locs}").alias("loc_idx"),
                (F.col("id") % n_days + first_day).alias("day_idx"))
        .join(F.broadcast(items), "item_idx")
        .where(day >= F.col("launch_idx"))
        .join(F.broadcast(_locations_frame(spark, cfg)), "loc_idx")
        .join(F.broadcast(_calendar_frame(spark, cfg, first_day, n_days)), "day_idx")
    )
    # One projection per step: each hash is computed once and sliced into several draws downstream.
    def add(frame, **columns):
        return frame.select("*", *[column.alias(name) for name, column in columns.items()])

    # Price: a regular price that steps every 91 days, minus a discount on promotion days. Promotions
    # are item-level (the same across locations): a 3-7 day run in some 14-day blocks, plus extra
    # promotions on peak days.
    frame = add(frame,
                _price_block=F.floor((day + F.col("price_offset")) / 91),
                _promo_block=F.floor((day + F.col("promo_offset")) / 14),
                _day_in_block=(day + F.col("promo_offset")) % 14,
                # Item x location stockout blocks, staggered across locations.
                _day_in_stock_block=(day + F.col("stock_offset") + 11 * loc) % 28,
                _stock_block=F.floor((day + F.col("stock_offset") + 11 * loc) / 28))
    frame = add(frame,
                _h_promo=_hash(seed, S_PROMO, i, F.col("_promo_block")),
                _h_price=_hash(seed, S_PRICE_STEP, i, F.col("_price_block")),
                _h_stock=_hash(seed, S_STOCK, i, loc, F.col("_stock_block")))
    # Stockouts: at most one episode of 1-7 days per item x location in each 28-day block.
    stock_start = F.floor(_bits(F.col("_h_stock"), 1, 3) * 28)
    frame = add(frame,
                # The block's promotion (if any) runs its first 3-7 days; on peak days more items join
                # in (one draw per block, so a two-day event is promoted on both days or neither).
                promo=(((_bits(F.col("_h_promo"), 0, 4) < F.col("promo_rate"))
                        & (F.col("_day_in_block") < 3 + F.floor(_bits(F.col("_h_promo"), 1, 4) * 5)))
                       | (_bits(F.col("_h_promo"), 3, 4) < F.col("event_promo_probability"))).cast("int"),
                _discount=0.10 + 0.25 * _bits(F.col("_h_promo"), 2, 4),
                _regular_price=_cents(F.col("list_price") * F.least(F.lit(1.2), F.greatest(F.lit(0.8), 1.0 + 0.07 * (
                    _box_muller(_bits(F.col("_h_price"), 0, 2), _bits(F.col("_h_price"), 1, 2)))))),
                in_stock=F.when((_bits(F.col("_h_stock"), 0, 3) < cfg.stockout_block_probability)
                                & (F.col("_day_in_stock_block") >= stock_start)
                                & (F.col("_day_in_stock_block") < stock_start + 1
                                   + F.floor(_bits(F.col("_h_stock"), 2, 3) * 7)), 0).otherwise(1))
    frame = add(frame,
                price=F.when(F.col("promo") == 1, _cents(F.col("_regular_price") * (1.0 - F.col("_discount"))))
                .otherwise(F.col("_regular_price")),
                _h_noise=_hash(seed, S_NOISE, i, loc, day),
                _h_poisson=_hash(seed, S_POISSON, i, loc, day))
    age = day - F.col("launch_idx")
    frame = add(frame, mu=(
        F.col("base_rate") * F.col("loc_weight")
        * F.exp(F.col("trend") * F.col("years"))
        * (1.0 + F.col("week_cos_amp") * F.col("week_cos") + F.col("week_sin_amp") * F.col("week_sin"))
        * (1.0 + F.col("season_cos_amp") * F.col("year_cos") + F.col("season_sin_amp") * F.col("year_sin"))
        * F.greatest(F.lit(0.1), 1.0 + (F.col("event_multiplier") - 1.0) * F.col("event_response"))
        * F.pow(F.col("price") / F.col("list_price"), -F.col("elasticity"))
        * F.when(F.col("promo") == 1, 1.2).otherwise(1.0)   # visibility on top of the discount
        * F.when(F.col("is_new"), 1.0 - F.exp(-(age + 1.0) / F.col("ramp_days"))).otherwise(1.0)))
    # Poisson-lognormal demand: lognormal day-to-day noise (wider for slow movers, so they come in
    # clumps) mixed into a Poisson count. 16-bit slices bound the normals at 4.7 sigma: harmless here.
    sigma = F.when(F.col("is_long_tail"), 0.6).otherwise(0.3)
    noise = _box_muller(_bits(F.col("_h_noise"), 0, 4), _bits(F.col("_h_noise"), 1, 4))
    frame = add(frame,
                _rate=F.col("mu") * F.exp(sigma * noise - sigma * sigma / 2.0),
                _u_poisson=_bits(F.col("_h_poisson"), 0, 2),
                # On a stockout day only part of the demand is sold before the shelf empties.
                _sold_share=0.6 * _bits(F.col("_h_poisson"), 1, 2),
                _z_poisson=_box_muller(_bits(F.col("_h_noise"), 2, 4), _bits(F.col("_h_noise"), 3, 4)))
    frame = _split_compiled_code(frame)
    frame = _poisson(frame, "_rate", "_u_poisson", "_z_poisson", "demand")
    return frame.select(
        "item_id", "location_id", "timestamp",
        F.when(F.col("in_stock") == 1, F.col("demand"))
        .otherwise(F.floor(F.col("demand") * F.col("_sold_share")).cast("double")).alias("target"),
        "price", "promo", "category", "in_stock",
        "demand", "mu", "event", "is_long_tail", "is_new", "launch_date", "list_price", "cube_cuft")


def sales_extract(daily):
    return daily.select(*SALES_COLUMNS)


def plan_extract(daily):
    return daily.select(*PLAN_COLUMNS)


# ----------------------------------------------------------------------------------------------
# The job
# ----------------------------------------------------------------------------------------------

def run(cfg: WorldConfig, spark=None, log=print) -> dict[str, dict]:
    """Generate the world and publish every table under ds = cfg.end. Returns manifests by table."""
    from echelon.spark import get_spark

    spark = spark or get_spark("echelon-world")
    extra = {"world": {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(cfg).items()}}
    manifests: dict[str, dict] = {}
    began = time.time()

    def publish(frame, table: Table) -> dict:
        t0 = time.time()
        manifest = lake.publish(frame, table, cfg.ds, extra=extra)
        seconds = time.time() - t0
        log(f"world: {table} ds={cfg.ds}: {manifest['rows']:,} rows in {seconds:.1f}s "
            f"({manifest['rows'] / max(seconds, 1e-9):,.0f} rows/s)")
        manifests[str(table)] = manifest
        advance(table.name)   # the progress line or bar (defined below, called only inside its block)
        return manifest

    log(f"world: {cfg.items} items x {cfg.locations} locations x {cfg.history_days} days "
        f"({cfg.start}..{cfg.end}, ~{cfg.rows_estimate():,} rows) + {cfg.plan_days} plan days, "
        f"seed {cfg.seed}, master {spark.sparkContext.master}")
    with steps("world", total=len(TABLES), unit="table") as advance:
        items = items_frame(spark, cfg).cache()
        publish(items_reference(items), ITEMS)
        publish(sales_extract(daily_frame(spark, cfg, items=items)), SOURCE_SALES)
        if cfg.plan_days:
            publish(plan_extract(daily_frame(spark, cfg, cfg.history_days, cfg.plan_days, items=items)), SOURCE_PLAN)
        else:   # keep the contract: an empty plan with the right schema
            publish(plan_extract(daily_frame(spark, cfg, items=items)).limit(0), SOURCE_PLAN)
        events = events_calendar(cfg.start, cfg.end + dt.timedelta(days=cfg.plan_days))
        publish(pd.DataFrame({"timestamp": [e.day for e in events], "event": [e.name for e in events]}), EVENTS)

        # The shared reference network, sized from what was actually sold (read back from the published
        # extract: cheap).
        region_day = reference_world.region_day_totals(spark, lake.read_spark(spark, SOURCE_SALES, cfg.ds), items)
        reference_world.publish(reference_world.network_from_sales(region_day, cfg.seed, cfg.locations, cfg.n_fcs,
                                                                   cfg.n_dcs), cfg.ds, publish)
        items.unpersist()
    log(f"world: done in {time.time() - began:.1f}s; lake {lake.get_settings().lake}")
    return manifests


def config_from_args(argv: list[str] | None = None) -> tuple[WorldConfig, str | None]:
    defaults = WorldConfig()
    parser = argparse.ArgumentParser(prog="python -m echelon.jobs.demand.world", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=defaults.items, help="number of items (20000 for a big world)")
    parser.add_argument("--locations", type=int, default=defaults.locations, help="number of demand regions")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=defaults.start)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=defaults.end,
                        help="last day of history; also the partition date of every table")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--plan-days", type=int, default=defaults.plan_days)
    parser.add_argument("--fcs", type=int, default=None, help="fulfillment centres (default 1.5 x locations)")
    parser.add_argument("--dcs", type=int, default=None, help="distribution centres (default locations / 3)")
    parser.add_argument("--master", default=None, help="Spark master (default: SPARK_MASTER or local[*])")
    args = parser.parse_args(argv)
    cfg = replace(defaults, items=args.items, locations=args.locations, start=args.start, end=args.end,
                  seed=args.seed, plan_days=args.plan_days, fcs=args.fcs, dcs=args.dcs)
    return cfg, args.master


def main(argv: list[str] | None = None) -> None:
    from echelon.spark import get_spark

    cfg, master = config_from_args(argv)
    run(cfg, spark=get_spark("echelon-world", master=master))


if __name__ == "__main__":
    main()
