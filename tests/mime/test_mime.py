"""fairbook.mime.theory against MIME (Chari et al., ECCV 2022) Section 3: eq. 4, 5, 8, 10-15.

Every expected value here is computed independently of the module: by hand, from the paper's
closed forms, or with scipy (norm.cdf, integrate.quad, optimize.brentq, ttest_rel). Monte Carlo
checks use fixed seeds and a tolerance of ~4 standard errors.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from fairbook import mime
from fairbook.mime import (Group, domain_gap, expected_push_performance, perceptron_threshold, push_experiment,
                           simulate_push, theorem1, theorem2, theorem3, SMALL, exact_push_advantage, theorem_sweep,
                           sweep_summary)

Phi = stats.norm.cdf


def gauss_T(mu1, mu2, sigma1, sigma2, prior, d):
    """Eq. 14 for Gaussian classes, written out with the standard normal cdf."""
    return prior * Phi((d - mu2) / sigma2) - (1 - prior) * (1 - Phi((d - mu1) / sigma1))


def gauss_error(mu1, mu2, sigma, prior, d):
    return prior * Phi((d - mu2) / sigma) + (1 - prior) * (1 - Phi((d - mu1) / sigma))


def mc_mean(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), values.std(ddof=1) / np.sqrt(values.size)


def push_advantage_mc(major, minor, d, eta, n, rng):
    """Monte Carlo E P^major{h_K^+} - E P^major{h_K^-} at h_{K-1} = d, with its standard error."""
    plus = simulate_push(major, major, np.array([d]), eta, n, rng)[0]
    minus = simulate_push(minor, major, np.array([d]), eta, n, rng)[0]
    se = np.sqrt(plus.var(ddof=1) / n + minus.var(ddof=1) / n)
    return plus.mean() - minus.mean(), se


def push_advantage_exact(major, minor, d, eta):
    return float(expected_push_performance(major, major, d, eta)
                 - expected_push_performance(minor, major, d, eta))


MAJOR = Group.make(-1, 1, 0.6)


# =============================================================================================
# 1. Group
# =============================================================================================
@pytest.mark.parametrize("mu1,mu2,sigma", [(-1, 1, 0.6), (0, 2, 1.0), (-3.5, 0.25, 2.0)])
def test_ideal_threshold_symmetric_gaussian_is_midpoint(mu1, mu2, sigma):
    assert Group.make(mu1, mu2, sigma).ideal_threshold() == pytest.approx((mu1 + mu2) / 2, abs=1e-9)


@pytest.mark.parametrize("mu1,mu2,sigma,prior", [
    (-1, 1, 1.0, 0.3), (-1, 1, 1.0, 0.8), (0, 3, 0.7, 0.1), (2, 2.5, 0.4, 0.65), (-1, 1, 1.0, 0.05)])
def test_ideal_threshold_unequal_prior_is_bayes_threshold(mu1, mu2, sigma, prior):
    # (1 - pi) N(d; mu1, s) = pi N(d; mu2, s)  <=>  d = (mu1 + mu2)/2 + s^2 ln((1-pi)/pi) / (mu2 - mu1)
    expected = (mu1 + mu2) / 2 + sigma**2 * np.log((1 - prior) / prior) / (mu2 - mu1)
    assert Group.make(mu1, mu2, sigma, prior=prior).ideal_threshold() == pytest.approx(expected, abs=1e-9)


def test_ideal_threshold_direction_of_prior():
    # a rare positive class pushes the threshold towards it (to the right), and vice versa
    assert Group.make(-1, 1, 1, prior=0.2).ideal_threshold() > 0.1
    assert Group.make(-1, 1, 1, prior=0.8).ideal_threshold() < -0.1


@pytest.mark.parametrize("mu1,mu2,s1,s2,prior", [
    (-1, 1, 0.5, 1.5, 0.5), (-1, 1, 1.5, 0.5, 0.5), (0, 2, 0.8, 1.2, 0.3), (0, 1, 0.3, 0.6, 0.7)])
def test_ideal_threshold_unequal_variances_solves_density_equation(mu1, mu2, s1, s2, prior):
    def density_gap(x):  # the density (not log-density) equation of eq. 4 with priors
        return prior * stats.norm.pdf(x, mu2, s2) - (1 - prior) * stats.norm.pdf(x, mu1, s1)
    ref = optimize.brentq(density_gap, mu1, mu2, xtol=1e-13)
    group = Group.make(mu1, mu2, s1, s2, prior=prior)
    assert group.ideal_threshold() == pytest.approx(ref, abs=1e-8)
    # and it is the threshold that minimises the error (second independent reference)
    err = lambda d: prior * Phi((d - mu2) / s2) + (1 - prior) * (1 - Phi((d - mu1) / s1))  # noqa: E731
    best = optimize.minimize_scalar(err, bounds=(mu1, mu2), method="bounded",
                                    options={"xatol": 1e-10})
    assert group.ideal_threshold() == pytest.approx(best.x, abs=1e-5)


def test_ideal_threshold_laplace_unequal_prior_hand_computed():
    # Laplace with scale b: between the means the log-likelihood ratio is (2x - mu1 - mu2)/b, so
    # ln(pi/(1-pi)) + (2d - mu1 - mu2)/b = 0  =>  d = (mu1+mu2)/2 - b/2 ln(pi/(1-pi)).
    b, prior = 1.0, 0.3
    g = Group.make(0, 2, np.sqrt(2) * b, prior=prior, family="laplace")  # sd = sqrt(2) b
    assert g.ideal_threshold() == pytest.approx(1 - b / 2 * np.log(prior / (1 - prior)), abs=1e-9)


@pytest.mark.parametrize("mu1,mu2,s1,s2,prior", [
    (-0.5, 0.5, 3.0, 3.0, 0.1), (-0.1, 0.1, 1.0, 1.0, 0.2), (-1, 1, 1.0, 1.0, 1e-6),
    (-1, 1, 1.0, 1.0, 1 - 1e-6), (-1, 1, 0.9, 1.0, 0.01), (-1, 1, 0.9, 1.0, 1e-4), (-1, 1, 1.0, 0.9, 0.99)])
def test_ideal_threshold_far_outside_the_class_medians(mu1, mu2, s1, s2, prior):
    # regression: the bracket used to stop 7 class-distance widths beyond the medians, so these
    # valid groups raised "no ideal threshold found". Reference: the roots of the quadratic
    # log((1-pi) N(x; mu1, s1)) = log(pi N(x; mu2, s2)), nearest the class medians.
    a = 0.5 / s1**2 - 0.5 / s2**2
    b = mu2 / s2**2 - mu1 / s1**2
    c = np.log(prior / (1 - prior)) + np.log(s1 / s2) - mu2**2 / (2 * s2**2) + mu1**2 / (2 * s1**2)
    roots = np.real(np.roots([a, b, c])) if a != 0 else np.array([-c / b])
    expected = roots[np.argmin(np.abs(roots - (mu1 + mu2) / 2))]
    group = Group.make(mu1, mu2, s1, s2, prior=prior)
    assert group.ideal_threshold() == pytest.approx(expected, rel=1e-9, abs=1e-8)
    assert abs(expected - (mu1 + mu2) / 2) > (mu2 - mu1) / 2  # really outside the medians
    d = group.ideal_threshold()
    assert np.all(group.error(d + np.array([-0.05, 0.05])) > group.overlap())  # a local minimum


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # -inf - -inf far out
def test_ideal_threshold_raises_when_no_equal_likelihood_point():
    # Laplace tails have a bounded likelihood ratio: if ln(pi/(1-pi)) > (mu2-mu1)/b the weighted
    # class-2 density dominates everywhere and no finite threshold exists.
    g = Group.make(-1, 1, np.sqrt(2), prior=0.95, family="laplace")  # b = 1, ln(19) > 2
    with pytest.raises(ValueError):
        g.ideal_threshold()


@pytest.mark.parametrize("mu1,mu2,sigma", [(-1, 1, 0.6), (-0.5, 0.5, 0.6), (0, 3, 2.0), (1, 1.1, 0.05)])
def test_overlap_symmetric_gaussian_eq8(mu1, mu2, sigma):
    assert Group.make(mu1, mu2, sigma).overlap() == pytest.approx(Phi(-(mu2 - mu1) / (2 * sigma)),
                                                                  rel=1e-9, abs=1e-12)


def test_overlap_laplace_equals_numerical_integration_of_eq8():
    mu1, mu2, sd = -1.0, 1.5, 0.8
    b = sd / np.sqrt(2)
    pdf = lambda x, mu: np.exp(-abs(x - mu) / b) / (2 * b)  # noqa: E731 - written out, not scipy's
    d = (mu1 + mu2) / 2  # equal priors and scales: equal-likelihood point is the midpoint
    o8 = (0.5 * integrate.quad(pdf, -np.inf, d, args=(mu2,), epsabs=1e-13)[0]
          + 0.5 * integrate.quad(pdf, d, np.inf, args=(mu1,), epsabs=1e-13)[0])
    group = Group.make(mu1, mu2, sd, family="laplace")
    assert group.overlap() == pytest.approx(o8, rel=1e-7)
    assert o8 == pytest.approx(0.5 * np.exp(-(mu2 - mu1) / (2 * b)), rel=1e-7)  # closed form


@pytest.mark.parametrize("group", [
    Group.make(-1, 1, 0.6), Group.make(-1, 1, 1.0, prior=0.3), Group.make(0, 2, 0.8, 1.3, prior=0.6),
    Group.make(-1, 1, 0.7, prior=0.35, family="laplace"), Group.make(0, 1, 0.5, 0.3, family="logistic")],
    ids=["gauss", "gauss-prior", "gauss-unequal", "laplace-prior", "logistic-unequal"])
def test_overlap_is_minimal_error_at_ideal_threshold(group):
    d = group.ideal_threshold()
    offsets = np.concatenate([-np.geomspace(1e-3, 1.0, 25), np.geomspace(1e-3, 1.0, 25)])
    errs = group.error(d + offsets)
    assert np.all(errs >= group.overlap() - 1e-12)
    assert np.all(group.error(d + np.array([-0.5, 0.5])) > group.overlap() + 1e-6)
    # error(d) is eq. 8 generalised: pi F2(d) + (1 - pi)(1 - F1(d))
    x = 0.37
    assert group.error(x) == pytest.approx(group.prior * group.p2.cdf(x)
                                           + (1 - group.prior) * (1 - group.p1.cdf(x)))


def test_tail_weight_hand_computed_points():
    g = Group.make(0, 2, 1.0)
    assert float(g.tail_weight(1.0)) == pytest.approx(0.0, abs=1e-15)  # T(d_ideal) = 0 (symmetric)
    # T(0) = 0.5 Phi(-2) - 0.5 * 0.5
    assert float(g.tail_weight(0.0)) == pytest.approx(0.5 * 0.022750131948179 - 0.25, abs=1e-12)
    # limits: T(+inf) = pi, T(-inf) = -(1 - pi)
    gp = Group.make(0, 2, 1.0, prior=0.3)
    np.testing.assert_allclose(gp.tail_weight([-1e3, 1e3]), [-0.7, 0.3], atol=1e-12)
    # Laplace, b = 1, pi = 0.3, at the midpoint x = 1:
    # F2(1) = 0.5 e^{-1}, 1 - F1(1) = 0.5 e^{-1}  =>  T = (0.3 - 0.7) 0.5 e^{-1} = -0.2 e^{-1}
    gl = Group.make(0, 2, np.sqrt(2), prior=0.3, family="laplace")
    assert float(gl.tail_weight(1.0)) == pytest.approx(-0.2 * np.exp(-1), rel=1e-12)
    # vectorised and matching the written-out eq. 14
    d = np.linspace(-3, 4, 11)
    np.testing.assert_allclose(gp.tail_weight(d), gauss_T(0, 2, 1, 1, 0.3, d), atol=1e-14)


@pytest.mark.parametrize("group", [
    Group.make(-1, 1, 0.6), Group.make(0, 2, 0.8, 1.3, prior=0.3),
    Group.make(-1, 1, 0.7, prior=0.35, family="laplace"), Group.make(0, 1, 0.5, 0.3, 0.8, "logistic")],
    ids=["gauss", "gauss-unequal", "laplace", "logistic"])
def test_tail_weight_derivative_is_likelihood(group):
    h = 1e-5
    for d in (-1.7, -0.4, 0.13, 0.55, 1.9):  # away from the Laplace kinks at the means
        fd = (float(group.tail_weight(d + h)) - float(group.tail_weight(d - h))) / (2 * h)
        assert fd == pytest.approx(group.likelihood_at(d), rel=1e-5, abs=1e-9)


def test_likelihood_at_hand_computed():
    # symmetric N(-+1, 0.6^2) at 0: 0.5 * 2 * phi(1/0.6) / 0.6
    assert MAJOR.likelihood_at(0.0) == pytest.approx(stats.norm.pdf(1 / 0.6) / 0.6, rel=1e-12)
    g = Group.make(0, 2, 1.0, 2.0, prior=0.25)
    x = 0.7
    assert g.likelihood_at(x) == pytest.approx(
        0.25 * np.exp(-((x - 2) / 2) ** 2 / 2) / (2 * np.sqrt(2 * np.pi))
        + 0.75 * np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), rel=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(mu1=0, mu2=1, sigma1=0), dict(mu1=0, mu2=1, sigma1=-1), dict(mu1=0, mu2=1, sigma1=1, sigma2=0),
    dict(mu1=0, mu2=1, sigma1=1, sigma2=-0.5), dict(mu1=0, mu2=1, sigma1=1, family="cauchy"),
    dict(mu1=0, mu2=1, sigma1=1, prior=0.0), dict(mu1=0, mu2=1, sigma1=1, prior=1.0),
    dict(mu1=0, mu2=1, sigma1=1, prior=1.5), dict(mu1=0, mu2=1, sigma1=1, prior=-0.1),
    dict(mu1=1, mu2=-1, sigma1=1), dict(mu1=0.5, mu2=0.5, sigma1=1),
])
def test_group_make_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        Group.make(**kwargs)


def test_group_make_accepts_valid_input():
    g = Group.make(0, 1, 1, 2, prior=0.2, family="logistic", name="x")
    assert (g.prior, g.family, g.name, g.params) == (0.2, "logistic", "x", (0, 1, 1, 2))


@pytest.mark.parametrize("family", ["gaussian", "laplace", "logistic"])
def test_family_has_requested_standard_deviation_and_mean(family):
    g = Group.make(-0.3, 1.2, 0.7, 1.9, family=family)
    assert g.p1.std() == pytest.approx(0.7, rel=1e-12)
    assert g.p2.std() == pytest.approx(1.9, rel=1e-12)
    assert (g.p1.mean(), g.p2.mean()) == pytest.approx((-0.3, 1.2))
    assert isinstance(g.p1.dist, type({"gaussian": stats.norm, "laplace": stats.laplace,
                                       "logistic": stats.logistic}[family]))


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_sample_prior_and_class_moments(family):
    mu1, mu2, s1, s2, prior = -0.5, 1.5, 0.8, 1.2, 0.3
    g = Group.make(mu1, mu2, s1, s2, prior=prior, family=family)
    n = 200_000
    x, y = g.sample(n, np.random.default_rng(1))
    assert x.shape == y.shape == (n,)
    assert set(np.unique(y)) == {1, 2}
    frac = (y == 2).mean()
    assert abs(frac - prior) < 4 * np.sqrt(prior * (1 - prior) / n)
    for cls, mu, s in ((1, mu1, s1), (2, mu2, s2)):
        xc = x[y == cls]
        assert abs(xc.mean() - mu) < 4 * s / np.sqrt(xc.size)
        assert xc.std() == pytest.approx(s, rel=0.02)
    x2, y2 = g.sample((3, 4), np.random.default_rng(2))
    assert x2.shape == y2.shape == (3, 4)
    # same seed, same draw
    xa, ya = g.sample(50, np.random.default_rng(7))
    xb, yb = g.sample(50, np.random.default_rng(7))
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)


def test_is_symmetric_gaussian():
    assert Group.make(-1, 1, 0.6).is_symmetric_gaussian()
    assert not Group.make(-1, 1, 0.6, prior=0.4).is_symmetric_gaussian()
    assert not Group.make(-1, 1, 0.6, 0.9).is_symmetric_gaussian()
    assert not Group.make(-1, 1, 0.6, family="laplace").is_symmetric_gaussian()


def test_majority_minority_orders_by_overlap():
    order = mime.majority_minority
    easy, hard = Group.make(-1, 1, 0.6), Group.make(-0.5, 0.5, 0.6)  # O = Phi(-1/0.6) < Phi(-0.5/0.6)
    assert order(easy, hard) == (easy, hard)
    assert order(hard, easy) == (easy, hard)
    # overlap, not separation: a well-separated but wide group can be the harder one
    wide = Group.make(-3, 3, 6.0)
    assert order(wide, easy) == (easy, wide)
    with pytest.raises(ValueError):  # same overlap (a shifted copy): neither is the majority
        order(easy, Group.make(2, 4, 0.6))


# =============================================================================================
# 2. domain gap
# =============================================================================================
def test_domain_gap_is_signed_difference_of_ideal_thresholds():
    assert domain_gap(MAJOR, Group.make(0.5, 2.5, 1.0)) == pytest.approx(1.5, abs=1e-9)
    assert domain_gap(MAJOR, Group.make(-2.5, -0.5, 1.0)) == pytest.approx(-1.5, abs=1e-9)
    assert domain_gap(MAJOR, Group.make(-0.5, 0.5, 0.6)) == pytest.approx(0.0, abs=1e-9)
    # a prior alone creates a gap: sigma^2 ln((1-pi)/pi) / (mu2 - mu1)
    minor = Group.make(-1, 1, 0.6, prior=0.25)
    assert domain_gap(MAJOR, minor) == pytest.approx(0.36 * np.log(3) / 2, abs=1e-9)
    assert domain_gap(minor, MAJOR) == pytest.approx(-0.36 * np.log(3) / 2, abs=1e-9)


# =============================================================================================
# 3. one push: closed form (eq. 10-11) vs Monte Carlo
# =============================================================================================
PUSH_CONFIGS = {
    # name: (push group, majority group, eta)
    "majority push": (MAJOR, MAJOR, 0.1),
    "minority push, no gap": (Group.make(-0.5, 0.5, 0.6), MAJOR, 0.1),
    "minority push, gap": (Group.make(-0.2, 0.8, 0.6), MAJOR, 0.15),
    "majority push, overshoot": (MAJOR, MAJOR, 0.5),
    "minority push, gap, overshoot": (Group.make(-0.9, 0.3, 0.5), MAJOR, 0.6),
    "non-gaussian, unequal prior": (Group.make(-0.6, 0.9, 0.5, 0.9, prior=0.3, family="logistic"),
                                    Group.make(-1, 1, 0.7, prior=0.4, family="laplace"), 0.2),
    "non-gaussian majority push": (Group.make(-1, 1, 0.7, prior=0.4, family="laplace"),
                                   Group.make(-1, 1, 0.7, prior=0.4, family="laplace"), 0.3),
}


@pytest.mark.parametrize("name", list(PUSH_CONFIGS))
def test_expected_push_performance_matches_simulation(name):
    push, major, eta = PUSH_CONFIGS[name]
    target = major.ideal_threshold()
    offsets = np.array([-0.8, -0.3, -0.05, 0.0, 0.05, 0.3, 0.8])  # both sides; |offset| < eta cases too
    d_prev = target + offsets
    n = 40_000
    sim = simulate_push(push, major, d_prev, eta, n, np.random.default_rng(11))
    assert sim.shape == (d_prev.size, n)
    exact = expected_push_performance(push, major, d_prev, eta)
    assert exact.shape == d_prev.shape
    mean, se = sim.mean(axis=1), sim.std(axis=1, ddof=1) / np.sqrt(n)
    assert np.all(se > 0)
    assert np.all(np.abs(mean - exact) < 4 * se), (mean, exact, se)
    # every simulated outcome is one of the three possible moves
    for i, d in enumerate(d_prev):
        allowed = np.abs(np.array([d - eta, d, d + eta]) - target)
        assert np.all(np.min(np.abs(sim[i][:, None] - allowed[None, :]), axis=1) < 1e-12)


def test_simulate_push_shapes():
    rng = np.random.default_rng(3)
    assert simulate_push(MAJOR, MAJOR, np.zeros((2, 3)), 0.1, 5, rng).shape == (2, 3, 5)
    assert simulate_push(MAJOR, MAJOR, 0.2, 0.1, 5, rng).shape == (5,)
    assert expected_push_performance(MAJOR, MAJOR, np.zeros((2, 3)), 0.1).shape == (2, 3)


@pytest.mark.parametrize("push", [MAJOR, Group.make(-0.5, 0.5, 0.6), Group.make(-0.3, 0.9, 0.4, 0.8, 0.35)],
                         ids=["major", "minor", "minor-gap-prior"])
def test_expected_push_performance_small_step_formula(push):
    # eta <= |d - d*|: E P = Delta - eta sign(d - d*) T_push(d)
    mu1, mu2, s1, s2 = push.params
    eta = 0.1
    for d in (-0.7, -0.25, -0.1, 0.1, 0.3, 0.9):
        Delta = abs(d)  # MAJOR's ideal threshold is 0
        expected = Delta - eta * np.sign(d) * gauss_T(mu1, mu2, s1, s2, push.prior, d)
        assert float(expected_push_performance(push, MAJOR, d, eta)) == pytest.approx(expected, abs=1e-12)


def test_expected_push_performance_hand_computed():
    major = Group.make(-1, 1, 1.0)
    # d = 0.5, eta = 0.1: T(0.5) = 0.5 Phi(-0.5) - 0.5 Phi(-1.5) = 0.5 (0.308538 - 0.066807)
    assert float(expected_push_performance(major, major, 0.5, 0.1)) == pytest.approx(
        0.5 - 0.1 * 0.5 * (0.3085375387259869 - 0.0668072012688581), abs=1e-12)
    # overshoot: d = 0.1, eta = 0.3 -> down-move lands at |0.1 - 0.3| = 0.2, up-move at 0.4
    p_fn, p_fp = 0.5 * Phi(-0.9), 0.5 * Phi(-1.1)
    assert float(expected_push_performance(major, major, 0.1, 0.3)) == pytest.approx(
        p_fn * 0.2 + p_fp * 0.4 + (1 - p_fn - p_fp) * 0.1, abs=1e-12)
    # at the ideal every move is a loss of eta: E P = eta * Pr(mistake) = eta * 2 * O
    assert float(expected_push_performance(major, major, 0.0, 0.3)) == pytest.approx(
        0.3 * Phi(-1), abs=1e-12)


# =============================================================================================
# 4. perceptron
# =============================================================================================
X_HAND = np.array([0.5, -0.2, 0.3, -0.4, 0.0, -0.05])
Y_HAND = np.array([1, 2, 2, 1, 2, 1])


def test_perceptron_hand_computed_fixed_step():
    # d=0 -> (0.5, y=1) FP: +0.1 -> 0.1; (-0.2, y=2) FN: -> 0.0; (0.3, y=2) ok; (-0.4, y=1) ok;
    # (0.0, y=2) x <= d is a FN: -> -0.1; (-0.05, y=1) x > d FP: -> 0.0
    trajectory = [0.1, 0.0, 0.0, 0.0, -0.1, 0.0]
    for k, expected in enumerate(trajectory, start=1):
        d = perceptron_threshold(X_HAND[:k], Y_HAND[:k], eta=0.1, d0=0.0)
        assert d.shape == (1,)
        assert d[0] == pytest.approx(expected, abs=1e-12), k
    # a mistake-free sequence does not move
    assert perceptron_threshold(np.array([-1.0, 2.0]), np.array([1, 2]), 0.1, 0.3)[0] == 0.3


def test_perceptron_decay_steps():
    # step at visit t is eta / t: 0.1 (t=1, FP) -> 0.1; t=2 FN -0.05 -> 0.05; t=3,4 ok;
    # t=5 (0.0, y=2) FN -0.02 -> 0.03; t=6 (-0.05, y=1) x <= d ok.
    d = perceptron_threshold(X_HAND, Y_HAND, eta=0.1, d0=0.0, decay=1.0)
    assert d[0] == pytest.approx(0.03, abs=1e-12)
    # second epoch, t continues: t=7 FP +0.1/7, t=8 FN -0.1/8, t=11 FN -0.1/11
    d2 = perceptron_threshold(X_HAND, Y_HAND, eta=0.1, d0=0.0, epochs=2, decay=1.0)
    assert d2[0] == pytest.approx(0.03 + 0.1 / 7 - 0.1 / 8 - 0.1 / 11, abs=1e-12)
    # decay = 0.5: eta / sqrt(t)
    d3 = perceptron_threshold(X_HAND[:2], Y_HAND[:2], eta=0.1, d0=0.0, decay=0.5)
    assert d3[0] == pytest.approx(0.1 - 0.1 / np.sqrt(2), abs=1e-12)


def test_perceptron_vectorised_equals_row_by_row():
    rng = np.random.default_rng(5)
    x, y = Group.make(-1, 1, 0.8, prior=0.4).sample((7, 25), rng)
    d0 = rng.normal(size=7)
    for epochs, decay in ((1, 0.0), (3, 0.5), (2, 1.0)):
        batch = perceptron_threshold(x, y, 0.3, d0, epochs=epochs, decay=decay)
        assert batch.shape == (7,)
        for i in range(7):  # hand-written reference loop
            d, t = d0[i], 0
            for _ in range(epochs):
                for xi, yi in zip(x[i], y[i]):
                    t += 1
                    step = 0.3 / t**decay
                    if yi == 2 and xi <= d:
                        d -= step
                    elif yi == 1 and xi > d:
                        d += step
            assert batch[i] == pytest.approx(d, abs=1e-12)
            assert perceptron_threshold(x[i], y[i], 0.3, d0[i], epochs, decay)[0] == pytest.approx(d, abs=1e-12)
    # scalar d0 is broadcast to every row
    np.testing.assert_allclose(perceptron_threshold(x, y, 0.3, 0.25),
                               perceptron_threshold(x, y, 0.3, np.full(7, 0.25)))


def test_perceptron_converges_near_ideal():
    # sanity: long decaying run on a symmetric group ends close to the midpoint
    g = Group.make(1, 3, 0.7)
    x, y = g.sample((200, 400), np.random.default_rng(8))
    d = perceptron_threshold(x, y, 1.0, 0.0, epochs=2, decay=0.7)
    assert abs(np.median(d) - 2.0) < 0.1


# =============================================================================================
# 5. push_experiment
# =============================================================================================
def test_push_experiment():
    minor = Group.make(-0.5, 0.5, 0.6)
    trials, eta, d0 = 40_000, 0.1, -1.0
    df = push_experiment(MAJOR, minor, K=15, trials=trials, eta=eta, d0=d0, rng=np.random.default_rng(4))
    assert list(df.columns) == ["d_prev", "P_prev", "P_plus", "P_minus", "E_plus", "E_minus"]
    assert len(df) == trials
    target = MAJOR.ideal_threshold()
    np.testing.assert_allclose(df.P_prev, np.abs(df.d_prev - target), atol=1e-12)
    # K-1 = 14 fixed-size steps from d0: d_prev on the lattice d0 + k eta, |k| <= 14
    k = (df.d_prev - d0) / eta
    assert np.allclose(k, np.round(k), atol=1e-9) and np.abs(k).max() <= 14
    np.testing.assert_allclose(df.E_plus, expected_push_performance(MAJOR, MAJOR, df.d_prev, eta))
    np.testing.assert_allclose(df.E_minus, expected_push_performance(minor, MAJOR, df.d_prev, eta))
    for sim, ex in (("P_plus", "E_plus"), ("P_minus", "E_minus")):
        resid = df[sim] - df[ex]
        assert abs(resid.mean()) < 4 * resid.std(ddof=1) / np.sqrt(trials), sim
        assert np.all(np.abs(np.abs(df[sim] - df.P_prev) - np.where(df[sim] == df.P_prev, 0, eta)) < 1e-9)
    # K = 1: nothing learnt, h_{K-1} is the start
    df1 = push_experiment(MAJOR, minor, K=1, trials=10, eta=eta, d0=d0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(df1.d_prev, d0)
    np.testing.assert_allclose(df1.P_prev, abs(d0 - target))


# =============================================================================================
# 6. theorems
# =============================================================================================
THEOREM1_MIME = [  # (major, minor, Delta, eta): symmetric Gaussians, no gap, l_minor > l_major
    (MAJOR, Group.make(-0.5, 0.5, 0.6), 0.2, 0.1),
    (Group.make(-1, 1, 1.0), Group.make(-0.6, 0.6, 1.0), 0.3, 0.2),
    (Group.make(0, 2, 0.5), Group.make(0.7, 1.3, 0.4), 0.25, 0.25),
]


@pytest.mark.parametrize("major,minor,Delta,eta", THEOREM1_MIME)
def test_theorem1_predicted_mime_holds_in_simulation(major, minor, Delta, eta):
    check = theorem1(major, minor, Delta, eta)
    assert check.condition and check.assumptions["eta<=Delta"]
    assert check.applies == (Delta <= SMALL * min(major.p1.std(), minor.p1.std()))  # "Delta small"
    rng = np.random.default_rng(21)
    d_star = major.ideal_threshold()
    for side in (-1, 1):
        diff, se = push_advantage_mc(major, minor, d_star + side * Delta, eta, 200_000, rng)
        assert diff > 4 * se, (side, diff, se)  # E P+ > E P-: the minority push is better
        assert diff == pytest.approx(push_advantage_exact(major, minor, d_star + side * Delta, eta),
                                     abs=4 * se)


def test_theorem1_details_hand_computed():
    minor = Group.make(-0.5, 0.5, 0.6)
    check = theorem1(MAJOR, minor, 0.2, 0.1)
    assert check.theorem == "1"
    assert check.detail["l_major"] == pytest.approx(stats.norm.pdf(1 / 0.6) / 0.6, rel=1e-9)
    assert check.detail["l_minor"] == pytest.approx(stats.norm.pdf(0.5 / 0.6) / 0.6, rel=1e-9)
    assert check.detail["O_major"] == pytest.approx(Phi(-1 / 0.6), rel=1e-9)
    assert check.detail["O_minor"] == pytest.approx(Phi(-0.5 / 0.6), rel=1e-9)


def test_theorem1_large_variance_minority_fails_and_is_worse():
    # larger overlap through a huge variance: l_minor < l_major, and the minority push does not help
    minor = Group.make(-1, 1, 3.0)
    check = theorem1(MAJOR, minor, 0.12, 0.1)
    assert check.applies and not check.condition and not check.predicts_mime
    rng = np.random.default_rng(22)
    for side in (-1, 1):
        d = side * 0.2
        assert push_advantage_exact(MAJOR, minor, d, 0.1) < 0
        diff, se = push_advantage_mc(MAJOR, minor, d, 0.1, 1_000_000, rng)
        assert diff < 0, (side, diff, se)


def test_theorem1_assumption_flags():
    minor = Group.make(-0.5, 0.5, 0.6)
    assert theorem1(MAJOR, minor, 0.12, 0.1).assumptions == {
        "symmetric_gaussian": True, "no_domain_gap": True, "O_major<O_minor": True, "Delta>0": True,
        "eta<=Delta": True, "Delta_small": True}
    assert theorem1(MAJOR, minor, 0.2, 0.1).assumptions["Delta_small"] is False   # 0.2 > 0.25 * 0.6
    gap = theorem1(MAJOR, Group.make(-0.4, 0.6, 0.6), 0.12, 0.1)
    assert gap.assumptions["no_domain_gap"] is False and not gap.applies
    assert gap.condition and not gap.predicts_mime  # condition alone is not enough
    for other in (Group.make(-0.5, 0.5, 0.6, family="laplace"), Group.make(-0.5, 0.5, 0.6, prior=0.4),
                  Group.make(-0.5, 0.5, 0.6, 0.7)):
        chk = theorem1(MAJOR, other, 0.12, 0.1)
        assert not chk.assumptions["symmetric_gaussian"] and not chk.applies and not chk.predicts_mime
    lap = theorem1(Group.make(-1, 1, 0.6, family="logistic"), minor, 0.12, 0.1)
    assert not lap.assumptions["symmetric_gaussian"]
    easier = theorem1(MAJOR, Group.make(-2, 2, 0.6), 0.12, 0.1)
    assert easier.assumptions["O_major<O_minor"] is False and not easier.predicts_mime
    assert theorem1(MAJOR, minor, 0.0, 0.1).assumptions["Delta>0"] is False


THEOREM2_MIME = [  # (major, minor, Delta, eta) with 0 < delta < Delta, predicted on both sides
    (MAJOR, Group.make(-0.4, 0.6, 0.6), 0.3, 0.1),
    (MAJOR, Group.make(-0.6, 0.4, 0.6), 0.3, 0.1),
    (Group.make(-1, 1, 1.0), Group.make(-0.4, 0.6, 0.7), 0.4, 0.2),
]


@pytest.mark.parametrize("major,minor,Delta,eta", THEOREM2_MIME)
def test_theorem2_predicted_mime_holds_in_simulation(major, minor, Delta, eta):
    rng = np.random.default_rng(23)
    d_star = major.ideal_threshold()
    for side in (-1, 1):
        check = theorem2(major, minor, Delta, side, eta)
        assert check.condition and check.assumptions["eta<=Delta"]
        diff, se = push_advantage_mc(major, minor, d_star + side * Delta, eta, 200_000, rng)
        assert diff > 4 * se, (side, diff, se)


def test_theorem2_cases_and_eq12_bound():
    minor = Group.make(-0.4, 0.6, 0.6)  # minority ideal at +0.1: delta = 0.1 to the right
    Delta = 0.3
    delta = 0.1
    O_major, O_minor = Phi(-1 / 0.6), Phi(-0.5 / 0.6)
    l_major, l_minor = stats.norm.pdf(1 / 0.6) / 0.6, stats.norm.pdf(0.5 / 0.6) / 0.6
    f = (l_minor / O_minor) / (l_major / O_major)
    right, left = theorem2(MAJOR, minor, Delta, +1, 0.1), theorem2(MAJOR, minor, Delta, -1, 0.1)
    assert right.theorem == "2"
    assert right.detail["case"] == 2 and left.detail["case"] == 1  # same / different halfspace
    assert right.detail["delta"] == pytest.approx(delta, abs=1e-9)
    assert right.detail["f"] == pytest.approx(f, rel=1e-7)
    assert right.detail["bound"] == pytest.approx((1 - delta / Delta) * f, rel=1e-7)
    assert right.condition == (O_major / O_minor < (1 - delta / Delta) * f)  # eq. 12
    assert left.condition == (l_minor * (Delta + delta) > l_major * Delta)
    # mirror image: the cases swap sides
    mirror = Group.make(-0.6, 0.4, 0.6)
    assert theorem2(MAJOR, mirror, Delta, -1, 0.1).detail["case"] == 2
    assert theorem2(MAJOR, mirror, Delta, +1, 0.1).detail["case"] == 1
    # assumptions
    assert right.assumptions == {"symmetric_gaussian": True, "domain_gap>0": True, "delta<Delta": True,
                                 "Delta>0": True, "eta<=Delta": True, "delta+Delta_small": False}
    assert theorem2(MAJOR, minor, 0.05, 1, 0.05).assumptions["delta<Delta"] is False
    assert not theorem2(MAJOR, Group.make(-0.4, 0.6, 0.6, prior=0.4), Delta, 1, 0.1).applies
    near = Group.make(-0.47, 0.53, 0.6)                       # delta = 0.03: delta + Delta = 0.13 <= 0.15
    assert theorem2(MAJOR, near, 0.1, 1, 0.05).assumptions["delta+Delta_small"] is True


def test_theorem2_eq12_fails_when_gap_close_to_Delta():
    # delta = 0.25, Delta = 0.3: (1 - delta/Delta) = 1/6 kills the same-halfspace case
    minor = Group.make(-0.25, 0.75, 0.6)
    check = theorem2(MAJOR, minor, 0.3, +1, 0.1)
    assert check.detail["case"] == 2 and not check.condition
    assert push_advantage_exact(MAJOR, minor, 0.3, 0.1) < 0
    diff, se = push_advantage_mc(MAJOR, minor, 0.3, 0.1, 200_000, np.random.default_rng(24))
    assert diff < -4 * se


@pytest.mark.parametrize("side", [0, 2, -2, 0.5])
def test_theorem2_rejects_bad_side(side):
    with pytest.raises(ValueError):
        theorem2(MAJOR, Group.make(-0.4, 0.6, 0.6), 0.3, side, 0.1)


THEOREM3_HOLDS = [  # (major, minor, Delta, eta <= Delta)
    (MAJOR, Group.make(-0.5, 0.5, 0.6), 0.2, 0.1),
    (MAJOR, Group.make(-0.4, 0.6, 0.6), 0.3, 0.3),
    (Group.make(-1, 1, 0.6, prior=0.3, family="laplace"),
     Group.make(-0.4, 0.4, 0.6, prior=0.3, family="laplace"), 0.2, 0.1),
    (Group.make(-1, 1, 0.5, 0.8, prior=0.6, family="logistic"),
     Group.make(-0.5, 0.3, 0.4, 0.4, prior=0.6, family="logistic"), 0.25, 0.2),
]
THEOREM3_FAILS = [
    (MAJOR, Group.make(-3, 3, 0.6), 0.2, 0.1),       # minority much better separated
    (MAJOR, Group.make(0.5, 1.5, 0.6), 0.2, 0.1),    # large domain gap
    (MAJOR, Group.make(-1, 1, 3.0), 0.2, 0.1),       # minority too spread out
    (Group.make(-1, 1, 0.5, 0.8, prior=0.6, family="logistic"),
     Group.make(-0.5, 0.6, 0.7, prior=0.4, family="logistic"), 0.25, 0.2),
]


def _tail_weights(major, minor, Delta):
    d = major.ideal_threshold()
    return ([float(minor.tail_weight(d + Delta)), float(-minor.tail_weight(d - Delta))],
            [float(major.tail_weight(d + Delta)), float(-major.tail_weight(d - Delta))])


@pytest.mark.parametrize("major,minor,Delta,eta", THEOREM3_HOLDS)
def test_theorem3_holds_implies_minority_advantage_on_both_sides(major, minor, Delta, eta):
    check = theorem3(major, minor, Delta, eta)
    assert check.condition and check.predicts_mime and check.theorem == "3"
    t_minor, t_major = _tail_weights(major, minor, Delta)
    assert check.detail == pytest.approx({"min_minor": min(t_minor), "max_major": max(t_major)})
    rng = np.random.default_rng(25)
    d_star = major.ideal_threshold()
    for side in (-1, 1):
        d = d_star + side * Delta
        diff, se = push_advantage_mc(major, minor, d, eta, 200_000, rng)
        assert diff > 4 * se, (side, diff, se)


@pytest.mark.parametrize("major,minor,Delta,eta", THEOREM3_FAILS)
def test_theorem3_fails_and_some_side_has_no_advantage(major, minor, Delta, eta):
    check = theorem3(major, minor, Delta, eta)
    assert not check.condition and not check.predicts_mime
    rng = np.random.default_rng(26)
    d_star = major.ideal_threshold()
    exact = [push_advantage_exact(major, minor, d_star + s * Delta, eta) for s in (-1, 1)]
    mc = [push_advantage_mc(major, minor, d_star + s * Delta, eta, 1_000_000, rng) for s in (-1, 1)]
    worst = int(np.argmin(exact))
    assert exact[worst] < 0
    assert mc[worst][0] < 0, (exact, mc)


def test_theorem3_is_exact_for_fixed_step_updates():
    """With eta <= Delta, E P+ - E P- at d* + s Delta is exactly eta s (T_minor - T_major), so eq. 15
    implies the minority advantage on both sides. Checked on random configurations."""
    rng = np.random.default_rng(27)
    families = ["gaussian", "laplace", "logistic"]
    n_true = 0
    for _ in range(150):
        def rand_group():
            c, sep = rng.uniform(-0.4, 0.4), rng.uniform(0.3, 1.5)
            return Group.make(c - sep, c + sep, rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0),
                              prior=rng.uniform(0.3, 0.7), family=families[rng.integers(3)])
        major, minor = rand_group(), rand_group()
        Delta = rng.uniform(0.05, 0.6)
        eta = Delta * rng.uniform(0.1, 1.0)
        d_star = major.ideal_threshold()
        adv = []
        for s in (-1, 1):
            d = d_star + s * Delta
            a = push_advantage_exact(major, minor, d, eta)
            assert a == pytest.approx(
                eta * s * float(minor.tail_weight(d) - major.tail_weight(d)), abs=1e-12)
            adv.append(a)
        if theorem3(major, minor, Delta, eta).condition:
            n_true += 1
            assert min(adv) > 0
    assert 10 <= n_true <= 140  # the sweep exercised both outcomes


def test_every_theorem_refuses_a_step_larger_than_Delta():
    """The issue's case: Laplace, prior 0.3, Delta = 0.3, eta = 0.6. Eq. 15 holds, yet the exact push
    advantage is negative on both sides; with eta > Delta the checks must not predict MIME."""
    major = Group.make(-1.0, 1.0, 0.6, prior=0.3, family="laplace")
    minor = Group.make(-0.5, 0.5, 0.6, prior=0.3, family="laplace")
    big = theorem3(major, minor, 0.3, eta=0.6)
    assert big.condition and not big.applies and not big.predicts_mime
    assert big.assumptions["eta<=Delta"] is False
    assert all(exact_push_advantage(major, minor, s, 0.3, 0.6) < 0 for s in (-1, 1))
    assert theorem3(major, minor, 0.3, eta=0.3).predicts_mime          # eta = Delta is allowed
    assert all(exact_push_advantage(major, minor, s, 0.3, 0.3) > 0 for s in (-1, 1))
    g_major, g_minor = Group.make(-1, 1, 0.6), Group.make(-0.5, 0.5, 0.6)
    assert not theorem1(g_major, g_minor, 0.1, eta=0.2).applies
    assert not theorem2(g_major, Group.make(-0.47, 0.53, 0.6), 0.1, 1, eta=0.2).applies
    with pytest.raises(ValueError, match="eta must be > 0"):
        theorem3(major, minor, 0.3, eta=0.0)


def test_theorem_sweep_finds_first_order_errors_beyond_small_and_none_within():
    sweep = theorem_sweep(120, [0.1, 0.8], np.random.default_rng(1))
    assert set(sweep.theorem) == {"1", "2", "3"}
    wrong = sweep.predicts & (sweep.advantage <= 0)
    # Theorem 3 is exact for eta <= Delta: never wrong
    assert not wrong[sweep.theorem == "3"].any()
    # within the stated "small" regime the first-order theorems agree with the exact push
    small = sweep.applies & sweep.theorem.isin(["1", "2"])
    assert small.sum() > 10 and not wrong[small].any()
    # the check can fail: far outside it, Theorem 2 errs on some predicted configurations
    big = (sweep.theorem == "2") & (sweep.Delta == 0.8) & sweep.predicts
    assert wrong[big].sum() >= 1
    summ = sweep_summary(sweep).set_index(["theorem", "Delta"])
    assert summ.loc[("3", 0.8), "wrong"] == 0 and summ.loc[("2", 0.8), "wrong"] == wrong[big].sum()
    assert (summ.loc[("2", 0.8), "max_shortfall"] > 0) and np.isnan(summ.loc[("3", 0.8), "max_shortfall"])


def test_theorems_1_and_2_are_special_cases_of_theorem_3_in_their_regime():
    """Where Theorem 1 (2) applies and predicts MIME, eq. 15 (its half on the side of Theorem 2's
    h_{K-1}) holds too: within 'Delta small' the first-order theorems are special cases of the exact one."""
    rng = np.random.default_rng(8)
    checked = 0
    for _ in range(300):
        m, sigma = rng.uniform(0.6, 1.4), rng.uniform(0.4, 1.0)
        major = Group.make(-m, m, sigma)
        sd = sigma * rng.uniform(0.8, 1.2)
        Delta = SMALL * min(sigma, sd) * rng.uniform(0.3, 1.0)
        eta = Delta * rng.uniform(0.2, 1.0)
        gap = rng.uniform(-0.5, 0.5) * min(Delta, SMALL * min(sigma, sd) - Delta)
        minor = Group.make(gap - rng.uniform(0.2, 0.9) * m, gap + rng.uniform(0.2, 0.9) * m, sd)
        d = major.ideal_threshold()
        t = {s: float(s * (minor.tail_weight(d + s * Delta) - major.tail_weight(d + s * Delta)))
             for s in (-1, 1)}
        if abs(domain_gap(major, minor)) < 1e-12:
            chk = theorem1(major, minor, Delta, eta)
            if chk.predicts_mime:
                checked += 1
                assert theorem3(major, minor, Delta, eta).predicts_mime
        else:
            for side in (-1, 1):
                chk = theorem2(major, minor, Delta, side, eta)
                if chk.predicts_mime:
                    checked += 1
                    assert t[side] > 0, (side, t)
    assert checked > 30
