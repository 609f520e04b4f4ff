"""Hardness-Based Resampling (Pukowski & Osmani, "Reducing class bias in data-balanced datasets
through hardness-based resampling"): the method a reader reuses.

* :mod:`.hardness` -- margins (eq. 2), AUM (eq. 3) through :class:`AUMTracker`, confidence (eq. 1),
  class hardness (eq. 4);
* :mod:`.resampling` -- the allocation :func:`resampling_counts` (eqs. 5-6, appendix A) and
  :func:`resample` (undersampling of the easiest samples, then ``random``, ``smote``, ``holdout`` or
  a generated :class:`Pool` with rEDM / aEDM / hEDM selection), the controls the paper lacks.

The chapter's own code stays in submodules, loaded on first use: :mod:`.design` (the seeds and
paired t-test of appendices B-C), :mod:`.experiment` (recipes, case studies, grids),
:mod:`.analysis` (tests at the unit of the resampled dataset, Tables D1-D6, appendix E),
:mod:`.claims` (the paper's claims, :func:`fairbook.hbr.claims.judge`) and :mod:`.chapter` (the
runner's hooks). The class-bias metrics (eqs. 7-11) live in :mod:`fairbook.metrics`.
"""
from __future__ import annotations

from .._lazy import submodules

from .hardness import AUMTracker, class_hardness, ensemble_confidence, ensemble_predict, margins
from .resampling import (CONTROLS, POOL_STRATEGIES, ROUNDINGS, STRATEGIES, Pool, class_weights, easiest_kept,
                         induced_imbalance, logit_offsets, parse_strategy, pool_candidates, resample,
                         resampling_counts, smote, uses_pool)

__all__ = ["margins", "AUMTracker", "ensemble_confidence", "ensemble_predict", "class_hardness",
           "STRATEGIES", "POOL_STRATEGIES", "CONTROLS", "ROUNDINGS", "parse_strategy", "uses_pool",
           "class_weights", "logit_offsets", "resampling_counts", "induced_imbalance", "easiest_kept",
           "pool_candidates", "Pool", "resample", "smote"]

_SUBMODULES = {"design", "experiment", "analysis", "claims", "chapter"}


__getattr__ = submodules(__name__, _SUBMODULES)
