"""The GCM chapter's experiments, built on the method: the paper's Adult configuration
(:data:`ADULT_WIDTHS`, :data:`ADULT_FIT`), the chapter's training :class:`Recipe`, one run as a task of
:mod:`fairbook.grid` (:func:`train_eval`, :func:`traced_eval`, :func:`multiclass_eval`), the datasets
(:func:`load_splits`), Table 1's bookkeeping (:func:`subgroup_sizes_per_iteration`) and the scale check.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import data, metrics, models, train
from .disparity import DisparityTracker, final_disparity
from .gradients import CELLS
from .methods import fit_method, model_report

__all__ = ["ADULT_FIT", "ADULT_WIDTHS", "Recipe", "eop_at_own_epoch", "fit_recipe", "load_splits", "make_model",
           "multiclass_eval", "scale_check", "subgroup_sizes_per_iteration", "traced_eval", "train_eval"]

#: The paper's Adult model (§4.1, the authors' code): ``models.MLP(120, ADULT_WIDTHS, 1)``, one logit.
ADULT_WIDTHS = (200, 200)
#: The paper's Adult schedule as :func:`~fairbook.gcm.methods.fit_method` / :func:`fairbook.train.fit`
#: keywords: Adam lr 1e-3, batches of 2000 (500 per (a, y) cell), 20 epochs of 100 iterations (the epoch is
#: then chosen by the lowest validation ΔEO: pass ``val=(X_val, y_val, a_val)`` to ``fit_method``).
ADULT_FIT = {"batch_size": 2000, "epochs": 20, "steps_per_epoch": 100,
             "optim": train.Optim("adam", lr=1e-3), "loss": "bce"}


def eop_at_own_epoch(res: train.FitResult, X, y, a, device="auto") -> float:
    """Folded EOP (:func:`report`) of the model at the epoch of highest validation EOP, when
    :func:`fit_method` kept one (validation selection, as the authors report EOP); else of the
    returned model."""
    model = res.model
    if "eop" in res.other_best:
        model = copy.deepcopy(res.model)
        model.load_state_dict(res.other_best["eop"][1])
    return model_report(model, X, y, a, device=device)["eop_folded"]


def scale_check(X, y, a, test, seeds: Sequence[int], *, widths=(200, 200), **fit_kwargs) -> pd.DataFrame:
    """Vanilla and OverSampling (:func:`fit_method`) trained with the MLP ``widths`` (default the
    paper's 200-200) from each seed, evaluated on ``test = (X, y, a)``: does a premise of the paper
    that fails at a small scale hold at the paper's? ``fit_kwargs`` go to :func:`fit_method`."""
    rows = []
    for s in seeds:
        for method in ("vanilla", "oversampling"):
            model = train.seeded(lambda: models.MLP(np.asarray(X).shape[1], tuple(widths), 1), s)
            res = fit_method(method, model, X, y, a, seed=s, **fit_kwargs)
            rows.append({"seed": s, "method": method, **model_report(res.model, *test)})
    return pd.DataFrame(rows)


# --- the chapter's training recipe and one run (a task of fairbook.grid) ---------------------------
@dataclass(frozen=True)
class Recipe:
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


def make_model(recipe: Recipe, dataset: str, X, n_out: int = 1, model_seed: int = 0) -> nn.Module:
    """The paper's MLP on the tables; on images ``recipe.image_model`` (AlexNet / ResNet-18 for
    CelebA). Its initial weights come from ``model_seed`` alone."""
    img = recipe.is_image(dataset)
    if img and recipe.image_model == "alexnet":
        build = lambda: models.alexnet(n_out)  # noqa: E731
    elif img and recipe.image_model == "resnet18":
        build = lambda: models.resnet(18, num_classes=n_out)  # noqa: E731
    elif isinstance(X, torch.utils.data.Dataset):
        raise ValueError(f"image_model='mlp' cannot train on the image files of {dataset}; "
                         f"use -p image_model alexnet or resnet18")
    else:
        build = lambda: models.MLP(int(np.prod(X.shape[1:])), tuple(recipe.widths), n_out)  # noqa: E731
    return train.seeded(build, model_seed)


def fit_recipe(recipe: Recipe, splits: Mapping, dataset: str, method: str, options: dict | None = None,
                model_seed: int = 0, tracker: DisparityTracker | None = None, n_out: int = 1,
                **kw) -> train.FitResult:
    """One model of ``method`` (:func:`fit_method`) on ``splits[dataset]`` with ``recipe``."""
    (X, y, a), val = splits[dataset]["train"], splits[dataset]["val"]
    img = recipe.is_image(dataset)
    spe = recipe.image_steps_per_epoch if img else recipe.steps_per_epoch
    kw = {"val": val if recipe.select == "val_delta_eo" and n_out == 1 else None, "options": options,
          "tracker": tracker, "batch_size": recipe.image_batch_size if img else recipe.batch_size,
          "epochs": recipe.image_epochs if img else recipe.epochs, "steps_per_epoch": spe or None,
          "optim": train.Optim("adam", lr=recipe.image_lr if img else recipe.lr), "seed": model_seed, **kw}
    return fit_method(method, make_model(recipe, dataset, X, n_out, model_seed), X, y, a, **kw)


def train_eval(recipe: Recipe, splits: Mapping, dataset: str, method: str, options: dict | None = None,
               model_seed: int = 0, tracker: DisparityTracker | None = None, **kw) -> dict[str, float]:
    """Train one model (:func:`fit_recipe`); report it on the test split, and on the validation
    split (``val_*``), which alone is used to choose among strengths; EOP also at its own
    validation-selected epoch (``eop_own``; the same epoch when ``select`` is last); on the tables,
    the final norm-based disparity on a group-balanced batch of training rows (``lognorm_y*``)."""
    res = fit_recipe(recipe, splits, dataset, method, options, model_seed, tracker, **kw)
    d = splits[dataset]
    v = model_report(res.model, *d["val"])
    out = {**model_report(res.model, *d["test"]), **{f"val_{k}": v[k] for k in ("ap", "delta_eo", "delta_dp", "acc")},
           "eop_own": eop_at_own_epoch(res, *d["test"])}
    if dataset in ("adult", "compas"):
        out.update(final_disparity(res.model, *d["train"], seed=model_seed))
    return out


def traced_eval(recipe: Recipe, splits: Mapping, dataset: str, method: str, options: dict | None = None,
                model_seed: int = 0, tracker: dict | None = None, **kw) -> tuple[pd.DataFrame, dict[str, float]]:
    """:func:`train_eval` with a :class:`DisparityTracker` built from the keywords ``tracker``:
    returns its history (r̂ per recorded iteration) and the run's results."""
    tr = DisparityTracker(**(tracker or {}))
    result = train_eval(recipe, splits, dataset, method, options, model_seed, tr, **kw)
    return tr.history, result


def multiclass_eval(recipe: Recipe, splits: Mapping, dataset: str, halves: Mapping[str, np.ndarray], method: str,
                    options: dict | None = None, model_seed: int = 0, **kw) -> dict[str, float]:
    """Table 6 (the CIFAR-10S analog): one ``len(classes)``-way model of ``method`` (cross-entropy),
    scored on each half of the test split (``halves``: name -> boolean row mask; the chapter chooses
    settings on one half and reports the other): accuracy on the colour (a = 1) and gray (a = 0)
    images, overall, and −Bias (:func:`fairbook.metrics.cifar10s_bias`)."""
    X, y, a = splits[dataset]["test"]
    k = int(np.max(y)) + 1
    res = fit_recipe(recipe, splits, dataset, method, options, model_seed, n_out=k, loss="ce", **kw)
    pred = train.logits_of(res.model, X).argmax(1).numpy()
    row = {}
    for h, rows_h in halves.items():
        ok = (pred == y)[rows_h]
        row.update({f"{h} acc color": float(ok[a[rows_h] == 1].mean()), f"{h} acc gray": float(ok[a[rows_h] == 0].mean()),
                    f"{h} acc": float(ok.mean()),
                    f"{h} -Bias": -metrics.cifar10s_bias(pred[rows_h], a[rows_h], n_classes=k, nan_ok=True)})
    return row


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


def load_splits(name: str, *, root=None, seed: int = 0, celeba_target: str = "Wavy_Hair",
                image_size: int = 64, skew: float = 0.95, color_bias: float = 0.9) -> dict:
    """train/val/test of a chapter dataset as ``(X, y, a)`` with a = 1 the privileged group (GCM §2.1).

    Adult: a = male (fair-mixup layout); COMPAS: a = Caucasian; CelebA: a = female (GCM §4.1: both
    tasks disfavour men; X stays the on-disk dataset); ``skewed-*`` (CIFAR-10S analog) and the coloured
    digits: a = colour (semi-synthetic).
    """
    out = {}
    for split in ("train", "val", "test"):
        if name == "adult":
            d = data.load("adult", split, root=root, seed=seed, layout="fair-mixup")
            a = d.groups["sex"]
        elif name == "compas":
            d = data.load("compas", split, root=root, seed=seed)
            a = 1 - d.groups["race"]
        elif name == "celeba":
            d = data.load("celeba", split, root=root, target=celeba_target, sensitive="Male",
                           image_size=image_size)
            a = 1 - d.groups["Male"]
            out[split] = (d, d.y.astype(np.int64), a.astype(np.int64))  # images stay on disk
            continue
        elif name.startswith("skewed-"):
            d = data.load(name, split, root=root, seed=seed, skew=skew)
            a = d.groups["color"]
        else:
            d = data.load(name, split, root=root, seed=seed, bias=color_bias)
            a = d.groups["color"]
        out[split] = (d.X.astype(np.float32), d.y.astype(np.int64), a.astype(np.int64))
    return out
