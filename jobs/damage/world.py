"""Synthetic imaging world: products photographed on a tray, pristine or damaged, deterministic by seed.

Each product has its own packaging design (a box, a mailer, a bottle or a blister pack holding N units),
some with hard-negative artwork that *looks* like damage (a printed cracked screen, splash motifs), and a
design version (a redesign redraws colours and artwork). Every image is a fresh photo: pose, lighting
and sensor noise vary. Damage is rendered per type (see DAMAGE_TYPES). Every draw comes from a generator
seeded by (seed, set name, image index), so the same arguments give the same pixels.

Output of `generate`: PNG files plus manifests `image_id, path, item_id, label, damage_type` (paths
relative to the manifest's folder), the contract `echelon damage train/score` reads.
"""
from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from echelon.catalog.damage import DAMAGE_TYPES

KINDS = ["box", "mailer", "bottle", "blister"]
ARTWORK = ["stripes", "band", "logo", "checker"]
CANVAS = 128   # rendered at 128 px, then downsampled to `size` (antialiasing for free)


@dataclass(frozen=True)
class Product:
    item_id: str
    kind: str
    width: int           # item extent on the 128 px canvas
    height: int
    base: tuple          # packaging colour
    accent: tuple        # artwork colour
    artwork: str
    hazard: str          # none | cracked_screen | splash: printed artwork that resembles damage
    units: int           # blister packs: how many units the set holds
    unit_colour: tuple
    version: int = 0     # design version; a redesign increments it and redraws the design
    seed: int = 0


def _rng(*keys) -> np.random.Generator:
    """A generator keyed by ints and strings (strings via crc32, stable across processes)."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys])


def _colour(rng) -> tuple:
    return tuple(int(c) for c in rng.integers(30, 230, size=3))


def make_products(n: int, seed: int, hazard_share: float = 0.25) -> list[Product]:
    """n products with their designs; about `hazard_share` of them carry damage-like artwork."""
    products = []
    for i in range(n):
        rng = _rng(seed, "product", i)
        kind = KINDS[i % len(KINDS)]
        hazard = "none"
        if kind in ("box", "bottle", "mailer") and rng.random() < hazard_share * 4 / 3:
            hazard = ["cracked_screen", "splash"][int(rng.integers(2))]
        w, h = {"box": (70, 56), "mailer": (84, 50), "bottle": (40, 84), "blister": (76, 60)}[kind]
        products.append(Product(item_id=f"P{i:04d}", kind=kind, width=w + int(rng.integers(-8, 9)),
                                height=h + int(rng.integers(-6, 7)), base=_colour(rng), accent=_colour(rng),
                                artwork=ARTWORK[int(rng.integers(len(ARTWORK)))], hazard=hazard,
                                units=int(rng.integers(2, 5)) if kind == "blister" else 1,
                                unit_colour=_colour(rng), seed=seed))
    return products


def redesign(product: Product) -> Product:
    """The next design version of a product: new colours and artwork, same item and shape."""
    rng = _rng(product.seed, "redesign", product.item_id, product.version + 1)
    return replace(product, version=product.version + 1, base=_colour(rng), accent=_colour(rng),
                   artwork=ARTWORK[(ARTWORK.index(product.artwork) + 1 + int(rng.integers(3))) % len(ARTWORK)])


# ----------------------------------------------------------------------------------------- rendering

def _draw_artwork(draw: ImageDraw.ImageDraw, p: Product, box: tuple, rng_design) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if p.artwork == "stripes":
        for k in range(3):
            yy = y0 + h * (0.2 + 0.25 * k)
            draw.rectangle([x0 + 3, yy, x1 - 3, yy + h * 0.08], fill=p.accent)
    elif p.artwork == "band":
        draw.rectangle([x0, y0 + h * 0.35, x1, y0 + h * 0.62], fill=p.accent)
    elif p.artwork == "logo":
        r = min(w, h) * 0.22
        cx, cy = x0 + w * 0.5, y0 + h * 0.45
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=p.accent)
        draw.rectangle([x0 + w * 0.2, y1 - h * 0.2, x1 - w * 0.2, y1 - h * 0.12], fill=p.accent)
    else:  # checker
        step = max(6, int(min(w, h) / 5))
        for i, xx in enumerate(range(int(x0) + 2, int(x1) - step, step)):
            for j, yy in enumerate(range(int(y0) + 2, int(y1) - step, step)):
                if (i + j) % 2 == 0:
                    draw.rectangle([xx, yy, xx + step - 1, yy + step - 1], fill=p.accent)
    if p.hazard == "cracked_screen":  # a printed phone with a smashed screen: dark pane, pale cracks
        sx0, sy0, sx1, sy1 = x0 + w * 0.25, y0 + h * 0.15, x0 + w * 0.75, y1 - h * 0.15
        draw.rectangle([sx0, sy0, sx1, sy1], fill=(25, 25, 35))
        cx, cy = sx0 + (sx1 - sx0) * 0.6, sy0 + (sy1 - sy0) * 0.4
        for k in range(6):
            ang = k * np.pi / 3 + 0.3
            draw.line([cx, cy, cx + np.cos(ang) * w * 0.3, cy + np.sin(ang) * h * 0.35], fill=(220, 220, 230), width=1)
    elif p.hazard == "splash":  # printed splash graphics: irregular blobs and droplets
        rng = _rng(p.seed, "splash", p.item_id, p.version)
        for _ in range(5):
            cx, cy = x0 + w * rng.uniform(0.2, 0.8), y0 + h * rng.uniform(0.2, 0.8)
            r = min(w, h) * rng.uniform(0.05, 0.16)
            draw.ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=p.unit_colour)


def _item_layer(p: Product, damage: str | None, rng) -> Image.Image:
    """The product on a transparent layer, centred, before pose; damage on the item is drawn here."""
    layer = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cx, cy = CANVAS / 2, CANVAS / 2
    x0, y0, x1, y1 = cx - p.width / 2, cy - p.height / 2, cx + p.width / 2, cy + p.height / 2
    if p.kind == "box":
        draw.rectangle([x0, y0, x1, y1], fill=p.base + (255,), outline=(40, 40, 40, 255))
        draw.line([x0, y0 + 5, x1, y0 + 5], fill=tuple(int(c * 0.7) for c in p.base) + (255,), width=2)
        _draw_artwork(draw, p, (x0, y0 + 6, x1, y1), rng)
    elif p.kind == "mailer":
        paper = tuple(int(0.5 * c + 0.5 * k) for c, k in zip(p.base, (200, 170, 120)))
        draw.rounded_rectangle([x0, y0, x1, y1], radius=6, fill=paper + (255,))
        _draw_artwork(draw, p, (x0 + p.width * 0.45, y0 + 6, x1 - 6, y1 - 6), rng)
    elif p.kind == "bottle":
        draw.rectangle([cx - 7, y0 - 2, cx + 7, y0 + 10], fill=p.accent + (255,))          # cap
        draw.rounded_rectangle([x0, y0 + 10, x1, y1], radius=10, fill=p.base + (255,))
        _draw_artwork(draw, p, (x0 + 2, y0 + 22, x1 - 2, y1 - 8), rng)
    else:  # blister: a card holding `units` units in cavities, left to right
        draw.rectangle([x0, y0, x1, y1], fill=p.base + (255,), outline=(60, 60, 60, 255))
        draw.rectangle([x0, y0, x1, y0 + 10], fill=p.accent + (255,))
        missing = int(rng.integers(p.units)) if damage == "broken_set" else -1
        step = (p.width - 8) / p.units
        for k in range(p.units):
            ux0, ux1 = x0 + 4 + k * step + 2, x0 + 4 + (k + 1) * step - 2
            draw.rounded_rectangle([ux0, y0 + 16, ux1, y1 - 6], radius=5, fill=(215, 220, 225, 255))  # cavity
            if k != missing:
                draw.ellipse([ux0 + 3, y0 + 20, ux1 - 3, y1 - 10], fill=p.unit_colour + (255,))
            else:  # an empty cavity: torn foil edge and a shadow where the unit was
                draw.rounded_rectangle([ux0 + 2, y0 + 18, ux1 - 2, y1 - 8], radius=4, fill=(150, 150, 160, 255))
    bbox = (x0, y0, x1, y1)
    if damage == "crush":
        # a corner pushed in: the outline loses a triangle, creases run across the face
        corner = int(rng.integers(4))
        cxx, cyy = (x0, x1)[corner % 2], (y0, y1)[corner // 2]
        sx, sy = (1 if corner % 2 == 0 else -1), (1 if corner // 2 == 0 else -1)
        a, b = rng.uniform(0.35, 0.55) * p.width, rng.uniform(0.35, 0.55) * p.height
        draw.polygon([(cxx, cyy), (cxx + sx * a, cyy), (cxx, cyy + sy * b)], fill=(0, 0, 0, 0))
        draw.polygon([(cxx + sx * a, cyy), (cxx, cyy + sy * b), (cxx + sx * a * 1.4, cyy + sy * b * 1.4)],
                     fill=(40, 35, 30, 150))
        for k in range(3):
            t = 0.6 + 0.25 * k
            draw.line([cxx + sx * a * t * 1.5, cyy, cxx, cyy + sy * b * t * 1.5], fill=(20, 20, 20, 255), width=2)
    elif damage == "tear":
        # a jagged rip exposing pale card underneath
        y = rng.uniform(y0 + 0.3 * p.height, y1 - 0.3 * p.height)
        xs = np.linspace(x0 + rng.uniform(0, 0.2) * p.width, x0 + rng.uniform(0.6, 1.0) * p.width, 9)
        top = [(x, y + rng.uniform(-5, 5)) for x in xs]
        bottom = [(x, yy + rng.uniform(5, 11)) for x, yy in reversed(top)]
        draw.polygon(top + bottom, fill=(235, 225, 200, 255), outline=(20, 20, 20, 255))
        draw.line(top, fill=(15, 15, 15, 255), width=2)
    elif damage == "hole":
        for _ in range(int(rng.integers(1, 4))):
            hx, hy = rng.uniform(x0 + 8, x1 - 8), rng.uniform(y0 + 8, y1 - 8)
            r = rng.uniform(4, 8)
            draw.ellipse([hx - r - 2, hy - r - 2, hx + r + 2, hy + r + 2], fill=(90, 70, 50, 255))
            draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=(8, 8, 8, 255))
    elif damage == "deconstruction":
        # the pack splits open at one side and its contents break out past the edge
        side = int(rng.integers(2))
        ex = x1 if side else x0
        draw.rectangle([ex - 6, cy - 12, ex + 6, cy + 12], fill=(10, 10, 10, 255))
        for _ in range(7):
            ox = ex + (1 if side else -1) * rng.uniform(2, 22)
            oy = cy + rng.uniform(-20, 20)
            r = rng.uniform(3, 7)
            draw.ellipse([ox - r, oy - r, ox + r, oy + r], fill=p.unit_colour + (255,), outline=(30, 30, 30, 255))
    return layer


def _tray(rng, lighting: float) -> Image.Image:
    grey = rng.uniform(165, 185)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS] / CANVAS
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1 + lighting * ((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle))
    tray = np.clip(grey * gradient, 0, 255)[..., None] * np.array([1.0, 1.0, 1.03])
    return Image.fromarray(tray.clip(0, 255).astype(np.uint8), "RGB")


def _spill(image: Image.Image, rng, product: Product) -> None:
    """Liquid or powder on the tray beside the item (the pack itself can look intact)."""
    draw = ImageDraw.Draw(image, "RGBA")
    side = rng.choice([-1, 1])
    cx = CANVAS / 2 + side * (product.width / 2 + rng.uniform(8, 16))
    cy = CANVAS / 2 + rng.uniform(-20, 20)
    colour = tuple(int(c) for c in rng.integers(20, 200, size=3))
    if rng.random() < 0.5:   # liquid: overlapping translucent blobs
        for _ in range(6):
            r = rng.uniform(5, 11)
            ox, oy = cx + rng.uniform(-9, 9), cy + rng.uniform(-12, 12)
            draw.ellipse([ox - r, oy - r, ox + r, oy + r], fill=colour + (170,))
    else:                    # powder: a dense speckle
        for _ in range(220):
            ox, oy = cx + rng.normal(0, 7), cy + rng.normal(0, 10)
            draw.point((ox, oy), fill=(235, 235, 225, 255))
            draw.point((ox + 1, oy), fill=(235, 235, 225, 255))


def render(product: Product, rng: np.random.Generator, size: int = 64, damage: str | None = None) -> Image.Image:
    """One photo of `product` on the tray: random pose, lighting and noise; `damage` one of DAMAGE_TYPES."""
    if damage is not None and damage not in DAMAGE_TYPES:
        raise ValueError(f"unknown damage type {damage!r}; expected one of {DAMAGE_TYPES}")
    if damage == "broken_set" and product.kind != "blister":
        raise ValueError(f"broken_set needs a product holding a set (blister), {product.item_id} is a {product.kind}")
    lighting = rng.uniform(0.0, 0.25)
    image = _tray(rng, lighting)
    layer = _item_layer(product, damage, rng)
    angle = rng.uniform(-10, 10)
    shift = tuple(int(v) for v in rng.integers(-6, 7, size=2))
    layer = layer.rotate(angle, resample=Image.BILINEAR, translate=shift)
    shadow = Image.new("RGBA", layer.size, (0, 0, 0, 0))
    shadow.paste((0, 0, 0, 70), (0, 0), layer.split()[3])
    image.paste(shadow.filter(ImageFilter.GaussianBlur(3)), (3, 4), shadow.filter(ImageFilter.GaussianBlur(3)))
    image.paste(layer, (0, 0), layer)
    if damage == "spill":
        _spill(image, rng, product)
    pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.8, 1.15)        # exposure
    pixels = pixels + rng.normal(0, rng.uniform(1.5, 4.0), pixels.shape)          # sensor noise
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    return image.resize((size, size), Image.LANCZOS)


def damage_for(product: Product, rng) -> str:
    """A damage type that this product can have (broken sets only for sets)."""
    allowed = DAMAGE_TYPES if product.kind == "blister" else DAMAGE_TYPES[:-1]
    return allowed[int(rng.integers(len(allowed)))]


# ---------------------------------------------------------------------------------------- image sets

def write_set(root: Path, name: str, products: list[Product], n: int, damage_rate: float, seed: int,
              size: int = 64, pristine_only: bool = False, per_product: int | None = None) -> pd.DataFrame:
    """Render `n` images (or `per_product` per product) into root/images/<name>/ and write root/<name>.csv.

    Products are drawn uniformly; an image is damaged with probability `damage_rate`."""
    folder = Path(root) / "images" / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    count = n if per_product is None else per_product * len(products)
    for i in range(count):
        rng = _rng(seed, name, i)
        product = products[i // per_product] if per_product else products[int(rng.integers(len(products)))]
        damage = None if pristine_only or rng.random() >= damage_rate else damage_for(product, rng)
        image_id = f"{name}-{i:06d}"
        render(product, rng, size, damage).save(folder / f"{image_id}.png")
        rows.append({"image_id": image_id, "path": f"images/{name}/{image_id}.png", "item_id": product.item_id,
                     "label": int(damage is not None), "damage_type": damage or "none",
                     "hazard": product.hazard, "version": product.version})
    manifest = pd.DataFrame(rows)
    manifest.to_csv(Path(root) / f"{name}.csv", index=False)
    return manifest


def generate(root: Path, products: int = 24, seed: int = 42, size: int = 64, gallery: int = 8, train: int = 600,
             calib: int = 400, valid: int = 1000, batch: int = 1000, new_products: int = 4,
             batch_damage_rate: float = 0.001) -> dict[str, pd.DataFrame]:
    """A whole world: a gallery of every product, a damage-enriched training set (about two thirds damaged)
    and a calibration set of the seen products (one third damaged, for the fusion), a mostly clean validation set for the threshold, and a
    production-like batch at `batch_damage_rate` that also holds `new_products` never seen in training."""
    root = Path(root)
    catalog = make_products(products + new_products, seed)
    seen = catalog[:products]
    out = {"gallery": write_set(root, "gallery", catalog, 0, 0.0, seed, size, pristine_only=True, per_product=gallery),
           "train": write_set(root, "train", seen, train, 2 / 3, seed, size),
           "calib": write_set(root, "calib", seen, calib, 1 / 3, seed, size),
           "valid": write_set(root, "valid", catalog, valid, 0.05, seed, size),
           "batch": write_set(root, "batch", catalog, batch, batch_damage_rate, seed, size)}
    pd.DataFrame([p.__dict__ for p in catalog]).to_csv(root / "products.csv", index=False)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--products", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--size", type=int, default=64)


def main(args: argparse.Namespace) -> int:
    sets = generate(args.output, products=args.products, seed=args.seed, size=args.size)
    for name, frame in sets.items():
        print(f"{name:8s} {len(frame):6d} images, {int(frame['label'].sum())} damaged -> {args.output / name}.csv")
    return 0
