"""Batches of item images: the manifest, per-image validation (quarantine with a reason), decoding.

A batch is a folder plus a manifest CSV in it: `image_id, path, item_id` and, for labelled data, `label`
in {0,1} and `damage_type`. Paths are relative to the manifest's folder and must stay inside it.
A bad image never stops the batch: it is quarantined with a reason and the rest is scored; only a
manifest that lacks required columns (or cannot be read) fails as a whole.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

REQUIRED = ["image_id", "path", "item_id"]
LABELLED = ["label", "damage_type"]
MODES = {"RGB", "L"}   # colour photos, or greyscale cameras (converted to RGB); others are quarantined
MIN_SIDE = 32          # smaller images carry too little detail to judge damage
MAX_PIXELS = 50_000_000   # ~7000x7000: a booth camera's frame is far smaller; a bigger header is a bomb or junk


class ManifestError(ValueError):
    """A manifest that cannot be used at all (unreadable, or missing columns)."""


def read_manifest(path: Path | str, labelled: bool = False) -> pd.DataFrame:
    """Read a manifest CSV and check its columns; the frame keeps a `root` attribute (its folder)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype={"image_id": str, "path": str, "item_id": str, "damage_type": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ManifestError(f"manifest {path} is not a readable CSV: {error}") from None
    check_columns(frame, path, labelled)
    frame.attrs["root"] = str(path.resolve().parent)
    return frame


def check_columns(frame: pd.DataFrame, where, labelled: bool = False) -> None:
    missing = [c for c in REQUIRED + (LABELLED if labelled else []) if c not in frame.columns]
    if missing:
        raise ManifestError(f"manifest {where} is missing columns {missing}; it has {list(frame.columns)} "
                            f"(expected {REQUIRED + LABELLED if labelled else REQUIRED}"
                            f"{'' if labelled else ', plus label and damage_type for labelled data'})")


def check_image(path: Path) -> str | None:
    """Why this file cannot be scored, or None when it is a usable image."""
    if not path.is_file():
        return f"missing file {path}"
    if path.stat().st_size == 0:
        return "zero-byte file"
    try:
        with warnings.catch_warnings():     # PIL warns on big headers; the size check below gives the reason
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)        # reads the header only: the declared size, before any decoding
        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return (f"image too large: its header declares {width}x{height} "
                        f"({width * height:,} pixels, at most {MAX_PIXELS:,})")
            image.verify()                  # structure and checksums, without decoding
        with Image.open(path) as image:     # verify() leaves the file unusable: reopen to decode it all
            mode, size = image.mode, image.size
            image.load()
    except UnidentifiedImageError:
        return "not an image file"
    except Image.DecompressionBombError as error:   # not an OSError: PIL's own guard, raised by open()
        return f"image too large (decompression-bomb guard): {error}"
    except (OSError, SyntaxError, ValueError) as error:   # PIL's signals for truncated/corrupt data
        return f"corrupt or truncated image: {error}"
    if mode not in MODES:
        return f"colour mode {mode} is not supported (expected one of {sorted(MODES)})"
    if min(size) < MIN_SIDE:
        return f"image too small: {size[0]}x{size[1]} (at least {MIN_SIDE} px a side)"
    return None


def validate(manifest: pd.DataFrame, root: Path | str | None = None, known_items: set[str] | None = None,
             recognise: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a manifest into rows to score (with an absolute `file` column) and quarantined rows with a
    `reason` each. Unknown items are those without a reference gallery (`known_items`). With `recognise`,
    an empty item_id is allowed: the product is then recognised from the image (items.identify)."""
    root = Path(root or manifest.attrs.get("root", ".")).resolve()
    frame = manifest.copy()
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    for column in [c for c in REQUIRED if not (recognise and c == "item_id")]:
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        reasons[empty & reasons.isna()] = f"empty {column}"
    duplicated = frame["image_id"].duplicated(keep=False) & frame["image_id"].notna()
    reasons[duplicated & reasons.isna()] = "duplicate image_id in the manifest"
    files = []
    for index, row in frame.iterrows():
        path = (root / str(row["path"])).resolve()
        files.append(str(path))
        if reasons[index] is not None:
            continue
        if not path.is_relative_to(root):
            reasons[index] = f"path {row['path']!r} points outside the batch folder {root}"
        elif known_items is not None and not _blank(row["item_id"]) and str(row["item_id"]) not in known_items:
            reasons[index] = f"unknown item_id {row['item_id']!r}: no reference gallery for it"
        else:
            reasons[index] = check_image(path)
    frame["file"] = files
    bad = reasons.notna()
    quarantined = frame[bad].assign(reason=reasons[bad]).drop(columns="file")
    return frame[~bad].reset_index(drop=True), quarantined.reset_index(drop=True)


def _blank(value) -> bool:
    return pd.isna(value) or str(value).strip() == ""


def load(path: Path | str, size: int) -> np.ndarray:
    """An image as float32 (3, size, size) in [0, 1]; greyscale is replicated to three channels."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def load_many(paths, size: int) -> np.ndarray:
    return np.stack([load(p, size) for p in paths]) if len(paths) else np.zeros((0, 3, size, size), np.float32)
