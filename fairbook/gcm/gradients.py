"""Cells, parameter selection and per-group gradients (GCM eq. 7).

The (a, y) cells Z_ay of a batch (:func:`cells`, :func:`cell_index`, :func:`cell_masks`), the engine
batch built by hand (:func:`make_batch`), the tensors a gradient term is restricted to
(:func:`select_parameters`, :func:`layer_parameters`, :func:`authors_parameters`; eq. 14, Table 2), the
gradients of the four (a, y) groups (:func:`group_gradients`, eq. 7), and for ``nn.Linear`` tensors
the same from one pass over the batch (:func:`linear_group_gradients`). :class:`PerGroupForward` is the
base of the regularisers that need every cell's gradient with a graph (GCM, direct aligning).

Conventions: the model has one logit (BCE, as in the paper's code) or two (softmax; the binary logit is
then ``l_1 - l_0``); ``a = 1`` is the privileged group (GCM §2.1). K > 2 softmax outputs (cross-entropy;
the 2K cells (a, y), y < K) are supported as in the paper's CIFAR-10S experiment (Table 6).
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import train

__all__ = ["CELLS", "KINDS", "GroupGradients", "PerGroupForward", "authors_parameters", "binary_logit",
           "cell_index", "cell_masks", "cells", "group_gradients", "layer_parameters", "linear_group_gradients",
           "make_batch", "n_classes", "sample_losses", "select_parameters", "true_class_probability"]

CELLS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))  # (a, y), the paper's Z_ay
KINDS = ("all", "weight", "bias")


# --- cells, parameters and per-group gradients (eq. 7) ----------------------------------------------
def _check_nonneg(name: str, value: float) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def binary_logit(logits: torch.Tensor) -> torch.Tensor:
    """The logit of class 1, shape (n,): the single output of a BCE model, or ``l_1 - l_0`` for two
    softmax outputs (the same probability, ``sigmoid(l_1 - l_0) = softmax(l)_1``)."""
    if logits.dim() == 1:
        return logits
    if logits.dim() == 2 and logits.shape[1] == 1:
        return logits.reshape(-1)  # a view: its backward is a reshape, not a zero-filled select_backward
    if logits.dim() == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(f"a binary logit needs 1 or 2 output columns (EOR and the binary metrics are "
                     f"binary), got shape {tuple(logits.shape)}")


def _binary_tensor(t, name: str, like: torch.Tensor) -> torch.Tensor:
    if t is None:
        raise ValueError(f"batch[{name!r}] is missing: the (a, y) cells need it (pass groups=a to "
                         f"train.fit)" if name == "groups" else f"batch[{name!r}] is missing")
    t = torch.as_tensor(t).to(like.device).long().reshape(-1)
    if t.numel() != like.shape[0]:
        raise ValueError(f"batch[{name!r}] has {t.numel()} entries for {like.shape[0]} logits")
    if t.numel() and ((t != 0) & (t != 1)).any():
        raise ValueError(f"batch[{name!r}] must be binary (0/1), found {torch.unique(t).tolist()}")
    return t


def make_batch(model: nn.Module, x, y, a) -> dict[str, Any]:
    """The ``batch`` dict :func:`fairbook.train.fit` passes to ``extra_loss``, built by hand
    (``logits = model(x)`` with its graph): for analyses and tests outside the engine."""
    x = x if torch.is_tensor(x) else train.as_tensor(x)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and x.is_floating_point():
        x = x.to(dtype)
    return {"x": x, "y": torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y).long(),
            "ids": torch.arange(len(x)), "groups": torch.as_tensor(
                np.asarray(a) if not torch.is_tensor(a) else a).long(), "logits": model(x)}


def n_classes(logits: torch.Tensor) -> int:
    """K of a model's output: 2 for one logit (BCE) or two columns, else the number of columns."""
    return 2 if logits.dim() == 1 or logits.shape[1] <= 2 else int(logits.shape[1])


def _labels(t, like: torch.Tensor, k: int) -> torch.Tensor:
    if k == 2:
        return _binary_tensor(t, "y", like)
    if t is None:
        raise ValueError("batch['y'] is missing")
    t = torch.as_tensor(t).to(like.device).long().reshape(-1)
    if t.numel() != like.shape[0]:
        raise ValueError(f"batch['y'] has {t.numel()} entries for {like.shape[0]} logits")
    if t.numel() and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"batch['y'] must be classes 0..{k - 1}, found {torch.unique(t).tolist()}")
    return t


def sample_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: BCE of the binary logit for one or two outputs (as the paper's code), else
    cross-entropy over the K outputs (multi-class, GCM Table 6)."""
    if n_classes(logits) == 2:
        z = binary_logit(logits)
        return F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none")
    return F.cross_entropy(logits, y, reduction="none")


def true_class_probability(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """p(y | x) per sample: σ(z) for y = 1 and 1 − σ(z) for y = 0 (binary), softmax(l)_y otherwise."""
    if n_classes(logits) == 2:
        p = torch.sigmoid(binary_logit(logits))
        return torch.where(y == 1, p, 1 - p)
    return torch.softmax(logits, dim=1).gather(1, y[:, None])[:, 0]


def _unpack(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, y, a) of an engine batch, validated (y binary for binary models, else < K)."""
    if "logits" not in batch:
        raise ValueError("batch has no 'logits' (build it with make_batch or use train.fit)")
    lg = batch["logits"]
    if lg.dim() == 2 and lg.shape[1] == 1:
        lg = lg.reshape(-1)
    if lg.dim() not in (1, 2):
        raise ValueError(f"logits must have shape (n,) or (n, K), got {tuple(lg.shape)}")
    return lg, _labels(batch.get("y"), lg, n_classes(lg)), _binary_tensor(batch.get("groups"), "groups", lg)


def cells(k: int = 2) -> list[tuple[int, int]]:
    """The (a, y) cells Z_ay for a ∈ {0, 1} and K classes, a first (K = 2: :data:`CELLS`)."""
    return [(ai, yi) for ai in (0, 1) for yi in range(k)]


def cell_index(y: torch.Tensor, a: torch.Tensor, k: int = 2) -> torch.Tensor:
    """Each sample's cell as its position in :func:`cells` (k): ``a·k + y``."""
    return a * k + y


def cell_masks(y: torch.Tensor, a: torch.Tensor, require_all: bool = True,
               k: int = 2) -> dict[tuple[int, int], torch.Tensor]:
    """Boolean masks of the (a, y) cells Z_00, Z_01, Z_10, Z_11 (keys ``(a, y)``; 2K cells for K classes).

    ``require_all``: an empty cell raises ``ValueError`` naming it (GCM's regulariser needs all of
    them; use ``sampler="group_balanced"``); otherwise empty cells are left out.
    """
    out, empty = {}, []
    for ai, yi in cells(k):
        m = (a == ai) & (y == yi)
        if bool(m.any()):
            out[(ai, yi)] = m
        else:
            empty.append(f"(a={ai}, y={yi})")
    if empty and require_all:
        raise ValueError(f"the batch has no samples in the (a, y) cells {', '.join(empty)}; every cell "
                         f"must be present (train with sampler='group_balanced')")
    return out


def select_parameters(model: nn.Module, params: Sequence[str] | str | None = None,
                      kind: str = "all") -> list[tuple[str, nn.Parameter]]:
    """The named parameter tensors a gradient term is restricted to (GCM eq. 14, Table 2).

    Parameters
    ----------
    model : nn.Module
    params : sequence of str, optional
        Parameter names (``"body.1.bias"``) or module names (``"body.1"``, ``"head"``: all of that
        module's parameters). Default: every parameter. A name that matches nothing raises
        ``ValueError`` listing the available names. :func:`layer_parameters` maps the paper's layer
        indices to names.
    kind : {"all", "weight", "bias"}
        Keep only tensors whose name ends in ``weight`` or ``bias`` (Table 2's "weight_l"/"bias_l").

    Returns
    -------
    list of (name, parameter), in ``model.named_parameters()`` order; frozen tensors
    (``requires_grad=False``) are left out, since they take no gradient.
    """
    _check_choice("kind", kind, KINDS)
    named = list(model.named_parameters())
    if isinstance(params, str):
        params = [params]
    if params is not None:
        params = list(params)
        if not params:
            raise ValueError("params is empty: give parameter or module names, or None for all")
        unknown = [e for e in params if not any(n == e or n.startswith(e + ".") for n, _ in named)]
        if unknown:
            raise ValueError(f"unknown parameter/module names {unknown}; the model's parameters are "
                             f"{[n for n, _ in named]}")
        named = [(n, p) for n, p in named if any(n == e or n.startswith(e + ".") for e in params)]
    if kind != "all":
        named = [(n, p) for n, p in named if n.rsplit(".", 1)[-1] == kind]
    named = [(n, p) for n, p in named if p.requires_grad]
    if not named:
        raise ValueError(f"no trainable {'' if kind == 'all' else kind + ' '}parameters selected by "
                         f"params={params!r}")
    return named


def layer_parameters(model: nn.Module, layers: int | Sequence[int], kind: str = "all") -> list[str]:
    """Names of the parameters of the paper's "layer l" (Table 2; l counts the modules that hold
    parameters, in order: for :class:`fairbook.models.MLP` layer 0 is the first ``nn.Linear``).

    ``layer_parameters(mlp, 0, "bias")`` is Table 2's ``bias_0``; ``layer_parameters(mlp, [0, 1],
    "weight")`` its ``weight_{0+1}``.
    """
    _check_choice("kind", kind, KINDS)
    owners = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    idx = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
    bad = [i for i in idx if not (0 <= int(i) < len(owners))]
    if bad or not idx:
        raise ValueError(f"layer indices must lie in [0, {len(owners) - 1}] (the model's layers: "
                         f"{owners}), got {layers!r}")
    return [n for n, _ in select_parameters(model, [owners[int(i)] for i in idx], kind)]


def authors_parameters(model: nn.Module) -> list[str]:
    """The tensors the authors' run script regularises (``--sl 1``): every parameter except the first
    layer's weight (on the paper's Adult MLP 120-200-200-1 that leaves out 24,000 of 64,601)."""
    owner = next(name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False)))
    first = f"{owner}.weight" if owner else "weight"
    return [n for n, _ in select_parameters(model) if n != first]


@dataclass
class GroupGradients:
    """Per-group gradients ``ḡ^{A=a,Y=y}`` (GCM eq. 7) of the selected parameter tensors.

    ``grads[(a, y)]`` is a tuple of tensors aligned with ``names``: the gradient of the *mean* loss
    over the cell's samples in the batch. ``sizes[(a, y)]`` is |Z_ay|, the cell's number of samples;
    ``k`` the number of classes (2 for the paper's binary tasks).
    """

    names: list[str]
    grads: dict[tuple[int, int], tuple[torch.Tensor, ...]]
    sizes: dict[tuple[int, int], int]
    k: int = 2
    #: Optional: per tensor, the gradients of all cells stacked in :func:`cells` order, shape
    #: ``(2k, *param.shape)``; ``grads`` then holds views of it (made by :func:`linear_group_gradients`).
    stacked: tuple[torch.Tensor, ...] | None = None

    def stack(self, who: str = "the penalty") -> tuple[torch.Tensor, ...]:
        """Per tensor, the gradients of all 2k cells stacked in :func:`cells` order (all cells needed)."""
        missing = [c for c in cells(self.k) if c not in self.grads]
        if missing:
            raise ValueError(f"{who} needs the gradients of all {2 * self.k} (a, y) cells; missing "
                             f"{', '.join(map(str, missing))}")
        if self.stacked is not None and all(g._base is t for c in cells(self.k)
                                            for g, t in zip(self.grads[c], self.stacked)):
            return self.stacked  # grads still holds its views (not replaced since)
        return tuple(torch.stack(gs) for gs in zip(*(self.grads[c] for c in cells(self.k))))


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool) -> tuple[torch.Tensor, ...]:
    """d loss / d params; the graph is kept (the engine back-propagates its loss afterwards)."""
    g = torch.autograd.grad(loss, list(params), create_graph=create_graph, retain_graph=True,
                            allow_unused=True)
    return tuple(torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params))


def _separable(model: nn.Module, batch: Mapping[str, Any]) -> bool:
    """A separate forward per cell gives the same gradients (no batch statistics, inputs at hand)."""
    return "x" in batch and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _linear_owners(model: nn.Module,
                   named: Sequence[tuple[str, nn.Parameter]]) -> dict[str, tuple[nn.Linear, str]] | None:
    """``name -> (nn.Linear, "weight" | "bias")`` when every selected tensor is the own ``weight`` or
    ``bias`` of one ``nn.Linear`` (not shared with another module, not a reparametrisation), else None."""
    modules = dict(model.named_modules())
    uses = collections.Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    out = {}
    for name, p in named:
        owner, _, attr = name.rpartition(".")
        m = modules.get(owner)
        if not (isinstance(m, nn.Linear) and attr in ("weight", "bias") and getattr(m, attr) is p
                and uses[id(p)] == 1):
            return None
        out[name] = (m, attr)
    return out


def linear_group_gradients(named: Sequence[tuple[str, nn.Parameter]], owners: Mapping[str, tuple[nn.Linear, str]],
                           taps: Mapping[nn.Linear, tuple[torch.Tensor, torch.Tensor]], losses: torch.Tensor,
                           sizes: Sequence[int], k: int) -> GroupGradients:
    """The cells' gradients (eq. 7) of ``nn.Linear`` tensors from one forward pass over a batch sorted
    cell by cell, with ``create_graph=True``.

    ``losses`` are the per-sample losses of the sorted batch, ``sizes`` the 2k cells' row counts in
    :func:`cells` order, ``taps[m] = (h, z)`` the input and output of each Linear ``z = h Wᵀ + b``.
    With S = Σ_c L_c (the sum of the cells' mean losses) and no coupling between rows, the row
    signals δ = ∂S/∂z of one backward are each row's own cell's ∂L_c/∂z, so
    ``∂L_c/∂W = δ_cᵀ h_c`` and ``∂L_c/∂b = Σ_{i∈c} δ_i`` — the same gradients as a backward per cell,
    with the forward, the backward and their double backward over the whole batch (a GCM step on the
    Adult MLP about 13 % faster than with four per-cell passes; ``benchmarks/gcm.py``). The taps come
    from :func:`_tapped_forward`, which refuses the cases where this does not hold; the tensors must
    not also be used outside their module's forward.
    """
    n = torch.as_tensor(list(sizes), device=losses.device)
    S = (losses / n.to(losses.dtype).repeat_interleave(n)).sum()
    delta = dict(zip(taps, torch.autograd.grad(S, [z for _, z in taps.values()], create_graph=True)))
    equal = len(set(sizes)) == 1
    stacked = []
    for name, _ in named:
        m, attr = owners[name]
        d, h = delta[m], taps[m][0]
        if equal:  # the group samplers' batches: one batched matmul over the cells
            d3 = d.reshape(len(sizes), sizes[0], -1)
            g = d3.sum(1) if attr == "bias" else torch.bmm(d3.transpose(1, 2), h.reshape(len(sizes), sizes[0], -1))
        else:
            parts = zip(d.split(list(sizes)), h.split(list(sizes)))
            g = torch.stack([dc.sum(0) if attr == "bias" else dc.T @ hc for dc, hc in parts])
        stacked.append(g)
    grads = {cell: tuple(g[i] for g in stacked) for i, cell in enumerate(cells(k))}
    return GroupGradients([n for n, _ in named], grads, dict(zip(cells(k), map(int, sizes))), k, tuple(stacked))


def _tapped_forward(model: nn.Module, x: torch.Tensor, owners: Mapping[str, tuple[nn.Linear, str]]):
    """``model(x)`` and the ``(input, output)`` of each module of ``owners`` (:func:`_linear_owners`);
    None for the taps unless every module ran exactly once, row for row on the batch (``(len(x), d)``
    in and out: no weight sharing, no flattened sequences) and neither its input nor its output was
    changed in place afterwards (``ReLU(inplace=True)``): only then is δ_cᵀh_c the cell's gradient."""
    seen: dict[nn.Linear, list] = {m: [] for m, _ in owners.values()}

    def tap(mod, inp, out):
        seen[mod].append((inp[0], out, inp[0]._version, out._version))

    hooks = [m.register_forward_hook(tap) for m in seen]
    try:
        logits = model(x)
    finally:
        for hk in hooks:
            hk.remove()
    n = len(x)
    ok = all(len(v) == 1 and v[0][0].dim() == 2 and v[0][1].dim() == 2 and len(v[0][0]) == len(v[0][1]) == n
             and (v[0][0]._version, v[0][1]._version) == v[0][2:] for v in seen.values())
    return logits, ({m: v[0][:2] for m, v in seen.items()} if ok else None)


def group_gradients(model: nn.Module, batch: Mapping[str, Any], *, params: Sequence[str] | None = None,
                    kind: str = "all", create_graph: bool = False, require_all: bool = True,
                    per_group_forward: bool = False,
                    cell_logits: Mapping[tuple[int, int], torch.Tensor] | None = None) -> GroupGradients:
    """The gradients of the (a, y) groups, ``g^{A=a,Y=y} = ∂L^{A=a,Y=y}/∂w`` (GCM eq. 7): four for a
    binary task, 2K for K classes.

    ``L^{A=a,Y=y}`` is the mean loss (:func:`sample_losses`: BCE, or cross-entropy for K > 2 outputs)
    over the batch's samples of cell (a, y), taken from
    the batch's own forward pass (``batch["logits"]``), one ``torch.autograd.grad`` call per cell.
    For models without batch statistics (the paper's MLP) this equals a separate forward per group
    as in the authors' code; with BatchNorm in train mode the shared forward normalises over the
    whole batch.

    Parameters
    ----------
    model : nn.Module
    batch : dict
        The engine's batch (``logits``, ``y``, ``groups``), or :func:`make_batch`.
    params, kind
        Restriction to some tensors, see :func:`select_parameters`.
    create_graph : bool
        Keep the graph of the gradients so that a penalty on them can be back-propagated (double
        backward; GCM's regulariser). ``False`` for measurements.
    require_all : bool
        Raise if a cell is empty (default); otherwise empty cells are absent from ``grads``.
    per_group_forward : bool
        Run the model once more on each cell's rows (``batch["x"]``) instead of slicing the batch's
        logits, as the authors' code does. Same values for models without batch statistics, but
        each cell's backward (and double backward) then touches only its own rows instead of the
        whole batch: about 1.5x faster for GCM on the Adult MLP (``benchmarks/gcm.py``). For
        ``nn.Linear`` tensors, :func:`linear_group_gradients` needs neither (one pass over the batch).
    cell_logits : dict, optional
        The cells' logits from separate forward passes already made (:class:`PerGroupForward`, which
        also gives the engine the batch's logits from them); keys ``(a, y)``.
    """
    named = select_parameters(model, params, kind)
    lg, y, a = _unpack(batch)
    k = n_classes(lg)
    ps = [p for _, p in named]
    grads, sizes = {}, {cell: 0 for cell in cells(k)}
    if per_group_forward and "x" not in batch:
        raise ValueError("per_group_forward needs the batch's inputs (batch['x'])")
    per_sample = None if (per_group_forward or cell_logits) else sample_losses(lg, y)
    for cell, m in cell_masks(y, a, require_all, k).items():
        sizes[cell] = int(m.sum())
        if cell_logits:
            loss = sample_losses(cell_logits[cell], y[m]).mean()
        elif per_group_forward:
            loss = sample_losses(model(batch["x"][m]), y[m]).mean()
        else:
            loss = per_sample[m].mean()
        grads[cell] = _grads(loss, ps, create_graph)
    return GroupGradients([n for n, _ in named], grads, sizes, k)


class PerGroupForward:
    """Base of the regularisers that need the gradients of every (a, y) cell with a graph (GCM, direct
    aligning). As the engine's ``extra_loss`` it also supplies the batch's forward
    (:meth:`batch_forward`, see :func:`fairbook.train.fit`), so that the main loss, the cells'
    gradients and the double backward share it, for models without batch statistics:

    * when every selected tensor belongs to an ``nn.Linear`` (the paper's MLPs), one forward over the
      batch sorted cell by cell, and the cells' gradients from its row signals
      (:func:`linear_group_gradients`);
    * otherwise (e.g. AlexNet, which has no BatchNorm), one forward per cell, the batch's logits
      assembled from them.

    The group samplers' batches come cell by cell, so the cells are slices of the batch (views);
    other batches are sorted by cell first. With batch statistics (BatchNorm) the batch is one
    forward and the cells' gradients slice its logits. Subclasses implement :meth:`penalty`.
    """

    lam: float = 0.0

    def __init__(self, params: Sequence[str] | None = None, kind: str = "all"):
        self.params, self.kind = params, _check_choice("kind", kind, KINDS)
        self._cached: tuple | None = None

    def batch_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, groups) -> torch.Tensor:
        self._cached = None
        if self.lam == 0 or groups is None or len(x) == 0 or not _separable(model, {"x": x}):
            return model(x)
        a = torch.as_tensor(groups).to(x.device).long()
        yl = y.long()
        if not (bool(((a == 0) | (a == 1)).all()) and bool((yl == y).all()) and bool((yl >= 0).all())):
            return model(x)  # a not binary or y not class indices: leave it to the checks
        k = int(yl.max()) + 1
        key = cell_index(yl, a, k)
        xs, order = x, None
        if not bool((key[1:] >= key[:-1]).all()):  # the group samplers' batches are already cell by cell
            order = torch.argsort(key, stable=True)
            xs, key, yl = x[order], key[order], yl[order]
        ids, sizes = torch.unique_consecutive(key, return_counts=True)
        named = select_parameters(model, self.params, self.kind)
        owners = _linear_owners(model, named)
        if owners is not None:
            logits, taps = _tapped_forward(model, xs, owners)
            sorted_cells = [divmod(int(c), k) for c in ids]
            if taps is not None and sorted_cells == cells(n_classes(logits)):
                self._cached = (x, ("linear", named, owners, taps, logits, yl, sizes.tolist()))
            # else (a cell is missing, or a Linear ran twice): gradients() takes the general way
        else:
            parts = {divmod(int(c), k): model(xc) for c, xc in zip(ids, torch.split(xs, sizes.tolist()))}
            logits = torch.cat(list(parts.values()))
            self._cached = (x, ("cells", parts))
        if order is not None:
            logits = logits[torch.argsort(order)]
        return logits

    def gradients(self, model: nn.Module, batch: Mapping[str, Any]) -> GroupGradients:
        """The cells' gradients with ``create_graph=True``, from :meth:`batch_forward`'s pass(es) if it made them."""
        cached = self._cached
        self._cached = None
        if cached is not None and cached[0] is batch.get("x"):
            if cached[1][0] == "linear":
                _, named, owners, taps, logits, y_sorted, sizes = cached[1]
                _unpack(batch)  # the batch's own checks (labels, groups)
                return linear_group_gradients(named, owners, taps, sample_losses(logits, y_sorted), sizes,
                                              n_classes(logits))
            return group_gradients(model, batch, params=self.params, kind=self.kind, create_graph=True,
                                   cell_logits=cached[1][1])
        return group_gradients(model, batch, params=self.params, kind=self.kind, create_graph=True,
                               per_group_forward=_separable(model, batch))

    def penalty(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        if self.lam == 0:
            select_parameters(model, self.params, self.kind)  # still validate the names
            return batch["logits"].new_zeros(())
        return self.lam * self.penalty(model, batch)
