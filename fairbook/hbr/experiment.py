"""The HBR chapter's experiments (Pukowski & Osmani, appendices A-C), built on the method of
:mod:`fairbook.hbr.hardness` and :mod:`fairbook.hbr.resampling`.

* models: :class:`Recipe` (the training settings of every model), :func:`train_ensemble` (the AUM
  ensemble of appendix A), :func:`class_scores`;
* the paired design: :func:`pair_logits` / :func:`pair_task` (one grid task per dataset replicate
  i, the seeds of appendix B, :mod:`fairbook.hbr.design`), :func:`score_logits`, :func:`pair_scores`
  and :func:`ttest_table` (the paper's naive model-level tests of appendix C);
* datasets: :func:`per_class_subset` (the balanced D), :func:`prune_per_class` (case study 1's
  class-level pruning), :func:`holdout_reserve`, :func:`holdout_shortfall`, :func:`plan_table`;
* the case studies: :func:`case_study_1` (holdout), :func:`case_study_2` (no holdout, generated
  pool), each a :class:`Study`;
* the generated pool: :func:`generated_pool` (a conditional DDPM on D), :func:`resolve_pool` (an EDM
  ``.npz``), :func:`check_pool`.

The analysis of a :class:`Study` at the unit of the resampled dataset is in
:mod:`fairbook.hbr.analysis`; the class-bias metrics (eqs. 7-11) in :mod:`fairbook.metrics`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .. import grid as grids
from .. import metrics, models, train
from ..generative import ddpm
from . import design
from .hardness import AUMTracker
from .resampling import (Pool, class_weights, induced_imbalance, logit_offsets, parse_strategy, resample,
                         resampling_counts, uses_pool)

__all__ = ["BIAS_METRICS", "Recipe", "Ensemble", "train_ensemble", "class_scores", "bias_metrics", "pair_logits",
           "pair_task", "score_logits", "pair_scores", "ttest_table", "per_class_subset", "prune_per_class",
           "holdout_reserve", "holdout_shortfall", "plan_table", "Study", "case_study_1", "case_study_2",
           "resolve_pool", "generated_pool", "check_pool"]

#: The class-bias metrics of HBR eqs. 7-11 (:func:`fairbook.metrics.class_bias_report`), as the tables name them.
BIAS_METRICS = ("delta_m", "delta_q", "delta_he", "delta_sigma", "delta_mad")


# --- models ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """Model and training schedule of every model in the chapter (one engine: :func:`train.fit`).

    ``model``: ``mlp`` (hidden ``widths``), ``cnn`` (:class:`models.SmallCNN`) or ``resnet18`` (the
    CIFAR ResNet-18 of the paper). ``milestones`` with ``gamma`` give the multistep schedule (the
    paper: ×0.2 at epochs 60/120/160 of 200); ``augment`` adds random crop + flip; ``channel_stats``
    standardises the inputs with the dataset's channel means and standard deviations (the paper).
    """

    model: str = "mlp"
    widths: tuple[int, ...] = (256,)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.2
    augment: bool = False
    channel_stats: tuple | None = None  # (mean, std) per channel: standardise inputs first
    device: str = "auto"

    def build(self, in_shape, n_classes: int) -> torch.nn.Module:
        if self.model == "mlp":
            net = models.MLP(int(np.prod(in_shape)), self.widths, n_classes)
        elif self.model == "cnn":
            net = models.SmallCNN(in_shape[0], n_classes)
        elif self.model == "resnet18":
            net = models.cifar_resnet18(n_classes)
        else:
            raise ValueError(f"model must be one of mlp, cnn, resnet18, got {self.model!r}")
        if self.channel_stats is None:
            return net
        return torch.nn.Sequential(models.Standardize(*self.channel_stats), net)

    def fit(self, X, y, seed: int, n_classes: int, on_logits: Callable | None = None,
            class_weight=None) -> torch.nn.Module:
        return self.fit_many([(X, y)], [seed], n_classes, on_logits=[on_logits], class_weight=class_weight)[0]

    def fit_many(self, datasets, seeds: Sequence[int], n_classes: int, on_logits=None,
                 class_weight=None) -> list[torch.nn.Module]:
        """One model per ``(X, y)`` of ``datasets`` and seed, trained together
        (:func:`fairbook.train.fit_many`: equal to separate fits; one after another where the
        models cannot be batched)."""
        shape = tuple(datasets[0][0].shape[1:])
        models_ = [train.seeded(lambda: self.build(shape, n_classes), s) for s in seeds]
        sched = (train.Schedule("multistep", self.milestones, self.gamma) if self.milestones
                 else train.Schedule())
        return [r.model for r in train.fit_many(
            models_, datasets, seeds=list(seeds), epochs=self.epochs, batch_size=self.batch_size,
            optim=train.Optim(self.optimizer, self.lr, self.momentum, self.nesterov, self.weight_decay),
            schedule=sched, select=None, on_logits=on_logits, class_weight=class_weight,
            augment=train.random_crop_flip if self.augment else None, device=self.device, desc="hbr")]


@dataclass
class Ensemble:
    """Baseline models trained on the balanced data, with the AUM of every training sample."""

    models: list[torch.nn.Module]
    aum: np.ndarray  # mean over models of each sample's AUM
    aum_per_model: np.ndarray = field(repr=False)


def train_ensemble(recipe: Recipe, X, y, seeds: Sequence[int], n_classes: int) -> Ensemble:
    """Train one model per seed on ``(X, y)`` and average their AUMs (appendix A: ten models)."""
    trackers = [AUMTracker(len(y)) for _ in seeds]
    nets = recipe.fit_many([(X, y)] * len(seeds), seeds, n_classes, on_logits=trackers)
    aums = np.array([t.values for t in trackers])
    return Ensemble(nets, aums.mean(0), aums)


def class_scores(model: torch.nn.Module, X, y, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class recall and precision of ``model`` on ``(X, y)`` (NaN precision if never predicted)."""
    pred = train.predict(train.logits_of(model, X)).numpy()
    return (metrics.per_class_recall(y, pred, n_classes),
            metrics.per_class_precision(y, pred, n_classes))


def bias_metrics(r, easy, hard, k: int) -> dict[str, float]:
    """Δm, Δq, Δhe, Δσ, ΔMAD and the class average of one per-class score vector (eqs. 7-11)."""
    return metrics.class_bias_report(r, k=k, easy=easy, hard=hard, nan_ok=True)


# --- the pairs of appendices B-C: base and resampled models with the same seeds ----------------------
def pair_logits(recipe: Recipe, datasets, test_X, n_models: int, n_classes: int, progress=None,
                class_weight=None, grid=None) -> dict[tuple[int, int], torch.Tensor]:
    """Train ``n_models`` models on each dataset i with the seeds of appendix B (``seed_model(i, j)``)
    and return their test logits, keyed by (i, j). With a :class:`fairbook.grid.Grid`, each dataset
    is one task of :func:`pair_task` on its executor (cached); without, they train here one by one."""
    if grid is not None:
        tasks = [{"X": X, "y": y, "i": i} for i, (X, y) in enumerate(datasets)]
        shared = {"recipe": recipe, "test_X": test_X, "n_models": n_models, "n_classes": n_classes,
                  "class_weight": class_weight}
        done = grids.run(pair_task, tasks, grid, shared=shared, desc="hbr pairs")
        if progress is not None:
            for _ in range(len(tasks) * n_models):
                progress()
        return {(i, j): z for i, zs in enumerate(done) for j, z in enumerate(zs)}
    out = {}
    for i, (X, y) in enumerate(datasets):
        for j, z in enumerate(pair_task(recipe, X, y, test_X, i, n_models, n_classes, class_weight)):
            out[i, j] = z
            if progress is not None:
                progress()
    return out


def pair_task(recipe: Recipe, X, y, test_X, i: int, n_models: int, n_classes: int,
              class_weight=None) -> list[torch.Tensor]:
    """Test logits of the ``n_models`` models of dataset ``i`` (seeds ``design.model_seed(i, j)``)."""
    models_ = recipe.fit_many([(X, y)] * n_models, [design.model_seed(i, j) for j in range(n_models)],
                              n_classes, class_weight=class_weight)
    return [train.logits_of(model, test_X) for model in models_]


def score_logits(logits: dict, test_y, n_classes: int, easy, hard, k: int, label: str,
                 offset=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the test logits of :func:`pair_logits` (shifted by ``offset`` per class if given).

    Returns (scores, confusion): one row per (i, j, score) with score ``recall`` or ``precision``,
    the bias metrics and ``c0 …`` per class; and one row per (i, j) with the flattened confusion
    matrix (``n_true_pred`` columns: test samples of class true predicted as pred)."""
    y = np.asarray(test_y)
    shift = None if offset is None else torch.as_tensor(np.asarray(offset, dtype=np.float32))
    rows, conf = [], []
    for (i, j), z in logits.items():
        pred = train.predict(z if shift is None else z + shift).numpy()
        seed = design.model_seed(i, j)
        rec = metrics.per_class_recall(y, pred, n_classes)
        prec = metrics.per_class_precision(y, pred, n_classes)
        for score, r in (("recall", rec), ("precision", prec)):
            rows.append({"setting": label, "i": i, "j": j, "model_seed": seed, "score": score,
                         **bias_metrics(r, easy, hard, k), **{f"c{c}": v for c, v in enumerate(r)}})
        cm = np.bincount(y * n_classes + pred, minlength=n_classes ** 2)
        conf.append({"i": i, "j": j, **{f"n_{t}_{q}": int(cm[t * n_classes + q])
                                         for t in range(n_classes) for q in range(n_classes)}})
    return pd.DataFrame(rows), pd.DataFrame(conf)


def pair_scores(recipe: Recipe, datasets: Sequence[tuple[np.ndarray, np.ndarray]], test, n_models: int,
                n_classes: int, easy, hard, k: int, label: str, progress=None) -> pd.DataFrame:
    """Train ``n_models`` models on each dataset i with the seeds of appendix B and score them.

    Returns one row per (i, j, score) with score ``recall`` or ``precision`` and the bias metrics; the
    rows of two calls with the same (i, j) are the pairs of :func:`ttest_table`.
    """
    logits = pair_logits(recipe, datasets, test[0], n_models, n_classes, progress)
    return score_logits(logits, test[1], n_classes, easy, hard, k, label)[0]


def ttest_table(base: pd.DataFrame, resampled: pd.DataFrame, alternative: str = "two-sided") -> pd.DataFrame:
    """Paired t-tests (HBR appendix C) of every bias metric and the class average, over all pairs.

    Two-sided by default, as the authors' code calls ``scipy.stats.ttest_rel`` (the paper's text
    describes a one-sided alternative).

    ``t > 0`` means resampling reduced the gap (Δ metrics) or raised the average; pairs are matched
    on (i, j, score). Returns rows (score, metric, t, p, base mean, resampled mean, significant).
    """
    key = ["i", "j", "score"]
    merged = base.merge(resampled, on=key, suffixes=("_base", "_res"))
    if len(merged) != len(base) or len(merged) != len(resampled):
        raise ValueError("base and resampled rows must pair one to one on (i, j, score)")
    rows = []
    for score, grp in merged.groupby("score", sort=False):
        for m in BIAS_METRICS + ("avg",):
            b, r = grp[f"{m}_base"].to_numpy(), grp[f"{m}_res"].to_numpy()
            ok = ~(np.isnan(b) | np.isnan(r))
            if ok.sum() < 2:
                t = p = float("nan")
            else:
                res = design.improvement_ttest(b[ok], r[ok], lower_is_better=(m != "avg"), alternative=alternative)
                t, p = res.statistic, res.pvalue
            rows.append({"score": score, "metric": m, "t": t, "p": p, "base": float(np.nanmean(b)),
                         "resampled": float(np.nanmean(r)), "n": int(ok.sum()),
                         "significant": bool(p < 0.05) if not math.isnan(p) else False})
    return pd.DataFrame(rows)


# --- datasets: the balanced D, pruning (case study 1), the holdout -----------------------------------
def per_class_subset(y, n_per_class: int, seed: int) -> np.ndarray:
    """Positions of ``n_per_class`` random samples of every class (all of them for 0): a balanced D."""
    y = np.asarray(y)
    if n_per_class == 0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < n_per_class:
            raise ValueError(f"class {c} has {len(idx)} samples, fewer than n_per_class={n_per_class}")
        out.append(rng.choice(idx, n_per_class, replace=False))
    return np.sort(np.concatenate(out))


def prune_per_class(y, rate: float, seed: int, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class-level pruning (case study 1): keep ``round((1 - rate) a_c)`` random samples per class.

    Returns (kept positions, holdout positions); the holdout is the rest of each class.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"pruning rate must lie in [0, 1), got {rate}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in range(int(y.max()) + 1 if n_classes is None else n_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round((1 - rate) * len(idx)))
        kept.append(idx[:k])
        held.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def holdout_reserve(y_full, taken, n_per_class: int, seed: int, n_classes: int | None = None) -> np.ndarray:
    """Positions of ``n_per_class`` samples per class of the full training split that are not in D
    (``taken``): real draws from D's distribution that case study 1's holdout may use besides the
    pruned-away part of D. Empty when ``n_per_class`` is 0."""
    y_full = np.asarray(y_full)
    free = np.ones(len(y_full), dtype=bool)
    free[np.asarray(taken, dtype=np.int64)] = False
    if n_per_class == 0:
        return np.array([], dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = []
    for c in range(int(y_full.max()) + 1 if n_classes is None else n_classes):
        idx = np.flatnonzero(free & (y_full == c))
        if len(idx) < n_per_class:
            raise ValueError(f"class {c} has {len(idx)} training samples outside D, fewer than the "
                             f"holdout reserve of {n_per_class}")
        out.append(rng.choice(idx, n_per_class, replace=False))
    return np.sort(np.concatenate(out))


def holdout_shortfall(class_aum, n_per_class: int, rate: float, f: str = "identity", reserve_per_class: int = 0,
                      rounding: str = "paper") -> int:
    """How many more samples the hardest class needs than its holdout holds at pruning ``rate``: the
    pruned-away ``n_per_class − kept`` plus ``reserve_per_class`` real samples from outside D
    (> 0: case study 1's holdout strategy is impossible at that rate; the paper omits rates below
    33% for this reason)."""
    kept = int(round((1 - rate) * n_per_class))
    counts = resampling_counts(class_aum, np.full(len(class_aum), kept), 1.0, f, rounding)
    return int((counts - kept).max() - (n_per_class - kept) - reserve_per_class)


def plan_table(a, counts) -> pd.DataFrame:
    """Per class: a_c, b'_c, how many samples undersampling removes and oversampling adds."""
    a, b = np.asarray(a), np.asarray(counts)
    return pd.DataFrame({"class": np.arange(len(b)), "a": a, "b": b, "removed": np.maximum(a - b, 0),
                         "added": np.maximum(b - a, 0)})


# --- case studies 1 and 2 ----------------------------------------------------------------------------
@dataclass
class Study:
    """What a case study produced: per-model scores, t-tests, the resampling plan per setting, what
    each resampling did to the data, and every model's test confusion matrix."""

    scores: pd.DataFrame
    tests: pd.DataFrame
    plan: pd.DataFrame
    imbalance: pd.DataFrame
    confusion: pd.DataFrame


def _run(recipe, base_sets, variants, test, n_models, n_classes, k, progress, grid=None) -> Study:
    """Train the base models of each level once and every variant's models with the same (i, j)
    seeds, then score them. ``base_sets(level)`` and each variant's ``sets()`` yield datasets lazily,
    so that only one dataset is in memory at a time (CIFAR copies are large). ``reweight`` variants
    train on the base datasets with class weights; ``logit-adjust`` variants reuse the base models'
    test logits."""
    scores, tests, plans, moved, confusion = [], [], [], [], []
    base_logits: dict = {}
    tagged = set()
    for level, parameter, strategy, a, counts, sets in variants:
        easy, hard = metrics.easy_hard_classes(counts)
        if level not in base_logits:
            base_logits[level] = pair_logits(recipe, base_sets(level), test[0], n_models, n_classes, progress,
                                             grid=grid)
        base, base_cm = score_logits(base_logits[level], test[1], n_classes, easy, hard, k, "base")
        if (level, parameter) not in tagged:  # the same base models, listed under every setting they serve
            tagged.add((level, parameter))
            scores.append(base.assign(level=level, strategy="none", parameter=parameter))
            confusion.append(base_cm.assign(level=level, strategy="none", parameter=parameter))
        mode = parse_strategy(strategy)[0]
        if mode == "logit":
            logits, offset = base_logits[level], logit_offsets(a, counts)
        elif mode == "reweight":
            logits = pair_logits(recipe, base_sets(level), test[0], n_models, n_classes, progress,
                                 class_weight=class_weights(a, counts), grid=grid)
            offset = None
        else:
            logits, offset = pair_logits(recipe, sets(), test[0], n_models, n_classes, progress, grid=grid), None
        res, cm = score_logits(logits, test[1], n_classes, easy, hard, k, strategy, offset)
        tag = dict(level=level, strategy=strategy, parameter=parameter)
        scores.append(res.assign(**tag))
        confusion.append(cm.assign(**tag))
        tests.append(ttest_table(base, res).assign(**tag))
        plans.append(plan_table(a, counts).assign(**tag))
        moved.append({**tag, **induced_imbalance(a, counts, strategy)})
    return Study(pd.concat(scores, ignore_index=True), pd.concat(tests, ignore_index=True),
                 pd.concat(plans, ignore_index=True), pd.DataFrame(moved),
                 pd.concat(confusion, ignore_index=True))


def _variant_sets(counts, strategy, pools, n_classes):
    """The resampled datasets of one (setting, strategy), lazily: dataset i from its ``pools[i]``
    (a :class:`~fairbook.hbr.resampling.Pool` or None) with resampling seed 42·i; None for the
    training-time controls."""
    if parse_strategy(strategy)[0] in ("reweight", "logit"):
        return None

    def sets():
        for i, (Xi, yi, ai, pool) in enumerate(pools()):
            yield resample(Xi, yi, ai, counts, strategy, design.resample_seed(i), pool, n_classes)[:2]
    return sets


def case_study_1(recipe: Recipe, X, y, aum, class_aum, test, rates: Sequence[float],
                 strategies: Sequence[str], n_datasets: int, n_models: int, n_classes: int, k: int,
                 f: str = "identity", progress=None, reserve: tuple | None = None,
                 rounding: str = "paper", grid=None) -> Study:
    """Case study 1 (HBR §3.1.1, appendices A-B): class-level pruning at each rate with the pruning
    seed 42·i, then HBR with α = 1 on D^CLP, oversampling with ``strategies`` (``holdout`` draws from
    the pruned-away samples, plus ``reserve = (X_r, y_r)``: more real samples of the same
    distribution outside D, when D alone cannot hold out enough). AUM is the full-data estimate
    throughout, as the paper does. The base and every resampled model of dataset i start from the
    same pruned subset D^CLP_i.
    """
    def parts(rate):
        return [prune_per_class(y, rate, design.prune_seed(i), n_classes) for i in range(n_datasets)]

    def base_sets(rate):
        return ((X[kept], y[kept]) for kept, _ in parts(rate))

    def holdout(held):
        if reserve is None:
            return Pool(X[held], y[held])
        return Pool(np.concatenate([X[held], reserve[0]]), np.concatenate([y[held], reserve[1]]))

    def variants():
        for rate in rates:
            a = np.bincount(y[parts(rate)[0][0]], minlength=n_classes)
            counts = resampling_counts(class_aum, a, 1.0, f, rounding)
            for strategy in strategies:
                uses_holdout = parse_strategy(strategy)[1] == "holdout"

                def pools(rate=rate, uses_holdout=uses_holdout):
                    for kept, held in parts(rate):
                        yield X[kept], y[kept], aum[kept], holdout(held) if uses_holdout else None
                yield rate, rate, strategy, a, counts, _variant_sets(counts, strategy, pools, n_classes)

    return _run(recipe, base_sets, variants(), test, n_models, n_classes, k, progress, grid)


def case_study_2(recipe: Recipe, X, y, aum, class_aum, test, alphas: Sequence[float],
                 strategies: Sequence[str], n_datasets: int, n_models: int, n_classes: int, k: int,
                 pool: Pool | None = None, f: str = "identity", progress=None,
                 rounding: str = "paper", grid=None) -> Study:
    """Case study 2 (HBR §3.1.1): HBR on the whole balanced D for each α, no holdout; the i-th
    resampled dataset uses resampling seed 42·i; base models are trained on D with seeds (i, j)."""
    a = np.bincount(y, minlength=n_classes)

    def base_sets(level):
        return ((X, y) for _ in range(n_datasets))

    def pools():
        return ((X, y, aum, pool) for _ in range(n_datasets))

    def variants():
        for alpha in alphas:
            counts = resampling_counts(class_aum, a, alpha, f, rounding)
            for strategy in strategies:
                yield "D", alpha, strategy, a, counts, _variant_sets(counts, strategy, pools, n_classes)

    return _run(recipe, base_sets, variants(), test, n_models, n_classes, k, progress, grid)


# --- the generated pool of case study 2 --------------------------------------------------------------
def resolve_pool(pool: str, data_root: str | None = None):
    """The EDM ``.npz`` named by ``pool``: as given, else under ``data_root``, else under
    ``$FAIRBOOK_DATA``; None when it is in none of these places."""
    bases = [Path()] + [Path(b) for b in (data_root, os.environ.get("FAIRBOOK_DATA")) if b]
    for base in bases:
        path = (base / Path(pool).expanduser()).resolve()
        if path.is_file():
            return path
    return None


def generated_pool(dataset: str, X, y, n_classes: int, classes: Sequence[int], n_per_class: int, seed: int,
                   ddpm_steps: int, sample_steps: int, guidance: float, log=None, sampler: str = "ddim",
                   precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """The chapter's stand-in for the EDM images: a class-conditional DDPM trained on D itself and
    ``n_per_class`` samples of each of ``classes`` — both cached (``fairbook.generative.ddpm``).
    Returns uint8 images (N, H, W, C) and labels, the layout of the EDM ``.npz``."""
    gen = ddpm.cached_generator(dataset, f"hbr-D{len(y)}", X, y, n_classes,
                                ddpm.DDPMConfig(steps=ddpm_steps, seed=seed), log=log)
    return ddpm.cached_pool(gen, n_per_class, steps=sample_steps, guidance=guidance, seed=seed,
                            sampler=sampler, precision=precision,
                            conditions=list(classes), log=log)


def check_pool(pool: Pool, X, y, aum, counts_by_alpha: dict, strategies: Sequence[str], n_classes: int) -> None:
    """Raise a clear error, before any training, when a pool strategy cannot fill some class at
    some α (e.g. hcEDM when too few generated images are recognised as their class)."""
    for alpha, counts in counts_by_alpha.items():
        for s in strategies:
            if uses_pool(s):
                try:
                    resample(X, y, aum, counts, s, 0, pool, n_classes)
                except ValueError as e:
                    raise ValueError(f"cs2_strategies: {s!r} cannot run at α = {alpha:g}: {e}; use a smaller "
                                     f"α, a larger pool_per_class, or leave {s!r} out") from None
