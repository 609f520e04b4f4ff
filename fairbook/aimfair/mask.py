"""AIM-Fair (Zhao et al., "AIM-Fair: Advancing Algorithmic Fairness via Selectively Fine-Tuning
Biased Models with Contextual Synthetic Data"): selective mask generation and selective fine-tuning
(§3.2-3.3, eqs. 1-8), the baselines of Tables 3-4 and the evaluation of its tables.

* data: :func:`bias_ratios` / :func:`balanced_ratios` (the (y, s) cell ratios of the biased and
  balanced sets, §4.1, Table 6), :func:`supplement` and :func:`repair` (Table 3's data baselines);
  the ``paper`` profile's data read lazily from disk: :func:`celeba_setting` (the biased CelebA
  training subset and the full validation/test partitions), :func:`utkface_setting` (the biased
  UTKFace training subset, the val split and a balanced test subset) and :func:`synthetic_table`
  (a Stable Diffusion layout), all :class:`~fairbook.data.fullscale.ImageTable`; :func:`take` and
  :func:`join` select and concatenate rows of arrays, tensors or ImageTables alike;
* selective mask generation (SMG, §3.2): :func:`dataset_gradients` (eqs. 1-3),
  :func:`selective_mask` -> :class:`SelectiveMask` (eqs. 4-7), :func:`k_for_fraction`;
* selective fine-tuning (SFT, §3.3): :func:`selective_finetune` (eq. 8) and :func:`finetune`, the one
  fine-tuning call of every method (through :func:`fairbook.train.fit`); its controls:
  :func:`random_like`, the random mask matched to a selective mask in tensors or in scalars, and
  :func:`bn_recalibration`, BatchNorm statistics re-estimated with no parameter moved;
* parameter subsets of the fine-tuning baselines (Tables 3-4): :func:`blocks`, :func:`full`,
  :func:`linear_probe`, :func:`random_selection`, :func:`update_one_block`,
  :func:`freeze_one_block`;
* evaluation: :func:`evaluate` (ACC, the four cell accuracies, WST, EO as eq. 9's mean and as the
  worst case max(ΔTPR, ΔFPR) that the paper's tables match, STD) and :func:`aggregate` (over seeds,
  the authors' order of operations);
* the chapter's runner hooks: :func:`check_parameters` and :func:`input_files`.

The paper (§3.2: "Rather than considering fine-grained, scalar-wise parameters, we select
parameters at the level of weights and biases") and the authors' code agree: the mask is computed
per parameter tensor (``level="tensor"``, Δ = mean over the tensor of |g_a − g_b|; ``k`` counts
tensors, ResNet-18 has 62). The scalar-wise variant the paper rejects is available as
``level="element"``, a labelled variant. The gradients are measured with the model in ``train()``
mode on shuffled batches; during fine-tuning BatchNorm running statistics of frozen layers still move
(``freeze_bn_stats=False``) unless told otherwise, for every method alike (:func:`finetune`).

The metrics themselves live in :mod:`fairbook.metrics`. Cells are ordered (y, s) = (0, 0), (0, 1),
(1, 0), (1, 1) everywhere, like :data:`fairbook.data.images.AIM_FAIR_RATIOS`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from tqdm import tqdm

from . import metrics, models, train
from .data.fullscale import ImageTable
from .data.images import AIM_FAIR_RATIOS, CELLS, cell_counts, cell_rows
from .io import progress_enabled

__all__ = [
    "CELLS", "LEVELS", "MEASURES", "METRICS",
    "bias_ratios", "balanced_ratios", "dataset_gradients", "SelectiveMask", "selective_mask",
    "k_for_fraction", "selective_finetune", "finetune", "bn_recalibration", "random_like", "blocks", "full", "linear_probe", "random_selection",
    "update_one_block", "freeze_one_block", "supplement", "repair", "evaluate", "aggregate",
    "take", "join", "context_cell_size", "context_rows", "draw_cells", "cell_grid", "subsample", "celeba_setting",
    "utkface_setting", "synthetic_table", "check_parameters",
    "input_files",
]

LEVELS = ("tensor", "element")
MEASURES = ("abs", "cosine")
#: keys of :func:`evaluate`; :func:`aggregate` treats every other column except ``seed`` as a setting
METRICS = ("acc", "acc_y0_s0", "acc_y0_s1", "acc_y1_s0", "acc_y1_s1", "wst", "eo", "eo_max", "std")
_CELL_KEYS = METRICS[1:5]


def _fail(where: str, name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{where}: {name} got {value!r}; allowed: {allowed}")


# ------------------------------------------------------------------------------ cell ratios
def bias_ratios(minority: float | str) -> tuple[float, float, float, float]:
    """(y, s) cell ratios of a set with bias ``minority : majority`` inside each target class.

    Each target class holds half of the data; within it the minority group holds the share
    ``minority`` and the majority group ``1 − minority``. As in AIM-Fair's CelebA subsets (§4.1)
    the minority is s = 0 for y = 0 and s = 1 for y = 1, so the ratios of the cells (0, 0), (0, 1),
    (1, 0), (1, 1) are ``(m/2, (1−m)/2, (1−m)/2, m/2)``. ``0.1`` (or ``"1:9"``) gives the paper's
    1:9 bias (0.05, 0.45, 0.45, 0.05), i.e. 1,000/9,000/9,000/1,000 of 20,000 images; Table 6's
    4:6, 3:7, 2:8 are 0.4, 0.3, 0.2; ``0.5`` is balanced.

    Parameters
    ----------
    minority : float in [0, 0.5], or a string ``"a:b"`` with 0 <= a <= b (share a / (a + b)).
    """
    where = "bias_ratios"
    m = minority
    if isinstance(minority, str):
        parts = minority.split(":")
        try:
            a, b = (float(p) for p in parts)
        except ValueError:
            raise _fail(where, "minority", minority, "a number in [0, 0.5] or 'a:b' with "
                        "0 <= a <= b, e.g. '1:9'") from None
        if len(parts) != 2 or a < 0 or b <= 0 or a > b:
            raise _fail(where, "minority", minority, "'a:b' with 0 <= a <= b, b > 0, e.g. '1:9'")
        m = a / (a + b)
    if isinstance(m, bool) or not isinstance(m, (int, float, np.floating, np.integer)) \
            or not 0 <= m <= 0.5:
        raise _fail(where, "minority", minority, "a number in [0, 0.5] (0.5 = balanced) or 'a:b'")
    m = float(m)
    return (m / 2, (1 - m) / 2, (1 - m) / 2, m / 2)


def balanced_ratios() -> tuple[float, float, float, float]:
    """Equal (y, s) cells: AIM-Fair's balanced synthetic set D_S2 (N_S = N_R / G per group, §4.3)."""
    return (0.25, 0.25, 0.25, 0.25)


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
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    params = OrderedDict(model.named_parameters())
    if not params:
        raise _fail(where, "model", type(model).__name__, "a model with parameters")

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


# ---------------------------------------------------------------- selective fine-tuning (eq. 8)
def _bn_modules_frozen(model: nn.Module, trainable: set[str]) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm modules none of whose parameters is trained (affine-free ones included)."""
    out = []
    for prefix, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            own = [f"{prefix}.{n}" if prefix else n for n, _ in mod.named_parameters(recurse=False)]
            if not any(n in trainable for n in own):
                out.append(mod)
    return out


def _with_masked_decay(extra_loss, weight_decay: float, names: Sequence[str]):
    """``extra_loss`` plus (weight_decay / 2) Σ ||θ||² over the parameters ``names``: its gradient
    weight_decay·θ is the coupled weight decay of SGD/Adam, and passes through the engine's
    gradient masks. ``extra_loss``'s ``batch_forward`` (the engine's shared forward hook, see
    :func:`fairbook.train.fit`) is kept on the wrapper."""
    def term(model, batch):
        params = dict(model.named_parameters())
        l2 = sum(params[n].pow(2).sum() for n in names)
        out = 0.5 * weight_decay * l2
        return out if extra_loss is None else out + extra_loss(model, batch)
    if getattr(extra_loss, "batch_forward", None) is not None:
        term.batch_forward = extra_loss.batch_forward
    return term


def selective_finetune(model: nn.Module, mask: SelectiveMask, X, y=None, *,
                       freeze_bn_stats: bool = False, **fit_kwargs) -> train.FitResult:
    """Selective fine-tuning (AIM-Fair §3.3, eq. 8): θ ← θ − η (M ⊙ ∇θ L) on the balanced
    synthetic data: :func:`finetune` with a :class:`SelectiveMask`.

    Tensor level (the paper's): ``fit(trainable=mask.trainable)`` — every other tensor is frozen
    (``requires_grad=False``, as in the authors' code). Element level: ``trainable`` plus
    ``grad_masks=mask.grad_masks()``; a coupled weight decay (``Optim("sgd"|"adam",
    weight_decay=...)``) would shrink unselected elements of a trained tensor, so it is moved into
    an L2 term of the loss whose gradient is masked like the rest (same update for the selected
    elements, none for the others; the reported ``train_loss`` includes it). AdamW's decoupled
    decay cannot be masked and is refused at element level. ``freeze_bn_stats`` and
    ``fit_kwargs``: as in :func:`finetune`.
    """
    if not isinstance(mask, SelectiveMask):
        raise _fail("selective_finetune", "mask", type(mask).__name__, "a SelectiveMask from selective_mask()")
    return _finetune("selective_finetune", model, mask, X, y, freeze_bn_stats, fit_kwargs)


def finetune(model: nn.Module, selection, X, y=None, *, freeze_bn_stats: bool = False,
             **fit_kwargs) -> train.FitResult:
    """Fine-tune the parameters ``selection`` of ``model`` in place, through :func:`fairbook.train.fit`:
    one function for every method of a comparison, so they share one BatchNorm setting.

    ``selection``: a :class:`SelectiveMask` (SFT, see :func:`selective_finetune`) or a set of
    parameter names (full fine-tuning, linear probing, random selection, sub-tuning: :func:`full`,
    :func:`linear_probe`, :func:`random_selection`, :func:`update_one_block`, ...); every other
    tensor is frozen.

    ``freeze_bn_stats``: ``False`` (default, the authors' behaviour): the model trains in
    ``train()`` mode and every BatchNorm layer's running mean/variance keeps updating on the
    synthetic batches, frozen layers included. ``True``: for the BatchNorm layers none of whose
    parameters is trained, ``track_running_stats`` is switched off during fine-tuning, so their
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` stay bit-identical; in
    ``train()`` mode these layers still normalise each batch with its own batch statistics (as
    always in train mode), and in ``eval()`` mode (validation, test) they use the kept running
    statistics. The flag is restored afterwards. Layers with a trained parameter update as usual.

    ``fit_kwargs`` go to :func:`fairbook.train.fit` (``epochs``, ``optim``, ``loss="bce"``,
    ``val``/``select`` ...); ``trainable`` and ``grad_masks`` come from ``selection``.
    """
    return _finetune("finetune", model, selection, X, y, freeze_bn_stats, fit_kwargs)


def _finetune(where: str, model: nn.Module, selection, X, y, freeze_bn_stats, fit_kwargs: dict):
    for key in ("trainable", "grad_masks"):
        if key in fit_kwargs:
            raise _fail(where, key, "an explicit value", "nothing: the selection sets it")
    if not isinstance(freeze_bn_stats, bool):
        raise _fail(where, "freeze_bn_stats", freeze_bn_stats, "True or False")
    kwargs = dict(fit_kwargs)
    if isinstance(selection, SelectiveMask):
        mask = selection
        mask.check_model(model, where)
        trainable = mask.trainable
        if not trainable:
            raise _fail(where, "mask", "an empty selection (K1 ∩ K2 = ∅)", "a mask selecting at least "
                        "one parameter (raise k)")
        if mask.level == "element":
            opt = fit_kwargs.get("optim", train.Optim())
            if opt.weight_decay:
                if opt.name == "adamw":
                    raise _fail(where, "optim", opt, "weight_decay=0 for 'adamw' at level='element' "
                                "(its decoupled decay would move unselected elements), or sgd/adam")
                kwargs["optim"] = dataclasses.replace(opt, weight_decay=0.0)
                kwargs["extra_loss"] = _with_masked_decay(fit_kwargs.get("extra_loss"),
                                                          opt.weight_decay, sorted(trainable))
            kwargs["grad_masks"] = mask.grad_masks()
    elif isinstance(selection, (set, frozenset, list, tuple)) and all(isinstance(n, str) for n in selection):
        trainable = set(selection)
        unknown = trainable - full(model)
        if not trainable or unknown:
            raise _fail(where, "selection", f"{len(trainable)} names, unknown {sorted(unknown)[:3]}",
                        "a non-empty set of the model's parameter names")
    else:
        raise _fail(where, "selection", type(selection).__name__,
                    "a SelectiveMask or a set of parameter names")
    kwargs["trainable"] = trainable
    frozen_bn = _bn_modules_frozen(model, trainable) if freeze_bn_stats else []
    for mod in frozen_bn:
        mod.track_running_stats = False
    try:
        return train.fit(model, X, y, **kwargs)
    finally:
        for mod in frozen_bn:
            mod.track_running_stats = True


def bn_recalibration(model: nn.Module, X, y, *, epochs: int, batch_size: int = 128, seed: int = 0,
                     device="auto", num_workers: int = 0) -> nn.Module:
    """The null of every fine-tuning run: no parameter moves, only the BatchNorm running statistics
    are re-estimated on the fine-tuning data (train-mode forward passes without gradients over
    ``epochs`` shuffled passes of ``X``, the layers' own momentum). Fine-tuning in train mode
    (``freeze_bn_stats=False``) does the same on the way, so what a method gains above this control
    is what its updated parameters add. ``y`` only pairs with ``X`` (unused). In place; returns the
    model in eval mode."""
    where = "bn_recalibration"
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise _fail(where, "epochs", epochs, "an integer >= 1")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise _fail(where, "batch_size", batch_size, "an integer >= 1")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise _fail(where, "model", type(model).__name__, "a model with BatchNorm layers")
    dev = train.resolve_device(device)
    home = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    model.to(dev).train()
    with torch.no_grad():
        for _ in range(epochs):
            for xb, _yb in _batches(X, y, rng.permutation(len(X)), batch_size, num_workers):
                model(xb.to(dev))
    return model.to(home).eval()


# ------------------------------------------------------------------------------ baselines (Tables 3-4)
def blocks(model: nn.Module) -> OrderedDict[str, list[str]]:
    """The blocks of Table 4's sub-tuning baselines and Fig. 2: block name -> parameter names.

    torchvision ResNet (also :func:`fairbook.models.cifar_resnet18`): ``stem`` (conv1, bn1),
    ``layer1`` .. ``layer4``, ``fc``. :class:`fairbook.models.SmallCNN`: ``block1`` .. ``block3``
    (each conv + BatchNorm of ``body``) and ``head``. Other architectures raise.
    """
    from torchvision.models import ResNet

    names = [n for n, _ in model.named_parameters()]
    out: OrderedDict[str, list[str]] = OrderedDict()
    if isinstance(model, ResNet):
        top = {"conv1": "stem", "bn1": "stem", "layer1": "layer1", "layer2": "layer2",
               "layer3": "layer3", "layer4": "layer4", "fc": "fc"}
        for b in ("stem", "layer1", "layer2", "layer3", "layer4", "fc"):
            out[b] = []
        for n in names:
            b = top.get(n.split(".")[0])
            if b is None:
                raise _fail("blocks", "model", f"ResNet with an unexpected parameter {n!r}",
                            "a torchvision ResNet (conv1, bn1, layer1-4, fc)")
            out[b].append(n)
    elif isinstance(model, models.SmallCNN):
        current = None
        for child, mod in model.body.named_children():
            if isinstance(mod, nn.Conv2d):
                current = f"block{len(out) + 1}"
                out[current] = []
            for n, _ in mod.named_parameters():
                if current is None:
                    raise _fail("blocks", "model", "a SmallCNN whose body starts without a conv",
                                "SmallCNN as built by fairbook.models")
                out[current].append(f"body.{child}.{n}")
        out["head"] = [n for n in names if n.startswith("head.")]
    else:
        raise _fail("blocks", "model", type(model).__name__,
                    "a torchvision ResNet or fairbook.models.SmallCNN")
    return out


def full(model: nn.Module) -> set[str]:
    """Every parameter tensor: full fine-tuning (FFT, Table 3)."""
    return {n for n, _ in model.named_parameters()}


def linear_probe(model: nn.Module) -> set[str]:
    """The final linear layer's parameters (linear probing, Table 3)."""
    head = models.head(model)
    prefix = next(n for n, m in model.named_modules() if m is head)
    return {f"{prefix}.{n}" for n, _ in head.named_parameters()}


def random_selection(model: nn.Module, fraction: float, seed: int) -> set[str]:
    """``round(fraction × n_tensors)`` (at least 1) parameter tensors drawn uniformly without
    replacement; Table 4's "random selection" (updating ratios 40%, 55%, 70%, 85%)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise _fail("random_selection", "fraction", fraction, "a number in (0, 1]")
    names = [n for n, _ in model.named_parameters()]
    k = k_for_fraction(names, fraction, "tensor")
    rng = np.random.default_rng(seed)
    return {names[i] for i in rng.choice(len(names), size=k, replace=False)}


def random_like(model: nn.Module, mask: SelectiveMask, match: str, seed: int) -> set[str]:
    """The matched random control of a mask: uniformly drawn parameter tensors with as many
    tensors as ``mask.trainable`` (``match="tensors"``) or about as many scalar parameters as the
    mask trains (``match="scalars"``: tensors are added in a random order while the total stays
    closest to the mask's count, never empty). Against it, SFT's gain is the choice of tensors, not
    their number or size."""
    where = "random_like"
    if not isinstance(mask, SelectiveMask):
        raise _fail(where, "mask", type(mask).__name__, "a SelectiveMask from selective_mask()")
    if match not in ("tensors", "scalars"):
        raise _fail(where, "match", match, "'tensors' or 'scalars'")
    mask.check_model(model, where)
    sizes = OrderedDict((n, p.numel()) for n, p in model.named_parameters())
    names = list(sizes)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    if match == "tensors":
        return set(order[:len(mask.trainable)])
    target, total, out = mask.n_selected_parameters(), 0, set()
    for n in order:
        if not out or abs(total + sizes[n] - target) < abs(total - target):
            out.add(n)
            total += sizes[n]
    return out


def _block(model: nn.Module, block: str, where: str) -> tuple[dict, list[str]]:
    bl = blocks(model)
    if block not in bl:
        raise _fail(where, "block", block, ", ".join(bl))
    return bl, bl[block]


def update_one_block(model: nn.Module, block: str) -> set[str]:
    """Sub-tuning by updating one block (Table 4, Kaplun et al.): the block's parameter names."""
    return set(_block(model, block, "update_one_block")[1])


def freeze_one_block(model: nn.Module, block: str) -> set[str]:
    """Sub-tuning by freezing one block (Table 4, Fig. 2): every parameter name outside it."""
    return full(model) - set(_block(model, block, "freeze_one_block")[1])


def _concat(parts: Sequence):
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(list(parts))
    return np.concatenate([metrics.as_numpy(p) for p in parts])


# ------------------------------------------------------------------ rows of arrays or ImageTables
def _index(idx, where: str) -> np.ndarray:
    """``idx`` as an integer index array or a boolean mask (an empty list is an empty index)."""
    idx = metrics.as_numpy(idx)
    if idx.size == 0 and idx.dtype != bool:
        return idx.astype(np.int64).reshape(-1)
    if idx.dtype != bool and not np.issubdtype(idx.dtype, np.integer):
        raise _fail(where, "idx", f"an index of dtype {idx.dtype}", "integer indices or a boolean mask")
    return idx


def take(X, idx):
    """Rows ``idx`` (integer indices, in that order, or a boolean mask) of ``X``.

    ``X`` an :class:`~fairbook.data.fullscale.ImageTable`: ``X.subset(idx)``, a new lazy table (no
    image is read); a tensor: a tensor; anything else: a numpy array.
    """
    idx = _index(idx, "take")
    if isinstance(X, ImageTable):
        return X.subset(idx)
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(idx)]
    return metrics.as_numpy(X)[idx]


def _check_tables(where: str, Xs: Sequence, label: str = "Xs") -> None:
    """Raise unless ``Xs`` are all ImageTables with one image size and the same group names."""
    kinds = [isinstance(x, ImageTable) for x in Xs]
    if any(kinds) and not all(kinds):
        raise _fail(where, label, "a mix of ImageTables and arrays/tensors",
                    "all ImageTables, or all arrays/tensors")
    first = Xs[0]
    for i, t in enumerate(Xs[1:], 1):
        name = f"{label}[{i}]" if label == "Xs" else label
        if t.image_size != first.image_size:
            raise _fail(where, name, f"an ImageTable with image_size={t.image_size}",
                        f"the image_size of the first table, {first.image_size}")
        if set(t.groups) != set(first.groups):
            raise _fail(where, name, f"an ImageTable with groups {sorted(t.groups)}",
                        f"the group names of the first table, {sorted(first.groups)}")


def _join(Xs: Sequence, where: str):
    if not Xs:
        raise _fail(where, "Xs", "nothing", "at least one array, tensor or ImageTable")
    if not any(isinstance(x, ImageTable) for x in Xs):
        return _concat(Xs)
    _check_tables(where, Xs)
    first = Xs[0]

    def names(attr):
        return "+".join(dict.fromkeys(str(getattr(t, attr)) for t in Xs if getattr(t, attr)))

    return ImageTable(np.concatenate([t.paths for t in Xs]),
                      np.concatenate([t.targets for t in Xs]),
                      name=names("name"), split=names("split"), classes=first.classes,
                      groups={k: np.concatenate([t.groups[k] for t in Xs]) for k in first.groups},
                      group_names=first.group_names, image_size=first.image_size,
                      transform=first.transform, source=names("source"),
                      skipped=sum(t.skipped for t in Xs))


def join(*Xs):
    """Concatenation of arrays/tensors (torch if all are tensors, else numpy), or of ImageTables.

    ImageTables give a new lazy :class:`~fairbook.data.fullscale.ImageTable` with the concatenated
    paths, targets and groups; ``classes``, ``group_names``, ``image_size`` and ``transform`` are
    the first table's; ``name``/``split``/``source`` join the distinct values with ``+``. Raises
    when the tables' image sizes or group names differ, or when tables and arrays are mixed.
    """
    return _join(Xs, "join")


def _check_pair(where: str, X, y, label: str) -> None:
    if len(X) != len(y):
        raise _fail(where, f"y_{label}", f"{len(y)} labels", f"one per row of X_{label} ({len(X)})")


def _check_table_labels(where: str, X, y, s, label: str) -> None:
    """An ImageTable carries its own targets and groups into the joined result: ``y`` must be its
    targets and ``s`` (if given) one of its groups."""
    if not np.array_equal(metrics.as_numpy(y), X.targets):
        raise _fail(where, f"y_{label}", f"labels differing from X_{label}.y",
                    f"the table's own targets (X_{label}.y), which the result carries")
    if s is not None and X.groups and not any(np.array_equal(metrics.as_numpy(s), g)
                                              for g in X.groups.values()):
        raise _fail(where, f"s_{label}", f"values matching none of X_{label}'s groups "
                    f"{sorted(X.groups)}", f"one of the table's groups (X_{label}.groups[...])")


def _check_samples(where: str, X_real, X_syn) -> bool:
    """True when both are ImageTables (checked joinable); else check the sample shapes."""
    if isinstance(X_real, ImageTable) or isinstance(X_syn, ImageTable):
        _check_tables(where, [X_real, X_syn], "X_syn")
        return True
    if tuple(X_real.shape[1:]) != tuple(X_syn.shape[1:]):
        raise _fail(where, "X_syn", f"samples of shape {tuple(X_syn.shape[1:])}",
                    f"the sample shape of X_real, {tuple(X_real.shape[1:])}")
    return False


def supplement(X_real, y_real, X_syn, y_syn):
    """Data supplementation (Table 3, after Shin et al.): the real training set followed by the
    synthetic one, for co-training from scratch. Returns ``(X, y)`` (torch if all inputs are
    tensors, else numpy).

    ``X_real`` and ``X_syn`` may both be ImageTables (the ``paper`` profile's on-disk data): ``X``
    is then their :func:`join`, and ``y_real``/``y_syn`` must be the tables' own targets."""
    where = "supplement"
    _check_pair(where, X_real, y_real, "real")
    _check_pair(where, X_syn, y_syn, "syn")
    if _check_samples(where, X_real, X_syn):
        _check_table_labels(where, X_real, y_real, None, "real")
        _check_table_labels(where, X_syn, y_syn, None, "syn")
    return _join([X_real, X_syn], where), _concat([y_real, y_syn])


def repair(X_real, y_real, s_real, X_syn, y_syn, s_syn, seed: int = 0):
    """Data repairing (Table 3, after D'Incà et al. / Ye-Bin et al.): add synthetic samples of each
    (y, s) cell, drawn without replacement, until every cell has as many samples as the largest
    real cell. Returns ``(X, y, s)``: the real samples first, then the added synthetic ones cell by
    cell (torch if all inputs are tensors, else numpy). Raises naming the cell whose synthetic pool
    is too small.

    ``X_real`` and ``X_syn`` may both be ImageTables: ``X`` is then the :func:`join` of ``X_real``
    and the drawn rows of ``X_syn`` (the same rows as for arrays); ``y``/``s`` must be the tables'
    own targets and one of their groups."""
    where = "repair"
    _check_pair(where, X_real, y_real, "real")
    _check_pair(where, X_syn, y_syn, "syn")
    if len(s_real) != len(X_real):
        raise _fail(where, "s_real", f"{len(s_real)} values", f"one per row of X_real ({len(X_real)})")
    if len(s_syn) != len(X_syn):
        raise _fail(where, "s_syn", f"{len(s_syn)} values", f"one per row of X_syn ({len(X_syn)})")
    tables = _check_samples(where, X_real, X_syn)
    yr, sr = metrics._binary(y_real, "y_real"), metrics._binary(s_real, "s_real")
    ys, ss = metrics._binary(y_syn, "y_syn"), metrics._binary(s_syn, "s_syn")
    if tables:
        _check_table_labels(where, X_real, y_real, s_real, "real")
        _check_table_labels(where, X_syn, y_syn, s_syn, "syn")
    counts = {c: int(((yr == c[0]) & (sr == c[1])).sum()) for c in CELLS}
    target = max(counts.values())
    pools = {c: np.flatnonzero((ys == c[0]) & (ss == c[1])) for c in CELLS}
    for c in CELLS:
        if len(pools[c]) < target - counts[c]:
            raise ValueError(f"{where}: cell (y={c[0]}, s={c[1]}) needs {target - counts[c]} "
                             f"synthetic samples to reach {target}, but the synthetic pool holds "
                             f"only {len(pools[c])}")
    rng = np.random.default_rng(seed)
    add = np.concatenate([rng.choice(pools[c], target - counts[c], replace=False) for c in CELLS])
    add = add.astype(np.int64)
    tensors = all(isinstance(a, torch.Tensor) for a in (X_real, y_real, s_real, X_syn, y_syn, s_syn))
    if tensors:
        def pick(a):
            return a[torch.as_tensor(add)]
    else:  # arrays (and tensors mixed with arrays) as numpy, ImageTables as ImageTables
        def pick(a):
            return a.subset(add) if isinstance(a, ImageTable) else metrics.as_numpy(a)[add]
    return (_join([X_real, pick(X_syn)], where), _concat([y_real, pick(y_syn)]),
            _concat([s_real, pick(s_syn)]))


# ------------------------------------------------------------------ the paper's data on disk
def _check_ratios(where: str, ratios) -> tuple[float, ...]:
    try:
        r = tuple(float(v) for v in ratios)
    except (TypeError, ValueError):
        r = ()
    if len(r) != 4 or any(not 0 <= v <= 1 for v in r) or abs(sum(r) - 1) > 1e-9:
        raise _fail(where, "ratios", ratios, "4 numbers in [0, 1] summing to 1, for the (y, s) "
                    "cells (0, 0), (0, 1), (1, 0), (1, 1)")
    return r


def context_cell_size(y, s, contexts, counts: Sequence[int]) -> int:
    """Images per (y, s) cell that :func:`context_rows` can draw for every number of contexts in
    ``counts``: the smallest (cell, context) group of the pool bounds a one-context draw, and the size
    is rounded down to a multiple of every count so that each context gets an equal share."""
    where = "context_cell_size"
    if not counts or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in counts):
        raise _fail(where, "counts", counts, "a non-empty list of integers >= 1")
    y, s, contexts = (np.asarray(v) for v in (y, s, contexts))
    smallest = min(int(((y == yy) & (s == ss) & (contexts == k)).sum())
                   for yy, ss in CELLS for k in np.unique(contexts))
    step = math.lcm(*[int(c) for c in counts])
    n = smallest - smallest % step
    if n < 1:
        raise _fail(where, "pool", f"{smallest} images in its smallest (cell, context) group",
                    f"at least {step} (the lcm of counts) per group")
    return n


def context_rows(y, s, contexts, n_per_cell: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a balanced synthetic training set whose cells each cover ``count`` contexts
    (the analog of Table 5's number of prompts): per (y, s) cell, ``count`` of the contexts present
    are drawn at random and ``n_per_cell / count`` images of each, without replacement. Every count
    gives the same number of images per cell, so the sets differ only in how many contexts they
    span."""
    where = "context_rows"
    y, s, contexts = (np.asarray(v) for v in (y, s, contexts))
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1 or n_per_cell % count:
        raise _fail(where, "count", count, f"an integer >= 1 dividing n_per_cell ({n_per_cell})")
    out = []
    for yy, ss in CELLS:
        cell = (y == yy) & (s == ss)
        present = np.unique(contexts[cell])
        if count > len(present):
            raise _fail(where, "count", count, f"at most the {len(present)} contexts of cell ({yy}, {ss})")
        for k in rng.choice(present, count, replace=False):
            rows = np.flatnonzero(cell & (contexts == k))
            if len(rows) < n_per_cell // count:
                raise _fail(where, "n_per_cell", n_per_cell, f"at most {len(rows) * count} for cell "
                            f"({yy}, {ss}) (context {k} has {len(rows)} images)")
            out.append(rng.choice(rows, n_per_cell // count, replace=False))
    return np.concatenate(out).astype(np.int64)


def celeba_setting(root, target: str = "Smiling", protected: str = "Male", n_real: int = 20000,
                   ratios: Sequence[float] = AIM_FAIR_RATIOS, seed: int = 0,
                   image_size: int | None = 224) -> dict[str, tuple[ImageTable, np.ndarray, np.ndarray]]:
    """AIM-Fair's CelebA setting (§4.1), lazily on disk: the biased real training set D_R and the
    full validation and test partitions.

    Training: ``n_real`` images of the official train partition with exact (y, s) cell counts
    ``n_real × ratios`` (largest remainder, as :func:`fairbook.data.images.biased_cells`; default
    the paper's 1:9 bias, 1,000/9,000/9,000/1,000 of 20,000), drawn cell by cell in the order of
    :data:`CELLS`, without replacement, from ``np.random.default_rng([seed, 2])``, and kept in
    file order. Validation and test: the whole official partitions ("We report performance on the
    whole original test dataset").

    Parameters
    ----------
    root : the CelebA folder (see :func:`fairbook.data.fullscale.load_celeba`); None searches
        ``$FAIRBOOK_DATA`` and the cache.
    target, protected : CelebA attributes: y (default "Smiling") and s (default "Male").
    image_size : images are resized to this when read (224 for the paper's ResNet-18).

    Returns
    -------
    ``{"train": (X, y, s), "val": (X, y, s), "test": (X, y, s)}``: ``X`` an
    :class:`~fairbook.data.fullscale.ImageTable` (``X.groups[protected]`` is ``s``), ``y`` and
    ``s`` int64 arrays. Raises naming the cell when the train partition holds too few images.
    """
    from . import data

    where = "celeba_setting"
    ratios = _check_ratios(where, ratios)
    if isinstance(n_real, bool) or not isinstance(n_real, (int, np.integer)) or n_real < 1:
        raise _fail(where, "n_real", n_real, "a positive integer")

    def split(name):
        X = data.load("celeba", name, root=root, target=target, sensitive=protected,
                      image_size=image_size)
        return X, X.y, X.groups[protected]

    X, y, s = split("train")
    rows = cell_rows(y, s, cell_counts(int(n_real), ratios), np.random.default_rng([seed, 2]),
                     lambda c, k, have: ValueError(
                         f"{where}: cell (y={c[0]}, s={c[1]}) = ({target}={c[0]}, {protected}={c[1]}) "
                         f"needs {k} images for n_real={n_real}, ratios={ratios}, but the "
                         f"CelebA train partition has only {have}"))
    train_X = X.subset(np.sort(rows))
    out = {"train": (train_X, train_X.y, train_X.groups[protected])}
    out.update(val=split("val"), test=split("test"))
    return out


def _subset_cells(where: str, X: ImageTable, s: np.ndarray, counts, rng, what: str,
                  words) -> ImageTable:
    """Rows of ``X`` with ``counts[i]`` images of cell ``CELLS[i]`` (labels ``X.y``, ``s``),
    drawn cell by cell without replacement from ``rng`` and kept in file order; raises naming the
    cell (``words(y, s)``) when ``X`` holds too few."""
    rows = cell_rows(X.y, s, counts, rng, lambda c, k, have: ValueError(
        f"{where}: cell (y={c[0]}, s={c[1]}) = ({words(*c)}) needs {k} images {what}, but the "
        f"{X.name} {X.split} split has only {have}"))
    return X.subset(np.sort(rows))


def utkface_setting(root, n_real: int = 10000, ratios: Sequence[float] = AIM_FAIR_RATIOS,
                    n_test: int = 3200, seed: int = 0,
                    image_size: int | None = 224) -> dict[str, tuple[ImageTable, np.ndarray, np.ndarray]]:
    """AIM-Fair's UTKFace setting (§4.1, Table 3's UTKFace columns "T: Female; P: White"), lazily on
    disk: y = gender (1 = Female, 0 = Male), s = **1 for White**, 0 for non-White ("a binary
    spurious attribute 'Ethnicity' based on whether the facial image is white or not").

    UTKFace has no official split: :func:`fairbook.data.fullscale.load_utkface`'s seeded 60/20/20
    train/val/test split of the valid files is used (its own seed, 0, independent of ``seed``).
    Note that loader's binary ``race`` group is 0 for White; here it is flipped, and the tables
    carry it as ``X.groups["White"]`` (``group_names["White"] == ("non-White", "White")``), so that
    the (y, s) cells (0, 0), (0, 1), (1, 0), (1, 1) of :data:`CELLS` are Male non-White, Male White,
    Female non-White, Female White. Pass ``protected_name="White"`` to :func:`synthetic_table` to
    :func:`join` synthetic data to these tables.

    Training: "a biased subset of 10,000 images, with the same bias degree as CelebA": ``n_real``
    images of the train split with exact (y, s) cell counts ``n_real × ratios`` (largest remainder;
    default 1:9, 500/4,500/4,500/500 of 10,000), drawn cell by cell in the order of :data:`CELLS`,
    without replacement, from ``np.random.default_rng([seed, 2])``, kept in file order (as
    :func:`celeba_setting`). Validation: the whole val split. Test: "a balanced and unbiased test
    dataset consisting of 3,200 images": ``n_test // 4`` images of each (y, s) cell of the test
    split, drawn likewise from ``np.random.default_rng([seed, 4])``; ``n_test=0`` keeps the whole
    test split (not balanced).

    Parameters
    ----------
    root : the UTKFace folder (see :func:`fairbook.data.fullscale.load_utkface`); None searches
        ``$FAIRBOOK_DATA`` and the cache.
    n_real : size of the biased training subset (positive).
    ratios : the training cells' shares, in the order of :data:`CELLS` (see :func:`bias_ratios`).
    n_test : size of the balanced test subset: 0 (the whole split) or a positive multiple of 4.
    image_size : images are resized to this when read (224 for the paper's ResNet-18).

    Returns
    -------
    ``{"train": (X, y, s), "val": (X, y, s), "test": (X, y, s)}``: ``X`` an
    :class:`~fairbook.data.fullscale.ImageTable` (``X.groups["White"]`` is ``s``), ``y`` and ``s``
    int64 arrays. Raises naming the cell when the train or test split holds too few images.
    """
    from . import data

    where = "utkface_setting"
    ratios = _check_ratios(where, ratios)
    if isinstance(n_real, bool) or not isinstance(n_real, (int, np.integer)) or n_real < 1:
        raise _fail(where, "n_real", n_real, "a positive integer")
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or n_test < 0 \
            or n_test % 4:
        raise _fail(where, "n_test", n_test, "0 (the whole test split) or a positive multiple of 4 "
                    "(n_test // 4 images per (y, s) cell)")

    def split(name):
        X = data.load("utkface", name, root=root, target="gender", sensitive="race",
                      image_size=image_size)
        white = (X.groups["race"] == 0).astype(np.int64)      # load_utkface: race 0 = White
        X = ImageTable(X.paths, X.targets, name=X.name, split=X.split, classes=X.classes,
                       groups={"White": white}, group_names={"White": ("non-White", "White")},
                       image_size=X.image_size, transform=X.transform, source=X.source,
                       skipped=X.skipped)
        return X, X.y, X.groups["White"]

    def words(yv, sv):
        return f"{('Male', 'Female')[yv]}, {('non-White', 'White')[sv]}"

    X, _, s = split("train")
    train_X = _subset_cells(where, X, s, cell_counts(int(n_real), ratios),
                            np.random.default_rng([seed, 2]), f"for n_real={n_real}, ratios={ratios}",
                            words)
    out = {"train": (train_X, train_X.y, train_X.groups["White"]), "val": split("val")}
    X, _, s = split("test")
    if n_test:
        X = _subset_cells(where, X, s, [int(n_test) // 4] * 4, np.random.default_rng([seed, 4]),
                          f"for a balanced test set of n_test={n_test}", words)
    out["test"] = (X, X.y, X.groups["White"])
    return out


def synthetic_table(path, image_size: int | None = 224,
                    protected_name: str = "s") -> tuple[ImageTable, np.ndarray, np.ndarray]:
    """A Stable Diffusion layout written by :func:`fairbook.generative.sd.generate_cells` as a lazy
    :class:`~fairbook.data.fullscale.ImageTable` (AIM-Fair §3.1: the synthetic fine-tuning data).

    Labels come from the layout's manifest (``sd.load_cells(path, images=False)``): the targets
    ``y`` and the protected attribute as ``X.groups[protected_name]``; pass the real table's group
    name (e.g. ``"Male"``) to :func:`join` the two. ``classes``/``group_names`` are the cells'
    words. Returns ``(X, y, s)``.
    """
    from .generative import sd

    cells = sd.load_cells(path, images=False)

    def words(label, attr):
        by = {getattr(c, label): getattr(c, attr) for c in cells.cells}
        return tuple(by.get(i, str(i)) for i in range(max(by, default=1) + 1))

    X = ImageTable(cells.paths, cells.y, name="synthetic", split="train",
                   classes=words("y", "target"), groups={protected_name: cells.a},
                   group_names={protected_name: words("a", "protected")}, image_size=image_size,
                   source=str(cells.root or path))
    return X, X.y, X.groups[protected_name]


# ------------------------------------------------------------------------------ evaluation
def evaluate(model: nn.Module, X, y=None, s=None, device="auto",
             batch_size: int = 4096) -> dict[str, float]:
    """AIM-Fair's table columns for one model (threshold 0.5 on a single logit, else argmax):
    ``acc``; the four cell accuracies ``acc_y{y}_s{s}``; ``wst`` (eq. 10, min over the four
    cells); ``eo`` (eq. 9, (ΔTPR + ΔFPR)/2, in [0, 1]: the definition, also the authors' code);
    ``eo_max`` (max(ΔTPR, ΔFPR), :func:`fairbook.metrics.equalized_odds_max`: what the EO values
    printed in the paper's tables match, e.g. Table 5); ``std`` (population std of the four
    cells). Fractions, not percent. ``X`` may be a Dataset yielding ``(x, y, index)``; ``y``
    then defaults to its ``y`` attribute. ``s`` is the binary protected attribute; for an
    ImageTable with a single group it defaults to that group."""
    where = "evaluate"
    if y is None:
        y = getattr(X, "y", None)
        if y is None:
            raise _fail(where, "y", None, "labels (or X a Dataset with a 'y' attribute)")
    if s is None and isinstance(X, ImageTable) and len(X.groups) == 1:
        s = next(iter(X.groups.values()))
    if s is None:
        raise _fail(where, "s", None, "the binary protected attribute of every sample")
    if not (len(X) == len(y) == len(s)):
        raise _fail(where, "y, s", f"lengths {len(y)}, {len(s)}", f"one per sample of X ({len(X)})")
    logits = train.logits_of(model, X, batch_size=batch_size, device=device)
    pred = train.predict(logits).numpy()
    cells = metrics.cell_accuracies(y, pred, s)
    out = {"acc": metrics.accuracy(y, pred)}
    out.update({f"acc_y{a}_s{b}": float(cells[a, b]) for a, b in CELLS})
    out.update(wst=metrics.worst_group_accuracy(y, pred, s), eo=metrics.equalized_odds_mean(y, pred, s),
               eo_max=metrics.equalized_odds_max(y, pred, s), std=metrics.group_accuracy_std(y, pred, s))
    return out


def aggregate(rows, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean over seeds per setting, in the authors' order of operations.

    ``rows``: records (dicts or a DataFrame) holding the :data:`METRICS` of :func:`evaluate` and
    the setting columns (default ``by``: every column except the metrics and ``seed``). Per
    setting: ``acc``, ``eo``, ``eo_max`` and the four cell accuracies are averaged over seeds; ``wst`` and
    ``std`` are then recomputed from the seed-averaged cell accuracies
    (:func:`fairbook.metrics.aggregate_cell_accuracies`), not averaged. ``n_seeds`` counts rows.
    """
    where = "aggregate"
    df = pd.DataFrame(rows).reset_index(drop=True)
    if df.empty:
        raise _fail(where, "rows", "no rows", "one record per (setting, seed)")
    missing = [m for m in ("acc", "eo", "eo_max", *_CELL_KEYS) if m not in df]
    if missing:
        raise _fail(where, "rows", f"records without {missing}", "the keys of aimfair.evaluate")
    if by is None:
        by = [c for c in df.columns if c not in METRICS and c != "seed"]
    else:
        by = list(by)
        unknown = [c for c in by if c not in df]
        if unknown:
            raise _fail(where, "by", unknown, f"columns of rows: {', '.join(map(str, df.columns))}")
    groups = df.groupby(by, sort=False, dropna=False) if by else [((), df)]
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        cells = g[list(_CELL_KEYS)].to_numpy(float).reshape(-1, 2, 2)
        agg = metrics.aggregate_cell_accuracies(cells)
        row = dict(zip(by, key))
        row.update(n_seeds=len(g), acc=float(g["acc"].mean()))
        row.update({c: float(agg["cells"][a, b]) for c, (a, b) in zip(_CELL_KEYS, CELLS)})
        row.update(wst=agg["wst"], eo=float(g["eo"].mean()), eo_max=float(g["eo_max"].mean()),
                   std=agg["std"])
        out.append(row)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------ the chapter's runner hooks
_FRACTION_PARAMS = ("top_k", "topk_sweep", "random_fractions", "real_fractions")
_LIST_PARAMS = ("channels", "topk_sweep", "syn_bias_sweep", "syn_amounts", "random_fractions",
                "context_bins", "ft_lrs", "real_fractions", "context_counts")
_SMALL_MODELS = ("cnn", "narrow-resnet18")  #: networks for the 28x28 datasets
_SMALL_DATASETS = ("colored-mnist", "colored-fashion-mnist")
_FACE_DATASETS = ("celeba", "utkface")  #: the paper's datasets (§4.1), read from disk, fine-tuned on SD images


def check_parameters(values: dict) -> None:
    """Conditions on the AIM-Fair chapter's parameters, checked before any kernel starts
    (:mod:`fairbook.book.runner`); raises :class:`fairbook.errors.ParameterError` naming the parameter.
    Only the keys present in ``values`` are checked.

    ``real_bias``, ``test_bias`` and every ``syn_bias_sweep`` entry must parse with :func:`bias_ratios`; ``top_k``
    and every ``topk_sweep`` / ``random_fractions`` entry lie in (0, 1] (shares of the parameter
    tensors, :func:`k_for_fraction`); the list parameters are non-empty; ``dataset='celeba'`` and
    ``dataset='utkface'`` need ``sd_images`` (the synthetic fine-tuning data) and, with
    ``model='resnet18'``, ``weights`` (the paper fine-tunes an ImageNet-pretrained ResNet-18);
    ``model='cnn'`` and ``'narrow-resnet18'`` are for the 28×28 datasets, not for CelebA or UTKFace.
    """
    from .errors import ParameterError

    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'aimfair': {msg}; got {values[name]!r}")

    for name in _LIST_PARAMS:
        if name in values and len(values[name]) == 0:
            bad(name, "needs at least one value")
    ratio = "a minority:majority ratio 'a:b' with 0 <= a <= b and b > 0 (e.g. '1:9'; '1:1' is balanced)"
    for name in ("real_bias", "test_bias"):
        if name in values:
            try:
                bias_ratios(values[name])
            except ValueError:
                bad(name, f"must be {ratio}")
    for entry in values.get("syn_bias_sweep", []):
        try:
            bias_ratios(entry)
        except ValueError:
            bad("syn_bias_sweep", f"every entry must be {ratio}; {entry!r} is not")
    for name in _FRACTION_PARAMS:
        if name not in values:
            continue
        many = isinstance(values[name], (list, tuple))
        for f in values[name] if many else [values[name]]:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
                share = "a share of the parameter tensors in (0, 1] (0 selects none)"
                bad(name, f"every entry must be {share}; {f!r} is not" if many else f"must be {share}")
    dataset, model = values.get("dataset"), values.get("model")
    if dataset not in _FACE_DATASETS and "context_counts" in values and "context_bins" in values:
        n_contexts = int(np.prod(values["context_bins"]))
        over = [c for c in values["context_counts"] if not 1 <= c <= n_contexts]
        if over:
            bad("context_counts", f"every count must be between 1 and the generator's "
                f"{n_contexts} contexts (the product of context_bins {list(values['context_bins'])}); "
                f"{over} are not")
    if dataset in _FACE_DATASETS:
        if model in _SMALL_MODELS:
            bad("model", f"{model} is a network for the 28x28 datasets (" + ", ".join(_SMALL_DATASETS)
                + f"): use resnet18 for dataset={dataset!r}")
        if "sd_images" in values and not values["sd_images"]:
            bad("sd_images", f"dataset={dataset!r} fine-tunes on Stable Diffusion images: pass -p "
                "sd_images <folder written by fairbook.generative.sd.generate_cells>")
        if model == "resnet18" and "weights" in values and not values["weights"]:
            bad("weights", f"dataset={dataset!r} with model='resnet18' starts, as the paper, from an "
                "ImageNet-pretrained ResNet-18: pass -p weights <local ImageNet ResNet-18 checkpoint>")


def input_files(values: dict) -> dict[str, Path]:
    """Files besides the datasets that decide a run's result (fingerprinted by :mod:`fairbook.book.runner`):
    the manifests (:data:`fairbook.generative.sd.MANIFEST`, written last, so it marks a finished
    layout and lists every image with its prompt and seed) of ``sd_images`` and ``sd_plain_images``
    when ``dataset='celeba'`` or ``'utkface'`` reads them, and the ``weights`` file when
    ``model='resnet18'`` loads it; empty parameters are skipped. Relative paths are taken from the current directory. A path that
    does not exist raises :class:`fairbook.errors.ParameterError` naming the parameter."""
    from .generative import sd
    from .errors import ParameterError

    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'aimfair': {msg}; got {values[name]!r}")

    out: dict[str, Path] = {}
    if values.get("dataset") in _FACE_DATASETS:
        for name in ("sd_images", "sd_plain_images"):
            if values.get(name):
                manifest = Path(values[name]).expanduser().resolve() / sd.MANIFEST
                if not manifest.is_file():
                    bad(name, f"{manifest} does not exist: the folder must hold a finished layout of "
                        f"fairbook.generative.sd.generate_cells (its {sd.MANIFEST} is written last)")
                out[name] = manifest
    if values.get("model") == "resnet18" and values.get("weights"):
        path = Path(values["weights"]).expanduser().resolve()
        if not path.is_file():
            bad("weights", f"{path} is not a file: pass a local ImageNet ResNet-18 checkpoint "
                "(.safetensors or a state dict)")
        out["weights"] = path
    return out


def arrays(d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, s)`` of an in-memory coloured dataset (s = its colour group)."""
    return d.X.astype(np.float32), d.y.astype(np.int64), d.groups["color"].astype(np.int64)


def colored_setting(dataset: str, root, n_real: int, ratios: Sequence[float], seed: int) -> dict:
    """The chapter's setting on coloured digits / clothes: ``{"train", "val", "test"}`` as ``(X, y, s)``,
    ``"generator_pool"`` and ``"names"`` (class names, group names).

    The train split is halved: the biased real set D_R (cell ratios ``ratios``, ``n_real`` images) comes
    from one half, the generator's own training images from the other -- the paper's generator never
    saw the real training set.
    """
    from . import data as _data

    full = _data.load(dataset, "train", root=root, seed=seed, bias=0.5)
    half = np.random.default_rng([seed, 7]).permutation(len(full.y))
    real_half, gen_half = full.subset(np.sort(half[: len(half) // 2])), full.subset(np.sort(half[len(half) // 2:]))
    D_R = _data.images.biased_cells(real_half, "color", n_real, ratios, seed=np.random.default_rng([seed, 2]))
    return {"train": arrays(D_R),
            "val": arrays(_data.load(dataset, "val", root=root, seed=seed, bias=0.5)),
            "test": arrays(_data.load(dataset, "test", root=root, seed=seed, bias=0.5)),
            "generator_pool": gen_half, "names": (D_R.classes, D_R.group_names["color"])}


def draw_cells(X, y, s, ratios: Sequence[float], n: int, rng: np.random.Generator):
    """``n`` rows of a pool with the (y, s) cell shares ``ratios`` (:func:`cell_counts`), drawn
    without repeats cell by cell (:func:`cell_rows`, in cell order): S1 and S2 from the synthetic
    pool. Returns ``(X, y, s)``."""
    idx = cell_rows(y, s, cell_counts(n, ratios), rng)
    return take(X, idx), y[idx], s[idx]


def cell_grid(X, y, s, per_cell: int = 8) -> np.ndarray:
    """The images of a synthetic set laid out for ``imshow``: one row per (y, s) cell in
    :data:`CELLS` order, ``per_cell`` images spread evenly over the cell's rows; an (H·cells,
    W·per_cell, C) array clipped to [0, 1]. ``X``: (N, C, H, W) images or an image table."""
    y, s = np.asarray(y), np.asarray(s)
    rows = []
    for yy, ss in CELLS:
        idx = np.flatnonzero((y == yy) & (s == ss))
        if len(idx) == 0:
            raise ValueError(f"cell_grid: the cell (y={yy}, s={ss}) has no image")
        idx = idx[np.linspace(0, len(idx) - 1, per_cell).astype(int)]
        imgs = X[idx] if isinstance(X, np.ndarray) else np.stack([X[int(i)][0].numpy() for i in idx])
        rows.append(np.concatenate(list(imgs), axis=2))
    return np.clip(np.concatenate(rows, axis=1).transpose(1, 2, 0), 0, 1)


def subsample(X, y, s, n: int, rng: np.random.Generator, ratios: Sequence[float] | None = None):
    """``n`` rows of ``(X, y, s)`` drawn without replacement, kept in their order (all when n ≥ len,
    or ``n = 0``). ``ratios``: the (y, s) cell shares of the draw (e.g. ``bias_ratios("1:9")`` for a
    test split with the real set's bias), drawn cell by cell; ``n`` is lowered to the largest size the
    cells allow."""
    if ratios is None:
        if not n or n >= len(y):
            return X, y, s
        keep = np.sort(rng.choice(len(y), n, replace=False))
        return take(X, keep), y[keep], s[keep]
    ratios = _check_ratios("subsample", ratios)
    avail = [int(((y == yy) & (s == ss)).sum()) for yy, ss in CELLS]
    n = min(n or len(y), len(y), *[math.floor(a / r) for a, r in zip(avail, ratios) if r > 0])
    keep = np.sort(cell_rows(y, s, cell_counts(n, ratios), rng))
    return take(X, keep), y[keep], s[keep]
