"""Group contribution disparity r̂ (GCM eqs. 6, 8, 9) and its record during training.

:func:`contribution_disparity` (eqs. 6, 8, 9 and the norm-based log disparity), the variant the
authors' code logs (:func:`code_disparity`), :class:`DisparityTracker` (both at every iteration, with a
permuted-attribute null), :func:`final_disparity` of a trained model, and :func:`combine` to run a
tracker next to a method's ``extra_loss``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .gradients import KINDS, GroupGradients, _check_choice, cells, group_gradients, make_batch

__all__ = ["Disparity", "DisparityTracker", "code_disparity", "combine", "contribution_disparity",
           "final_disparity", "permute_within"]


def final_disparity(model: nn.Module, X, y, a, *, n_per_cell: int = 256, seed: int = 0) -> dict[str, float]:
    """The disparity of a trained model on one group-balanced batch of ``(X, y, a)`` (``n_per_cell``
    rows of each (a, y) cell, fewer if a cell is smaller, drawn with ``seed``): ``lognorm_y*``
    (:attr:`Disparity.log_norm`) and ``r_y*`` (eq. 8), for relating a run's final disparity to its
    fairness."""
    y_np, a_np = np.asarray(y).reshape(-1), np.asarray(a).reshape(-1)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero((a_np == aa) & (y_np == yy)))[:n_per_cell]
                          for aa in (0, 1) for yy in (0, 1)])
    xb = torch.as_tensor(np.asarray(X)[idx], dtype=torch.float32)
    batch = make_batch(model, xb, torch.as_tensor(y_np[idx]), torch.as_tensor(a_np[idx]))
    d = contribution_disparity(group_gradients(model, batch, require_all=False))
    return {**{f"lognorm_y{k}": v for k, v in d.log_norm.items()}, **{f"r_y{k}": v for k, v in d.model.items()}}


# --- group contribution disparity (eqs. 6, 8, 9) ------------------------------------------------------
@dataclass
class Disparity:
    """Group contribution disparity r̂ for Y = 0 and Y = 1 (keys of each dict are y).

    ``per_parameter[y][name]``: r̂_w for every element of the tensor (eq. 6; NaN where undefined);
    ``per_layer[y][name]``: r̂_{θ_l} of each parameter tensor (eq. 9); ``model[y]``: r̂_θ (eq. 8);
    ``undefined[y]``: how many elements were left out because the denominator was 0;
    ``log_norm[y]``: the norm-based disparity log(|Z_0y| ‖ḡ^{A=0,Y=y}‖ / (|Z_1y| ‖ḡ^{A=1,Y=y}‖)) over
    all the selected tensors at once — defined when both groups have a nonzero gradient (NaN
    otherwise), 0 for equal contributions, symmetric in the two groups up to its sign.
    """

    per_parameter: dict[int, dict[str, torch.Tensor]]
    per_layer: dict[int, dict[str, float]]
    model: dict[int, float]
    undefined: dict[int, int]
    log_norm: dict[int, float] = field(default_factory=dict)


def contribution_disparity(gg: GroupGradients, *, size_weighted: bool = True) -> Disparity:
    """Group contribution disparity r̂ (GCM eqs. 6, 8 and 9).

    Eq. 6, for every parameter element w and y ∈ {0, 1}::

        r̂_w^{Y=y} = |Z_0y| · |ḡ_w^{A=0,Y=y}| / (|Z_1y| · |ḡ_w^{A=1,Y=y}|)

    with ḡ the gradient of the cell's mean loss (:func:`group_gradients`) and |Z_ay| the number of the
    cell's samples in the batch (``size_weighted=False`` drops the size ratio, i.e. compares the mean
    gradients only). Eq. 9 averages r̂_w over the elements of one parameter tensor (a "layer"),
    eq. 8 over all p elements of the selected tensors. r̂ ≈ 1 means equal contributions.

    Undefined entries: where the denominator is 0 (e.g. a dead ReLU unit has zero gradient for every
    group) the ratio is 0/0 or x/0; these elements are NaN in ``per_parameter`` and left out of the
    averages (p counts the defined elements only); their number is returned in ``undefined``. A y
    whose cells are missing from ``gg`` gets NaN everywhere.

    Note the mean of ratios is heavy-tailed (tiny denominators); the paper smooths its Fig. 2 and the
    authors' code logs a per-tensor, folded ratio instead (:func:`code_disparity`). ``log_norm`` is the
    chapter's headline measure: the log ratio of the two groups' size-weighted gradient norms over
    all selected tensors (no element is undefined unless a whole cell's gradient is zero).
    """
    per_parameter: dict[int, dict[str, torch.Tensor]] = {}
    per_layer: dict[int, dict[str, float]] = {}
    model: dict[int, float] = {}
    undefined: dict[int, int] = {}
    log_norm: dict[int, float] = {}
    for yy in range(gg.k):
        c0, c1 = (0, yy), (1, yy)
        if c0 not in gg.grads or c1 not in gg.grads:
            per_parameter[yy] = {}
            per_layer[yy] = {n: float("nan") for n in gg.names}
            model[yy], undefined[yy], log_norm[yy] = float("nan"), 0, float("nan")
            continue
        s0, s1 = (gg.sizes[c0], gg.sizes[c1]) if size_weighted else (1, 1)
        per_parameter[yy], per_layer[yy] = {}, {}
        total, count, bad = 0.0, 0, 0
        for name, g0, g1 in zip(gg.names, gg.grads[c0], gg.grads[c1]):
            num = s0 * g0.detach().double().abs()
            den = s1 * g1.detach().double().abs()
            r = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.nan)
            ok = ~torch.isnan(r)
            n_ok = int(ok.sum())
            per_parameter[yy][name] = r
            per_layer[yy][name] = float(r[ok].mean()) if n_ok else float("nan")
            total += float(r[ok].sum())
            count += n_ok
            bad += r.numel() - n_ok
        model[yy] = total / count if count else float("nan")
        undefined[yy] = bad
        n0 = math.sqrt(sum(float(g.detach().double().pow(2).sum()) for g in gg.grads[c0]))
        n1 = math.sqrt(sum(float(g.detach().double().pow(2).sum()) for g in gg.grads[c1]))
        log_norm[yy] = math.log(s0 * n0 / (s1 * n1)) if n0 > 0 and n1 > 0 else float("nan")
    return Disparity(per_parameter, per_layer, model, undefined, log_norm)


def code_disparity(gg: GroupGradients) -> dict[int, float]:
    """The disparity the authors' code logs for its Fig. 2-style curves (``Dis/dis1``, ``Dis/dis2``).

    Per parameter tensor, ``max(S1/S0, S0/S1)`` with ``S_a = Σ_w (ḡ_w^{A=a,Y=y})²`` the squared norm of
    the cell's mean-loss gradient, averaged over the tensors; returned per y. It differs from eq. 6
    (per tensor instead of per element; squared; folded so that it is >= 1; no |Z| factor). Tensors
    with a zero norm in either group are left out; NaN if none is left or a cell is missing.
    """
    out = {}
    for yy in range(gg.k):
        c0, c1 = (0, yy), (1, yy)
        if c0 not in gg.grads or c1 not in gg.grads:
            out[yy] = float("nan")
            continue
        vals = []
        for g0, g1 in zip(gg.grads[c0], gg.grads[c1]):
            s0, s1 = float(g0.detach().double().pow(2).sum()), float(g1.detach().double().pow(2).sum())
            if s0 > 0 and s1 > 0:
                vals.append(max(s1 / s0, s0 / s1))
        out[yy] = float(np.mean(vals)) if vals else float("nan")
    return out


def permute_within(a, y, rng: np.random.Generator) -> torch.Tensor:
    """``a`` permuted among the rows of each label ``y`` (cell sizes |Z_ay| kept): the null of
    :class:`DisparityTracker`'s ``n_permutations``."""
    a_t = torch.as_tensor(a)
    a_np, y_np = a_t.detach().cpu().numpy().reshape(-1), torch.as_tensor(y).detach().cpu().numpy().reshape(-1)
    out = a_np.copy()
    for yy in np.unique(y_np):
        idx = np.flatnonzero(y_np == yy)
        out[idx] = a_np[idx[rng.permutation(idx.size)]]
    return torch.as_tensor(out, dtype=a_t.dtype, device=a_t.device)


class DisparityTracker:
    """Records r̂ (eqs. 6, 8, 9) and :func:`code_disparity` at every training iteration.

    Use it as the engine's ``extra_loss`` (it returns a zero that adds nothing to the loss), alone or
    next to a method's loss with :func:`combine`, and pass :meth:`on_epoch_end` to label epochs::

        tracker = DisparityTracker()
        train.fit(model, X, y, groups=a, extra_loss=combine(gcm_loss(1.0), tracker),
                  on_epoch_end=tracker.on_epoch_end, ...)
        tracker.history   # one row per iteration

    The gradients are taken at θ^t, before the iteration's update, from the batch's own forward pass.
    Under shuffled batches a cell can be empty: that y is then NaN for the step.

    Parameters
    ----------
    every : int
        Record every ``every``-th iteration (1 = all).
    params, kind
        The tensors r̂ is computed over (:func:`select_parameters`); default all.
    size_weighted : bool
        Include the |Z_0y|/|Z_1y| factor of eq. 6 (default, as written in the paper).
    per_layer : bool
        Also record eq. 9 for every tensor (columns ``r_y{y}[name]``).
    n_permutations : int
        The permuted-attribute null: at every recorded iteration, also measure r̂ (eq. 8) this many
        times with the batch's attribute permuted among the rows of the same label (columns
        ``r_y{y}_perm{j}``), on the same model and batch. A permutation within each y keeps every
        cell's size, so the |Z| factor of eq. 6 is unchanged and only the attribute's link to the
        gradients is broken: r̂ of the true attribute is then compared with what an attribute
        unrelated to the gradients gives (eq. 8 is a mean of ratios, > 1 by noise alone).
    perm_seed : int
        Seed of the permutations: the j-th permutation of iteration t is drawn from
        ``numpy.random.default_rng([perm_seed, t, j])`` (the training's random state is untouched).
    """

    def __init__(self, *, every: int = 1, params: Sequence[str] | None = None, kind: str = "all",
                 size_weighted: bool = True, per_layer: bool = True, n_permutations: int = 0,
                 perm_seed: int = 0):
        if not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 0:
            raise ValueError(f"n_permutations must be an integer >= 0, got {n_permutations!r}")
        _check_choice("kind", kind, KINDS)
        self.every, self.params, self.kind = int(every), params, kind
        self.size_weighted, self.per_layer = size_weighted, per_layer
        self.n_permutations, self.perm_seed = int(n_permutations), int(perm_seed)
        self.rows: list[dict[str, float]] = []
        self.step = 0
        self.epoch = 1

    def record(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, float]:
        """Measure one batch and append the row to the history."""
        gg = group_gradients(model, batch, params=self.params, kind=self.kind, require_all=False)
        d = contribution_disparity(gg, size_weighted=self.size_weighted)
        code = code_disparity(gg)
        row: dict[str, float] = {"step": self.step, "epoch": self.epoch}
        row.update({f"n_{a}{y}": gg.sizes[(a, y)] for a, y in cells(gg.k)})
        row["elements"] = sum(g.numel() for g in next(iter(gg.grads.values()))) if gg.grads else 0
        for yy in range(gg.k):
            row[f"r_y{yy}"] = d.model[yy]
            row[f"lognorm_y{yy}"] = d.log_norm[yy]
            row[f"code_y{yy}"] = code[yy]
            row[f"undefined_y{yy}"] = d.undefined[yy]
        if self.per_layer:
            for yy in range(gg.k):
                row.update({f"r_y{yy}[{n}]": v for n, v in d.per_layer[yy].items()})
        for j in range(self.n_permutations):
            rng = np.random.default_rng([self.perm_seed, self.step, j])
            permuted = {**batch, "groups": permute_within(batch["groups"], batch["y"], rng)}
            gp = group_gradients(model, permuted, params=self.params, kind=self.kind, require_all=False)
            dp = contribution_disparity(gp, size_weighted=self.size_weighted)
            for yy in range(gp.k):
                row[f"r_y{yy}_perm{j}"] = dp.model[yy]
                row[f"lognorm_y{yy}_perm{j}"] = dp.log_norm[yy]
                row[f"undefined_y{yy}_perm{j}"] = dp.undefined[yy]
        self.rows.append(row)
        return row

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        if self.step % self.every == 0:
            self.record(model, batch)
        self.step += 1
        return batch["logits"].new_zeros(())

    def on_epoch_end(self, epoch: int, model: nn.Module | None = None, row: dict | None = None) -> None:
        """The engine's ``on_epoch_end`` hook: later rows belong to epoch ``epoch + 1``."""
        self.epoch = epoch + 1

    @property
    def history(self) -> pd.DataFrame:
        """One row per recorded iteration: step, epoch, cell sizes ``n_ay``, ``r_y0``, ``r_y1`` (eq. 8),
        ``lognorm_y0``, ``lognorm_y1`` (:attr:`Disparity.log_norm`; ``lognorm_y*_perm*`` for the
        null), ``code_y0``, ``code_y1`` (:func:`code_disparity`), ``undefined_y*`` (elements left out of eq. 8
        of ``elements`` measured), per-tensor eq. 9 and the permuted null ``r_y*_perm*``."""
        return pd.DataFrame(self.rows)


def combine(*losses: Callable | None) -> Callable:
    """One ``extra_loss`` that sums several (``None`` entries are skipped), called in order."""
    fns = [f for f in losses if f is not None]
    if not fns:
        raise ValueError("combine needs at least one extra_loss")

    def extra_loss(model, batch):
        total = fns[0](model, batch)
        for f in fns[1:]:
            total = total + f(model, batch)
        return total

    forwards = [f.batch_forward for f in fns if hasattr(f, "batch_forward")]
    if len(forwards) == 1:  # keep GCM's shared per-cell forward when a tracker rides along
        extra_loss.batch_forward = forwards[0]
    return extra_loss
