"""fairbook.mime.curve against MIME (Chari et al., ECCV 2022) §4.2 on the model of Section 3: the MIME
curve (Figs. 5-6b), the Table 2 statistics with their split-sample and sign-flip versions, the
start-free learner, what a gain is made of, and the existence map.

Expected values are computed independently of the module (by hand or with scipy); Monte Carlo checks
use fixed seeds.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fairbook import mime
from fairbook.claims import holm
from fairbook.mime import (Group, erm_threshold, existence_map, gain_by_start, mime_curve, mime_summary,
                           theorem1, theorem2, theorem3)

Phi = stats.norm.cdf
MAJOR = Group.make(-1, 1, 0.6)


def gauss_error(mu1, mu2, sigma, prior, d):
    return prior * Phi((d - mu2) / sigma) + (1 - prior) * (1 - Phi((d - mu1) / sigma))


# =============================================================================================
# 7. mime_curve
# =============================================================================================
CURVE_KW = dict(n_train=40, eta=2.0, decay=1.0, epochs=20, d0=-2.0)


def test_mime_curve_structure_and_accuracies():
    major = Group.make(-1, 1, 0.6, prior=0.4)
    minor = Group.make(-0.5, 0.5, 0.6)
    betas = [0, 0.25, 1]
    c = mime_curve(major, minor, n_train=8, betas=betas, trials=6, eta=0.5, epochs=2, d0=0.3,
                   rng=np.random.default_rng(31))
    assert list(c.columns) == ["beta", "trial", "threshold", "majority_acc", "minority_acc", "d0"]
    assert (c.d0 == 0.3).all()
    assert len(c) == len(betas) * 6
    assert sorted(c.beta.unique()) == [0.0, 0.25, 1.0]
    assert all((c.beta == b).sum() == 6 for b in betas)
    assert all(sorted(c.trial[c.beta == b]) == list(range(6)) for b in betas)
    for col in ("majority_acc", "minority_acc"):
        assert c[col].between(0, 1).all()
    np.testing.assert_allclose(c.majority_acc, 1 - gauss_error(-1, 1, 0.6, 0.4, c.threshold), atol=1e-12)
    np.testing.assert_allclose(c.minority_acc, 1 - gauss_error(-0.5, 0.5, 0.6, 0.5, c.threshold), atol=1e-12)
    # thresholds are perceptron outputs: d0 + sum of the fixed steps... (decay 0.5 default):
    assert c.threshold.nunique() > 1


def test_mime_curve_reproducible_and_beta0_independent_of_minority():
    major = MAJOR
    minor_a, minor_b = Group.make(-0.5, 0.5, 0.6), Group.make(1.0, 3.0, 0.2, prior=0.3)
    kw = dict(n_train=12, betas=[0, 0.5, 1], trials=15, eta=0.5, epochs=3, d0=-1.0)
    a1 = mime_curve(major, minor_a, rng=np.random.default_rng(32), **kw)
    a2 = mime_curve(major, minor_a, rng=np.random.default_rng(32), **kw)
    pd.testing.assert_frame_equal(a1, a2)
    a3 = mime_curve(major, minor_a, rng=np.random.default_rng(33), **kw)
    assert not np.allclose(a1.threshold, a3.threshold)
    b1 = mime_curve(major, minor_b, rng=np.random.default_rng(32), **kw)
    at0, bt0 = a1[a1.beta == 0].reset_index(drop=True), b1[b1.beta == 0].reset_index(drop=True)
    np.testing.assert_array_equal(at0.threshold, bt0.threshold)
    np.testing.assert_array_equal(at0.majority_acc, bt0.majority_acc)
    # ...while beta = 1 rows do depend on the minority
    assert not np.allclose(a1[a1.beta == 1].threshold, b1[b1.beta == 1].threshold)


def _paired_gain(curve, beta):
    w = curve.pivot(index="trial", columns="beta", values="majority_acc")
    g = w[beta] - w[0.0]
    return g.mean(), g.std(ddof=1) / np.sqrt(len(g))


def test_mime_curve_overlapping_minority_helps_the_majority():
    minor = Group.make(-0.5, 0.5, 0.6)
    c = mime_curve(MAJOR, minor, betas=[0, 0.5, 1], trials=200, rng=np.random.default_rng(34), **CURVE_KW)
    gain, se = _paired_gain(c, 1.0)
    assert gain > 3 * se and gain > 0.002, (gain, se)
    acc = c.groupby("beta").majority_acc.mean()
    assert acc[1.0] > acc[0.0]
    assert acc.max() <= 1 - MAJOR.overlap() + 1e-12  # nothing beats the Bayes threshold


def test_mime_curve_large_domain_gap_hurts_the_majority():
    minor = Group.make(1.0, 2.0, 0.6)  # shifted by +1.5
    c = mime_curve(MAJOR, minor, betas=[0, 0.5, 1], trials=200, rng=np.random.default_rng(34), **CURVE_KW)
    gain, se = _paired_gain(c, 1.0)
    assert gain < -0.1 and gain < -10 * se, (gain, se)
    acc = c.groupby("beta").majority_acc.mean()
    assert acc[0.0] > acc[0.5] > acc[1.0]
    assert c.groupby("beta").minority_acc.mean()[1.0] > c.groupby("beta").minority_acc.mean()[0.0]


# =============================================================================================
# 8. mime_summary
# =============================================================================================
HAND_ACC = {  # trial: (beta 0, beta 0.5, beta 1)
    0: (0.70, 0.80, 0.70),  # even
    1: (0.60, 0.62, 0.85),  # odd
    2: (0.50, 0.58, 0.45),  # even
    3: (0.80, 0.79, 0.95),  # odd
    4: (0.65, 0.65, 0.60),  # even: best gain exactly 0 -> not a trial "with gain"
    5: (0.55, 0.60, 0.52),  # odd
}


def _hand_curve():
    rows = [{"beta": b, "trial": t, "threshold": 0.0, "majority_acc": a, "minority_acc": 1 - a}
            for t, accs in HAND_ACC.items() for b, a in zip((0.0, 0.5, 1.0), accs)]
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)  # shuffled


def test_mime_summary_hand_computed():
    s = mime_summary(_hand_curve())
    # best gains per trial: .10 .25 .08 .15 0 .05
    assert s["trials"] == 6
    assert s["trials_with_gain"] == 5
    assert s["mean_best_gain_pp"] == pytest.approx(100 * 0.63 / 6, abs=1e-9)
    # even trials (0, 2, 4): beta 0.5 mean .6767 > beta 1 mean .5833 -> beta* = 0.5, although
    # on the odd trials and on all trials together beta = 1 has the higher mean
    assert s["beta_star"] == 0.5
    assert s["heldout_trials"] == 3
    odd_gain = np.array([0.62 - 0.60, 0.79 - 0.80, 0.60 - 0.55])  # .02 -.01 .05
    assert s["heldout_gain_pp"] == pytest.approx(2.0, abs=1e-9)
    assert s["heldout_gain_se_pp"] == pytest.approx(100 * 0.03 / np.sqrt(3), abs=1e-9)
    ref = stats.ttest_rel([0.62, 0.79, 0.60], [0.60, 0.80, 0.55], alternative="greater").pvalue
    assert s["p_value"] == pytest.approx(ref, rel=1e-12)
    t = odd_gain.mean() / (odd_gain.std(ddof=1) / np.sqrt(3))  # by hand: t = 2/sqrt(3), df = 2
    assert t == pytest.approx(2 / np.sqrt(3))
    assert s["p_value"] == pytest.approx(stats.t.sf(t, 2), rel=1e-9)
    # the reported accuracies come from the held-out (odd) trials only, like the gain
    assert s["acc_beta0"] == pytest.approx((0.60 + 0.80 + 0.55) / 3, abs=1e-12)
    assert s["acc_beta_star"] == pytest.approx((0.62 + 0.79 + 0.60) / 3, abs=1e-12)


def test_mime_summary_other_column_and_errors():
    curve = _hand_curve()
    s = mime_summary(curve, acc="minority_acc")  # minority acc = 1 - majority acc
    assert s["beta_star"] == 1.0  # even trials: 1 - .5833 > 1 - .6767
    assert s["heldout_gain_pp"] == pytest.approx(100 * np.mean([0.60 - 0.85, 0.80 - 0.95, 0.55 - 0.52]))
    with pytest.raises(ValueError):
        mime_summary(curve[curve.beta != 0.0])
    with pytest.raises(ValueError):
        mime_summary(curve[curve.beta == 0.0])


# =============================================================================================
# 9. existence_map
# =============================================================================================
def test_existence_map_tiny_grid():
    major = MAJOR
    Delta, eta = 0.12, 0.1
    curve = dict(n_train=10, betas=[0, 0.5, 1], trials=6, eta=0.5, epochs=2, d0=0.0)
    seps, gaps = [0.5, 1.5], [0.0, 0.3]
    em = existence_map(major, seps, gaps, Delta, eta, pushes=500, curve=curve,
                       rng=np.random.default_rng(41))
    assert list(em.columns) == ["separation", "gap", "overlap_ratio", "delta", "theorem3", "theorem1_2",
                                "push_advantage", "push_mime", "curve_gain_pp", "curve_p_value",
                                "curve_beta_star", "curve_p_holm", "curve_mime"]
    # a cell counts as an end-to-end gain only after Holm over the map's cells
    np.testing.assert_allclose(em.curve_p_holm, holm(em.curve_p_value.fillna(1.0)))
    assert (em.curve_mime == ((em.curve_p_holm < 0.05) & (em.curve_gain_pp > 0))).all()
    assert len(em) == 4
    assert sorted(zip(em.separation, em.gap)) == [(0.5, 0.0), (0.5, 0.3), (1.5, 0.0), (1.5, 0.3)]
    O_major = Phi(-1 / 0.6)
    for _, row in em.iterrows():
        O_minor = Phi(-row.separation / 0.6)
        assert row.overlap_ratio == pytest.approx(O_major / O_minor, rel=1e-7)
        assert (row.overlap_ratio < 1) == (row.separation < 1.0)  # majority's separation is 1
        assert row.delta == pytest.approx(abs(row.gap), abs=1e-9)
        minor = Group.make(row.gap - row.separation, row.gap + row.separation, 0.6)
        assert row.theorem3 == theorem3(major, minor, Delta, eta).predicts_mime
        if row.gap == 0:
            assert row.theorem1_2 == theorem1(major, minor, Delta, eta).predicts_mime
        else:
            assert row.theorem1_2 == all(theorem2(major, minor, Delta, s, eta).predicts_mime for s in (-1, 1))
        assert row.push_mime == (row.push_advantage > 0)
        assert row.curve_beta_star in (0.5, 1.0)
        assert np.isnan(row.curve_p_value) or 0 <= row.curve_p_value <= 1  # NaN: all paired gains equal
    # the low-separation, no-gap minority is the textbook MIME case of Theorems 1 and 3
    first = em[(em.separation == 0.5) & (em.gap == 0.0)].iloc[0]
    assert first.theorem3 and first.theorem1_2
    last = em[(em.separation == 1.5) & (em.gap == 0.0)].iloc[0]
    assert not last.theorem3 and not last.theorem1_2


# =============================================================================================
# the MIME curve taken apart: a start-free learner, symmetric starts, bias and spread
# =============================================================================================
def test_erm_threshold_hand_computed_and_minimises_training_error():
    # sorted x: 0.1(1) 0.3(1) 0.5(2) 0.7(1) 0.9(2): the cut 0.4 makes one error (0.7), so does 0.8 (0.5)
    x = np.array([[0.5, 0.1, 0.9, 0.3, 0.7]])
    y = np.array([[2, 1, 2, 1, 1]])
    assert erm_threshold(x, y)[0] == pytest.approx(0.4)            # lower median of the tied cuts
    sep = erm_threshold(np.array([[0.0, 1.0, 2.0, 3.0]]), np.array([[1, 1, 2, 2]]))
    assert sep[0] == pytest.approx(1.5)                             # separable: the gap's midpoint
    rng = np.random.default_rng(3)
    xs, ys = MAJOR.sample((200, 15), rng)
    d = erm_threshold(xs, ys)
    err = lambda t: ((ys == 2) & (xs <= t[:, None])).sum(1) + ((ys == 1) & (xs > t[:, None])).sum(1)
    for shift in np.linspace(-2, 2, 41):                            # no other threshold does better
        assert (err(d) <= err(np.full(200, shift))).all()


def test_start_free_learner_does_not_depend_on_start_or_step_and_perceptron_does():
    minor = Group.make(-0.5, 0.5, 0.6)
    kw = dict(n_train=30, betas=[0, 0.5, 1], trials=40, epochs=5, decay=1.0, learner="erm")
    a = mime_curve(MAJOR, minor, eta=2.0, d0=-2.0, rng=np.random.default_rng(9), **kw)
    b = mime_curve(MAJOR, minor, eta=0.1, d0=np.linspace(-3, 3, 40), rng=np.random.default_rng(9), **kw)
    pd.testing.assert_frame_equal(a, b)
    kw["learner"] = "perceptron"
    p1 = mime_curve(MAJOR, minor, eta=2.0, d0=-2.0, rng=np.random.default_rng(9), **kw)
    p2 = mime_curve(MAJOR, minor, eta=2.0, d0=2.0, rng=np.random.default_rng(9), **kw)
    assert not np.allclose(p1.threshold, p2.threshold)
    with pytest.raises(ValueError, match="learner got 'svm'"):
        mime_curve(MAJOR, minor, eta=1.0, d0=0.0, rng=np.random.default_rng(9), **{**kw, "learner": "svm"})
    with pytest.raises(ValueError, match="d0 got shape"):
        mime_curve(MAJOR, minor, eta=1.0, d0=np.zeros(3), rng=np.random.default_rng(9), **kw)


def test_symmetric_starts_and_threshold_decomposition():
    starts = mime.symmetric_starts(MAJOR, 4000, 2.0, np.random.default_rng(1))
    assert starts.min() >= -2.0 and starts.max() <= 2.0 and abs(starts.mean()) < 0.1
    curve = pd.DataFrame({"beta": [0.0, 0.0, 1.0, 1.0], "trial": [0, 1, 0, 1],
                          "threshold": [0.1, 0.3, -0.1, 0.1], "majority_acc": [0.9, 0.8, 0.95, 0.9]})
    t = mime.threshold_decomposition(curve, MAJOR).set_index("beta")   # MAJOR's ideal threshold is 0
    assert t.loc[0.0, "bias"] == pytest.approx(0.2) and t.loc[1.0, "bias"] == pytest.approx(0.0)
    assert t.loc[0.0, "sd"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert t.loc[0.0, "rmse"] == pytest.approx(np.sqrt((0.01 + 0.09) / 2))
    assert t.loc[1.0, "majority_acc"] == pytest.approx(0.925)


def test_gain_by_start_hand_computed_and_needs_starts():
    d_star = MAJOR.ideal_threshold()
    # four trials: starts at offsets -2, -1, 1, 2; gains (beta 1 - beta 0) 4, 2, 2, 4 pp
    rows = []
    for t, (off, gain) in enumerate(((-2, 4), (-1, 2), (1, 2), (2, 4))):
        rows += [{"beta": 0.0, "trial": t, "majority_acc": 0.5, "d0": d_star + off},
                 {"beta": 1.0, "trial": t, "majority_acc": 0.5 + gain / 100, "d0": d_star + off}]
    out = gain_by_start(pd.DataFrame(rows), MAJOR, bins=2)
    np.testing.assert_allclose(out.offset, [-1.5, 1.5])
    np.testing.assert_allclose(out.gain_pp, [3.0, 3.0])
    np.testing.assert_allclose(out.se_pp, [1.0, 1.0])
    assert (out.ci_low < 3).all() and (out.ci_high > 3).all() and list(out.n) == [2, 2]
    erm = mime_curve(MAJOR, MAJOR, n_train=10, betas=[0, 1], trials=4, eta=0.5, epochs=2, d0=0.0,
                     rng=np.random.default_rng(0), learner="erm")
    with pytest.raises(ValueError, match="starts"):
        gain_by_start(erm, MAJOR)
    per = mime_curve(MAJOR, MAJOR, n_train=10, betas=[0, 1], trials=4, eta=0.5, epochs=2,
                     d0=np.array([0.1, 0.2, 0.3, 0.4]), rng=np.random.default_rng(0))
    np.testing.assert_allclose(per[per.beta == 1].d0, [0.1, 0.2, 0.3, 0.4])
