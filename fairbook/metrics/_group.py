"""Binary group-fairness metrics (GCM §2.2, §4.1, Table 6; AIM-Fair §4.2): per-group rates and
their gaps, equalized odds, EOP, ΔDP, cell accuracies (WST, STD), AP and the CIFAR-10S Bias."""
from __future__ import annotations

from typing import Any

import numpy as np

from ._base import _binary, _binary_inputs, _labels, _same_length, _undefined, as_numpy
from ._classification import accuracy


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
