"""The MIME curve (MIME §4.2, Figs. 5-6b, Table 2) on the one-dimensional model of Section 3:
majority accuracy of a learnt threshold against the minority fraction beta of a training set of fixed
size, the paper's Table 2 statistics with a split-sample and a sign-flip (permutation) version, what a
gain is made of, and the existence map that sets the theorems (:mod:`fairbook.mime.theory`) against
the curve. numpy, scipy and pandas only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..claims import holm
from ..stats import paired_ttest
from .theory import Group, domain_gap, perceptron_threshold, push_advantage, theorem1, theorem2, theorem3

__all__ = [
    "LEARNERS", "erm_threshold", "mime_curve", "gain_by_start", "symmetric_starts", "threshold_decomposition",
    "mime_summary", "heldout_gains", "heldout_interior_vs_end", "max_gain", "signflip_null", "existence_map",
]


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
    half = stats.t.ppf(0.975, out.n - 1) * out.se_pp
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


# --- beyond the paper: where the theorems and the curve find MIME -------------------------------
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
    out["curve_p_holm"] = holm(out.curve_p_value.fillna(1.0))
    out["curve_mime"] = (out.curve_p_holm < 0.05) & (out.curve_gain_pp > 0)
    return out
