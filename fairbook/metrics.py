"""One definition of every metric the four papers report.

Conventions
-----------
* Inputs are array-likes (lists, numpy arrays, CPU or GPU torch tensors, pandas Series); they are
  converted with :func:`as_numpy`. Outputs are Python floats or numpy arrays.
* Multi-class labels are integers ``0 .. C-1``. Binary tasks use ``y, y_pred in {0, 1}`` (bools are
  accepted) and a binary sensitive attribute ``a in {0, 1}``. Following GCM §2.2, ``a = 1`` is the
  *privileged* group and ``a = 0`` the unprivileged one; only :func:`equal_opportunity_ratio` is
  not symmetric in the two groups.
* **Undefined quantities are never silently 0.** A rate whose denominator is empty (a group with no
  positives has no TPR, a class that is never predicted has no precision, ...) raises a
  ``ValueError`` that names the group/class, or -- with ``nan_ok=True`` -- is returned as NaN,
  and NaN then propagates into every aggregate computed from it. Per-class vectors
  (:func:`per_class_recall`, :func:`per_class_precision`) always carry NaN for undefined entries;
  the aggregates over them raise unless ``nan_ok=True``.

Papers
------
* HBR -- hardness-based resampling (class bias, multi-class): §3.2, eqs. 7-11; the public code
  (``PawPuk/ClassHardnessImportance``, ``src/utils/evaluation.py``) pins down the choices the text
  leaves open (ddof, k, easy/hard sets).
* GCM -- group contribution matching: §2.2 (EOP, eq. 1; ΔEO, eq. 2), §4.1 (AP), Table 6 (Bias of
  Wang et al. 2020 on CIFAR-10S), "Experiments on other fairness metrics" (ΔDP).
* AIM-Fair: §4.2 (EO, eq. 9; WST, eq. 10) and the STD column of its tables; the EO values in its
  tables match the worst case max(ΔTPR, ΔFPR) (:func:`equalized_odds_max`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "as_numpy",
    # multi-class
    "accuracy", "confusion_matrix", "per_class_recall", "per_class_precision",
    "class_averaged_recall", "class_averaged_precision",
    # HBR class bias
    "HBR_QUANTILE_K", "default_quantile_k", "delta_max", "delta_quantile", "delta_he",
    "delta_std", "delta_mad", "easy_hard_classes", "class_bias_report",
    # binary group fairness
    "true_positive_rates", "false_positive_rates", "selection_rates",
    "delta_tpr", "delta_fpr", "equalized_odds_sum", "equalized_odds_mean", "equalized_odds_max",
    "equal_opportunity_ratio", "demographic_parity_difference",
    "cell_accuracies", "group_accuracies", "worst_group_accuracy", "group_accuracy_std",
    "aggregate_cell_accuracies", "average_precision", "cifar10s_bias", "group_report",
]


# --- helpers ----------------------------------------------------------------------------------------
def as_numpy(x: Any) -> np.ndarray:
    """Convert an array-like (including a torch tensor on any device, with or without grad) to numpy."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _undefined(msg: str, nan_ok: bool) -> float:
    if nan_ok:
        return float("nan")
    raise ValueError(msg + " (pass nan_ok=True to get NaN instead)")


def _labels(x: Any, name: str) -> np.ndarray:
    arr = as_numpy(x)
    if arr.ndim == 2 and arr.shape[1] == 1:  # a column vector, e.g. a (n, 1) model output
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"{name} must hold integer labels")
    return arr.astype(np.int64)


def _binary(x: Any, name: str) -> np.ndarray:
    arr = _labels(x, name)
    bad = np.setdiff1d(np.unique(arr), [0, 1])
    if bad.size:
        raise ValueError(f"{name} must be binary (0/1), found values {bad.tolist()}")
    return arr


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    if not next(iter(lengths.values())):
        raise ValueError("inputs are empty")


def _binary_inputs(y_true, y_pred, a):
    y, p, g = _binary(y_true, "y_true"), _binary(y_pred, "y_pred"), _binary(a, "a")
    _same_length(y_true=y, y_pred=p, a=g)
    return y, p, g


def _vector(r: Any, name: str = "r") -> np.ndarray:
    arr = as_numpy(r).astype(float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector of per-class scores, got shape {arr.shape}")
    return arr


def _check_nan(r: np.ndarray, nan_ok: bool, what: str) -> bool:
    """True if ``r`` has NaNs and the caller accepts NaN (the result should then be NaN)."""
    nan = np.isnan(r)
    if not nan.any():
        return False
    _undefined(f"{what}: per-class scores are undefined (NaN) for classes {np.flatnonzero(nan).tolist()}",
               nan_ok)
    return True


# --- multi-class ------------------------------------------------------------------------------------
def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions, ``mean(y_pred == y_true)``.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)

    Returns
    -------
    float
        Overall accuracy (AIM-Fair's ACC, §4.2; the accuracy of MIME's experiments, §4).
    """
    y, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _same_length(y_true=y, y_pred=p)
    return float(np.mean(y == p))


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """Confusion matrix ``M[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    Parameters
    ----------
    y_true, y_pred : array-like of int in ``0 .. n_classes-1``
    n_classes : int, optional
        Number of classes C. Default: ``max(y_true.max(), y_pred.max()) + 1``; pass it explicitly when
        some class may be absent from both vectors.

    Returns
    -------
    numpy.ndarray of int64, shape (C, C)
        Rows are true classes, columns predicted classes (the layout of
        ``sklearn.metrics.confusion_matrix``).
    """
    y, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _same_length(y_true=y, y_pred=p)
    if min(y.min(), p.min()) < 0:
        raise ValueError("class labels must be non-negative integers")
    top = int(max(y.max(), p.max())) + 1
    if n_classes is None:
        n_classes = top
    elif top > n_classes:
        raise ValueError(f"labels go up to {top - 1} but n_classes={n_classes}")
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_recall(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """Per-class recall ``r_c = TP_c / (TP_c + FN_c)`` (HBR §3.2: r_c = Rec(M, D_c^test)).

    Parameters
    ----------
    y_true, y_pred : array-like of int
    n_classes : int, optional
        See :func:`confusion_matrix`.

    Returns
    -------
    numpy.ndarray of float, shape (C,)
        Recall of each class. A class with no test samples has undefined recall: its entry is NaN
        (never 0).
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def per_class_precision(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """Per-class precision ``TP_c / (TP_c + FP_c)`` (HBR §3.2 and Figs. 5-6 compute every Δ for
    precision as well as recall).

    Parameters
    ----------
    y_true, y_pred : array-like of int
    n_classes : int, optional
        See :func:`confusion_matrix`.

    Returns
    -------
    numpy.ndarray of float, shape (C,)
        Precision of each class. **A class that is never predicted has undefined precision (0/0): its
        entry is NaN**, not 0 (``sklearn``'s default ``zero_division="warn"`` would give 0).
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    predicted = cm.sum(axis=0)
    return np.where(predicted > 0, np.diag(cm) / np.maximum(predicted, 1), np.nan)


def class_averaged_recall(y_true: Any, y_pred: Any, n_classes: int | None = None,
                          nan_ok: bool = False) -> float:
    """Mean of the per-class recalls (HBR's "Recall" average performance, §3.2; = balanced accuracy).

    Raises ``ValueError`` if a class has no test samples, unless ``nan_ok=True`` (then NaN).
    """
    r = per_class_recall(y_true, y_pred, n_classes)
    if _check_nan(r, nan_ok, "class-averaged recall"):
        return float("nan")
    return float(r.mean())


def class_averaged_precision(y_true: Any, y_pred: Any, n_classes: int | None = None,
                             nan_ok: bool = False) -> float:
    """Mean of the per-class precisions (HBR's "Precision" average performance, §3.2).

    Raises ``ValueError`` if a class is never predicted, unless ``nan_ok=True`` (then NaN).
    """
    r = per_class_precision(y_true, y_pred, n_classes)
    if _check_nan(r, nan_ok, "class-averaged precision"):
        return float("nan")
    return float(r.mean())


# --- HBR class-bias metrics (§3.2) -------------------------------------------------------------------
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


# --- binary group fairness ---------------------------------------------------------------------------
def _rate_per_group(num: np.ndarray, den: np.ndarray, g: np.ndarray, what: str, empty: str,
                    nan_ok: bool) -> np.ndarray:
    out = np.empty(2)
    for grp in (0, 1):
        m = den & (g == grp)
        n = int(m.sum())
        out[grp] = num[m].mean() if n else _undefined(f"{what} undefined for group a={grp}: {empty}", nan_ok)
    return out


def true_positive_rates(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> np.ndarray:
    """TPR per group, ``TPR_a = P(ŷ = 1 | A = a, Y = 1)`` (GCM §2.2).

    Returns
    -------
    numpy.ndarray, shape (2,)
        ``[TPR_{a=0}, TPR_{a=1}]``. A group with no positives (y = 1) has no TPR: ``ValueError``
        naming the group, or NaN with ``nan_ok=True``.
    """
    y, p, g = _binary_inputs(y_true, y_pred, a)
    return _rate_per_group(p, y == 1, g, "TPR", "no positives (y=1)", nan_ok)


def false_positive_rates(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> np.ndarray:
    """FPR per group, ``FPR_a = P(ŷ = 1 | A = a, Y = 0)`` (GCM §2.2).

    Returns ``[FPR_{a=0}, FPR_{a=1}]``; a group with no negatives raises (or NaN with ``nan_ok``).
    """
    y, p, g = _binary_inputs(y_true, y_pred, a)
    return _rate_per_group(p, y == 0, g, "FPR", "no negatives (y=0)", nan_ok)


def selection_rates(y_pred: Any, a: Any, nan_ok: bool = False) -> np.ndarray:
    """Positive-prediction rate per group, ``[P(ŷ=1 | a=0), P(ŷ=1 | a=1)]``.

    A group with no samples raises (or NaN with ``nan_ok``).
    """
    p, g = _binary(y_pred, "y_pred"), _binary(a, "a")
    _same_length(y_pred=p, a=g)
    return _rate_per_group(p, np.ones_like(p, dtype=bool), g, "selection rate", "no samples", nan_ok)


def delta_tpr(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """ΔTPR = |TPR_{a=0} − TPR_{a=1}| (GCM §2.2)."""
    t = true_positive_rates(y_true, y_pred, a, nan_ok)
    return float(abs(t[0] - t[1]))


def delta_fpr(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """ΔFPR = |FPR_{a=0} − FPR_{a=1}| (GCM §2.2)."""
    f = false_positive_rates(y_true, y_pred, a, nan_ok)
    return float(abs(f[0] - f[1]))


def equalized_odds_sum(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """GCM's ΔEO = ΔTPR + ΔFPR, a **sum** (GCM §2.2, eq. 2; also its code).

    GCM plots ``−ΔEO`` as the "fairness score" (higher is fairer). Equals
    ``2 * fairlearn.metrics.equalized_odds_difference(..., agg="mean")`` and twice
    :func:`equalized_odds_mean`. Range [0, 2].
    """
    return delta_tpr(y_true, y_pred, a, nan_ok) + delta_fpr(y_true, y_pred, a, nan_ok)


def equalized_odds_mean(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """AIM-Fair's EO = (ΔTPR + ΔFPR) / 2, a **mean** (AIM-Fair §4.2, eq. 9).

    Eq. 9 is the "averaged sum" over all (y, ŷ) ∈ {0,1}² of |P_{s0}(Ŷ=ŷ|Y=y) − P_{s1}(Ŷ=ŷ|Y=y)|. For a
    binary classifier the ŷ = 0 terms repeat the ŷ = 1 terms, so the average of the four is
    (ΔTPR + ΔFPR)/2, as in AIM-Fair's code. Equals
    ``fairlearn.metrics.equalized_odds_difference(..., agg="mean")`` (not fairlearn's default
    ``agg="worst_case"``, which is max(ΔTPR, ΔFPR)). Range [0, 1].
    """
    return equalized_odds_sum(y_true, y_pred, a, nan_ok) / 2.0


def equalized_odds_max(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """max(ΔTPR, ΔFPR), the **worst case** of the two gaps.

    Equals ``fairlearn.metrics.equalized_odds_difference`` with its default ``agg="worst_case"``.
    AIM-Fair defines EO as the mean (eq. 9, :func:`equalized_odds_mean`, also its code), but the EO
    values tabulated in the paper match max(ΔTPR, ΔFPR) of its own printed cell accuracies
    (ΔTPR = |acc[1, 0] − acc[1, 1]|, ΔFPR = |acc[0, 0] − acc[0, 1]| for the cells ``acc[y, a]`` of
    :func:`cell_accuracies`; e.g. Table 5, plain prompt: gaps 24.26 and 34.19, printed EO 34.20), so
    the book reports both. A NaN gap (``nan_ok=True``) makes the result NaN. Range [0, 1].
    """
    gaps = [delta_tpr(y_true, y_pred, a, nan_ok), delta_fpr(y_true, y_pred, a, nan_ok)]
    return float(np.max(gaps))  # np.max propagates NaN (the builtin max would depend on the order)


def equal_opportunity_ratio(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """GCM's EOP = TPR_{A=0} / TPR_{A=1} (GCM §2.2, eq. 1).

    The **unprivileged group a = 0 is the numerator** and the privileged group a = 1 the
    denominator, as written in the paper ("privileged group (A=1) and unprivileged group (A=0)").
    EOP close to 1 is fair; it exceeds 1 when the unprivileged group has the higher TPR (the paper
    does not fold it back, and neither do we). With ``TPR_{a=1} = 0`` the ratio is undefined:
    ``ValueError`` (or NaN with ``nan_ok``).
    """
    t = true_positive_rates(y_true, y_pred, a, nan_ok)
    if np.isnan(t).any():
        return float("nan")
    if t[1] == 0:
        return _undefined("EOP undefined: TPR of the privileged group a=1 is 0", nan_ok)
    return float(t[0] / t[1])


def demographic_parity_difference(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """ΔDP = |P(ŷ=1 | a=0) − P(ŷ=1 | a=1)| (GCM, "Experiments on other fairness metrics").

    ``y_true`` is unused (kept for a uniform signature, as fairlearn does). Equals
    ``fairlearn.metrics.demographic_parity_difference``. GCM reports ``−ΔDP``.
    """
    _binary(y_true, "y_true")
    s = selection_rates(y_pred, a, nan_ok)
    return float(abs(s[0] - s[1]))


def cell_accuracies(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> np.ndarray:
    """Accuracy in each of the four (y, a) cells, as a 2×2 array ``acc[y, a]``.

    These are AIM-Fair's "group accuracies" (§4.2; its tables' per-group columns). An empty cell
    raises (or NaN with ``nan_ok``).
    """
    y, p, g = _binary_inputs(y_true, y_pred, a)
    out = np.empty((2, 2))
    for yy in (0, 1):
        for gg in (0, 1):
            m = (y == yy) & (g == gg)
            out[yy, gg] = (p[m] == yy).mean() if m.any() else _undefined(
                f"cell (y={yy}, a={gg}) has no samples", nan_ok)
    return out


def group_accuracies(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> np.ndarray:
    """Accuracy per sensitive group, ``[acc(a=0), acc(a=1)]``; an empty group raises (or NaN)."""
    y, p, g = _binary_inputs(y_true, y_pred, a)
    return _rate_per_group((p == y).astype(float), np.ones_like(y, dtype=bool), g, "accuracy",
                           "no samples", nan_ok)


def worst_group_accuracy(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """AIM-Fair's WST = min over the four (y, a) cells of the cell accuracy (AIM-Fair §4.2, eq. 10).

    Equals ``MetricFrame(metrics=accuracy_score, ..., sensitive_features=DataFrame({"y": y,
    "a": a})).group_min()`` in fairlearn. An empty cell raises (or NaN with ``nan_ok``).
    """
    c = cell_accuracies(y_true, y_pred, a, nan_ok)
    return float(np.nan if np.isnan(c).any() else c.min())


def group_accuracy_std(y_true: Any, y_pred: Any, a: Any, nan_ok: bool = False) -> float:
    """AIM-Fair's STD = **population** standard deviation (ddof = 0) of the four cell accuracies
    (AIM-Fair tables, "STD (↓)"; the ddof comes from its code)."""
    c = cell_accuracies(y_true, y_pred, a, nan_ok)
    return float(np.std(c))


def aggregate_cell_accuracies(cells: Any) -> dict[str, Any]:
    """AIM-Fair's aggregation over seeds: average the cell accuracies first, then take min / std.

    Parameters
    ----------
    cells : array-like, shape (n_seeds, 2, 2)
        :func:`cell_accuracies` of each seed.

    Returns
    -------
    dict
        ``cells`` (the seed-averaged 2×2 array), ``wst`` (its min) and ``std`` (its population std),
        the order of operations of AIM-Fair's code. This differs from the mean over seeds of the
        per-seed WST / STD, because min and std do not commute with the mean.
    """
    c = as_numpy(cells).astype(float)
    if c.ndim != 3 or c.shape[1:] != (2, 2):
        raise ValueError(f"cells must have shape (n_seeds, 2, 2), got {c.shape}")
    m = c.mean(axis=0)
    return {"cells": m, "wst": float(m.min()), "std": float(np.std(m))}


def average_precision(y_true: Any, scores: Any, nan_ok: bool = False) -> float:
    """Average precision of the scores for the positive class y = 1 (GCM §4.1, "AP").

    Computed with ``sklearn.metrics.average_precision_score`` like GCM's code. ``scores`` may be
    logits or probabilities (AP only depends on their ranking). Without any positive AP is undefined:
    ``ValueError`` (or NaN with ``nan_ok``).
    """
    from sklearn.metrics import average_precision_score

    y = _binary(y_true, "y_true")
    s = as_numpy(scores).astype(float).reshape(-1)
    _same_length(y_true=y, scores=s)
    if not y.any():
        return _undefined("AP undefined: y_true has no positives", nan_ok)
    return float(average_precision_score(y, s))


def cifar10s_bias(y_pred: Any, a: Any, n_classes: int | None = None, per_class: bool = False,
                  nan_ok: bool = False) -> float | np.ndarray:
    """The "Bias" metric of Wang et al. (CVPR 2020) on CIFAR-10S, used in GCM Table 6.

    Wang et al. evaluate one model on the colour and the grayscale version of the same (balanced)
    test set and, with Col_c / Gr_c the number of colour / grayscale test images *predicted* as class
    c, report the mean over classes

        Bias = 1/C Σ_c max(Col_c, Gr_c) / (Col_c + Gr_c) − 0.5 .

    It is 0 when every class is predicted equally often in both domains and at most 0.5. We use the
    per-domain prediction *rates* p_c^d = P(ŷ = c | a = d) instead of counts; the two are identical
    when both domains have the same number of images (as on CIFAR-10S), and rates keep the metric
    meaningful if they do not. GCM Table 6 prints the **negated** value (−0.074 for Vanilla;
    "Bias ↑", higher is fairer); this function returns the positive bias.

    On the ``test`` split of ``skewed-color-mnist`` / ``skewed-color-fashion-mnist`` (every image once
    in colour, once in gray) call ``cifar10s_bias(pred, ds.groups["color"], n_classes=10)``; with
    two prediction vectors, ``cifar10s_bias(np.r_[pred_color, pred_gray], np.r_[ones, zeros])``.

    Parameters
    ----------
    y_pred : array-like of int, shape (n,)
        Predicted classes for the images of both domains.
    a : array-like of {0, 1}, shape (n,)
        Domain of each image (e.g. 1 = colour, 0 = grayscale); the metric is symmetric in the domains.
    n_classes : int, optional
        Number of classes (default ``y_pred.max() + 1``).
    per_class : bool
        Return the per-class values ``max/(sum) − 0.5`` (shape (C,)) instead of their mean.
    nan_ok : bool
        A class never predicted in either domain has an undefined term (0/0): ``ValueError`` naming
        it, or NaN (which propagates into the mean) with ``nan_ok=True``. A domain without images
        raises.
    """
    p, g = _labels(y_pred, "y_pred"), _binary(a, "a")
    _same_length(y_pred=p, a=g)
    if p.min() < 0:
        raise ValueError("class labels must be non-negative integers")
    C = int(p.max()) + 1 if n_classes is None else int(n_classes)
    if p.max() >= C:
        raise ValueError(f"labels go up to {p.max()} but n_classes={C}")
    rates = np.empty((2, C))
    for d in (0, 1):
        n = int((g == d).sum())
        if n == 0:
            raise ValueError(f"domain a={d} has no images")
        rates[d] = np.bincount(p[g == d], minlength=C) / n
    total = rates.sum(axis=0)
    never = np.flatnonzero(total == 0)
    if never.size:
        _undefined(f"Bias undefined for classes {never.tolist()}: never predicted in either domain", nan_ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = rates.max(axis=0) / total - 0.5
    return terms if per_class else float(terms.mean())


def group_report(y: Any, y_pred: Any, a: Any, scores: Any = None, nan_ok: bool = False) -> dict[str, float]:
    """Every binary group metric of one set of predictions, as a flat dict of floats.

    Keys: ``acc``; ``tpr_a0``, ``tpr_a1``, ``fpr_a0``, ``fpr_a1``, ``delta_tpr``, ``delta_fpr``;
    ``eo_sum`` (GCM ΔEO), ``eo_mean`` (AIM-Fair EO), ``eop`` (GCM EOP, TPR_0/TPR_1);
    ``sel_a0``, ``sel_a1``, ``dp_diff`` (ΔDP); ``acc_a0``, ``acc_a1``; ``acc_y{y}_a{a}`` for the
    four cells, ``wst`` (AIM-Fair WST), ``std`` (AIM-Fair STD); and ``ap`` (GCM AP) when ``scores``
    is given. Degenerate groups raise ``ValueError`` unless ``nan_ok=True`` (then the affected
    entries are NaN).
    """
    yy, pp, gg = _binary_inputs(y, y_pred, a)
    tpr = true_positive_rates(yy, pp, gg, nan_ok)
    fpr = false_positive_rates(yy, pp, gg, nan_ok)
    sel = selection_rates(pp, gg, nan_ok)
    cells = cell_accuracies(yy, pp, gg, nan_ok)
    grp = group_accuracies(yy, pp, gg, nan_ok)
    out = {
        "acc": accuracy(yy, pp),
        "tpr_a0": float(tpr[0]), "tpr_a1": float(tpr[1]),
        "fpr_a0": float(fpr[0]), "fpr_a1": float(fpr[1]),
        "delta_tpr": float(abs(tpr[0] - tpr[1])), "delta_fpr": float(abs(fpr[0] - fpr[1])),
        "eo_sum": equalized_odds_sum(yy, pp, gg, nan_ok),
        "eo_mean": equalized_odds_mean(yy, pp, gg, nan_ok),
        "eop": equal_opportunity_ratio(yy, pp, gg, nan_ok),
        "sel_a0": float(sel[0]), "sel_a1": float(sel[1]),
        "dp_diff": float(abs(sel[0] - sel[1])),
        "acc_a0": float(grp[0]), "acc_a1": float(grp[1]),
    }
    for y_ in (0, 1):
        for a_ in (0, 1):
            out[f"acc_y{y_}_a{a_}"] = float(cells[y_, a_])
    out["wst"] = float(np.nan if np.isnan(cells).any() else cells.min())
    out["std"] = float(np.std(cells))
    if scores is not None:
        out["ap"] = average_precision(yy, scores, nan_ok)
    return out
