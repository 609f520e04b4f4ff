"""Group Contribution Matching (Li et al., "Fairness via Group Contribution Matching", IJCAI 2023):
the group contribution disparity, the GCM regulariser and the paper's baselines.

Everything trains through the one engine, :func:`fairbook.train.fit`: a method is an
``extra_loss(model, batch)`` callable (``batch`` holds ``x``, ``y``, ``ids``, ``groups`` = the
sensitive attribute a and the training ``logits``), combined with ``sampler="group_balanced"``
(``batch_size/4`` samples of each (a, y) cell per step, the authors' batches) where the paper does so.

* cells and gradients: :func:`cells`, :func:`cell_index`, :func:`make_batch`, :func:`select_parameters`,
  :func:`layer_parameters`, :func:`group_gradients` (eq. 7, the gradients of the four (a, y) groups), and for ``nn.Linear``
  tensors the same from one pass over the batch, :func:`linear_group_gradients`;
* group contribution disparity r̂ (eqs. 6, 8, 9): :func:`contribution_disparity`; the variant the
  authors' code logs, :func:`code_disparity`; :class:`DisparityTracker` records both at every iteration;
* GCM: :func:`group_confidence` (eq. 12), :func:`confidence_weights` (W = c^T),
  :func:`gcm_penalty` (eqs. 10, 13, 14), :func:`gcm_loss` -> :class:`GCMLoss`;
* baselines: vanilla ERM and OverSampling (the engine alone), :func:`eor_penalty`/:func:`eor_loss`
  (EOR), :class:`AdversarialDebiasing` (Zhang et al. 2018), :func:`iga_penalty`/:func:`iga_loss`
  (eq. 16), :func:`direct_aligning_penalty`/:func:`direct_aligning_loss` (eq. 17), and the external
  references :func:`exponentiated_gradient_baseline`, :func:`threshold_optimizer_baseline` (fairlearn);
  :func:`method_loss` and :func:`fit_method` dispatch by name (:data:`METHODS`);
* evaluation: :func:`report`, :func:`evaluate`, :func:`val_metrics` (epoch selection on validation
  ΔEO, as in the authors' code); Table 1: :func:`subgroup_sizes_per_iteration`.

Conventions: the model has one logit (BCE, as in the paper's code) or two (softmax; the binary logit is
then ``l_1 - l_0``); ``a = 1`` is the privileged group (GCM §2.1). The gradient methods (GCM, direct
aligning, IGA, the disparity, adversarial debiasing) also take K > 2 softmax outputs (cross-entropy;
the 2K cells (a, y), y < K), as in the paper's CIFAR-10S experiment (Table 6); EOR and the binary
metrics stay binary. The metrics themselves live in
:mod:`fairbook.metrics`.
"""
from __future__ import annotations

import collections
import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics, models, train

CELLS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))  # (a, y), the paper's Z_ay
FORMS = ("paper", "squared")
KINDS = ("all", "weight", "bias")
ALIGN_FORMS = ("abs", "squared")
METHODS = ("vanilla", "oversampling", "eor", "adversarial", "gcm", "iga", "direct")

#: The paper's Adult model (§4.1, the authors' code): ``models.MLP(120, ADULT_WIDTHS, 1)``, one logit.
ADULT_WIDTHS = (200, 200)
#: The paper's Adult schedule as :func:`fit_method` / :func:`train.fit` keywords: Adam lr 1e-3, batches of
#: 2000 (500 per (a, y) cell), 20 epochs of 100 iterations (the epoch is then chosen by the lowest
#: validation ΔEO: pass ``val=(X_val, y_val, a_val)`` to :func:`fit_method`).
ADULT_FIT = {"batch_size": 2000, "epochs": 20, "steps_per_epoch": 100,
             "optim": train.Optim("adam", lr=1e-3), "loss": "bce"}


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


def eop_at_own_epoch(res: train.FitResult, X, y, a, device="auto") -> float:
    """Folded EOP (:func:`report`) of the model at the epoch of highest validation EOP, when
    :func:`fit_method` kept one (validation selection, as the authors report EOP); else of the
    returned model."""
    model = res.model
    if "eop" in res.other_best:
        model = copy.deepcopy(res.model)
        model.load_state_dict(res.other_best["eop"][1])
    return evaluate(model, X, y, a, device=device)["eop_folded"]


def scale_check(X, y, a, test, seeds: Sequence[int], *, widths=(200, 200), **fit_kwargs) -> pd.DataFrame:
    """Vanilla and OverSampling (:func:`fit_method`) trained with the MLP ``widths`` (default the
    paper's 200-200) from each seed, evaluated on ``test = (X, y, a)``: does a premise of the paper
    that fails at a small scale hold at the paper's? ``fit_kwargs`` go to :func:`fit_method`."""
    rows = []
    for s in seeds:
        for method in ("vanilla", "oversampling"):
            model = train.seeded(lambda: models.MLP(np.asarray(X).shape[1], tuple(widths), 1), s)
            res = fit_method(method, model, X, y, a, seed=s, **fit_kwargs)
            rows.append({"seed": s, "method": method, **evaluate(res.model, *test)})
    return pd.DataFrame(rows)


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
    """GCM's ``λ·L_fair`` (eqs. 11, 13) as an ``extra_loss(model, batch)`` for :func:`train.fit`.

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
    ``extra_loss`` for :func:`train.fit` (no separate training loop is needed).

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


# --- the chapter's training settings and one run (a task of fairbook.grid) ---------------------------
@dataclass(frozen=True)
class Setting:
    """How the chapter trains: the tables' MLP (``widths``) and schedule, and the image datasets' own
    network and schedule (``image_*``; ``image_steps_per_epoch`` 0 = one pass over the data).
    ``select``: ``last`` or ``val_delta_eo`` (the authors' epoch selection)."""

    widths: tuple[int, ...] = (64, 64)
    batch_size: int = 200
    epochs: int = 4
    steps_per_epoch: int = 40
    lr: float = 2e-3
    select: str = "last"
    image_model: str = "mlp"
    image_batch_size: int = 200
    image_epochs: int = 4
    image_steps_per_epoch: int = 40
    image_lr: float = 2e-3
    multiclass_dataset: str = "none"

    def is_image(self, dataset: str) -> bool:
        """CelebA or the coloured digits (the multiclass CIFAR-10S analog trains like the tables)."""
        return dataset not in ("adult", "compas", self.multiclass_dataset)


def make_model(setting: Setting, dataset: str, X, n_out: int = 1, model_seed: int = 0) -> nn.Module:
    """The paper's MLP on the tables; on images ``setting.image_model`` (AlexNet / ResNet-18 for
    CelebA). Its initial weights come from ``model_seed`` alone."""
    img = setting.is_image(dataset)
    if img and setting.image_model == "alexnet":
        build = lambda: models.alexnet(n_out)  # noqa: E731
    elif img and setting.image_model == "resnet18":
        build = lambda: models.resnet(18, num_classes=n_out)  # noqa: E731
    elif isinstance(X, torch.utils.data.Dataset):
        raise ValueError(f"image_model='mlp' cannot train on the image files of {dataset}; "
                         f"use -p image_model alexnet or resnet18")
    else:
        build = lambda: models.MLP(int(np.prod(X.shape[1:])), tuple(setting.widths), n_out)  # noqa: E731
    return train.seeded(build, model_seed)


def fit_setting(setting: Setting, splits: Mapping, dataset: str, method: str, options: dict | None = None,
                model_seed: int = 0, tracker: DisparityTracker | None = None, n_out: int = 1,
                **kw) -> train.FitResult:
    """One model of ``method`` (:func:`fit_method`) on ``splits[dataset]`` with ``setting``."""
    (X, y, a), val = splits[dataset]["train"], splits[dataset]["val"]
    img = setting.is_image(dataset)
    spe = setting.image_steps_per_epoch if img else setting.steps_per_epoch
    kw = {"val": val if setting.select == "val_delta_eo" and n_out == 1 else None, "options": options,
          "tracker": tracker, "batch_size": setting.image_batch_size if img else setting.batch_size,
          "epochs": setting.image_epochs if img else setting.epochs, "steps_per_epoch": spe or None,
          "optim": train.Optim("adam", lr=setting.image_lr if img else setting.lr), "seed": model_seed, **kw}
    return fit_method(method, make_model(setting, dataset, X, n_out, model_seed), X, y, a, **kw)


def train_eval(setting: Setting, splits: Mapping, dataset: str, method: str, options: dict | None = None,
               model_seed: int = 0, tracker: DisparityTracker | None = None, **kw) -> dict[str, float]:
    """Train one model (:func:`fit_setting`); report it on the test split, and on the validation
    split (``val_*``), which alone is used to choose among strengths; EOP also at its own
    validation-selected epoch (``eop_own``; the same epoch when ``select`` is last); on the tables,
    the final norm-based disparity on a group-balanced batch of training rows (``lognorm_y*``)."""
    res = fit_setting(setting, splits, dataset, method, options, model_seed, tracker, **kw)
    d = splits[dataset]
    v = evaluate(res.model, *d["val"])
    out = {**evaluate(res.model, *d["test"]), **{f"val_{k}": v[k] for k in ("ap", "delta_eo", "delta_dp", "acc")},
           "eop_own": eop_at_own_epoch(res, *d["test"])}
    if dataset in ("adult", "compas"):
        out.update(final_disparity(res.model, *d["train"], seed=model_seed))
    return out


def traced_eval(setting: Setting, splits: Mapping, dataset: str, method: str, options: dict | None = None,
                model_seed: int = 0, tracker: dict | None = None, **kw) -> tuple[pd.DataFrame, dict[str, float]]:
    """:func:`train_eval` with a :class:`DisparityTracker` built from the keywords ``tracker``:
    returns its history (r̂ per recorded iteration) and the run's results."""
    tr = DisparityTracker(**(tracker or {}))
    result = train_eval(setting, splits, dataset, method, options, model_seed, tr, **kw)
    return tr.history, result


def multiclass_eval(setting: Setting, splits: Mapping, dataset: str, halves: Mapping[str, np.ndarray], method: str,
                    options: dict | None = None, model_seed: int = 0, **kw) -> dict[str, float]:
    """Table 6 (the CIFAR-10S analog): one ``len(classes)``-way model of ``method`` (cross-entropy),
    scored on each half of the test split (``halves``: name -> boolean row mask; the chapter chooses
    settings on one half and reports the other): accuracy on the colour (a = 1) and gray (a = 0)
    images, overall, and −Bias (:func:`fairbook.metrics.cifar10s_bias`)."""
    X, y, a = splits[dataset]["test"]
    k = int(np.max(y)) + 1
    res = fit_setting(setting, splits, dataset, method, options, model_seed, n_out=k, loss="ce", **kw)
    pred = train.logits_of(res.model, X).argmax(1).numpy()
    row = {}
    for h, rows_h in halves.items():
        ok = (pred == y)[rows_h]
        row.update({f"{h} acc color": float(ok[a[rows_h] == 1].mean()), f"{h} acc gray": float(ok[a[rows_h] == 0].mean()),
                    f"{h} acc": float(ok.mean()),
                    f"{h} -Bias": -metrics.cifar10s_bias(pred[rows_h], a[rows_h], n_classes=k, nan_ok=True)})
    return row


# --- external references (fairlearn) ------------------------------------------------------------------
def _logistic(seed: int, C: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression

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
    from fairlearn.reductions import EqualizedOdds, ExponentiatedGradient

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
    from fairlearn.postprocessing import ThresholdOptimizer

    to = ThresholdOptimizer(estimator=_logistic(seed, C, lr_max_iter), constraints="equalized_odds",
                            predict_method="predict_proba")
    to.fit(_f64(X_train), np.asarray(y_train), sensitive_features=np.asarray(a_train))
    X_test, a_test = _f64(X_test), np.asarray(a_test)
    return (np.asarray(to.predict(X_test, sensitive_features=a_test, random_state=seed)).astype(np.int64),
            np.asarray(to._pmf_predict(X_test, sensitive_features=a_test))[:, 1])


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


def evaluate(model: nn.Module, X, y, a, device="auto") -> dict[str, float]:
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


# --- Table 1: subgroup sizes per iteration ----------------------------------------------------------------
def subgroup_sizes_per_iteration(y, a, batch_size: int) -> pd.DataFrame:
    """Average number of samples of each (a, y) group in one iteration (GCM Table 1).

    ``standard``: shuffled batches of ``batch_size`` drawn without replacement, so the expected count of
    cell (a, y) in a full batch is ``batch_size · n_ay / n`` (exactly the per-iteration average over an
    epoch when ``n`` is a multiple of ``batch_size``). ``oversampling``: group-balanced batches,
    ``batch_size / 4`` per cell (the engine's ``sampler="group_balanced"``). Columns Z00, Z01, Z10, Z11
    (Z_ay, a first, as in the paper).
    """
    y = metrics._binary(y, "y")
    a = metrics._binary(a, "a")
    if len(y) != len(a) or len(y) == 0:
        raise ValueError(f"y and a must be non-empty and of equal length, got {len(y)} and {len(a)}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 4 or batch_size % 4:
        raise ValueError(f"batch_size must be a positive multiple of 4, got {batch_size!r}")
    counts = {f"Z{ai}{yi}": int(((a == ai) & (y == yi)).sum()) for ai, yi in CELLS}
    n = len(y)
    return pd.DataFrame([{k: batch_size * c / n for k, c in counts.items()},
                         {k: batch_size / 4 for k in counts}], index=["standard", "oversampling"])


# --- the chapter's parameter checks ----------------------------------------------------------------------
def check_parameters(values: dict) -> None:
    """Conditions between the GCM chapter's parameters, checked before any kernel starts
    (:mod:`fairbook.book.runner`)."""
    from .errors import ParameterError

    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'gcm': {msg}; got {values[name]!r}")

    for name in ("batch_size", "image_batch_size"):
        if name in values and values[name] % 4:
            bad(name, "must be a multiple of 4 (group-balanced batches hold a quarter per (a, y) cell)")
    if values.get("multiclass_dataset", "none") != "none" and values.get("multiclass_batch_size", 20) % 20:
        bad("multiclass_batch_size", "must be a multiple of 20 (one share per (colour, class) cell of the "
            "ten-class Table 6)")
    if values.get("image_model") == "alexnet" and values.get("image_size", 64) < 63:
        bad("image_size", "must be at least 63 for image_model='alexnet' (its pooling needs 63x63 inputs)")
    if values.get("multiclass_dataset", "none") != "none" and not 0 < values.get("skew", 0.95) < 1:
        bad("skew", "must lie strictly between 0 and 1: at 0 or 1 some (colour, class) cells are empty and "
            "group-balanced batches cannot be drawn")
    if values.get("image_dataset") == "celeba" and values.get("image_model", "mlp") == "mlp":
        bad("image_model", "must be alexnet or resnet18 for image_dataset='celeba' (the MLP is for the "
            "28x28 digits)")
    for name in ("temperatures", "gcm_lams", "eor_lams", "adv_alphas", "layer_lams", "iga_lams",
                 "direct_lams", "image_gcm_lams", "image_eor_lams", "image_adv_alphas"):
        if name in values and len(values[name]) == 0:
            bad(name, "needs at least one value")
    if "image_seeds" in values and "n_seeds" in values and values["image_seeds"] > values["n_seeds"]:
        bad("image_seeds", f"cannot exceed n_seeds = {values['n_seeds']} (Table 5 uses the first seeds)")
    grids = {n: len(values[n]) for n in ("gcm_lams", "eor_lams", "adv_alphas") if n in values}
    grids.update({n: sum(v > 0 for v in values[n]) for n in ("iga_lams", "direct_lams") if n in values})
    if len(set(grids.values())) > 1:
        common = collections.Counter(grids.values()).most_common(1)[0][0]
        name = next(n for n in grids if grids[n] != common)
        bad(name, "every method searches the same number of settings (GCM per temperature, EOR, "
                  "adversarial, IGA and direct aligning with λ > 0), so that no method wins by a larger "
                  f"search; the grids have {grids}")
    for name in ("image_eor_lams", "image_adv_alphas"):
        if name in values and "image_gcm_lams" in values and len(values[name]) != len(values["image_gcm_lams"]):
            bad(name, f"must have as many values as image_gcm_lams ({len(values['image_gcm_lams'])}): equal "
                      "search budgets on the images")


def load_splits(name: str, *, root=None, seed: int = 0, celeba_target: str = "Wavy_Hair",
                image_size: int = 64, skew: float = 0.95, color_bias: float = 0.9) -> dict:
    """train/val/test of a chapter dataset as ``(X, y, a)`` with a = 1 the privileged group (GCM §2.1).

    Adult: a = male (fair-mixup layout); COMPAS: a = Caucasian; CelebA: a = female (GCM §4.1: both
    tasks disfavour men; X stays the on-disk dataset); ``skewed-*`` (CIFAR-10S analog) and the coloured
    digits: a = colour (semi-synthetic).
    """
    from . import data as _data

    out = {}
    for split in ("train", "val", "test"):
        if name == "adult":
            d = _data.load("adult", split, root=root, seed=seed, layout="fair-mixup")
            a = d.groups["sex"]
        elif name == "compas":
            d = _data.load("compas", split, root=root, seed=seed)
            a = 1 - d.groups["race"]
        elif name == "celeba":
            d = _data.load("celeba", split, root=root, target=celeba_target, sensitive="Male",
                           image_size=image_size)
            a = 1 - d.groups["Male"]
            out[split] = (d, d.y.astype(np.int64), a.astype(np.int64))  # images stay on disk
            continue
        elif name.startswith("skewed-"):
            d = _data.load(name, split, root=root, seed=seed, skew=skew)
            a = d.groups["color"]
        else:
            d = _data.load(name, split, root=root, seed=seed, bias=color_bias)
            a = d.groups["color"]
        out[split] = (d.X.astype(np.float32), d.y.astype(np.int64), a.astype(np.int64))
    return out
