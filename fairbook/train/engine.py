"""The one training engine of the book: :func:`fit`.

Data kept in memory as tensors is batched by indexing (no DataLoader, the fast path); a
``torch.utils.data.Dataset`` that yields ``(x, y, index)`` goes through a DataLoader. Samplers
(``sampler=``), the two group samplers needing ``groups`` = the sensitive attribute a:

* ``shuffle`` — a fresh permutation per pass over the data;
* ``group_balanced`` — every step draws ``batch_size / n_cells`` samples, with replacement, from
  each (a, y) cell: four cells for binary a and y (GCM's per-group batches, oversampling), any
  number for multi-class y or many-valued a;
* ``independent`` — the uniform resampling of Kamiran & Calders (2012, "Data preprocessing
  techniques for classification without discrimination", KAIS 33) as in dalex's
  ``resample(type="uniform")`` (Baniecki et al. 2021, JMLR 22) and GCM's ΔDP extension: every step
  draws ``batch_size * P(a) * P(y)`` samples, with replacement and uniformly within the cell, from
  each (a, y) cell (P the training marginals), so a and y are independent in the batches and their
  marginals are kept. The counts are rounded by largest remainder to add up to ``batch_size``.

Hooks, all optional and free when unused:

* ``on_logits(logits, y, ids, epoch)`` — per-batch training logits with sample ids (AUM, HBR);
* ``extra_loss(model, batch) -> Tensor`` — a term added to the loss (GCM's regulariser); ``batch``
  is a dict with ``x``, ``y``, ``ids``, ``groups`` (the cell of each sample, if given) and ``logits``.
  If ``extra_loss`` has a ``batch_forward(model, x, y, groups) -> logits`` method, the engine takes the
  batch's logits from it instead of ``model(x)``: a term that needs a forward pass per group (GCM)
  then shares it with the main loss, and one backward serves both;
* ``trainable`` — names of the parameters to train, every other one frozen (AIM-Fair), and
  ``grad_masks`` — per-parameter tensors multiplied into gradients;
* ``on_epoch_end(epoch, model, row)`` — after the epoch's evaluation.

Model selection: after each epoch the model is evaluated on ``val`` and the state with the best
``select`` metric is restored at the end (``select=None``: keep the last epoch).
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from ..io import progress_enabled


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seeded(make_model: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make_model()`` with torch's global generator seeded first: reproducible initial weights."""
    torch.manual_seed(seed)
    return make_model()


@dataclass(frozen=True)
class Optim:
    """Optimiser spec: ``sgd`` (momentum, nesterov), ``adam`` or ``adamw``."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def build(self, params) -> torch.optim.Optimizer:
        if self.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                                   weight_decay=self.weight_decay)
        if self.name in ("adam", "adamw"):
            cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
            return cls(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        raise ValueError(f"optimiser must be one of sgd, adam, adamw, got {self.name!r}")


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule stepped once per epoch: ``none``, ``multistep`` (``milestones``,
    ``gamma``) or ``cosine`` (``t_max`` epochs, default the number of epochs, down to
    ``min_lr_factor`` times the initial learning rate)."""

    name: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    t_max: int | None = None
    min_lr_factor: float = 0.0

    def build(self, opt: torch.optim.Optimizer, epochs: int):
        if self.name == "none":
            return None
        if self.name == "multistep":
            return torch.optim.lr_scheduler.MultiStepLR(opt, list(self.milestones), gamma=self.gamma)
        if self.name == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=self.t_max or epochs, eta_min=self.min_lr_factor * opt.param_groups[0]["lr"])
        raise ValueError(f"schedule must be one of none, multistep, cosine, got {self.name!r}")


@dataclass
class FitResult:
    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_state: dict = field(repr=False, default_factory=dict)
    #: further (epoch, state) pairs kept by a caller's hook, keyed by the criterion they are best at
    other_best: dict = field(repr=False, default_factory=dict)


def as_tensor(a, dtype=None) -> torch.Tensor:
    """Tensor view of ``a``; float64 becomes float32 (the models' dtype)."""
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if dtype is None and t.dtype == torch.float64:
        dtype = torch.float32
    return t.to(dtype) if dtype is not None else t


def loss_fn(loss: str, class_weight=None):
    if loss == "ce":
        return nn.CrossEntropyLoss(weight=class_weight)
    if loss == "bce":
        bce = nn.BCEWithLogitsLoss()
        return lambda logits, y: bce(logits.squeeze(-1), y.float())
    raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}")


def _class_weight(class_weight, loss: str, device) -> torch.Tensor | None:
    """``class_weight`` as a tensor on ``device``, checked: one positive weight per class, CE only."""
    if class_weight is None:
        return None
    if loss != "ce":
        raise ValueError(f"class_weight needs loss='ce', got loss={loss!r}")
    w = torch.as_tensor(np.asarray(class_weight, dtype=np.float32), device=device)
    if w.ndim != 1 or not bool((w > 0).all()):
        raise ValueError(f"class_weight must be a vector of positive weights, got {w.tolist()}")
    return w


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class predictions: argmax, or ``logit > 0`` for a single-logit (BCE) model."""
    return (logits.squeeze(-1) > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)


def _inputs(X, batch_size: int):
    """Input batches of arrays/tensors, or of a Dataset yielding ``(x, y, index)``."""
    if isinstance(X, torch.utils.data.Dataset):
        for batch in torch.utils.data.DataLoader(X, batch_size=min(batch_size, 256), shuffle=False):
            yield batch[0]
    else:
        X = as_tensor(X)
        for i in range(0, len(X), batch_size):
            yield X[i:i + batch_size]


@torch.no_grad()
def logits_of(model: nn.Module, X, batch_size: int = 4096, device="auto") -> torch.Tensor:
    """Eval-mode logits for ``X`` (tensor/array, or a Dataset yielding ``(x, y, index)``), on CPU."""
    device = resolve_device(device)
    was = model.training
    model.eval()
    try:
        out = torch.cat([model(xb.to(device)).float().cpu() for xb in _inputs(X, batch_size)])
    finally:
        model.train(was)
    return out


def evaluate(model: nn.Module, X, y=None, metrics: Callable | None = None, batch_size: int = 4096,
             device="auto", **context) -> dict[str, float]:
    """``acc`` and ``loss``, plus ``metrics(y, logits, **context) -> dict`` if given (numpy inputs).
    For a Dataset ``X``, ``y`` defaults to its ``y`` attribute."""
    if y is None and not hasattr(X, "y"):
        raise ValueError("evaluate needs y unless X is a Dataset with a 'y' attribute")
    logits = logits_of(model, X, batch_size, device)
    y_t = as_tensor(X.y if y is None else y).long()
    loss = loss_fn("bce" if logits.shape[-1] == 1 else "ce")(logits, y_t).item()
    out = {"acc": (predict(logits) == y_t).float().mean().item(), "loss": loss}
    if metrics is not None:
        out.update(metrics(y_t.numpy(), logits.numpy(), **context))
    return out


SAMPLERS = ("shuffle", "group_balanced", "independent")


def _cells(y: torch.Tensor, a: torch.Tensor) -> list[torch.Tensor]:
    """Sample indices of every (a, y) cell, a then y ascending ((0, 0), (0, 1), (1, 0), (1, 1) for
    binary a, y); every pair of an observed a and an observed y must hold samples."""
    keys = [(ai, yi) for ai in torch.unique(a).tolist() for yi in torch.unique(y).tolist()]
    cells = [torch.nonzero((a == ai) & (y == yi)).squeeze(1) for ai, yi in keys]
    empty = [f"(a={ai}, y={yi})" for (ai, yi), c in zip(keys, cells) if len(c) == 0]
    if empty:
        raise ValueError(f"group samplers need samples in every (a, y) cell; empty: {empty}")
    return cells


def independent_counts(y, a, batch_size: int) -> list[int]:
    """Per-cell batch counts of ``sampler="independent"``: ``batch_size * P(a) * P(y)`` (Kamiran &
    Calders 2012) for the cells of :func:`_cells` in their order, rounded by largest remainder (ties
    to the earlier cell) so they add up to ``batch_size``; computed in exact integer arithmetic."""
    a, y = as_tensor(a).long(), as_tensor(y).long()
    n2 = len(y) ** 2
    num = [batch_size * int(na) * int(ny) for na in torch.unique(a, return_counts=True)[1]
           for ny in torch.unique(y, return_counts=True)[1]]      # batch_size P(a) P(y) = num / n²
    counts = [k // n2 for k in num]
    for i in sorted(range(len(num)), key=lambda i: -(num[i] % n2))[:batch_size - sum(counts)]:
        counts[i] += 1
    return counts


def _shuffle_order(n: int, steps: int, batch_size: int, gen: torch.Generator,
                   fill: bool) -> torch.Tensor:
    """One epoch's sample order of ``sampler="shuffle"``: a fresh permutation per pass over the
    ``n`` samples, as many passes as ``steps`` full batches need (``fill``, i.e. ``steps_per_epoch``
    given) or one; the epoch's batches are its consecutive slices of ``batch_size``."""
    passes = max(1, math.ceil(steps * batch_size / n)) if fill else 1
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])


class _BatchSampler:
    """``steps`` index batches per epoch, the DataLoader's ``batch_sampler``: each from ``draw()``
    (group samplers), or the consecutive ``batch_size`` slices of ``order()``, drawn once at the
    start of every epoch (``sampler="shuffle"`` with ``steps_per_epoch``)."""

    def __init__(self, steps: int, draw: Callable[[], torch.Tensor] | None = None,
                 order: Callable[[], torch.Tensor] | None = None, batch_size: int = 0):
        if (draw is None) == (order is None):
            raise ValueError("_BatchSampler takes exactly one of draw and order")
        self.steps, self.draw, self.order, self.batch_size = steps, draw, order, batch_size

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        if self.draw is not None:
            return (self.draw().tolist() for _ in range(self.steps))
        perm, b = self.order(), self.batch_size
        return (perm[s * b:(s + 1) * b].tolist() for s in range(self.steps))


def _check_fit(epochs: int, batch_size: int, sampler: str, mode: str, select: str | None, val) -> None:
    """``fit``'s checks of its scalar arguments."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}, got {sampler!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if select is not None and val is None:
        raise ValueError(f"select={select!r} needs a validation set (val=...); use select=None")


def _training_labels(X, y, groups):
    """``(labels, n_data, a)`` of the training data: the labels (in-memory ``y``, or a Dataset's ``y``
    or ``targets`` attribute, else None), the number of samples and ``groups`` as a tensor (or None)."""
    in_memory = not isinstance(X, torch.utils.data.Dataset)
    labels = as_tensor(y).long() if in_memory else getattr(X, "y", getattr(X, "targets", None))
    n_data = len(labels) if in_memory else len(X)
    a_t = as_tensor(groups).long() if groups is not None else None
    if a_t is not None and len(a_t) != n_data:
        raise ValueError(f"groups has {len(a_t)} entries, the training data {n_data} samples")
    return labels, n_data, a_t


def _sampler_cells(sampler: str, labels, a_t, batch_size: int, X) -> tuple[list | None, list | None]:
    """The (a, y) cells of a group sampler and the samples each step draws from each of them
    (``(None, None)`` for ``shuffle``)."""
    if sampler == "shuffle":
        return None, None
    if a_t is None:
        raise ValueError(f"sampler={sampler!r} needs groups= (the sensitive attribute a of "
                         f"every training sample)")
    if labels is None:
        raise ValueError(f"sampler={sampler!r} reads a Dataset's labels from its 'y' or "
                         f"'targets' attribute; {type(X).__name__} has neither")
    cells = _cells(as_tensor(labels).long(), a_t)
    if sampler == "independent":
        return cells, independent_counts(labels, a_t, batch_size)
    if batch_size % len(cells):
        raise ValueError(f"group-balanced batches take batch_size/{len(cells)} from each of "
                         f"the {len(cells)} (a, y) cells: batch_size must be a multiple of "
                         f"{len(cells)}, got {batch_size}")
    return cells, [batch_size // len(cells)] * len(cells)


def _set_trainable(model: nn.Module, trainable: set[str] | None,
                   grad_masks: dict[str, torch.Tensor] | None) -> tuple[dict, dict[str, bool]]:
    """Check ``grad_masks`` and ``trainable`` against the model's parameters and freeze every
    parameter not in ``trainable``; returns the parameters by name and their previous
    ``requires_grad`` flags (for :func:`_restore_trainable`)."""
    names = dict(model.named_parameters())
    flags_before = {n: p.requires_grad for n, p in names.items()}
    for n, m in (grad_masks or {}).items():
        if n not in names:
            raise ValueError(f"grad_masks names an unknown parameter {n!r}")
        if tuple(m.shape) != tuple(names[n].shape):
            raise ValueError(f"grad mask of {n!r} has shape {tuple(m.shape)}, the parameter "
                             f"{tuple(names[n].shape)}")
    if trainable is not None:
        unknown = set(trainable) - set(names)
        if unknown:
            raise ValueError(f"trainable names unknown parameters: {sorted(unknown)[:5]}")
        for n, p in names.items():
            p.requires_grad_(n in trainable)
    return names, flags_before


def _restore_trainable(names: dict, flags_before: dict[str, bool]) -> None:
    """Give the parameters their ``requires_grad`` flags from before ``fit``, so a later fit starts
    from the caller's own flags."""
    for n, p in names.items():
        p.requires_grad_(flags_before[n])


def _draw(cells: list[torch.Tensor], counts: list[int], gen: torch.Generator) -> torch.Tensor:
    """One group-sampled batch of indices, cell by cell (with replacement, uniform in each cell)."""
    return torch.cat([c[torch.randint(len(c), (k,), generator=gen)] for c, k in zip(cells, counts) if k])


def _memory_batches(X_t: torch.Tensor, y_t: torch.Tensor, draw: Callable[[], torch.Tensor] | None,
                    n_data: int, steps: int, batch_size: int, gen: torch.Generator, fill: bool):
    """One epoch's ``(x, y, ids)`` batches of in-memory data: group draws (``draw``), or for
    ``shuffle`` a fresh permutation per pass over the data, gathered once per epoch with the
    batches its views (much cheaper than a gather per step)."""
    if draw is None:
        perm = _shuffle_order(n_data, steps, batch_size, gen, fill=fill)
        Xp, yp = X_t[perm], y_t[perm]
        for s in range(steps):
            lo = s * batch_size
            yield Xp[lo:lo + batch_size], yp[lo:lo + batch_size], perm[lo:lo + batch_size]
    else:
        for _ in range(steps):
            idx = draw()
            yield X_t[idx], y_t[idx], idx


def _loader(X: torch.utils.data.Dataset, draw: Callable[[], torch.Tensor] | None, n_data: int, steps: int,
            batch_size: int, gen: torch.Generator, steps_per_epoch: int | None,
            num_workers: int) -> torch.utils.data.DataLoader:
    """The DataLoader of a Dataset: group draws (``draw``); for ``shuffle`` with one pass per
    epoch the shuffling DataLoader itself (its batch order kept as it was), with
    ``steps_per_epoch`` exactly that many batches, the same as the in-memory path draws."""
    if draw is not None:
        return torch.utils.data.DataLoader(X, batch_sampler=_BatchSampler(steps, draw=draw),
                                           num_workers=num_workers)
    if not steps_per_epoch:
        return torch.utils.data.DataLoader(X, batch_size=batch_size, shuffle=True, generator=gen,
                                           num_workers=num_workers, drop_last=False)
    return torch.utils.data.DataLoader(
        X, batch_sampler=_BatchSampler(steps, order=functools.partial(
            _shuffle_order, n_data, steps, batch_size, gen, fill=True), batch_size=batch_size),
        num_workers=num_workers)


def _loader_batches(loader: torch.utils.data.DataLoader):
    """One epoch of a DataLoader, iterated (and its sampler drawn) only when the epoch starts."""
    yield from loader


def _batch_source(X, labels: torch.Tensor | None, cells, counts, n_data: int, steps: int, batch_size: int,
                  gen: torch.Generator, steps_per_epoch: int | None, device: torch.device,
                  num_workers: int) -> Callable[[], Iterator]:
    """A callable giving each epoch's ``(x, y, ids)`` batches: in-memory tensors (moved to a CUDA
    device once) batched by indexing, or a Dataset through :func:`_loader`."""
    draw = None if cells is None else functools.partial(_draw, cells, counts, gen)
    if isinstance(X, torch.utils.data.Dataset):
        loader = _loader(X, draw, n_data, steps, batch_size, gen, steps_per_epoch, num_workers)
        return functools.partial(_loader_batches, loader)
    X_t, y_t = as_tensor(X), labels
    if device.type == "cuda":
        X_t, y_t = X_t.to(device), y_t.to(device)
    return functools.partial(_memory_batches, X_t, y_t, draw, n_data, steps, batch_size, gen,
                             bool(steps_per_epoch))


@dataclass
class _Trainer:
    """What one training step of ``fit`` needs: the model, optimiser, loss and hooks."""

    model: nn.Module
    opt: torch.optim.Optimizer
    criterion: Callable
    masks: dict
    device: torch.device
    gen: torch.Generator
    augment: Callable | None
    groups: torch.Tensor | None
    extra_loss: Callable | None
    on_logits: Callable | None
    #: ``extra_loss.batch_forward`` if it has one: the batch's logits come from it instead of ``model(x)``
    shared_forward: Callable | None = field(init=False, default=None)

    def __post_init__(self):
        self.shared_forward = getattr(self.extra_loss, "batch_forward", None)

    def step(self, xb: torch.Tensor, yb: torch.Tensor, ids: torch.Tensor, epoch: int) -> tuple[torch.Tensor, int]:
        """One optimiser step on a batch (augment, forward, loss, backward, grad masks); returns
        the batch's loss and size."""
        xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
        if self.augment is not None:
            xb = self.augment(xb, self.gen)
        extra_loss, shared_forward = self.extra_loss, self.shared_forward
        cell = self.groups[ids] if extra_loss is not None and self.groups is not None else None
        logits = self.model(xb) if shared_forward is None else shared_forward(self.model, xb, yb, cell)
        batch_loss = self.criterion(logits, yb)
        if extra_loss is not None:
            batch_loss = batch_loss + extra_loss(self.model, {"x": xb, "y": yb, "ids": ids,
                                                              "groups": cell, "logits": logits})
        self.opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        for p, m in self.masks.items():
            if p.grad is not None:
                p.grad.mul_(m)
        self.opt.step()
        if self.on_logits is not None:
            self.on_logits(logits.detach(), yb, ids, epoch)
        return batch_loss, len(yb)

    def epoch(self, batches: Iterator, epoch: int) -> dict:
        """One training epoch over ``batches``; the history row ``epoch``, ``train_loss`` (the
        sample-weighted mean batch loss) and ``lr`` (the learning rate it was trained with)."""
        self.model.train()
        total = torch.zeros((), device=self.device)
        seen = 0
        for xb, yb, ids in batches:
            batch_loss, n = self.step(xb, yb, ids, epoch)
            total += batch_loss.detach() * n
            seen += n
        return {"epoch": epoch, "train_loss": (total / max(seen, 1)).item(),
                "lr": self.opt.param_groups[0]["lr"]}


def _val_scores(model: nn.Module, val: tuple, val_metrics: Callable | None, val_context: dict | None,
                device: torch.device) -> dict[str, float]:
    """The epoch's :func:`evaluate` on ``val = (X_val, y_val)``, as ``val_``-prefixed history entries."""
    res = evaluate(model, val[0], val[1], val_metrics, device=device, **(val_context or {}))
    return {f"val_{k}": v for k, v in res.items()}


def _improves(score, best, mode: str) -> bool:
    """True when the validation ``score`` beats ``best`` (``None``: no score yet) in ``mode``
    (``max`` / ``min``); a NaN score never does."""
    better = best is None or (score > best if mode == "max" else score < best)
    return better and not (isinstance(score, float) and math.isnan(score))


def fit(model: nn.Module, X, y, *, epochs: int, batch_size: int = 128, optim: Optim = Optim(),
        schedule: Schedule = Schedule(), loss: str = "ce", val: tuple | None = None,
        val_metrics: Callable | None = None, val_context: dict | None = None,
        select: str | None = "acc", mode: str = "max", sampler: str = "shuffle",
        groups=None, steps_per_epoch: int | None = None, augment: Callable | None = None,
        on_logits: Callable | None = None, extra_loss: Callable | None = None,
        class_weight=None, trainable: set[str] | None = None, grad_masks: dict[str, torch.Tensor] | None = None,
        on_epoch_end: Callable | None = None, device="auto", seed: int = 0,
        num_workers: int = 0, desc: str = "fit") -> FitResult:
    """Train ``model``; see the module docstring. ``X, y`` are arrays/tensors, or ``X`` is a
    ``torch.utils.data.Dataset`` yielding ``(x, y, index)`` and ``y`` is ignored (the group samplers
    read the labels from its ``y`` or ``targets`` attribute).

    ``val = (X_val, y_val)`` is evaluated after every epoch (``acc``, ``loss`` and ``val_metrics``);
    the state with the best ``select`` (``mode`` max/min) is restored at the end. ``sampler``:
    ``shuffle``, ``group_balanced`` (``batch_size`` a multiple of the number of (a, y) cells) or
    ``independent`` (module docstring). ``groups``: the sensitive attribute a of every training
    sample (integer values; aligned with a Dataset's indices), passed to ``extra_loss`` as
    ``batch["groups"]``; needed by the group samplers. ``steps_per_epoch`` defaults to one pass over
    the data (``ceil(n / batch_size)`` batches, the last one possibly smaller); given, every epoch
    runs exactly that many batches, for ``shuffle`` full ones cut from as many fresh permutations as
    they need (the same batches for in-memory data and a Dataset). Deterministic for ``seed`` on the
    CPU. ``class_weight`` (one positive weight per class, ``loss="ce"``) weights each sample's loss
    by its class's weight, normalised per batch by the batch's total weight (torch's weighted
    ``CrossEntropyLoss``).
    """
    _check_fit(epochs, batch_size, sampler, mode, select, val)
    labels, n_data, a_t = _training_labels(X, y, groups)
    cells, counts = _sampler_cells(sampler, labels, a_t, batch_size, X)
    device = resolve_device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)

    names, flags_before = _set_trainable(model, trainable, grad_masks)
    masks = {names[n]: m.to(device) for n, m in (grad_masks or {}).items()}
    opt = optim.build([p for p in model.parameters() if p.requires_grad])
    sched = schedule.build(opt, epochs)
    criterion = loss_fn(loss, _class_weight(class_weight, loss, device))
    steps = steps_per_epoch or math.ceil(n_data / batch_size)
    batches = _batch_source(X, labels, cells, counts, n_data, steps, batch_size, gen, steps_per_epoch,
                            device, num_workers)
    trainer = _Trainer(model, opt, criterion, masks, device, gen, augment, a_t, extra_loss, on_logits)

    rows, best, best_state, best_epoch = [], None, None, epochs
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress_enabled(), leave=False)
    for epoch in bar:
        row = trainer.epoch(batches(), epoch)
        if sched is not None:
            sched.step()
        if val is not None:
            row.update(_val_scores(model, val, val_metrics, val_context, device))
            if select is not None and _improves(row[f"val_{select}"], best, mode):
                best, best_epoch = row[f"val_{select}"], epoch
                best_state = copy.deepcopy(model.state_dict())
        rows.append(row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, row)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}")
    _restore_trainable(names, flags_before)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_state = model.state_dict()
    return FitResult(model, pd.DataFrame(rows), best_epoch, best_state)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch: reflect-pad by ``pad``, random crop, random h-flip."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)
