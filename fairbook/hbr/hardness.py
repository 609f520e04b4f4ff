"""Hardness estimates of HBR (Pukowski & Osmani): margins, AUM and class-level hardness.

* :func:`margins` -- the margin M(x, ŷ) on the logits (HBR eq. 2);
* :class:`AUMTracker` -- area under the margin (eq. 3), fed by the training engine's logits hook;
* :func:`ensemble_confidence` -- confidence C = p_ŷ (eq. 1) averaged over an ensemble;
* :func:`ensemble_predict` -- the class an ensemble assigns;
* :func:`class_hardness` -- class-level hardness H_c (eq. 4).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .. import train
from ..generative.quality import confidence

__all__ = ["margins", "AUMTracker", "ensemble_confidence", "ensemble_predict", "class_hardness"]


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Margin M(x, ŷ) = z_ŷ(x) − max_{i≠ŷ} z_i(x) on the logits (HBR eq. 2)."""
    logits = logits.float()
    y = y.long().view(-1, 1)
    true = logits.gather(1, y).squeeze(1)
    other = logits.scatter(1, y, float("-inf")).max(1).values
    return true - other


class AUMTracker:
    """Area under the margin (HBR eq. 3): the mean over epochs of each sample's margin.

    Pass it as ``on_logits`` to :func:`fairbook.train.fit`: it receives the training-mode logits of
    every batch with the samples' ids, as in the authors' code (logits of the augmented batch).
    """

    def __init__(self, n_samples: int):
        self.sums = torch.zeros(n_samples, dtype=torch.float64)
        self.counts = torch.zeros(n_samples, dtype=torch.float64)

    def __call__(self, logits, y, ids, epoch) -> None:
        ids = torch.as_tensor(ids).long().cpu()
        self.sums.index_add_(0, ids, margins(logits, y).double().cpu())
        self.counts.index_add_(0, ids, torch.ones(len(ids), dtype=torch.float64))

    @property
    def values(self) -> np.ndarray:
        if (self.counts == 0).any():
            raise ValueError(f"{int((self.counts == 0).sum())} samples were never seen in training")
        return (self.sums / self.counts).numpy()


def ensemble_confidence(ensemble: Sequence[torch.nn.Module], X, labels) -> np.ndarray:
    """Confidence C = p_ŷ (HBR eq. 1), averaged over an ensemble (appendix A: the baseline models)."""
    return np.mean([confidence(m, X, labels) for m in ensemble], axis=0)


def ensemble_predict(ensemble: Sequence[torch.nn.Module], X) -> np.ndarray:
    """The class an ensemble assigns: argmax of its models' mean softmax."""
    return np.mean([train.logits_of(m, X).softmax(1).numpy() for m in ensemble], 0).argmax(1)


def class_hardness(h, y, n_classes: int | None = None) -> np.ndarray:
    """Class-level hardness H_c = mean of h_i over the samples of class c (HBR eq. 4)."""
    h, y = np.asarray(h, dtype=float), np.asarray(y)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"classes without samples: {np.flatnonzero(counts == 0).tolist()}")
    return np.bincount(y, weights=h, minlength=n_classes) / counts
