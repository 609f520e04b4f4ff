"""MIME (Chari et al., ECCV 2022) Section 3: the statistical origin of the MIME effect — groups,
the ideal threshold, overlap and domain gap, the push of one sample (eq. 10-11) and Theorems 1-3,
and the same quantities measured on samples of a learnt projection (§4.1, Table 1).

One-dimensional data, labels y in {1, 2}, a perceptron-like threshold classifier (Assumptions 1-2).
A *group* is a pair of class-conditional distributions (eq. 2, 7) with prior pi = Pr(y = 2).
A hyperplane h = [1 b]^T is a threshold d = -b: predict y = 2 iff x > d. Its majority-group
performance P^major{h} = |d - d_ideal^major| is the distance to the ideal hyperplane (eq. 5;
smaller is better).

The perceptron update (Assumption 2) on the normalised hyperplane moves only the offset, by a fixed
step eta, and only on a mistake: a false negative (y = 2, x <= d) moves d down, a false positive
(y = 1, x > d) moves d up. The expected move is therefore -eta * T(d), with T the signed tail weight
of eq. 14 — the "FNR - FPR" of the paper's proof sketches. Everything below follows from this.
numpy, scipy and pandas only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "FAMILIES", "SMALL", "Group", "majority_minority", "domain_gap",
    "expected_push_performance", "simulate_push", "push_advantage", "perceptron_threshold", "push_experiment",
    "TheoremCheck", "theorem1", "theorem2", "theorem3", "exact_push_advantage",
    "theorem_sweep", "sweep_summary", "theorem_checks",
    "empirical_overlap", "empirical_group", "table1",
]

FAMILIES = {"gaussian": stats.norm, "laplace": stats.laplace, "logistic": stats.logistic}

#: "Delta sufficiently small" (Theorem 1) and "delta + Delta small" (Theorem 2): their first-order
#: expansions T(d +- x) ~ +-l x are trusted for x <= SMALL * sigma_min, the smallest class standard
#: deviation of the two groups (a threshold we state; :func:`theorem_sweep` measures how often the
#: theorems err beyond and within it).
SMALL = 0.25


@dataclass(frozen=True)
class Group:
    """Class-conditional distributions of one group (MIME eq. 7): x|y=1 ~ p1, x|y=2 ~ p2.

    ``prior`` is pi = Pr(y = 2) (eq. 14). Class 2 is the positive class, to the right of class 1.
    """

    p1: stats.rv_continuous = field(repr=False)
    p2: stats.rv_continuous = field(repr=False)
    prior: float = 0.5
    name: str = ""
    family: str = "custom"
    params: tuple = ()

    def __post_init__(self):
        if not 0 < self.prior < 1:
            raise ValueError(f"prior must be in (0, 1), got {self.prior}")
        if not self.p1.median() < self.p2.median():
            raise ValueError("class y=2 must lie to the right of class y=1 (median of p2 > median of p1)")

    @classmethod
    def make(cls, mu1: float, mu2: float, sigma1: float, sigma2: float | None = None,
             prior: float = 0.5, family: str = "gaussian", name: str = "") -> "Group":
        """Location-scale family (``gaussian``, ``laplace``, ``logistic``) with the given means/scales.

        ``sigma`` is the standard deviation for every family, so groups of different families with the
        same parameters have the same first two moments.
        """
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
        sigma2 = sigma1 if sigma2 is None else sigma2
        if sigma1 <= 0 or sigma2 <= 0:
            raise ValueError(f"standard deviations must be > 0, got {sigma1}, {sigma2}")
        dist = FAMILIES[family]
        unit_sd = float(dist.std())
        return cls(dist(mu1, sigma1 / unit_sd), dist(mu2, sigma2 / unit_sd), prior, name, family,
                   (mu1, mu2, sigma1, sigma2))

    # --- eq. 4: ideal (maximum-likelihood / Bayes) threshold ------------------------------------
    def ideal_threshold(self) -> float:
        """d_ideal with (1 - pi) p1(d) = pi p2(d), the root nearest the class medians (eq. 4, 14).

        With equal priors this is eq. 4's equal-likelihood point; unequal priors give the Bayes
        threshold, which minimises the overlap below.
        """
        def g(x):
            return (np.log(self.prior) + self.p2.logpdf(x)) - (np.log1p(-self.prior) + self.p1.logpdf(x))
        lo, hi = self.p1.median(), self.p2.median()
        width = hi - lo
        with np.errstate(invalid="ignore"):  # -inf - -inf far in the tails is just "no root here"
            for k in range(60):  # widen geometrically: extreme priors can push the root far outside
                a, b = lo - (2**k - 1) * width, hi + (2**k - 1) * width
                if g(a) < 0 < g(b):
                    return float(optimize.brentq(g, a, b, xtol=1e-12))
        raise ValueError("no ideal threshold found between the class distributions")

    # --- eq. 8 and its unequal-prior generalisation ----------------------------------------------
    def error(self, d) -> np.ndarray:
        """Error of the threshold(s) d on this group: pi F2(d) + (1 - pi)(1 - F1(d))."""
        d = np.asarray(d, dtype=float)
        return self.prior * self.p2.cdf(d) + (1 - self.prior) * self.p1.sf(d)

    def overlap(self) -> float:
        """O (eq. 8): error of the ideal threshold; with pi = 0.5 exactly the paper's 0.5/0.5 form."""
        return float(self.error(self.ideal_threshold()))

    # --- eq. 14 ------------------------------------------------------------------------------------
    def tail_weight(self, d) -> np.ndarray:
        """T(d) = pi * int_{-inf}^{d} p2 - (1 - pi) * int_{d}^{inf} p1 (eq. 14) = Pr(FN) - Pr(FP)."""
        d = np.asarray(d, dtype=float)
        return self.prior * self.p2.cdf(d) - (1 - self.prior) * self.p1.sf(d)

    def likelihood_at(self, d: float) -> float:
        """l = pi p2(d) + (1 - pi) p1(d) = dT/dd: the likelihood that x lies on the hyperplane d."""
        return float(self.prior * self.p2.pdf(d) + (1 - self.prior) * self.p1.pdf(d))

    def sample(self, shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw (x, y) of the given shape; y in {1, 2} with Pr(y = 2) = prior."""
        y = np.where(rng.random(shape) < self.prior, 2, 1)
        x = np.where(y == 2, self.p2.rvs(size=shape, random_state=rng),
                     self.p1.rvs(size=shape, random_state=rng))
        return x, y

    def is_symmetric_gaussian(self) -> bool:
        """Key Results 1-2 setting: Gaussian classes with one shared variance and equal priors."""
        return bool(self.family == "gaussian" and self.prior == 0.5
                    and np.isclose(self.p1.std(), self.p2.std(), rtol=1e-9, atol=0.0))


def majority_minority(a: Group, b: Group) -> tuple[Group, Group]:
    """Order two groups as (majority, minority) by overlap (Definitions 2-3: the majority is the
    group the task is easier on, O_major < O_minor); equal overlaps are an error."""
    oa, ob = a.overlap(), b.overlap()
    if np.isclose(oa, ob, rtol=1e-12, atol=1e-15):
        raise ValueError(f"equal overlaps ({oa:.6g}): neither group is the majority")
    return (a, b) if oa < ob else (b, a)


def domain_gap(major: Group, minor: Group) -> float:
    """Signed MIME domain gap d_ideal^minor - d_ideal^major (Definition 5); delta = its magnitude."""
    return minor.ideal_threshold() - major.ideal_threshold()


# --- one push (eq. 10-11) ------------------------------------------------------------------------
def expected_push_performance(push: Group, major: Group, d_prev, eta: float) -> np.ndarray:
    """E_{x_K ~ push} P^major{h_K} in closed form, for h_{K-1} at threshold(s) ``d_prev``.

    h_K moves down by eta with probability Pr(FN) = pi F2(d), up with Pr(FP) = (1-pi)(1-F1(d)),
    and stays otherwise; P^major is the distance to the majority's ideal threshold (eq. 5).
    """
    d = np.asarray(d_prev, dtype=float)
    target = major.ideal_threshold()
    p_fn = push.prior * push.p2.cdf(d)
    p_fp = (1 - push.prior) * push.p1.sf(d)
    return (p_fn * np.abs(d - eta - target) + p_fp * np.abs(d + eta - target)
            + (1 - p_fn - p_fp) * np.abs(d - target))


def _perceptron_step(d: np.ndarray, x: np.ndarray, y: np.ndarray, eta) -> np.ndarray:
    """One perceptron update of the offset on samples (x, y); vectorised over any shape."""
    return d - eta * ((y == 2) & (x <= d)) + eta * ((y == 1) & (x > d))


def simulate_push(push: Group, major: Group, d_prev, eta: float, n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Monte Carlo of eq. 10-11: ``n`` independent pushes per entry of ``d_prev``; returns P^major
    of each h_K, shape ``d_prev.shape + (n,)``."""
    d = np.asarray(d_prev, dtype=float)[..., None]
    x, y = push.sample(d.shape[:-1] + (n,), rng)
    return np.abs(_perceptron_step(d, x, y, eta) - major.ideal_threshold())


def push_advantage(major: Group, minor: Group, side: int, Delta: float, eta: float, n: int,
                   rng: np.random.Generator) -> tuple[float, float]:
    """Monte Carlo E P^major{h_K^+} - E P^major{h_K^-} (> 0: the minority push is better, eq. 11)
    for h_{K-1} at d_ideal^major + side * Delta, from ``n`` pushes of each kind; with its s.e."""
    d = np.array([major.ideal_threshold() + side * Delta])
    plus = simulate_push(major, major, d, eta, n, rng)
    minus = simulate_push(minor, major, d, eta, n, rng)
    return float(plus.mean() - minus.mean()), float(np.sqrt(plus.var() / plus.size + minus.var() / minus.size))


def perceptron_threshold(x: np.ndarray, y: np.ndarray, eta: float, d0, epochs: int = 1,
                         decay: float = 0.0) -> np.ndarray:
    """Learn thresholds with the perceptron, one independent learner per row of ``x`` (trials, n).

    Samples are visited in column order for ``epochs`` passes; the step at update t (counting every
    visited sample from 1) is eta / t**decay (decay=0: the fixed step of the theorems).
    """
    x = np.atleast_2d(x)
    y = np.atleast_2d(y)
    d = np.broadcast_to(np.asarray(d0, dtype=float), x.shape[:1]).copy()
    t = 0
    for _ in range(epochs):
        for j in range(x.shape[1]):
            t += 1
            d = _perceptron_step(d, x[:, j], y[:, j], eta / t**decay)
    return d


def push_experiment(major: Group, minor: Group, K: int, trials: int, eta: float, d0: float,
                    rng: np.random.Generator) -> pd.DataFrame:
    """The experiment of Fig. 2: learn h_{K-1} on K-1 majority samples, then push one more sample
    from the majority (h_K^+) or from the minority (h_K^-) and measure P^major of each.

    Returns one row per trial: ``d_prev``, ``P_prev`` (= Delta), Monte Carlo ``P_plus``/``P_minus``
    and their closed-form conditional expectations ``E_plus``/``E_minus``.
    """
    x, y = major.sample((trials, K - 1), rng)
    d_prev = perceptron_threshold(x, y, eta, d0)
    target = major.ideal_threshold()
    return pd.DataFrame({
        "d_prev": d_prev,
        "P_prev": np.abs(d_prev - target),
        "P_plus": simulate_push(major, major, d_prev, eta, 1, rng)[:, 0],
        "P_minus": simulate_push(minor, major, d_prev, eta, 1, rng)[:, 0],
        "E_plus": expected_push_performance(major, major, d_prev, eta),
        "E_minus": expected_push_performance(minor, major, d_prev, eta),
    })


# --- the theorems ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TheoremCheck:
    """Whether a theorem's assumptions hold and whether it then predicts the MIME effect."""

    theorem: str
    assumptions: dict
    condition: bool
    detail: dict

    @property
    def applies(self) -> bool:
        return all(self.assumptions.values())

    @property
    def predicts_mime(self) -> bool:
        return self.applies and self.condition


def _sigma_min(*groups: Group) -> float:
    return float(min(min(g.p1.std(), g.p2.std()) for g in groups))


def _step_assumptions(Delta: float, eta: float) -> dict:
    """The update's exactness: a fixed step eta <= Delta never crosses the ideal hyperplane from
    distance Delta, so P moves by exactly -+eta (eq. 10); eta > Delta breaks every theorem."""
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    return {"Delta>0": Delta > 0, "eta<=Delta": eta <= Delta}


def theorem1(major: Group, minor: Group, Delta: float, eta: float, gap_tol: float = 1e-9) -> TheoremCheck:
    """Theorem 1 (no domain gap): symmetric Gaussian groups with one ideal hyperplane and
    O_major < O_minor. For small Delta, E P{h_K^-} < E P{h_K^+} (eq. 11).

    A **first-order reconstruction**: the paper only says f "depends on means and SDs". The proof
    sketch reduces the gain of a push to Delta times the likelihood l of the ideal hyperplane
    (T(d_ideal +- Delta) ~ +-l Delta); "variances not very large" is the requirement that the larger
    overlap comes with the larger likelihood, l_minor > l_major, the condition checked here. The
    assumptions add the step (eta <= Delta, :func:`_step_assumptions`) and "Delta small"
    (Delta <= :data:`SMALL` * sigma_min).
    """
    d = major.ideal_threshold()
    l_major, l_minor = major.likelihood_at(d), minor.likelihood_at(d)
    assumptions = {
        "symmetric_gaussian": major.is_symmetric_gaussian() and minor.is_symmetric_gaussian(),
        "no_domain_gap": abs(domain_gap(major, minor)) <= gap_tol,
        "O_major<O_minor": major.overlap() < minor.overlap(),
        **_step_assumptions(Delta, eta),
        "Delta_small": Delta <= SMALL * _sigma_min(major, minor),
    }
    return TheoremCheck("1", {k: bool(v) for k, v in assumptions.items()}, bool(l_minor > l_major),
                        {"l_major": l_major, "l_minor": l_minor, "O_major": major.overlap(),
                         "O_minor": minor.overlap()})


def theorem2(major: Group, minor: Group, Delta: float, side: int, eta: float) -> TheoremCheck:
    """Theorem 2 (domain gap delta < Delta), h_{K-1} at d_ideal^major + side * Delta.

    A **first-order reconstruction** like :func:`theorem1`. Case 1 (h_{K-1} and h_ideal^minor in
    different halfspaces of h_ideal^major): the minority's pull is l_minor (Delta + delta) against
    the majority's l_major Delta. Case 2 (same halfspace): eq. 12, O_major / O_minor <
    (1 - delta/Delta) f with f = (l_minor / O_minor) / (l_major / O_major), i.e.
    l_minor (Delta - delta) > l_major Delta. The assumptions add eta <= Delta and "delta + Delta
    small" (<= :data:`SMALL` * sigma_min).
    """
    if side not in (-1, 1):
        raise ValueError(f"side must be -1 or +1, got {side}")
    gap = domain_gap(major, minor)
    delta = abs(gap)
    O_major, O_minor = major.overlap(), minor.overlap()
    l_major = major.likelihood_at(major.ideal_threshold())
    l_minor = minor.likelihood_at(minor.ideal_threshold())
    f = (l_minor / O_minor) / (l_major / O_major)
    same = gap * side > 0
    if same:
        condition = O_major / O_minor < (1 - delta / Delta) * f
    else:
        condition = l_minor * (Delta + delta) > l_major * Delta
    assumptions = {
        "symmetric_gaussian": major.is_symmetric_gaussian() and minor.is_symmetric_gaussian(),
        "domain_gap>0": delta > 0, "delta<Delta": delta < Delta,
        **_step_assumptions(Delta, eta),
        "delta+Delta_small": delta + Delta <= SMALL * _sigma_min(major, minor),
    }
    return TheoremCheck("2", {k: bool(v) for k, v in assumptions.items()}, bool(condition),
                        {"case": 2 if same else 1, "delta": delta, "f": f, "O_major": O_major,
                         "O_minor": O_minor, "bound": (1 - delta / Delta) * f})


def theorem3(major: Group, minor: Group, Delta: float, eta: float) -> TheoremCheck:
    """Theorem 3 (general distributions, unequal priors), eq. 15:
    min{T^minor(d+Delta), -T^minor(d-Delta)} > max{T^major(d+Delta), -T^major(d-Delta)}
    at d = d_ideal^major. Under the fixed-step update with eta <= Delta (an assumption of the check)
    it guarantees a larger expected improvement from a minority push on *either* side of the ideal
    hyperplane: E P^+ - E P^- = eta (T^minor - T^major)(d + Delta) above, eta (T^major -
    T^minor)(d - Delta) below (:func:`exact_push_advantage`).
    """
    d = major.ideal_threshold()
    lhs = min(float(minor.tail_weight(d + Delta)), float(-minor.tail_weight(d - Delta)))
    rhs = max(float(major.tail_weight(d + Delta)), float(-major.tail_weight(d - Delta)))
    return TheoremCheck("3", {k: bool(v) for k, v in _step_assumptions(Delta, eta).items()},
                        bool(lhs > rhs), {"min_minor": lhs, "max_major": rhs})


def exact_push_advantage(major: Group, minor: Group, side: int, Delta: float, eta: float) -> float:
    """E P^major{h_K^+} - E P^major{h_K^-} in closed form (:func:`expected_push_performance`) for
    h_{K-1} at d_ideal^major + side * Delta; > 0: the minority push is better. Exact for any eta."""
    d = major.ideal_threshold() + side * Delta
    return float(expected_push_performance(major, major, d, eta) - expected_push_performance(minor, major, d, eta))


def theorem_sweep(n: int, Deltas, rng: np.random.Generator, eta_frac: float = 0.5) -> pd.DataFrame:
    """How often Theorems 1-3 predict MIME where the exact push (:func:`exact_push_advantage`) has
    none, over ``n`` random symmetric Gaussian configurations per Delta, with eta = eta_frac * Delta.

    Majority: class means +-m (m ~ U(0.6, 1.4)), sd sigma ~ U(0.4, 1.0); minority: means c +- r m
    (r ~ U(0.2, 1): more overlap), sd sigma * U(0.7, 1.3), centre c = 0 (Theorem 1) or a gap
    ~ U(0, Delta) with a random sign (Theorem 2, side random; Theorem 3 judged on both). Per row:
    the theorem's condition (``predicts``, the "small" assumptions ignored so the sweep shows where
    they matter), whether its assumptions hold, ``scale`` = Delta / sigma_min (Theorem 2:
    (delta + Delta) / sigma_min, the quantity its "small" assumption bounds), the exact advantage on the sides it speaks about
    (``advantage``, the smaller side) and ``shortfall`` = -advantage / (eta |T^major(d)|), the loss
    relative to the majority push's own pull, where a prediction is wrong.
    """
    rows = []
    for Delta in Deltas:
        eta = eta_frac * Delta
        for i in range(n):
            m, sigma = rng.uniform(0.6, 1.4), rng.uniform(0.4, 1.0)
            r, s_minor, sign, side = rng.uniform(0.2, 1.0), sigma * rng.uniform(0.7, 1.3), rng.choice([-1, 1]), int(rng.choice([-1, 1]))
            major = Group.make(-m, m, sigma)
            for theorem in ("1", "2"):
                c = 0.0 if theorem == "1" else sign * rng.uniform(0.0, Delta)
                minor = Group.make(c - r * m, c + r * m, s_minor)
                if minor.overlap() <= major.overlap():
                    continue
                if theorem == "1":
                    checks = [("1", theorem1(major, minor, Delta, eta), (-1, 1))]
                else:
                    checks = [("2", theorem2(major, minor, Delta, side, eta), (side,))]
                checks.append(("3", theorem3(major, minor, Delta, eta), (-1, 1)))
                for name, chk, sides in checks:
                    adv = min(exact_push_advantage(major, minor, sd, Delta, eta) for sd in sides)
                    pull = min(abs(float(major.tail_weight(major.ideal_threshold() + sd * Delta))) for sd in sides)
                    delta = abs(domain_gap(major, minor))
                    rows.append({"theorem": name, "setting": f"theorem {theorem}", "Delta": float(Delta),
                                 "config": i, "delta": delta,
                                 "scale": (Delta + (delta if name == "2" else 0.0)) / _sigma_min(major, minor),
                                 "predicts": chk.condition, "applies": chk.applies, "advantage": adv,
                                 "shortfall": max(0.0, -adv) / (eta * pull) if pull > 0 else np.nan})
    return pd.DataFrame(rows)


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per theorem and Delta: configurations, predictions, the share of predictions the exact push
    contradicts (``wrong_rate``) and the largest shortfall among the wrong ones."""
    wrong = sweep.predicts & (sweep.advantage <= 0)
    g = sweep.assign(wrong=wrong, wrong_shortfall=sweep.shortfall.where(wrong))
    out = g.groupby(["theorem", "Delta"]).agg(configs=("predicts", "size"), predicted=("predicts", "sum"),
                                               wrong=("wrong", "sum"),
                                               max_shortfall=("wrong_shortfall", "max")).reset_index()
    out["wrong_rate"] = out.wrong / out.predicted.where(out.predicted > 0)
    return out


def theorem_checks(cases, Delta: float, eta: float, pushes: int, rng: np.random.Generator) -> pd.DataFrame:
    """Put configurations through their theorem and through a Monte Carlo of the push.

    ``cases`` holds tuples ``(key, name, theorem, minor, major, side)``: ``theorem`` is
    :func:`theorem1`, :func:`theorem2` (which needs ``side``) or :func:`theorem3`; ``side`` = None
    checks both sides of the ideal hyperplane. Per row: the theorem's assumptions, its condition and
    prediction, and per side (``lower``: h_{K-1} at d* - Delta, ``upper``: d* + Delta) the simulated
    (E P+ - E P-)/eta from ``pushes`` pushes of each kind with its standard error (> 0: the minority
    push is better for the majority); ``worst`` is the smaller side.
    """
    rows = []
    for key, name, theorem, minor, major, side in cases:
        check = theorem(major, minor, Delta, eta=eta) if side is None else theorem(major, minor, Delta, side, eta=eta)
        row = {"key": key, "configuration": name, "assumptions hold": check.applies,
               "condition holds": check.condition, "theorem predicts MIME": check.predicts_mime}
        for s in ((-1, 1) if side is None else (side,)):
            adv, se = push_advantage(major, minor, s, Delta, eta, pushes, rng)
            tag = "lower" if s < 0 else "upper"
            row[f"adv_{tag}"], row[f"se_{tag}"] = adv / eta, se / eta
        rows.append(row)
    out = pd.DataFrame(rows)
    for tag in ("lower", "upper"):
        for c in ("adv", "se"):
            if f"{c}_{tag}" not in out:
                out[f"{c}_{tag}"] = np.nan
    out["worst"] = out[["adv_lower", "adv_upper"]].min(axis=1)
    return out


# --- the theory's quantities on samples of a learnt projection (§4.1, Table 1) ----------------
def empirical_overlap(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Eq. 8 on samples: min over thresholds d of 0.5 Pr(x <= d | y=2) + 0.5 Pr(x > d | y=1), with
    classes y in {0, 1} standing for the paper's {1, 2}; returns (overlap, ideal threshold).

    These are the paper's equal weights (as its Table 1), whatever the class balance; the
    prior-weighted generalisation is :meth:`Group.overlap`."""
    x, y = np.asarray(x, float), np.asarray(y)
    if not ((y == 0).any() and (y == 1).any()):
        raise ValueError("both classes are needed to measure overlap")
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    pos_below = np.concatenate([[0], np.cumsum(ys == 1)]) / (ys == 1).sum()
    neg_above = 1 - np.concatenate([[0], np.cumsum(ys == 0)]) / (ys == 0).sum()
    err = 0.5 * pos_below + 0.5 * neg_above  # threshold after the first i sorted samples
    i = int(np.argmin(err))
    cut = np.concatenate([[xs[0] - 1], (xs[:-1] + xs[1:]) / 2, [xs[-1] + 1]])
    return float(err[i]), float(cut[i])


def empirical_group(x: np.ndarray, y: np.ndarray, bins: int = 40, name: str = "") -> Group:
    """A :class:`Group` from projected samples (histogram densities, prior = share of y = 1)."""
    x, y = np.asarray(x, float), np.asarray(y)
    edges = np.histogram_bin_edges(x, bins=bins)
    h = [stats.rv_histogram(np.histogram(x[y == c], bins=edges), density=True) for c in (0, 1)]
    return Group(h[0], h[1], float(np.clip((y == 1).mean(), 1e-6, 1 - 1e-6)), name, "empirical")


def table1(x: np.ndarray, y: np.ndarray, a: np.ndarray, majority: int) -> dict:
    """Table 1 of MIME on projected features: majority/minority overlap (eq. 8), domain gap between the
    groups' ideal thresholds in units of the projection's standard deviation, and the assumption
    checks: O_major < O_minor, delta small against the spread, and Gaussianity of each class
    (Kolmogorov-Smirnov distance to a fitted normal; 0 = Gaussian)."""
    x = np.asarray(x, float) / np.std(x)
    out = {}
    for role, g in (("major", majority), ("minor", 1 - majority)):
        m = a == g
        out[f"O_{role}"], out[f"d_{role}"] = empirical_overlap(x[m], y[m])
        out[f"ks_{role}"] = max(stats.kstest(x[m & (y == c)], "norm",
                                             args=(x[m & (y == c)].mean(), x[m & (y == c)].std())).statistic
                                for c in (0, 1))
    out["domain_gap"] = abs(out["d_major"] - out["d_minor"])
    out["O_major<O_minor"] = bool(out["O_major"] < out["O_minor"])
    return out
