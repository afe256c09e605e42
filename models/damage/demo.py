"""A tiny world and model, built once per folder: for tests, the DAG test and a quick look by hand.

`tiny(root)` generates a small synthetic world and trains a model on it (a couple of epochs) unless the
folder already holds them, so several test modules share one build per test session."""
from __future__ import annotations

import fcntl
from pathlib import Path

TINY = dict(products=8, new_products=2, gallery=6, train=240, calib=150, valid=300, batch=120)


def tiny(root: Path, seed: int = 7, epochs: int = 3) -> tuple[Path, Path]:
    """(world folder, model folder) under `root`, created when missing."""
    from echelon.models.damage import images as im
    from echelon.models.damage import model as md
    from echelon.jobs.damage import world

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    world_dir, model_dir = root / "world", root / "model"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (world_dir / "batch.csv").exists():
            world.generate(world_dir, seed=seed, **TINY)
        if not (model_dir / "model.json").exists():
            model, _ = md.train(im.read_manifest(world_dir / "train.csv", labelled=True),
                                im.read_manifest(world_dir / "gallery.csv"),
                                im.read_manifest(world_dir / "valid.csv", labelled=True), epochs=epochs, seed=seed)
            model.save(model_dir)
    return world_dir, model_dir


def tiny_one_thread(base: Path):
    """A generator for a test fixture: the tiny world and model under `base`/damage-tiny (shared by the test
    modules of one session), with torch on one thread meanwhile (the project's setting, ECHELON_TORCH_THREADS:
    more threads spin-wait on two shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tiny(Path(base) / "damage-tiny")
    finally:
        torch.set_num_threads(threads)
