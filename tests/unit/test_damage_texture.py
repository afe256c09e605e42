"""Texture patch score: a pit or a hairline crack a few pixels wide on a striped, unevenly lit surface
stands out from defect-free images, whatever their exposure or shading."""
import numpy as np
import pytest
from PIL import Image

from echelon.models.damage import texture as tx


def surface(rng, defect=None, h=300, w=220):
    """A ground surface: vertical grinding stripes, noise, shading across the curve, random exposure."""
    x = np.arange(w)[None, :]
    stripes = 0.04 * np.sin(x / rng.uniform(1.5, 2.5) + rng.uniform(0, 6)) + 0.02 * rng.standard_normal((1, w))
    shading = 0.25 * np.cos((x - w / 2) / w * 2.5)
    image = 0.35 + shading + stripes + 0.03 * rng.standard_normal((h, w))
    if defect == "pit":
        cy, cx = rng.integers(40, h - 40), rng.integers(40, w - 40)
        yy, xx = np.ogrid[:h, :w]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] -= 0.25
    elif defect == "crack":
        cx = rng.integers(40, w - 40)
        for y in range(60, 160):
            image[y, cx + int(6 * np.sin(y / 15)): cx + int(6 * np.sin(y / 15)) + 2] -= 0.25
    image = np.clip(image * rng.uniform(0.7, 1.3), 0, 1)
    return Image.fromarray((image * 255).astype(np.uint8), mode="L")


def write(folder, name, images):
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{name}{i}.png")
        image.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("surfaces")
    rng = np.random.default_rng(0)
    built = tx.build(tx.features_of(write(folder, "free", [surface(rng) for _ in range(12)])), bank_size=5000)
    yield built, folder, rng
    torch.set_num_threads(threads)


def test_pits_and_hairline_cracks_score_above_every_defect_free_surface(gallery):
    built, folder, rng = gallery
    free = built.scores(tx.features_of(write(folder, "ok", [surface(rng) for _ in range(12)])))
    pits = built.scores(tx.features_of(write(folder, "pit", [surface(rng, "pit") for _ in range(6)])))
    cracks = built.scores(tx.features_of(write(folder, "crack", [surface(rng, "crack") for _ in range(6)])))
    assert np.median(free) < 2.0
    assert pits.min() > free.max() and cracks.min() > free.max(), (free.max(), pits, cracks)


def test_features_keep_the_aspect_ratio_and_a_gallery_needs_three_images(gallery, tmp_path):
    built, folder, rng = gallery
    x = tx.load_grey(write(tmp_path, "tall", [surface(rng, h=400, w=100)])[0])
    assert x.shape == (1, 1, tx.SIDE, tx.SIDE // 4)
    features = tx.patch_features(x)
    assert features.shape[1] == built.bank.shape[1] == 18
    with pytest.raises(ValueError, match="at least 3"):
        tx.build([features, features])
