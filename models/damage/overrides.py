"""The gallery overrides store: refreshed galleries of redesigned products (state that outlives a model
version, one npz per product) and, per product, the batches in a row whose drift was held back (see
model.refresh_drifted). Writes are atomic (temp file, then rename)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from echelon.settings import get_settings


def overrides_dir() -> Path:
    """Refreshed galleries (state that outlives a model version): one npz per redesigned product."""
    return get_settings().lake / "reference" / "damage" / "gallery_overrides"


def load_overrides() -> dict:
    from echelon.models.damage import gallery as gl

    folder = overrides_dir()
    out = {}
    for path in sorted(folder.glob("*.npz")) if folder.exists() else []:
        with np.load(path) as arrays:
            out.update(gl.from_arrays(arrays))
    return out


def pending_path() -> Path:
    """Per product, the batches in a row whose drift was held back (see model.refresh_drifted)."""
    return overrides_dir() / "pending.json"


def read_pending(path: Path) -> dict[str, list[str]]:
    return {str(k): [str(b) for b in v] for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def write_pending(path: Path, pending: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(json.dumps(pending, indent=2, sort_keys=True))
    os.replace(temp, path)


def save_override(gallery) -> Path:
    """Write a refreshed gallery atomically (temp file, then rename)."""
    from echelon.models.damage import gallery as gl

    folder = overrides_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{gallery.item_id}.npz"
    temp = folder / f".{gallery.item_id}.{os.getpid()}.npz"
    np.savez_compressed(temp, **gl.to_arrays({gallery.item_id: gallery}))
    os.replace(temp, target)
    return target
