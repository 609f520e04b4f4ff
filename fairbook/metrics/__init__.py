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

Modules
-------
``_classification`` (multi-class), ``_class_bias`` (HBR's class bias), ``_group`` (binary group
fairness) and ``_base`` (input conversion and checks); every metric is imported from here.
"""
from __future__ import annotations

from ._base import _binary, as_numpy  # _binary: the papers' binary-label check
from ._class_bias import (HBR_QUANTILE_K, class_bias_report, default_quantile_k, delta_he, delta_mad, delta_max,
                          delta_quantile, delta_std, easy_hard_classes)
from ._classification import (accuracy, class_averaged_precision, class_averaged_recall, confusion_matrix,
                              per_class_precision, per_class_recall)
from ._group import (aggregate_cell_accuracies, average_precision, cell_accuracies, cifar10s_bias,
                     delta_fpr, delta_tpr, demographic_parity_difference, equal_opportunity_ratio,
                     equalized_odds_max, equalized_odds_mean, equalized_odds_sum, false_positive_rates,
                     group_accuracies, group_accuracy_std, group_report, selection_rates,
                     true_positive_rates, worst_group_accuracy)

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
