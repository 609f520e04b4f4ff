"""AIM-Fair's selective mask generation (SMG, Zhao et al. CVPR 2025, §3.2, eqs. 1-7).

* :func:`dataset_gradients` (eqs. 1-3): the gradient of the mean loss over a whole dataset, per
  parameter tensor;
* :func:`selective_mask` -> :class:`SelectiveMask` (eqs. 4-7): Δ1 = |g_R − g_S1| (domain
  sensitivity), Δ2 = |g_S1 − g_S2| (fairness sensitivity), the two top-k sets and their
  intersection M; :func:`k_for_fraction` turns a share of the units into k.

The paper (§3.2: "Rather than considering fine-grained, scalar-wise parameters, we select
parameters at the level of weights and biases") and the authors' code agree: the mask is computed
per parameter tensor (``level="tensor"``, Δ = mean over the tensor of |g_a − g_b|; ``k`` counts
tensors, ResNet-18 has 62). The scalar-wise variant the paper rejects is available as
``level="element"``, a labelled variant. The gradients are measured with the model in ``train()``
mode on shuffled batches. Fine-tuning with the mask (eq. 8) is :mod:`fairbook.aimfair.finetuning`.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .. import train
from ..io import progress_enabled
from ._util import fail as _fail

__all__ = ["LEVELS", "MEASURES", "dataset_gradients", "SelectiveMask", "selective_mask", "k_for_fraction"]

LEVELS = ("tensor", "element")
MEASURES = ("abs", "cosine")


# ------------------------------------------------------------------------------ gradients (eqs. 1-3)
def _batches(X, y, order: np.ndarray, batch_size: int, num_workers: int):
    """(x, y) batches of the rows ``order``: tensor slices, or a DataLoader over a Dataset of
    (x, y, index)."""
    if isinstance(X, torch.utils.data.Dataset):
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(X, order.tolist()),
                                             batch_size=batch_size, shuffle=False, num_workers=num_workers)
        for batch in loader:
            yield batch[0], torch.as_tensor(batch[1])
    else:
        X_t, y_t = train.as_tensor(X), train.as_tensor(y).long()
        idx = torch.as_tensor(order)
        for i in range(0, len(idx), batch_size):
            yield X_t[idx[i:i + batch_size]], y_t[idx[i:i + batch_size]]


def _check_inputs(X, y, batch_size: int, loss: str, shuffle: bool) -> int:
    """Raise unless :func:`dataset_gradients` can read ``X``, ``y`` with these settings; the number of rows."""
    where = "dataset_gradients"
    if loss not in ("bce", "ce"):
        raise _fail(where, "loss", loss, "'bce' or 'ce'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise _fail(where, "batch_size", batch_size, "an integer >= 1")
    is_dataset = isinstance(X, torch.utils.data.Dataset)
    if not is_dataset and y is None:
        raise _fail(where, "y", y, "labels for every row of X (only a Dataset carries its own)")
    n = len(X)
    if n == 0:
        raise _fail(where, "X", "an empty dataset", "at least one sample")
    if not is_dataset and len(y) != n:
        raise _fail(where, "y", f"{len(y)} labels", f"one per row of X ({n})")
    if not isinstance(shuffle, bool):
        raise _fail(where, "shuffle", shuffle, "True or False")
    return n


def dataset_gradients(model: nn.Module, X, y=None, *, batch_size: int = 128, loss: str = "bce",
                      train_mode: bool = True, shuffle: bool = True, device="auto", seed: int = 0,
                      num_workers: int = 0) -> dict[str, torch.Tensor]:
    """Gradient of the mean loss over a whole dataset, per parameter tensor (AIM-Fair eqs. 1-3).

    g = (1/N) Σ_i ∇_θ L(θ; x_i, y_i), computed batch by batch over every sample: each batch's mean
    loss is weighted by ``n_batch / N``, so the result is the exact gradient of the full-data mean
    loss (for a model whose output for a sample does not depend on the rest of its batch; with
    BatchNorm in train mode the batch statistics make it the size-weighted mean of the per-batch
    gradients, so it depends on which samples share a batch). The rows are visited in a seeded
    random order (``shuffle=True``), as the authors' shuffling DataLoader does: data ordered by
    (y, s) cell would otherwise make every batch a single cell, and BatchNorm's batch statistics
    would then drive the gradient differences of eq. 4. This differs from the authors' code, which averages the unweighted per-batch mean
    gradients of a DataLoader with ``drop_last=True`` (the last incomplete batch is skipped); the two
    coincide when ``batch_size`` divides N and the batches hold the same samples.

    Parameters
    ----------
    model : the (pre-trained) model; every named parameter gets a gradient, frozen ones included.
    X, y : arrays/tensors, or ``X`` a ``torch.utils.data.Dataset`` yielding ``(x, y, index)``
        (``y`` then ignored).
    loss : ``"bce"`` (one logit, BCE-with-logits: the authors' binary loss) or ``"ce"``.
    train_mode : measure in ``train()`` mode (default, as the authors do: BatchNorm normalises with
        batch statistics, dropout is active) or in ``eval()`` mode.
    shuffle : visit the rows in the order of a permutation drawn from ``seed`` (default); ``False``
        keeps the input order.
    seed : the row permutation and, inside a forked RNG, dropout (and any other randomness of the
        forward pass); the global RNG is left untouched.

    Returns
    -------
    dict name -> float32 CPU tensor of the parameter's shape, in ``model.named_parameters()``
    order. The model is left exactly as it was: parameters, buffers (BatchNorm running statistics
    and ``num_batches_tracked``), ``.grad``, ``requires_grad`` flags, train/eval mode and device.
    """
    n = _check_inputs(X, y, batch_size, loss, shuffle)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    params = OrderedDict(model.named_parameters())
    if not params:
        raise _fail("dataset_gradients", "model", type(model).__name__, "a model with parameters")

    dev = train.resolve_device(device)
    first = next(iter(params.values()))
    home = first.device
    saved_state = copy.deepcopy(model.state_dict())
    saved_grads = {k: (None if p.grad is None else p.grad.detach().clone()) for k, p in params.items()}
    saved_flags = {k: p.requires_grad for k, p in params.items()}
    was_training = model.training
    criterion = train.loss_fn(loss)
    sums = {k: torch.zeros(p.shape, dtype=torch.float64) for k, p in params.items()}
    try:
        model.to(dev)
        model.train(train_mode)
        for p in params.values():
            p.requires_grad_(True)
        plist = list(params.values())
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            bar = tqdm(_batches(X, y, order, batch_size, num_workers), total=math.ceil(n / batch_size),
                       desc="dataset gradients", disable=not progress_enabled(), leave=False)
            for xb, yb in bar:
                xb, yb = xb.to(dev), yb.to(dev)
                batch_loss = criterion(model(xb), yb) * (len(yb) / n)
                grads = torch.autograd.grad(batch_loss, plist, allow_unused=True)
                for k, g in zip(params, grads):
                    if g is not None:
                        sums[k] += g.detach().double().cpu()
    finally:
        model.load_state_dict(saved_state)
        model.to(home)
        model.train(was_training)
        for k, p in params.items():
            p.requires_grad_(saved_flags[k])
            p.grad = saved_grads[k]
    return OrderedDict((k, v.float()) for k, v in sums.items())


# --------------------------------------------------------------------- selective mask (eqs. 4-7)
def _check_gradients(g_R, g_S1, g_S2) -> OrderedDict[str, tuple[int, ...]]:
    where = "selective_mask"
    for label, g in (("g_R", g_R), ("g_S1", g_S1), ("g_S2", g_S2)):
        if not isinstance(g, Mapping) or not g:
            raise _fail(where, label, type(g).__name__, "a non-empty dict name -> gradient tensor "
                        "(from dataset_gradients)")
    shapes = OrderedDict((k, tuple(torch.as_tensor(v).shape)) for k, v in g_R.items())
    for label, g in (("g_S1", g_S1), ("g_S2", g_S2)):
        missing, extra = set(shapes) - set(g), set(g) - set(shapes)
        if missing or extra:
            raise _fail(where, label, f"names differing from g_R (missing {sorted(missing)[:3]}, "
                        f"extra {sorted(extra)[:3]})", "the same parameter names as g_R")
        for k, shape in shapes.items():
            if tuple(torch.as_tensor(g[k]).shape) != shape:
                raise _fail(where, f"{label}[{k!r}]", f"shape {tuple(torch.as_tensor(g[k]).shape)}",
                            f"the shape of g_R[{k!r}], {shape}")
    return shapes


def _flat64(t) -> np.ndarray:
    return torch.as_tensor(t).detach().cpu().double().reshape(-1).numpy()


def _delta(a: Mapping, b: Mapping, names: Sequence[str], level: str, measure: str) -> np.ndarray:
    """Eq. 4 per unit: |g_a − g_b| per element, its mean per tensor, or 1 − cos per tensor."""
    if level == "element":
        return np.concatenate([np.abs(_flat64(a[k]) - _flat64(b[k])) for k in names])
    out = np.empty(len(names))
    for i, k in enumerate(names):
        u, v = _flat64(a[k]), _flat64(b[k])
        if measure == "abs":
            out[i] = np.abs(u - v).mean() if u.size else 0.0
        else:
            norm = np.linalg.norm(u) * np.linalg.norm(v)
            out[i] = 1.0 - (float(u @ v) / norm if norm > 0 else 0.0)
    return out


@dataclass(frozen=True, eq=False)
class SelectiveMask:
    """The selection mask M of AIM-Fair eq. 7, with the quantities that produced it.

    Units are parameter tensors (``level="tensor"``) or scalar parameters (``level="element"``),
    in the parameter order of the gradient dicts (tensors in ``named_parameters()`` order, each
    tensor's elements flattened in row-major order).

    Attributes
    ----------
    level, measure, k : as passed to :func:`selective_mask`.
    shapes : ordered dict name -> shape of every parameter tensor.
    delta1, delta2 : Δ1 (domain sensitivity) and Δ2 (fairness sensitivity) of every unit (eq. 4),
        flat float64 arrays (tensor level: one value per name, in ``names`` order).
    in_K1, in_K2 : bool arrays, the top-k sets K1 (smallest Δ1) and K2 (largest Δ2) of eq. 6.
    """

    level: str
    measure: str
    k: int
    shapes: Mapping[str, tuple[int, ...]]
    delta1: np.ndarray
    delta2: np.ndarray
    in_K1: np.ndarray
    in_K2: np.ndarray

    @property
    def names(self) -> list[str]:
        return list(self.shapes)

    @property
    def selected(self) -> np.ndarray:
        """M of eq. 7 per unit: K = K1 ∩ K2."""
        return self.in_K1 & self.in_K2

    def _per_tensor(self, flags: np.ndarray) -> dict[str, np.ndarray]:
        if self.level == "tensor":
            return {k: flags[i:i + 1] for i, k in enumerate(self.shapes)}
        out, lo = {}, 0
        for k, shape in self.shapes.items():
            n = math.prod(shape)
            out[k] = flags[lo:lo + n]
            lo += n
        return out

    @property
    def trainable(self) -> set[str]:
        """Names of the tensors with at least one selected element (``fit(trainable=...)``)."""
        return {k for k, f in self._per_tensor(self.selected).items() if f.any()}

    def grad_masks(self) -> dict[str, torch.Tensor]:
        """M as 0/1 float tensors of the parameters' shapes, for the trainable tensors (eq. 8's
        M ⊙ ∇; ``fit(grad_masks=...)``). At tensor level these are all ones."""
        per = self._per_tensor(self.selected)
        return {k: torch.as_tensor(np.broadcast_to(per[k], (math.prod(self.shapes[k]),)).copy(),
                                   dtype=torch.float32).reshape(self.shapes[k])
                for k in self.shapes if per[k].any()}

    def n_selected_parameters(self) -> int:
        """Number of scalar parameters M selects."""
        per = self._per_tensor(self.selected)
        if self.level == "element":
            return int(sum(int(f.sum()) for f in per.values()))
        return int(sum(math.prod(self.shapes[k]) for k, f in per.items() if f.any()))

    def check_model(self, model: nn.Module, where: str = "SelectiveMask") -> None:
        """Raise unless every name of the mask is a parameter of ``model`` with the same shape."""
        params = dict(model.named_parameters())
        for k, shape in self.shapes.items():
            if k not in params:
                raise _fail(where, "model", f"{type(model).__name__} without parameter {k!r}",
                            "the model the gradients were measured on")
            if tuple(params[k].shape) != tuple(shape):
                raise _fail(where, "model", f"{k!r} of shape {tuple(params[k].shape)}",
                            f"shape {tuple(shape)} as in the mask")

    def fraction_of_parameters(self, model: nn.Module) -> float:
        """Share of the model's scalar parameters that are trained (Fig. 5's "% of parameters")."""
        self.check_model(model, "fraction_of_parameters")
        return self.n_selected_parameters() / sum(p.numel() for p in model.parameters())

    def table(self) -> pd.DataFrame:
        """One row per parameter tensor: ``numel``, ``selected`` (scalars selected) and, at tensor
        level, ``delta1``, ``delta2``, their ranks in R1 / R2 (1 = first) and K1 / K2 membership."""
        per = self._per_tensor(self.selected)
        df = pd.DataFrame({"name": self.names,
                           "numel": [math.prod(s) for s in self.shapes.values()],
                           "selected": [int(per[k].sum()) for k in self.shapes]})
        if self.level == "tensor":
            df["selected"] *= df["numel"]
            r1 = np.empty(len(df), int)
            r1[np.argsort(self.delta1, kind="stable")] = np.arange(1, len(df) + 1)
            r2 = np.empty(len(df), int)
            r2[np.argsort(-self.delta2, kind="stable")] = np.arange(1, len(df) + 1)
            df = df.assign(delta1=self.delta1, delta2=self.delta2, rank1=r1, rank2=r2,
                           in_K1=self.in_K1, in_K2=self.in_K2)
        return df


def _n_units(shapes: Mapping[str, tuple[int, ...]], level: str) -> int:
    return len(shapes) if level == "tensor" else sum(math.prod(s) for s in shapes.values())


def _top(order: np.ndarray, k: int, n: int) -> np.ndarray:
    flags = np.zeros(n, bool)
    flags[order[:k]] = True
    return flags


def selective_mask(g_R: Mapping[str, torch.Tensor], g_S1: Mapping[str, torch.Tensor],
                   g_S2: Mapping[str, torch.Tensor], k: int, *, level: str = "tensor",
                   measure: str = "abs") -> SelectiveMask:
    """Selective mask generation (AIM-Fair §3.2, eqs. 4-7).

    Eq. 4: Δ1 = |g_R − g_S1| (real biased vs synthetic biased: domain sensitivity) and
    Δ2 = |g_S1 − g_S2| (synthetic biased vs synthetic balanced: fairness sensitivity). Eq. 5:
    R1 = argsort(Δ1) ascending, R2 = argsort(−Δ2). Eq. 6: K1, K2 = the first ``k`` of each.
    Eq. 7: M = K1 ∩ K2.

    Parameters
    ----------
    g_R, g_S1, g_S2 : dicts name -> dataset gradient (:func:`dataset_gradients` on D_R, D_S1, D_S2),
        with the same names and shapes; the order of ``g_R`` fixes the unit order.
    k : top-k size, 1 <= k <= number of units (tensors at tensor level, scalars at element level).
    level : ``"tensor"`` (the authors' code: one unit per weight/bias tensor, Δ = mean over its
        elements of |g_a − g_b|; the paper's §3.2) or ``"element"`` (one unit per scalar, the
        variant §3.2 rejects).
    measure : ``"abs"`` (eq. 4) or ``"cosine"`` (Table 4's variant, Δ = 1 − cos(g_a, g_b) per
        tensor; a zero gradient has cosine 0). Cosine needs whole tensors: tensor level only.

    Ties are broken deterministically by a stable sort: among equal Δ the unit that comes first
    in the parameter order (``g_R``'s order) ranks first, in R1 and in R2 alike.
    """
    where = "selective_mask"
    if level not in LEVELS:
        raise _fail(where, "level", level, "'tensor' or 'element'")
    if measure not in MEASURES:
        raise _fail(where, "measure", measure, "'abs' or 'cosine'")
    if measure == "cosine" and level != "tensor":
        raise _fail(where, "measure", measure, "'abs' at level='element' (a cosine compares whole "
                    "tensors: use level='tensor')")
    shapes = _check_gradients(g_R, g_S1, g_S2)
    n = _n_units(shapes, level)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise _fail(where, "k", k, f"an integer in [1, {n}] (the number of "
                    f"{'tensors' if level == 'tensor' else 'scalar parameters'})")
    names = list(shapes)
    d1 = _delta(g_R, g_S1, names, level, measure)
    d2 = _delta(g_S1, g_S2, names, level, measure)
    r1 = np.argsort(d1, kind="stable")
    r2 = np.argsort(-d2, kind="stable")
    return SelectiveMask(level, measure, int(k), shapes, d1, d2, _top(r1, k, n), _top(r2, k, n))


def _shapes_of(model_or_names, level: str, where: str) -> OrderedDict[str, tuple[int, ...]]:
    if isinstance(model_or_names, nn.Module):
        return OrderedDict((k, tuple(p.shape)) for k, p in model_or_names.named_parameters())
    if isinstance(model_or_names, Mapping):
        return OrderedDict((k, tuple(torch.as_tensor(v).shape)) for k, v in model_or_names.items())
    if isinstance(model_or_names, Iterable) and not isinstance(model_or_names, (str, bytes)):
        if level == "element":
            raise _fail(where, "model_or_names", "parameter names only",
                        "a model or a dict name -> tensor at level='element' (sizes are needed)")
        return OrderedDict((str(k), ()) for k in model_or_names)
    raise _fail(where, "model_or_names", type(model_or_names).__name__,
                "a model, a dict name -> tensor, or parameter names")


def k_for_fraction(model_or_names, fraction: float, level: str = "tensor") -> int:
    """The ``k`` that makes each top-k set (eq. 6) cover ``fraction`` of the units:
    ``round(fraction × n_units)``, at least 1 — tensors at tensor level (the paper's Fig. 5:
    k = 40..60 of ResNet-18's 62 tensors ≈ 64%..96%), scalars at element level."""
    where = "k_for_fraction"
    if level not in LEVELS:
        raise _fail(where, "level", level, "'tensor' or 'element'")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise _fail(where, "fraction", fraction, "a number in (0, 1]")
    n = _n_units(_shapes_of(model_or_names, level, where), level)
    if n == 0:
        raise _fail(where, "model_or_names", "no parameters", "at least one parameter tensor")
    return min(n, max(1, math.floor(fraction * n + 0.5)))

