"""Statistics shared by the chapters: paired t-tests, bootstrap intervals, and seed schemes.

* :func:`paired_ttest` -- paired Student's t-test (HBR appendix C; its orientation and seed scheme
  of appendix B are in :mod:`fairbook.hbr.design`).
* :func:`bootstrap_ci` / :func:`paired_bootstrap_ci` -- ``scipy.stats.bootstrap`` with a fixed seed.
* :func:`seeds` -- independent child seeds from one master seed (``numpy.random.SeedSequence``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from scipy import stats as _st

__all__ = [
    "TTestResult", "paired_ttest",
    "BootstrapCI", "bootstrap_ci", "paired_bootstrap_ci", "seeds",
]


def _sample(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


# --- paired t-test ----------------------------------------------------------------------------------
class TTestResult(NamedTuple):
    """Result of a paired t-test on the differences ``d = a − b``."""

    statistic: float
    """t = mean(d) / (s_d / sqrt(n)), s_d with ddof = 1 (HBR eqs. C1-C2)."""
    pvalue: float
    mean_diff: float
    """mean(a − b)."""
    n: int
    """number of pairs; the test has n − 1 degrees of freedom."""
    alternative: str


def paired_ttest(a: Any, b: Any, alternative: str = "greater") -> TTestResult:
    """Paired Student's t-test of ``d_i = a_i − b_i`` (``scipy.stats.ttest_rel(a, b)``).

    Parameters
    ----------
    a, b : array-like, shape (n,)
        Paired measurements (pair i = the same seed / replicate). n >= 2, no NaN.
    alternative : {"greater", "less", "two-sided"}
        The alternative hypothesis about the mean difference μ_d = E[a − b]. The default
        ``"greater"`` is the one-sided H_A: μ_d > 0 of HBR appendix C.

    Returns
    -------
    TTestResult
        ``statistic``, ``pvalue``, ``mean_diff`` (= mean(a − b)), ``n`` and ``alternative``. With
        all differences equal scipy's NaN/inf statistic is passed through unchanged.

    Notes
    -----
    Direction: the test asks whether ``a`` is larger than ``b``. For HBR's Δ metrics (lower is
    fairer) "resampling improves fairness" means ``a = base``, ``b = resampled``; for the average
    recall/precision (higher is better) it means ``a = resampled``, ``b = base``.
    :func:`fairbook.hbr.design.improvement_ttest` does this orientation for you.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    x, y = _sample(a, "a"), _sample(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError("a paired t-test needs at least 2 pairs")
    res = _st.ttest_rel(x, y, alternative=alternative)
    return TTestResult(float(res.statistic), float(res.pvalue), float(np.mean(x - y)), int(x.size), alternative)


# --- bootstrap ----------------------------------------------------------------------------------------
class BootstrapCI(NamedTuple):
    """A bootstrap confidence interval for ``stat`` of a sample."""

    estimate: float
    """stat of the original sample."""
    low: float
    high: float
    standard_error: float
    """standard deviation of the bootstrap distribution."""
    level: float
    method: str
    n: int


_METHODS = {"bca": "BCa", "percentile": "percentile", "basic": "basic"}


def bootstrap_ci(x: Any, stat: Callable = np.mean, level: float = 0.95, n_resamples: int = 9999,
                 seed: int = 0, method: str = "BCa") -> BootstrapCI:
    """Two-sided bootstrap confidence interval of ``stat(x)`` via ``scipy.stats.bootstrap``.

    Parameters
    ----------
    x : array-like, shape (n,)
        One-dimensional sample (n >= 2, no NaN).
    stat : callable
        The statistic. If it accepts an ``axis`` keyword (``np.mean``, ``np.median``, ...) scipy
        evaluates it vectorised; otherwise it is called once per resample.
    level : float
        Confidence level in (0, 1).
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the ``numpy.random.Generator`` that draws the resamples: same seed, same interval.
    method : {"BCa", "percentile", "basic"}
        Default ``"BCa"`` (bias-corrected and accelerated, scipy's default), which is second-order
        accurate and corrects for skew -- relevant for bounded metrics near 0 or 1 (Δ gaps,
        accuracies). ``"percentile"`` is the plain quantile interval of the bootstrap distribution.
        BCa is undefined when every resample gives the same value (e.g. a constant sample): scipy
        then warns and returns NaN bounds.

    Returns
    -------
    BootstrapCI
        ``estimate`` (stat of x), ``low``, ``high``, ``standard_error``, ``level``, ``method``, ``n``.
    """
    key = method.lower() if isinstance(method, str) else method
    if key not in _METHODS:
        raise ValueError(f"method must be one of BCa, percentile, basic; got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arr = _sample(x, "x")
    if arr.size < 2:
        raise ValueError("a bootstrap interval needs at least 2 observations")
    res = _st.bootstrap((arr,), stat, n_resamples=int(n_resamples), confidence_level=level,
                        method=_METHODS[key], rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return BootstrapCI(float(stat(arr)), float(ci.low), float(ci.high), float(res.standard_error),
                       float(level), _METHODS[key], int(arr.size))


def paired_bootstrap_ci(a: Any, b: Any, stat: Callable = np.mean, level: float = 0.95,
                        n_resamples: int = 9999, seed: int = 0, method: str = "BCa") -> BootstrapCI:
    """Bootstrap interval of ``stat(a − b)`` for paired samples (pairs are resampled together).

    With the default ``stat=np.mean`` this is the interval of the mean paired difference -- the
    quantity :func:`paired_ttest` tests. Parameters as in :func:`bootstrap_ci`.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}")
    return bootstrap_ci(x - y, stat=stat, level=level, n_resamples=n_resamples, seed=seed, method=method)


# --- seeds --------------------------------------------------------------------------------------------
def _index(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return int(v)


def seeds(master: int, n: int) -> list[int]:
    """``n`` statistically independent child seeds derived from one ``master`` seed.

    Uses ``numpy.random.SeedSequence(master).spawn(n)`` and takes one 32-bit word of each child's
    state, so the seeds fit ``np.random.seed``, ``torch.manual_seed`` and ``random.seed``. The list is
    a pure function of (master, n), and its first k entries do not depend on n.
    """
    master, n = _index(master, "master"), _index(n, "n")
    return [int(child.generate_state(1, dtype=np.uint32)[0])
            for child in np.random.SeedSequence(master).spawn(n)]
