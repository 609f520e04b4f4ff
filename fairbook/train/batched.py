"""K same-shaped models trained as one: :func:`fit_many`, the batched path of the training engine.

``fit_many(models, datasets, seeds=..., **kw)`` gives the results of
``[train.fit(m, X, y, seed=s, **kw) for m, (X, y), s in zip(models, datasets, seeds)]`` to float
tolerance, in one training loop: the models' parameters are stacked along a new first dimension
(:func:`torch.func.stack_module_state`) and one :func:`torch.func.vmap`-ed
:func:`torch.func.functional_call` runs the K forward passes of a step; one backward gives the K
gradients (the loss is the sum of the K models' own losses, so model k's gradient is that of its own
loss). Every model keeps what a separate ``fit`` gives it:

* its own training set (any size: models that run out of batches sit still, masked, until the epoch
  ends), its own batch order and seed (a generator per model, drawn exactly as ``fit`` draws it);
* its own optimizer state and step count (SGD with momentum / Nesterov, Adam, AdamW written
  elementwise over the stacked tensors, the formulas of ``torch.optim``), the learning rate of the
  shared schedule;
* its own validation scores every epoch and its own selected epoch (``select``, ``mode``).

Per-step overhead, not arithmetic, is what small models cost on a CPU; K models in one step pay it
once (``benchmarks/batched.py`` measures the ratio). On a GPU it is what keeps the device busy.

Not batched: ``Dataset`` inputs and models with active dropout (vmap's random masks differ from K
separate fits) are trained one by one with :func:`fairbook.train.fit` (``batched="auto"``);
``extra_loss`` (GCM's double backward), ``trainable`` / ``grad_masks`` and the group samplers are not
arguments here: those fits call :func:`fairbook.train.fit`.

"To float tolerance": each step's arithmetic equals a separate fit's up to summation order. Training
is a chaotic map in places, though: a pre-activation that sits exactly at a ReLU's kink in one run
and 1e-8 away in the other lets a gradient through in one of them, and Adam (scale-free) turns that
into a step of size lr for a unit that was otherwise silent. The tests use cases without such
ties; ``benchmarks/batched.py`` reports the largest parameter difference on the chapters' workloads.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from ..io import progress_enabled
from . import engine as train
from .engine import (FitResult, Optim, Schedule, as_tensor, _class_weight, _improves, loss_fn, _shuffle_order, predict,
                     resolve_device)


def _per_model(value, K: int, name: str) -> list:
    """A per-model list from one value shared by all K models or a list of K."""
    if isinstance(value, (list, tuple)) and not (name == "val" and _is_pair(value)):
        if len(value) != K:
            raise ValueError(f"{name} has {len(value)} entries for {K} models")
        return list(value)
    return [value] * K


def _is_pair(v) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and not isinstance(v[0], tuple)


def _batchable(models, datasets) -> bool:
    try:
        _check_models(models)
    except ValueError:
        return False
    return not any(isinstance(X, torch.utils.data.Dataset) for X, _ in datasets)


def _one_by_one(models, datasets, seeds, val, on_logits, on_epoch_end, kw) -> list[FitResult]:
    """The K separate fits that :func:`fit_many` stands for."""
    K = len(models)
    if val is None and kw["select"] is not None:
        raise ValueError(f"select={kw['select']!r} needs a validation set (val=...); use select=None")
    vals, hooks, ends = (_per_model(v, K, n) for v, n in ((val, "val"), (on_logits, "on_logits"),
                                                          (on_epoch_end, "on_epoch_end")))
    return [train.fit(m, X, y, seed=int(s), val=v, on_logits=h, on_epoch_end=e, **kw)
            for m, (X, y), s, v, h, e in zip(models, datasets, seeds, vals, hooks, ends)]


def _check_models(models: Sequence[nn.Module]) -> None:
    if not models:
        raise ValueError("fit_many needs at least one model")
    shapes = [[(n, tuple(p.shape)) for n, p in m.state_dict().items()] for m in models]
    for k, s in enumerate(shapes[1:], 1):
        if type(models[k]) is not type(models[0]) or s != shapes[0]:
            raise ValueError(f"fit_many trains models of one architecture; model {k} "
                             f"({type(models[k]).__name__}) differs from model 0 ({type(models[0]).__name__})")
    active = [m for m in models[0].modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    if active:
        raise ValueError("fit_many cannot batch models with dropout (vmap draws other masks than K "
                         "separate fits); use train.fit")


class _Stepper:
    """SGD (momentum, Nesterov) / Adam / AdamW on the (K, P) stack of every model's parameters,
    torch.optim's single-tensor update in place; each model keeps its own moments and step count.
    ``active`` (K bools, for the steps where some models have no batch left) leaves the other models'
    parameters and state untouched."""

    def __init__(self, optim: Optim, K: int):
        if optim.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {optim.lr}")
        if optim.name not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimiser must be one of sgd, adam, adamw, got {optim.name!r}")
        self.o = optim
        self.t = np.zeros(K, dtype=np.int64)
        self.m = self.v = self.buf = None

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor, lr: float, active: torch.Tensor | None = None) -> None:
        if active is None:
            self.t += 1
            self._update(p, g, lr)
            return
        off = ~active
        kept = [t[off].clone() for t in (p, self.m, self.v, self.buf) if t is not None]
        self.t += active.cpu().numpy()
        self._update(p, g, lr)
        for t, old in zip([t for t in (p, self.m, self.v, self.buf) if t is not None], kept):
            t[off] = old

    def _update(self, p: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        o = self.o
        if o.name == "sgd":
            if o.weight_decay:
                g = g.add(p, alpha=o.weight_decay)
            if o.momentum:
                # torch: the first step's buffer is the gradient itself (every model takes the first
                # step: each has at least one batch)
                self.buf = g.clone() if self.buf is None else self.buf.mul_(o.momentum).add_(g)
                g = g.add(self.buf, alpha=o.momentum) if o.nesterov else self.buf
            p.add_(g, alpha=-lr)
            return
        b1, b2 = o.betas
        if o.name == "adam" and o.weight_decay:
            g = g.add(p, alpha=o.weight_decay)
        if o.name == "adamw":
            p.mul_(1 - lr * o.weight_decay)
        if self.m is None:
            self.m, self.v = torch.zeros_like(p), torch.zeros_like(p)
        self.m.lerp_(g, 1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        t = np.maximum(self.t, 1)
        if (t == t[0]).all():  # torch's scalar bias corrections, in double precision
            step_size, bc2_sqrt = lr / (1 - b1 ** int(t[0])), (1 - b2 ** int(t[0])) ** 0.5
            p.addcdiv_(self.m, (self.v.sqrt() / bc2_sqrt).add_(1e-8), value=-step_size)
        else:
            step_size = torch.as_tensor(lr / (1 - b1 ** t), dtype=p.dtype, device=p.device)[:, None]
            bc2_sqrt = torch.as_tensor((1 - b2 ** t) ** 0.5, dtype=p.dtype, device=p.device)[:, None]
            p.sub_(step_size * self.m / (self.v.sqrt() / bc2_sqrt).add_(1e-8))


def _lrs(optim: Optim, schedule: Schedule, epochs: int) -> list[float]:
    """The learning rate of every epoch, from torch's own scheduler (as ``fit`` steps it)."""
    dummy = torch.zeros(1, requires_grad=True)
    opt = optim.build([dummy])
    sched = schedule.build(opt, epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        if sched is not None:
            opt.step()  # keeps torch from warning that the scheduler stepped before the optimiser
            sched.step()
    return out


def _check_batched(models, datasets, epochs: int, batch_size: int, mode: str, loss: str, select, val) -> None:
    """``fit_many``'s checks of a batched run (``fit``'s own checks, and in-memory data only)."""
    _check_models(models)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if loss not in ("ce", "bce"):
        raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}")
    if select is not None and val is None:
        raise ValueError(f"select={select!r} needs a validation set (val=...); use select=None")
    if any(isinstance(X, torch.utils.data.Dataset) for X, _ in datasets):
        raise ValueError("fit_many batches in-memory arrays/tensors; a Dataset goes through train.fit")


def _stack_data(datasets, device) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """One table of all the models' rows on ``device`` (a shared X is not copied): ``(X_all, y_all,
    offsets, ns)``, model k's rows ``offsets[k] .. offsets[k] + ns[k]``."""
    K = len(datasets)
    Xs = [as_tensor(X) for X, _ in datasets]
    ys = [as_tensor(y).long() for _, y in datasets]
    if any(X.shape[1:] != Xs[0].shape[1:] for X in Xs):
        raise ValueError("fit_many: every dataset needs the same input shape")
    ns = [len(y) for y in ys]
    if any(n < 1 or len(X) != n for X, n in zip(Xs, ns)):
        raise ValueError(f"fit_many: every dataset needs as many (>= 1) inputs as labels, got "
                         f"{[(len(X), len(y)) for X, y in zip(Xs, ys)]}")
    same = all(X is datasets[0][0] and y is datasets[0][1] for X, y in datasets)
    X_all = Xs[0] if same else torch.cat(Xs)
    y_all = ys[0] if same else torch.cat(ys)
    offsets = [0] * K if same else np.cumsum([0] + ns[:-1]).tolist()
    return X_all.to(device), y_all.to(device), offsets, ns


class _Stack:
    """The K models as one: their parameters in one (K, P) leaf ``flat`` (the optimiser's
    elementwise update is a handful of operations per step whatever the number of tensors), with
    ``params`` its per-tensor views (their gradients views of ``grad``: autograd accumulates in
    place), the stacked ``buffers``, and a copy ``base`` of model 0 run functionally, vmapped over
    the models (``batched``: one batch per model; ``shared_x``: one input for all)."""

    def __init__(self, models: Sequence[nn.Module]):
        K = self.K = len(models)
        self.base = copy.deepcopy(models[0])
        stacked, self.buffers = stack_module_state(list(models))
        self.shapes = {n: tuple(t.shape[1:]) for n, t in stacked.items()}
        self.flat = torch.cat([t.detach().reshape(K, -1) for t in stacked.values()], 1)
        self.grad = torch.zeros_like(self.flat)
        self.cuts = np.cumsum([0] + [math.prod(sh) for sh in self.shapes.values()]).tolist()
        self.params = {n: t.requires_grad_() for n, t in self.views(self.flat).items()}
        for p, g in zip(self.params.values(), self.views(self.grad).values()):
            p.grad = g
        _alias(models, self.views(self.flat), self.buffers)
        base = self.base

        def forward(p, b, x):  # one model's forward pass with parameters p and buffers b
            return functional_call(base, (p, b), (x,))

        # a closure over base, not a bound method: no reference cycle keeps the stack alive
        self.batched = vmap(forward, in_dims=(0, 0, 0))
        self.shared_x = vmap(forward, in_dims=(0, 0, None))

    def views(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every parameter's (K, *shape) view of the (K, P) tensor ``t``."""
        return {n: t[:, a:b].view(self.K, *sh)
                for (n, sh), a, b in zip(self.shapes.items(), self.cuts[:-1], self.cuts[1:])}

    def one(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Model k's logits of ``x`` alone."""
        return functional_call(self.base, ({n: t[k] for n, t in self.params.items()},
                                           {n: t[k] for n, t in self.buffers.items()}), (x,))

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """A copy of model k's parameters (key ``""``) and buffers."""
        return {n: t[k].detach().clone() for n, t in {"": self.flat, **self.buffers}.items()}

    @torch.no_grad()
    def load(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Put a :meth:`state` back into model k."""
        for n, t in {"": self.flat, **self.buffers}.items():
            t[k].copy_(state[n])


def _epoch_order(ns: list[int], steps: list[int], batch_size: int, gens: list[torch.Generator],
                 fill: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Every model's epoch order, drawn as ``fit`` draws it, rows padded to the longest model's full
    batches: ``order`` (K, S * batch_size) local ids and ``count`` (K, S), each step's batch size."""
    K, S = len(ns), max(steps)
    order = torch.zeros(K, S * batch_size, dtype=torch.long)
    count = torch.zeros(K, S, dtype=torch.long)
    for k in range(K):
        perm = _shuffle_order(ns[k], steps[k], batch_size, gens[k], fill=fill)
        perm = perm[:steps[k] * batch_size]
        order[k, :len(perm)] = perm
        full, rest = divmod(len(perm), batch_size)
        count[k, :full] = batch_size
        if rest:
            count[k, full] = rest
    return order, count


@dataclass
class _ManyTrainer:
    """What a training step of ``fit_many`` needs: the stacked models, their optimiser, the data
    table and the per-model generators and hooks."""

    stack: _Stack
    stepper: _Stepper
    X_all: torch.Tensor
    y_all: torch.Tensor
    offsets: list[int]
    batch_size: int
    augment: Callable | None
    gens: list[torch.Generator]
    bce: bool
    class_weight: torch.Tensor | None
    logit_hooks: list
    device: torch.device
    #: the models with an ``on_logits`` hook
    hooked: list[int] = field(init=False, default_factory=list)

    def __post_init__(self):
        self.hooked = [k for k, h in enumerate(self.logit_hooks) if h is not None]

    def full_step(self, xb: torch.Tensor, yb: torch.Tensor, ids: torch.Tensor):
        """Every model has a full batch: one vmapped forward; ``(losses, hook parts)``."""
        K = self.stack.K
        if self.augment is not None:  # each model's own generator, as fit interleaves it
            xb = torch.stack([self.augment(xb[k], self.gens[k]) for k in range(K)])
        logits = self.stack.batched(self.stack.params, self.stack.buffers, xb)      # (K, B, C)
        losses = _losses(logits, yb, self.bce, self.class_weight)
        return losses, [(k, logits[k], yb[k], ids[k]) for k in self.hooked]

    def ragged_step(self, xb: torch.Tensor, yb: torch.Tensor, ids: torch.Tensor, c: list[int]):
        """A ragged step (an epoch's last batch, or models out of batches): model by model, so
        padding never enters a batch statistic (BatchNorm); ``(losses, hook parts)``."""
        parts, per_k = [], []
        for k in range(self.stack.K):
            per_k.append(torch.zeros((), device=self.device))
            if c[k]:
                x_k = xb[k, :c[k]] if self.augment is None else self.augment(xb[k, :c[k]], self.gens[k])
                lg = self.stack.one(k, x_k)
                per_k[k] = _losses(lg[None], yb[k:k + 1, :c[k]], self.bce, self.class_weight)[0]
                if k in self.hooked:
                    parts.append((k, lg, yb[k, :c[k]], ids[k, :c[k]]))
        return torch.stack(per_k), parts

    def epoch(self, order: torch.Tensor, count: torch.Tensor, lr: float, epoch: int):
        """One epoch of every model over ``order`` / ``count`` (:func:`_epoch_order`); each model's
        summed loss and number of samples, ``(total, seen)``."""
        B, device, st = self.batch_size, self.device, self.stack
        order, count = order.to(device), count.to(device)
        offs = torch.as_tensor(self.offsets, device=device)[:, None]
        total = torch.zeros(st.K, device=device)
        seen = torch.zeros(st.K, device=device)
        for s in range(count.shape[1]):
            c = count[:, s].tolist()
            ids = order[:, s * B:(s + 1) * B]                                       # (K, B) local ids
            xb, yb = self.X_all[ids + offs], self.y_all[ids + offs]
            if min(c) == B:
                losses, parts = self.full_step(xb, yb, ids)
            else:
                losses, parts = self.ragged_step(xb, yb, ids, c)
            st.grad.zero_()
            with warnings.catch_warnings():  # the gradients are views of one (K, P) tensor, on purpose
                warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")
                losses.sum().backward()
            on = None if all(c) else torch.tensor([x > 0 for x in c], device=device)
            self.stepper.step(st.flat, st.grad, lr, on)
            n_k = B if min(c) == B else torch.tensor(c, device=device, dtype=total.dtype)
            total += losses.detach() * n_k
            seen += n_k
            for k, lg, y_k, id_k in parts:
                self.logit_hooks[k](lg.detach(), y_k, id_k.cpu(), epoch)
        return total, seen


def fit_many(models: Sequence[nn.Module], datasets: Sequence[tuple], *, seeds: Sequence[int], epochs: int,
             batch_size: int = 128, optim: Optim = Optim(), schedule: Schedule = Schedule(),
             loss: str = "ce", val=None, val_metrics: Callable | None = None, val_context: dict | None = None,
             select: str | None = "acc", mode: str = "max", steps_per_epoch: int | None = None,
             augment: Callable | None = None, on_logits=None, on_epoch_end=None, class_weight=None,
             device="auto", desc: str = "fit_many", batched: bool | str = "auto") -> list[FitResult]:
    """Train ``models[k]`` on ``datasets[k] = (X_k, y_k)`` with ``seeds[k]``, all K in one batched
    loop; returns the K :class:`~fairbook.train.FitResult` of separate :func:`~fairbook.train.fit`
    calls with the same arguments (module docstring). ``val``: one ``(X, y)`` for all models or a list
    of K; ``on_logits`` / ``on_epoch_end``: one callable for all or a list of K (``None`` entries
    allowed), called as ``fit`` calls them with model k's own batch, ids and module.

    ``batched``: ``"auto"`` batches when the models and data allow it and otherwise trains the
    models one after another with :func:`~fairbook.train.fit` (one model, ``Dataset`` inputs, dropout);
    ``True`` insists (an error names what prevents it); ``False`` always trains them one by one."""
    K = len(models)
    if batched not in ("auto", True, False):
        raise ValueError(f"batched must be 'auto', True or False, got {batched!r}")
    if len(datasets) != K or len(seeds) != K:
        raise ValueError(f"fit_many got {K} models, {len(datasets)} datasets and {len(seeds)} seeds")
    if batched is False or (batched == "auto" and (K == 1 or not _batchable(models, datasets))):
        return _one_by_one(models, datasets, seeds, val, on_logits, on_epoch_end, dict(
            epochs=epochs, batch_size=batch_size, optim=optim, schedule=schedule, loss=loss,
            val_metrics=val_metrics, val_context=val_context, select=select, mode=mode,
            steps_per_epoch=steps_per_epoch, augment=augment, class_weight=class_weight,
            device=device, desc=desc))
    _check_batched(models, datasets, epochs, batch_size, mode, loss, select, val)
    vals = _per_model(val, K, "val")
    logit_hooks = _per_model(on_logits, K, "on_logits")
    epoch_hooks = _per_model(on_epoch_end, K, "on_epoch_end")
    device = resolve_device(device)
    X_all, y_all, offsets, ns = _stack_data(datasets, device)
    class_weight = _class_weight(class_weight, loss, device)
    lrs = _lrs(optim, schedule, epochs)
    for m in models:
        m.to(device)
    stack = _Stack(models)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    trainer = _ManyTrainer(stack, _Stepper(optim, K), X_all, y_all, offsets, batch_size, augment, gens,
                           loss == "bce", class_weight, logit_hooks, device)
    steps = [steps_per_epoch or math.ceil(n / batch_size) for n in ns]

    histories = [[] for _ in range(K)]
    best, best_epoch, best_state = [None] * K, [epochs] * K, [None] * K
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress_enabled(), leave=False)
    for epoch in bar:
        stack.base.train()
        order, count = _epoch_order(ns, steps, batch_size, gens, fill=bool(steps_per_epoch))
        total, seen = trainer.epoch(order, count, lrs[epoch - 1], epoch)
        rows_k = [{"epoch": epoch, "train_loss": (total[k] / seen[k].clamp_min(1)).item(), "lr": lrs[epoch - 1]}
                  for k in range(K)]
        if any(v is not None for v in vals):
            _evaluate(stack.base, stack.views(stack.flat), stack.buffers, vals, val_metrics, val_context, rows_k,
                      stack.shared_x)
        for k, row in enumerate(rows_k):
            if select is not None and vals[k] is not None and _improves(row[f"val_{select}"], best[k], mode):
                best[k], best_epoch[k] = row[f"val_{select}"], epoch
                best_state[k] = stack.state(k)
            histories[k].append(row)
            if epoch_hooks[k] is not None:
                epoch_hooks[k](epoch, models[k], row)
        bar.set_postfix(loss=f"{float(total.sum() / seen.sum()):.4f}")

    for k in range(K):
        if best_state[k] is not None:
            stack.load(k, best_state[k])
    _unalias(models)
    return [FitResult(m, pd.DataFrame(h), be, {n: t.clone() for n, t in m.state_dict().items()})
            for m, h, be in zip(models, histories, best_epoch)]


def _losses(logits: torch.Tensor, y: torch.Tensor, bce: bool, class_weight) -> torch.Tensor:
    """Each model's batch loss from (K, B, C) logits, as ``fit``'s criterion computes it (mean, or
    the class-weighted mean normalised by the batch's total weight)."""
    if bce:
        return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), y.float(),
                                                              reduction="none").mean(1)
    per = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    if class_weight is None:
        return per.mean(1)
    w = class_weight[y]
    return (per * w).sum(1) / w.sum(1)


def _alias(models, params, buffers) -> None:
    """Make every model's parameters and buffers views of row k of the stacked tensors, so hooks
    and the final models see the batched training as it happens."""
    for k, m in enumerate(models):
        for n, p in m.named_parameters():
            p.data = params[n].data[k]
        for n, b in m.named_buffers():
            mod, _, leaf = n.rpartition(".")
            owner = m.get_submodule(mod) if mod else m
            owner._buffers[leaf] = buffers[n][k]


def _unalias(models) -> None:
    """Give every model its own storage again."""
    for m in models:
        for p in m.parameters():
            p.data = p.data.clone()
        for mod in m.modules():
            for leaf, b in list(mod._buffers.items()):
                if b is not None:
                    mod._buffers[leaf] = b.clone()


@torch.no_grad()
def _evaluate(base, params, buffers, vals, val_metrics, val_context, rows, shared_x) -> None:
    """``fit``'s per-epoch evaluation (``train.evaluate``) of every model on its validation set."""
    base.eval()
    try:
        first = vals[0]
        if all(v is first for v in vals):
            Xv = as_tensor(first[0]).to(next(iter(params.values())).device)
            logits = torch.cat([shared_x(params, buffers, Xv[i:i + 4096]) for i in range(0, len(Xv), 4096)], 1)
            per_model = [logits[k] for k in range(len(rows))]
        else:
            per_model = []
            for k, v in enumerate(vals):
                if v is None:
                    per_model.append(None)
                    continue
                one = {n: t[k] for n, t in params.items()}, {n: t[k] for n, t in buffers.items()}
                Xv = as_tensor(v[0]).to(next(iter(params.values())).device)
                per_model.append(functional_call(base, one, (Xv,)))
    finally:
        base.train()
    for k, (v, lg) in enumerate(zip(vals, per_model)):
        if v is None:
            continue
        lg = lg.float().cpu()
        y_t = as_tensor(v[1]).long()
        res = {"acc": (predict(lg) == y_t).float().mean().item(),
               "loss": loss_fn("bce" if lg.shape[-1] == 1 else "ce")(lg, y_t).item()}
        if val_metrics is not None:
            res.update(val_metrics(y_t.numpy(), lg.numpy(), **(val_context or {})))
        rows[k].update({f"val_{n}": x for n, x in res.items()})
