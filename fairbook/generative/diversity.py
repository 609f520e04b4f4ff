"""Diversity of a (synthetic) image set per (target, group) cell: pixel and feature distances, the
spread of the context attributes, the entropy and coverage of the contexts
(:mod:`fairbook.generative.context`) -- the quantities behind AIM-Fair Tab. 5's explanation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..models import penultimate
from .context import ATTRIBUTES, Context, _check_count, _images, _ints, context_attributes

__all__ = ["mean_pairwise_distance", "context_entropy", "context_coverage", "diversity_report"]


def mean_pairwise_distance(Z, max_n: int | None = 500, seed: int = 0) -> float:
    """Mean Euclidean distance over all pairs ``i < j`` of the rows of ``Z`` (flattened per row);
    0 for identical rows, NaN for fewer than two. Above ``max_n`` rows a seeded random subset of
    ``max_n`` rows is used."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim < 1:
        raise ValueError(f"Z must have one row per item, got a scalar {Z!r}")
    Z = Z.reshape(len(Z), -1)
    if max_n is not None:
        max_n = _check_count("max_n", max_n)
        if max_n < 2:
            raise ValueError(f"max_n must be >= 2 (or None), got {max_n}")
        if len(Z) > max_n:
            Z = Z[np.sort(np.random.default_rng(seed).choice(len(Z), max_n, replace=False))]
    n = len(Z)
    if n < 2:
        return float("nan")
    sq = (Z ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0.0)
    iu = np.triu_indices(n, 1)
    return float(np.sqrt(d2[iu]).mean())


def context_entropy(contexts, n_contexts: int) -> float:
    """Entropy of the distribution of (measured) contexts over ``n_contexts``, divided by
    ``log n_contexts``: 1 when every context is equally frequent, 0 when one context holds all
    images (and 0 when there is only one context); NaN for no images."""
    n_contexts = _check_count("n_contexts", n_contexts)
    contexts = _ints("contexts", contexts, n_contexts, f"n_contexts={n_contexts}")
    if len(contexts) == 0:
        return float("nan")
    if n_contexts == 1:
        return 0.0
    p = np.bincount(contexts, minlength=n_contexts) / len(contexts)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(n_contexts))


def context_coverage(measured, requested, n_contexts: int) -> float:
    """Share of images with a requested context (``requested < n_contexts``) whose measured context
    equals it: does the generator follow the "prompt"? Chance level is about ``1 / n_contexts``.
    NaN when no image requested a context (plain sampling)."""
    n_contexts = _check_count("n_contexts", n_contexts)
    measured = _ints("measured", measured, n_contexts, f"n_contexts={n_contexts}")
    requested = _ints("requested", requested, n_contexts + 1, f"{n_contexts} = no context")
    if len(measured) != len(requested):
        raise ValueError(f"measured and requested must have the same length, got {len(measured)} "
                         f"and {len(requested)}")
    asked = requested < n_contexts
    return float((measured[asked] == requested[asked]).mean()) if asked.any() else float("nan")


def diversity_report(X, y, s, *, context: Context | None = None, requested=None,
                     classifier: torch.nn.Module | None = None, max_n: int | None = 500,
                     seed: int = 0) -> pd.DataFrame:
    """Diversity of a (synthetic) image set per (target, group) cell: the quantities behind Tab. 5's
    explanation ("the increased diversity and details in the synthetic images", AIM-Fair §4).

    One row per cell present, ordered by ``(y, s)``, with columns

    * ``y, s, n``;
    * ``pixel_distance`` -- mean pairwise distance of the images divided by ``sqrt(C H W)`` (the
      root-mean-square pixel difference, in intensity units; 0 when all images are identical);
    * ``feature_distance`` -- with a ``classifier``: mean pairwise distance of its penultimate
      features (:func:`fairbook.models.penultimate`);
    * ``std_<attribute>`` -- the standard deviation of every attribute of :func:`context_attributes`;
    * ``context_entropy`` -- with a ``context``: normalised entropy of the measured contexts
      (:func:`context_entropy`);
    * ``coverage`` -- with a ``context`` and the ``requested`` contexts of :func:`sample_cells`:
      :func:`context_coverage` (NaN for plain images).

    ``max_n`` images per cell (a seeded random subset) enter the pairwise distances.
    """
    X = _images(X)
    y = _ints("y", y, np.iinfo(np.int64).max, "target labels")
    s = _ints("s", s, np.iinfo(np.int64).max, "group labels")
    if not len(X) == len(y) == len(s):
        raise ValueError(f"X, y and s must have one entry per image, got lengths {len(X)}, {len(y)}, "
                         f"{len(s)}")
    if requested is not None and context is None:
        raise ValueError("requested contexts need the context they refer to (context=...)")
    if context is not None and not isinstance(context, Context):
        raise ValueError(f"context must be a Context (see fit_context) or None, got {type(context).__name__}")
    attrs = context_attributes(X)
    measured = context.assign(attrs) if context is not None else None
    if requested is not None:
        requested = _ints("requested", requested, context.n_contexts + 1,
                          f"{context.n_contexts} = no context")
        if len(requested) != len(X):
            raise ValueError(f"requested must have one entry per image, got {len(requested)} for "
                             f"{len(X)} images")
    feats = None
    if classifier is not None:
        feats = penultimate(classifier, torch.as_tensor(np.asarray(X, dtype=np.float32)))[0].numpy()
    rows = []
    for yy, ss in sorted({(int(a), int(b)) for a, b in zip(y, s)}):
        m = (y == yy) & (s == ss)
        row = {"y": yy, "s": ss, "n": int(m.sum()),
               "pixel_distance": mean_pairwise_distance(X[m], max_n, seed) / np.sqrt(np.prod(X.shape[1:]))}
        if feats is not None:
            row["feature_distance"] = mean_pairwise_distance(feats[m], max_n, seed)
        row.update({f"std_{a}": float(attrs[a].to_numpy()[m].std()) for a in ATTRIBUTES})
        if context is not None:
            row["context_entropy"] = context_entropy(measured[m], context.n_contexts)
        if requested is not None:
            row["coverage"] = context_coverage(measured[m], requested[m], context.n_contexts)
        rows.append(row)
    return pd.DataFrame(rows)
