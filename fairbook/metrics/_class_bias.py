"""HBR's class-bias metrics of a per-class score vector (§3.2, eqs. 7-11): Δm, Δq, Δhe, Δσ, ΔMAD."""
from __future__ import annotations

from typing import Any

import numpy as np

from ._base import _check_nan, _vector, as_numpy


#: k of the quantile gap Δq per number of classes (HBR §3.2: "k = 2 for CIFAR-10 and k = 10 for CIFAR-100").
HBR_QUANTILE_K = {10: 2, 100: 10}


def default_quantile_k(n_classes: int) -> int:
    """The paper's k for Δq: 2 for 10 classes, 10 for 100 classes (HBR §3.2, below eq. 8).

    The paper gives no rule for other class counts (2/10 and 10/100 are different fractions), so any
    other ``n_classes`` raises ``ValueError``: pass ``k`` explicitly.
    """
    if n_classes not in HBR_QUANTILE_K:
        raise ValueError(f"HBR fixes k only for 10 or 100 classes; pass k explicitly for {n_classes} classes")
    return HBR_QUANTILE_K[n_classes]


def delta_max(r: Any, nan_ok: bool = False) -> float:
    """Maximum gap Δm = max_c r_c − min_c r_c (HBR §3.2, eq. 7).

    Parameters
    ----------
    r : array-like, shape (C,)
        A per-class metric (recall in the paper's definition; precision is treated alike).
    nan_ok : bool
        NaN entries (undefined per-class scores) raise ``ValueError`` unless ``nan_ok`` (then NaN).
    """
    r = _vector(r)
    if _check_nan(r, nan_ok, "Δm"):
        return float("nan")
    return float(r.max() - r.min())


def delta_quantile(r: Any, k: int | None = None, nan_ok: bool = False) -> float:
    """Quantile gap Δq: mean of the k largest minus mean of the k smallest r_c (HBR §3.2, eq. 8).

    ``Δq = 1/k Σ_{i=1..k} r_(C+1-i) − 1/k Σ_{i=1..k} r_(i)`` with r_(i) the i-th smallest score.
    The k classes with the *highest* score are the "easiest", the k with the lowest the "hardest"
    (the paper ranks by the measured metric itself, not by AUM).

    Parameters
    ----------
    r : array-like, shape (C,)
    k : int, optional
        Default :func:`default_quantile_k` (2 for C = 10, 10 for C = 100, as in the paper and its
        code). Must satisfy ``1 <= k <= C``; for ``k > C/2`` the two sets overlap (``k = C`` gives 0).
    nan_ok : bool
        See :func:`delta_max`.
    """
    r = _vector(r)
    if k is None:
        k = default_quantile_k(r.size)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= r.size):
        raise ValueError(f"k must be an integer in [1, {r.size}], got {k!r}")
    if _check_nan(r, nan_ok, "Δq"):
        return float("nan")
    s = np.sort(r)
    return float(s[-k:].mean() - s[:k].mean())


def _index_set(idx: Any, n: int, name: str) -> np.ndarray:
    arr = as_numpy(idx)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"boolean mask {name} must have shape ({n},), got {arr.shape}")
        arr = np.flatnonzero(arr)
    arr = np.unique(arr.astype(np.int64).reshape(-1))
    if arr.size == 0:
        raise ValueError(f"the set of {name} classes is empty")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name} class indices must lie in [0, {n - 1}]")
    return arr


def delta_he(r: Any, easy: Any, hard: Any, nan_ok: bool = False) -> float:
    """Hardness-based equality gap Δhe = mean_{c∈E} r_c − mean_{c∈H} r_c (HBR §3.2, eq. 9).

    Parameters
    ----------
    r : array-like, shape (C,)
    easy, hard : array-like of int indices or boolean masks of shape (C,)
        E and H, "sets of easy and hard classes identified through HBR ratios": the classes HBR
        under- resp. over-samples. :func:`easy_hard_classes` derives them from the resampled
        class counts as the paper's code does. The sets must be non-empty and disjoint.
    nan_ok : bool
        NaN entries in ``r`` *inside E ∪ H* raise unless ``nan_ok`` (then NaN).
    """
    r = _vector(r)
    e, h = _index_set(easy, r.size, "easy"), _index_set(hard, r.size, "hard")
    if np.intersect1d(e, h).size:
        raise ValueError(f"easy and hard classes overlap: {np.intersect1d(e, h).tolist()}")
    sub = np.full(r.size, 0.0)
    sub[e], sub[h] = r[e], r[h]
    if _check_nan(sub, nan_ok, "Δhe"):
        return float("nan")
    return float(r[e].mean() - r[h].mean())


def easy_hard_classes(resampled_counts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Easy and hard class sets for Δhe from the per-class counts ``b_c`` after HBR resampling.

    A class is *hard* (targeted for oversampling) if ``b_c > mean(b)`` and *easy* otherwise
    (``b_c <= mean(b)``), exactly as ``compute_fairness_metrics`` in the HBR code. In the balanced
    setting of the paper (``a_c`` equal for all classes, total preserved) ``mean(b)`` is the balanced
    count, so hard = oversampled and easy = undersampled (HBR §3.2, below eq. 9).

    Returns
    -------
    (easy, hard) : tuple of int index arrays
    """
    b = _vector(resampled_counts, "resampled_counts")
    hard = b > b.mean()
    if hard.all() or not hard.any():
        raise ValueError("all classes have the same count: no easy/hard split")
    return np.flatnonzero(~hard), np.flatnonzero(hard)


def delta_std(r: Any, ddof: int = 0, nan_ok: bool = False) -> float:
    """Standard deviation across classes Δσ = Std(r) (HBR §3.2, eq. 10).

    The paper writes "Std(r)"; its code uses ``np.std`` i.e. the **population** standard deviation
    (``ddof=0``), which is the default here.
    """
    r = _vector(r)
    if _check_nan(r, nan_ok, "Δσ"):
        return float("nan")
    if r.size <= ddof:
        raise ValueError(f"need more than ddof={ddof} classes")
    return float(np.std(r, ddof=ddof))


def delta_mad(r: Any, nan_ok: bool = False) -> float:
    """Median absolute deviation ΔMAD = Median(|r_c − Median(r)|) (HBR §3.2, eq. 11).

    Median-centred and unscaled (no 1.4826 normal-consistency factor), as in eq. 11 and the paper's
    code; equals ``scipy.stats.median_abs_deviation(r, scale=1.0)``.
    """
    r = _vector(r)
    if _check_nan(r, nan_ok, "ΔMAD"):
        return float("nan")
    return float(np.median(np.abs(r - np.median(r))))


def class_bias_report(r: Any, k: int | None = None, easy: Any = None, hard: Any = None,
                      nan_ok: bool = False) -> dict[str, float]:
    """All HBR class-bias metrics of one per-class score vector (HBR §3.2, eqs. 7-11).

    Returns a dict with ``delta_m``, ``delta_q``, ``delta_sigma``, ``delta_mad``, ``avg`` (the
    class-averaged score, the "Δ_avg" rows of HBR Tables D5-D6) and, when ``easy`` and ``hard`` are
    given, ``delta_he``.
    """
    r = _vector(r)
    out = {
        "delta_m": delta_max(r, nan_ok),
        "delta_q": delta_quantile(r, k, nan_ok),
        "delta_sigma": delta_std(r, nan_ok=nan_ok),
        "delta_mad": delta_mad(r, nan_ok),
        "avg": float("nan") if _check_nan(r, nan_ok, "average") else float(r.mean()),
    }
    if (easy is None) != (hard is None):
        raise ValueError("give both easy and hard, or neither")
    if easy is not None:
        out["delta_he"] = delta_he(r, easy, hard, nan_ok)
    return out
