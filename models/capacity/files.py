"""The capacity tools on files, without the lake: clear one round from a requests CSV, settle a period
from `clear` output folders (`echelon capacity clear --requests ...`, `echelon capacity period --rounds ...`).

Every bad input is a RequestError / CapacityError (ValueErrors: the CLI prints one line naming the file or
flag and exits 2): a missing, empty or non-UTF-8 requests file, a cut-off that is not an ISO time. Ids are
read as text, so '007' and '7' are two requests."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from echelon.models.capacity import mechanism as mech


def parse_capacity(text: str) -> float | dict[str, float]:
    """'50000' (one pool) or 'standard=40000,oversize=10000' (one pool per storage type)."""
    if "=" not in text:
        return mech.check_capacity(_number(text))
    pools = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        pools[name.strip()] = mech.check_capacity(_number(value), name.strip())
    return pools


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text   # check_capacity names it


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")


def parse_cutoff(text: str | None) -> pd.Timestamp | None:
    """--cutoff: an ISO date or time (UTC unless it carries an offset). Words such as 'yesterday' are
    refused: they would depend on when the command runs."""
    if text is None:
        return None
    if not _ISO_TIME.fullmatch(text.strip()):
        raise mech.RequestError(f"--cutoff {text!r}: expected an ISO date or time such as 2026-11-22 or "
                                f"2026-11-22T23:59:59Z")
    try:
        stamp = pd.Timestamp(text.strip())
    except ValueError as error:
        raise mech.RequestError(f"--cutoff {text!r}: {error}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def read_requests(path: Path) -> pd.DataFrame:
    """A requests CSV, every column as text (validate_requests types the numbers)."""
    path = Path(path)
    if not path.is_file():
        raise mech.RequestError(f"{path}: no such requests file" if not path.exists() else f"{path}: not a file")
    try:
        frame = pd.read_csv(path, dtype=str)
    except pd.errors.EmptyDataError:
        raise mech.RequestError(f"{path}: the requests file is empty (no header, no rows)") from None
    except UnicodeDecodeError as error:
        raise mech.RequestError(f"{path}: not UTF-8 (byte 0x{error.object[error.start]:02x} at offset "
                                f"{error.start}); save the requests as UTF-8") from None
    except pd.errors.ParserError as error:
        raise mech.RequestError(f"{path}: cannot be parsed as CSV: {str(error).strip()}") from None
    if frame.empty:
        raise mech.RequestError(f"{path}: a header and no requests: nothing to clear")
    return frame


def clear_file(requests_csv: Path, capacity, output: Path, cutoff: str | None = None) -> dict:
    raw = read_requests(requests_csv)
    types = set(raw["storage_type"].dropna().astype(str)) if "storage_type" in raw else set()
    known = set(capacity) if isinstance(capacity, dict) else types
    frame = mech.validate_requests(raw, storage_types=known, cutoff=parse_cutoff(cutoff), where=str(requests_csv))
    result = mech.clear_round(frame, capacity)
    output.mkdir(parents=True, exist_ok=True)
    grants = result.grants[["request_id", "cuft_granted", "fee_per_cuft", "seller_id", "storage_type", "pool"]]
    grants.to_csv(output / "grants.csv", index=False)
    summary = result.summary()
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def period_files(rounds: list[Path], output: Path, incremental_csv: Path | None, share: float) -> pd.DataFrame:
    """Rounds in order (each a `clear` output folder) -> price-protected lines and per-seller statements."""
    frames = []
    for k, folder in enumerate(rounds):
        if not (folder / "grants.csv").exists():
            raise FileNotFoundError(f"round {k + 1}: {folder / 'grants.csv'} not found (run `echelon capacity clear` first)")
        frames.append(pd.read_csv(folder / "grants.csv", dtype={"request_id": str, "seller_id": str}).assign(round=k + 1))
    grants = pd.concat(frames, ignore_index=True)
    incremental = pd.Series(dtype="float64")
    if incremental_csv is not None:
        table = pd.read_csv(incremental_csv, dtype={"seller_id": str})
        incremental = table.groupby("seller_id")["incremental_sales"].sum()
    per_seller, lines = mech.settle(mech.period_lines(grants), incremental, share)
    output.mkdir(parents=True, exist_ok=True)
    lines.to_csv(output / "lines.csv", index=False)
    per_seller.to_csv(output / "statements.csv", index=False)
    return per_seller
