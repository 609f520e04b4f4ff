"""fairbook.stats: paired t-tests (scipy cross-check), bootstrap intervals, seeds."""
import numpy as np
import pytest
from scipy import stats

from fairbook import stats as S

# five paired values; d = a - b = [0.02, 0.01, 0.03, -0.01, 0.02]
A = np.array([0.12, 0.10, 0.15, 0.09, 0.11])
B = np.array([0.10, 0.09, 0.12, 0.10, 0.09])


def test_paired_ttest_by_hand():
    d = A - B
    # HBR eqs. C1-C2: t = mean(d) / (s_d / sqrt(n)), s_d with n - 1
    t = d.mean() / (d.std(ddof=1) / np.sqrt(d.size))
    res = S.paired_ttest(A, B)
    assert res.statistic == pytest.approx(t)
    assert res.pvalue == pytest.approx(stats.t.sf(t, d.size - 1))
    assert res.mean_diff == pytest.approx(0.014)
    assert res.n == 5 and res.alternative == "greater"


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("seed", [0, 1])
def test_paired_ttest_matches_scipy(alternative, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.1, 0.02, 16)
    b = a + rng.normal(0.005, 0.01, 16)
    ref = stats.ttest_rel(a, b, alternative=alternative)
    res = S.paired_ttest(a, b, alternative)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert res.mean_diff == pytest.approx(np.mean(a - b))


def test_paired_ttest_direction():
    g, l, two = (S.paired_ttest(A, B, alt) for alt in ("greater", "less", "two-sided"))
    assert g.statistic > 0 and g.pvalue < 0.5 < l.pvalue
    assert g.pvalue + l.pvalue == pytest.approx(1.0)
    assert two.pvalue == pytest.approx(2 * min(g.pvalue, l.pvalue))
    # swapping a and b flips the sign
    assert S.paired_ttest(B, A).statistic == pytest.approx(-g.statistic)


def test_paired_ttest_validation():
    with pytest.raises(ValueError, match="same length"):
        S.paired_ttest([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        S.paired_ttest([1], [2])
    with pytest.raises(ValueError, match="NaN"):
        S.paired_ttest([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="alternative"):
        S.paired_ttest(A, B, "bigger")


# --- bootstrap ------------------------------------------------------------------------------------------
X = np.random.default_rng(11).normal(1.0, 0.5, 40)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_bootstrap_matches_scipy_and_is_reproducible(method):
    ci = S.bootstrap_ci(X, n_resamples=2000, seed=3, method=method)
    ref = stats.bootstrap((X,), np.mean, n_resamples=2000, method=method, rng=np.random.default_rng(3))
    assert ci.low == pytest.approx(ref.confidence_interval.low)
    assert ci.high == pytest.approx(ref.confidence_interval.high)
    assert ci.standard_error == pytest.approx(ref.standard_error)
    assert ci.estimate == pytest.approx(X.mean()) and ci.low < ci.estimate < ci.high
    assert ci.method == method and ci.n == 40 and ci.level == 0.95
    assert S.bootstrap_ci(X, n_resamples=2000, seed=3, method=method) == ci
    assert S.bootstrap_ci(X, n_resamples=2000, seed=4, method=method) != ci


def test_bootstrap_percentile_interval_by_hand():
    # the percentile interval is the 2.5% / 97.5% quantile of the bootstrap means drawn with the same rng
    ci = S.bootstrap_ci(X, n_resamples=1000, seed=5, method="percentile")
    ref = stats.bootstrap((X,), np.mean, n_resamples=1000, method="percentile", rng=np.random.default_rng(5))
    dist = ref.bootstrap_distribution
    assert ci.low == pytest.approx(np.percentile(dist, 2.5))
    assert ci.high == pytest.approx(np.percentile(dist, 97.5))


def test_bootstrap_level_and_stat():
    narrow = S.bootstrap_ci(X, level=0.5, n_resamples=2000, seed=0)
    wide = S.bootstrap_ci(X, level=0.99, n_resamples=2000, seed=0)
    assert wide.low < narrow.low < narrow.high < wide.high
    # a statistic without an axis argument works (called once per resample)
    med = S.bootstrap_ci(X, stat=lambda v: float(np.median(v)), n_resamples=300, seed=0, method="percentile")
    assert med.estimate == pytest.approx(np.median(X)) and med.low <= med.estimate <= med.high
    with pytest.raises(ValueError, match="method"):
        S.bootstrap_ci(X, method="studentized")
    with pytest.raises(ValueError, match="level"):
        S.bootstrap_ci(X, level=95)
    with pytest.raises(ValueError, match="at least 2"):
        S.bootstrap_ci([1.0])


def test_paired_bootstrap_is_bootstrap_of_differences():
    rng = np.random.default_rng(2)
    a = rng.normal(0.2, 0.05, 16)
    b = a - 0.02 + rng.normal(0, 0.005, 16)
    ci = S.paired_bootstrap_ci(a, b, n_resamples=2000, seed=1)
    assert ci == S.bootstrap_ci(a - b, n_resamples=2000, seed=1)
    assert ci.low > 0 and ci.estimate == pytest.approx(np.mean(a - b))
    with pytest.raises(ValueError, match="same length"):
        S.paired_bootstrap_ci(a, b[:-1])


# --- seeds -----------------------------------------------------------------------------------------------
def test_seeds_from_seedsequence():
    s = S.seeds(2024, 8)
    assert len(s) == 8 and len(set(s)) == 8 and all(isinstance(v, int) and 0 <= v < 2**32 for v in s)
    assert s == S.seeds(2024, 8)                               # deterministic
    assert S.seeds(2024, 3) == s[:3]                           # prefix-stable
    assert S.seeds(2025, 8) != s
    ref = [int(c.generate_state(1, dtype=np.uint32)[0]) for c in np.random.SeedSequence(2024).spawn(8)]
    assert s == ref
    assert S.seeds(0, 0) == []
    with pytest.raises(ValueError):
        S.seeds(-1, 3)
