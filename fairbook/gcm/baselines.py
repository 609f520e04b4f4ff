"""The paper's baselines as ``extra_loss`` callables of :func:`fairbook.train.fit` (vanilla ERM and
OverSampling are the engine alone): EOR (:func:`eor_loss`), IGA (eq. 16, :func:`iga_loss`), direct
aligning (eq. 17, :func:`direct_aligning_loss`), adversarial debiasing (Zhang et al. 2018,
:class:`AdversarialDebiasing`), and the external references of fairlearn
(:func:`exponentiated_gradient_baseline`, :func:`threshold_optimizer_baseline`). EOR and the fairlearn
references are binary; the gradient methods also take K > 2 softmax outputs.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .gradients import (GroupGradients, PerGroupForward, _binary_tensor, _check_choice, _check_nonneg, _grads,
                        _unpack, binary_logit, cell_masks, n_classes, sample_losses, select_parameters)

__all__ = ["ALIGN_FORMS", "AdversarialDebiasing", "DirectAligning", "adversarial_loss", "direct_aligning_loss",
           "direct_aligning_penalty", "eor_loss", "eor_penalty", "exponentiated_gradient_baseline", "iga_loss",
           "iga_penalty", "threshold_optimizer_baseline"]

ALIGN_FORMS = ("abs", "squared")


# --- baselines ----------------------------------------------------------------------------------------
def eor_penalty(logits: torch.Tensor, y, a) -> torch.Tensor:
    """Equalized-odds regularisation (EOR; GCM §4.1, after Madras et al. 2018): the relaxed ΔEO

        Σ_{y∈{0,1}} | E[p(x) | A=0, Y=y] − E[p(x) | A=1, Y=y] |

    with p the predicted probability of class 1 — the TPR gap (y = 1) plus the FPR gap (y = 0) with
    the 0/1 decisions replaced by probabilities (differentiable; the "gap" regulariser of Fair Mixup's
    code and the ``gap_logit`` the GCM code reports). 0 when the groups' mean probabilities are equal
    within each label. Needs all four cells.
    """
    z = binary_logit(logits)
    y, a = _binary_tensor(y, "y", z), _binary_tensor(a, "groups", z)
    masks = cell_masks(y, a)
    p = torch.sigmoid(z)
    return sum((p[masks[(0, yy)]].mean() - p[masks[(1, yy)]].mean()).abs() for yy in (0, 1))


def eor_loss(lam: float) -> Callable:
    """EOR as an ``extra_loss``: ``lam * eor_penalty(batch logits, y, a)``."""
    lam = _check_nonneg("lam", lam)

    def extra_loss(model, batch):
        return lam * eor_penalty(batch["logits"], batch.get("y"), batch.get("groups"))

    return extra_loss


def iga_penalty(group_grads: Mapping[int, Sequence[torch.Tensor]], batch_grads: Sequence[torch.Tensor],
                form: str = "squared") -> torch.Tensor:
    """IGA adapted to fairness (GCM eq. 16, from eq. 15 of Koyama & Yamaguchi 2020)::

        L_fair = Σ_{w∈θ} Σ_{a∈{0,1}} (g_w^{A=a} − g_w)²

    g^{A=a}: gradient of the mean loss over the batch's samples with A = a; g: of the whole batch.
    Eq. 16 prints the bare difference, whose sum over a vanishes identically for balanced groups; IGA
    minimises the *variance* of the domain gradients (eq. 15, trace Var), hence the square
    (``form="squared"``, default; ``"abs"`` takes |·|). No 1/|A| factor (λ absorbs it).
    """
    _check_choice("form", form, ALIGN_FORMS)
    total = None
    for ga in (group_grads[0], group_grads[1]):
        for gi, g in zip(ga, batch_grads):
            d = gi - g
            term = (d.pow(2) if form == "squared" else d.abs()).sum()
            total = term if total is None else total + term
    return total


def iga_loss(lam: float, form: str = "squared", params: Sequence[str] | None = None,
             kind: str = "all") -> Callable:
    """IGA (GCM eq. 16) as an ``extra_loss``: ``lam * iga_penalty`` with gradients from the batch's
    forward pass (``create_graph=True``). Both groups must be in the batch."""
    lam = _check_nonneg("lam", lam)
    _check_choice("form", form, ALIGN_FORMS)

    def extra_loss(model, batch):
        if lam == 0:
            return batch["logits"].new_zeros(())
        ps = [p for _, p in select_parameters(model, params, kind)]
        lg, y, a = _unpack(batch)
        per = sample_losses(lg, y)
        group = {}
        for ai in (0, 1):
            m = a == ai
            if not bool(m.any()):
                raise ValueError(f"IGA needs both groups in every batch; group a={ai} is empty")
            group[ai] = _grads(per[m].mean(), ps, True)
        return lam * iga_penalty(group, _grads(per.mean(), ps, True), form)

    return extra_loss


def direct_aligning_penalty(gg: GroupGradients, form: str = "abs") -> torch.Tensor:
    """Direct gradient aligning (GCM eq. 17; §3.2 "minimize ∇L(Z_0y, θ) − ∇L(Z_1y, θ)")::

        L_fair = Σ_{w∈θ} Σ_{y∈{0,1}} | g_w^{A=0,Y=y} − g_w^{A=1,Y=y} |   (y < K for K classes)

    Eq. 17 prints the bare signed difference (unbounded below); aligning means driving it to 0, so we
    take |·| as for eq. 10 (``form="abs"``, default) or the square (``"squared"``). Unlike GCM it
    matches the signed gradients, directions included (Fig. 3).
    """
    _check_choice("form", form, ALIGN_FORMS)
    k, total = gg.k, None
    for G in gg.stack("direct aligning"):
        d = G[:k] - G[k:]  # g^{A=0,Y=y} − g^{A=1,Y=y} for every y
        term = (d.abs() if form == "abs" else d.pow(2)).sum()
        total = term if total is None else total + term
    return total


def direct_aligning_loss(lam: float, form: str = "abs", params: Sequence[str] | None = None,
                         kind: str = "all") -> Callable:
    """Direct gradient aligning (GCM eq. 17) as an ``extra_loss``: ``lam * direct_aligning_penalty``."""
    return DirectAligning(lam, form, params, kind)


class DirectAligning(PerGroupForward):
    """Direct gradient aligning (GCM eq. 17) as an ``extra_loss``; build it with :func:`direct_aligning_loss`."""

    def __init__(self, lam: float, form: str = "abs", params: Sequence[str] | None = None, kind: str = "all"):
        super().__init__(params, kind)
        self.lam = _check_nonneg("lam", lam)
        self.form = _check_choice("form", form, ALIGN_FORMS)

    def penalty(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        return direct_aligning_penalty(self.gradients(model, batch), self.form)


class AdversarialDebiasing:
    """Adversarial debiasing (Zhang, Lemoine & Mitchell 2018), equalized-odds variant, as an
    ``extra_loss`` for :func:`fairbook.train.fit` (no separate training loop is needed).

    Adversary (Zhang et al. §4, for equality of odds): ``s = σ((1 + |c|)·z)`` with z the predictor's
    logit, and ``P(a = 1) = σ(u·[s, s·y, s·(1 − y)] + b)`` with learnable c, u, b (logistic regression).

    Each engine step calls this object once. It first trains the adversary for ``adv_steps`` Adam steps
    on the batch's *detached* logits (its own optimiser: the engine's optimiser only holds the model),
    then returns the predictor's adversarial term, computed with the adversary frozen:

    * ``projection=True`` (Zhang et al. eq. for ∇_W): the predictor's update direction is
      ``∇L_P − proj_{∇L_A} ∇L_P − α ∇L_A``. The engine already back-propagates ∇L_P (its BCE), so this
      returns a surrogate with value 0 whose gradient is ``−proj_{∇L_A}∇L_P − α∇L_A`` (both gradients
      taken over all trainable parameters as one vector, from the batch's forward pass);
    * ``projection=False``: gradient reversal, returns ``−α·L_A`` (the predictor maximises the
      adversary's loss).

    ``L_A`` is the adversary's BCE for a. ``last`` holds the adversary's latest loss. The adversary is
    built at the first call (after the engine has seeded torch), on the logits' device.
    """

    def __init__(self, alpha: float = 1.0, *, lr: float = 1e-3, adv_steps: int = 1, projection: bool = True):
        self.alpha = _check_nonneg("alpha", alpha)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not isinstance(adv_steps, (int, np.integer)) or adv_steps < 1:
            raise ValueError(f"adv_steps must be an integer >= 1, got {adv_steps!r}")
        self.lr, self.adv_steps, self.projection = lr, int(adv_steps), projection
        self.adversary: nn.Module | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.last: dict[str, float] = {}

    class _Adversary(nn.Module):
        """Binary: features [s, s·y, s·(1 − y)]; K classes: [s, s ⊗ onehot(y)] with s the softmax of
        the scaled logits (K + K² features), which spans the binary features for K = 2."""

        def __init__(self, k: int = 2):
            super().__init__()
            self.k = k
            self.c = nn.Parameter(torch.ones(()))
            self.lin = nn.Linear(3 if k == 2 else k + k * k, 1)

        def forward(self, z, y, params=None):
            c, w, b = (self.c, self.lin.weight, self.lin.bias) if params is None else params
            if self.k == 2:
                s = torch.sigmoid((1 + c.abs()) * z)
                yf = y.to(z.dtype)
                feats = torch.stack([s, s * yf, s * (1 - yf)], dim=1)
            else:
                s = torch.softmax((1 + c.abs()) * z, dim=1)
                onehot = F.one_hot(y, self.k).to(z.dtype)
                feats = torch.cat([s, (s[:, :, None] * onehot[:, None, :]).flatten(1)], dim=1)
            return F.linear(feats, w, b).squeeze(1)

    def adversary_loss(self, z: torch.Tensor, y: torch.Tensor, a: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """L_A: BCE of the adversary's prediction of a from (logit z or K logits, label y)."""
        params = None
        if frozen:
            params = (self.adversary.c.detach(), self.adversary.lin.weight.detach(),
                      self.adversary.lin.bias.detach())
        out = self.adversary(z, y, params)
        return F.binary_cross_entropy_with_logits(out, a.to(z.dtype))

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        lg, y, a = _unpack(batch)
        k = n_classes(lg)
        z = binary_logit(lg) if k == 2 else lg
        if self.adversary is None:
            self.adversary = self._Adversary(k).to(device=z.device, dtype=z.dtype)
            self.opt = torch.optim.Adam(self.adversary.parameters(), lr=self.lr)
        for _ in range(self.adv_steps):
            self.opt.zero_grad(set_to_none=True)
            la = self.adversary_loss(z.detach(), y, a)
            la.backward()
            self.opt.step()
        self.last = {"adversary_loss": float(la.detach())}
        la_pred = self.adversary_loss(z, y, a, frozen=True)
        if not self.projection:
            return -self.alpha * la_pred
        ps = [p for p in model.parameters() if p.requires_grad]
        lp = sample_losses(lg, y).mean()
        gp, ga = _grads(lp, ps, False), _grads(la_pred, ps, False)
        gp_flat = torch.cat([g.reshape(-1) for g in gp])
        ga_flat = torch.cat([g.reshape(-1) for g in ga])
        nrm2 = ga_flat.pow(2).sum()
        coef = (gp_flat @ ga_flat) / nrm2 if nrm2 > 0 else gp_flat.new_zeros(())
        surrogate = sum((p * (-coef * g_a - self.alpha * g_a)).sum() for p, g_a in zip(ps, ga))
        return surrogate - surrogate.detach()


def adversarial_loss(alpha: float = 1.0, *, lr: float = 1e-3, adv_steps: int = 1,
                     projection: bool = True) -> AdversarialDebiasing:
    """Adversarial debiasing (Zhang et al. 2018) as an ``extra_loss``; see :class:`AdversarialDebiasing`.
    Use a fresh object per training run (it owns the adversary)."""
    return AdversarialDebiasing(alpha, lr=lr, adv_steps=adv_steps, projection=projection)


# --- external references (fairlearn) ------------------------------------------------------------------
def _logistic(seed: int, C: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression  # heavy optional import, only for the references

    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)


def _f64(X) -> np.ndarray:
    """float64 features: fairlearn 0.15 writes float64 probabilities into a vector of the model's output
    dtype, which pandas 3 refuses for float32 inputs."""
    return np.asarray(X, dtype=np.float64)


def exponentiated_gradient_baseline(X_train, y_train, a_train, X_test, *, seed: int = 0, eps: float = 0.01,
                                    max_iter: int = 50, C: float = 1.0,
                                    lr_max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """fairlearn ``ExponentiatedGradient(LogisticRegression, EqualizedOdds())`` (Agarwal et al. 2018),
    an external reference on the same arrays.

    Returns ``(y_pred, scores)`` on ``X_test``: the randomised classifier's predictions (drawn with
    ``seed``) and its probability of class 1 (``_pmf_predict``, for AP).
    """
    from fairlearn.reductions import EqualizedOdds, ExponentiatedGradient  # heavy optional dependency

    eg = ExponentiatedGradient(_logistic(seed, C, lr_max_iter), EqualizedOdds(), eps=eps, max_iter=max_iter)
    eg.fit(_f64(X_train), np.asarray(y_train), sensitive_features=np.asarray(a_train))
    X_test = _f64(X_test)
    return (np.asarray(eg.predict(X_test, random_state=seed)).astype(np.int64),
            np.asarray(eg._pmf_predict(X_test))[:, 1])


def threshold_optimizer_baseline(X_train, y_train, a_train, X_test, a_test, *, seed: int = 0, C: float = 1.0,
                                 lr_max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """fairlearn ``ThresholdOptimizer(LogisticRegression, constraints="equalized_odds")`` (Hardt et al.
    2016 post-processing), an external reference on the same arrays.

    Returns ``(y_pred, scores)`` on ``X_test`` (group-dependent randomised thresholds drawn with
    ``seed``; scores = the probability of a positive decision, for AP).
    """
    from fairlearn.postprocessing import ThresholdOptimizer  # heavy optional dependency

    to = ThresholdOptimizer(estimator=_logistic(seed, C, lr_max_iter), constraints="equalized_odds",
                            predict_method="predict_proba")
    to.fit(_f64(X_train), np.asarray(y_train), sensitive_features=np.asarray(a_train))
    X_test, a_test = _f64(X_test), np.asarray(a_test)
    return (np.asarray(to.predict(X_test, sensitive_features=a_test, random_state=seed)).astype(np.int64),
            np.asarray(to._pmf_predict(X_test, sensitive_features=a_test))[:, 1])
