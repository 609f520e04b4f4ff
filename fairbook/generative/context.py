"""An offline analog of AIM-Fair's contextual prompts (CSDG, AIM-Fair §3.1 and Tab. 5) for the DDPM.

AIM-Fair generates its balanced synthetic set with Stable Diffusion, one group of images per
(target, protected) *cell*. A *plain* prompt ("Portrait face photo of a smiling male.") names only
the cell; *contextual* prompts add detailed descriptions (face, hair, eyes, and -- the last row of
Tab. 5 -- head pose), and the paper finds that images made from contextual prompts are more diverse
and train a more accurate and fairer classifier (Tab. 5).

Without text-to-image weights or an LLM, this module builds the same comparison on the book's small
image datasets (coloured MNIST: target y = digit >= 5, protected s = colour) with the conditional
DDPM of :mod:`.ddpm`:

* the "detailed descriptions" are *context attributes* measured on the images
  (:func:`context_attributes`: stroke thickness, slant -- the digit's "head pose" -- ink, height and
  width), cut into quantile bins (:func:`context_bins`, :func:`fit_context`); one context is one
  combination of bins, e.g. "thick stroke, leaning right", the analog of one contextual prompt;
* a *contextual* condition is (cell, context) and a *plain* condition is (cell, no context). One
  DDPM learns both (:func:`train_contextual_generator`): every training image appears twice, once
  with its measured context and once with "no context", so the plain condition sees exactly its
  whole cell (:func:`contextual_conditions`);
* :func:`sample_cells` draws a cell-balanced synthetic set with either kind of condition -- contextual
  mode spreads each cell's images uniformly over the contexts, which is what the LLM's list of
  ~50 varied prompts does in the paper;
* :func:`fairbook.generative.diversity.diversity_report` measures, per cell, what Tab. 5 attributes
  the gain to: the diversity of the images (mean pairwise distance of pixels and, given a classifier,
  of its penultimate features), the spread of the context attributes, the entropy of the measured contexts, and the
  *coverage* -- the share of contextual images whose measured context is the one requested ("does
  the generator follow the prompt?").

Conditions are encoded as ``cell * (n_contexts + 1) + context`` with ``cell = y * n_groups + s``
(:func:`.ddpm.cell_condition`) and ``context = n_contexts`` meaning "no context" (the plain
condition); :func:`encode_condition` / :func:`decode_condition` convert.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .ddpm import ConditionalDDPM, DDPMConfig, cached_generator, cached_pool, cell_condition, pool_to_tensor

__all__ = [
    "ATTRIBUTES", "DEFAULT_ATTRIBUTES", "ATTRIBUTES_VERSION", "context_attributes", "QuantileBins",
    "context_bins", "Context", "fit_context", "encode_condition", "decode_condition",
    "contextual_conditions", "ContextualGenerator", "train_contextual_generator", "sample_cells",
    "MODES",
]

#: Context attributes measured by :func:`context_attributes`, in column order.
ATTRIBUTES: tuple[str, ...] = ("thickness", "slant", "ink", "height", "width")
#: Stroke style plus pose: the analog of Tab. 5's "Contextual + Head Poses" row.
DEFAULT_ATTRIBUTES: tuple[str, ...] = ("thickness", "slant")
#: Part of every cache key: bump it whenever an attribute's definition changes.
ATTRIBUTES_VERSION = "context-attributes-1"
#: Sampling modes of :func:`sample_cells`.
MODES = ("plain", "contextual")

_EPS = 1e-8


# ------------------------------------------------------------------------------------ attributes
def _images(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"{name} must be images (N, C, H, W) in [0, 1], got an array of shape "
                         f"{X.shape}")
    if X.dtype == np.uint8:
        raise ValueError(f"{name} is uint8; pass float images (N, C, H, W) in [0, 1] "
                         "(ddpm.pool_to_tensor converts a uint8 (N, H, W, C) pool)")
    if X.shape[1] > 4 and X.shape[-1] <= 4:
        raise ValueError(f"{name} looks channels-last {X.shape}; pass (N, C, H, W) "
                         "(ddpm.pool_to_tensor converts a uint8 (N, H, W, C) pool)")
    return X


def context_attributes(X, batch_size: int = 4096) -> pd.DataFrame:
    """Context attributes of each image, the analog of AIM-Fair's "detailed descriptions" (§3.1).

    Measured on the ink intensity ``I = max over channels`` (the HSV value), so a red and a green
    copy of the same digit get the same attributes -- the context never encodes the protected
    colour. With ``m = sum I`` and the intensity-weighted centroid and second central moments
    ``mu20 = Var(x)``, ``mu02 = Var(y)``, ``mu11 = Cov(x, y)`` (x = column, y = row, pointing down):

    * ``thickness`` -- stroke width in pixels, ``2 m / perimeter`` with the perimeter the isotropic
      total variation ``sum sqrt(dx^2 + dy^2)`` of ``I`` (forward differences, black border); for a
      binary L x w bar this is ``L w / (L + w)``, i.e. about ``w`` for long strokes;
    * ``slant`` -- degrees from upright, ``atan(-mu11 / mu02)``, positive when the digit leans
      right (the shear used to deskew MNIST); the digit's "head pose";
    * ``ink`` -- mean intensity (share of the image covered by ink);
    * ``height``, ``width`` -- extent in pixels, ``sqrt(12 mu02)`` and ``sqrt(12 mu20)`` (exactly L
      and w for a uniform upright L x w bar).

    A blank image gets zeros. Returns a DataFrame with the columns :data:`ATTRIBUTES`.
    """
    X = _images(X)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    h, w = X.shape[2:]
    rows = np.arange(h, dtype=np.float64)[:, None]
    cols = np.arange(w, dtype=np.float64)[None, :]
    parts = []
    for lo in range(0, len(X), batch_size):
        intensity = np.asarray(X[lo:lo + batch_size], dtype=np.float64).max(axis=1)  # (n, H, W)
        if not np.isfinite(intensity).all():
            raise ValueError("X holds NaN or infinite values")
        m = intensity.sum(axis=(1, 2))
        safe = np.maximum(m, _EPS)
        cx = (intensity * cols).sum(axis=(1, 2)) / safe
        cy = (intensity * rows).sum(axis=(1, 2)) / safe
        dx = cols[None] - cx[:, None, None]
        dy = rows[None] - cy[:, None, None]
        mu20 = (intensity * dx ** 2).sum(axis=(1, 2)) / safe
        mu02 = (intensity * dy ** 2).sum(axis=(1, 2)) / safe
        mu11 = (intensity * dx * dy).sum(axis=(1, 2)) / safe
        padded = np.pad(intensity, ((0, 0), (1, 1), (1, 1)))
        gx = padded[:, :-1, 1:] - padded[:, :-1, :-1]
        gy = padded[:, 1:, :-1] - padded[:, :-1, :-1]
        perimeter = np.sqrt(gx ** 2 + gy ** 2).sum(axis=(1, 2))
        blank = m <= _EPS
        parts.append(pd.DataFrame({
            "thickness": np.where(blank, 0.0, 2 * m / np.maximum(perimeter, _EPS)),
            "slant": np.where(blank, 0.0, np.degrees(np.arctan2(-mu11, np.maximum(mu02, _EPS)))),
            "ink": m / (h * w),
            "height": np.sqrt(12 * np.maximum(mu02, 0)),
            "width": np.sqrt(12 * np.maximum(mu20, 0)),
        }))
    if not parts:
        return pd.DataFrame({a: np.zeros(0) for a in ATTRIBUTES})
    return pd.concat(parts, ignore_index=True)[list(ATTRIBUTES)]


# ------------------------------------------------------------------------------------------- bins
@dataclass(frozen=True)
class QuantileBins:
    """Bins of one attribute: ``n_bins - 1`` inner edges; a value equal to an edge goes up.

    Calling the object bins new values with the same edges (e.g. generated images with the edges of
    the training images).
    """

    edges: tuple[float, ...]

    def __post_init__(self):
        edges = tuple(float(e) for e in self.edges)
        if not all(np.isfinite(edges)) or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"QuantileBins.edges must be finite and strictly increasing, got {edges}")
        object.__setattr__(self, "edges", edges)

    @property
    def n_bins(self) -> int:
        return len(self.edges) + 1

    def __call__(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("values to bin must be finite (no NaN or inf)")
        return np.searchsorted(np.asarray(self.edges), values, side="right").astype(np.int64)


def _check_n_bins(n_bins, name: str = "n_bins") -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"{name} must be an int >= 1, got {n_bins!r}")
    return int(n_bins)


def context_bins(values, n_bins: int) -> QuantileBins:
    """Quantile bins of ``values``: edges at the ``k / n_bins`` quantiles, ``k = 1 .. n_bins - 1``, so
    each bin holds about ``1 / n_bins`` of the values. Raises when the values have too few distinct
    values for ``n_bins`` non-empty bins."""
    n_bins = _check_n_bins(n_bins)
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"context_bins needs finite values, got {len(values)} values"
                         + ("" if len(values) == 0 else " with NaN or inf"))
    edges = np.quantile(values, np.arange(1, n_bins) / n_bins)
    filled = np.bincount(np.searchsorted(edges, values, side="right"), minlength=n_bins)
    if np.any(np.diff(edges) <= 0) or (filled == 0).any():
        raise ValueError(f"n_bins={n_bins}: the values have too few distinct values "
                         f"({len(np.unique(values))}) for {n_bins} non-empty quantile bins; "
                         "use fewer bins")
    return QuantileBins(tuple(edges))


@dataclass(frozen=True)
class Context:
    """A context vocabulary: attributes and their bins; one context = one combination of bins.

    Context index ``k`` is the row-major (``np.ravel_multi_index``) position of the attributes' bins,
    ``k in [0, n_contexts)``; :meth:`labels` describes each context in words (the analog of one
    contextual prompt).
    """

    attributes: tuple[str, ...]
    bins: tuple[QuantileBins, ...]

    def __post_init__(self):
        attributes = tuple(self.attributes)
        _check_attributes(attributes)
        if len(self.bins) != len(attributes) or not all(isinstance(b, QuantileBins) for b in self.bins):
            raise ValueError(f"Context needs one QuantileBins per attribute {attributes}, got "
                             f"{self.bins!r}")
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "bins", tuple(self.bins))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b.n_bins for b in self.bins)

    @property
    def n_contexts(self) -> int:
        return int(np.prod(self.shape))

    def assign(self, data) -> np.ndarray:
        """Context index of each image: ``data`` is images (N, C, H, W) or the DataFrame of
        :func:`context_attributes`."""
        frame = data if isinstance(data, pd.DataFrame) else context_attributes(data)
        missing = [a for a in self.attributes if a not in frame.columns]
        if missing:
            raise ValueError(f"the attribute table lacks {missing}; it has {list(frame.columns)}")
        idx = [b(frame[a].to_numpy()) for a, b in zip(self.attributes, self.bins)]
        if len(frame) == 0:
            return np.zeros(0, np.int64)
        return np.ravel_multi_index(idx, self.shape).astype(np.int64)

    def to_dict(self) -> dict:
        return {"version": ATTRIBUTES_VERSION, "attributes": list(self.attributes),
                "edges": [list(b.edges) for b in self.bins]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Context":
        if d.get("version") != ATTRIBUTES_VERSION:
            raise ValueError(f"context version {d.get('version')!r} is not {ATTRIBUTES_VERSION!r}")
        return cls(tuple(d["attributes"]), tuple(QuantileBins(tuple(e)) for e in d["edges"]))

    def key(self) -> str:
        """Short hash of the attribute definitions, attributes and edges (part of cache keys)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def labels(self) -> list[str]:
        """One description per context, e.g. ``"thickness [1.9, 2.4) · slant >= 8.1"``."""
        out = []
        for k in range(self.n_contexts):
            parts = []
            for a, b, i in zip(self.attributes, self.bins, np.unravel_index(k, self.shape)):
                lo = b.edges[i - 1] if i > 0 else None
                hi = b.edges[i] if i < len(b.edges) else None
                rng = ("any" if lo is None and hi is None else f"< {hi:.3g}" if lo is None
                       else f">= {lo:.3g}" if hi is None else f"[{lo:.3g}, {hi:.3g})")
                parts.append(f"{a} {rng}")
            out.append(" · ".join(parts))
        return out


def _check_attributes(attributes: Sequence[str]) -> None:
    if isinstance(attributes, str) or len(attributes) == 0:
        raise ValueError(f"attributes must be a non-empty sequence of names from {ATTRIBUTES}, "
                         f"got {attributes!r}")
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown or len(set(attributes)) != len(attributes):
        raise ValueError(f"attributes must be distinct names from {ATTRIBUTES}, got "
                         f"{list(attributes)}")


def fit_context(data, attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                n_bins: int | Sequence[int] = 2) -> Context:
    """Quantile bins (:func:`context_bins`) of each attribute on ``data`` (images (N, C, H, W) or the
    DataFrame of :func:`context_attributes`). ``n_bins``: one int for every attribute or one per
    attribute; the number of contexts is their product (Tab. 5's number of prompts)."""
    attributes = (attributes,) if isinstance(attributes, str) else tuple(attributes)
    _check_attributes(attributes)
    per = [n_bins] * len(attributes) if not isinstance(n_bins, (list, tuple)) else list(n_bins)
    if len(per) != len(attributes):
        raise ValueError(f"n_bins must be one int or one per attribute {attributes}, got {n_bins!r}")
    per = [_check_n_bins(n, f"n_bins of {a!r}") for n, a in zip(per, attributes)]
    frame = data if isinstance(data, pd.DataFrame) else context_attributes(data)
    return Context(attributes, tuple(context_bins(frame[a].to_numpy(), n) for a, n in zip(attributes, per)))


# ------------------------------------------------------------------------------------- conditions
def _ints(name: str, values, high: int, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D array of int labels, got dtype {arr.dtype} and shape "
                         f"{arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= high):
        raise ValueError(f"{name} must lie in [0, {high - 1}] ({what}), got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr


def _check_count(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be an int >= 1, got {n!r}")
    return int(n)


def encode_condition(cell, context, n_contexts: int) -> np.ndarray:
    """``cell * (n_contexts + 1) + context``; ``context = n_contexts`` is the plain (no-context)
    condition of the cell."""
    n_contexts = _check_count("n_contexts", n_contexts)
    cell = np.asarray(cell, dtype=np.int64)
    context = np.asarray(context, dtype=np.int64)
    if (cell < 0).any() or (context < 0).any() or (context > n_contexts).any():
        raise ValueError(f"cells must be >= 0 and contexts in [0, {n_contexts}] ({n_contexts} = no "
                         "context)")
    return cell * (n_contexts + 1) + context


def decode_condition(cond, n_contexts: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_condition`: ``(cell, context)``, ``context = n_contexts`` for plain."""
    n_contexts = _check_count("n_contexts", n_contexts)
    cond = np.asarray(cond, dtype=np.int64)
    if (cond < 0).any():
        raise ValueError("conditions must be >= 0")
    return cond // (n_contexts + 1), cond % (n_contexts + 1)


def contextual_conditions(y, s, contexts, n_contexts: int, *, n_targets: int = 2,
                          n_groups: int = 2) -> tuple[np.ndarray, np.ndarray, int]:
    """Training conditions for one DDPM that learns the plain and the contextual conditions.

    Every image appears twice: rows ``0 .. N-1`` of the result carry its contextual condition
    (cell, its measured context) and rows ``N .. 2N-1`` its plain condition (cell, no context), so the
    plain condition sees exactly the whole cell.

    Returns ``(index, conditions, n_conditions)``: train on ``X[index]`` with ``conditions``;
    ``n_conditions = n_targets * n_groups * (n_contexts + 1)``.
    """
    n_contexts = _check_count("n_contexts", n_contexts)
    n_targets = _check_count("n_targets", n_targets)
    n_groups = _check_count("n_groups", n_groups)
    y = _ints("y", y, n_targets, f"n_targets={n_targets}")
    s = _ints("s", s, n_groups, f"n_groups={n_groups}")
    contexts = _ints("contexts", contexts, n_contexts, f"n_contexts={n_contexts}")
    if not len(y) == len(s) == len(contexts):
        raise ValueError(f"y, s and contexts must have one entry per image, got lengths {len(y)}, "
                         f"{len(s)}, {len(contexts)}")
    cell = cell_condition(y, s, n_groups)
    index = np.concatenate([np.arange(len(y)), np.arange(len(y))])
    cond = np.concatenate([encode_condition(cell, contexts, n_contexts),
                           encode_condition(cell, np.full(len(y), n_contexts), n_contexts)])
    return index, cond, n_targets * n_groups * (n_contexts + 1)


# -------------------------------------------------------------------------------------- generator
@dataclass
class ContextualGenerator:
    """A :class:`.ddpm.ConditionalDDPM` trained on plain and contextual conditions, with its context
    vocabulary and how many training images each (cell, context) had (``counts``, n_cells x
    n_contexts)."""

    model: ConditionalDDPM
    context: Context
    n_targets: int
    n_groups: int
    counts: np.ndarray

    @property
    def n_contexts(self) -> int:
        return self.context.n_contexts

    @property
    def n_cells(self) -> int:
        return self.n_targets * self.n_groups


def train_contextual_generator(X, y, s, *, context: Context | None = None,
                               attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                               n_bins: int | Sequence[int] = 2, config: DDPMConfig = DDPMConfig(),
                               dataset: str = "colored-mnist", subset: str = "train",
                               n_targets: int = 2, n_groups: int = 2, device="auto",
                               log=None) -> ContextualGenerator:
    """Train (or load from the cache) one DDPM on the plain and contextual conditions of ``X``.

    The context vocabulary is ``context`` or, by default, :func:`fit_context` of ``attributes`` /
    ``n_bins`` on ``X`` itself. Training data are ``X[index]`` with the conditions of
    :func:`contextual_conditions` (every image twice; note the memory: two copies of ``X``).
    The generator is cached by :func:`.ddpm.cached_generator` under ``subset`` extended by the
    context's key (attribute definitions, attributes, bin edges), so another vocabulary or
    ``n_bins`` trains another generator.

    Raises when some (cell, context) has no training image: that condition would never be trained.
    """
    X = _images(X)
    if context is None:
        context = fit_context(X, attributes, n_bins)
    elif not isinstance(context, Context):
        raise ValueError(f"context must be a Context (see fit_context) or None, got {type(context).__name__}")
    if len(X) != len(np.asarray(y)):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(np.asarray(y))}")
    contexts = context.assign(X)
    index, cond, n_conditions = contextual_conditions(y, s, contexts, context.n_contexts,
                                                      n_targets=n_targets, n_groups=n_groups)
    cell = cell_condition(np.asarray(y), np.asarray(s), n_groups)
    counts = np.zeros((n_targets * n_groups, context.n_contexts), np.int64)
    np.add.at(counts, (cell, contexts), 1)
    if (counts == 0).any():
        empty = [(int(c // n_groups), int(c % n_groups), context.labels()[k])
                 for c, k in zip(*np.nonzero(counts == 0))]
        raise ValueError(f"{len(empty)} (target, group, context) conditions have no training image, "
                         f"e.g. {empty[:3]}; use fewer bins (n_bins) or more data")
    model = cached_generator(dataset, f"{subset}+context-{context.key()}", X[index], cond, n_conditions,
                             config, device=device, log=log)
    return ContextualGenerator(model, context, int(n_targets), int(n_groups), counts)


def _cell_counts(counts_per_cell, n_targets: int, n_groups: int) -> np.ndarray:
    n_cells = n_targets * n_groups
    if isinstance(counts_per_cell, Mapping):
        out = np.zeros(n_cells, np.int64)
        for key, n in counts_per_cell.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"counts_per_cell keys must be (y, s) pairs, got {key!r}")
            y, s = key
            if not (0 <= int(y) < n_targets and 0 <= int(s) < n_groups):
                raise ValueError(f"counts_per_cell key {key!r} is not a cell: y in [0, {n_targets - 1}], "
                                 f"s in [0, {n_groups - 1}]")
            out[int(cell_condition(y, s, n_groups))] = _count(n)
        return out
    if isinstance(counts_per_cell, (int, np.integer)) and not isinstance(counts_per_cell, bool):
        return np.full(n_cells, _count(counts_per_cell), np.int64)
    arr = list(np.asarray(counts_per_cell).ravel()) if not isinstance(counts_per_cell, (str, bool)) else None
    if arr is None or len(arr) != n_cells:
        raise ValueError(f"counts_per_cell must be an int, a {{(y, s): n}} mapping or {n_cells} counts "
                         f"in cell order (y * n_groups + s), got {counts_per_cell!r}")
    return np.array([_count(n) for n in arr], np.int64)


def _count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"counts_per_cell entries must be ints >= 0, got {n!r}")
    return int(n)


def _condition_seed(seed: int, cond: int) -> int:
    return int(hashlib.sha256(f"{seed}:context-condition:{cond}".encode()).hexdigest()[:8], 16)


def sample_cells(gen: ContextualGenerator, counts_per_cell, *, mode: str = "contextual",
                 steps: int = 50, guidance: float = 1.0, seed: int = 0, log=None, sampler: str = "ddim",
                 precision: str = "fp32") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic set with ``counts_per_cell`` images of each (target, group) cell (AIM-Fair's
    balanced synthetic data), from plain or contextual conditions (the two kinds of prompt of Tab. 5).

    Parameters
    ----------
    gen : a :class:`ContextualGenerator`.
    counts_per_cell : int (every cell), ``{(y, s): n}`` or one count per cell in cell order
        (``y * n_groups + s``).
    mode : ``"plain"`` -- every image from its cell's no-context condition; ``"contextual"`` -- each
        cell's ``n`` images spread uniformly over the contexts (``n // K`` each, the first
        ``n % K`` contexts one more), deterministic.
    steps, guidance, sampler, precision : sampling steps, classifier-free guidance, the scheduler
        and the UNet's precision (:func:`.ddpm.sample`).
    seed : images of condition ``c`` use the seed derived from ``(seed, c)``, so a larger request
        extends a smaller one and plain and contextual images never share noise. Pools are kept next
        to a cached generator (:func:`.ddpm.cached_pool`, one per condition) and reused.

    Returns ``(X, y, s, context)``: float32 images (N, C, H, W) in [0, 1] (the layout of
    ``fairbook.data``), target and group labels and the requested context (``n_contexts`` = none),
    ordered by cell and then by context.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(gen, ContextualGenerator):
        raise ValueError(f"gen must be a ContextualGenerator (train_contextual_generator), got "
                         f"{type(gen).__name__}")
    counts = _cell_counts(counts_per_cell, gen.n_targets, gen.n_groups)
    K = gen.n_contexts
    images, ys, ss, ks = [], [], [], []
    for cell, n in enumerate(counts):
        if mode == "plain":
            per = {K: int(n)}
        else:
            per = {k: int(n // K + (k < n % K)) for k in range(K)}
        for k, m in per.items():
            if m == 0:
                continue
            cond = int(encode_condition(cell, k, K))
            imgs, _ = cached_pool(gen.model, m, steps=steps, guidance=guidance, sampler=sampler,
                                  precision=precision, seed=_condition_seed(seed, cond), conditions=[cond],
                                  log=log)
            images.append(imgs)
            ys.append(np.full(m, cell // gen.n_groups))
            ss.append(np.full(m, cell % gen.n_groups))
            ks.append(np.full(m, k))
    if not images:
        c, h, w = gen.model.image_shape
        return (np.zeros((0, c, h, w), np.float32),) + tuple(np.zeros(0, np.int64) for _ in range(3))
    return (pool_to_tensor(np.concatenate(images)),
            *(np.concatenate(a).astype(np.int64) for a in (ys, ss, ks)))
