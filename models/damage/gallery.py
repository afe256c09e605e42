"""Reference-gallery anomaly score: how far an image is from pristine images of the same product.

Features are classical, so nothing needs pretrained weights: each image is normalised for exposure
(divided by its per-channel median), downsampled 2x, and cut into overlapping 6x6 colour patches. A
product's gallery is the bank of all patches of its pristine images. An image's raw distance is the
mean of its `top` largest nearest-neighbour patch distances to the bank (PatchCore-style: matching any
patch anywhere tolerates pose, and one region that matches nothing, such as an empty blister cavity or
a spill on the tray, is enough to stand out). Printed artwork that resembles damage is in the gallery
itself, so it matches and scores low.

Raw distances differ between products (busy artwork matches less well), so each product's score is
standardised by its own leave-one-out gallery distances: z = (d - mu) / sd. The same z measures drift:
a redesigned product's pristine images all sit far from the gallery (see `drifted`).

A gallery also records `reference`, the supervised classifier's median logit on the product's pristine
images: how damaged this product's normal look seems to the classifier. Printed artwork the classifier
never saw (a new product, or a redesign with a cracked-screen graphic) can make it fire on every
pristine image; the fusion reads the classifier relative to this reference (see fusion.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from echelon.models.damage.fusion import logit

PATCH, STRIDE, TOP = 6, 2, 3
MIN_IMAGES = 5   # a product's images in one batch needed to judge drift
POSITION = 0.3   # weight of a patch's grid position: pose moves patches a little, never across the item


def patch_features(images: np.ndarray) -> torch.Tensor:
    """(n, 3, S, S) floats in [0,1] -> (n, patches, 3*PATCH*PATCH) exposure-normalised patch vectors."""
    x = torch.as_tensor(images, dtype=torch.float32)
    median = x.flatten(2).median(dim=2).values.clamp_min(0.05)[..., None, None]
    x = F.avg_pool2d(x / median, 2)
    patches = F.unfold(x, PATCH, stride=STRIDE).transpose(1, 2)          # (n, L, 3*P*P)
    # Appending the patch's place makes a patch match only near where it belongs: an empty blister
    # cavity looks like bare tray, and without its position it would match the tray around the item.
    side = (x.shape[-1] - PATCH) // STRIDE + 1
    grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1)
    place = (POSITION * STRIDE * grid.reshape(1, -1, 2).float()).expand(len(x), -1, -1)
    return torch.cat([patches, place], dim=2).contiguous()


def _distances(query: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour distance of every query patch to the bank: (patches,)."""
    return torch.cdist(query, bank).min(dim=1).values


def image_distance(query: torch.Tensor, bank: torch.Tensor, top: int = TOP) -> float:
    """Mean of the `top` largest patch nearest-neighbour distances: one image's raw anomaly distance."""
    nearest = _distances(query, bank)
    return float(nearest.topk(min(top, len(nearest))).values.mean())


@dataclass
class Gallery:
    """One product's reference: its patch bank, which image each patch came from, and the z-scale."""
    item_id: str
    bank: torch.Tensor          # (patches, dim)
    owner: torch.Tensor         # (patches,) index of the gallery image each patch came from
    image_ids: list[str]
    mu: float
    sd: float
    reference: float = float("nan")   # the classifier's median logit on these pristine images

    def raw(self, features: torch.Tensor, exclude: int | None = None) -> float:
        keep = self.owner != exclude if exclude is not None else slice(None)
        return image_distance(features, self.bank[keep])

    def z(self, features: torch.Tensor, exclude: int | None = None) -> float:
        return (self.raw(features, exclude) - self.mu) / self.sd


def build(item_id: str, images: np.ndarray, image_ids: list[str], reference: float = float("nan")) -> Gallery:
    """A product's gallery from its pristine images (at least 3, so leave-one-out has a spread)."""
    return from_features(item_id, patch_features(images), image_ids, reference)


def from_features(item_id: str, features: torch.Tensor, image_ids: list[str], reference: float) -> Gallery:
    """A gallery from per-image patch features (n, patches, dim), with its leave-one-out z-scale."""
    if len(features) < 3:
        raise ValueError(f"gallery for item {item_id!r} has {len(features)} images; at least 3 are needed")
    bank = features.reshape(-1, features.shape[-1])
    owner = torch.arange(len(features)).repeat_interleave(features.shape[1])
    gallery = Gallery(item_id, bank, owner, list(image_ids), mu=0.0, sd=1.0, reference=float(reference))
    loo = np.array([gallery.raw(features[i], exclude=i) for i in range(len(features))])
    gallery.mu = float(np.median(loo))
    # a floor on the spread: a handful of near-identical gallery images must not make z explode
    gallery.sd = float(max(loo.std(ddof=1), 0.15 * gallery.mu, 1e-3))
    return gallery


def scores(galleries: dict[str, Gallery], item_ids, images: np.ndarray, chunk: int = 32) -> np.ndarray:
    """z-scores of images against their own products' galleries.

    One distance computation per product and `chunk` images, not per image: many small cdist calls each
    open a parallel region, which is what made two torch threads 3-10x slower than one on a loaded
    2-core machine (see benchmarks/results/damage_benchmark.md)."""
    features = patch_features(images)
    item_ids = np.asarray(list(item_ids), dtype=object)
    out = np.zeros(len(item_ids), dtype=np.float64)
    for item in dict.fromkeys(item_ids):
        where = np.flatnonzero(item_ids == item)
        g = galleries[item]
        for start in range(0, len(where), chunk):
            part = where[start:start + chunk]
            query = features[part]                                        # (k, patches, dim)
            nearest = torch.cdist(query.reshape(-1, query.shape[-1]), g.bank).min(dim=1).values
            worst = nearest.reshape(len(part), -1).topk(min(TOP, query.shape[1]), dim=1).values.mean(dim=1)
            out[part] = (worst.double().numpy() - g.mu) / g.sd
    return out


def anomaly_maps(galleries: dict[str, Gallery], item_ids, images: np.ndarray) -> np.ndarray:
    """Per image, each patch's nearest-neighbour distance to its own product's bank, on the patch grid:
    (n, side, side), where the anomaly score came from (its TOP largest cells)."""
    features = patch_features(images)
    side = int(round(features.shape[1] ** 0.5))
    out = np.zeros((len(images), side, side), dtype=np.float32)
    for k, item in enumerate(item_ids):
        out[k] = _distances(features[k], galleries[item].bank).reshape(side, side).numpy()
    return out


def drifted(z_by_item: dict[str, np.ndarray], min_images: int = MIN_IMAGES, z_limit: float = 2.0) -> list[str]:
    """Products whose images in a batch, taken together, no longer look like their gallery.

    Damage is rare, so the *median* image of a product in a batch is pristine: a median z far above the
    gallery's own spread means the pristine look changed (a redesign), not that everything broke. Pose
    and lighting variation is what the gallery already spans, so it stays near z = 0: on the benchmark's
    validation set the per-product median z of pristine images lies in [-1.2, 1.2], while redesigns
    measured 2.5 to 17. A limit of 4 missed redesigns at z 2.5-4 whose images the fusion still sidelined;
    a false alarm costs little, because a refresh extends the gallery (see `refresh`)."""
    return sorted(item for item, z in z_by_item.items() if len(z) >= min_images and float(np.median(z)) > z_limit)


def uniform_drift(z: np.ndarray, z_limit: float = 2.0, quantile: float = 0.1) -> bool:
    """Whether a product's drift moved (nearly) every image of it: its 10% quantile z is above the limit.

    A redesign changes every image; a damaged shipment leaves its undamaged or lightly damaged units near
    the gallery. On the tiny test world's redesigns the lowest z was 2.6-23; a batch 85% damaged (crush,
    tear, hole, spill) had 3 of 12 images below 0.1. The 10% allows a stray old-stock unit in a
    redesign's batch; a shipment over 90% damaged passes this test and is left to the classifier check
    and persistence (see model.refresh_drifted). Holding a real redesign back costs one batch of
    sidelines; refreshing from damage would pass that damage from then on."""
    return len(z) > 0 and float(np.quantile(z, quantile)) > z_limit


def refresh(item_id: str, images: np.ndarray, image_ids: list[str], supervised: np.ndarray,
            previous: Gallery | None = None, max_images: int = 12, keep: int = 12) -> Gallery:
    """The gallery of a redesigned product, extended with a batch's images of it: the `max_images` ones
    the supervised model finds least likely damaged (a rare damaged image must not become a reference).

    The new design is added to the `previous` gallery's newest `keep` images rather than replacing them,
    since old stock keeps arriving for a while after a redesign. The classifier reference becomes the
    higher of the previous one and the median logit over all the batch's images of the product (the
    median: damage is rare; all of them: the least-damaged pick would bias it low)."""
    order = np.argsort(supervised, kind="stable")[:max_images]
    features, ids = patch_features(images[order]), [image_ids[i] for i in order]
    reference = float(np.median(logit(supervised))) if len(supervised) else float("nan")
    if previous is not None:
        kept = list(range(len(previous.image_ids)))[-keep:]
        old = torch.stack([previous.bank[previous.owner == k] for k in kept])
        features, ids = torch.cat([old, features]), [previous.image_ids[k] for k in kept] + ids
        reference = float(np.nanmax([previous.reference, reference]))
    return from_features(item_id, features, ids, reference)


def to_arrays(galleries: dict[str, Gallery]) -> dict[str, np.ndarray]:
    """Flatten galleries into arrays for np.savez."""
    out = {}
    for item, g in galleries.items():
        out[f"{item}/bank"] = g.bank.numpy().astype(np.float32)   # full precision: the threshold must reproduce exactly
        out[f"{item}/owner"] = g.owner.numpy().astype(np.int32)
        out[f"{item}/meta"] = np.array([g.mu, g.sd, g.reference])
        out[f"{item}/ids"] = np.array(g.image_ids)
    return out


def from_arrays(arrays) -> dict[str, Gallery]:
    items = sorted({key.rsplit("/", 1)[0] for key in arrays.keys()})
    out = {}
    for item in items:
        meta = arrays[f"{item}/meta"]
        if len(meta) < 3:
            raise ValueError(f"gallery of item {item!r} was saved without its classifier reference (an older "
                             f"format): retrain the model (`echelon damage train`) or delete that gallery override")
        out[item] = Gallery(item, torch.as_tensor(arrays[f"{item}/bank"].astype(np.float32)),
                            torch.as_tensor(arrays[f"{item}/owner"].astype(np.int64)),
                            [str(s) for s in arrays[f"{item}/ids"]], float(meta[0]), float(meta[1]), float(meta[2]))
    return out
