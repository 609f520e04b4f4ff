"""Hardness-Based Resampling (Pukowski & Osmani, "Reducing class bias in data-balanced datasets
through hardness-based resampling"): hardness estimates, the resampling allocation, under- and
oversampling, and the paired experiment design of the paper's appendices B-C.

* hardness: :func:`margins` (eq. 2), :class:`AUMTracker` (AUM, eq. 3, from the engine's logits hook),
  :func:`ensemble_confidence` (eq. 1), :func:`class_hardness` (eq. 4);
* allocation: :func:`resampling_counts` (eqs. 5-6 with the offset and inversion of appendix A);
* resampling: :func:`resample` — remove the easiest samples of shrinking classes, then add samples to
  growing classes by ``random`` duplication, ``smote`` (imbalanced-learn), ``holdout`` (case study 1)
  or a generated pool: ``rEDM``, ``aEDM``, ``hEDM`` (appendix A);
* experiments: :class:`Recipe`, :func:`train_ensemble`, :func:`evaluate_pairs`, :func:`ttest_table`
  (the paper's naive model-level tests);
* analysis at the unit of the resampled dataset: :func:`paired_changes`, :func:`dataset_ttest`,
  :func:`table_tests` (the Table D1-D6 analogs, Holm within a table); the paper's claims are in
  :mod:`fairbook.hbr_claims`.

The class-bias metrics themselves (eqs. 7-11) live in :mod:`fairbook.metrics`, the t-test and seed
scheme in :mod:`fairbook.stats`.
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

from . import metrics, models, stats, train
from .generative.quality import confidence

#: Oversamplers (with undersampling of the easy classes: the paper's HBR).
STRATEGIES = ("random", "smote", "holdout", "rEDM", "aEDM", "hEDM", "hcEDM")
POOL_STRATEGIES = ("rEDM", "aEDM", "hEDM", "hcEDM")
#: Controls the paper lacks (see :func:`parse_strategy`); ``over-only-<oversampler>`` is one too.
CONTROLS = ("under-only", "reweight", "logit-adjust")
ROUNDINGS = ("paper", "authors")
BIAS_METRICS = ("delta_m", "delta_q", "delta_he", "delta_sigma", "delta_mad")


def parse_strategy(name: str) -> tuple[str, str | None]:
    """What a strategy name asks for: ``(mode, oversampler)``.

    * an oversampler of :data:`STRATEGIES` -> ``("both", name)``: the paper's HBR, the easiest samples
      of easy classes removed and the hard classes filled up by that oversampler;
    * ``under-only`` -> ``("under", None)``: the undersampling half alone (the authors' code:
      ``--oversampling none``);
    * ``over-only-<oversampler>`` -> ``("over", oversampler)``: the oversampling half alone
      (``--undersampling none``);
    * ``reweight`` -> ``("reweight", None)``: no resampling; the loss of class c weighted by b'_c / a_c;
    * ``logit-adjust`` -> ``("logit", None)``: no retraining; the base models' logits shifted by
      log(b'_c / a_c), the class-prior change the resampling makes.
    """
    if name in STRATEGIES:
        return "both", name
    if name == "under-only":
        return "under", None
    if name == "reweight":
        return "reweight", None
    if name == "logit-adjust":
        return "logit", None
    if name.startswith("over-only-") and name[len("over-only-"):] in STRATEGIES:
        return "over", name[len("over-only-"):]
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES + CONTROLS)} or over-only-<one of "
                     f"{', '.join(STRATEGIES)}>, got {name!r}")


def uses_pool(strategy: str) -> bool:
    """Whether ``strategy`` draws from a generated pool (rEDM, aEDM, hEDM, hcEDM, or over-only-one of them)."""
    return parse_strategy(strategy)[1] in POOL_STRATEGIES


def class_weights(a, counts) -> np.ndarray:
    """Loss weights of the ``reweight`` control: w_c = b'_c / a_c, so that each class carries the
    weight it would have after resampling to ``counts`` (in expectation over batches)."""
    a, b = np.asarray(a, dtype=float), np.asarray(counts, dtype=float)
    if a.shape != b.shape or (a < 1).any() or (b < 1).any():
        raise ValueError(f"a and counts must be positive counts of the same classes, got {a}, {b}")
    return b / a


def logit_offsets(a, counts) -> np.ndarray:
    """Post-hoc logit adjustment of the ``logit-adjust`` control: log(b'_c / a_c) added to logit c.

    A model's logits carry the log class prior of its training data; resampling from ``a`` to
    ``counts`` changes that prior by exactly this offset (Menon et al. 2021, logit adjustment)."""
    return np.log(class_weights(a, counts))


# --- hardness ------------------------------------------------------------------------------------------
def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Margin M(x, ŷ) = z_ŷ(x) − max_{i≠ŷ} z_i(x) on the logits (HBR eq. 2)."""
    logits = logits.float()
    y = y.long().view(-1, 1)
    true = logits.gather(1, y).squeeze(1)
    other = logits.scatter(1, y, float("-inf")).max(1).values
    return true - other


class AUMTracker:
    """Area under the margin (HBR eq. 3): the mean over epochs of each sample's margin.

    Pass it as ``on_logits`` to :func:`fairbook.train.fit`: it receives the training-mode logits of
    every batch with the samples' ids, as in the authors' code (logits of the augmented batch).
    """

    def __init__(self, n_samples: int):
        self.sums = torch.zeros(n_samples, dtype=torch.float64)
        self.counts = torch.zeros(n_samples, dtype=torch.float64)

    def __call__(self, logits, y, ids, epoch) -> None:
        ids = torch.as_tensor(ids).long().cpu()
        self.sums.index_add_(0, ids, margins(logits, y).double().cpu())
        self.counts.index_add_(0, ids, torch.ones(len(ids), dtype=torch.float64))

    @property
    def values(self) -> np.ndarray:
        if (self.counts == 0).any():
            raise ValueError(f"{int((self.counts == 0).sum())} samples were never seen in training")
        return (self.sums / self.counts).numpy()


def ensemble_confidence(ensemble: Sequence[torch.nn.Module], X, labels) -> np.ndarray:
    """Confidence C = p_ŷ (HBR eq. 1), averaged over an ensemble (appendix A: the baseline models)."""
    return np.mean([confidence(m, X, labels) for m in ensemble], axis=0)


def ensemble_predict(ensemble: Sequence[torch.nn.Module], X) -> np.ndarray:
    """The class an ensemble assigns: argmax of its models' mean softmax."""
    return np.mean([train.logits_of(m, X).softmax(1).numpy() for m in ensemble], 0).argmax(1)


def class_hardness(h, y, n_classes: int | None = None) -> np.ndarray:
    """Class-level hardness H_c = mean of h_i over the samples of class c (HBR eq. 4)."""
    h, y = np.asarray(h, dtype=float), np.asarray(y)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"classes without samples: {np.flatnonzero(counts == 0).tolist()}")
    return np.bincount(y, weights=h, minlength=n_classes) / counts


# --- allocation ----------------------------------------------------------------------------------------
def resampling_counts(class_aum, a, alpha: float = 1.0, f: str = "identity",
                      rounding: str = "paper") -> np.ndarray:
    """Samples per class after HBR, b'_c (HBR eqs. 5-6, appendix A).

    ``class_aum`` is the class-level AUM (eq. 4; high = easy). As the authors do, every value is
    offset by ``-min + 1e-4`` when the minimum is negative, then inverted (hardness = 1 / AUM), so that
    harder classes receive more samples. For the identity ``f`` (the paper's choice) the share of
    class c is ``H_c / Σ H`` of the total ``Σ a``; for ``f = "log"`` the literal eq. 5 would shrink
    the dataset to a few samples per class, so the log-counts are rescaled to the same total — our
    reading of "a logarithmic f puts more emphasis on easy classes".

    ``rounding="paper"``: eq. 5 ``b_c = ceil(f(H_c / Σ H · Σ a))`` and eq. 6
    ``b'_c = a_c + floor(α (b_c − a_c))``, for every α ≥ 0.
    ``rounding="authors"``: the authors' code (``compute_sample_allocation_after_resampling``):
    ``b_c = round(share · Σ a)`` (half to even), and only when α > 1 the stretch around one shared
    anchor ``m = int(mean b)``: ``b'_c = m ± int(α |b_c − m|)``; α ≤ 1 gives the α = 1 counts. Their
    code lets counts go negative at large α; here any count < 1 is an error in both modes.
    """
    h = np.asarray(class_aum, dtype=float)
    a = np.broadcast_to(np.asarray(a, dtype=np.int64), h.shape)
    if h.ndim != 1 or h.size < 2 or not np.isfinite(h).all():
        raise ValueError(f"class_aum must be a finite vector of >= 2 classes, got {h}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if f not in ("identity", "log"):
        raise ValueError(f"f must be 'identity' or 'log', got {f!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    if h.min() <= 0:
        h = h - h.min() + 1e-4
    hardness = 1.0 / h
    n = hardness / hardness.sum() * a.sum()
    if f == "log":
        n = np.log1p(n)
        n = n / n.sum() * a.sum()
    if rounding == "paper":
        b = np.ceil(n - 1e-9).astype(np.int64)  # 1e-9: 1000.0000000001 from float noise is 1000
        out = a + np.floor(alpha * (b - a) + 1e-9).astype(np.int64)
    else:
        out = np.array([int(round(v)) for v in n], dtype=np.int64)
        if alpha > 1:
            m = int(np.mean(out))
            out = np.array([m + int(alpha * abs(v - m)) if v > m else m - int(alpha * abs(v - m)) for v in out],
                           dtype=np.int64)
    if (out < 1).any():
        raise ValueError(f"alpha={alpha} leaves classes {np.flatnonzero(out < 1).tolist()} without "
                         f"samples (b' = {out.tolist()}); use a smaller alpha")
    return out


def induced_imbalance(a, counts, strategy: str = "random") -> dict:
    """What a resampling does to the data: the largest and smallest b'_c / a_c of the target
    allocation, and how many samples ``strategy`` actually removes and adds (``reweight`` and
    ``logit-adjust`` move none; ``under-only`` only removes, ``over-only-*`` only adds)."""
    a, b = np.asarray(a, dtype=float), np.asarray(counts, dtype=float)
    mode = parse_strategy(strategy)[0]
    removed = int(np.maximum(a - b, 0).sum()) if mode in ("both", "under") else 0
    added = int(np.maximum(b - a, 0).sum()) if mode in ("both", "over") else 0
    return {"max_ratio": float((b / a).max()), "min_ratio": float((b / a).min()), "removed": removed,
            "added": added, "moved": removed + added}


# --- resampling ----------------------------------------------------------------------------------------
def easiest_kept(aum, keep: int) -> np.ndarray:
    """Positions of the ``keep`` hardest samples (lowest AUM): undersampling drops the easiest."""
    order = np.argsort(-np.asarray(aum), kind="stable")  # easiest first
    return np.sort(order[len(order) - keep:])


def pool_candidates(strategy: str, pool_confidence, n: int, target: float | None = None,
                    correct=None) -> np.ndarray:
    """Candidate pool positions for ``n`` extra samples of one class (HBR appendix A).

    ``rEDM``: the whole pool; ``aEDM``: the 2n samples whose confidence is closest to ``target`` (the
    class's mean confidence on real training data); ``hEDM``: the 2n least confident (hardest).
    ``hcEDM`` (this book's variant): the 2n least confident among the images the baseline ensemble
    assigns to their own class (``correct``, a boolean mask) — hard, but recognisably of their class.
    """
    conf = np.asarray(pool_confidence, dtype=float)
    if strategy == "rEDM":
        return np.arange(len(conf))
    k = min(2 * n, len(conf))
    if strategy == "aEDM":
        if target is None:
            raise ValueError("aEDM needs the class's mean real confidence (target)")
        return np.argsort(np.abs(conf - target), kind="stable")[:k]
    if strategy == "hEDM":
        return np.argsort(conf, kind="stable")[:k]
    if strategy == "hcEDM":
        if correct is None:
            raise ValueError("hcEDM needs to know which pool images the ensemble assigns to their class")
        ok = np.flatnonzero(np.asarray(correct, dtype=bool))
        return ok[np.argsort(conf[ok], kind="stable")[:min(2 * n, ok.size)]]
    raise ValueError(f"pool strategy must be one of {', '.join(POOL_STRATEGIES)}, got {strategy!r}")


@dataclass
class Pool:
    """Extra samples for oversampling: a holdout set or a generated pool with its confidences."""

    X: np.ndarray
    y: np.ndarray
    confidence: np.ndarray | None = None
    real_confidence: np.ndarray | None = None  # per class: mean confidence of real training data
    correct: np.ndarray | None = None  # per image: the baseline ensemble predicts its label (hcEDM)


def resample(X, y, aum, counts, strategy: str, seed: int, pool: Pool | None = None,
             n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """HBR resampling of ``(X, y)`` to ``counts[c]`` samples per class (HBR §3.1, appendix A).

    Classes that shrink lose their easiest samples (highest ``aum``); classes that grow get
    ``counts[c] - a_c`` extra samples from the oversampler: ``random`` duplication, ``smote``
    (imbalanced-learn, k = 5, pixel space), ``holdout`` (random draws without replacement from
    ``pool``), or a generated ``pool`` with ``rEDM`` / ``aEDM`` / ``hEDM`` / ``hcEDM`` selection.
    ``under-only`` and ``over-only-<oversampler>`` do one half alone (:func:`parse_strategy`).
    Returns the new arrays and a per-class table of what was done. Deterministic for ``seed``.
    """
    mode, over = parse_strategy(strategy)
    if mode not in ("both", "under", "over"):
        raise ValueError(f"strategy {strategy!r} does not resample (it is a training-time control)")
    X, y, aum = np.asarray(X), np.asarray(y), np.asarray(aum, dtype=float)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (n_classes,) or len(aum) != len(y):
        raise ValueError(f"counts must have one entry per class ({n_classes}) and aum one per sample")
    if over in ("holdout",) + POOL_STRATEGIES and pool is None:
        raise ValueError(f"strategy {strategy!r} needs a pool of extra samples")
    rng = np.random.default_rng(seed)
    keep, extra_X, extra_y, rows = [], [], [], []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        a_c = len(idx)
        b_c = int(counts[c]) if mode == "both" else (min(a_c, int(counts[c])) if mode == "under"
                                                     else max(a_c, int(counts[c])))
        need = max(0, b_c - a_c)
        kept = idx[easiest_kept(aum[idx], min(a_c, b_c))]
        keep.append(kept)
        if need and over == "random":
            extra_X.append(X[rng.choice(idx, need, replace=True)])
        elif need and over in ("holdout",) + POOL_STRATEGIES:
            where = np.flatnonzero(pool.y == c)
            if over == "holdout":
                cand = np.arange(len(where))
            else:
                if pool.confidence is None and over != "rEDM":
                    raise ValueError(f"{over} needs the pool's confidences")
                target = None if pool.real_confidence is None else pool.real_confidence[c]
                conf = np.zeros(len(where)) if pool.confidence is None else pool.confidence[where]
                correct = None if pool.correct is None else pool.correct[where]
                cand = pool_candidates(over, conf, need, target, correct)
            if len(cand) < need:
                raise ValueError(f"class {c} needs {need} extra samples but the {over} pool has "
                                 f"{len(cand)}")
            extra_X.append(pool.X[where[rng.choice(cand, need, replace=False)]])
        if need and over != "smote":
            extra_y.append(np.full(need, c, dtype=y.dtype))
        rows.append({"class": c, "a": a_c, "b": b_c, "removed": max(0, a_c - b_c), "added": need})
    kept = np.concatenate(keep)
    Xk, yk = X[kept], y[kept]
    table = pd.DataFrame(rows)
    if over == "smote":
        Xk, yk = smote(Xk, yk, table["b"].to_numpy(), seed)
    elif extra_X:
        Xk = np.concatenate([Xk] + extra_X)
        yk = np.concatenate([yk] + extra_y)
    table["source"] = strategy
    return Xk, yk, table


def smote(X, y, counts, seed: int, k_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """imbalanced-learn's SMOTE in pixel space up to ``counts[c]`` samples for the growing classes.

    ``seed`` is the resampling seed, so each replicate i gets its own SMOTE draw (the paper calls its
    SMOTE deterministic; with a fixed seed every replicate would share one synthetic set)."""
    from imblearn.over_sampling import SMOTE

    have = np.bincount(y, minlength=len(counts))
    target = {int(c): int(counts[c]) for c in range(len(counts)) if counts[c] > have[c]}
    if not target:
        return X, y
    flat = X.reshape(len(X), -1)
    Xs, ys = SMOTE(sampling_strategy=target, k_neighbors=k_neighbors, random_state=seed).fit_resample(flat, y)
    return Xs.reshape((-1,) + X.shape[1:]).astype(X.dtype, copy=False), ys


# --- experiments ---------------------------------------------------------------------------------------
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
        (:func:`fairbook.batched.fit_many`: equal to separate fits; one after another where the
        models cannot be batched)."""
        from .train import fit_many

        shape = tuple(datasets[0][0].shape[1:])
        models_ = [train.seeded(lambda: self.build(shape, n_classes), s) for s in seeds]
        sched = (train.Schedule("multistep", self.milestones, self.gamma) if self.milestones
                 else train.Schedule())
        return [r.model for r in fit_many(
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


def pair_logits(recipe: Recipe, datasets, test_X, n_models: int, n_classes: int, progress=None,
                class_weight=None, grid=None) -> dict[tuple[int, int], torch.Tensor]:
    """Train ``n_models`` models on each dataset i with the seeds of appendix B (``seed_model(i, j)``)
    and return their test logits, keyed by (i, j). With a :class:`fairbook.grid.Grid`, each dataset
    is one task of :func:`pair_task` on its executor (cached); without, they train here one by one."""
    if grid is not None:
        from . import grid as grids

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
    """Test logits of the ``n_models`` models of dataset ``i`` (seeds ``hbr_model_seed(i, j)``)."""
    models_ = recipe.fit_many([(X, y)] * n_models, [stats.hbr_model_seed(i, j) for j in range(n_models)],
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
        seed = stats.hbr_model_seed(i, j)
        rec = metrics.per_class_recall(y, pred, n_classes)
        prec = metrics.per_class_precision(y, pred, n_classes)
        for score, r in (("recall", rec), ("precision", prec)):
            rows.append({"setting": label, "i": i, "j": j, "model_seed": seed, "score": score,
                         **bias_metrics(r, easy, hard, k), **{f"c{c}": v for c, v in enumerate(r)}})
        cm = np.bincount(y * n_classes + pred, minlength=n_classes ** 2)
        conf.append({"i": i, "j": j, **{f"n_{t}_{q}": int(cm[t * n_classes + q])
                                         for t in range(n_classes) for q in range(n_classes)}})
    return pd.DataFrame(rows), pd.DataFrame(conf)


def evaluate_pairs(recipe: Recipe, datasets: Sequence[tuple[np.ndarray, np.ndarray]], test, n_models: int,
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
                res = stats.hbr_ttest(b[ok], r[ok], lower_is_better=(m != "avg"), alternative=alternative)
                t, p = res.statistic, res.pvalue
            rows.append({"score": score, "metric": m, "t": t, "p": p, "base": float(np.nanmean(b)),
                         "resampled": float(np.nanmean(r)), "n": int(ok.sum()),
                         "significant": bool(p < 0.05) if not math.isnan(p) else False})
    return pd.DataFrame(rows)


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


def plan_table(a, counts) -> pd.DataFrame:
    """Per class: a_c, b'_c, how many samples undersampling removes and oversampling adds."""
    a, b = np.asarray(a), np.asarray(counts)
    return pd.DataFrame({"class": np.arange(len(b)), "a": a, "b": b, "removed": np.maximum(a - b, 0),
                         "added": np.maximum(b - a, 0)})


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


def metric_changes(study: "Study") -> pd.DataFrame:
    """Mean of every metric per (setting, strategy, score) minus the mean of the base models of the
    same setting (Figs. 5, 6, 8: negative = smaller gap for the Δ metrics)."""
    long = study.scores.melt(id_vars=["parameter", "strategy", "score"], value_vars=list(BIAS_METRICS) + ["avg"],
                             var_name="metric")
    means = long.groupby(["parameter", "strategy", "score", "metric"], sort=False)["value"].mean().reset_index()
    base = means[means.strategy == "none"].drop(columns="strategy").rename(columns={"value": "base"})
    out = means[means.strategy != "none"].merge(base, on=["parameter", "score", "metric"], validate="many_to_one")
    out["change"] = out["value"] - out["base"]
    return out


def _variant_sets(counts, strategy, pools, n_classes):
    """The resampled datasets of one (setting, strategy), lazily: dataset i from its ``pools[i]``
    (a :class:`Pool` or None) with resampling seed 42·i; None for the training-time controls."""
    if parse_strategy(strategy)[0] in ("reweight", "logit"):
        return None

    def sets():
        for i, (Xi, yi, ai, pool) in enumerate(pools()):
            yield resample(Xi, yi, ai, counts, strategy, stats.hbr_resample_seed(i), pool, n_classes)[:2]
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
        return [prune_per_class(y, rate, stats.hbr_prune_seed(i), n_classes) for i in range(n_datasets)]

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


def holdout_shortfall(class_aum, n_per_class: int, rate: float, f: str = "identity", reserve_per_class: int = 0,
                      rounding: str = "paper") -> int:
    """How many more samples the hardest class needs than its holdout holds at pruning ``rate``: the
    pruned-away ``n_per_class − kept`` plus ``reserve_per_class`` real samples from outside D
    (> 0: case study 1's holdout strategy is impossible at that rate; the paper omits rates below
    33% for this reason)."""
    kept = int(round((1 - rate) * n_per_class))
    counts = resampling_counts(class_aum, np.full(len(class_aum), kept), 1.0, f, rounding)
    return int((counts - kept).max() - (n_per_class - kept) - reserve_per_class)


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


def check_parameters(values: dict) -> None:
    """Conditions between the chapter's parameters, checked before any kernel starts."""
    from .errors import ParameterError

    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'hbr': {msg}; got {values[name]!r}")

    if values["model"] == "resnet18" and values["dataset"] not in ("cifar10", "cifar100"):
        bad("model", "resnet18 is the CIFAR ResNet-18 (3x32x32 inputs): use it with cifar10 or cifar100")
    if any(m > values["epochs"] for m in values["milestones"]):
        bad("milestones", f"learning-rate milestones must lie within the {values['epochs']} epochs")
    for name in ("cs1_strategies", "cs2_strategies"):
        if len(set(values[name])) != len(values[name]):
            bad(name, "strategies must not repeat")
    if any(parse_strategy(s)[1] == "holdout" for s in values["cs2_strategies"]):
        bad("cs2_strategies", "case study 2 has no holdout set (holdout belongs to cs1_strategies)")
    if any(uses_pool(s) for s in values["cs1_strategies"]):
        bad("cs1_strategies", "generated pools belong to case study 2 (the paper: retraining a generator "
                              "per pruned dataset is out of scope)")
    if values.get("holdout_reserve") and values["n_per_class"] == 0:
        bad("holdout_reserve", "D is the whole training split (n_per_class = 0): no real samples are left "
                               "outside it; use 0")
    if values["pool"] == "ddpm" and values["pool_per_class"] == 0 and any(
            uses_pool(s) for s in values["cs2_strategies"]):
        bad("pool_per_class", "a generated pool needs a size: 0 (all) only applies to an EDM file")
    if values["pool"] != "ddpm" and any(uses_pool(s) for s in values["cs2_strategies"]):
        if resolve_pool(values["pool"], values.get("data_root") or None) is None:
            bad("pool", "must be 'ddpm' (generate with fairbook.generative) or an EDM-style .npz (keys image, "
                        "label), given as a path or relative to data_root or $FAIRBOOK_DATA")


def resolve_pool(pool: str, data_root: str | None = None):
    """The EDM ``.npz`` named by ``pool``: as given, else under ``data_root``, else under
    ``$FAIRBOOK_DATA``; None when it is in none of these places."""
    bases = [Path()] + [Path(b) for b in (data_root, os.environ.get("FAIRBOOK_DATA")) if b]
    for base in bases:
        path = (base / Path(pool).expanduser()).resolve()
        if path.is_file():
            return path
    return None


def input_files(values: dict) -> dict:
    """Files besides the datasets that decide a run's result: the EDM pool, when one is used."""
    if values["pool"] == "ddpm" or not any(uses_pool(s) for s in values["cs2_strategies"]):
        return {}
    return {"pool": resolve_pool(values["pool"], values.get("data_root") or None)}


def generated_pool(dataset: str, X, y, n_classes: int, classes: Sequence[int], n_per_class: int, seed: int,
                   ddpm_steps: int, sample_steps: int, guidance: float, log=None, sampler: str = "ddim",
                   precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """The chapter's stand-in for the EDM images: a class-conditional DDPM trained on D itself and
    ``n_per_class`` samples of each of ``classes`` — both cached (``fairbook.generative.ddpm``).
    Returns uint8 images (N, H, W, C) and labels, the layout of the EDM ``.npz``."""
    from .generative import ddpm

    gen = ddpm.cached_generator(dataset, f"hbr-D{len(y)}", X, y, n_classes,
                                ddpm.DDPMConfig(steps=ddpm_steps, seed=seed), log=log)
    return ddpm.cached_pool(gen, n_per_class, steps=sample_steps, guidance=guidance, seed=seed,
                            sampler=sampler, precision=precision,
                            conditions=list(classes), log=log)


# --- analysis at the unit of the resampled dataset ------------------------------------------------------
def paired_changes(scores: pd.DataFrame, strategy: str, metric: str, score: str,
                   against: str = "none") -> pd.DataFrame:
    """Per (parameter, i, j): how much ``strategy`` improved ``metric`` over ``against`` on the same pair.

    ``scores`` is a :class:`Study`'s ``scores``; ``against`` is ``"none"`` (the base models: the
    paper's pairs of appendix C) or another strategy (two strategies compared pair by pair: the same
    setting, dataset replicate i and model seed j). ``d`` > 0 means ``strategy`` did better: a smaller
    gap for the Δ metrics (``against − strategy``), a larger class average for ``avg``
    (``strategy − against``). Returns columns ``parameter, i, j, d``.
    """
    key = ["parameter", "i", "j"]
    sel = scores[scores["score"] == score]
    a = sel[sel["strategy"] == strategy].set_index(key)[metric].sort_index()
    b = sel[sel["strategy"] == against].set_index(key)[metric].sort_index()
    if a.empty or b.empty:
        raise ValueError(f"no {score} rows for strategy {strategy!r} or {against!r}")
    if not (a.index.is_unique and b.index.is_unique and a.index.equals(b.index)):
        raise ValueError(f"{strategy!r} and {against!r} rows must pair one to one on (parameter, i, j)")
    sign = 1.0 if metric == "avg" else -1.0
    return (sign * (a - b)).rename("d").reset_index()


def dataset_ttest(d, groups) -> dict:
    """Two-sided t-test of mean(d) = 0 at the unit of the dataset replicate (HBR's nested design).

    The models of one resampled dataset share that dataset, so their ``d`` are averaged per group
    first and the test runs over the groups (n = number of datasets, df = n − 1). NaN entries are
    dropped. Returns ``mean``, ``t``, ``p`` (two-sided), ``n`` (datasets); ``t`` and ``p`` are NaN
    with fewer than two datasets or when all dataset means are equal (no spread to test against).
    """
    import scipy.stats as sps

    frame = pd.DataFrame({"d": np.asarray(d, dtype=float), "g": np.asarray(groups)}).dropna()
    x = frame.groupby("g", sort=True)["d"].mean().to_numpy()
    n = x.size
    if n < 2:
        return {"mean": float(x.mean()) if n else math.nan, "t": math.nan, "p": math.nan, "n": n}
    sd = x.std(ddof=1)
    if sd <= 1e-12 * max(1.0, abs(x.mean())):  # every dataset the same (a discrete metric on a small test set): no t-test
        return {"mean": float(x.mean()), "t": math.nan, "p": math.nan, "n": n}
    t = float(x.mean() / (sd / math.sqrt(n)))
    return {"mean": float(x.mean()), "t": t, "p": float(2 * sps.t.sf(abs(t), n - 1)), "n": n}


def table_tests(scores: pd.DataFrame, metrics: Sequence[str] = BIAS_METRICS, alpha: float = 0.05,
                n_boot: int = 2000) -> pd.DataFrame:
    """The t-tests of a Table D1-D6 analog, at the unit of the resampled dataset, Holm within the table.

    One row per (score, metric, parameter, strategy) of ``scores`` (a :class:`Study`'s ``scores``;
    ``metrics`` picks the table: the Δ metrics for D1-D4, ``("avg",)`` for D5-D6). Columns:

    * ``t_naive``, ``p_naive`` -- the paper's analysis (appendix C): the paired t-test over all
      n_datasets × n_models pairs, as if the models of one dataset were independent (they are
      not: with dataset sd = model sd its one-sided version rejects a true null ≈ 16 % of the time
      at nominal 5 %); two-sided, as the authors' code calls ``ttest_rel``;
    * ``mean``, ``t``, ``p``, ``n`` -- :func:`dataset_ttest`: d averaged over the models of each
      dataset, two-sided t-test over the datasets (the paper marks significant changes of either
      sign);
    * ``ci_low``, ``ci_high`` -- the 95 % paired bootstrap interval of the mean change over datasets
      (:func:`fairbook.stats.paired_bootstrap_ci`, percentile, ``n_boot`` resamples of the datasets);
    * ``p_holm`` -- Holm's adjustment of ``p`` over every row of this table; ``significant`` is
      ``p_holm < alpha``.

    d > 0 (and t > 0) means the strategy improved the metric: a smaller gap, a larger average.
    """
    from .claims import holm

    rows = []
    for (score, strategy, parameter), grp in scores[scores.strategy != "none"].groupby(
            ["score", "strategy", "parameter"], sort=False):
        for metric in metrics:
            ch = paired_changes(scores[scores.parameter == parameter], strategy, metric, score)
            ok = ch["d"].notna()
            if ok.sum() >= 2 and ch.loc[ok, "d"].std(ddof=1) > 0:
                naive = stats.paired_ttest(ch.loc[ok, "d"].to_numpy(), np.zeros(int(ok.sum())))
                t_naive, p_naive = float(naive.statistic), float(naive.pvalue)
            else:
                t_naive = p_naive = math.nan
            res = dataset_ttest(ch["d"], ch["i"])
            per_dataset = ch[ok].groupby("i")["d"].mean().to_numpy()
            lo = hi = math.nan
            if per_dataset.size >= 2 and per_dataset.std() > 0:
                ci = stats.paired_bootstrap_ci(per_dataset, np.zeros(per_dataset.size), n_resamples=n_boot,
                                               method="percentile")
                lo, hi = float(ci.low), float(ci.high)
            rows.append({"score": score, "metric": metric, "parameter": parameter, "strategy": strategy,
                         "pairs": int(ok.sum()), "t_naive": t_naive, "p_naive": p_naive, **res,
                         "ci_low": lo, "ci_high": hi})
    out = pd.DataFrame(rows, columns=["score", "metric", "parameter", "strategy", "pairs", "t_naive",
                                      "p_naive", "mean", "t", "p", "n", "ci_low", "ci_high"])
    out["p_holm"] = holm(out["p"]) if len(out) else []
    out["significant"] = out["p_holm"] < alpha
    return out


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


def candidate_sets(pool: Pool, predicted, a, counts, strategy: str, classes=None) -> pd.DataFrame:
    """What a generated-pool strategy can draw from, per oversampled class: the number of extra
    samples it needs (``need``, at least 1 for listed ``classes`` that this allocation does not
    grow), its candidate images (:func:`pool_candidates`), the share the baseline ensemble assigns to
    their own class (``predicted``: its argmax per pool image) and their mean confidence. Empty for
    strategies without a pool."""
    over = parse_strategy(strategy)[1]
    a, counts, predicted = np.asarray(a), np.asarray(counts), np.asarray(predicted)
    classes = np.flatnonzero(counts > a) if classes is None else classes
    rows = []
    for c in classes if over in POOL_STRATEGIES else []:
        where = np.flatnonzero(pool.y == c)
        need = max(int(counts[c] - a[c]), 1)
        conf = np.zeros(len(where)) if pool.confidence is None else pool.confidence[where]
        correct = None if pool.correct is None else pool.correct[where]
        target = None if pool.real_confidence is None else pool.real_confidence[c]
        cand = where[pool_candidates(over, conf, need, target, correct)]
        rows.append({"class": int(c), "strategy": strategy, "need": need, "candidates": len(cand),
                     "recognised as their class": float((predicted[cand] == c).mean()),
                     "mean confidence": float(conf[np.searchsorted(where, cand)].mean())})
    return pd.DataFrame(rows, columns=["class", "strategy", "need", "candidates", "recognised as their class",
                                       "mean confidence"])


def candidate_recognition(pool: Pool, predicted, a, counts, strategy: str) -> float:
    """The share of a generated-pool strategy's candidate images that the baseline ensemble assigns
    to their own class, over the classes the strategy oversamples, each weighted by its number of
    extra samples (:func:`candidate_sets`). NaN for strategies without a pool."""
    t = candidate_sets(pool, predicted, a, counts, strategy)
    return float(np.average(t["recognised as their class"], weights=t["need"])) if len(t) else math.nan


def d_table(tests: pd.DataFrame, imbalance: pd.DataFrame | None, index, columns) -> pd.DataFrame:
    """A Table D1-D6 analog for display: per cell the dataset-level t, ``*`` when Holm-significant
    within the table, and in brackets the paper's naive t; beside them what each resampling did to
    the data (rows/columns ``target b'/a max`` — the allocation's, or for the controls the weight or
    prior ratio — and ``moved`` from a :class:`Study`'s ``imbalance``, and
    ``recognised`` — the share of generated candidates the ensemble assigns to their class — where
    the strategy draws from a generated pool)."""
    cell = [f"{t:.2f}{'*' if sig else ''} ({tn:.2f})" for t, sig, tn in zip(tests.t, tests.significant, tests.t_naive)]
    rows = [tests.assign(cell=cell)]
    extra = {"target b'/a max": ("max_ratio", "{:.2f}"), "moved": ("moved", "{:.0f}"),
             "recognised": ("recognised", "{:.0%}")}
    for score in tests["score"].unique() if imbalance is not None else []:
        for label, (col, fmt) in extra.items():
            if col not in imbalance or imbalance[col].isna().all():
                continue
            part = imbalance[imbalance[col].notna()]
            rows.append(pd.DataFrame({"score": score, "metric": label, "parameter": part["parameter"],
                                      "strategy": part["strategy"],
                                      "cell": [fmt.format(v) for v in part[col]]}))
    return pd.concat(rows, ignore_index=True).pivot_table(index=index, columns=columns, values="cell",
                                                          aggfunc="first", sort=False)


def control_table(tests: pd.DataFrame, avg_tests: pd.DataFrame, imbalance: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, setting): the mean reduction of the recall gap Δhe with its bootstrap interval
    and Holm p (``tests``, :func:`table_tests` of the Δ metrics), the class-averaged recall change
    (``avg_tests``, :func:`table_tests` of ``("avg",)``) and what the strategy did to the data
    (``imbalance``, a :class:`Study`'s): the chapter's comparison of HBR with its controls."""
    he = tests[(tests.metric == "delta_he") & (tests.score == "recall")]
    avg = avg_tests[avg_tests.score == "recall"][["strategy", "parameter", "mean"]].rename(
        columns={"mean": "avg recall change"})
    out = he[["strategy", "parameter", "mean", "ci_low", "ci_high", "p_holm"]].merge(avg, on=["strategy", "parameter"])
    return out.merge(imbalance.drop(columns=["level"]), on=["strategy", "parameter"]).rename(
        columns={"mean": "Δhe reduction"})


# --- mechanism: what the resampled models predict differently (Appendix E) ---------------------------
def prediction_changes(study: Study, strategy: str, n_classes: int) -> pd.DataFrame:
    """Per (parameter, i, j, class): the change of TP, FP and FN (``strategy`` − base on the same
    pair) on the test set, from the confusion matrices of :func:`score_logits` (HBR appendix E:
    oversampled classes are predicted more often — TP and FP up, FN down)."""
    cm = study.confusion
    key = ["parameter", "i", "j"]
    cols = [f"n_{t}_{q}" for t in range(n_classes) for q in range(n_classes)]

    def counts(rows):
        m = rows.set_index(key)[cols].sort_index()
        arr = m.to_numpy().reshape(len(m), n_classes, n_classes)
        tp = np.einsum("ncc->nc", arr)
        return m.index, tp, arr.sum(1) - tp, arr.sum(2) - tp  # TP, FP (column sums), FN (row sums)

    base = cm[cm.strategy == "none"].drop_duplicates(key)
    idx_b, tp_b, fp_b, fn_b = counts(base)
    idx_s, tp_s, fp_s, fn_s = counts(cm[cm.strategy == strategy])
    if not idx_b.equals(idx_s):
        raise ValueError(f"{strategy!r} and the base models must pair one to one on (parameter, i, j)")
    out = []
    for what, d in (("TP", tp_s - tp_b), ("FP", fp_s - fp_b), ("FN", fn_s - fn_b)):
        frame = pd.DataFrame(d, index=idx_b, columns=range(n_classes)).stack().rename("change").reset_index()
        out.append(frame.rename(columns={"level_3": "class"}).assign(count=what))
    return pd.concat(out, ignore_index=True)


def cluster_share(study: Study, strategy: str, cluster, n_classes: int) -> pd.DataFrame:
    """Are the changes boundary shifts inside a confusable ``cluster`` of classes?

    Per (parameter, i, j): ``share`` = the part of the total absolute change of the off-diagonal
    confusion counts (``strategy`` − base) that lies inside the cluster (true and predicted class
    both in it), and ``null`` = the part of the base models' own confusions that lies inside it —
    the share expected if the changes were spread like the existing errors."""
    cm = study.confusion
    key = ["parameter", "i", "j"]
    cols = [f"n_{t}_{q}" for t in range(n_classes) for q in range(n_classes)]
    inside = np.zeros((n_classes, n_classes), dtype=bool)
    inside[np.ix_(list(cluster), list(cluster))] = True
    off = ~np.eye(n_classes, dtype=bool)
    base = cm[cm.strategy == "none"].drop_duplicates(key).set_index(key)[cols].sort_index()
    res = cm[cm.strategy == strategy].set_index(key)[cols].sort_index()
    if not base.index.equals(res.index):
        raise ValueError(f"{strategy!r} and the base models must pair one to one on (parameter, i, j)")
    b = base.to_numpy().reshape(len(base), n_classes, n_classes).astype(float)
    d = np.abs(res.to_numpy().reshape(len(res), n_classes, n_classes) - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (d * (inside & off)).sum((1, 2)) / (d * off).sum((1, 2))
        null = (b * (inside & off)).sum((1, 2)) / (b * off).sum((1, 2))
    return pd.DataFrame({"share": share, "null": null}, index=base.index).reset_index()


def aum_stability(aum_per_model, y, n_classes: int, a, alpha: float = 1.0, f: str = "identity",
                  n_draws: int = 20, seed: int = 0, rounding: str = "paper") -> pd.DataFrame:
    """How the allocation depends on the size of the AUM ensemble (the paper: "10 models suffice").

    For each ensemble size k < K (K = the models trained), up to ``n_draws`` random k-subsets of the
    models: class AUM (eq. 4) from their mean AUM, compared with the full K-model ensemble — the
    Spearman correlation of class AUM, and the largest and total absolute change of the allocation
    b' (eqs. 5-6) in samples. Rows per (k, draw)."""
    import itertools

    import scipy.stats as sps

    per_model = np.asarray(aum_per_model, dtype=float)
    K = len(per_model)
    full_h = class_hardness(per_model.mean(0), y, n_classes)
    full_b = resampling_counts(full_h, a, alpha, f, rounding)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, K):
        combos = list(itertools.combinations(range(K), k))
        if len(combos) > n_draws:
            combos = [combos[c] for c in rng.choice(len(combos), n_draws, replace=False)]
        for draw, members in enumerate(combos):
            h = class_hardness(per_model[list(members)].mean(0), y, n_classes)
            try:
                b = resampling_counts(h, a, alpha, f, rounding)
                dmax, dsum = int(np.abs(b - full_b).max()), int(np.abs(b - full_b).sum())
            except ValueError:  # this subset's AUMs admit no allocation at this α
                dmax = dsum = math.nan
            rows.append({"k": k, "draw": draw, "spearman_class_aum": float(sps.spearmanr(h, full_h).statistic),
                         "max_abs_change": dmax, "total_abs_change": dsum})
    return pd.DataFrame(rows)
