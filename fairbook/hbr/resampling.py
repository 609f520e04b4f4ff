"""The resampling method of HBR (Pukowski & Osmani): the allocation and the resampling itself.

* strategies: :func:`parse_strategy` names the paper's oversamplers (:data:`STRATEGIES`) and the
  controls the paper lacks (:data:`CONTROLS`: ``under-only``, ``over-only-<oversampler>``,
  ``reweight`` with :func:`class_weights`, ``logit-adjust`` with :func:`logit_offsets`);
* allocation: :func:`resampling_counts` (eqs. 5-6 with the offset and inversion of appendix A) and
  what it does to the data, :func:`induced_imbalance`;
* resampling: :func:`resample` -- remove the easiest samples of shrinking classes, then add samples to
  growing classes by ``random`` duplication, ``smote`` (imbalanced-learn, :func:`smote`), ``holdout``
  (case study 1) or a generated :class:`Pool`: ``rEDM``, ``aEDM``, ``hEDM`` (appendix A) and this
  book's ``hcEDM`` (:func:`pool_candidates`).

Hardness itself (AUM, eqs. 2-4) is in :mod:`fairbook.hbr.hardness`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["STRATEGIES", "POOL_STRATEGIES", "CONTROLS", "ROUNDINGS", "parse_strategy", "uses_pool",
           "class_weights", "logit_offsets", "resampling_counts", "induced_imbalance", "easiest_kept",
           "pool_candidates", "Pool", "resample", "smote"]

#: Oversamplers (with undersampling of the easy classes: the paper's HBR).
STRATEGIES = ("random", "smote", "holdout", "rEDM", "aEDM", "hEDM", "hcEDM")
POOL_STRATEGIES = ("rEDM", "aEDM", "hEDM", "hcEDM")
#: Controls the paper lacks (see :func:`parse_strategy`); ``over-only-<oversampler>`` is one too.
CONTROLS = ("under-only", "reweight", "logit-adjust")
ROUNDINGS = ("paper", "authors")


# --- strategies ----------------------------------------------------------------------------------------
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
    from imblearn.over_sampling import SMOTE  # imbalanced-learn: optional, needed by this oversampler only

    have = np.bincount(y, minlength=len(counts))
    target = {int(c): int(counts[c]) for c in range(len(counts)) if counts[c] > have[c]}
    if not target:
        return X, y
    flat = X.reshape(len(X), -1)
    Xs, ys = SMOTE(sampling_strategy=target, k_neighbors=k_neighbors, random_state=seed).fit_resample(flat, y)
    return Xs.reshape((-1,) + X.shape[1:]).astype(X.dtype, copy=False), ys
