"""The methods of GCM §4 by name (:data:`METHODS`): their ``extra_loss`` (:func:`method_loss`), one
training through :func:`fairbook.train.fit` (:func:`fit_method`, with the authors' epoch selection on
validation ΔEO), and GCM's numbers for predictions (:func:`report`) and for a model
(:func:`model_report`, :func:`val_metrics`)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import metrics, train
from .baselines import adversarial_loss, direct_aligning_loss, eor_loss, iga_loss
from .disparity import DisparityTracker, combine
from .gradients import _check_choice, binary_logit
from .regularizer import gcm_loss

__all__ = ["METHODS", "fit_method", "method_loss", "model_report", "report", "val_metrics"]

METHODS = ("vanilla", "oversampling", "eor", "adversarial", "gcm", "iga", "direct")


# --- dispatch by method name --------------------------------------------------------------------------
_OPTIONS = {
    "vanilla": {}, "oversampling": {},
    "eor": {"lam": 1.0},
    "adversarial": {"alpha": 1.0, "lr": 1e-3, "adv_steps": 1, "projection": True},
    "gcm": {"lam": 1.0, "T": 0.0, "form": "paper", "params": None, "kind": "all"},
    "iga": {"lam": 1.0, "form": "squared", "params": None, "kind": "all"},
    "direct": {"lam": 1.0, "form": "abs", "params": None, "kind": "all"},
}


def method_loss(method: str, **options) -> Callable | None:
    """The ``extra_loss`` of a method of GCM §4 by name (:data:`METHODS`; ``None`` for vanilla and
    oversampling, which are the engine alone). Unknown options raise, naming the allowed ones."""
    _check_choice("method", method, METHODS)
    allowed = _OPTIONS[method]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method {method!r} has no option {unknown[0]!r}; allowed: "
                         f"{', '.join(allowed) or 'none'}")
    o = {**allowed, **options}
    if method == "eor":
        return eor_loss(o["lam"])
    if method == "adversarial":
        return adversarial_loss(o["alpha"], lr=o["lr"], adv_steps=o["adv_steps"], projection=o["projection"])
    if method == "gcm":
        return gcm_loss(o["lam"], o["T"], o["form"], o["params"], o["kind"])
    if method == "iga":
        return iga_loss(o["lam"], o["form"], o["params"], o["kind"])
    if method == "direct":
        return direct_aligning_loss(o["lam"], o["form"], o["params"], o["kind"])
    return None


def fit_method(method: str, model: nn.Module, X, y, a, *, val: tuple | None = None,
               options: dict | None = None, tracker: DisparityTracker | None = None,
               **fit_kwargs) -> train.FitResult:
    """Train ``model`` with one method of GCM §4 through :func:`train.fit`.

    ``vanilla`` uses shuffled batches (ERM); every other method uses group-balanced batches
    (``batch_size/4`` per (a, y) cell: OverSampling is exactly that, and GCM, IGA, direct aligning and
    the λ = 0 columns of Tables 3-4 start from it); ``sampler=`` overrides. ``loss`` defaults to
    ``"bce"`` (one logit, as the paper's code). ``val = (X_val, y_val, a_val)`` turns on the authors'
    epoch selection: :func:`val_metrics` each epoch, the epoch with the lowest validation ΔEO restored
    (``select="delta_eo", mode="min"`` unless given); the state of the epoch with the highest
    validation EOP (folded) is kept as well, in ``other_best["eop"] = (epoch, state)``, because the
    authors report EOP at its own validation-selected epoch. ``tracker`` records r̂ every iteration.
    Other keywords go to :func:`train.fit` (``epochs`` is required).
    """
    extra = method_loss(method, **(options or {}))
    eop_best: dict = {}
    kw = {"loss": "bce", "sampler": "shuffle" if method == "vanilla" else "group_balanced"}
    if val is not None:
        if len(val) != 3:
            raise ValueError("val must be (X_val, y_val, a_val)")
        kw.update(val=(val[0], val[1]), val_metrics=val_metrics, val_context={"a": np.asarray(val[2])},
                  select="delta_eo", mode="min")
    else:
        kw["select"] = None
    kw.update(fit_kwargs)
    if tracker is not None:
        extra = combine(extra, tracker)
    user_end = kw.get("on_epoch_end")

    def on_epoch_end(epoch, model_, row):
        if tracker is not None:
            tracker.on_epoch_end(epoch, model_, row)
        score = (row or {}).get("val_eop_folded", float("nan"))
        if val is not None and np.isfinite(score) and ("eop" not in eop_best or score > eop_best["eop"][0]):
            eop_best["eop"] = (score, epoch, {k: v.detach().clone() for k, v in model_.state_dict().items()})
        if user_end is not None:
            user_end(epoch, model_, row)

    kw["on_epoch_end"] = on_epoch_end
    res = train.fit(model, X, y, groups=a, extra_loss=extra, desc=f"gcm:{method}", **kw)
    if "eop" in eop_best:
        res.other_best["eop"] = eop_best["eop"][1:]
    return res


# --- evaluation -----------------------------------------------------------------------------------------
def report(y, y_pred, a, scores=None, nan_ok: bool = True) -> dict[str, float]:
    """GCM's numbers for one set of predictions (all from :func:`fairbook.metrics.group_report`):

    ``ap`` (AP of ``scores``, §4.1), ``delta_eo`` (ΔEO = |ΔTPR| + |ΔFPR|, eq. 2), ``eop``
    (TPR_0/TPR_1, eq. 1, not folded), ``eop_folded`` (min/max of the two TPRs, as the authors' code
    reports it: 1 = equal, higher is fairer), ``delta_dp`` (ΔDP), ``acc``, ``delta_tpr``,
    ``delta_fpr``. Undefined values are NaN (``nan_ok``).
    """
    r = metrics.group_report(y, y_pred, a, scores=scores, nan_ok=nan_ok)
    eop = r["eop"]
    folded = min(eop, 1 / eop) if np.isfinite(eop) and eop > 0 else (0.0 if eop == 0 else float("nan"))
    out = {"ap": r.get("ap", float("nan")), "delta_eo": r["eo_sum"], "eop": eop, "eop_folded": folded,
           "delta_dp": r["dp_diff"], "acc": r["acc"], "delta_tpr": r["delta_tpr"],
           "delta_fpr": r["delta_fpr"]}
    return out


def _scores_and_predictions(logits) -> tuple[np.ndarray, np.ndarray]:
    z = binary_logit(torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits))
    return z.detach().cpu().numpy(), (z > 0).long().cpu().numpy()


def model_report(model: nn.Module, X, y, a, device="auto") -> dict[str, float]:
    """:func:`report` of ``model`` on ``(X, y, a)``: decisions ``p >= 0.5`` (logit > 0, the code's
    threshold 0.5), AP on the logit (a ranking, identical to AP on the probability)."""
    scores, pred = _scores_and_predictions(train.logits_of(model, X, device=device))
    return report(y, pred, a, scores)


def val_metrics(y, logits, *, a) -> dict[str, float]:
    """``val_metrics`` for :func:`train.fit` (pass ``val_context={"a": a_val}``): ``ap``,
    ``delta_eo``, ``eop``, ``delta_dp`` of the validation logits. With ``select="delta_eo",
    mode="min"`` the engine keeps the epoch of lowest validation ΔEO, as the authors' code does."""
    scores, pred = _scores_and_predictions(logits)
    r = report(y, pred, a, scores)
    return {k: r[k] for k in ("ap", "delta_eo", "eop", "eop_folded", "delta_dp")}
