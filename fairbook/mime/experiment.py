"""MIME (Chari et al., ECCV 2022) Section 4 on real data: the authors' training recipes
(:class:`Recipe`), Definitions 2-3 (:func:`group_difficulty`), the beta sweep of §4.2
(:func:`beta_sweep`), the same sweep on a frozen feature extractor (:func:`linear_probe_sweep`) and the
projection on the learnt decision direction of §4.1 (:func:`decision_projection`,
:func:`projection_at_half`; Table 1 is :func:`fairbook.mime.theory.table1`). Every network trains with
:mod:`fairbook.train`; a sweep's trials are the tasks of a :class:`fairbook.grid.Grid`
(:func:`beta_trial`, :func:`probe_trial`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import data
from .. import grid as grids
from .. import train as tr
from ..metrics import accuracy
from ..models import head, penultimate
from ..train import Optim, Schedule

__all__ = [
    "Recipe", "IMAGE_RECIPES", "engine_inputs", "class_balanced", "beta_indices", "Splits",
    "beta_sweep", "beta_trial", "linear_probe_sweep", "probe_trial", "group_difficulty", "decision_projection",
    "projection_at_half",
]


def engine_inputs(ds):
    """(inputs, targets) for the engine: arrays of a ``Dataset``, or a lazy image table itself."""
    return (ds.X, ds.y) if hasattr(ds, "X") else (ds, ds.y)


@dataclass(frozen=True)
class Recipe:
    """How MIME trains a network with :func:`fairbook.train.fit`: ``epochs``, ``batch_size``, the
    optimiser and the learning-rate schedule (stepped once per epoch). The authors' recipes
    (:meth:`authors`: AdamW with betas (0.5, 0.999) and cosine annealing) are :meth:`image` for
    FairFace and UTKFace (:data:`IMAGE_RECIPES`) and :meth:`tabular` for Adult."""

    epochs: int
    batch_size: int
    optim: Optim
    schedule: Schedule = Schedule()

    @classmethod
    def authors(cls, epochs: int, batch_size: int, lr: float = 5e-4, weight_decay: float = 0.08,
                t_max: int | None = None, min_lr_factor: float = 0.0) -> "Recipe":
        """The optimiser and schedule of the authors' code: AdamW, betas (0.5, 0.999), cosine annealing
        over ``t_max`` epochs (None: the whole run) down to ``min_lr_factor`` x lr."""
        return cls(epochs, batch_size, Optim("adamw", lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay),
                   Schedule("cosine", t_max=t_max, min_lr_factor=min_lr_factor))

    @classmethod
    def image(cls, dataset: str, epochs: int | None = None, batch_size: int | None = None) -> "Recipe":
        """The authors' recipe for the image dataset ``dataset`` (:data:`IMAGE_RECIPES`), with
        ``epochs`` or ``batch_size`` replaced where given."""
        if dataset not in IMAGE_RECIPES:
            raise ValueError(f"Recipe.image: dataset got {dataset!r}; allowed: {', '.join(IMAGE_RECIPES)}")
        r = IMAGE_RECIPES[dataset]
        return cls(epochs or r.epochs, batch_size or r.batch_size, r.optim, r.schedule)

    @classmethod
    def tabular(cls, epochs: int, lr: float = 5e-4) -> "Recipe":
        """The authors' Adult recipe (their public code): AdamW, betas (0.5, 0.999), weight decay 0.08,
        cosine annealing over the run down to 0.01 x lr, batch 30."""
        return cls.authors(epochs, 30, lr=lr, weight_decay=0.08, min_lr_factor=0.01)

    @classmethod
    def adam(cls, epochs: int, batch_size: int, lr: float) -> "Recipe":
        """Plain Adam at a fixed learning rate (the chapter's alternative to the authors' recipe)."""
        return cls(epochs, batch_size, Optim("adam", lr=lr))

    def fit_kwargs(self) -> dict:
        """The keyword arguments of :func:`fairbook.train.fit` (and ``fit_many``) for this recipe."""
        return dict(epochs=self.epochs, batch_size=self.batch_size, optim=self.optim, schedule=self.schedule)


#: The authors' image recipes (their public notebooks): FairFace (DS-1: weight decay 0.08, T_max = 30,
#: 35 epochs, batch 30, no normalisation or augmentation) and UTKFace (DS-3).
IMAGE_RECIPES = {"fairface": Recipe.authors(35, 30, lr=5e-4, weight_decay=0.08, t_max=30),
                 "utkface": Recipe.authors(65, 25, lr=6e-4, weight_decay=0.05, t_max=65)}


def class_balanced(y, groups, rng: np.random.Generator) -> np.ndarray:
    """Row indices with equal class counts within each group (the larger classes of a group
    subsampled without replacement to its smallest class): the authors' protocol for MIME's training
    pools and test sets. Sorted."""
    y, groups = np.asarray(y), np.asarray(groups)
    keep = []
    for g in np.unique(groups):
        rows = [np.flatnonzero((groups == g) & (y == c)) for c in np.unique(y)]
        k = min(len(r) for r in rows)
        keep += [rng.choice(r, k, replace=False) for r in rows]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def beta_indices(pools: dict, majority: int, n_train: int, beta: float) -> np.ndarray:
    """The training rows at minority fraction ``beta``: the first ``n_train - round(beta n_train)``
    rows of the majority pool and the first ``round(beta n_train)`` of the minority pool, so the
    majority part shrinks and the minority part grows by prefixes as beta rises (nested sets)."""
    k = int(round(beta * n_train))
    return np.concatenate([pools[majority][:n_train - k], pools[1 - majority][:k]])


def _trial_data(splits, trial: int, attr: str, majority: int, n_train: int, seed: int, balance: bool):
    """One trial's data for :func:`beta_sweep` and :func:`linear_probe_sweep`: its split (classes
    balanced within each group if ``balance``), the shuffled majority and minority training pools and
    the initialisation seed shared by every beta of the trial."""
    trn, val, tst = splits(trial)
    rng = np.random.default_rng([seed, trial])
    if balance:
        trn, val, tst = (d.subset(class_balanced(d.y, d.groups[attr], rng)) for d in (trn, val, tst))
    pools = {g: rng.permutation(np.flatnonzero(trn.groups[attr] == g)) for g in (majority, 1 - majority)}
    if min(len(p) for p in pools.values()) < n_train:
        raise ValueError(f"n_train = {n_train} exceeds a group's training pool "
                         f"({ {g: len(p) for g, p in pools.items()} }"
                         f"{', classes balanced within each group' if balance else ''})")
    return trn, val, tst, pools, int(rng.integers(2**31))


@dataclass(frozen=True)
class Splits:
    """``splits(trial)``: train, validation and test of dataset ``name`` drawn with seed
    ``seed + trial`` (``fairbook.data.load`` with ``options``, a tuple of (key, value) pairs). A
    picklable ``splits`` for the sweeps: a task of ``fairbook.grid`` loads its own trial's data."""

    name: str
    seed: int = 0
    root: str | None = None
    options: tuple = ()

    def __call__(self, trial: int):
        return tuple(data.load(self.name, split=s, seed=self.seed + trial, root=self.root, **dict(self.options))
                     for s in ("train", "val", "test"))


def _trials(task, trials: int, grid, desc: str, **shared) -> pd.DataFrame:
    """Rows of ``task(trial=t, **shared)`` for every trial: here one by one, or as the tasks of a
    :class:`fairbook.grid.Grid` (``shared`` must then pickle: :class:`Splits`, ``functools.partial``)."""
    if grid is None:
        parts = [task(trial=t, **shared) for t in range(trials)]
    else:
        parts = grids.run(task, [{"trial": t} for t in range(trials)], grid, shared=shared, desc=desc)
    return pd.DataFrame([row for part in parts for row in part])


def beta_sweep(splits, attr: str, majority: int, betas, n_train: int, trials: int, make_model,
               fit_kwargs: dict, seed: int = 0, balance: bool = True, grid=None) -> pd.DataFrame:
    """MIME §4.2: majority accuracy against the minority fraction beta at a fixed training size.

    ``splits(trial) -> (train, val, test)`` gives each trial its own random split (``Dataset``s with
    ``groups[attr]``); ``majority`` is the value of ``attr`` that marks the majority group. In every
    trial the majority and minority training pools are shuffled once, and beta takes the first
    ``n_train - round(beta n_train)`` majority and ``round(beta n_train)`` minority samples, so
    minority samples *replace* majority samples. Each model is trained by :func:`fairbook.train.fit`
    and the epoch is chosen on *validation* majority accuracy; ``best_test_acc`` is the official
    code's choice, the best *test* majority accuracy over epochs (optimistic by construction).

    ``balance`` (the authors' protocol, default): the classes are balanced within each group of the
    training pools, the validation and the test set (:func:`class_balanced`); ``False`` keeps the
    data's class ratios. One trial is one task (:func:`beta_trial`; ``grid``: :func:`_trials`).
    """
    if set(np.unique(splits(0)[0].groups[attr])) - {0, 1}:
        raise ValueError(f"attribute {attr!r} must be coded 0/1")
    return _trials(beta_trial, trials, grid, "beta sweep", splits=splits, attr=attr, majority=majority,
                   betas=list(betas), n_train=n_train, make_model=make_model, fit_kwargs=fit_kwargs, seed=seed,
                   balance=balance)


def beta_trial(splits, trial: int, attr: str, majority: int, betas, n_train: int, make_model, fit_kwargs: dict,
               seed: int, balance: bool) -> list[dict]:
    """The rows of one trial of :func:`beta_sweep`."""
    rows = []
    trn, val, tst, pools, fit_seed = _trial_data(splits, trial, attr, majority, n_train, seed, balance)
    vmask, tmask = val.groups[attr] == majority, tst.groups[attr] == majority
    X_test = engine_inputs(tst)[0]
    curves = [[] for _ in betas]

    def track(epoch, model, row, curve):
        pred = tr.predict(tr.logits_of(model, X_test)).numpy()
        curve.append((accuracy(tst.y[tmask], pred[tmask]), accuracy(tst.y[~tmask], pred[~tmask])))

    # the betas of a trial share the initialisation and the seed: one batched fit of all of them
    results = tr.fit_many([tr.seeded(make_model, fit_seed) for _ in betas],
                       [engine_inputs(trn.subset(beta_indices(pools, majority, n_train, b))) for b in betas],
                       seeds=[fit_seed] * len(betas), val=engine_inputs(val.subset(vmask)), select="acc",
                       on_epoch_end=[lambda e, m, r, c=c: track(e, m, r, c) for c in curves], **fit_kwargs)
    for beta, res, test_curve in zip(betas, results, curves):
        major_acc, minor_acc = test_curve[res.best_epoch - 1]
        rows.append({"trial": trial, "beta": float(beta), "n_minor": int(round(beta * n_train)),
                     "majority_acc": float(major_acc), "minority_acc": float(minor_acc),
                     "best_epoch": res.best_epoch,
                     "best_test_acc": float(max(m for m, _ in test_curve))})
    return rows


def linear_probe_sweep(splits, attr: str, majority: int, betas, n_train: int, trials: int, make_model,
                       fit_kwargs: dict, probe_kwargs: dict, seed: int = 0, balance: bool = True,
                       grid=None) -> pd.DataFrame:
    """The setting the theory certifies: a **fixed** feature extractor and a learnt last layer.

    Per trial (the splits and pools of :func:`beta_sweep`): one network is trained on the beta = 0.5
    training set and frozen; for every beta only a new linear head is trained on the frozen
    penultimate features of that beta's training set (``probe_kwargs`` for :func:`fairbook.train.fit`,
    epoch chosen on validation majority accuracy, one initialisation per trial). Returns the rows of
    :func:`beta_sweep` (``best_test_acc`` omitted). One trial is one task (:func:`probe_trial`)."""
    return _trials(probe_trial, trials, grid, "linear probe", splits=splits, attr=attr, majority=majority,
                   betas=list(betas), n_train=n_train, make_model=make_model, fit_kwargs=fit_kwargs,
                   probe_kwargs=probe_kwargs, seed=seed, balance=balance)


def probe_trial(splits, trial: int, attr: str, majority: int, betas, n_train: int, make_model, fit_kwargs: dict,
                probe_kwargs: dict, seed: int, balance: bool) -> list[dict]:
    """The rows of one trial of :func:`linear_probe_sweep`."""
    rows = []
    trn, val, tst, pools, fit_seed = _trial_data(splits, trial, attr, majority, n_train, seed, balance)
    vmask, tmask = val.groups[attr] == majority, tst.groups[attr] == majority
    backbone = tr.fit(tr.seeded(make_model, fit_seed), *engine_inputs(trn.subset(beta_indices(pools, majority, n_train, 0.5))),
                      val=engine_inputs(val.subset(vmask)), select="acc", seed=fit_seed, **fit_kwargs).model
    feats = {name: penultimate(backbone, engine_inputs(d)[0])[0] for name, d in (("trn", trn), ("val", val), ("tst", tst))}
    n_classes = len(trn.classes)
    idx = [beta_indices(pools, majority, n_train, beta) for beta in betas]
    results = tr.fit_many([tr.seeded(lambda: nn.Linear(feats["trn"].shape[1], n_classes), fit_seed) for _ in betas],
                       [(feats["trn"][i], trn.y[i]) for i in idx], seeds=[fit_seed] * len(betas),
                       val=(feats["val"][vmask], val.y[vmask]), select="acc", **probe_kwargs)
    for beta, res in zip(betas, results):
        pred = tr.predict(tr.logits_of(res.model, feats["tst"])).numpy()
        rows.append({"trial": trial, "beta": float(beta), "n_minor": int(round(beta * n_train)),
                     "majority_acc": float(accuracy(tst.y[tmask], pred[tmask])),
                     "minority_acc": float(accuracy(tst.y[~tmask], pred[~tmask])), "best_epoch": res.best_epoch})
    return rows


def group_difficulty(train, test, attr: str, n_train: int, make_model, fit_kwargs: dict,
                     val=None, seed: int = 0) -> pd.DataFrame:
    """Definitions 2-3: train on ``n_train`` samples of one group only and test on that group; the
    group with the higher accuracy is the majority."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in (0, 1):
        pool = np.flatnonzero(train.groups[attr] == g)
        if len(pool) < n_train:
            raise ValueError(f"group {g} has {len(pool)} training samples, fewer than n_train = {n_train}: "
                             "Definition 2 compares the groups at one training size")
        sub = train.subset(rng.choice(pool, size=n_train, replace=False))
        v = None if val is None else engine_inputs(val.subset(val.groups[attr] == g))
        fit_seed = int(rng.integers(2**31))
        res = tr.fit(tr.seeded(make_model, fit_seed), *engine_inputs(sub), val=v,
                     select="acc" if v else None, seed=fit_seed, **fit_kwargs)
        own = test.subset(test.groups[attr] == g)
        pred = tr.predict(tr.logits_of(res.model, engine_inputs(own)[0])).numpy()
        rows.append({"group": g, "n_train": len(sub), "own_test_acc": accuracy(own.y, pred)})
    out = pd.DataFrame(rows)
    out["majority_by_definition_2"] = out.own_test_acc == out.own_test_acc.max()
    return out


def decision_projection(model, X) -> np.ndarray:
    """Penultimate features projected orthogonally on the learnt decision direction (MIME §4.1,
    Fig. 4): the signed distance to the last layer's hyperplane, (logit margin) / ||w||."""
    feats, logits = penultimate(model, X if isinstance(X, torch.utils.data.Dataset) else torch.as_tensor(X))
    W = head(model).weight.detach().cpu()
    if logits.shape[1] == 1:
        return (logits[:, 0] / W[0].norm()).numpy()
    if logits.shape[1] != 2:
        raise ValueError("the projection needs a binary classifier (1 or 2 logits)")
    return ((logits[:, 1] - logits[:, 0]) / (W[1] - W[0]).norm()).numpy()


def projection_at_half(train, val, test, attr: str, n_train: int, make_model, fit_kwargs: dict,
                       seed: int = 0) -> np.ndarray:
    """MIME §4.1 (Table 1, Fig. 4): a model trained on ``n_train // 2`` random training samples of each
    group (β = 0.5; epoch chosen on validation accuracy, initialisation and draws from ``seed``), and
    every ``test`` sample projected on its learnt decision direction (:func:`decision_projection`)."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(train.groups[attr] == g), n_train // 2, replace=False)
                          for g in (0, 1)])
    res = tr.fit(tr.seeded(make_model, seed), *engine_inputs(train.subset(idx)), val=engine_inputs(val),
                 seed=seed, **fit_kwargs)
    return decision_projection(res.model, engine_inputs(test)[0])
