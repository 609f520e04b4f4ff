"""The AIM-Fair chapter's experiments built on the method: the training recipe in one place (the
network, training from scratch on real or synthetic data -- ERM, Table 3's data baselines, JTT/DRO,
Table 5 --, fine-tuning a copy of a pre-trained model -- every method of Tables 3-7, through
:func:`fairbook.aimfair.finetune` -- and the three dataset gradients of the mask, eqs. 1-3), the record
of runs and its grid tasks, the learning-rate search, the per-seed start of the method
(:func:`prepare`) and the sample figure's layout (:func:`cell_grid`). The notebook builds one
:class:`Recipe` from its parameters and calls these; the method itself is :mod:`fairbook.aimfair`
(:mod:`~fairbook.aimfair.mask`, :mod:`~fairbook.aimfair.finetuning`, :mod:`~fairbook.aimfair.robust`).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from .. import grid as grids
from .. import models, train
from . import robust
from .data import CELLS, balanced_ratios, draw_cells, take
from .evaluation import aggregate, table_metrics
from .finetuning import finetune
from .mask import dataset_gradients, k_for_fraction, selective_mask
from .selection import LR_TABLE, chosen

__all__ = ["NETWORKS", "network", "Recipe", "Job", "Pending", "Runs", "fit_job", "job_state", "run_job", "scores",
           "jtt_data", "identification_job", "pool_draw", "Prepared", "prepare",
           "sft_from_scratch_scores", "lr_search", "condition_judge", "cell_grid"]

NETWORKS = ("narrow-resnet18", "cnn", "resnet18")


def network(name: str, *, width: int = 8, channels=(8, 16, 32), weights: str | None = None) -> nn.Module:
    """One-logit network of the chapter: ``narrow-resnet18`` (:func:`fairbook.models.cifar_resnet18`
    at ``width`` with a stride-2 stem: ResNet-18's 62 tensors on 28x28 images; not channels_last,
    which corrupts the heap in torch 2.14's CPU backward), ``cnn`` (:class:`fairbook.models.SmallCNN`)
    or ``resnet18`` (torchvision, 224 px, optional local ``weights``)."""
    if name == "narrow-resnet18":
        return models.cifar_resnet18(1, width=width, stem_stride=2)
    if name == "cnn":
        return models.SmallCNN(3, 1, tuple(channels))
    if name == "resnet18":
        return models.resnet(18, num_classes=1, weights=weights or None)
    raise ValueError(f"network: name got {name!r}; allowed: {', '.join(NETWORKS)}")


@dataclass(frozen=True)
class Recipe:
    """Training settings shared by every run of the chapter (SGD with momentum 0.9 and weight decay
    1e-4, BCE on one logit, checkpoint by validation accuracy as in the authors' code).

    ``val``: (X_val, y_val) for checkpoint selection. Settings only: the wall time per fine-tuning
    epoch is returned by :func:`fit_job` and kept in :attr:`Runs.epoch_seconds`."""

    model: str
    val: tuple
    batch_size: int = 128
    pre_epochs: int = 10
    pre_lr: float = 0.05
    pre_milestone: int = 7
    ft_epochs: int = 5
    freeze_bn_stats: bool = False
    width: int = 8
    channels: tuple = (8, 16, 32)
    weights: str | None = None

    def make_model(self) -> nn.Module:
        return network(self.model, width=self.width, channels=self.channels, weights=self.weights)

    def from_state(self, state: dict) -> nn.Module:
        """A network of this recipe holding the weights ``state`` (what a task of the grid returns)."""
        m = self.make_model()
        m.load_state_dict(state)
        return m

    def train_many(self, jobs, grid=None) -> list[nn.Module]:
        """The models of ``jobs`` (:class:`Job`), trained as one grid of tasks (:func:`job_state`) on
        ``grid`` (:class:`fairbook.grid.Grid`; None: here, one by one)."""
        states = grids.run(job_state, [{"job": j} for j in jobs], grid or grids.Grid(),
                           shared={"recipe": self}, desc="aimfair models")
        return [self.from_state(st) for st in states]

    def sgd(self, lr: float) -> train.Optim:
        return train.Optim("sgd", lr=lr, momentum=0.9, weight_decay=1e-4)

    def train_from_scratch(self, X, y, seed: int, **fit_kwargs) -> nn.Module:
        """A fresh network (initialised from ``seed``) trained ``pre_epochs`` epochs, lr ×0.1 after
        ``pre_milestone``; ``fit_kwargs`` override any setting (e.g. ``extra_loss``, ``groups``)."""
        m = train.seeded(self.make_model, seed)
        kw = dict(epochs=self.pre_epochs, batch_size=self.batch_size, optim=self.sgd(self.pre_lr), loss="bce",
                  schedule=train.Schedule("multistep", milestones=(self.pre_milestone,), gamma=0.1),
                  val=self.val, select="acc", seed=seed)
        train.fit(m, X, y, **{**kw, **fit_kwargs})
        return m

    def finetune(self, base: nn.Module, selection, X, y, lr: float, seed: int) -> nn.Module:
        """A copy of ``base`` fine-tuned ``ft_epochs`` epochs on (X, y) with only ``selection``
        trained (:func:`fairbook.aimfair.finetune`); ``base`` is left as it was."""
        m = copy.deepcopy(base)
        finetune(m, selection, X, y, freeze_bn_stats=self.freeze_bn_stats, epochs=self.ft_epochs,
                 batch_size=self.batch_size, optim=self.sgd(lr), loss="bce", val=self.val, select="acc", seed=seed)
        return m

    def gradients(self, model: nn.Module, R, S1, S2, seed: int, **kw) -> dict:
        """g_R, g_S1, g_S2 (eqs. 1-3) of ``model`` on the (X, y) pairs R, S1, S2
        (:func:`fairbook.aimfair.dataset_gradients`; ``kw`` e.g. ``shuffle=False``)."""
        return {name: dataset_gradients(model, X, y, batch_size=self.batch_size, seed=seed, **kw)
                for name, (X, y) in (("R", R), ("S1", S1), ("S2", S2))}

    def mask(self, model: nn.Module, grads: dict, top_k: float, level: str, measure: str = "abs",
             k: int | None = None):
        """The selective mask (eqs. 4-5) of ``model`` from its gradients ``grads`` (:meth:`gradients`),
        with k the ``top_k`` share of its tensors or scalars (:func:`fairbook.aimfair.k_for_fraction`)
        unless ``k`` is given."""
        k = k_for_fraction(model, top_k, level) if k is None else k
        return selective_mask(grads["R"], grads["S1"], grads["S2"], k, level=level, measure=measure)

    def sft_from_scratch(self, R, S1, S2, seed: int, top_k: float, level: str, lr: float):
        """The whole method on one real set (Table 2): ERM on ``R``, the three gradients, the mask, and
        SFT on ``S2``. Returns (the ERM model, the fine-tuned model)."""
        base = self.train_from_scratch(*R, seed)
        mask = self.mask(base, self.gradients(base, R, S1, S2, seed), top_k, level)
        return base, self.finetune(base, mask, *S2, lr=lr, seed=seed)

    def error_set(self, X, y, seed: int, epochs: int) -> np.ndarray:
        """JTT's first stage: ERM for ``epochs`` epochs at a constant learning rate, the last epoch
        kept (:func:`identification_job`), and the training rows it misclassifies
        (:func:`fairbook.aimfair.robust.error_set`)."""
        return robust.error_set(fit_job(self, identification_job(X, y, seed, epochs))[0], X, y)

    def error_sets(self, X, y, seeds, epochs: int, grid=None) -> list[np.ndarray]:
        """:meth:`error_set` for every seed, the identification models trained as one grid."""
        return [robust.error_set(m, X, y)
                for m in self.train_many([identification_job(X, y, s, epochs) for s in seeds], grid)]

    def jtt(self, X, y, error_set, lam: int, seed: int) -> nn.Module:
        """JTT's second stage: ERM on the training set with the error set upsampled ``lam`` times
        (:func:`jtt_data`)."""
        return self.train_from_scratch(*jtt_data(X, y, error_set, lam), seed)


def jtt_data(X, y, error_set, lam: int) -> tuple:
    """JTT's upsampled training set: every error-set row ``lam`` times (:func:`fairbook.aimfair.robust.upweight`)."""
    idx = robust.upweight(error_set, lam)
    return take(X, idx), np.asarray(y)[idx]


@dataclass(frozen=True)
class Job:
    """One training run to be done by :meth:`Runs.flush` as a task of :mod:`fairbook.grid`: with
    ``base`` None, :meth:`Recipe.train_from_scratch` on (X, y) from ``seed`` (with ``objective``
    ``("cvar_dro", {"alpha": a})`` or ``("group_dro", {"n_groups": 4, "eta": e})``: that extra loss
    of :mod:`fairbook.aimfair.robust`, ``groups`` the attribute it needs); else :meth:`Recipe.finetune` of a
    model with the weights ``base`` (a state dict) on (X, y) with ``selection`` trained at ``lr``."""

    X: Any
    y: Any
    seed: int
    base: dict | None = None
    selection: Any = None
    lr: float | None = None
    objective: tuple = ()
    groups: Any = None
    overrides: dict | None = None  # training from scratch: train.fit settings replacing the recipe's

    def fit_kwargs(self) -> dict:
        if not self.objective:
            return dict(self.overrides or {})
        name, kw = self.objective
        losses = {"cvar_dro": robust.cvar_dro, "group_dro": robust.GroupDRO}
        if name not in losses:
            raise ValueError(f"Job objective must be one of {', '.join(losses)}, got {name!r}")
        out = {**(self.overrides or {}), "extra_loss": losses[name](**kw)}
        return out if self.groups is None else {**out, "groups": self.groups}


def identification_job(X, y, seed: int, epochs: int) -> Job:
    """JTT's identification model: ERM for ``epochs`` epochs at a constant learning rate, the last
    epoch kept."""
    return Job(X, y, seed=seed, overrides={"epochs": epochs, "select": None, "schedule": train.Schedule()})


@dataclass(frozen=True)
class Pending:
    """What :meth:`Runs.record` returns for a queued run: after :meth:`Runs.flush`,
    ``runs.models[pending.index]`` holds the trained model (when recorded with ``keep=True``)."""

    index: int


def scores(model: nn.Module, val: tuple, test: tuple) -> dict:
    """Test metrics of :func:`fairbook.aimfair.table_metrics` and the validation columns of :class:`Runs`."""
    v = table_metrics(model, *val)
    return {**table_metrics(model, *test), **{c: v[c.removeprefix("val_")] for c in Runs.VAL_COLS}}


def fit_job(recipe: Recipe, job: Job) -> tuple[nn.Module, float | None]:
    """Train ``job``: the model and the seconds per fine-tuning epoch (None from scratch)."""
    if job.base is None:
        return recipe.train_from_scratch(job.X, job.y, job.seed, **job.fit_kwargs()), None
    base = recipe.from_state(job.base)
    t = time.perf_counter()
    model = recipe.finetune(base, job.selection, job.X, job.y, lr=job.lr, seed=job.seed)
    return model, (time.perf_counter() - t) / recipe.ft_epochs


def job_state(recipe: Recipe, job: Job) -> dict:
    """A task of :mod:`fairbook.grid`: the trained weights of ``job``."""
    return fit_job(recipe, job)[0].state_dict()


def run_job(recipe: Recipe, val: tuple, test: tuple, job: Job, keep: bool = False) -> dict:
    """A task of :mod:`fairbook.grid`: train ``job``, return its :func:`scores`, the seconds per
    fine-tuning epoch (None for training from scratch) and, when ``keep``, the trained weights."""
    model, seconds = fit_job(recipe, job)
    return {"scores": scores(model, val, test), "epoch_seconds": seconds,
            "state": model.state_dict() if keep else None}


def sft_from_scratch_scores(recipe: Recipe, val: tuple, test: tuple, R, S1, S2, seed: int, top_k: float, level: str,
                            lr: float) -> tuple[dict, dict]:
    """A task of :mod:`fairbook.grid`: :meth:`Recipe.sft_from_scratch` and the :func:`scores` of its
    ERM model and of its SFT model."""
    base, sft = recipe.sft_from_scratch(R, S1, S2, seed, top_k, level, lr)
    return scores(base, val, test), scores(sft, val, test)


@dataclass
class Runs:
    """The chapter's record of trained models: one row per (table, method, seed) with the test
    metrics of :func:`fairbook.aimfair.table_metrics` and the validation ``val_acc``, ``val_wst``,
    ``val_eo`` that alone choose among settings. ``val`` and ``test`` are (X, y, s).

    :meth:`record` takes a trained model or a :class:`Job`; runs are queued and done, in order, by
    :meth:`flush` (called by :meth:`frame` and :meth:`summary`): the jobs as one grid of tasks on
    ``grid`` (:class:`fairbook.grid.Grid`; None: here, one by one) with ``recipe``.
    ``epoch_seconds`` collects the wall time per epoch of every fine-tuning job done (the mask's cost
    is reported against it)."""

    val: tuple
    test: tuple
    rows: list = field(default_factory=list)
    recipe: Recipe | None = None
    grid: Any = None
    queue: list = field(default_factory=list)
    models: dict = field(default_factory=dict)
    count: int = 0
    epoch_seconds: list = field(default_factory=list)

    VAL_COLS = ("val_acc", "val_wst", "val_eo")

    def record(self, table: str, method: str, seed: int, model, keep: bool = False, **extra) -> Pending:
        """Queue one run (``model``: an ``nn.Module`` already trained, or a :class:`Job`)."""
        if isinstance(model, Job) and self.recipe is None:
            raise ValueError("Runs needs recipe= to train a Job")
        index, self.count = self.count, self.count + 1
        self.queue.append((index, {"table": table, "method": method, "seed": seed, **extra}, model, keep))
        return Pending(index)

    def add(self, table: str, method: str, seed: int, scores_: dict, **extra) -> None:
        """Append the row of a run scored elsewhere (:func:`scores`), after the queued runs."""
        self.flush()
        self.rows.append({"table": table, "method": method, "seed": seed, **extra, **scores_})

    def run_tasks(self, fn, tasks, desc: str, **shared) -> list:
        """:func:`fairbook.grid.run` of ``fn`` on ``grid`` with ``recipe``, ``val`` and ``test`` shared by
        every task."""
        return grids.run(fn, tasks, self.grid or grids.Grid(), desc=desc,
                         shared={"recipe": self.recipe, "val": self.val, "test": self.test, **shared})

    def flush(self) -> None:
        """Do every queued run and append its row, in the order recorded."""
        queue, self.queue = self.queue, []
        jobs = [{"job": job, "keep": keep} for _, _, job, keep in queue if isinstance(job, Job)]
        if jobs:
            done = iter(self.run_tasks(run_job, jobs, "aimfair runs"))
        for index, head, model, keep in queue:
            if isinstance(model, Job):
                res = next(done)
                self.rows.append({**head, **res["scores"]})
                if res["epoch_seconds"] is not None:
                    self.epoch_seconds.append(res["epoch_seconds"])
                if keep:
                    self.models[index] = self.recipe.from_state(res["state"]).eval()
            else:
                self.rows.append({**head, **scores(model, self.val, self.test)})
                if keep:
                    self.models[index] = model

    def frame(self) -> pd.DataFrame:
        self.flush()
        return pd.DataFrame(self.rows)

    def summary(self, tables) -> pd.DataFrame:
        """Per (table, method) of ``tables``: :func:`fairbook.aimfair.aggregate` over seeds (cell
        accuracies averaged before WST and STD) and the seed-mean validation columns."""
        df = self.frame()
        df = df[df.table.isin(tables)]
        val_cols = list(self.VAL_COLS)
        out = aggregate(df.drop(columns=[c for c in val_cols + ["lr"] if c in df]), by=["table", "method"])
        return out.merge(df.groupby(["table", "method"], sort=False)[val_cols].mean().reset_index(),
                         on=["table", "method"])


def lr_search(runs: Runs, finetune, selections: dict, seeds, lrs, keep=(), before=None,
              table: str = "main") -> tuple[dict, dict]:
    """Each method of ``selections`` (name -> seed -> selection) fine-tuned at every learning rate of
    ``lrs`` for every seed (``finetune(seed, selection, lr)``: a model or a :class:`Job`, trained
    together by :meth:`Runs.flush`), recorded as ``"lr search"`` (:data:`~fairbook.aimfair.selection.LR_TABLE`);
    per method the rate with the best seed-mean validation WST
    (:func:`fairbook.aimfair.selection.chosen`) is kept and its runs are recorded again under ``table``.
    ``before(seed)`` runs first for each seed (the chapter records its baselines there).
    Returns (the chosen rate per method, the chosen models of the methods in ``keep``, keyed by
    (method, seed); the others are not kept)."""
    kept = {}
    for s in seeds:
        if before is not None:
            before(s)
        for name, selection in selections.items():
            for lr in lrs:
                kept[name, s, lr] = runs.record(LR_TABLE, name, s, finetune(s, selection(s), lr),
                                                keep=name in keep, lr=lr)
    frame = runs.frame()
    best = {name: chosen(frame, LR_TABLE, name) for name in selections}
    runs.rows += [dict(r, table=table) for r in list(runs.rows)
                  if r["table"] == LR_TABLE and r["lr"] == best[r["method"]]]
    return best, {(name, s): runs.models[kept[name, s, best[name]].index] for name in keep for s in seeds}


def pool_draw(pool: tuple, ratios, n: int, master: int, seed: int, stream: int) -> tuple:
    """``n`` rows of the synthetic ``pool`` (X, y, s) with the (y, s) cell shares ``ratios``, without
    repeats (:func:`fairbook.aimfair.data.draw_cells`), from the random stream (master seed, model seed,
    stream): each seed draws its own sets, and each use of the pool its own stream."""
    return draw_cells(*pool, ratios, n, np.random.default_rng([master, seed, stream]))


@dataclass
class Prepared:
    """Per model seed: the model pre-trained on the real set, the biased and balanced synthetic sets
    S1 and S2 as (X, y), the three dataset gradients (eqs. 1-3) and the seconds the gradients and
    the mask took."""

    pretrained: dict
    S1: dict
    S2: dict
    grads: dict
    mask_seconds: list


def prepare(recipe: Recipe, R: tuple, pool: tuple, seeds, master: int, n: int, real_ratios, top_k: float,
            level: str, grid=None) -> Prepared:
    """The start of AIM-Fair for every seed: ERM on the real set ``R`` = (X, y) (the models train as
    one grid, :meth:`Recipe.train_many`), S1 with the real set's cell ratios ``real_ratios`` and a
    balanced S2 of ``n`` images each drawn from ``pool`` (streams 12 and 11 of
    :func:`pool_draw`), the gradients on R, S1 and S2, and the mask (eqs. 4-5, timed; the chapter
    recomputes masks from ``grads`` as it needs them)."""
    pretrained = dict(zip(seeds, recipe.train_many([Job(*R, seed=s) for s in seeds], grid)))
    out = Prepared(pretrained, {}, {}, {}, [])
    for s in seeds:
        out.S1[s] = pool_draw(pool, real_ratios, n, master, s, 12)[:2]
        out.S2[s] = pool_draw(pool, balanced_ratios(), n, master, s, 11)[:2]
        t = time.perf_counter()
        out.grads[s] = recipe.gradients(pretrained[s], R, out.S1[s], out.S2[s], s)
        recipe.mask(pretrained[s], out.grads[s], top_k, level)
        out.mask_seconds.append(time.perf_counter() - t)
    return out


def condition_judge(X, labels, *, channels=(8, 16, 32), batch_size: int = 128, epochs: int = 3,
                    seed: int = 0) -> nn.Module:
    """A two-class :class:`fairbook.models.SmallCNN` trained on real images (Adam 2e-3, ``epochs``,
    last epoch kept) to read one condition (the target or the colour) off synthetic samples: the
    quality report's "recognised" shares."""
    m = train.seeded(lambda: models.SmallCNN(3, 2, tuple(channels)), seed)
    train.fit(m, X, labels, epochs=epochs, batch_size=batch_size, optim=train.Optim("adam", lr=2e-3),
              select=None, seed=seed)
    return m


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
