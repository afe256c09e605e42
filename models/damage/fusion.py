"""Fusion of the supervised and gallery scores, and the threshold at a target false-positive rate.

The fused score is a logistic regression on [s, z_anomaly, their product], fitted on a held-out
calibration set: the data decide how much to trust each signal, and the product term lets "the
classifier fires but the product looks as it always does" (damage-like artwork) count for less. Here
s = logit(p_supervised) - reference, the classifier's logit relative to its median logit on the
product's own pristine gallery images (gallery.Gallery.reference): a calibration set can only hold
designs the classifier was trained on, so it cannot teach the fusion to distrust the classifier on a
design it never saw; the reference does that per product (a redesign or new product whose printed
artwork makes the classifier fire on every pristine image has a high reference).

The threshold is picked on a validation set for a target false-positive rate. Two rules (`RULES`):
"observed" keeps at most `target` of the validation pristine images above it, which only says the rate
*on that set* is <= target (at 0.1% and 3,000 images the 95% bound was 0.26%, and held-out pristine came
out 0.11%); "bounded", the default (ECHELON_DAMAGE_THRESHOLD_RULE), keeps the one-sided Clopper-Pearson
upper bound <= target, a claim about the rate in production at the price of some recall. Either way the
bound, the recall and the validation size the target needs are reported side by side.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from echelon.settings import get_settings

log = logging.getLogger(__name__)
RULES = ("bounded", "observed")


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _features(p_supervised, z_anomaly, reference) -> np.ndarray:
    reference = np.asarray(reference, dtype=np.float64)
    if np.isnan(reference).any():
        raise ValueError("a product's classifier reference is missing (NaN): galleries need one (see gallery.py)")
    s = logit(p_supervised) - reference
    a = np.clip(np.asarray(z_anomaly, dtype=np.float64), -10, 50)
    return np.column_stack([s, a, s * np.tanh(a / 5)])


@dataclass
class Fusion:
    weights: list[float]
    bias: float

    def score(self, p_supervised, z_anomaly, reference) -> np.ndarray:
        """The fused damage probability: higher means more likely damaged. `reference`: per image, the
        classifier's median logit on its product's gallery."""
        logits = _features(p_supervised, z_anomaly, reference) @ np.asarray(self.weights) + self.bias
        return 1 / (1 + np.exp(-logits))

    def to_dict(self) -> dict:
        return asdict(self)


def fit_fusion(p_supervised, z_anomaly, reference, labels, c: float = 1.0) -> Fusion:
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, dtype=int)
    if len(set(labels)) < 2:
        raise ValueError("fusion needs both damaged and pristine images in the calibration set")
    model = LogisticRegression(C=c, max_iter=1000).fit(_features(p_supervised, z_anomaly, reference), labels)
    return Fusion(weights=[float(w) for w in model.coef_[0]], bias=float(model.intercept_[0]))


def clopper_pearson_upper(failures: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a binomial rate after `failures` in `trials`."""
    if trials <= 0:
        return 1.0
    if failures >= trials:
        return 1.0
    return float(stats.beta.ppf(confidence, failures + 1, trials - failures))


def validation_size_needed(target: float, confidence: float = 0.95) -> int:
    """Pristine images needed so that zero false positives bounds the rate below `target` (~3/target)."""
    return int(math.ceil(math.log(1 - confidence) / math.log(1 - target)))


@dataclass
class Operating:
    threshold: float
    target_fpr: float
    fpr: float              # observed on the validation set
    fpr_upper: float        # one-sided Clopper-Pearson bound at `confidence`
    confidence: float
    recall: float           # of the damaged validation images
    negatives: int
    positives: int
    false_positives: int
    needed_negatives: int   # validation size that could support the target with zero false positives
    rule: str = "observed"  # how the threshold was chosen (see RULES); older model folders: observed
    bound_met: bool = False  # fpr_upper <= target_fpr: the target holds with `confidence`, not just on this set

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_at_fpr(scores, labels, target: float = 0.001, confidence: float = 0.95,
                     bounded: bool = False) -> Operating:
    """The lowest threshold whose false-positive rate on the validation pristine images is <= target;
    with `bounded`, the lowest whose Clopper-Pearson upper bound is <= target (a claim about the rate in
    production, not just on this set: it needs about 3/target pristine images, else a ValueError).

    Decision rule: sideline when score > threshold. With n pristine scores, at most k may lie above the
    threshold (k = floor(target*n), or the largest k whose bound is <= target), so it is placed at the
    (k+1)-th largest pristine score."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)
    n = int((labels == 0).sum())
    if n == 0:
        raise ValueError("no pristine images in the validation set: a false-positive rate cannot be set")
    allowed = int(math.floor(target * n + 1e-9))
    if bounded:
        if clopper_pearson_upper(0, n, confidence) > target:
            raise ValueError(f"{n} pristine validation images cannot bound the false-positive rate "
                             f"below {target:g} at {confidence:.0%} confidence; "
                             f"{validation_size_needed(target, confidence)} are needed")
        while allowed > 0 and clopper_pearson_upper(allowed, n, confidence) > target:
            allowed -= 1
    return _operating(scores, labels, allowed, target, confidence, "bounded" if bounded else "observed")


def _operating(scores, labels, allowed: int, target: float, confidence: float, rule: str) -> Operating:
    """The operating point with at most `allowed` validation pristine images above the threshold."""
    negatives = np.sort(scores[labels == 0])[::-1]
    threshold = float(negatives[min(allowed, len(negatives) - 1)])
    false_positives = int((negatives > threshold).sum())
    upper = clopper_pearson_upper(false_positives, len(negatives), confidence)
    positives = scores[labels == 1]
    return Operating(threshold=threshold, target_fpr=target, fpr=false_positives / len(negatives),
                     fpr_upper=upper, confidence=confidence,
                     recall=float((positives > threshold).mean()) if len(positives) else float("nan"),
                     negatives=len(negatives), positives=len(positives), false_positives=false_positives,
                     needed_negatives=validation_size_needed(target, confidence), rule=rule,
                     bound_met=upper <= target)


def threshold_rule() -> str:
    return get_settings().damage.threshold_rule


def operating_point(scores, labels, target: float = 0.001, rule: str | None = None,
                    confidence: float = 0.95) -> Operating:
    """The production threshold: `rule` (default threshold_rule(), i.e. "bounded") at `target`.

    A validation set too small to bound the rate (fewer than validation_size_needed pristine images)
    gets the strictest threshold it supports, zero validation false positives, with bound_met False and
    a warning naming the size needed: the model still works, and what it cannot claim is on record."""
    rule = rule or threshold_rule()
    if rule not in RULES:
        raise ValueError(f"threshold rule (ECHELON_DAMAGE_THRESHOLD_RULE, --threshold-rule) must be one of {RULES}, "
                         f"got {rule!r}")
    if rule == "observed":
        return threshold_at_fpr(scores, labels, target, confidence)
    try:
        return threshold_at_fpr(scores, labels, target, confidence, bounded=True)
    except ValueError as error:
        if "are needed" not in str(error):
            raise
        log.warning("%s: using zero validation false positives, a rate this set cannot bound", error)
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)
        return _operating(scores, labels, 0, target, confidence, "bounded")


def recall_at_fpr(scores, labels, target: float) -> float:
    return threshold_at_fpr(scores, labels, target).recall


def auroc(scores, labels) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=int)
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")
