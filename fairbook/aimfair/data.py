"""AIM-Fair's data (Zhao et al. CVPR 2025, §4.1): the (y, s) cell ratios, Table 3's data baselines,
the chapter's settings and the draws from a synthetic pool.

* cell ratios: :func:`bias_ratios` / :func:`balanced_ratios` (the biased and balanced sets, §4.1,
  Table 6);
* rows: :func:`take` and :func:`join` select and concatenate rows of arrays, tensors or ImageTables
  alike; :func:`supplement` and :func:`repair` are Table 3's data baselines;
* the ``paper`` profile's data read lazily from disk: :func:`celeba_setting` (the biased CelebA
  training subset and the full validation/test partitions), :func:`utkface_setting` (the biased
  UTKFace training subset, the val split and a balanced test subset) and :func:`synthetic_table` (a
  Stable Diffusion layout), all :class:`~fairbook.data.fullscale.ImageTable`;
* the offline analog: :func:`colored_setting` (coloured digits / clothes, :func:`arrays`);
* draws: :func:`draw_cells` (S1 and S2 from a pool), :func:`subsample`, :func:`context_rows` and
  :func:`context_cell_size` (Table 5's number of prompts).

Cells are ordered (y, s) = (0, 0), (0, 1), (1, 0), (1, 1) everywhere (:data:`CELLS`), like
:data:`fairbook.data.images.AIM_FAIR_RATIOS`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .. import data as datasets
from .. import metrics
from ..data.fullscale import ImageTable
from ..data.images import AIM_FAIR_RATIOS, CELLS, cell_counts, cell_rows
from ..generative import sd
from ._util import fail as _fail

__all__ = ["CELLS", "bias_ratios", "balanced_ratios", "take", "join", "supplement", "repair",
           "context_cell_size", "context_rows", "celeba_setting", "utkface_setting", "synthetic_table",
           "arrays", "colored_setting", "draw_cells", "subsample"]


# ------------------------------------------------------------------------------ cell ratios
def bias_ratios(minority: float | str) -> tuple[float, float, float, float]:
    """(y, s) cell ratios of a set with bias ``minority : majority`` inside each target class.

    Each target class holds half of the data; within it the minority group holds the share
    ``minority`` and the majority group ``1 − minority``. As in AIM-Fair's CelebA subsets (§4.1)
    the minority is s = 0 for y = 0 and s = 1 for y = 1, so the ratios of the cells (0, 0), (0, 1),
    (1, 0), (1, 1) are ``(m/2, (1−m)/2, (1−m)/2, m/2)``. ``0.1`` (or ``"1:9"``) gives the paper's
    1:9 bias (0.05, 0.45, 0.45, 0.05), i.e. 1,000/9,000/9,000/1,000 of 20,000 images; Table 6's
    4:6, 3:7, 2:8 are 0.4, 0.3, 0.2; ``0.5`` is balanced.

    Parameters
    ----------
    minority : float in [0, 0.5], or a string ``"a:b"`` with 0 <= a <= b (share a / (a + b)).
    """
    where = "bias_ratios"
    m = minority
    if isinstance(minority, str):
        parts = minority.split(":")
        try:
            a, b = (float(p) for p in parts)
        except ValueError:
            raise _fail(where, "minority", minority, "a number in [0, 0.5] or 'a:b' with "
                        "0 <= a <= b, e.g. '1:9'") from None
        if len(parts) != 2 or a < 0 or b <= 0 or a > b:
            raise _fail(where, "minority", minority, "'a:b' with 0 <= a <= b, b > 0, e.g. '1:9'")
        m = a / (a + b)
    if isinstance(m, bool) or not isinstance(m, (int, float, np.floating, np.integer)) \
            or not 0 <= m <= 0.5:
        raise _fail(where, "minority", minority, "a number in [0, 0.5] (0.5 = balanced) or 'a:b'")
    m = float(m)
    return (m / 2, (1 - m) / 2, (1 - m) / 2, m / 2)


def balanced_ratios() -> tuple[float, float, float, float]:
    """Equal (y, s) cells: AIM-Fair's balanced synthetic set D_S2 (N_S = N_R / G per group, §4.3)."""
    return (0.25, 0.25, 0.25, 0.25)

def _concat(parts: Sequence):
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(list(parts))
    return np.concatenate([metrics.as_numpy(p) for p in parts])


# ------------------------------------------------------------------ rows of arrays or ImageTables
def _index(idx, where: str) -> np.ndarray:
    """``idx`` as an integer index array or a boolean mask (an empty list is an empty index)."""
    idx = metrics.as_numpy(idx)
    if idx.size == 0 and idx.dtype != bool:
        return idx.astype(np.int64).reshape(-1)
    if idx.dtype != bool and not np.issubdtype(idx.dtype, np.integer):
        raise _fail(where, "idx", f"an index of dtype {idx.dtype}", "integer indices or a boolean mask")
    return idx


def take(X, idx):
    """Rows ``idx`` (integer indices, in that order, or a boolean mask) of ``X``.

    ``X`` an :class:`~fairbook.data.fullscale.ImageTable`: ``X.subset(idx)``, a new lazy table (no
    image is read); a tensor: a tensor; anything else: a numpy array.
    """
    idx = _index(idx, "take")
    if isinstance(X, ImageTable):
        return X.subset(idx)
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(idx)]
    return metrics.as_numpy(X)[idx]


def _check_tables(where: str, Xs: Sequence, label: str = "Xs") -> None:
    """Raise unless ``Xs`` are all ImageTables with one image size and the same group names."""
    kinds = [isinstance(x, ImageTable) for x in Xs]
    if any(kinds) and not all(kinds):
        raise _fail(where, label, "a mix of ImageTables and arrays/tensors",
                    "all ImageTables, or all arrays/tensors")
    first = Xs[0]
    for i, t in enumerate(Xs[1:], 1):
        name = f"{label}[{i}]" if label == "Xs" else label
        if t.image_size != first.image_size:
            raise _fail(where, name, f"an ImageTable with image_size={t.image_size}",
                        f"the image_size of the first table, {first.image_size}")
        if set(t.groups) != set(first.groups):
            raise _fail(where, name, f"an ImageTable with groups {sorted(t.groups)}",
                        f"the group names of the first table, {sorted(first.groups)}")


def _join(Xs: Sequence, where: str):
    if not Xs:
        raise _fail(where, "Xs", "nothing", "at least one array, tensor or ImageTable")
    if not any(isinstance(x, ImageTable) for x in Xs):
        return _concat(Xs)
    _check_tables(where, Xs)
    first = Xs[0]

    def names(attr):
        return "+".join(dict.fromkeys(str(getattr(t, attr)) for t in Xs if getattr(t, attr)))

    return ImageTable(np.concatenate([t.paths for t in Xs]),
                      np.concatenate([t.targets for t in Xs]),
                      name=names("name"), split=names("split"), classes=first.classes,
                      groups={k: np.concatenate([t.groups[k] for t in Xs]) for k in first.groups},
                      group_names=first.group_names, image_size=first.image_size,
                      transform=first.transform, source=names("source"),
                      skipped=sum(t.skipped for t in Xs))


def join(*Xs):
    """Concatenation of arrays/tensors (torch if all are tensors, else numpy), or of ImageTables.

    ImageTables give a new lazy :class:`~fairbook.data.fullscale.ImageTable` with the concatenated
    paths, targets and groups; ``classes``, ``group_names``, ``image_size`` and ``transform`` are
    the first table's; ``name``/``split``/``source`` join the distinct values with ``+``. Raises
    when the tables' image sizes or group names differ, or when tables and arrays are mixed.
    """
    return _join(Xs, "join")


def _check_pair(where: str, X, y, label: str) -> None:
    if len(X) != len(y):
        raise _fail(where, f"y_{label}", f"{len(y)} labels", f"one per row of X_{label} ({len(X)})")


def _check_table_labels(where: str, X, y, s, label: str) -> None:
    """An ImageTable carries its own targets and groups into the joined result: ``y`` must be its
    targets and ``s`` (if given) one of its groups."""
    if not np.array_equal(metrics.as_numpy(y), X.targets):
        raise _fail(where, f"y_{label}", f"labels differing from X_{label}.y",
                    f"the table's own targets (X_{label}.y), which the result carries")
    if s is not None and X.groups and not any(np.array_equal(metrics.as_numpy(s), g)
                                              for g in X.groups.values()):
        raise _fail(where, f"s_{label}", f"values matching none of X_{label}'s groups "
                    f"{sorted(X.groups)}", f"one of the table's groups (X_{label}.groups[...])")


def _check_samples(where: str, X_real, X_syn) -> bool:
    """True when both are ImageTables (checked joinable); else check the sample shapes."""
    if isinstance(X_real, ImageTable) or isinstance(X_syn, ImageTable):
        _check_tables(where, [X_real, X_syn], "X_syn")
        return True
    if tuple(X_real.shape[1:]) != tuple(X_syn.shape[1:]):
        raise _fail(where, "X_syn", f"samples of shape {tuple(X_syn.shape[1:])}",
                    f"the sample shape of X_real, {tuple(X_real.shape[1:])}")
    return False


def supplement(X_real, y_real, X_syn, y_syn):
    """Data supplementation (Table 3, after Shin et al.): the real training set followed by the
    synthetic one, for co-training from scratch. Returns ``(X, y)`` (torch if all inputs are
    tensors, else numpy).

    ``X_real`` and ``X_syn`` may both be ImageTables (the ``paper`` profile's on-disk data): ``X``
    is then their :func:`join`, and ``y_real``/``y_syn`` must be the tables' own targets."""
    where = "supplement"
    _check_pair(where, X_real, y_real, "real")
    _check_pair(where, X_syn, y_syn, "syn")
    if _check_samples(where, X_real, X_syn):
        _check_table_labels(where, X_real, y_real, None, "real")
        _check_table_labels(where, X_syn, y_syn, None, "syn")
    return _join([X_real, X_syn], where), _concat([y_real, y_syn])


def repair(X_real, y_real, s_real, X_syn, y_syn, s_syn, seed: int = 0):
    """Data repairing (Table 3, after D'Incà et al. / Ye-Bin et al.): add synthetic samples of each
    (y, s) cell, drawn without replacement, until every cell has as many samples as the largest
    real cell. Returns ``(X, y, s)``: the real samples first, then the added synthetic ones cell by
    cell (torch if all inputs are tensors, else numpy). Raises naming the cell whose synthetic pool
    is too small.

    ``X_real`` and ``X_syn`` may both be ImageTables: ``X`` is then the :func:`join` of ``X_real``
    and the drawn rows of ``X_syn`` (the same rows as for arrays); ``y``/``s`` must be the tables'
    own targets and one of their groups."""
    where = "repair"
    _check_pair(where, X_real, y_real, "real")
    _check_pair(where, X_syn, y_syn, "syn")
    if len(s_real) != len(X_real):
        raise _fail(where, "s_real", f"{len(s_real)} values", f"one per row of X_real ({len(X_real)})")
    if len(s_syn) != len(X_syn):
        raise _fail(where, "s_syn", f"{len(s_syn)} values", f"one per row of X_syn ({len(X_syn)})")
    tables = _check_samples(where, X_real, X_syn)
    yr, sr = metrics._binary(y_real, "y_real"), metrics._binary(s_real, "s_real")
    ys, ss = metrics._binary(y_syn, "y_syn"), metrics._binary(s_syn, "s_syn")
    if tables:
        _check_table_labels(where, X_real, y_real, s_real, "real")
        _check_table_labels(where, X_syn, y_syn, s_syn, "syn")
    counts = {c: int(((yr == c[0]) & (sr == c[1])).sum()) for c in CELLS}
    target = max(counts.values())
    pools = {c: np.flatnonzero((ys == c[0]) & (ss == c[1])) for c in CELLS}
    for c in CELLS:
        if len(pools[c]) < target - counts[c]:
            raise ValueError(f"{where}: cell (y={c[0]}, s={c[1]}) needs {target - counts[c]} "
                             f"synthetic samples to reach {target}, but the synthetic pool holds "
                             f"only {len(pools[c])}")
    rng = np.random.default_rng(seed)
    add = np.concatenate([rng.choice(pools[c], target - counts[c], replace=False) for c in CELLS])
    add = add.astype(np.int64)
    tensors = all(isinstance(a, torch.Tensor) for a in (X_real, y_real, s_real, X_syn, y_syn, s_syn))
    if tensors:
        def pick(a):
            return a[torch.as_tensor(add)]
    else:  # arrays (and tensors mixed with arrays) as numpy, ImageTables as ImageTables
        def pick(a):
            return a.subset(add) if isinstance(a, ImageTable) else metrics.as_numpy(a)[add]
    return (_join([X_real, pick(X_syn)], where), _concat([y_real, pick(y_syn)]),
            _concat([s_real, pick(s_syn)]))


# ------------------------------------------------------------------ the paper's data on disk
def _check_ratios(where: str, ratios) -> tuple[float, ...]:
    try:
        r = tuple(float(v) for v in ratios)
    except (TypeError, ValueError):
        r = ()
    if len(r) != 4 or any(not 0 <= v <= 1 for v in r) or abs(sum(r) - 1) > 1e-9:
        raise _fail(where, "ratios", ratios, "4 numbers in [0, 1] summing to 1, for the (y, s) "
                    "cells (0, 0), (0, 1), (1, 0), (1, 1)")
    return r


def context_cell_size(y, s, contexts, counts: Sequence[int]) -> int:
    """Images per (y, s) cell that :func:`context_rows` can draw for every number of contexts in
    ``counts``: the smallest (cell, context) group of the pool bounds a one-context draw, and the size
    is rounded down to a multiple of every count so that each context gets an equal share."""
    where = "context_cell_size"
    if not counts or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in counts):
        raise _fail(where, "counts", counts, "a non-empty list of integers >= 1")
    y, s, contexts = (np.asarray(v) for v in (y, s, contexts))
    smallest = min(int(((y == yy) & (s == ss) & (contexts == k)).sum())
                   for yy, ss in CELLS for k in np.unique(contexts))
    step = math.lcm(*[int(c) for c in counts])
    n = smallest - smallest % step
    if n < 1:
        raise _fail(where, "pool", f"{smallest} images in its smallest (cell, context) group",
                    f"at least {step} (the lcm of counts) per group")
    return n


def context_rows(y, s, contexts, n_per_cell: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a balanced synthetic training set whose cells each cover ``count`` contexts
    (the analog of Table 5's number of prompts): per (y, s) cell, ``count`` of the contexts present
    are drawn at random and ``n_per_cell / count`` images of each, without replacement. Every count
    gives the same number of images per cell, so the sets differ only in how many contexts they
    span."""
    where = "context_rows"
    y, s, contexts = (np.asarray(v) for v in (y, s, contexts))
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1 or n_per_cell % count:
        raise _fail(where, "count", count, f"an integer >= 1 dividing n_per_cell ({n_per_cell})")
    out = []
    for yy, ss in CELLS:
        cell = (y == yy) & (s == ss)
        present = np.unique(contexts[cell])
        if count > len(present):
            raise _fail(where, "count", count, f"at most the {len(present)} contexts of cell ({yy}, {ss})")
        for k in rng.choice(present, count, replace=False):
            rows = np.flatnonzero(cell & (contexts == k))
            if len(rows) < n_per_cell // count:
                raise _fail(where, "n_per_cell", n_per_cell, f"at most {len(rows) * count} for cell "
                            f"({yy}, {ss}) (context {k} has {len(rows)} images)")
            out.append(rng.choice(rows, n_per_cell // count, replace=False))
    return np.concatenate(out).astype(np.int64)


def celeba_setting(root, target: str = "Smiling", protected: str = "Male", n_real: int = 20000,
                   ratios: Sequence[float] = AIM_FAIR_RATIOS, seed: int = 0,
                   image_size: int | None = 224) -> dict[str, tuple[ImageTable, np.ndarray, np.ndarray]]:
    """AIM-Fair's CelebA setting (§4.1), lazily on disk: the biased real training set D_R and the
    full validation and test partitions.

    Training: ``n_real`` images of the official train partition with exact (y, s) cell counts
    ``n_real × ratios`` (largest remainder, as :func:`fairbook.data.images.biased_cells`; default
    the paper's 1:9 bias, 1,000/9,000/9,000/1,000 of 20,000), drawn cell by cell in the order of
    :data:`CELLS`, without replacement, from ``np.random.default_rng([seed, 2])``, and kept in
    file order. Validation and test: the whole official partitions ("We report performance on the
    whole original test dataset").

    Parameters
    ----------
    root : the CelebA folder (see :func:`fairbook.data.fullscale.load_celeba`); None searches
        ``$FAIRBOOK_DATA`` and the cache.
    target, protected : CelebA attributes: y (default "Smiling") and s (default "Male").
    image_size : images are resized to this when read (224 for the paper's ResNet-18).

    Returns
    -------
    ``{"train": (X, y, s), "val": (X, y, s), "test": (X, y, s)}``: ``X`` an
    :class:`~fairbook.data.fullscale.ImageTable` (``X.groups[protected]`` is ``s``), ``y`` and
    ``s`` int64 arrays. Raises naming the cell when the train partition holds too few images.
    """
    where = "celeba_setting"
    ratios = _check_ratios(where, ratios)
    if isinstance(n_real, bool) or not isinstance(n_real, (int, np.integer)) or n_real < 1:
        raise _fail(where, "n_real", n_real, "a positive integer")

    def split(name):
        X = datasets.load("celeba", name, root=root, target=target, sensitive=protected,
                      image_size=image_size)
        return X, X.y, X.groups[protected]

    X, y, s = split("train")
    rows = cell_rows(y, s, cell_counts(int(n_real), ratios), np.random.default_rng([seed, 2]),
                     lambda c, k, have: ValueError(
                         f"{where}: cell (y={c[0]}, s={c[1]}) = ({target}={c[0]}, {protected}={c[1]}) "
                         f"needs {k} images for n_real={n_real}, ratios={ratios}, but the "
                         f"CelebA train partition has only {have}"))
    train_X = X.subset(np.sort(rows))
    out = {"train": (train_X, train_X.y, train_X.groups[protected])}
    out.update(val=split("val"), test=split("test"))
    return out


def _subset_cells(where: str, X: ImageTable, s: np.ndarray, counts, rng, what: str,
                  words) -> ImageTable:
    """Rows of ``X`` with ``counts[i]`` images of cell ``CELLS[i]`` (labels ``X.y``, ``s``),
    drawn cell by cell without replacement from ``rng`` and kept in file order; raises naming the
    cell (``words(y, s)``) when ``X`` holds too few."""
    rows = cell_rows(X.y, s, counts, rng, lambda c, k, have: ValueError(
        f"{where}: cell (y={c[0]}, s={c[1]}) = ({words(*c)}) needs {k} images {what}, but the "
        f"{X.name} {X.split} split has only {have}"))
    return X.subset(np.sort(rows))


def utkface_setting(root, n_real: int = 10000, ratios: Sequence[float] = AIM_FAIR_RATIOS,
                    n_test: int = 3200, seed: int = 0,
                    image_size: int | None = 224) -> dict[str, tuple[ImageTable, np.ndarray, np.ndarray]]:
    """AIM-Fair's UTKFace setting (§4.1, Table 3's UTKFace columns "T: Female; P: White"), lazily on
    disk: y = gender (1 = Female, 0 = Male), s = **1 for White**, 0 for non-White ("a binary
    spurious attribute 'Ethnicity' based on whether the facial image is white or not").

    UTKFace has no official split: :func:`fairbook.data.fullscale.load_utkface`'s seeded 60/20/20
    train/val/test split of the valid files is used (its own seed, 0, independent of ``seed``).
    Note that loader's binary ``race`` group is 0 for White; here it is flipped, and the tables
    carry it as ``X.groups["White"]`` (``group_names["White"] == ("non-White", "White")``), so that
    the (y, s) cells (0, 0), (0, 1), (1, 0), (1, 1) of :data:`CELLS` are Male non-White, Male White,
    Female non-White, Female White. Pass ``protected_name="White"`` to :func:`synthetic_table` to
    :func:`join` synthetic data to these tables.

    Training: "a biased subset of 10,000 images, with the same bias degree as CelebA": ``n_real``
    images of the train split with exact (y, s) cell counts ``n_real × ratios`` (largest remainder;
    default 1:9, 500/4,500/4,500/500 of 10,000), drawn cell by cell in the order of :data:`CELLS`,
    without replacement, from ``np.random.default_rng([seed, 2])``, kept in file order (as
    :func:`celeba_setting`). Validation: the whole val split. Test: "a balanced and unbiased test
    dataset consisting of 3,200 images": ``n_test // 4`` images of each (y, s) cell of the test
    split, drawn likewise from ``np.random.default_rng([seed, 4])``; ``n_test=0`` keeps the whole
    test split (not balanced).

    Parameters
    ----------
    root : the UTKFace folder (see :func:`fairbook.data.fullscale.load_utkface`); None searches
        ``$FAIRBOOK_DATA`` and the cache.
    n_real : size of the biased training subset (positive).
    ratios : the training cells' shares, in the order of :data:`CELLS` (see :func:`bias_ratios`).
    n_test : size of the balanced test subset: 0 (the whole split) or a positive multiple of 4.
    image_size : images are resized to this when read (224 for the paper's ResNet-18).

    Returns
    -------
    ``{"train": (X, y, s), "val": (X, y, s), "test": (X, y, s)}``: ``X`` an
    :class:`~fairbook.data.fullscale.ImageTable` (``X.groups["White"]`` is ``s``), ``y`` and ``s``
    int64 arrays. Raises naming the cell when the train or test split holds too few images.
    """
    where = "utkface_setting"
    ratios = _check_ratios(where, ratios)
    if isinstance(n_real, bool) or not isinstance(n_real, (int, np.integer)) or n_real < 1:
        raise _fail(where, "n_real", n_real, "a positive integer")
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or n_test < 0 \
            or n_test % 4:
        raise _fail(where, "n_test", n_test, "0 (the whole test split) or a positive multiple of 4 "
                    "(n_test // 4 images per (y, s) cell)")

    def split(name):
        X = datasets.load("utkface", name, root=root, target="gender", sensitive="race",
                      image_size=image_size)
        white = (X.groups["race"] == 0).astype(np.int64)      # load_utkface: race 0 = White
        X = ImageTable(X.paths, X.targets, name=X.name, split=X.split, classes=X.classes,
                       groups={"White": white}, group_names={"White": ("non-White", "White")},
                       image_size=X.image_size, transform=X.transform, source=X.source,
                       skipped=X.skipped)
        return X, X.y, X.groups["White"]

    def words(yv, sv):
        return f"{('Male', 'Female')[yv]}, {('non-White', 'White')[sv]}"

    X, _, s = split("train")
    train_X = _subset_cells(where, X, s, cell_counts(int(n_real), ratios),
                            np.random.default_rng([seed, 2]), f"for n_real={n_real}, ratios={ratios}",
                            words)
    out = {"train": (train_X, train_X.y, train_X.groups["White"]), "val": split("val")}
    X, _, s = split("test")
    if n_test:
        X = _subset_cells(where, X, s, [int(n_test) // 4] * 4, np.random.default_rng([seed, 4]),
                          f"for a balanced test set of n_test={n_test}", words)
    out["test"] = (X, X.y, X.groups["White"])
    return out


def synthetic_table(path, image_size: int | None = 224,
                    protected_name: str = "s") -> tuple[ImageTable, np.ndarray, np.ndarray]:
    """A Stable Diffusion layout written by :func:`fairbook.generative.sd.generate_cells` as a lazy
    :class:`~fairbook.data.fullscale.ImageTable` (AIM-Fair §3.1: the synthetic fine-tuning data).

    Labels come from the layout's manifest (``sd.load_cells(path, images=False)``): the targets
    ``y`` and the protected attribute as ``X.groups[protected_name]``; pass the real table's group
    name (e.g. ``"Male"``) to :func:`join` the two. ``classes``/``group_names`` are the cells'
    words. Returns ``(X, y, s)``.
    """
    cells = sd.load_cells(path, images=False)

    def words(label, attr):
        by = {getattr(c, label): getattr(c, attr) for c in cells.cells}
        return tuple(by.get(i, str(i)) for i in range(max(by, default=1) + 1))

    X = ImageTable(cells.paths, cells.y, name="synthetic", split="train",
                   classes=words("y", "target"), groups={protected_name: cells.a},
                   group_names={protected_name: words("a", "protected")}, image_size=image_size,
                   source=str(cells.root or path))
    return X, X.y, X.groups[protected_name]



def arrays(d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, s)`` of an in-memory coloured dataset (s = its colour group)."""
    return d.X.astype(np.float32), d.y.astype(np.int64), d.groups["color"].astype(np.int64)


def colored_setting(dataset: str, root, n_real: int, ratios: Sequence[float], seed: int) -> dict:
    """The chapter's setting on coloured digits / clothes: ``{"train", "val", "test"}`` as ``(X, y, s)``,
    ``"generator_pool"`` and ``"names"`` (class names, group names).

    The train split is halved: the biased real set D_R (cell ratios ``ratios``, ``n_real`` images) comes
    from one half, the generator's own training images from the other -- the paper's generator never
    saw the real training set.
    """
    full = datasets.load(dataset, "train", root=root, seed=seed, bias=0.5)
    half = np.random.default_rng([seed, 7]).permutation(len(full.y))
    real_half, gen_half = full.subset(np.sort(half[: len(half) // 2])), full.subset(np.sort(half[len(half) // 2:]))
    D_R = datasets.images.biased_cells(real_half, "color", n_real, ratios, seed=np.random.default_rng([seed, 2]))
    return {"train": arrays(D_R),
            "val": arrays(datasets.load(dataset, "val", root=root, seed=seed, bias=0.5)),
            "test": arrays(datasets.load(dataset, "test", root=root, seed=seed, bias=0.5)),
            "generator_pool": gen_half, "names": (D_R.classes, D_R.group_names["color"])}


def draw_cells(X, y, s, ratios: Sequence[float], n: int, rng: np.random.Generator):
    """``n`` rows of a pool with the (y, s) cell shares ``ratios`` (:func:`cell_counts`), drawn
    without repeats cell by cell (:func:`cell_rows`, in cell order): S1 and S2 from the synthetic
    pool. Returns ``(X, y, s)``."""
    idx = cell_rows(y, s, cell_counts(n, ratios), rng)
    return take(X, idx), y[idx], s[idx]




def subsample(X, y, s, n: int, rng: np.random.Generator, ratios: Sequence[float] | None = None):
    """``n`` rows of ``(X, y, s)`` drawn without replacement, kept in their order (all when n ≥ len,
    or ``n = 0``). ``ratios``: the (y, s) cell shares of the draw (e.g. ``bias_ratios("1:9")`` for a
    test split with the real set's bias), drawn cell by cell; ``n`` is lowered to the largest size the
    cells allow."""
    if ratios is None:
        if not n or n >= len(y):
            return X, y, s
        keep = np.sort(rng.choice(len(y), n, replace=False))
        return take(X, keep), y[keep], s[keep]
    ratios = _check_ratios("subsample", ratios)
    avail = [int(((y == yy) & (s == ss)).sum()) for yy, ss in CELLS]
    n = min(n or len(y), len(y), *[math.floor(a / r) for a, r in zip(avail, ratios) if r > 0])
    keep = np.sort(cell_rows(y, s, cell_counts(n, ratios), rng))
    return take(X, keep), y[keep], s[keep]
