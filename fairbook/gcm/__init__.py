"""Group Contribution Matching (Li et al., "Fairness via Group Contribution Matching", IJCAI 2023):
the group contribution disparity, the GCM regulariser and the paper's baselines.

Everything trains through the one engine, :func:`fairbook.train.fit`: a method is an
``extra_loss(model, batch)`` callable (``batch`` holds ``x``, ``y``, ``ids``, ``groups`` = the
sensitive attribute a and the training ``logits``), combined with ``sampler="group_balanced"``
(``batch_size/4`` samples of each (a, y) cell per step, the authors' batches) where the paper does so.

* :mod:`~fairbook.gcm.gradients` — cells and per-group gradients: :func:`cells`, :func:`make_batch`,
  :func:`select_parameters`, :func:`layer_parameters`, :func:`group_gradients` (eq. 7, the gradients of
  the four (a, y) groups), and for ``nn.Linear`` tensors the same from one pass over the batch,
  :func:`linear_group_gradients`;
* :mod:`~fairbook.gcm.disparity` — group contribution disparity r̂ (eqs. 6, 8, 9):
  :func:`contribution_disparity`; the variant the authors' code logs, :func:`code_disparity`;
  :class:`DisparityTracker` records both at every iteration;
* :mod:`~fairbook.gcm.regularizer` — GCM: :func:`group_confidence` (eq. 12), :func:`confidence_weights`
  (W = c^T), :func:`gcm_penalty` (eqs. 10, 13, 14), :func:`gcm_loss` -> :class:`GCMLoss`;
* :mod:`~fairbook.gcm.baselines` — EOR, adversarial debiasing (Zhang et al. 2018), IGA (eq. 16), direct
  aligning (eq. 17) and the external references of fairlearn;
* :mod:`~fairbook.gcm.methods` — :func:`method_loss` and :func:`fit_method` dispatch by name
  (:data:`METHODS`; vanilla ERM and OverSampling are the engine alone); :func:`report`,
  :func:`model_report`, :func:`val_metrics` (epoch selection on validation ΔEO, as in the authors' code).

The chapter's experiments (:mod:`~fairbook.gcm.experiment`), its claims (:mod:`~fairbook.gcm.claims`) and
the runner's hooks (:mod:`~fairbook.gcm.chapter`) are submodules, loaded on first use
(``gcm.experiment.train_eval``). The metrics themselves live in :mod:`fairbook.metrics`.
"""
from __future__ import annotations

from .._lazy import submodules

from .disparity import (Disparity, DisparityTracker, code_disparity, combine, contribution_disparity,
                        final_disparity, permute_within)
from .gradients import (CELLS, GroupGradients, authors_parameters, binary_logit, cell_masks, cells, group_gradients,
                        layer_parameters, linear_group_gradients, make_batch, sample_losses, select_parameters)
from .methods import METHODS, fit_method, method_loss, model_report, report, val_metrics
from .regularizer import GCMLoss, confidence_weights, gcm_loss, gcm_penalty, group_confidence

__all__ = ["CELLS", "METHODS", "Disparity", "DisparityTracker", "GCMLoss", "GroupGradients", "authors_parameters",
           "binary_logit", "cell_masks", "cells", "code_disparity", "combine", "confidence_weights",
           "contribution_disparity", "final_disparity", "fit_method", "gcm_loss", "gcm_penalty", "group_confidence",
           "group_gradients", "layer_parameters", "linear_group_gradients", "make_batch", "method_loss",
           "model_report", "permute_within", "report", "sample_losses", "select_parameters", "val_metrics"]

#: submodules loaded on first use (``gcm.experiment``): the chapter's experiments, its claims, the runner's
#: hooks; ``baselines`` and the method modules are already loaded by the imports above
_SUBMODULES = {"baselines", "chapter", "claims", "disparity", "experiment", "gradients", "methods", "regularizer"}


__getattr__ = submodules(__name__, _SUBMODULES)
