"""Multi-class metrics: accuracy, the confusion matrix, per-class and class-averaged recall and
precision (HBR §3.2)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ._base import _check_nan, _labels, _same_length


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
