"""MIME (Chari et al., ECCV 2022): Section 3, the statistical origin of the MIME effect, and the
Section 4 experiment on real data (:func:`beta_sweep` and the Table 1 measurements, at the end).

One-dimensional data, labels y in {1, 2}, a perceptron-like threshold classifier (Assumptions 1-2).
A *group* is a pair of class-conditional distributions (eq. 2, 7) with prior pi = Pr(y = 2).
A hyperplane h = [1 b]^T is a threshold d = -b: predict y = 2 iff x > d. Its majority-group
performance P^major{h} = |d - d_ideal^major| is the distance to the ideal hyperplane (eq. 5;
smaller is better).

The perceptron update (Assumption 2) on the normalised hyperplane moves only the offset, by a fixed
step eta, and only on a mistake: a false negative (y = 2, x <= d) moves d down, a false positive
(y = 1, x > d) moves d up. The expected move is therefore -eta * T(d), with T the signed tail weight
of eq. 14 — the "FNR - FPR" of the paper's proof sketches. Everything below follows from this.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .stats import paired_ttest

__all__ = [
    "beta_sweep", "group_difficulty", "decision_projection", "empirical_overlap", "empirical_group",
    "table1", "image_recipe", "image_fit_kwargs", "IMAGE_RECIPES", "tabular_recipe", "class_balanced", "beta_indices", "linear_probe_sweep",
    "engine_inputs",
    "check_parameters",
    "Group", "majority_minority", "domain_gap", "push_advantage", "expected_push_performance", "simulate_push", "perceptron_threshold",
    "push_experiment", "mime_curve", "gain_by_start", "erm_threshold", "symmetric_starts", "threshold_decomposition",
    "LEARNERS", "mime_summary", "theorem1", "theorem2", "theorem3", "SMALL",
    "exact_push_advantage", "theorem_sweep", "sweep_summary",
    "TheoremCheck", "existence_map", "theorem_checks", "heldout_gains", "heldout_interior_vs_end", "max_gain",
    "signflip_null",
    "claims", "real_verdicts", "CURVE_SETTINGS",
]

FAMILIES = {"gaussian": stats.norm, "laplace": stats.laplace, "logistic": stats.logistic}

#: "Delta sufficiently small" (Theorem 1) and "delta + Delta small" (Theorem 2): their first-order
#: expansions T(d +- x) ~ +-l x are trusted for x <= SMALL * sigma_min, the smallest class standard
#: deviation of the two groups (a threshold we state; :func:`theorem_sweep` measures how often the
#: theorems err beyond and within it).
SMALL = 0.25


def check_parameters(values: dict) -> None:
    """Conditions across the MIME chapter's parameters, checked before any kernel starts."""
    from .errors import ParameterError

    for name in ("betas", "map_betas", "emp_betas"):
        b = values.get(name)
        if b is not None and (0.0 not in b or max(b) <= 0 or len(set(b)) != len(b)):
            raise ParameterError(f"parameter '{name}' of chapter 'mime': got {b}; allowed: distinct "
                                 "fractions in [0, 1] including 0 and at least one value above 0")
    if values.get("minor_sep", 0) >= values.get("major_sep", float("inf")):
        raise ParameterError(f"parameter 'minor_sep' of chapter 'mime': got {values['minor_sep']}; "
                             f"allowed: a value below major_sep = {values['major_sep']} (the minority "
                             "is the group with more class overlap)")
    if len(set(values.get("datasets", []))) != len(values.get("datasets", [])):
        raise ParameterError(f"parameter 'datasets' of chapter 'mime': got {values['datasets']}; "
                             "allowed: distinct dataset names")


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


# --- the MIME curve (Fig. 5 / 6b analog) ----------------------------------------------------------
def erm_threshold(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The empirical-risk minimiser of the threshold classifier (predict 2 iff x > d), one per row of
    ``x`` (trials, n): the midpoint between consecutive sorted samples with the fewest training
    errors; among tied minimisers the lower median one (ends: one sample spacing outside the data).
    It has no start point and no step: the learner of the curve whose answer depends on the data alone.
    """
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(y)
    order = np.argsort(x, axis=1, kind="stable")
    xs, ys = np.take_along_axis(x, order, 1), np.take_along_axis(y, order, 1)
    n = x.shape[1]
    # d below the j-th sorted sample (j = 0..n): false negatives = y == 2 among the first j,
    # false positives = y == 1 among the rest
    fn = np.concatenate([np.zeros((len(x), 1)), np.cumsum(ys == 2, axis=1)], axis=1)
    fp = (ys == 1).sum(axis=1, keepdims=True) - np.concatenate(
        [np.zeros((len(x), 1)), np.cumsum(ys == 1, axis=1)], axis=1)
    errors = fn + fp
    spacing = np.maximum((xs[:, -1] - xs[:, 0]) / max(n - 1, 1), 1e-12)[:, None]
    cuts = np.concatenate([xs[:, :1] - spacing, (xs[:, 1:] + xs[:, :-1]) / 2, xs[:, -1:] + spacing], axis=1)
    best = errors == errors.min(axis=1, keepdims=True)
    k = best.sum(axis=1)
    rank = np.cumsum(best, axis=1)
    pick = best & (rank == ((k - 1) // 2 + 1)[:, None])
    return cuts[pick]


LEARNERS = ("perceptron", "erm")


def mime_curve(major: Group, minor: Group, n_train: int, betas, trials: int, eta: float,
               epochs: int, d0, rng: np.random.Generator, decay: float = 0.5,
               learner: str = "perceptron") -> pd.DataFrame:
    """Majority/minority accuracy of a threshold learnt on ``n_train`` samples of which a fraction
    beta comes from the minority (minority samples *replace* majority samples, MIME §4.2).

    ``learner``: ``"perceptron"`` (the theorems' learner, step ``eta`` / t**``decay``, ``epochs``
    passes, from ``d0``: one start for every trial, or one per trial — the same start for every beta
    of a trial) or ``"erm"`` (:func:`erm_threshold`, start-free; ``eta``, ``epochs``, ``d0`` unused).

    Accuracies are exact (1 - error of the learnt threshold on each group's distribution), so the
    only noise is the training sample. Within a trial the training sets of different betas share
    their samples (minority samples replace a suffix of the majority ones), so differences between
    betas are paired.
    """
    if learner not in LEARNERS:
        raise ValueError(f"mime_curve: learner got {learner!r}; allowed: {', '.join(LEARNERS)}")
    betas = list(betas)
    d0 = np.asarray(d0, dtype=float)
    if d0.ndim and d0.shape != (trials,):
        raise ValueError(f"mime_curve: d0 got shape {d0.shape}; allowed: a number or one start per trial ({trials})")
    seeds = rng.integers(0, 2**63, size=trials)
    # each trial draws n_train samples of each group once; beta takes prefixes, so the training sets of
    # one trial differ between betas only by which majority samples are replaced
    pools = [(major.sample(n_train, np.random.default_rng([s, 0])),
              minor.sample(n_train, np.random.default_rng([s, 1])),
              np.random.default_rng([s, 2]).permutation(n_train)) for s in seeds]
    rows = []
    for beta in betas:
        n_minor = int(round(beta * n_train))
        xs, ys = np.empty((trials, n_train)), np.empty((trials, n_train), dtype=int)
        for i, ((xa, ya), (xb, yb), order) in enumerate(pools):
            xs[i] = np.concatenate([xa[:n_train - n_minor], xb[:n_minor]])[order]
            ys[i] = np.concatenate([ya[:n_train - n_minor], yb[:n_minor]])[order]
        d = (perceptron_threshold(xs, ys, eta, d0, epochs, decay) if learner == "perceptron"
             else erm_threshold(xs, ys))
        rows.append(pd.DataFrame({"beta": float(beta), "trial": np.arange(trials), "threshold": d,
                                  "majority_acc": 1 - major.error(d),
                                  "minority_acc": 1 - minor.error(d),
                                  "d0": np.broadcast_to(d0, (trials,)) if learner == "perceptron" else np.nan}))
    return pd.concat(rows, ignore_index=True)


def gain_by_start(curve: pd.DataFrame, major: Group, bins: int = 6) -> pd.DataFrame:
    """The perceptron's gain in majority accuracy from beta = 0 to beta = 1 (pp, paired within a
    trial) against where the trial started: the start's offset ``d0 - d*`` from the majority's ideal
    threshold, in ``bins`` equal-count bins. Per bin: the mean offset, the mean gain, its standard
    error and a 95% t interval over the bin's trials. A gain that comes from where a start leaves the
    threshold shows up as a gain that grows with |offset|."""
    from scipy import stats as st

    wide = curve.pivot(index="trial", columns="beta", values="majority_acc")
    lo, hi = min(wide.columns), max(wide.columns)
    d0 = curve[curve.beta == lo].set_index("trial").d0.loc[wide.index]
    if d0.isna().any():
        raise ValueError("gain_by_start needs the perceptron's per-trial starts (column d0)")
    df = pd.DataFrame({"offset": d0 - major.ideal_threshold(), "gain_pp": 100 * (wide[hi] - wide[lo])})
    df["bin"] = pd.qcut(df.offset, bins, labels=False, duplicates="drop")
    out = df.groupby("bin").agg(offset=("offset", "mean"), gain_pp=("gain_pp", "mean"),
                                sd=("gain_pp", "std"), n=("gain_pp", "size")).reset_index()
    out["se_pp"] = out.sd / np.sqrt(out.n)
    half = st.t.ppf(0.975, out.n - 1) * out.se_pp
    out["ci_low"], out["ci_high"] = out.gain_pp - half, out.gain_pp + half
    return out.drop(columns="sd")


def symmetric_starts(major: Group, trials: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Perceptron starts d* + U(-spread, spread) around the majority's ideal threshold, one per trial:
    no side favoured, so a gain cannot come from where a one-sided start leaves the threshold."""
    return major.ideal_threshold() + rng.uniform(-spread, spread, size=trials)


def threshold_decomposition(curve: pd.DataFrame, major: Group) -> pd.DataFrame:
    """Per beta (and ``setting``/``learner`` columns if present): the learnt threshold's bias
    (mean − d*), its standard deviation, root mean squared error, and the majority accuracy. The
    majority's error is a function of the threshold alone, so a gain in accuracy is a smaller bias,
    a smaller spread, or both."""
    d_star = major.ideal_threshold()
    keys = [c for c in ("setting", "learner") if c in curve] + ["beta"]
    g = curve.assign(err=curve.threshold - d_star).groupby(keys, sort=False)
    out = g.agg(bias=("err", "mean"), sd=("err", "std"), majority_acc=("majority_acc", "mean")).reset_index()
    out["rmse"] = np.sqrt(g["err"].apply(lambda e: float(np.mean(e ** 2))).to_numpy())
    return out


def mime_summary(curve: pd.DataFrame, acc: str = "majority_acc") -> dict:
    """Table 2 of MIME, and an honest version of it.

    The paper's statistics: trials whose majority accuracy at some beta > 0 beats beta = 0, and the
    mean of that best gain (percentage points). Picking the best of several noisy betas per trial
    finds a "gain" even without any effect, so we add a split-sample estimate: beta* maximises the
    mean curve on the even-numbered trials, and the gain at beta* with a one-sided paired t-test
    (:func:`fairbook.stats.paired_ttest`) is measured on the odd-numbered trials only, and so are
    the two accuracies reported.
    """
    wide = _wide(curve, acc)
    best_gain = wide.drop(columns=0.0).max(axis=1) - wide[0.0]
    test = wide.iloc[1::2]
    beta_star, gain = heldout_gains(curve, acc)
    gain = gain / 100
    p = paired_ttest(test[beta_star], test[0.0], "greater").pvalue if len(test) > 1 else float("nan")
    return {
        "trials_with_gain": int((best_gain > 0).sum()), "trials": int(len(wide)),
        "mean_best_gain_pp": float(100 * best_gain.mean()),
        "beta_star": beta_star, "heldout_trials": int(len(test)),
        "heldout_gain_pp": float(100 * gain.mean()),
        "heldout_gain_se_pp": float(100 * gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else float("nan"),
        "p_value": float(p),
        "acc_beta0": float(test[0.0].mean()), "acc_beta_star": float(test[beta_star].mean()),
    }


def _wide(curve: pd.DataFrame, acc: str) -> pd.DataFrame:
    """trial x beta table of ``acc`` (``DataFrame.pivot`` without its cost; duplicates are an error)."""
    trials, ti = np.unique(curve["trial"].to_numpy(), return_inverse=True)
    betas, bi = np.unique(curve["beta"].to_numpy(dtype=float), return_inverse=True)
    if 0.0 not in betas or betas.size < 2:
        raise ValueError("the curve needs beta = 0 and at least one beta > 0")
    if np.unique(ti * betas.size + bi).size != len(curve):
        raise ValueError("the curve has more than one row for some (trial, beta)")
    wide = np.full((trials.size, betas.size), np.nan)
    wide[ti, bi] = curve[acc].to_numpy(dtype=float)
    return pd.DataFrame(wide, index=pd.Index(trials, name="trial"), columns=pd.Index(betas, name="beta"))


def heldout_gains(curve: pd.DataFrame, acc: str = "majority_acc") -> tuple[float, pd.Series]:
    """The split-sample estimate of :func:`mime_summary`: beta* maximises the mean curve over
    beta > 0 on the even-numbered trials; returns beta* and, per odd-numbered (held-out) trial, the
    gain acc(beta*) - acc(0) in percentage points."""
    wide = _wide(curve, acc)
    beta_star = float(wide.iloc[0::2].drop(columns=0.0).mean().idxmax())
    test = wide.iloc[1::2]
    return beta_star, 100 * (test[beta_star] - test[0.0])


def heldout_interior_vs_end(curve: pd.DataFrame, acc: str = "majority_acc") -> tuple[float, pd.Series]:
    """Interior peak or end point: beta* maximises the mean curve over 0 < beta < 1 on the
    even-numbered trials; returns beta* and, per odd-numbered trial, acc(beta*) - acc(1) in pp."""
    wide = _wide(curve, acc)
    inner = [b for b in wide.columns if 0 < b < 1]
    if 1.0 not in wide.columns or not inner:
        raise ValueError("heldout_interior_vs_end needs beta = 1 and a beta strictly between 0 and 1")
    beta_star = float(wide.iloc[0::2][inner].mean().idxmax())
    test = wide.iloc[1::2]
    return beta_star, 100 * (test[beta_star] - test[1.0])


def max_gain(curve: pd.DataFrame, acc: str = "majority_acc") -> float:
    """max over beta > 0 of the mean gain acc(beta) - acc(0) over all trials (percentage points): the
    best point of the mean MIME curve above its beta = 0 value."""
    wide = _wide(curve, acc)
    return float(100 * (wide.drop(columns=0.0).sub(wide[0.0], axis=0)).mean().max())


def signflip_null(curve: pd.DataFrame, draws: int, rng: np.random.Generator,
                  acc: str = "majority_acc") -> np.ndarray:
    """Null distribution of :func:`max_gain` by a paired permutation (sign-flip) test.

    Under "the minority fraction has no effect on a trial's majority accuracy" the labels beta = 0
    and beta > 0 of one trial are exchangeable, so each trial's vector of gains
    acc(beta) - acc(0) is as likely as its negative; each draw flips the sign of every trial's
    vector with probability 1/2 (all betas of a trial together, keeping their correlation) and
    recomputes the max over beta of the mean gain. Selecting the best beta is part of the
    statistic, so the best-of-several-betas inflation is in the null too. Trials whose gains are
    negative under the truth make the test conservative, never anti-conservative.
    """
    wide = _wide(curve, acc)
    g = 100 * wide.drop(columns=0.0).sub(wide[0.0], axis=0).to_numpy()
    signs = rng.choice([-1.0, 1.0], size=(int(draws), g.shape[0]))
    return (signs @ g / g.shape[0]).max(axis=1)


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


def existence_map(major: Group, separations, gaps, Delta: float, eta: float, pushes: int,
                  curve: dict, rng: np.random.Generator) -> pd.DataFrame:
    """Where the theorems predict MIME and where simulation finds it, over a grid of minority groups.

    Each minority has the majority's family, prior and standard deviations, class means
    ``c +- sep`` with ``c`` the majority's centre shifted by ``gap``; smaller ``sep`` means more
    overlap. Per cell: the overlap ratio O_major/O_minor, the domain gap, the predictions of
    Theorem 3 (eq. 15) and of Theorems 1/2 (both sides of the ideal hyperplane), the simulated
    one-push advantage min over sides of E P^+ - E P^- (``pushes`` Monte Carlo pushes per side at
    distance ``Delta``), and the end-to-end MIME gain of :func:`mime_curve` (``curve`` holds its
    keyword arguments) as estimated by :func:`mime_summary` (held-out gain at beta*, p-value, and
    ``curve_p_holm`` corrected over the map's cells; ``curve_mime`` = a gain with Holm p < 0.05).
    """
    mu1, mu2, s1, s2 = major.params
    centre = (mu1 + mu2) / 2
    rows = []
    for sep in separations:
        for gap in gaps:
            minor = Group.make(centre + gap - sep, centre + gap + sep, s1, s2, major.prior, major.family)
            adv = [push_advantage(major, minor, side, Delta, eta, pushes, rng)[0] for side in (-1, 1)]
            if abs(gap) < 1e-12:
                theory12 = theorem1(major, minor, Delta, eta).predicts_mime
            else:
                theory12 = all(theorem2(major, minor, Delta, side, eta).predicts_mime for side in (-1, 1))
            summary = mime_summary(mime_curve(major, minor, rng=rng, **curve))
            rows.append({"separation": float(sep), "gap": float(gap),
                         "overlap_ratio": major.overlap() / minor.overlap(),
                         "delta": abs(domain_gap(major, minor)),
                         "theorem3": theorem3(major, minor, Delta, eta).predicts_mime,
                         "theorem1_2": bool(theory12),
                         "push_advantage": float(min(adv)), "push_mime": bool(min(adv) > 0),
                         "curve_gain_pp": summary["heldout_gain_pp"],
                         "curve_p_value": summary["p_value"],
                         "curve_beta_star": summary["beta_star"]})
    out = pd.DataFrame(rows)
    # one test per cell: Holm over the map's cells before a cell counts as an end-to-end gain
    from .claims import holm
    out["curve_p_holm"] = holm(out.curve_p_value.fillna(1.0))
    out["curve_mime"] = (out.curve_p_holm < 0.05) & (out.curve_gain_pp > 0)
    return out


# --- Section 4: the MIME effect on real data ------------------------------------------------------
def engine_inputs(ds):
    """(inputs, targets) for the engine: arrays of a ``Dataset``, or a lazy image table itself."""
    return (ds.X, ds.y) if hasattr(ds, "X") else (ds, ds.y)


#: The authors' image recipes (their public notebooks): FairFace (DS-1) and UTKFace (DS-3).
IMAGE_RECIPES = {"fairface": dict(lr=5e-4, weight_decay=0.08, t_max=30, epochs=35, batch_size=30),
                 "utkface": dict(lr=6e-4, weight_decay=0.05, t_max=65, epochs=65, batch_size=25)}


def image_recipe(lr: float = 5e-4, weight_decay: float = 0.08, t_max: int | None = 30) -> dict:
    """The optimiser and schedule of MIME's image experiments: AdamW, betas (0.5, 0.999), cosine
    annealing over ``t_max`` epochs. Defaults: the official FairFace notebook (weight decay 0.08,
    T_max = 30, trained 35 epochs with batch 30, no normalisation or augmentation); UTKFace's are in
    :data:`IMAGE_RECIPES`."""
    from .train import Optim, Schedule

    return {"optim": Optim("adamw", lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay),
            "schedule": Schedule("cosine", t_max=t_max)}


def image_fit_kwargs(dataset: str) -> dict:
    """:func:`fairbook.train.fit` arguments of the authors' recipe for ``dataset`` (:data:`IMAGE_RECIPES`)."""
    if dataset not in IMAGE_RECIPES:
        raise ValueError(f"image_fit_kwargs: dataset got {dataset!r}; allowed: {', '.join(IMAGE_RECIPES)}")
    r = IMAGE_RECIPES[dataset]
    return dict(epochs=r["epochs"], batch_size=r["batch_size"],
                **image_recipe(r["lr"], r["weight_decay"], r["t_max"]))


def tabular_recipe(lr: float = 5e-4) -> dict:
    """The authors' Adult recipe (their public code): AdamW, betas (0.5, 0.999), weight decay 0.08,
    cosine annealing over the run down to 0.01 x lr, batch 30."""
    from .train import Optim, Schedule

    return {"optim": Optim("adamw", lr=lr, betas=(0.5, 0.999), weight_decay=0.08),
            "schedule": Schedule("cosine", min_lr_factor=0.01), "batch_size": 30}


def class_balanced(y, groups, rng: np.random.Generator) -> np.ndarray:
    """Row indices with equal class counts within each group (the larger classes of a group
    subsampled without replacement to its smallest class): the authors' protocol for MIME's training
    pools and test sets. Sorted."""
    y, groups = np.asarray(y), np.asarray(groups)
    keep = []
    for g in np.unique(groups):
        rows = [np.flatnonzero((groups == g) & (y == c)) for c in np.unique(y)]
        k = min(len(r) for r in rows)
        keep += [rng.choice(r, k, replace=False) for r in rows]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def beta_indices(pools: dict, majority: int, n_train: int, beta: float) -> np.ndarray:
    """The training rows at minority fraction ``beta``: the first ``n_train - round(beta n_train)``
    rows of the majority pool and the first ``round(beta n_train)`` of the minority pool, so the
    majority part shrinks and the minority part grows by prefixes as beta rises (nested sets)."""
    k = int(round(beta * n_train))
    return np.concatenate([pools[majority][:n_train - k], pools[1 - majority][:k]])


def _trial_data(splits, trial: int, attr: str, majority: int, n_train: int, seed: int, balance: bool):
    """One trial's data for :func:`beta_sweep` and :func:`linear_probe_sweep`: its split (classes
    balanced within each group if ``balance``), the shuffled majority and minority training pools and
    the initialisation seed shared by every beta of the trial."""
    trn, val, tst = splits(trial)
    rng = np.random.default_rng([seed, trial])
    if balance:
        trn, val, tst = (d.subset(class_balanced(d.y, d.groups[attr], rng)) for d in (trn, val, tst))
    pools = {g: rng.permutation(np.flatnonzero(trn.groups[attr] == g)) for g in (majority, 1 - majority)}
    if min(len(p) for p in pools.values()) < n_train:
        raise ValueError(f"n_train = {n_train} exceeds a group's training pool "
                         f"({ {g: len(p) for g, p in pools.items()} }"
                         f"{', classes balanced within each group' if balance else ''})")
    return trn, val, tst, pools, int(rng.integers(2**31))


@dataclass(frozen=True)
class Splits:
    """``splits(trial)``: train, validation and test of dataset ``name`` drawn with seed
    ``seed + trial`` (``fairbook.data.load`` with ``options``, a tuple of (key, value) pairs). A
    picklable ``splits`` for the sweeps: a task of ``fairbook.grid`` loads its own trial's data."""

    name: str
    seed: int = 0
    root: str | None = None
    options: tuple = ()

    def __call__(self, trial: int):
        from . import data

        return tuple(data.load(self.name, split=s, seed=self.seed + trial, root=self.root, **dict(self.options))
                     for s in ("train", "val", "test"))


def _trials(task, trials: int, grid, desc: str, **shared) -> pd.DataFrame:
    """Rows of ``task(trial=t, **shared)`` for every trial: here one by one, or as the tasks of a
    :class:`fairbook.grid.Grid` (``shared`` must then pickle: :class:`Splits`, ``functools.partial``)."""
    if grid is None:
        parts = [task(trial=t, **shared) for t in range(trials)]
    else:
        from . import grid as grids

        parts = grids.run(task, [{"trial": t} for t in range(trials)], grid, shared=shared, desc=desc)
    return pd.DataFrame([row for part in parts for row in part])


def beta_sweep(splits, attr: str, majority: int, betas, n_train: int, trials: int, make_model,
               fit_kwargs: dict, seed: int = 0, balance: bool = True, grid=None) -> pd.DataFrame:
    """MIME §4.2: majority accuracy against the minority fraction beta at a fixed training size.

    ``splits(trial) -> (train, val, test)`` gives each trial its own random split (``Dataset``s with
    ``groups[attr]``); ``majority`` is the value of ``attr`` that marks the majority group. In every
    trial the majority and minority training pools are shuffled once, and beta takes the first
    ``n_train - round(beta n_train)`` majority and ``round(beta n_train)`` minority samples, so
    minority samples *replace* majority samples. Each model is trained by :func:`fairbook.train.fit`
    and the epoch is chosen on *validation* majority accuracy; ``best_test_acc`` is the official
    code's choice, the best *test* majority accuracy over epochs (optimistic by construction).

    ``balance`` (the authors' protocol, default): the classes are balanced within each group of the
    training pools, the validation and the test set (:func:`class_balanced`); ``False`` keeps the
    data's class ratios. One trial is one task (:func:`beta_trial`; ``grid``: :func:`_trials`).
    """
    if set(np.unique(splits(0)[0].groups[attr])) - {0, 1}:
        raise ValueError(f"attribute {attr!r} must be coded 0/1")
    return _trials(beta_trial, trials, grid, "beta sweep", splits=splits, attr=attr, majority=majority,
                   betas=list(betas), n_train=n_train, make_model=make_model, fit_kwargs=fit_kwargs, seed=seed,
                   balance=balance)


def beta_trial(splits, trial: int, attr: str, majority: int, betas, n_train: int, make_model, fit_kwargs: dict,
               seed: int, balance: bool) -> list[dict]:
    """The rows of one trial of :func:`beta_sweep`."""
    from . import train as tr
    from .train import fit_many
    from .metrics import accuracy

    rows = []
    trn, val, tst, pools, fit_seed = _trial_data(splits, trial, attr, majority, n_train, seed, balance)
    vmask, tmask = val.groups[attr] == majority, tst.groups[attr] == majority
    X_test = engine_inputs(tst)[0]
    curves = [[] for _ in betas]

    def track(epoch, model, row, curve):
        pred = tr.predict(tr.logits_of(model, X_test)).numpy()
        curve.append((accuracy(tst.y[tmask], pred[tmask]), accuracy(tst.y[~tmask], pred[~tmask])))

    # the betas of a trial share the initialisation and the seed: one batched fit of all of them
    results = fit_many([tr.seeded(make_model, fit_seed) for _ in betas],
                       [engine_inputs(trn.subset(beta_indices(pools, majority, n_train, b))) for b in betas],
                       seeds=[fit_seed] * len(betas), val=engine_inputs(val.subset(vmask)), select="acc",
                       on_epoch_end=[lambda e, m, r, c=c: track(e, m, r, c) for c in curves], **fit_kwargs)
    for beta, res, test_curve in zip(betas, results, curves):
        major_acc, minor_acc = test_curve[res.best_epoch - 1]
        rows.append({"trial": trial, "beta": float(beta), "n_minor": int(round(beta * n_train)),
                     "majority_acc": float(major_acc), "minority_acc": float(minor_acc),
                     "best_epoch": res.best_epoch,
                     "best_test_acc": float(max(m for m, _ in test_curve))})
    return rows


def linear_probe_sweep(splits, attr: str, majority: int, betas, n_train: int, trials: int, make_model,
                       fit_kwargs: dict, probe_kwargs: dict, seed: int = 0, balance: bool = True,
                       grid=None) -> pd.DataFrame:
    """The setting the theory certifies: a **fixed** feature extractor and a learnt last layer.

    Per trial (the splits and pools of :func:`beta_sweep`): one network is trained on the beta = 0.5
    training set and frozen; for every beta only a new linear head is trained on the frozen
    penultimate features of that beta's training set (``probe_kwargs`` for :func:`fairbook.train.fit`,
    epoch chosen on validation majority accuracy, one initialisation per trial). Returns the rows of
    :func:`beta_sweep` (``best_test_acc`` omitted). One trial is one task (:func:`probe_trial`)."""
    return _trials(probe_trial, trials, grid, "linear probe", splits=splits, attr=attr, majority=majority,
                   betas=list(betas), n_train=n_train, make_model=make_model, fit_kwargs=fit_kwargs,
                   probe_kwargs=probe_kwargs, seed=seed, balance=balance)


def probe_trial(splits, trial: int, attr: str, majority: int, betas, n_train: int, make_model, fit_kwargs: dict,
                probe_kwargs: dict, seed: int, balance: bool) -> list[dict]:
    """The rows of one trial of :func:`linear_probe_sweep`."""
    from torch import nn

    from . import train as tr
    from .train import fit_many
    from .metrics import accuracy
    from .models import penultimate

    rows = []
    trn, val, tst, pools, fit_seed = _trial_data(splits, trial, attr, majority, n_train, seed, balance)
    vmask, tmask = val.groups[attr] == majority, tst.groups[attr] == majority
    backbone = tr.fit(tr.seeded(make_model, fit_seed), *engine_inputs(trn.subset(beta_indices(pools, majority, n_train, 0.5))),
                      val=engine_inputs(val.subset(vmask)), select="acc", seed=fit_seed, **fit_kwargs).model
    feats = {name: penultimate(backbone, engine_inputs(d)[0])[0] for name, d in (("trn", trn), ("val", val), ("tst", tst))}
    n_classes = len(trn.classes)
    idx = [beta_indices(pools, majority, n_train, beta) for beta in betas]
    results = fit_many([tr.seeded(lambda: nn.Linear(feats["trn"].shape[1], n_classes), fit_seed) for _ in betas],
                       [(feats["trn"][i], trn.y[i]) for i in idx], seeds=[fit_seed] * len(betas),
                       val=(feats["val"][vmask], val.y[vmask]), select="acc", **probe_kwargs)
    for beta, res in zip(betas, results):
        pred = tr.predict(tr.logits_of(res.model, feats["tst"])).numpy()
        rows.append({"trial": trial, "beta": float(beta), "n_minor": int(round(beta * n_train)),
                     "majority_acc": float(accuracy(tst.y[tmask], pred[tmask])),
                     "minority_acc": float(accuracy(tst.y[~tmask], pred[~tmask])), "best_epoch": res.best_epoch})
    return rows


def group_difficulty(train, test, attr: str, n_train: int, make_model, fit_kwargs: dict,
                     val=None, seed: int = 0) -> pd.DataFrame:
    """Definitions 2-3: train on ``n_train`` samples of one group only and test on that group; the
    group with the higher accuracy is the majority."""
    from . import train as tr
    from .metrics import accuracy

    rng = np.random.default_rng(seed)
    rows = []
    for g in (0, 1):
        pool = np.flatnonzero(train.groups[attr] == g)
        if len(pool) < n_train:
            raise ValueError(f"group {g} has {len(pool)} training samples, fewer than n_train = {n_train}: "
                             "Definition 2 compares the groups at one training size")
        sub = train.subset(rng.choice(pool, size=n_train, replace=False))
        v = None if val is None else engine_inputs(val.subset(val.groups[attr] == g))
        fit_seed = int(rng.integers(2**31))
        res = tr.fit(tr.seeded(make_model, fit_seed), *engine_inputs(sub), val=v,
                     select="acc" if v else None, seed=fit_seed, **fit_kwargs)
        own = test.subset(test.groups[attr] == g)
        pred = tr.predict(tr.logits_of(res.model, engine_inputs(own)[0])).numpy()
        rows.append({"group": g, "n_train": len(sub), "own_test_acc": accuracy(own.y, pred)})
    out = pd.DataFrame(rows)
    out["majority_by_definition_2"] = out.own_test_acc == out.own_test_acc.max()
    return out


def decision_projection(model, X) -> np.ndarray:
    """Penultimate features projected orthogonally on the learnt decision direction (MIME §4.1,
    Fig. 4): the signed distance to the last layer's hyperplane, (logit margin) / ||w||."""
    import torch

    from .models import head, penultimate

    feats, logits = penultimate(model, X if isinstance(X, torch.utils.data.Dataset) else torch.as_tensor(X))
    W = head(model).weight.detach().cpu()
    if logits.shape[1] == 1:
        return (logits[:, 0] / W[0].norm()).numpy()
    if logits.shape[1] != 2:
        raise ValueError("the projection needs a binary classifier (1 or 2 logits)")
    return ((logits[:, 1] - logits[:, 0]) / (W[1] - W[0]).norm()).numpy()


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


# --- the paper's claims against this run (issue 14) -----------------------------------------------
#: the MIME-curve settings of the chapter (the ``setting`` column of the curves) and their key tags
CURVE_SETTINGS = {"no gap": "nogap", "small gap": "smallgap", "large gap": "largegap",
                  "placebo": "placebo", "no gap, fixed start": "nogap_fixed",
                  "no gap, start-free learner": "nogap_erm"}
#: the paper's Table 2 per dataset: (dataset id, #MIME trials / total, avg. MIME perf. gain in pp)
PAPER_TABLE2 = {"fairface": ("DS-1", "4/5", 0.72), "utkface": ("DS-3", "5/5", 0.70),
                "adult": ("DS-5", "4/5", 0.98)}

_PUSH_UNIT = "Monte Carlo push pair (independent majority and minority pushes from h_{K-1} = d* ± Δ)"
_THEOREM_CLAIMS = {  # key: (claim, source, paper)
    "mime_thm1": ("No domain gap: with O_major < O_minor a minority push improves the majority more "
                  "(Key Result 1)", "§3, Theorem 1, eq. 11",
                  "E P{h_K^-} < E P{h_K^+} for small Δ and variances not very large"),
    "mime_thm2_case1": ("Domain gap δ < Δ, h_{K-1} and the minority's ideal hyperplane on different "
                        "sides: a minority push improves the majority more (Key Result 2)",
                        "§3, Theorem 2, case 1, eq. 13", "E P{h_K^-} < E P{h_K^+} for δ + Δ small"),
    "mime_thm2_case2": ("Domain gap δ < Δ, same side and eq. 12 holds: a minority push improves the "
                        "majority more (Key Result 2)", "§3, Theorem 2, case 2, eq. 12-13",
                        "E P{h_K^-} < E P{h_K^+} when O_major/O_minor < (1 − δ/Δ) f"),
    "mime_thm3": ("General distributions and priors: where eq. 15 holds a minority push improves the "
                  "majority more on either side (Key Result 3)", "§3, Theorem 3, eq. 14-15",
                  "E P{h_K^-} < E P{h_K^+} whenever eq. 15 holds"),
}
_CURVE_CLAIMS = {  # tag: (claim, source, paper)
    "nogap": ("With no domain gap, replacing some majority training samples by minority samples raises "
              "majority accuracy", "§3 Key Result 1; Fig. 5",
              "majority accuracy peaks at some β > 0 when the domain gap is small (Fig. 5)"),
    "smallgap": ("With a small domain gap, replacing some majority training samples by minority samples "
                 "raises majority accuracy", "§3 Key Result 2; Fig. 5; §5 Conclusion",
                 "majority accuracy peaks at some β > 0 when the domain gap is small (Fig. 5)"),
    "nogap_erm": ("With no domain gap, minority samples raise majority accuracy for a learner whose answer "
                  "does not depend on a start point or a step (the empirical-risk minimiser)",
                  "§3 Key Result 1; Fig. 5 (a control the paper does not run)",
                  "majority accuracy peaks at some β > 0 when the domain gap is small (Fig. 5)"),
    "largegap": ("With a large domain gap, minority samples do not help: majority accuracy falls as β "
                 "grows", "§4.2; Fig. 6b", "majority accuracy decreases with β (chickens vs humans, "
                 "domain gap 1.62 in Table 1)"),
}


def _side_claim(claim, row: pd.Series, n: int) -> dict:
    """A theorem's prediction against its Monte Carlo: the worst checked side decides."""
    from . import claims as cl

    sides = [(row[f"adv_{t}"], row[f"se_{t}"]) for t in ("lower", "upper") if np.isfinite(row[f"adv_{t}"])]
    adv, se = min(sides)
    z = stats.norm.ppf(0.975)
    pvals = [2 * stats.norm.sf(abs(a / s)) if s > 0 else float(a == 0) for a, s in sides]
    note = f"{len(sides)} side(s) of the ideal hyperplane; worst side shown"
    if not row["theorem predicts MIME"]:
        return cl.custom(claim, n=n, estimate=adv, ci=(adv - z * se, adv + z * se), p=float("nan"),
                         mde=(z + stats.norm.ppf(cl.POWER)) * se,
                         note="the theorem's assumptions or condition fail here: no prediction to test")
    # both sides must be better (intersection-union test): the largest per-side p when all are > 0
    p = max(pvals) if all(a > 0 for a, _ in sides) else pvals[[a for a, _ in sides].index(adv)]
    return cl.custom(claim, n=n, estimate=adv, ci=(adv - z * se, adv + z * se), p=p,
                     mde=(z + stats.norm.ppf(cl.POWER)) * se, note=note)


def _trials_as_n(row: dict, curve: pd.DataFrame) -> dict:
    """A permutation claim's n is its number of trials (the null draws are in the note)."""
    row["n"] = int(curve["trial"].nunique())
    return row


def claims(push: pd.DataFrame | None = None, theorems: pd.DataFrame | None = None,
           curves: pd.DataFrame | None = None, sweeps: pd.DataFrame | None = None, *, eta: float = 1.0,
           pushes: int = 0, flips: int = 2000, seed: int = 0, probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The MIME chapter's family of claims judged on this run (:mod:`fairbook.claims`).

    ``push``: :func:`push_experiment`'s trials (step ``eta``); ``theorems``: :func:`theorem_checks`
    (``pushes`` Monte Carlo pushes per kind and side); ``curves``: :func:`mime_curve` rows with a
    ``setting`` column (keys of :data:`CURVE_SETTINGS`); ``sweeps``: :func:`beta_sweep` rows with a
    ``dataset`` column. A missing input leaves its claims out.

    * ``mime_push`` -- Key Result 1 on the push experiment: per trial (P^+ − P^-)/η, t-test.
    * ``mime_thm1``, ``mime_thm2_case1``, ``mime_thm2_case2``, ``mime_thm3`` -- each theorem's
      prediction against the Monte Carlo push advantage at d* ± Δ (z-test; both sides must show it
      where the theorem covers both). Where the theorem's condition fails there is nothing to test.
    * ``mime_curve_nogap``, ``mime_curve_smallgap`` -- majority accuracy at the split-sample β* minus
      at β = 0 (pp) on the held-out trials, t-test; ``mime_curve_largegap`` the same with the sign
      flipped (the paper: no gain).
    * ``mime_curve_nogap_erm`` -- the no-gap gain for the start-free learner (:func:`erm_threshold`);
      ``mime_curve_nogap_interior`` -- accuracy at the best interior β minus at β = 1 (held out).
    * ``mime_maxgain_nogap``, ``mime_maxgain_smallgap`` -- the max-over-β gain of the mean curve on
      all trials against its sign-flip permutation null (:func:`signflip_null`, ``flips`` draws).
    * ``mime_real_<dataset>`` -- the real-data β sweep: held-out gain at β* (validation-chosen epochs),
      unit = trial with its own random split; ``mime_real_maxgain_<dataset>`` its max-over-β gain on
      all trials against the sign-flip null.
    * ``mime_probe_<dataset>`` -- the same held-out gain for :func:`linear_probe_sweep` (``probes``):
      a fixed feature extractor and a learnt last layer, the setting of the theory.
    """
    from . import claims as cl

    rows = []
    if push is not None:
        rows.append(cl.difference(cl.Claim(
            "mime_push", "A minority sample pushed onto a stack of K − 1 majority samples improves the "
            "majority's hyperplane more than another majority sample (Key Result 1)",
            "§3, Theorem 1, eq. 10-11; Fig. 2", "E P{h_K^-} < E P{h_K^+} (proved for small Δ)",
            "(P^major{h_K^+} − P^major{h_K^-})/η per trial, one Monte Carlo push of each kind; "
            "> 0: the minority push is better", "trial (one learnt h_{K-1}, one push of each kind)",
            section="mime-push"), (push.P_plus - push.P_minus) / eta))
    if theorems is not None:
        for _, row in theorems[theorems.key.isin(list(_THEOREM_CLAIMS))].iterrows():
            text, source, paper = _THEOREM_CLAIMS[row.key]
            rows.append(_side_claim(cl.Claim(
                row.key, text, source, paper, "(E P^+ − E P^-)/η at h_{K-1} = d* ± Δ, worst side; "
                "> 0: the minority push is better", _PUSH_UNIT, section="mime-theorems"), row, pushes))
    if curves is not None:
        for setting, tag in CURVE_SETTINGS.items():
            df = curves[curves.setting == setting]
            if df.empty or tag not in _CURVE_CLAIMS:
                continue
            text, source, paper = _CURVE_CLAIMS[tag]
            beta_star, gain = heldout_gains(df)
            sign, what = (-1, "at β = 0 − at β*") if tag == "largegap" else (1, "at β* − at β = 0")
            rows.append(cl.difference(cl.Claim(
                f"mime_curve_{tag}", text, source, paper,
                f"majority accuracy {what} (pp), β* = {beta_star:g} chosen on the even trials; "
                f"> 0: the paper's direction", "trial (odd-numbered, held out from the choice of β*)",
                section="mime-curve"), sign * gain.to_numpy()))
            if tag == "nogap":
                beta_in, gain_in = heldout_interior_vs_end(df)
                rows.append(cl.difference(cl.Claim(
                    "mime_curve_nogap_interior", "With no domain gap the majority's accuracy peaks at an "
                    "interior β: a training set without majority samples (β = 1) is worse than the best "
                    "mixture", "§4.2; Fig. 5", "majority accuracy lowest with no majority samples, highest "
                    "at an intermediate β (Fig. 5)",
                    f"majority accuracy at the interior β* − at β = 1 (pp), β* = {beta_in:g} chosen among "
                    "0 < β < 1 on the even trials; > 0: an interior peak",
                    "trial (odd-numbered, held out from the choice of β*)", section="mime-curve"),
                    gain_in.to_numpy()))
            if tag in ("nogap", "smallgap"):
                rng = np.random.default_rng([seed, 14, len(rows)])
                rows.append(_trials_as_n(cl.permutation(cl.Claim(
                    f"mime_maxgain_{tag}", text, source, paper,
                    "max over β > 0 of the mean majority-accuracy gain over β = 0 (pp), all trials, "
                    "minus its mean under the sign-flip null; > 0: more gain than noise and the choice "
                    "of the best β produce", "trial (null: trials' gain vectors sign-flipped)",
                    section="mime-curve"), max_gain(df), signflip_null(df, flips, rng)), df))
    if sweeps is not None:
        for name, df in sweeps.groupby("dataset", sort=False):
            beta_star, gain = heldout_gains(df, "majority_acc")
            ds, count, effect = PAPER_TABLE2.get(name, (None, None, None))
            paper = (f"Table 2 ({ds}): {count} trials with a gain, mean best gain {effect} pp"
                     + ("; Fig. 6a: a gain peaking at β = 0.6" if name == "adult" else "")
                     if ds else "not among the paper's datasets; its conclusion for small domain gaps")
            rows.append(cl.difference(cl.Claim(
                f"mime_real_{name}", f"On {name}, replacing some majority training samples by minority "
                "samples raises the majority's test accuracy", "§4.2; Figs. 5-6a; Table 2", paper,
                f"majority test accuracy at β* − at β = 0 (pp, epoch chosen on validation), β* = "
                f"{beta_star:g} chosen on the even trials; > 0: minority inclusion helps",
                "trial (its own random split; odd-numbered, held out from the choice of β*)",
                section="mime-real", paper_effect=effect), gain.to_numpy()))
            rng = np.random.default_rng([seed, 15, len(rows)])
            rows.append(_trials_as_n(cl.permutation(cl.Claim(
                f"mime_real_maxgain_{name}", f"On {name}, replacing some majority training samples by "
                "minority samples raises the majority's test accuracy (best β, all trials)",
                "§4.2; Table 2", paper, "max over β > 0 of the mean majority-accuracy gain over β = 0 (pp), "
                "all trials, minus its mean under the sign-flip null; > 0: more gain than noise and the "
                "choice of the best β produce", "trial (its own random split; null: gains sign-flipped)",
                section="mime-real", paper_effect=effect), max_gain(df), signflip_null(df, flips, rng)), df))
    if probes is not None:
        for name, df in probes.groupby("dataset", sort=False):
            beta_star, gain = heldout_gains(df, "majority_acc")
            rows.append(cl.difference(cl.Claim(
                f"mime_probe_{name}", f"On {name}, with a fixed feature extractor and a learnt last layer "
                "(the setting of the theory), minority samples raise the majority's test accuracy",
                "§3 (Assumptions 1-2) applied to §4.2", "the theory certifies the effect for a learnt "
                "linear classifier on fixed features", f"majority test accuracy of the linear probe at "
                f"β* − at β = 0 (pp), β* = {beta_star:g} chosen on the even trials; > 0: minority inclusion helps",
                "trial (its own random split and backbone; odd-numbered, held out)", section="mime-real"),
                gain.to_numpy()))
    return cl.table(rows, chapter="mime")


def real_verdicts(claims_table: pd.DataFrame) -> str:
    """One sentence per real dataset of the claims table, for the prose (via glue)."""
    from .claims import interval_text

    rows = claims_table.set_index("key")
    parts = []
    for key in claims_table.key[claims_table.key.str.match(r"mime_real_(?!maxgain_)")]:
        r, ds = rows.loc[key], key.removeprefix("mime_real_")
        text = (f"{ds}: {r.verdict}, gain at β* {interval_text(r)} pp over {r.n} held-out trials "
                f"(Holm p = {r.p_holm:.2g})")
        best = f"mime_real_maxgain_{ds}"
        if best in rows.index:
            b = rows.loc[best]
            text += (f", best-β gain minus its sign-flip null {b.estimate:+.2f} pp over all {b.n} trials "
                     f"({b.verdict}, Holm p = {b.p_holm:.2g})")
        probe = f"mime_probe_{ds}"
        if probe in rows.index:
            q = rows.loc[probe]
            text += f", linear probe on frozen features {interval_text(q)} pp ({q.verdict})"
        parts.append(text)
    return "; ".join(parts) if parts else "no real dataset in this run"
