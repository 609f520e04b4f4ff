"""fairbook.hbr.design: the seeds of HBR appendix B and the oriented paired t-test of appendix C
(moved here from tests/core/test_stats.py with the functions)."""
import numpy as np
import pytest
from scipy import stats

from fairbook.hbr import design as D


def test_improvement_ttest_positive_t_means_improvement():
    base = np.array([0.20, 0.22, 0.19, 0.21, 0.23, 0.20])
    gap_after = base - np.array([0.02, 0.01, 0.03, 0.02, 0.01, 0.02])   # Δ metric shrinks: fairer
    res = D.improvement_ttest(base, gap_after)
    assert res.statistic > 0 and res.pvalue < 0.01 and res.mean_diff == pytest.approx(0.0183333, rel=1e-4)
    assert res.statistic == pytest.approx(stats.ttest_rel(base, gap_after).statistic)   # the code's call
    # average recall (higher is better) rising is also an improvement
    rec_base = np.array([0.90, 0.91, 0.89, 0.92])
    rec_after = rec_base + np.array([0.01, 0.02, 0.01, 0.015])
    assert D.improvement_ttest(rec_base, rec_after, lower_is_better=False).statistic > 0
    # a worsening gives negative t (HBR appendix C: "negative values of t indicate ... worsened")
    assert D.improvement_ttest(gap_after, base).statistic < 0
    # the code's two-sided p-value
    two = D.improvement_ttest(base, gap_after, alternative="two-sided")
    assert two.pvalue == pytest.approx(stats.ttest_rel(base, gap_after).pvalue)


def test_seeds_appendix_b():
    assert D.model_seed(0, 0) == 42
    assert D.model_seed(0, 1) == 84
    assert D.model_seed(1, 0) == 420_042
    assert D.model_seed(3, 3) == 42 + 3 * 420_000 + 3 * 42
    assert [D.prune_seed(i) for i in range(4)] == [0, 42, 84, 126]
    assert [D.resample_seed(i) for i in range(4)] == [0, 42, 84, 126]
    tab = D.seed_table()
    assert len(tab) == 16 and tab["model_seed"].is_unique
    assert tab[["i", "j"]].values.tolist() == [[i, j] for i in range(4) for j in range(4)]
    assert (tab["prune_seed"] == 42 * tab["i"]).all()


def test_model_seeds_distinct_and_validated():
    grid = [D.model_seed(i, j) for i in range(50) for j in range(0, 10_000, 7)]
    assert len(set(grid)) == len(grid)
    for bad in [(-1, 0), (0, -1), (0, 10_000), (0.5, 1), (True, 0)]:
        with pytest.raises(ValueError):
            D.model_seed(*bad)
    with pytest.raises(ValueError):
        D.prune_seed(-1)
