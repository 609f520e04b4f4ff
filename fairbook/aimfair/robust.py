"""Robust-optimisation baselines of AIM-Fair's Table 1, as hooks of :func:`fairbook.train.fit`.

* :func:`cvar_dro` — CVaR DRO (Levy, Carmon, Duchi & Sidford 2020, "Large-scale methods for
  distributionally robust optimization", NeurIPS): the mean of the worst ``alpha`` fraction of the
  per-sample losses, label-free.
* :class:`GroupDRO` — online group DRO (Sagawa, Koh, Hashimoto & Liang 2020, "Distributionally
  robust neural networks for group shifts", ICLR, Algorithm 1); it needs the group labels, so it is
  an oracle next to the label-free methods.
* :func:`error_set`, :func:`upweight`, :func:`error_set_minority_share` — JTT (Liu, Haghgoo, Chen,
  Raghunathan, Koh, Sagawa, Liang & Finn 2021, "Just train twice: improving group robustness without
  training group information", ICML): train once, upsample the misclassified training examples
  ``lambda_up`` times, train again; AIM-Fair §4.4 also reads its synthetic bias ratio off the error set.

``fit`` adds ``extra_loss(model, batch)`` to its mean loss, so the two DRO hooks return
``objective - mean loss``: the total fit minimises is then the robust objective itself.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import train
from ._util import fail as _fail

__all__ = ["per_sample_loss", "cvar_dro", "GroupDRO", "error_set", "upweight", "error_set_minority_share"]
LOSSES = ("bce", "ce")


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_loss(where: str, loss) -> str:
    if loss not in LOSSES:
        raise _fail(where, "loss", loss, "'bce' (one logit) or 'ce' (cross-entropy)")
    return loss


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "bce") -> torch.Tensor:
    """The unreduced criterion of ``fit(..., loss=loss)`` (:func:`fairbook.train.loss_fn`), shape (B,)."""
    if _check_loss("per_sample_loss", loss) == "bce":
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.to(logits.dtype),
                                                  reduction="none")
    return F.cross_entropy(logits, y.long(), reduction="none")


def cvar_dro(alpha: float, loss: str = "bce"):
    """``extra_loss`` of CVaR DRO at level ``alpha`` in (0, 1] (Levy et al. 2020, eq. 2):

        CVaR_alpha(l_1..l_B) = (1/k) * sum of the k largest l_i,   k = ceil(alpha * B),

    the batch estimate of sup over Q with dQ/dP <= 1/alpha of E_Q[l]. The hook returns
    ``CVaR - mean(l)``, so ``fit``'s total is the CVaR; ``alpha = 1`` adds exactly zero."""
    where = "cvar_dro"
    if not _is_real(alpha) or not 0 < alpha <= 1:
        raise _fail(where, "alpha", alpha, "a finite number in (0, 1]")
    _check_loss(where, loss)

    def extra(model, batch) -> torch.Tensor:
        l = per_sample_loss(batch["logits"], batch["y"], loss)
        k = math.ceil(alpha * l.numel())
        if k >= l.numel():
            return l.new_zeros(())
        return l.topk(k).values.mean() - l.mean()

    return extra


class GroupDRO:
    """``extra_loss`` of online group DRO (Sagawa et al. 2020, Algorithm 1), needs ``fit(groups=a)``.

    The group of a sample is ``g = y * n_a + a`` with ``a = batch["groups"]`` the sensitive attribute
    and ``n_a = n_groups // n_classes`` (2 classes for ``loss="bce"``, the number of logits for
    ``"ce"``): a binary target and a binary attribute give ``n_groups = 4``, cell (y, a) = 2y + a.
    The weights q start uniform. Per batch, with L_g the mean loss of group g over the groups P
    present in it:

        q_g <- q_g * exp(eta * L_g) / Z   for g in P,   Z = sum_P q_g exp(eta L_g) / sum_P q_g,
        objective = sum_{g in P} q_g L_g / sum_{g in P} q_g,

    and the hook returns ``objective - mean(l)``. Groups absent from a batch keep their q exactly
    (Z renormalises within P, keeping P's total mass; the reference code instead scales absent
    groups by exp(0) and renormalises over all groups: the same whenever every group is present).
    ``.q`` is a numpy copy of the weights."""

    def __init__(self, n_groups: int, eta: float = 0.01, loss: str = "bce"):
        where = "GroupDRO"
        if not _is_int(n_groups) or n_groups < 2:
            raise _fail(where, "n_groups", n_groups, "an integer >= 2 (n_classes * n_attribute_values)")
        if _check_loss(where, loss) == "bce" and n_groups % 2:
            raise _fail(where, "n_groups", n_groups, "an even integer for loss='bce' (2 classes)")
        if not _is_real(eta) or eta < 0:
            raise _fail(where, "eta", eta, "a finite number >= 0")
        self.n_groups, self.eta, self.loss = int(n_groups), float(eta), loss
        self._q = torch.full((self.n_groups,), 1.0 / self.n_groups, dtype=torch.float64)

    @property
    def q(self) -> np.ndarray:
        return self._q.cpu().numpy().copy()

    def group_of(self, y: torch.Tensor, a, n_classes: int) -> torch.Tensor:
        where = "GroupDRO"
        if a is None:
            raise ValueError(f"{where}: batch['groups'] is None; group DRO needs the sensitive "
                             f"attribute: pass groups=a to fairbook.train.fit")
        if self.n_groups % n_classes:
            raise _fail(where, "n_groups", self.n_groups, f"a multiple of the {n_classes} classes")
        n_a = self.n_groups // n_classes
        a = torch.as_tensor(a, device=y.device).long().reshape(-1)
        if a.numel() != y.numel():
            raise ValueError(f"{where}: batch['groups'] has {a.numel()} entries for {y.numel()} labels")
        if a.numel() and (a.min() < 0 or a.max() >= n_a or y.min() < 0 or y.max() >= n_classes):
            raise _fail(where, "batch['groups']", sorted(torch.unique(a).tolist()),
                        f"attribute values in 0..{n_a - 1} and labels in 0..{n_classes - 1}")
        return y.long().reshape(-1) * n_a + a

    def __call__(self, model, batch) -> torch.Tensor:
        logits, y = batch["logits"], batch["y"]
        l = per_sample_loss(logits, y, self.loss)
        g = self.group_of(y, batch["groups"], 2 if self.loss == "bce" else logits.shape[-1])
        counts = torch.bincount(g, minlength=self.n_groups)
        L = torch.zeros(self.n_groups, dtype=l.dtype, device=l.device).index_add(0, g, l)
        L = L / counts.clamp(min=1)
        present = counts > 0
        with torch.no_grad():
            q = self._q.to(l.device)
            Lp = L[present].detach().double()
            step = q[present] * torch.exp(self.eta * (Lp - Lp.max()))  # shift: stable, cancels in Z
            q[present] = step * (q[present].sum() / step.sum())
            self._q = q
        w = (q[present] / q[present].sum()).to(l.dtype)
        return (w * L[present]).sum() - l.mean()


def error_set(model, X, y, batch_size: int = 512, device="auto") -> np.ndarray:
    """JTT's error set: True where the model (eval mode) misclassifies a sample, the prediction
    being ``logit > 0`` for one logit and the argmax otherwise (:func:`fairbook.train.predict`)."""
    where = "error_set"
    if not _is_int(batch_size) or batch_size < 1:
        raise _fail(where, "batch_size", batch_size, "an integer >= 1")
    y = np.asarray(y).reshape(-1)
    logits = train.logits_of(model, X, batch_size, device)
    if len(logits) != len(y):
        raise ValueError(f"{where}: X has {len(logits)} samples, y {len(y)} labels")
    return train.predict(logits).numpy() != y.astype(np.int64)


def _bool_vector(where: str, error) -> np.ndarray:
    e = np.asarray(error)
    if e.ndim != 1 or not (e.dtype == bool or (e.size and np.isin(e, (0, 1)).all())):
        raise _fail(where, "error", f"array of shape {e.shape}, dtype {e.dtype}",
                    "a 1-D boolean (or 0/1) array, one entry per training sample")
    return e.astype(bool)


def upweight(error, lambda_up: int, seed: int | None = None) -> np.ndarray:
    """JTT's upsampled training set as int64 row indices: every error-set row ``lambda_up`` times,
    every other row once (Liu et al. 2021, eq. 2: J_up = lambda_up * sum_{E} l + sum_{not E} l).
    Sorted for ``seed=None``, else shuffled with ``numpy.random.default_rng(seed)``. Train on
    ``X[idx], y[idx]`` (``fit`` shuffles its batches anyway)."""
    where = "upweight"
    e = _bool_vector(where, error)
    if not _is_int(lambda_up) or lambda_up < 1:
        raise _fail(where, "lambda_up", lambda_up, "an integer >= 1")
    if seed is not None and not _is_int(seed):
        raise _fail(where, "seed", seed, "None or an integer")
    idx = np.repeat(np.arange(len(e), dtype=np.int64), np.where(e, int(lambda_up), 1))
    return idx if seed is None else np.random.default_rng(seed).permutation(idx)


def error_set_minority_share(error, y) -> float:
    """Bias ratio (minority share within a target class) estimated from JTT's error set, as AIM-Fair
    §4.4 sets its synthetic bias ratio: ``mean over classes c of |E ∩ {y = c}| / |{y = c}|``, clipped
    to [0, 0.5]. It assumes the ERM model errs (almost) exactly on the minority groups — a model
    relying on the shortcut; errors among the majority inflate it, correct minority rows deflate it."""
    where = "error_set_minority_share"
    e = _bool_vector(where, error)
    y = np.asarray(y).reshape(-1)
    if len(y) != len(e) or not len(y):
        raise _fail(where, "y", f"{len(y)} labels", f"one label per error entry ({len(e)}), at least one")
    shares = [e[y == c].mean() for c in np.unique(y)]
    return float(np.clip(np.mean(shares), 0.0, 0.5))
