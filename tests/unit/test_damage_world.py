"""The synthetic imaging world: deterministic by seed, damage actually drawn, redesigns change the look."""
import hashlib

import numpy as np
import pytest

from echelon.jobs.damage import world


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path):
    products = world.make_products(4, seed=3)
    a = world.write_set(tmp_path / "a", "s", products, 12, 0.5, seed=3)
    b = world.write_set(tmp_path / "b", "s", products, 12, 0.5, seed=3)
    c = world.write_set(tmp_path / "c", "s", products, 12, 0.5, seed=4)
    assert a.equals(b)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    assert set(a.columns) >= {"image_id", "path", "item_id", "label", "damage_type"}


def test_each_damage_type_changes_the_photo_of_the_same_pose():
    blister = next(p for p in world.make_products(8, seed=1) if p.kind == "blister")
    pristine = np.asarray(world.render(blister, world._rng(5, "pose"), 64), dtype=float)
    for damage in world.DAMAGE_TYPES:
        damaged = np.asarray(world.render(blister, world._rng(5, "pose"), 64, damage), dtype=float)
        assert np.abs(damaged - pristine).mean() > 1.0, damage   # same draws for pose: only damage differs... mostly


def test_pose_and_lighting_vary_between_photos():
    product = world.make_products(1, seed=1)[0]
    one = np.asarray(world.render(product, world._rng(1, "a"), 64), dtype=float)
    two = np.asarray(world.render(product, world._rng(1, "b"), 64), dtype=float)
    assert np.abs(one - two).mean() > 2.0


def test_broken_set_needs_a_set_and_unknown_types_are_refused():
    box = next(p for p in world.make_products(4, seed=1) if p.kind == "box")
    with pytest.raises(ValueError, match="broken_set needs a product holding a set"):
        world.render(box, world._rng(1), 64, "broken_set")
    with pytest.raises(ValueError, match="unknown damage type"):
        world.render(box, world._rng(1), 64, "scratch")


def test_hard_negatives_and_redesigns_exist():
    products = world.make_products(24, seed=42)
    assert {"cracked_screen", "splash"} <= {p.hazard for p in products}
    product = products[0]
    new = world.redesign(product)
    assert new.version == 1 and new.item_id == product.item_id and (new.base, new.artwork) != (product.base, product.artwork)


def test_training_sets_are_enriched_and_batches_are_at_the_real_rate(tmp_path):
    products = world.make_products(4, seed=2)
    train = world.write_set(tmp_path, "train", products, 150, 2 / 3, seed=2)
    assert 0.55 < train["label"].mean() < 0.78
    assert set(train.loc[train["label"] == 1, "damage_type"]) <= set(world.DAMAGE_TYPES)
    assert (train.loc[train["label"] == 0, "damage_type"] == "none").all()
