"""Reading a callouts logs folder: its files (`read_any`) and one robust timestamp parser for every callouts log
reader (logs folders, the Open Bandit Dataset, ope).

Plumbing, not a job: file I/O shared by the ingest and OBD jobs (jobs/callouts/) and the `echelon callouts ope`
tool (models/callouts/ope_cli.py), so it sits in echelon/, which both layers may import.

Real logs mix formats in one column: `2019-11-24 00:00:34.762830+00:00` next to `2019-11-24T00:00:34Z`,
a row without fractional seconds, another with a different offset. pandas infers ONE format from the first
value and raises on the others, so each column is parsed as ISO 8601 (any of its variants), then, if that
fails, value by value (`format="mixed"`). Offsets are honoured and everything is converted to UTC; a value
without an offset is taken as UTC. Missing or unparseable values are an error naming the column and the
offending rows: a row silently dropped by its day filter would be data lost.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


class LogFileError(ValueError):
    """A logs file that cannot be read: empty, not UTF-8, not CSV or parquet; the message names it."""


def read_any(folder: Path, name: str) -> pd.DataFrame | None:
    """<folder>/<name>.parquet or .csv as a frame, None when neither exists."""
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = Path(folder) / f"{name}{suffix}"
        if path.exists():
            try:
                return reader(path)
            except UnicodeDecodeError as error:
                raise LogFileError(f"{path}: not UTF-8 (byte 0x{error.object[error.start]:02x} at offset "
                                   f"{error.start}); save the logs as UTF-8") from None
            except pd.errors.EmptyDataError:
                raise LogFileError(f"{path}: the file is empty (no header, no rows)") from None
            except (pd.errors.ParserError, OSError, ValueError) as error:   # pyarrow's errors included
                raise LogFileError(f"{path}: cannot be read: {str(error).strip().splitlines()[0]}") from None
    return None


def require_columns(frame: pd.DataFrame, columns, source: str) -> None:
    """One error naming every missing column of a logs file (and what it has)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LogFileError(f"{source}: missing column(s) {missing}; it has {list(frame.columns)}")


class TimestampError(ValueError):
    """A timestamp column with missing or unparseable values."""


def parse_utc(values: pd.Series, column: str, source: str = "logs") -> pd.Series:
    """`values` (strings, datetimes, naive or aware) -> datetime64[us, UTC]."""
    values = pd.Series(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        text = values.astype("string").str.strip()
        try:
            parsed = pd.to_datetime(text, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(text, utc=True, format="mixed", errors="coerce")
    bad = parsed.isna()
    if bad.any():
        examples = values[bad].head(3).tolist()
        raise TimestampError(f"{source}: {int(bad.sum())} missing or unparseable `{column}` values "
                             f"(rows {values.index[bad][:3].tolist()}: {examples})")
    return parsed.astype("datetime64[us, UTC]")
