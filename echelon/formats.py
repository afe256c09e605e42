"""Bring-your-own-data readers: user files -> the canonical long frame of `models/demand/base.py`.

Plumbing, not a model: pure pandas file I/O shared by the ingest job (jobs/demand/ingest.py) and the
`echelon forecast` tool (models/demand/forecast.py), so it sits in echelon/ where both layers may import it.

Formats understood (`read_any` tells them apart from the columns):

- long (documented): `item_id, timestamp, target`, optional `location_id, price, promo, category`.
  CSV (also .csv.gz) or Parquet. Column names are matched ignoring case and surrounding spaces.
- Kaggle store-item: `date, store, item, sales` (item -> item_id, store -> location_id).
- M5: `calendar.csv`, `sell_prices.csv` and a wide `sales_train_*.csv` with `d_1 .. d_N` columns;
  a folder holding them, any one of them (the others are looked up beside it), or the three paths.
  item_id -> item_id, store_id -> location_id, cat_id -> category, sell_price -> price. Days before
  an item's first price are dropped (the item was not on sale yet), so launches show up as new series.

Every reader fails with `InputFormatError`, naming the file, the check and a few offending rows
(with their line numbers in the file), instead of handing a model something half-right.

Size: one reader per input format, sharing detection and the bad-input checks.
"""
from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from echelon.catalog.demand import SERIES

log = logging.getLogger(__name__)

LONG_REQUIRED = ("item_id", "timestamp", "target")
LONG_OPTIONAL = ("location_id", "price", "promo", "category")
STORE_ITEM_COLUMNS = ("date", "store", "item", "sales")
M5_CALENDAR, M5_PRICES = "calendar.csv", "sell_prices.csv"
NO_LOCATION = "all"
SAMPLE_ROWS = 5

# Names people commonly use for the long format's columns: used to suggest a rename.
ALIASES = {
    "item_id": ("item", "sku", "product", "product_id", "item_nbr", "id", "series", "unique_id"),
    "timestamp": ("date", "ds", "time", "datetime", "day", "week", "period"),
    "target": ("sales", "demand", "qty", "quantity", "units", "y", "value", "volume"),
    "location_id": ("store", "store_id", "location", "loc", "warehouse", "site", "fc"),
    "price": ("sell_price", "unit_price", "cost"),
    "promo": ("promotion", "onpromotion", "on_promotion", "discount_flag"),
    "category": ("cat", "cat_id", "category_id", "dept", "dept_id", "family"),
}


class InputFormatError(ValueError):
    """A user file does not match the format it claims (or any format we read)."""


# ----------------------------------------------------------------------------------------------
# Error helpers
# ----------------------------------------------------------------------------------------------

def _sample(rows: pd.DataFrame, n: int = SAMPLE_ROWS) -> str:
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        return rows.head(n).to_string(index=False)


def _fail(source: str, problem: str, rows: pd.DataFrame | None = None, total: int | None = None,
          hint: str | None = None) -> InputFormatError:
    message = f"{source}: {problem}"
    if rows is not None and len(rows):
        count = total if total is not None else len(rows)
        message += f" ({count} row(s); first {min(SAMPLE_ROWS, len(rows))}):\n{_sample(rows)}"
    if hint:
        message += f"\n{hint}"
    return InputFormatError(message)


def _rename_hint(missing: Iterable[str], present: Iterable[str]) -> str:
    present = list(present)
    guesses = []
    for col in (c for c in missing if c not in present):
        candidates = [p for p in present if p in ALIASES.get(col, ())]
        candidates += difflib.get_close_matches(col, present, n=1, cutoff=0.6)
        if candidates:
            guesses.append(f"'{candidates[0]}' -> '{col}'")
    return ("Did you mean to rename " + ", ".join(guesses) + "?") if guesses else ""


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------

def _normalise(name: object) -> str:
    return str(name).strip().lower()


def _read_table(path: Path) -> pd.DataFrame:
    """Everything as text (CSV) so ids keep leading zeros and bad cells can be reported verbatim."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise _fail(str(path), "the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise _fail(str(path), f"cannot be parsed as CSV: {_encoding_hint(exc)}") from None
    frame.columns = [_normalise(c) for c in frame.columns]
    # Line numbers in the file make sample rows findable: header is line 1.
    frame.insert(0, "line", np.arange(2, len(frame) + 2))
    return frame


def _header(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [_normalise(c) for c in pq.read_schema(path).names]
    try:
        return [_normalise(c) for c in pd.read_csv(path, nrows=0).columns]
    except pd.errors.EmptyDataError:
        raise _fail(str(path), "the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise _fail(str(path), f"cannot be parsed as CSV: {_encoding_hint(exc)}") from None


def _encoding_hint(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return (f"not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save the file as UTF-8")
    return str(exc).strip().splitlines()[0]


# ----------------------------------------------------------------------------------------------
# The checks every format shares
# ----------------------------------------------------------------------------------------------

# Numeric dates with the day and month in either order: 05/03/2024, 5.3.24, 05-03-2024 (not ISO 2024-03-05).
_NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?=$|[ T])")


def day_month_order(values: pd.Series) -> str | None:
    """'dayfirst' or 'monthfirst' where the values are numeric dates and some value decides it; 'ambiguous'
    where every value reads both ways (all days <= 12); None where they are not such dates (ISO, text)."""
    parts = values.astype(str).str.extract(_NUMERIC_DATE)
    if parts[0].isna().any():
        return None
    first, second = parts[0].astype(int), parts[1].astype(int)
    if (first > 12).any() and (second <= 12).all():
        return "dayfirst"
    if (second > 12).any() and (first <= 12).all():
        return "monthfirst"
    if (first <= 12).all() and (second <= 12).all():
        return "ambiguous"
    return None   # both orders fail somewhere: the parser reports those rows


def parse_timestamps(raw: pd.Series, source: str, column: str, date_format: str | None = None) -> pd.Series:
    """Parse a timestamp column. Numeric dates whose every day is <= 12 (03/05/2024: March 5 or May 3?) are
    refused unless `date_format` (e.g. %d/%m/%Y) says which: pandas would silently read them month-first."""
    if date_format:
        parsed = pd.to_datetime(raw, format=date_format, errors="coerce")
        bad = parsed.isna()
        if bad.any():
            raise _fail(source, f"'{column}' values that do not match --date-format {date_format!r}, e.g. "
                        f"{raw[bad].head(3).tolist()} ({int(bad.sum())} value(s))")
        return parsed
    order = day_month_order(raw)
    if order == "ambiguous":
        raise _fail(source, f"'{column}' dates such as {raw.iloc[0]!r} read both day-first and month-first "
                    "(every day is <= 12); pass --date-format %d/%m/%Y or %m/%d/%Y (or write ISO 2024-01-31)")
    return pd.to_datetime(raw, errors="coerce", dayfirst=order == "dayfirst")


def _to_canonical(frame: pd.DataFrame, source: str, names: Mapping[str, str],
                  date_format: str | None = None) -> pd.DataFrame:
    """Validate and convert a frame whose columns are already canonical.

    `names` maps canonical column -> the user's column name, so messages speak the user's language;
    `frame` keeps the user's original columns (plus `line`) for the sample rows.
    """
    if frame.empty:
        raise _fail(source, "has a header but no data rows")
    user = {c: names.get(c, c) for c in (*LONG_REQUIRED, *LONG_OPTIONAL)}
    known = set(user.values())
    shown = ["line"] + [c for c in frame.columns if c in known]   # in the file's own order
    out = pd.DataFrame(index=frame.index)

    def blank(values: pd.Series) -> pd.Series:
        return values.isna() | (values.astype(str).str.strip() == "")

    for key in ("item_id", "location_id"):
        if user[key] in frame.columns:
            col = frame[user[key]]
            empty = blank(col)
            if empty.any():
                raise _fail(source, f"empty '{user[key]}' ({key}) values", frame.loc[empty, shown],
                            int(empty.sum()))
            out[key] = col.astype(str).str.strip()
    if "location_id" not in out:
        out["location_id"] = NO_LOCATION

    raw_ts = frame[user["timestamp"]]
    empty = blank(raw_ts)
    if empty.any():
        raise _fail(source, f"empty '{user['timestamp']}' (timestamp) values", frame.loc[empty, shown],
                    int(empty.sum()))
    try:
        parsed = parse_timestamps(raw_ts, source, user["timestamp"], date_format)
    except InputFormatError:
        raise
    except (ValueError, TypeError) as exc:   # e.g. mixed time zones
        raise _fail(source, f"'{user['timestamp']}' cannot be parsed as timestamps: {exc}",
                    frame[shown]) from None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = parsed.isna()
    if bad.any():
        raise _fail(source, f"unparsable '{user['timestamp']}' (timestamp) values; use ISO dates "
                    "such as 2024-01-31 or 2024-01-31 13:00, one format for the whole column",
                    frame.loc[bad, shown], int(bad.sum()))
    out["timestamp"] = parsed.astype("datetime64[ns]")

    raw_y = frame[user["target"]]
    empty = blank(raw_y)
    if empty.any():
        raise _fail(source, f"empty '{user['target']}' (target) values; drop those rows or fill "
                    "them (0 if nothing sold)", frame.loc[empty, shown], int(empty.sum()))
    target = pd.to_numeric(raw_y, errors="coerce").astype(float)
    bad = target.isna()
    if bad.any():
        raise _fail(source, f"non-numeric '{user['target']}' (target) values",
                    frame.loc[bad, shown], int(bad.sum()))
    bad = ~np.isfinite(target)
    if bad.any():
        raise _fail(source, f"infinite '{user['target']}' (target) values", frame.loc[bad, shown],
                    int(bad.sum()))
    bad = target < 0
    if bad.any():
        raise _fail(source, f"negative '{user['target']}' (target) values; demand is counted in "
                    "units sold (returns belong elsewhere)", frame.loc[bad, shown], int(bad.sum()))
    out["target"] = target

    if user["price"] in frame.columns:
        raw = frame[user["price"]]
        price = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = price.isna() & ~blank(raw) | np.isinf(price) | (price < 0)
        if bad.any():
            raise _fail(source, f"'{user['price']}' (price) must be a non-negative number or empty",
                        frame.loc[bad, shown], int(bad.sum()))
        out["price"] = price
    if user["promo"] in frame.columns:
        raw = frame[user["promo"]].astype(str).str.strip().str.lower()
        mapping = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0, "yes": 1, "no": 0,
                   "": 0, "nan": 0, "none": 0, "<na>": 0}
        promo = raw.map(mapping)
        bad = promo.isna()
        if bad.any():
            raise _fail(source, f"'{user['promo']}' (promo) must be 0/1 (or true/false)",
                        frame.loc[bad, shown], int(bad.sum()))
        out["promo"] = promo.astype("int64")
    if user["category"] in frame.columns:
        out["category"] = frame[user["category"]].fillna("").astype(str).str.strip()

    keys = SERIES + ["timestamp"]
    dup = out.duplicated(keys, keep=False)
    if dup.any():
        rows = frame.loc[dup, shown].assign(_k=out.loc[dup, keys].astype(str).agg("|".join, axis=1))
        rows = rows.sort_values(["_k", "line"]).drop(columns="_k")
        raise _fail(source, "duplicate (item, location, timestamp) rows: each series may have one "
                    "row per time step; aggregate them first", rows, int(dup.sum()))
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Long and store-item formats
# ----------------------------------------------------------------------------------------------

def _read_requiring(path: Path, required, columns: str, suggest: bool = False) -> pd.DataFrame:
    """The file as a frame, or one error naming the missing `columns` (a template for the list) and what it has."""
    frame = _read_table(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        present = [c for c in frame.columns if c != "line"]
        raise _fail(str(path), f"missing {columns.format(missing)}; found {present}",
                    hint=_rename_hint(missing, present) if suggest else None)
    return frame


def read_long(path: str | Path, date_format: str | None = None) -> pd.DataFrame:
    """The documented long format -> canonical frame."""
    path = Path(path)
    frame = _read_requiring(path, LONG_REQUIRED, "required column(s) {} of the long format (item_id, timestamp, "
                            "target[, location_id, price, promo, category])", suggest=True)
    extra = [c for c in frame.columns if c not in (*LONG_REQUIRED, *LONG_OPTIONAL, "line")]
    if extra:
        log.info("%s: ignoring columns %s (not part of the long format)", path, extra)
    return _to_canonical(frame, str(path), {}, date_format)


def read_store_item(path: str | Path, date_format: str | None = None) -> pd.DataFrame:
    """Kaggle "Store Item Demand Forecasting" (`date,store,item,sales`) -> canonical frame."""
    path = Path(path)
    frame = _read_requiring(path, STORE_ITEM_COLUMNS, "column(s) {} of the store-item format (date, store, item, sales)")
    names = {"item_id": "item", "location_id": "store", "timestamp": "date", "target": "sales"}
    return _to_canonical(frame, str(path), names, date_format)


# ----------------------------------------------------------------------------------------------
# M5
# ----------------------------------------------------------------------------------------------

_DAY = re.compile(r"^d_\d+$")


def _m5_paths(source: str | Path | None, calendar, prices, sales) -> tuple[Path, Path | None, Path]:
    if source is not None:
        source = Path(source)
        folder = source if source.is_dir() else source.parent
        if not folder.exists():
            raise FileNotFoundError(f"{source}: no such file or folder")
        if source.is_file() and any(_DAY.match(c) for c in _header(source)):
            sales = sales or source
        calendar = calendar or folder / M5_CALENDAR
        prices = prices or folder / M5_PRICES
        if sales is None:
            found = sorted(folder.glob("sales_train_*.csv")) or sorted(folder.glob("sales*.csv"))
            # The evaluation file is the validation file plus the last 28 days: prefer it.
            found.sort(key=lambda p: ("evaluation" not in p.name, p.name))
            if not found:
                raise _fail(str(folder), "no M5 sales file (sales_train_evaluation.csv or "
                            f"sales_train_validation.csv) in the folder; it holds "
                            f"{sorted(p.name for p in folder.iterdir())}")
            sales = found[0]
    if calendar is None or sales is None:
        raise ValueError("M5 needs a folder, or at least the calendar and the sales file paths")
    calendar, sales = Path(calendar), Path(sales)
    prices = Path(prices) if prices is not None else None
    if not calendar.exists():
        raise FileNotFoundError(f"{calendar}: M5 calendar file not found (needed to date d_1..d_N)")
    if not sales.exists():
        raise FileNotFoundError(f"{sales}: M5 sales file not found")
    if prices is not None and not prices.exists():
        log.warning("%s: not found; reading M5 without prices", prices)
        prices = None
    return calendar, prices, sales


def read_m5(source: str | Path | None = None, *, calendar: str | Path | None = None,
            prices: str | Path | None = None, sales: str | Path | None = None) -> pd.DataFrame:
    """M5 (calendar + sell prices + wide daily sales) -> canonical frame."""
    calendar, prices, sales = _m5_paths(source, calendar, prices, sales)

    cal = _read_table(calendar)
    missing = [c for c in ("d", "date", "wm_yr_wk") if c not in cal.columns]
    if missing:
        raise _fail(str(calendar), f"missing column(s) {missing} of the M5 calendar "
                    f"(d, date, wm_yr_wk, ...); found {[c for c in cal.columns if c != 'line']}")
    dates = pd.to_datetime(cal["date"], errors="coerce")
    bad = dates.isna()
    if bad.any():
        raise _fail(str(calendar), "unparsable 'date' values", cal.loc[bad, ["line", "d", "date"]],
                    int(bad.sum()))
    dup = cal["d"].duplicated(keep=False)
    if dup.any():
        raise _fail(str(calendar), "duplicate 'd' values", cal.loc[dup, ["line", "d", "date"]],
                    int(dup.sum()))
    day_date = dict(zip(cal["d"], dates))
    day_week = dict(zip(cal["d"], cal["wm_yr_wk"]))

    header = _header(sales)
    day_cols = [c for c in header if _DAY.match(c)]
    missing = [c for c in ("item_id", "store_id") if c not in header]
    if missing or not day_cols:
        raise _fail(str(sales), f"not an M5 sales file: needs item_id, store_id and d_1..d_N "
                    f"columns; missing {missing or ['d_* columns']}; found {header[:12]}"
                    + (" ..." if len(header) > 12 else ""))
    unknown = [c for c in day_cols if c not in day_date]
    if unknown:
        raise _fail(str(sales), f"{len(unknown)} day column(s) are not in {calendar.name}: "
                    f"{unknown[:5]}; the calendar must cover every d_ column")
    id_cols = [c for c in ("item_id", "store_id", "cat_id", "dept_id") if c in header]
    raw = pd.read_csv(sales, dtype={c: str for c in id_cols}, usecols=id_cols + day_cols)
    raw.columns = [_normalise(c) for c in raw.columns]
    if raw.empty:
        raise _fail(str(sales), "has a header but no data rows")
    lines = np.arange(2, len(raw) + 2)

    keys = raw[["item_id", "store_id"]]
    empty = keys.isna().any(axis=1)
    if empty.any():
        raise _fail(str(sales), "empty item_id or store_id", raw.loc[empty, id_cols].assign(
            line=lines[empty.to_numpy()]), int(empty.sum()))
    dup = keys.duplicated(keep=False)
    if dup.any():
        raise _fail(str(sales), "duplicate (item_id, store_id) rows: each series must appear once",
                    raw.loc[dup, id_cols].assign(line=lines[dup.to_numpy()]), int(dup.sum()))

    values = raw[day_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    for problem, mask in (("non-numeric or empty sales", np.isnan(values)),
                          ("infinite sales", np.isinf(values)),
                          ("negative sales", values < 0)):
        if mask.any():
            r, c = np.nonzero(mask)
            rows = pd.DataFrame({"line": lines[r], "item_id": keys["item_id"].to_numpy()[r],
                                 "store_id": keys["store_id"].to_numpy()[r],
                                 "day": np.asarray(day_cols)[c],
                                 "value": raw[day_cols].to_numpy(dtype=object)[r, c]})
            raise _fail(str(sales), problem, rows, int(mask.sum()))

    n_series, n_days = values.shape
    long = pd.DataFrame({
        "item_id": np.repeat(keys["item_id"].to_numpy(), n_days),
        "location_id": np.repeat(keys["store_id"].to_numpy(), n_days),
        "timestamp": np.tile(pd.DatetimeIndex([day_date[d] for d in day_cols]).to_numpy(), n_series),
        "target": values.reshape(-1),
    })
    week = np.tile(np.asarray([day_week[d] for d in day_cols], dtype=object), n_series)

    if prices is not None:
        price_frame = _read_table(prices)
        missing = [c for c in ("store_id", "item_id", "wm_yr_wk", "sell_price")
                   if c not in price_frame.columns]
        if missing:
            raise _fail(str(prices), f"missing column(s) {missing} of the M5 sell prices "
                        f"(store_id, item_id, wm_yr_wk, sell_price)")
        sell = pd.to_numeric(price_frame["sell_price"], errors="coerce")
        bad = sell.isna() | (sell < 0) | np.isinf(sell)
        if bad.any():
            raise _fail(str(prices), "'sell_price' must be a non-negative number",
                        price_frame.loc[bad], int(bad.sum()))
        dup = price_frame.duplicated(["store_id", "item_id", "wm_yr_wk"], keep=False)
        if dup.any():
            raise _fail(str(prices), "duplicate (store_id, item_id, wm_yr_wk) prices",
                        price_frame.loc[dup], int(dup.sum()))
        lookup = pd.Series(sell.to_numpy(), index=pd.MultiIndex.from_arrays(
            [price_frame["item_id"], price_frame["store_id"], price_frame["wm_yr_wk"]]))
        idx = pd.MultiIndex.from_arrays([long["item_id"], long["location_id"], week])
        long["price"] = lookup.reindex(idx).to_numpy()
        # An item is on sale from its first priced week: earlier days are not zero demand.
        on_sale = long["price"].notna().groupby([long["item_id"], long["location_id"]]).cummax()
        never = n_series - long.loc[on_sale.to_numpy(), ["item_id", "location_id"]].drop_duplicates().shape[0]
        if never:
            log.warning("%s: %d series have no price in %s and are left out", sales, never, prices)
        long = long[on_sale.to_numpy()]
        long["price"] = long.groupby(["item_id", "location_id"])["price"].ffill()
    if "cat_id" in raw.columns:
        cats = dict(zip(zip(keys["item_id"], keys["store_id"]), raw["cat_id"].fillna("")))
        long["category"] = [cats[k] for k in zip(long["item_id"], long["location_id"])]
    return long.sort_values(SERIES + ["timestamp"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------

FORMATS_HELP = ("long (item_id, timestamp, target[, location_id, price, promo, category]), "
                "store-item (date, store, item, sales), or M5 (a folder with calendar.csv, "
                "sell_prices.csv and sales_train_*.csv)")


def detect_format(path: str | Path) -> str:
    """'long', 'store_item' or 'm5', from the file's columns (or the folder's files)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if M5_CALENDAR in names and any(n.startswith("sales") for n in names):
            return "m5"
        raise _fail(str(path), f"a folder is read as M5, which needs {M5_CALENDAR}, {M5_PRICES} "
                    f"and sales_train_*.csv; it holds {sorted(names)}")
    if path.name in (M5_CALENDAR, M5_PRICES):
        return "m5"
    header = _header(path)
    if set(STORE_ITEM_COLUMNS) <= set(header):
        return "store_item"
    if any(_DAY.match(c) for c in header) and "item_id" in header:
        return "m5"
    if any(c in header for c in LONG_REQUIRED):
        return "long"   # read_long then names whatever is missing and suggests renames
    hint = _rename_hint(LONG_REQUIRED, header)
    raise _fail(str(path), f"cannot tell the format from the columns {header}; expected {FORMATS_HELP}",
                hint=hint)


def read_any(path: str | Path, date_format: str | None = None) -> pd.DataFrame:
    """Read any supported format into the canonical frame (see the module docstring). `date_format`
    (strptime codes) reads the long and store-item formats' dates; M5's calendar is always ISO."""
    kind = detect_format(path)
    log.info("%s: reading as %s format", path, kind)
    if kind == "m5":
        return read_m5(path)
    if kind == "store_item":
        return read_store_item(path, date_format)
    return read_long(path, date_format)
