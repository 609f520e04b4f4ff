"""The one training engine of the book.

:func:`fit` (``engine``) trains one model; :func:`fit_many` (``batched``) trains K same-shaped models
as one vectorised model, equal to K separate :func:`fit` calls.
"""
from __future__ import annotations

from .batched import fit_many
from .engine import (FitResult, Optim, Schedule, as_tensor, evaluate, fit, independent_counts, logits_of,
                     loss_fn, predict, random_crop_flip, resolve_device, seeded)

__all__ = ["FitResult", "Optim", "Schedule", "as_tensor", "evaluate", "fit", "fit_many", "independent_counts",
           "logits_of", "loss_fn", "predict", "random_crop_flip", "resolve_device", "seeded"]
