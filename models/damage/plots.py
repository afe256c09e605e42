"""Plots an analyst looks at in MLflow: ROC and precision-recall per signal, recall vs false-positive
rate near the operating point (log scale), a contact sheet of a batch's top-scored images, and an image
with its anomaly map as a heat overlay (what an associate reads beside a sidelined decision)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

SIGNALS = {"score_supervised": "supervised", "score_anomaly": "gallery anomaly", "score": "fused"}


def roc_pr(scored: pd.DataFrame, path: Path) -> Path:
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.2))
    for column, name in SIGNALS.items():
        fpr, tpr, _ = roc_curve(scored["label"], scored[column])
        precision, recall, _ = precision_recall_curve(scored["label"], scored[column])
        roc.plot(fpr, tpr, label=name)
        pr.plot(recall, precision, label=name)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.5)
    roc.set(xlabel="false-positive (sideline) rate", ylabel="recall", title="ROC")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall")
    roc.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def recall_vs_fpr(scored: pd.DataFrame, operating: dict, path: Path) -> Path:
    """Recall against FPR on a log axis around the target: where the sideline budget bites."""
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for column, name in SIGNALS.items():
        fpr, tpr, _ = roc_curve(scored["label"], scored[column])
        ax.step(np.maximum(fpr, 1e-4), tpr, where="post", label=name)
    ax.axvline(operating["target_fpr"], color="red", ls="--", lw=1, label=f"target FPR {operating['target_fpr']:g}")
    ax.axvline(operating["fpr_upper"], color="red", ls=":", lw=1,
               label=f"95% upper bound {operating['fpr_upper']:.4f}")
    ax.plot([max(operating["fpr"], 1e-4)], [operating["recall"]], "ko", label=f"operating point, recall {operating['recall']:.3f}")
    ax.set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1.02), xlabel="false-positive rate (log)", ylabel="recall",
           title=f"recall near the operating point ({operating['negatives']} pristine validation images)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def contact_sheet(scores: pd.DataFrame, files: dict[str, str], path: Path, top: int = 24, columns: int = 6,
                  tile: int = 96) -> Path:
    """The `top` highest-scored images of a batch with score, decision and type, for review."""
    best = scores.sort_values("score", ascending=False).head(top)
    rows = max(1, int(np.ceil(len(best) / columns)))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (_, row) in enumerate(best.iterrows()):
        x, y = (k % columns) * tile, (k // columns) * (tile + 24)
        with Image.open(files[row["image_id"]]) as image:
            sheet.paste(image.convert("RGB").resize((tile, tile)), (x, y))
        colour = (200, 0, 0) if row["decision"] == "sideline" else (0, 110, 0)
        draw.rectangle([x, y, x + tile - 1, y + tile - 1], outline=colour, width=2)
        draw.text((x + 2, y + tile + 1), f"{row['score']:.3f} {row['damage_type']}", fill=colour)
        draw.text((x + 2, y + tile + 12), str(row["image_id"])[-14:], fill=(60, 60, 60))
    sheet.save(path)
    return path


Z_RANGE = (0.0, 6.0)   # overlay colour range in z: 0 = as far as the worst patches of a pristine image, 6 = far beyond


def pristine_z(amap: np.ndarray, mu: float, sd: float) -> np.ndarray:
    """A map of patch distances in the units of the image score: z = (d - mu) / sd with the product's pristine
    scale (gallery.Gallery / patchcore.Bank mu, sd: the worst-patch distance of held-out pristine images). A
    cell at z <= 0 is no farther from the gallery than the worst patches of a typical pristine image."""
    return (np.asarray(amap, dtype=np.float32) - mu) / max(sd, 1e-9)


def save_overlay(image_path, amap: np.ndarray, target: Path, vmax: float | None = None, title: str = "",
                 vmin: float | None = None, label: str = "patch anomaly, z vs pristine gallery") -> Path:
    """The photo beside the same photo with its anomaly map as a heat overlay and a colour bar, one PNG.

    `amap` is best given in pristine z units (`pristine_z`) with the default range `Z_RANGE`: the colour then
    means the same on every image of every product, and cells no farther than a pristine image's worst
    patches (z <= 0) carry no heat at all, so the photo stays readable and the hot spot is the defect. The
    heat's opacity grows with it. Raw distances (the older call) are scaled to [vmin or 0, vmax or max]."""
    with Image.open(image_path) as image:
        grey = np.asarray(image.convert("L"))
    low, high = (Z_RANGE if vmax is None and vmin is None else
                 (vmin if vmin is not None else 0.0, vmax if vmax is not None else float(np.max(amap)) or 1.0))
    high = max(high, low + 1e-9)
    resized = Image.fromarray(np.asarray(amap, dtype=np.float32), mode="F").resize(grey.shape[::-1], Image.BILINEAR)
    heat = np.clip((np.asarray(resized) - low) / (high - low), 0, 1)
    colour = matplotlib.colormaps["jet"](heat)
    colour[..., 3] = np.where(heat > 0, 0.25 + 0.5 * heat, 0.0)
    height, width = grey.shape
    figure, axes = plt.subplots(1, 2, figsize=(2 * 3.2 * width / max(height, width) + 1.0, 3.4 * height / max(height, width) + 0.6),
                                dpi=110, gridspec_kw={"wspace": 0.05})
    for ax in axes:
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
    shown = axes[1].imshow(colour)
    shown.set_cmap("jet")
    shown.set_clim(low, high)
    figure.colorbar(shown, ax=axes, fraction=0.04, pad=0.02).set_label(label, fontsize=7)
    axes[0].set_title("photo", fontsize=8)
    axes[1].set_title(title or "anomaly map", fontsize=8)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, bbox_inches="tight")
    plt.close(figure)
    return target
