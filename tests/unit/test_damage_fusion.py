"""Fusion, the threshold at a target false-positive rate, and its Clopper-Pearson bound."""
import numpy as np
import pytest
from scipy import stats

from echelon.models.damage import fusion as fz


@pytest.mark.parametrize("k,n", [(0, 100), (0, 3000), (1, 1000), (5, 400), (37, 2000)])
def test_clopper_pearson_matches_scipy_beta_quantile(k, n):
    assert fz.clopper_pearson_upper(k, n, 0.95) == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), rel=1e-12)
    assert fz.clopper_pearson_upper(k, n) >= k / n


def test_clopper_pearson_upper_bound_covers_the_true_rate():
    """Exact coverage: the probability, over every possible false-positive count, that the bound holds."""
    for p, n in [(0.001, 3000), (0.01, 300), (0.05, 60), (0.2, 25)]:
        k = np.arange(n + 1)
        holds = np.array([fz.clopper_pearson_upper(int(i), n) >= p for i in k])
        coverage = stats.binom.pmf(k, n, p)[holds].sum()
        assert coverage >= 0.95, (p, n, coverage)


def test_validation_size_needed_is_about_three_over_p():
    n = fz.validation_size_needed(0.001)
    assert 2900 < n < 3100
    assert fz.clopper_pearson_upper(0, n) <= 0.001 < fz.clopper_pearson_upper(0, n - 1)


@pytest.mark.parametrize("target", [0.001, 0.01, 0.05])
def test_threshold_meets_the_target_rate_on_validation_and_is_the_lowest_that_does(target):
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(5000, int), np.ones(200, int)]
    scores = np.r_[rng.normal(0, 1, 5000), rng.normal(3, 1, 200)]
    op = fz.threshold_at_fpr(scores, labels, target)
    negatives = scores[labels == 0]
    assert (negatives > op.threshold).mean() <= target
    assert op.fpr == (negatives > op.threshold).mean()
    lower = np.max(negatives[negatives < op.threshold])          # the next lower candidate threshold
    assert (negatives > lower).mean() > target
    assert op.recall == pytest.approx((scores[labels == 1] > op.threshold).mean())
    assert op.fpr_upper == pytest.approx(fz.clopper_pearson_upper(op.false_positives, 5000))


@pytest.mark.parametrize("n", [3000, 8000, 20000])
def test_a_bounded_threshold_keeps_the_upper_bound_within_the_target(n):
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(n, int), np.ones(100, int)]
    scores = np.r_[rng.normal(0, 1, n), rng.normal(3, 1, 100)]
    op = fz.threshold_at_fpr(scores, labels, 0.001, bounded=True)
    assert op.fpr_upper <= 0.001 < fz.clopper_pearson_upper(op.false_positives + 1, n)
    assert op.threshold >= fz.threshold_at_fpr(scores, labels, 0.001).threshold
    with pytest.raises(ValueError, match="2995 are needed"):
        fz.threshold_at_fpr(scores[-2000:], labels[-2000:], 0.001, bounded=True)


def test_threshold_needs_pristine_images():
    with pytest.raises(ValueError, match="no pristine images"):
        fz.threshold_at_fpr([0.5, 0.9], [1, 1])


def test_fusion_trusts_the_gallery_against_damage_like_artwork():
    """Artwork fools the classifier (high p) but matches the gallery (z ~ 0); broken sets fool the
    classifier the other way (low p) but stand out from the gallery. Fusion must rank both right."""
    rng = np.random.default_rng(2)
    n = 300
    p = np.r_[rng.uniform(0.01, 0.3, n), rng.uniform(0.9, 0.99, n // 3),   # pristine, artwork (pristine)
              rng.uniform(0.9, 0.999, n // 2), rng.uniform(0.05, 0.4, n // 3)]  # visible damage, broken sets
    z = np.r_[rng.normal(0, 1, n), rng.normal(0, 1, n // 3), rng.normal(2.5, 1, n // 2), rng.normal(4, 1, n // 3)]
    y = np.r_[np.zeros(n + n // 3, int), np.ones(n // 2 + n // 3, int)]
    fusion = fz.fit_fusion(p, z, np.zeros(len(p)), y)
    fused = fusion.score(p, z, np.zeros(len(p)))
    assert fz.auroc(fused, y) > max(fz.auroc(p, y), fz.auroc(z, y)) + 0.01
    artwork, broken = fused[n:n + n // 3], fused[-(n // 3):]
    assert np.median(broken) > np.quantile(artwork, 0.99)
    assert ((fused >= 0) & (fused <= 1)).all()


def test_fusion_reads_the_classifier_relative_to_the_products_own_pristine_look():
    """A design the classifier never saw can make it fire on every pristine image (reference logit 1,
    p ~ 0.73): relative to that reference such an image is as unremarkable as a usual pristine image."""
    fusion = fz.Fusion(weights=[1.2, 0.7, -0.1], bias=-2.0)
    usual = fusion.score([0.01], [0.0], [fz.logit(0.01)])
    fooled = fusion.score([0.73], [0.0], [fz.logit(0.73)])
    assert fooled == pytest.approx(usual)
    assert fusion.score([0.99], [0.0], [fz.logit(0.73)]) > fooled          # damage still raises it
    with pytest.raises(ValueError, match="reference is missing"):
        fusion.score([0.5], [0.0], [float("nan")])


def test_the_production_rule_is_bounded_unless_set_otherwise(monkeypatch):
    rng = np.random.default_rng(4)
    labels = np.r_[np.zeros(6000, int), np.ones(200, int)]
    scores = np.r_[rng.normal(0, 1, 6000), rng.normal(3, 1, 200)]
    monkeypatch.delenv("ECHELON_DAMAGE_THRESHOLD_RULE", raising=False)
    op = fz.operating_point(scores, labels, 0.001)
    assert op.rule == "bounded" and op.bound_met and op.fpr_upper <= 0.001
    assert op == fz.threshold_at_fpr(scores, labels, 0.001, bounded=True)
    monkeypatch.setenv("ECHELON_DAMAGE_THRESHOLD_RULE", "observed")
    observed = fz.operating_point(scores, labels, 0.001)
    assert observed.rule == "observed" and observed.fpr == 0.001 and not observed.bound_met   # 6 of 6,000 above
    assert observed.recall >= op.recall and observed.threshold < op.threshold
    monkeypatch.setenv("ECHELON_DAMAGE_THRESHOLD_RULE", "optimistic")
    with pytest.raises(ValueError, match="ECHELON_DAMAGE_THRESHOLD_RULE.*'optimistic'"):
        fz.operating_point(scores, labels, 0.001)


def test_a_set_too_small_for_the_bound_gets_zero_false_positives_and_says_the_bound_is_not_met():
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(1000, int), np.ones(50, int)]
    scores = np.r_[rng.normal(0, 1, 1000), rng.normal(3, 1, 50)]
    op = fz.operating_point(scores, labels, 0.001, rule="bounded")
    assert op.threshold == scores[labels == 0].max() and op.false_positives == 0
    assert op.target_fpr == 0.001 and not op.bound_met and op.fpr_upper > 0.001
    assert op.needed_negatives == fz.validation_size_needed(0.001) > op.negatives
