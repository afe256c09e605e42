"""Higher-resolution patch anomaly score for surfaces: small defects (pits, hairline cracks) that a 64 px
square of the whole image averages away.

An image is read in greyscale at its own aspect ratio, its longer side scaled to `side` px (256 by
default, 4x the gallery path's 64 px), and divided by a heavy blur of itself, which removes exposure and
the shading of a curved surface. Per pixel, classical multi-scale maps (no weights to download):
local contrast, two difference-of-Gaussians (a pit or a crack is a small dark blob or line), gradient
magnitude at two scales, and local contrast spread. Each map is pooled over `window` x `window` px
cells every `stride` px (mean, min and max), so one patch vector describes what a 16 px region looks
like at several scales.

The gallery is a bank of such patches from defect-free images (randomly thinned to `bank_size`, so
nearest-neighbour search stays cheap on two cores), standardised per dimension by the bank's spread.
An image's raw score is the mean of its `top` largest patch nearest-neighbour distances: a defect is a
region that matches nothing in the bank, wherever it lies. Like gallery.py, the score is standardised
by the gallery images' own leave-one-out scores (z), so it fuses the same way.

Status: experimental, not used by DamageModel. It finds pits and hairline cracks on the synthetic
surfaces of tests/unit/test_damage_texture.py, but on the real magnetic-tile photos it scored AUROC
0.511 (no better than chance; the 64 px gallery path: 0.743): defect-free tiles differ so much from each
other (surface finish, edges, crop) that a tile's least familiar patch is as often an ordinary one as a
defect (benchmarks/results/damage_benchmark.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SIDE, WINDOW, STRIDE, TOP, BANK = 256, 16, 8, 3, 40_000


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (1, 1, H, W), edges replicated."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def load_grey(path: Path | str, side: int = SIDE) -> torch.Tensor:
    """An image as (1, 1, H, W) float32 in [0, 1], its longer side scaled to `side`, aspect kept."""
    with Image.open(path) as image:
        image = image.convert("L")
        scale = side / max(image.size)
        size = (max(WINDOW, round(image.width * scale)), max(WINDOW, round(image.height * scale)))
        image = image.resize(size, Image.BILINEAR)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]


def maps(x: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) -> (1, 6, H, W) per-pixel maps, see the module docstring."""
    flat = x / _gaussian(x, 16.0).clamp_min(0.02) - 1.0          # local contrast, shading removed
    fine, mid, coarse = _gaussian(flat, 1.0), _gaussian(flat, 2.5), _gaussian(flat, 6.0)
    dx = fine[..., :, 1:] - fine[..., :, :-1]
    dy = fine[..., 1:, :] - fine[..., :-1, :]
    grad = torch.sqrt(F.pad(dx, (0, 1, 0, 0)) ** 2 + F.pad(dy, (0, 0, 0, 1)) ** 2)
    spread = torch.sqrt(_gaussian((flat - mid) ** 2, 3.0).clamp_min(0))
    return torch.cat([fine, fine - mid, mid - coarse, grad, _gaussian(grad, 3.0), spread], dim=1)


def patch_features(x: torch.Tensor, window: int = WINDOW, stride: int = STRIDE) -> torch.Tensor:
    """(1, 1, H, W) -> (patches, 18): mean, min and max of each map over every window."""
    m = maps(x)
    mean = F.avg_pool2d(m, window, stride)
    high = F.max_pool2d(m, window, stride)
    low = -F.max_pool2d(-m, window, stride)
    return torch.cat([mean, low, high], dim=1).flatten(2)[0].T.contiguous()


def features_of(paths, side: int = SIDE) -> list[torch.Tensor]:
    return [patch_features(load_grey(p, side)) for p in paths]


@dataclass
class TextureGallery:
    bank: torch.Tensor        # (patches, dim), standardised
    owner: torch.Tensor       # (patches,) gallery image index
    centre: torch.Tensor      # (dim,) per-dimension standardisation
    scale: torch.Tensor
    mu: float = 0.0
    sd: float = 1.0

    def raw(self, features: torch.Tensor, exclude: int | None = None, top: int = TOP) -> float:
        bank = self.bank if exclude is None else self.bank[self.owner != exclude]
        query = (features - self.centre) / self.scale
        nearest = torch.cdist(query, bank).min(dim=1).values
        return float(nearest.topk(min(top, len(nearest))).values.mean())

    def z(self, features: torch.Tensor) -> float:
        return (self.raw(features) - self.mu) / self.sd

    def scores(self, features: list[torch.Tensor]) -> np.ndarray:
        return np.array([self.z(f) for f in features], dtype=np.float64)


def build(features: list[torch.Tensor], bank_size: int = BANK, seed: int = 0) -> TextureGallery:
    """A gallery from defect-free images' patch features, thinned at random to `bank_size` patches, with
    its leave-one-out z-scale (each gallery image scored against the others' patches)."""
    if len(features) < 3:
        raise ValueError(f"a texture gallery needs at least 3 defect-free images, got {len(features)}")
    bank = torch.cat(features)
    owner = torch.cat([torch.full((len(f),), i) for i, f in enumerate(features)])
    if len(bank) > bank_size:
        keep = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(len(bank), bank_size, replace=False)))
        bank, owner = bank[keep], owner[keep]
    centre, scale = bank.mean(0), bank.std(0).clamp_min(1e-6)
    gallery = TextureGallery((bank - centre) / scale, owner, centre, scale)
    loo = np.array([gallery.raw(f, exclude=i) for i, f in enumerate(features)])
    gallery.mu = float(np.median(loo))
    gallery.sd = float(max(loo.std(ddof=1), 0.05 * gallery.mu, 1e-3))
    return gallery
