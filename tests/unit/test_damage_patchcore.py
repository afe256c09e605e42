"""PatchCore-style bank (models/damage/patchcore.py): the coreset keeps nearest-neighbour distances within
its coverage radius of the full bank, the anomaly map peaks where a defect was pasted, tiles cover an
elongated photograph, and a product whose gallery is smaller than the bank needs is refused by name."""
import numpy as np
import pytest
import torch
from PIL import Image

from echelon.models.damage import patchcore as pc
from echelon.models.damage import plots


def surface(seed: int, size=(224, 224)) -> np.ndarray:
    """A machined surface: fine grooves (period 12 px, a random phase and brightness per shot) and sensor noise."""
    rng = np.random.default_rng(seed)
    x = np.arange(size[0])[None, :] + 0.15 * np.arange(size[1])[:, None]
    img = rng.uniform(0.45, 0.55) + 0.1 * np.sin(2 * np.pi * x / 12 + rng.uniform(0, 2 * np.pi))
    return np.clip(img + rng.normal(0, 0.02, (size[1], size[0])), 0, 1)


def save(array: np.ndarray, path) -> str:
    Image.fromarray((array * 255).astype(np.uint8), mode="L").save(path)
    return str(path)


def test_the_coreset_keeps_nearest_neighbour_distances_within_its_coverage_radius(tmp_path):
    """Exact k-centre (no projection): every query's distance to the coreset exceeds its distance to the full
    bank by at most the coverage radius (a guarantee), and on a small set of real patch vectors a bank cut to
    a tenth keeps each image's score (mean of its 3 worst patches) within 10% of the full bank's."""
    torch.manual_seed(0)
    extractor = pc.Extractor(8).eval()
    full = torch.cat([pc.image_patches(extractor, save(surface(s), tmp_path / f"g{s}.png"))[0] for s in range(4)])
    keep = pc.coreset(full, len(full) // 10, seed=1, project=None)
    core = full[keep]
    radius = float(pc.nearest_distances(full, core).max())
    defective = surface(99)
    defective[100:116, 100:116] = 0.1
    for k, image in enumerate([surface(97), surface(98), defective]):
        query, _ = pc.image_patches(extractor, save(image, tmp_path / f"q{k}.png"))
        exact, approx = pc.nearest_distances(query, full), pc.nearest_distances(query, core)
        assert (approx >= exact - 1e-5).all() and float((approx - exact).max()) <= radius + 1e-5
        top_exact, top_approx = exact.topk(pc.TOP).values.mean(), approx.topk(pc.TOP).values.mean()
        assert abs(float(top_approx / top_exact) - 1) <= 0.10, (k, float(top_exact), float(top_approx))
    generator = torch.Generator().manual_seed(2)
    random_pick = full[torch.randperm(len(full), generator=generator)[:len(keep)]]
    assert radius < float(pc.nearest_distances(full, random_pick).max())   # k-centre covers better than chance


def test_the_anomaly_map_peaks_where_a_defect_was_pasted(tmp_path):
    torch.manual_seed(0)
    extractor = pc.Extractor(8).eval()                              # random initialisation: no training needed here
    gallery = [pc.image_patches(extractor, save(surface(s), tmp_path / f"g{s}.png"))[0] for s in range(6)]
    bank = pc.build_bank("tile", gallery, size=800)
    defective = surface(99)
    defective[150:166, 60:76] = 0.1                                 # a dark pit, 16 px wide
    features, shape = pc.image_patches(extractor, save(defective, tmp_path / "d.png"))
    amap = pc.anomaly_map(bank, features, shape)
    row, col = np.unravel_index(np.argmax(amap), amap.shape)
    assert 150 // 8 - 2 <= row <= 166 // 8 + 1 and 60 // 8 - 2 <= col <= 76 // 8 + 1, (row, col)
    clean_features, _ = pc.image_patches(extractor, save(surface(98), tmp_path / "c.png"))
    assert bank.z(features) > bank.z(clean_features) + 3
    overlay = plots.save_overlay(tmp_path / "d.png", plots.pristine_z(amap, bank.mu, bank.sd), tmp_path / "maps" / "d.png",
                                 title="z 9.9")
    width, height = Image.open(overlay).size
    assert width > 1.8 * height                                      # the photo beside its overlay, and a colour bar


def _coloured(path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 40).sum())


def test_an_overlay_in_pristine_units_leaves_pristine_looking_cells_without_heat(tmp_path):
    photo = save(surface(5), tmp_path / "p.png")
    pristine = np.full((28, 28), -0.5, dtype=np.float32)            # every cell no farther than a pristine image's worst
    hot = pristine.copy()
    hot[10:14, 10:14] = 5.0                                          # one far region
    cold_png = plots.save_overlay(photo, pristine, tmp_path / "cold.png")
    hot_png = plots.save_overlay(photo, hot, tmp_path / "hot.png")
    # the colour bar is coloured in both; only the hot map adds heat over the photo, and only a little of it
    assert _coloured(hot_png) > _coloured(cold_png) + 200
    assert _coloured(hot_png) - _coloured(cold_png) < 0.2 * np.prod(Image.open(hot_png).size)
    assert np.allclose(plots.pristine_z(np.array([2.0, 4.0]), mu=2.0, sd=2.0), [0.0, 1.0])


def test_an_elongated_photograph_is_cut_into_overlapping_tiles_that_cover_it(tmp_path):
    path = save(surface(3, size=(600, 150)), tmp_path / "long.png")
    tiles, (height, width, offsets, turned) = pc.load_tiles(path)
    assert tiles.shape[1:] == (1, pc.SIDE, pc.SIDE) and not turned and height == pc.SIDE
    assert offsets[0] == 0 and offsets[-1] + pc.SIDE == width and len(tiles) == len(offsets) == 4
    upright = save(surface(3, size=(600, 150)).T.copy(), tmp_path / "upright.png")   # the same photo, portrait
    again, (_, _, offsets_upright, turned) = pc.load_tiles(upright)
    assert turned and offsets_upright == offsets and again.shape == tiles.shape


def test_a_gallery_smaller_than_the_bank_needs_is_refused_by_product():
    features = [torch.randn(50, 8) for _ in range(3)]
    with pytest.raises(ValueError, match=r"gallery of product 'P7' has 3 images; the memory bank needs at least 4"):
        pc.build_bank("P7", features)


def test_sidelined_rows_get_a_map_in_their_products_pristine_units(tmp_path):
    import pandas as pd

    from echelon.models.damage import gallery as gl
    from echelon.models.damage import images as im
    from echelon.models.damage import maps

    paths = [save(surface(s, size=(64, 64)), tmp_path / f"g{s}.png") for s in range(4)]
    stained = surface(9, size=(64, 64))
    stained[20:32, 20:32] = 1.0
    paths.append(save(stained, tmp_path / "s.png"))
    gallery = gl.build("tile", im.load_many(paths[:4], 64), ["a", "b", "c", "d"])
    scores = pd.DataFrame({"image_id": ["s", "p"], "item_id": ["tile", "tile"], "score": [0.9, 0.1],
                           "decision": ["sideline", "pass"], "damage_type": ["stain", "none"]})
    written = maps.write_maps(scores, {"s": paths[4], "p": paths[0]}, {"tile": gallery}, 64, tmp_path / "maps")
    assert list(written["image_id"]) == ["s"] and (tmp_path / "maps" / "s.png").exists()
