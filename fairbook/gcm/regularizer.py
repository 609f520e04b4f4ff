"""The GCM regulariser (GCM eqs. 10-14): group confidence (eq. 12), the weights W = c^T, the penalty
L_fair and :class:`GCMLoss`, the ``extra_loss(model, batch)`` of :func:`fairbook.train.fit`
(build it with :func:`gcm_loss`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .gradients import (GroupGradients, PerGroupForward, _check_choice, _check_nonneg, _unpack, cell_index,
                        cell_masks, cells, n_classes, true_class_probability)

__all__ = ["FORMS", "GCMLoss", "confidence_weights", "gcm_loss", "gcm_penalty", "group_confidence"]

FORMS = ("paper", "squared")


# --- GCM: confidence weights (eq. 12) and the regulariser (eqs. 10, 13, 14) ---------------------------
def group_confidence(batch: Mapping[str, Any], require_all: bool = True) -> dict[tuple[int, int], torch.Tensor]:
    """Group confidence score ``c^{A=a,Y=y} = ȳ·y + (1 − ȳ)·(1 − y)`` (GCM eq. 12), detached.

    ȳ^{A=a,Y=y} is the mean predicted probability of class 1 over the cell's samples, so c is the mean
    confidence on the true class: ȳ for y = 1 cells, 1 − ȳ for y = 0 cells. Keys ``(a, y)``. With K
    classes, c is likewise the cell's mean softmax probability of its class y.
    """
    lg, y, a = _unpack(batch)
    k = n_classes(lg)
    p = true_class_probability(lg.detach(), y)
    key = cell_index(y, a, k)
    counts = torch.bincount(key, minlength=2 * k)
    if bool((counts == 0).any()):
        cell_masks(y, a, require_all, k)  # raises naming the empty cells if require_all
    means = torch.bincount(key, weights=p, minlength=2 * k).to(p.dtype) / counts.clamp(min=1)
    return {cell: means[i] for i, cell in enumerate(cells(k)) if counts[i] > 0}


def confidence_weights(confidence: Mapping[tuple[int, int], torch.Tensor], T: float) -> dict[tuple[int, int], torch.Tensor]:
    """Gradient-reweighing weights ``W^{A=a,Y=y} = (c^{A=a,Y=y})^T`` (GCM §3.2, below eq. 12).

    ``T = 0`` gives all weights 1 (eq. 13 reduces to eq. 10); the paper uses T ∈ {0, 2}. The weights
    are constants for the optimiser (detached), as in the authors' code. Raises for T < 0.
    """
    T = _check_nonneg("T", T)
    return {k: torch.ones_like(c) if T == 0 else c.detach().pow(T) for k, c in confidence.items()}


def gcm_penalty(gg: GroupGradients, weights: Mapping[tuple[int, int], Any] | None = None,
                form: str = "paper") -> torch.Tensor:
    """GCM's fairness term L_fair (eqs. 10, 13; restricted to ``gg``'s tensors it is eq. 14).

    ``form="paper"`` — the paper's magnitudes::

        L_fair = Σ_{w} Σ_{y∈{0,1}} | W^{0y}·|g_w^{A=0,Y=y}| − W^{1y}·|g_w^{A=1,Y=y}| |   (y < K for K classes)

    ``form="squared"`` — the authors' code (``fair_grad_reweighing``, method "MNIGA")::

        L_fair = Σ_{w} Σ_{y} | W^{0y}·(g_w^{A=0,Y=y})² − W^{1y}·(g_w^{A=1,Y=y})² |

    The outer absolute value is not printed in eqs. 10/13 (whose typesetting is damaged, cf. the
    unbalanced bars of eq. 14), but without it L_fair is unbounded below and would not *match* the
    contributions; the code takes it elementwise, as here. g is the gradient of each cell's *mean*
    loss (as in the code; with group-balanced batches the |Z_ay| are equal and a sum would only
    rescale λ). ``weights=None`` means all 1 (eq. 10, T = 0).

    Returns a scalar tensor that back-propagates to the parameters when ``gg`` was computed with
    ``create_graph=True``.
    """
    _check_choice("form", form, FORMS)
    k, total = gg.k, None
    stacked = gg.stack("gcm_penalty")  # per tensor G, G[i]: cell i of cells(k), a = 0 first
    like = stacked[0]
    w = None if weights is None else torch.stack(
        [torch.as_tensor(weights[c], dtype=like.dtype, device=like.device) for c in cells(k)])
    for G in stacked:
        m = G.abs() if form == "paper" else G.pow(2)
        if w is not None:
            m = w.reshape(-1, *[1] * (G.dim() - 1)) * m
        term = (m[:k] - m[k:]).abs().sum()
        total = term if total is None else total + term
    return total


class GCMLoss(PerGroupForward):
    """GCM's ``λ·L_fair`` (eqs. 11, 13) as an ``extra_loss(model, batch)`` for :func:`fairbook.train.fit`.

    Each call takes the (a, y) groups' gradients (from the per-cell forward passes of
    :meth:`PerGroupForward.batch_forward` when the engine used it, else from the batch's) with
    ``create_graph=True`` (:func:`group_gradients`), the confidence weights W = c^T of the batch
    (eq. 12, detached) and returns ``lam * gcm_penalty(...)``; the engine adds it to the batch's BCE
    (over all samples, as the code does) and back-propagates through the gradients (double backward).
    Needs every (a, y) cell in each batch: train with ``sampler="group_balanced"`` (the paper's
    batches, 500 per cell on Adult). ``last`` holds the latest ``reg`` (L_fair), ``confidence`` and
    ``weights`` (detached) for inspection. Build it with :func:`gcm_loss`.
    """

    def __init__(self, lam: float, *, T: float = 0.0, form: str = "paper",
                 params: Sequence[str] | None = None, kind: str = "all"):
        super().__init__(params, kind)
        self.lam = _check_nonneg("lam", lam)
        self.T = _check_nonneg("T", T)
        self.form = _check_choice("form", form, FORMS)
        self.last: dict[str, Any] = {}

    def penalty(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        gg = self.gradients(model, batch)
        conf = group_confidence(batch)
        w = confidence_weights(conf, self.T)
        reg = gcm_penalty(gg, w, self.form)
        self.last = {"reg": reg.detach(), "confidence": conf, "weights": w, "names": gg.names}
        return reg


def gcm_loss(lam: float, T: float = 0.0, form: str = "paper", params: Sequence[str] | None = None,
             kind: str = "all") -> GCMLoss:
    """GCM regulariser ``λ·L_fair`` (eqs. 10-14) for ``train.fit(extra_loss=...)``.

    Parameters
    ----------
    lam : float
        λ of eq. 11 (>= 0; 0 is OverSampling).
    T : float
        Temperature of the weights W = c^T (>= 0; T = 0 is gradient matching, eq. 10; T > 0 gradient
        reweighing, eq. 13; the paper uses T ∈ {0, 2}).
    form : {"paper", "squared"}
        Gradient magnitudes (the paper's equations) or squared gradients (the authors' code); see
        :func:`gcm_penalty`.
    params, kind
        Restrict the sum over w to some tensors (eq. 14, Table 2); see :func:`select_parameters`,
        :func:`layer_parameters`. Unknown names raise at the first call.
    """
    return GCMLoss(lam, T=T, form=form, params=params, kind=kind)
