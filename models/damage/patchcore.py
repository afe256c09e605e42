"""PatchCore-style anomaly scoring for real photographs, with a feature extractor learned on the images
themselves (no downloaded weights).

- Resolution: an image is scaled so its shorter side is `SIDE` (224) px, aspect kept, and cut into
  `SIDE` x `SIDE` tiles along its longer side (evenly spaced, overlapping; at most `MAX_TILES`), so a
  hairline crack stays several pixels wide instead of the one pixel it is at 64 px.
- Features: a small fully convolutional network (`Extractor`); two scales, stride 8 and stride 16 (the
  latter upsampled), each averaged over its 3x3 neighbourhood (PatchCore's local aggregation), give one
  vector per 8x8 px patch: 28x28 patches per tile.
- Self-supervised pretraining (`pretrain`, PyTorch Lightning): SimCLR on random crops of the gallery's and
  unlabelled training images, two augmented views per crop, InfoNCE on the pooled deepest features.
  `pretrain(..., steps=0)` keeps the random initialisation (measured side by side in the benchmark).
- Memory bank per product (`Bank`): the gallery's patch vectors, randomly thinned to `POOL` and reduced by
  greedy k-centre coreset selection to `size` patches. The coverage radius r (every thinned patch lies
  within r of a kept one) bounds the error: for any query, its distance to the coreset exceeds its
  distance to the thinned bank by at most r (triangle inequality). Selection runs in a random projection
  to `PROJECT` dimensions when the pool is large (as PatchCore does), so r is then measured, not enforced.
- Score: each patch's nearest-neighbour distance to the bank is the anomaly map; the image's raw score is
  the mean of its `TOP` largest patch distances, standardised by the product's scale (median and spread of
  the raw scores of held-out gallery images that are not in the bank), so it fuses like gallery.py's z.

Size: the tiler, the extractor and its Lightning pretraining, the coreset bank, the scorer and the
anomaly-map rendering belong together (each is small; splitting would scatter one algorithm).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

log = logging.getLogger(__name__)
SIDE, MAX_TILES, STRIDE = 224, 4, 8
POOL, PROJECT, TOP = 20_000, 32, 3


# ------------------------------------------------------------------------------------------- tiling

def load_tiles(path: Path | str, side: int = SIDE, max_tiles: int = MAX_TILES) -> tuple[torch.Tensor, tuple]:
    """(tiles (k, 1, side, side) in [0, 1], layout (height, width, offsets, turned)). A portrait photo is
    turned a quarter so its longer side is horizontal: the same part shot upright or lying matches one bank
    (on magnetic tile, the untouched orientation put the tile's edge in unfamiliar places)."""
    with Image.open(path) as image:
        image = image.convert("L")
        turned = image.height > image.width
        if turned:
            image = image.transpose(Image.Transpose.ROTATE_90)
        scale = side / image.height
        if image.width * scale > side * max_tiles:   # very elongated: shrink so max_tiles tiles cover it
            scale = side * max_tiles / image.width
        width, height = max(side, round(image.width * scale)), max(side, round(image.height * scale))
        pixels = np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels)
    count = max(1, math.ceil(width / side))
    offsets = [round(k * (width - side) / (count - 1)) for k in range(count)] if count > 1 else [0]
    return torch.stack([x[:side, o:o + side] for o in offsets])[:, None], (height, width, offsets, turned)


def standardise(tiles: torch.Tensor) -> torch.Tensor:
    """Per tile, zero mean and unit spread: exposure and camera gain drop out."""
    mean = tiles.mean(dim=(1, 2, 3), keepdim=True)
    return (tiles - mean) / tiles.std(dim=(1, 2, 3), keepdim=True).clamp_min(0.02)


# ----------------------------------------------------------------------------------------- extractor

def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(8, c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(8, c_out), nn.ReLU())


class Extractor(nn.Module):
    """Four stride-2 blocks (strides 2, 4, 8, 16); patch features from the last two."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.width = width
        self.blocks = nn.ModuleList([_block(1, width), _block(width, 2 * width), _block(2 * width, 4 * width),
                                     _block(4 * width, 8 * width)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def patches(self, tiles: torch.Tensor) -> torch.Tensor:
        """(k, 1, S, S) -> (k, 12*width, S/8, S/8) multi-scale, neighbourhood-averaged patch features."""
        _, _, mid, deep = self(standardise(tiles))
        mid = F.avg_pool2d(mid, 3, stride=1, padding=1)
        deep = F.interpolate(F.avg_pool2d(deep, 3, stride=1, padding=1), size=mid.shape[-2:], mode="bilinear",
                             align_corners=False)
        return torch.cat([mid, deep], dim=1)


def _augment(crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flips, 90-degree turns, brightness/contrast jitter and sensor noise: what varies between pristine shots."""
    n = len(crops)
    x = crops.clone()
    flip = torch.rand(n, generator=generator) < 0.5
    x[flip] = x[flip].flip(-1)
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    x = torch.rot90(x, turns, dims=(-2, -1))
    gain = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=generator)
    bias = 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    return (x * gain + bias + 0.03 * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def random_crops(tiles: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    which = torch.randint(0, len(tiles), (count,), generator=generator)
    top = torch.randint(0, tiles.shape[-2] - size + 1, (count,), generator=generator)
    left = torch.randint(0, tiles.shape[-1] - size + 1, (count,), generator=generator)
    return torch.stack([tiles[w, :, t:t + size, s:s + size] for w, t, s in zip(which.tolist(), top.tolist(), left.tolist())])


def pretrain(tiles: torch.Tensor, steps: int = 100, batch: int = 32, crop: int = 64, width: int = 16,
             seed: int = 0, temperature: float = 0.2) -> tuple[Extractor, dict]:
    """SimCLR on random crops of `tiles` (pristine and unlabelled images), with PyTorch Lightning.
    Returns the extractor (eval mode) and {"steps", "seconds"}; steps=0 keeps the random initialisation."""
    import lightning as L

    torch.manual_seed(seed)
    extractor = Extractor(width)
    started = time.perf_counter()
    if steps > 0:
        generator = torch.Generator().manual_seed(seed)

        class SimCLR(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.extractor = extractor
                self.head = nn.Sequential(nn.Linear(8 * width, 128), nn.ReLU(), nn.Linear(128, 64))

            def embed(self, x):
                return F.normalize(self.head(self.extractor(standardise(x))[-1].mean(dim=(2, 3))), dim=1)

            def training_step(self, _, __):
                crops = random_crops(tiles, batch, crop, generator)
                a, b = self.embed(_augment(crops, generator)), self.embed(_augment(crops, generator))
                z = torch.cat([a, b])
                sim = z @ z.T / temperature
                sim.fill_diagonal_(float("-inf"))
                target = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)])
                loss = F.cross_entropy(sim, target)
                self.log("loss", loss)
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=2e-3)

        loader = torch.utils.data.DataLoader(range(steps), batch_size=1)
        trainer = L.Trainer(max_steps=steps, max_epochs=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
        trainer.fit(SimCLR(), loader)
    return extractor.eval(), {"steps": steps, "seconds": round(time.perf_counter() - started, 1)}


@torch.no_grad()
def image_patches(extractor: Extractor, path, side: int = SIDE) -> tuple[torch.Tensor, tuple]:
    """One image's patch vectors (tiles * h * w, dim) and its layout (tiles, h, w, load_tiles' layout)."""
    tiles, layout = load_tiles(path, side)
    feats = extractor.patches(tiles)                                   # (k, dim, h, w)
    k, dim, h, w = feats.shape
    return feats.permute(0, 2, 3, 1).reshape(-1, dim).contiguous(), (k, h, w, layout)


def interior(features: torch.Tensor, shape: tuple, edge: int = 2) -> torch.Tensor:
    """The patch vectors at least `edge` cells from every tile border (zero padding and the photo's own
    border make the outer cells the least familiar ones on pristine parts, see the benchmark's maps)."""
    k, h, w, _ = shape
    if edge <= 0:
        return features
    return features.reshape(k, h, w, -1)[:, edge:h - edge, edge:w - edge].reshape(-1, features.shape[-1])


# ------------------------------------------------------------------------------------------- the bank

def coreset(features: torch.Tensor, size: int, seed: int = 0, project: int | None = PROJECT) -> torch.Tensor:
    """Indices of `size` rows picked by greedy k-centre selection (each pick the row farthest from those
    already picked), in a random projection to `project` dims when the rows are wider (None: exact)."""
    if size >= len(features):
        return torch.arange(len(features))
    generator = torch.Generator().manual_seed(seed)
    x = features
    if project is not None and features.shape[1] > project:
        x = features @ (torch.randn(features.shape[1], project, generator=generator) / math.sqrt(project))
    picked = [int(torch.randint(0, len(x), (1,), generator=generator))]
    nearest = torch.cdist(x, x[picked[0]][None]).squeeze(1)
    for _ in range(size - 1):
        picked.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, torch.cdist(x, x[picked[-1]][None]).squeeze(1))
    return torch.tensor(picked)


def nearest_distances(query: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([torch.cdist(query[i:i + chunk], bank).min(dim=1).values for i in range(0, len(query), chunk)])


@dataclass
class Bank:
    """One product's memory bank of pristine patch vectors and its score scale."""
    item_id: str
    patches: torch.Tensor       # (size, dim)
    radius: float               # coverage radius of the coreset over the thinned pool
    mu: float = 0.0
    sd: float = 1.0

    def patch_distances(self, features: torch.Tensor) -> torch.Tensor:
        return nearest_distances(features, self.patches)

    def raw(self, features: torch.Tensor) -> float:
        distances = self.patch_distances(features)
        return float(distances.topk(min(TOP, len(distances))).values.mean())

    def z(self, features: torch.Tensor) -> float:
        return (self.raw(features) - self.mu) / self.sd


def build_bank(item_id: str, features: list[torch.Tensor], size: int = 2000, seed: int = 0,
               scale_share: float = 0.3, minimum: int = 4, pool_size: int = POOL) -> Bank:
    """A product's bank from its gallery images' patch vectors: a `scale_share` of the images (at least one)
    is kept out of the bank to measure the score scale on images the bank has not seen."""
    if len(features) < minimum:
        raise ValueError(f"gallery of product {item_id!r} has {len(features)} images; the memory bank needs at "
                         f"least {minimum} (some build the bank, the others its score scale)")
    order = np.random.default_rng(seed).permutation(len(features))
    held = max(1, int(round(scale_share * len(features))))
    pool = torch.cat([features[i] for i in order[held:]])
    if len(pool) > pool_size:
        pool = pool[torch.from_numpy(np.random.default_rng(seed).choice(len(pool), pool_size, replace=False))]
    keep = coreset(pool, size, seed)
    bank = Bank(item_id, pool[keep], 0.0)
    bank.radius = float(nearest_distances(pool, bank.patches).max())
    raw = np.array([bank.raw(features[i]) for i in order[:held]])
    bank.mu = float(np.median(raw))
    bank.sd = float(max(raw.std(ddof=1) if len(raw) > 1 else 0.0, 0.1 * bank.mu, 1e-3))
    return bank


# ------------------------------------------------------------------------------------- anomaly maps

def anomaly_map(bank: Bank, features: torch.Tensor, shape: tuple) -> np.ndarray:
    """The per-patch distances laid out over the whole image, in its own orientation: (height/8, width/8)
    cells, the maximum where tiles overlap."""
    k, h, w, (height, width, offsets, turned) = shape
    distances = bank.patch_distances(features).reshape(k, h, w).numpy()
    out = np.zeros((h, math.ceil(width / STRIDE)), dtype=np.float32)
    for tile, offset in zip(distances, offsets):
        region = out[:, offset // STRIDE:offset // STRIDE + w]
        np.maximum(region, tile[:, :region.shape[1]], out=region)
    return np.rot90(out, -1).copy() if turned else out
