"""Calibration that transfers: the fusion and the threshold are fitted on images that are in neither the
supervised training rows nor any gallery, and a held-back slice checks the operating point before a
model may be promoted.

Why (issue 21): a user who builds the gallery from the training set's pristine images (the natural
choice) and lets `damage train` take its calibration rows out of that same training manifest calibrated
on images whose anomaly distance was zero, since each was in its own product's memory bank. The
threshold was set on scores no new image can reach, and 94% of new pristine images were sidelined.

Images are identified by their resolved file path (two manifests naming the same file are the same
image, whatever their image_ids). The rules:
- an explicit validation manifest that shares images with the gallery is refused, naming them;
- calibration rows drawn from the training manifest are taken out of the gallery (each product keeps
  the rest of its gallery; one left with fewer than `MIN_GALLERY` images is refused by name);
- a held-back slice of the training rows, used for nothing else, must show a pristine sideline rate
  consistent with the bound the validation set claims (`holdback_check`), else the model is marked
  unfit and is not promoted.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from echelon.models.damage.images import ManifestError

log = logging.getLogger(__name__)
MIN_GALLERY = 3       # gallery images a product needs (leave-one-out z-scale, see gallery.from_features)
HOLDBACK_SHARE = 0.3  # of the calibration rows drawn from the training manifest, held back for the check


class CalibrationOverlap(ManifestError):
    """Calibration or validation images that are also gallery images: their anomaly distance is zero."""


def split(frame: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded split stratified by label: (fit, held out)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(frame), dtype=bool)
    for _, idx in frame.groupby("label").indices.items():
        held[rng.permutation(idx)[: int(round(share * len(idx)))]] = True
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def overlap(rows: pd.DataFrame, gallery: pd.DataFrame) -> pd.DataFrame:
    """The rows of `rows` whose file is also in `gallery` (both validated: they carry `file`)."""
    return rows[rows["file"].isin(set(gallery["file"]))]


def refuse_overlap(rows: pd.DataFrame, gallery: pd.DataFrame, name: str) -> None:
    shared = overlap(rows, gallery)
    if len(shared):
        examples = ", ".join(f"{r.image_id} ({r.file})" for r in shared.head(3).itertuples())
        raise CalibrationOverlap(
            f"{name} manifest: {len(shared)} of its {len(rows)} images are also gallery images, e.g. {examples}; "
            f"a gallery image is at distance zero from its own bank, so a threshold set on it sidelines new "
            f"pristine images: take them out of the gallery or out of the {name} manifest")


def without(gallery: pd.DataFrame, taken: pd.DataFrame, minimum: int = MIN_GALLERY) -> pd.DataFrame:
    """The gallery rows minus the images in `taken` (calibration rows drawn from the training manifest).
    A product left with fewer than `minimum` images is refused by name: its gallery is too small."""
    kept = gallery[~gallery["file"].isin(set(taken["file"]))].reset_index(drop=True)
    if len(kept) < len(gallery):
        log.warning("%d gallery images are also calibration rows of the training manifest: taken out of the "
                    "gallery so that the fusion and the threshold are fitted on images it has not seen",
                    len(gallery) - len(kept))
    before, after = gallery["item_id"].value_counts(), kept["item_id"].value_counts()
    short = sorted(item for item in before.index if after.get(item, 0) < minimum)
    if short:
        raise CalibrationOverlap(
            f"gallery: products {short[:5]}{' ...' if len(short) > 5 else ''} keep fewer than {minimum} images "
            f"once the training manifest's calibration rows are taken out of it (gallery and training manifest "
            f"share {len(gallery) - len(kept)} images): add pristine images to their gallery, or pass a "
            f"--valid manifest whose images are in no gallery")
    return kept


@dataclass
class Holdback:
    """The operating point checked on a held-back slice (pristine images only count)."""
    negatives: int
    sidelined: int
    rate: float
    lower: float          # one-sided Clopper-Pearson lower bound of the slice's sideline rate
    bound: float          # the false-positive rate the model claims (max of the target and its upper bound)
    passed: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def holdback_check(scores, labels, threshold: float, bound: float, confidence: float = 0.95) -> Holdback:
    """Does the pristine sideline rate on a held-back slice agree with the claimed bound?

    Fails when the slice shows, at `confidence`, a rate above `bound` (its Clopper-Pearson lower bound
    exceeds it): a small slice cannot prove the bound holds, but it does catch an operating point that
    does not transfer (the issue's 94%). A slice without pristine images cannot check anything: fails."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)
    pristine = scores[labels == 0]
    n, k = len(pristine), int((pristine > threshold).sum())
    if n == 0:
        return Holdback(0, 0, float("nan"), float("nan"), bound, False,
                        "the held-back slice has no pristine images: the operating point cannot be checked")
    lower = float(stats.beta.ppf(1 - confidence, k, n - k + 1)) if k > 0 else 0.0
    passed = lower <= bound
    verdict = "holds" if passed else "does NOT hold"
    message = (f"operating point {verdict} on the held-back slice: {k} of {n} pristine images sidelined "
               f"({k / n:.2%}; {confidence:.0%} lower bound {lower:.2%}) against the claimed bound {bound:.2%}")
    if not passed:
        message += (": the threshold was set on images that do not look like new ones (gallery images in the "
                    "calibration set?); the model is not promoted")
    return Holdback(n, k, k / n, lower, float(bound), passed, message)
