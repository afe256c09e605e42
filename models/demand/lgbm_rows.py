"""The pooled LightGBM's feature rows, read in bounded memory (issue 15).

A fit needs a few hundred thousand (series, origin, horizon) rows out of a feature table of millions.
Reading the whole table into pandas (~75 columns, string keys, float64) and merging on strings cost
13.2 GiB at 3,600 series (benchmarks/results/demand_scale.md). A FeatureSource reads the table (a pandas
frame, or the published partition as a pyarrow dataset restricted to a sample of items) batch by batch,
in two passes:

1. keys, once per source (cached): per row the series code (int32, into the sorted series table), the
   day (int32, days since 1970-01-01), whether it is observed, and roll_mean_364 (the fallback level);
   plus the category x location aggregates, one row per (category, location, day) of the observed rows.
2. rows: after the origins are sampled, only the rows at the wanted (series, day) keys, with only the
   columns asked for, as float32 (a batch is filtered in Arrow before it becomes pandas).

Memory is then the keys (13 bytes a row), the category table and the wanted rows, whatever the width
of the table; a batch is at most BATCH_ROWS rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from echelon.models.demand.base import SERIES

BATCH_ROWS = 1 << 18
_SHIFT = np.int64(1 << 32)
_OFFSET = np.int64(1 << 31)


def days(values) -> np.ndarray:
    """Dates (datetime64 of any unit, Timestamps, datetime.date objects, strings) as int32 days since 1970-01-01."""
    stamps = pd.to_datetime(pd.Series(np.asarray(values)) if not isinstance(values, pd.Series) else values)
    return stamps.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64).astype(np.int32)


def stamps(day: np.ndarray) -> np.ndarray:
    """int days since 1970-01-01 as datetime64[ns]."""
    return np.asarray(day, dtype=np.int64).astype("datetime64[D]").astype("datetime64[ns]")


def key(sid, day) -> np.ndarray:
    """One int64 per (series code, day) or (any code, day)."""
    return np.asarray(sid, dtype=np.int64) * _SHIFT + (np.asarray(day, dtype=np.int64) + _OFFSET)


def take(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """values[positions] as float64, NaN where a position is -1 (no such row)."""
    out = np.asarray(values, dtype=np.float64)[np.maximum(positions, 0)] if len(values) else \
        np.full(len(positions), np.nan)
    return np.where(positions >= 0, out, np.nan)


def as_float32(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """These columns as float32 (nullable integers and booleans: NA -> NaN); absent ones all NaN."""
    return pd.DataFrame({c: (frame[c].to_numpy(dtype=np.float32, na_value=np.nan) if c in frame.columns
                             else np.full(len(frame), np.nan, dtype=np.float32)) for c in columns},
                        index=frame.index)


@dataclass
class Keys:
    """The narrow scan of a source. series: item_id, location_id, category (sorted by SERIES; row = code);
    per row of the table: sid, day, observed, roll (roll_mean_364); category: cat, loc, day + the
    category x location aggregates (first observed row per key)."""
    series: pd.DataFrame
    cat: np.ndarray
    loc: np.ndarray
    sid: np.ndarray
    day: np.ndarray
    observed: np.ndarray
    roll: np.ndarray
    category: pd.DataFrame
    _index: dict = field(default_factory=dict)

    def all_keys(self) -> np.ndarray:
        if "rows" not in self._index:
            self._index["rows"] = np.unique(key(self.sid, self.day))
        return self._index["rows"]

    def first_day(self) -> np.ndarray:
        """Each series' first day (observed or planned)."""
        first = np.full(len(self.series), np.iinfo(np.int32).max, dtype=np.int64)
        np.minimum.at(first, self.sid, self.day)
        return first

    def last_observed(self) -> np.ndarray:
        """Each series' last observed day (-1 when it has none: only planned rows)."""
        last = np.full(len(self.series), np.iinfo(np.int32).min, dtype=np.int64)
        np.maximum.at(last, self.sid[self.observed], self.day[self.observed])
        return last

    def category_at(self, sids: np.ndarray, day: np.ndarray, columns: list[str], fallback: str) -> dict:
        """The category x location aggregates at (series' category and location, day); where `fallback`
        is missing there (a location new to the category), the category's mean over locations that day."""
        if "cat" not in self._index:
            c = self.category
            n_loc = max(1, len(self.locations))
            self._index["cat"] = pd.Index(key(c["cat"].to_numpy(np.int64) * n_loc + c["loc"].to_numpy(), c["day"]))
            by_cat = c.groupby(["cat", "day"], sort=False)[columns].mean()
            self._index["by_cat"] = (pd.Index(key(by_cat.index.get_level_values(0), by_cat.index.get_level_values(1))),
                                     by_cat)
        n_loc = max(1, len(self.locations))
        pos = self._index["cat"].get_indexer(key(self.cat[sids].astype(np.int64) * n_loc + self.loc[sids], day))
        out = {col: take(self.category[col].to_numpy(), pos) for col in columns}
        lacking = np.isnan(out[fallback])
        if lacking.any():
            index, by_cat = self._index["by_cat"]
            pos = index.get_indexer(key(self.cat[sids[lacking]], day[lacking]))
            for col in columns:
                out[col][lacking] = take(by_cat[col].to_numpy(), pos)
        return out

    @property
    def locations(self) -> np.ndarray:
        return self._index.setdefault("locations", np.unique(self.series["location_id"].to_numpy()))


class FeatureSource:
    """A feature table to read from: a pandas frame, or a pyarrow dataset (with `items`: only their rows)."""

    def __init__(self, data, items: list[str] | None = None, batch_rows: int = BATCH_ROWS,
                 category_columns: list[str] = ()):
        if isinstance(data, pd.DataFrame) and items is not None:
            data = data[data["item_id"].isin(items)]
        self.data, self.items, self.batch_rows = data, items, batch_rows
        self.category_columns = list(category_columns)
        self._keys: Keys | None = None
        self._ids: dict[tuple, int] | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.data.columns) if isinstance(self.data, pd.DataFrame) else list(self.data.schema.names)

    def _chunks(self, head: list[str], wide: list[str]) -> Iterator[tuple[pd.DataFrame, Callable]]:
        """Per batch: its `head` columns in pandas, and take(mask) -> its `wide` columns at the masked rows."""
        if isinstance(self.data, pd.DataFrame):
            frame = self.data
            for start in range(0, len(frame), self.batch_rows):
                part = frame.iloc[start:start + self.batch_rows]
                yield part[head], (lambda mask, part=part: part.loc[mask, wide])
            return
        import pyarrow as pa
        import pyarrow.dataset as pads

        where = None if self.items is None else pads.field("item_id").isin(self.items)
        # little readahead: each batch read ahead is decoded, all its columns, in Arrow's memory
        for batch in self.data.to_batches(columns=list(dict.fromkeys(head + wide)), filter=where,
                                          batch_size=self.batch_rows, batch_readahead=1, fragment_readahead=1):
            if batch.num_rows:
                yield (batch.select(head).to_pandas(date_as_object=False),
                       lambda mask, batch=batch: batch.filter(pa.array(mask)).select(wide).to_pandas(date_as_object=False))

    @staticmethod
    def _pairs(head: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        """Per row the index of its (item_id, location_id) among the batch's first rows of each pair."""
        local = head.groupby(SERIES, sort=False, dropna=False).ngroup().to_numpy()
        return local, head.drop_duplicates(SERIES)

    def keys(self) -> Keys:
        if self._keys is None:
            self._keys = self._scan_keys()
        return self._keys

    def _scan_keys(self) -> Keys:
        present = set(self.columns)
        head = SERIES + ["date", "is_future"] + [c for c in ("category", "roll_mean_364") if c in present]
        cat_cols = [c for c in self.category_columns if c in present]
        ids: dict[tuple, int] = {}
        category_of: list[str] = []
        sid, day, observed, roll, cats = [], [], [], [], []
        for batch, _ in self._chunks(head + cat_cols, []):
            local, firsts = self._pairs(batch)
            names = firsts["category"].fillna("unknown").astype(str) if "category" in firsts else \
                pd.Series("unknown", index=firsts.index)
            glob = np.empty(len(firsts), dtype=np.int64)
            for i, (item, loc, cat) in enumerate(zip(firsts["item_id"].astype(str), firsts["location_id"].astype(str),
                                                     names)):
                code = ids.setdefault((item, loc), len(ids))
                if code == len(category_of):
                    category_of.append(cat)
                glob[i] = code
            s = glob[local]
            d = days(batch["date"])
            obs = batch["is_future"].to_numpy(dtype=np.float64, na_value=0) == 0
            sid.append(s.astype(np.int32))
            day.append(d)
            observed.append(obs)
            roll.append(batch["roll_mean_364"].to_numpy(dtype=np.float32, na_value=np.nan) if "roll_mean_364" in batch
                        else np.full(len(batch), np.nan, dtype=np.float32))
            if cat_cols and obs.any():
                part = as_float32(batch.loc[obs], cat_cols)
                part.insert(0, "day", d[obs])
                part.insert(0, "sid", s[obs])
                cats.append(part.drop_duplicates(["sid", "day"]))
        # codes in sorted series order, whatever the batches' order
        series = pd.DataFrame(list(ids), columns=SERIES)
        series["category"] = category_of
        order = np.lexsort((series["location_id"].to_numpy(), series["item_id"].to_numpy()))
        remap = np.empty(len(series), dtype=np.int32)
        remap[order] = np.arange(len(series), dtype=np.int32)
        series = series.iloc[order].reset_index(drop=True)
        self._ids = {pair: int(remap[code]) for pair, code in ids.items()}
        categories = np.unique(series["category"].to_numpy())
        locations = np.unique(series["location_id"].to_numpy())
        cat = np.searchsorted(categories, series["category"].to_numpy()).astype(np.int32)
        loc = np.searchsorted(locations, series["location_id"].to_numpy()).astype(np.int32)
        empty = np.zeros(0, dtype=np.int32)
        sid_all = remap[np.concatenate(sid)] if sid else empty
        table = pd.concat(cats, ignore_index=True) if cats else \
            pd.DataFrame({"sid": empty, "day": empty, **{c: np.zeros(0, np.float32) for c in cat_cols}})
        s = remap[table["sid"].to_numpy()] if len(table) else empty
        table = table.drop(columns="sid")
        table.insert(0, "loc", loc[s] if len(s) else empty)
        table.insert(0, "cat", cat[s] if len(s) else empty)
        # one row per category x location x day: the aggregates are the same for every item of it
        table = table.assign(_s=s).sort_values(["_s", "day"], kind="stable").drop(columns="_s") \
            .drop_duplicates(["cat", "loc", "day"]).reset_index(drop=True)
        keys = Keys(series, cat, loc, sid_all, np.concatenate(day) if day else empty,
                    np.concatenate(observed) if observed else np.zeros(0, bool),
                    np.concatenate(roll) if roll else np.zeros(0, np.float32), table)
        keys._index["locations"] = locations
        return keys

    def rows(self, wanted: np.ndarray, columns: list[str]) -> pd.DataFrame:
        """The table's rows at the wanted key(sid, day)s with these columns (float32; absent ones NaN),
        indexed by their key (a key that has no row is not in the index)."""
        self.keys()
        wanted = np.unique(wanted)
        columns = list(dict.fromkeys(columns))
        present = [c for c in columns if c in set(self.columns)]
        parts = []
        for batch, pick in self._chunks(SERIES + ["date"], present):
            local, firsts = self._pairs(batch)
            glob = np.array([self._ids.get((i, l), -1) for i, l in
                             zip(firsts["item_id"].astype(str), firsts["location_id"].astype(str))], dtype=np.int64)
            k = key(glob[local], days(batch["date"]))
            mask = np.isin(k, wanted) & (glob[local] >= 0)
            if mask.any():
                part = as_float32(pick(mask), columns)
                part.index = k[mask]
                parts.append(part)
        if not parts:
            return pd.DataFrame({c: np.zeros(0, np.float32) for c in columns}, index=pd.Index([], dtype=np.int64))
        out = pd.concat(parts)
        return out[~out.index.duplicated()]
