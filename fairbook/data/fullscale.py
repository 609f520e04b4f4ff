"""The papers' full-scale datasets, read from files the user provides (nothing is downloaded).

=========  ==============================  ============================================
name       paper                           on-disk format read here
=========  ==============================  ============================================
cifar10    HBR                             CIFAR-10 "python version" pickles
cifar100   HBR                             CIFAR-100 "python version" pickles
celeba     AIM-Fair                        CelebA aligned images + attribute/partition lists
utkface    (face benchmark)                UTKFace crops, labels encoded in the file names
fairface   MIME                            FairFace label CSVs + ``train/``, ``val/`` images
=========  ==============================  ============================================

Each dataset is looked for in :func:`fairbook.data.candidate_dirs` order (explicit ``root``,
``$FAIRBOOK_DATA/<name>``, ``~/.cache/fairbook/<name>``); a missing dataset raises
:class:`~fairbook.data.DataNotFound` listing every directory tried and what was missing there, a
truncated or malformed file raises :class:`~fairbook.data.CorruptData` naming the file.

CIFAR comes back as an in-memory :class:`~fairbook.data.Dataset`. The face datasets come back as a
lazy :class:`ImageTable` (a ``torch.utils.data.Dataset``) that opens each image when indexed.

Fingerprints (:func:`source_files`): CIFAR hashes its batch files. For the face datasets, hashing
every image's bytes (CelebA: 200k files, 1.4 GB) would take minutes per run, so the fingerprint
covers the annotation files plus a small *manifest*: the sorted image file names with their byte
sizes, written to ``~/.cache/fairbook/manifests/``. Adding, removing, renaming or resizing an image
changes the fingerprint; rewriting an image in place with the same size does not.

The shared helpers and :class:`ImageTable` live in ``_fullscale_base``; every name is imported from here.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import CorruptData, Dataset, Entry, check_split, register
from ._fullscale_base import (ImageTable, _bad_option, _check_fraction, _check_image_options, _check_images, _locate,
                              _manifest, _missing_files, _no_extra, _parts)

# ------------------------------------------------------------------------------------ CIFAR

_CIFAR = {
    # name: (directory, train files, test files, meta file, {label option: (labels key, names key)})
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", {"fine": ("labels", "label_names")}),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta",
                 {"fine": ("fine_labels", "fine_label_names"),
                  "coarse": ("coarse_labels", "coarse_label_names")}),
}


def _cifar_fix(name: str) -> str:
    folder, n = _CIFAR[name][0], name[5:]
    return (f"download CIFAR-{n} (python version, cifar-{n}-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html), extract it and pass "
            f"root=<the folder containing {folder}/> or put it under $FAIRBOOK_DATA/{name}/{folder}/")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle CIFAR files without executing arbitrary code: only numpy arrays are allowed."""

    ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
               ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        module = module.replace("numpy.core", "numpy._core", 1) if module.startswith("numpy.core") else module
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (the files use bytes keys such as ``b'data'``)."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except Exception as e:  # EOFError, UnpicklingError, ValueError... all mean a broken file
        raise CorruptData(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise CorruptData(f"{path}: expected a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(path: Path, labels_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _read_pickle(path)
    if "data" not in d or labels_key not in d:
        raise CorruptData(f"{path}: missing key {'data' if 'data' not in d else labels_key!r}")
    try:
        data, labels = np.asarray(d["data"]), np.asarray(d[labels_key], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise CorruptData(f"{path}: malformed {labels_key!r} ({e})") from e
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CorruptData(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= n_classes:
        raise CorruptData(f"{path}: {labels_key!r} has {labels.size} labels for {len(data)} images "
                          f"or a label outside 0..{n_classes - 1}")
    return data, labels


def _cifar_dir(name: str, root) -> Path:
    folder, train, test, meta, _ = _CIFAR[name]
    return _locate(name, root, [folder, ""], _missing_files([*train, *test, meta]), _cifar_fix(name))


def _load_cifar(name: str, split: str, root, seed: int, label: str, val_fraction: float) -> Dataset:
    check_split(name, split)
    folder, train_files, test_files, meta_file, label_keys = _CIFAR[name]
    if label not in label_keys:
        raise _bad_option("label", label, ", ".join(label_keys))
    val_fraction = _check_fraction(val_fraction)
    if split == "val" and val_fraction == 0:
        raise ValueError(f"{name} has no official validation split: pass val_fraction > 0 "
                         "(e.g. val_fraction=0.1) to hold out a stratified part of 'train'")
    d = _cifar_dir(name, root)
    labels_key, names_key = label_keys[label]
    meta = _read_pickle(d / meta_file)
    if names_key not in meta:
        raise CorruptData(f"{d / meta_file}: missing key {names_key!r}")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[names_key]]
    files = {"train": train_files, "val": train_files, "test": test_files,
             "all": train_files + test_files}[split]
    batches = [_read_batch(d / f, labels_key, len(classes)) for f in files]
    data = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    if split in ("train", "val") and val_fraction > 0:
        train_idx, val_idx = _parts(y, [1 - val_fraction, val_fraction], seed)
        keep = train_idx if split == "train" else val_idx
        data, y = data[keep], y[keep]
    X = data.reshape(-1, 3, 32, 32).astype(np.float32)
    X /= 255  # in place: the full training set is 600 MB as float32
    return Dataset(X=X, y=y, name=name, split=split, classes=classes, source=str(d))


def load_cifar10(split: str = "train", root=None, seed: int = 0, *, val_fraction: float = 0.0,
                 **extra) -> Dataset:
    """CIFAR-10 from the official python-version pickles (Krizhevsky 2009).

    Layout: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (as
    extracted from ``cifar-10-python.tar.gz``; ``root`` may also point at that folder itself).
    Each batch is a pickled dict with ``b'data'`` (10000×3072 uint8, rows are the R, G, B planes of a
    32×32 image) and ``b'labels'``; ``batches.meta`` holds ``b'label_names'``.

    Parameters
    ----------
    split : "train" (official 50k, minus the val part), "val", "test" (official 10k) or "all".
    val_fraction : share of each class of the official train set held out as "val" (seeded);
        0 (default) means no "val" split.

    Returns
    -------
    Dataset with ``X`` float32 (N, 3, 32, 32) in [0, 1], ``y`` int64, ``classes`` from the meta file.
    """
    _no_extra("cifar10", extra, ["val_fraction"])
    return _load_cifar("cifar10", split, root, seed, "fine", val_fraction)


def load_cifar100(split: str = "train", root=None, seed: int = 0, *, label: str = "fine",
                  val_fraction: float = 0.0, **extra) -> Dataset:
    """CIFAR-100 from the official python-version pickles (Krizhevsky 2009).

    Layout: ``<root>/cifar-100-python/{train, test, meta}``; the batches hold ``b'data'``,
    ``b'fine_labels'`` and ``b'coarse_labels'``, ``meta`` the ``b'fine_label_names'`` and
    ``b'coarse_label_names'``.

    Parameters
    ----------
    split, val_fraction : as for :func:`load_cifar10`.
    label : "fine" (100 classes, default) or "coarse" (20 superclasses).
    """
    _no_extra("cifar100", extra, ["label", "val_fraction"])
    return _load_cifar("cifar100", split, root, seed, label, val_fraction)


# ----------------------------------------------------------------------------------- CelebA

_CELEBA_FILES = ["list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/"]
_CELEBA_FIX = ("download CelebA (Align&Cropped images img_align_celeba.zip, Anno/list_attr_celeba.txt, "
               "Eval/list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), "
               "put the two .txt files and the extracted img_align_celeba/ in one folder <dir>/celeba/ "
               "and pass root=<dir> or put them under $FAIRBOOK_DATA/celeba/celeba/")
_CELEBA_SPLIT = {"train": [0], "val": [1], "test": [2], "all": [0, 1, 2]}


def _celeba_dir(root) -> Path:
    return _locate("celeba", root, ["celeba", ""], _missing_files(_CELEBA_FILES), _CELEBA_FIX)


def _read_whitespace_table(path: Path, skiprows: int) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=r"\s+", header=None, skiprows=skiprows, dtype={0: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise CorruptData(f"{path}: malformed ({e})") from e


def _read_celeba_attributes(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(attribute names, file names, values in {-1, 1} as int8 (N, A)) of ``list_attr_celeba.txt``.

    Format: line 1 the image count, line 2 the attribute names, then ``000001.jpg -1  1 ...``.
    """
    with open(path) as f:
        head = [f.readline(), f.readline()]
    try:
        count = int(head[0].strip())
    except ValueError:
        raise CorruptData(f"{path}: first line should be the image count, got {head[0].strip()!r}")
    attrs = head[1].split()
    if not attrs:
        raise CorruptData(f"{path}: second line should list the attribute names")
    df = _read_whitespace_table(path, skiprows=2)
    if len(df) != count:
        raise CorruptData(f"{path}: header says {count} images but {len(df)} rows found (truncated?)")
    if df.shape[1] != len(attrs) + 1 or df.isna().to_numpy().any():
        raise CorruptData(f"{path}: every row needs an image name and {len(attrs)} values "
                          f"(one value per attribute)")
    values = df.iloc[:, 1:].to_numpy()
    if not np.isin(values, (-1, 1)).all():
        raise CorruptData(f"{path}: attribute values must be -1 or 1")
    return attrs, df[0].to_numpy(dtype=object), values.astype(np.int8)


def _read_celeba_partition(path: Path, files: np.ndarray) -> np.ndarray:
    """Partition code (0 train, 1 val, 2 test) of each of ``files`` from ``list_eval_partition.txt``."""
    df = _read_whitespace_table(path, skiprows=0)
    if df.shape[1] != 2 or not df[1].isin((0, 1, 2)).all() or df[0].duplicated().any():
        raise CorruptData(f"{path}: expected one line '<image> <0|1|2>' per image")
    part = pd.Series(df[1].to_numpy(), index=df[0].to_numpy()).reindex(files)
    if part.isna().any():
        lost = list(np.asarray(files)[part.isna().to_numpy()][:5])
        raise CorruptData(f"{path}: no partition for {int(part.isna().sum())} image(s), "
                          f"e.g. {', '.join(lost)}")
    return part.to_numpy().astype(np.int64)


def load_celeba(split: str = "train", root=None, seed: int = 0, *, target: str = "Smiling",
                sensitive: str | Sequence[str] = "Male", image_size: int | None = 224,
                transform: Callable | None = None, **extra) -> ImageTable:
    """CelebA aligned & cropped faces with binary attributes (Liu et al. 2015), as in AIM-Fair.

    Layout (torchvision's): ``<root>/celeba/`` or ``<root>/`` holding ``list_attr_celeba.txt``,
    ``list_eval_partition.txt`` (``000001.jpg 0``; 0 train, 1 val, 2 test) and the images in
    ``img_align_celeba/``. All listed images of the requested split must exist.

    Parameters
    ----------
    split : the official partition "train", "val", "test", or "all". ``seed`` is unused.
    target : attribute predicted (default "Smiling", AIM-Fair's task); 1 = attribute present.
    sensitive : attribute(s) used as groups (default "Male"); any of the 40 header names.
    image_size, transform : see :class:`ImageTable`.
    """
    check_split("celeba", split)
    _no_extra("celeba", extra, ["target", "sensitive", "image_size", "transform"])
    _check_image_options(image_size, transform)
    d = _celeba_dir(root)
    attrs, files, values = _read_celeba_attributes(d / "list_attr_celeba.txt")
    sens = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    for option, value in [("target", target)] + [("sensitive", s) for s in sens]:
        if value not in attrs:
            raise _bad_option(option, value, "a CelebA attribute: " + ", ".join(attrs))
    if target in sens:
        raise _bad_option("sensitive", sensitive, "attributes other than the target " + repr(target))
    part = _read_celeba_partition(d / "list_eval_partition.txt", files)
    keep = np.isin(part, _CELEBA_SPLIT[split])
    _check_images("celeba", d / "img_align_celeba", list(files[keep]))
    col = {a: j for j, a in enumerate(attrs)}
    return ImageTable(
        [d / "img_align_celeba" / f for f in files[keep]],
        (values[keep, col[target]] == 1).astype(np.int64),
        name="celeba", split=split, classes=[f"not {target}", target],
        groups={s: (values[keep, col[s]] == 1).astype(np.int64) for s in sens},
        group_names={s: (f"not {s}", s) for s in sens},
        image_size=image_size, transform=transform, source=str(d))


# ---------------------------------------------------------------------------------- UTKFace

AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
_AGE_EDGES = np.array([3, 10, 20, 30, 40, 50, 60, 70])  # left edges of bins 1..8
_UTK_NAME = re.compile(r"^(\d+)_([01])_([0-4])_([^_]+?)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)
_UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
_UTK_FIX = ("download UTKFace (Aligned&Cropped faces UTKFace.tar.gz from "
            "https://susanqq.github.io/UTKFace/), "
            "extract it and pass root=<the folder containing UTKFace/> or put it under "
            "$FAIRBOOK_DATA/utkface/UTKFace/")


def _utk_dir(root) -> Path:
    def missing(d: Path) -> list[str]:
        return [] if any(n.lower().endswith(".jpg") for n in os.listdir(d)) else ["*.jpg images"]
    return _locate("utkface", root, ["UTKFace", ""], missing, _UTK_FIX)


def age_bin(age: np.ndarray) -> np.ndarray:
    """FairFace-style age bin (index into :data:`AGE_BINS`) of ages in years."""
    return np.searchsorted(_AGE_EDGES, np.asarray(age), side="right").astype(np.int64)


def load_utkface(split: str = "train", root=None, seed: int = 0, *, target: str = "gender",
                 sensitive: str = "race", image_size: int | None = 224,
                 transform: Callable | None = None, **extra) -> ImageTable:
    """UTKFace cropped faces (Zhang et al. 2017); labels come from the file names.

    Files ``[age]_[gender]_[race]_[date&time].jpg`` (or ``.jpg.chip.jpg``) in ``<root>/UTKFace/`` or
    ``<root>/``; gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
    Files whose names do not follow the pattern (a few exist in the release) are skipped and counted
    in ``.skipped``.

    Parameters
    ----------
    split : UTKFace has no official split: a seeded random 60/20/20 train/val/test split of the
        sorted valid files ("all" = every valid file). The split does not depend on the options.
    target : "gender" (Male/Female) or "age_bin" (the nine FairFace age bins :data:`AGE_BINS`).
    sensitive : "race" (binary: White vs non-White, default), "race5" (all five) or "gender".
    image_size, transform : see :class:`ImageTable`.
    """
    check_split("utkface", split)
    _no_extra("utkface", extra, ["target", "sensitive", "image_size", "transform"])
    if target not in ("gender", "age_bin"):
        raise _bad_option("target", target, "gender, age_bin")
    if sensitive not in ("race", "race5", "gender") or sensitive == target:
        raise _bad_option("sensitive", sensitive, "race, race5, gender (different from target)")
    _check_image_options(image_size, transform)
    d = _utk_dir(root)
    all_jpg = sorted(n for n in os.listdir(d) if n.lower().endswith(".jpg"))
    matches = [(n, _UTK_NAME.match(n)) for n in all_jpg]
    rows = [(n, int(m[1]), int(m[2]), int(m[3])) for n, m in matches if m]
    if not rows:
        raise CorruptData(f"utkface: none of the {len(all_jpg)} .jpg files in {d} is named "
                          "[age]_[gender]_[race]_[date&time].jpg")
    files = np.array([r[0] for r in rows], dtype=object)
    age, gender, race = (np.array([r[k] for r in rows], dtype=np.int64) for k in (1, 2, 3))
    keep = np.arange(len(rows))
    if split != "all":
        keep = _parts(np.zeros(len(rows)), [0.6, 0.2, 0.2], seed)[["train", "val", "test"].index(split)]
    labels = {"gender": (gender, ("Male", "Female")), "age_bin": (age_bin(age), AGE_BINS),
              "race": ((race != 0).astype(np.int64), ("White", "non-White")),
              "race5": (race, _UTK_RACES)}
    y, classes = labels[target]
    s, s_names = labels[sensitive]
    return ImageTable([d / f for f in files[keep]], y[keep], name="utkface", split=split,
                      classes=classes, groups={sensitive: s[keep]}, group_names={sensitive: s_names},
                      image_size=image_size, transform=transform, source=str(d),
                      skipped=len(all_jpg) - len(rows))


# --------------------------------------------------------------------------------- FairFace

_FF_FILES = ["fairface_label_train.csv", "fairface_label_val.csv", "train/", "val/"]
_FF_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
             "Middle Eastern")
_FF_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
_FF_GENDERS = ("Male", "Female")
_FF_FIX = ("download FairFace (fairface-img-margin025-trainval.zip, fairface_label_train.csv, "
           "fairface_label_val.csv from https://github.com/joojs/fairface), put the CSVs next to the "
           "extracted train/ and val/ folders and pass root=<that folder> or put them under "
           "$FAIRBOOK_DATA/fairface/")


def _fairface_dir(root) -> Path:
    return _locate("fairface", root, [""], _missing_files(_FF_FILES), _FF_FIX)


def _read_fairface_csv(path: Path) -> pd.DataFrame:
    """A FairFace label file (columns file, age, gender, race, service_test), validated."""
    try:
        df = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise CorruptData(f"{path}: malformed CSV ({e})") from e
    need = ["file", "age", "gender", "race"]
    if missing := [c for c in need if c not in df.columns]:
        raise CorruptData(f"{path}: missing column(s) {', '.join(missing)}")
    for col, vocab in (("age", _FF_AGES), ("gender", _FF_GENDERS), ("race", _FF_RACES)):
        bad = df[col][~df[col].isin(vocab)]
        if len(bad):
            raise CorruptData(f"{path}: unknown {col} value(s) {sorted(set(bad.astype(str)))[:5]}")
    return df


def load_fairface(split: str = "train", root=None, seed: int = 0, *, target: str = "gender",
                  sensitive: str = "race", groups: Sequence[str] | None = ("White", "Black"),
                  val_fraction: float = 0.0, image_size: int | None = 224,
                  transform: Callable | None = None, **extra) -> ImageTable:
    """FairFace race-balanced faces (Kärkkäinen & Joo 2021), as used by MIME.

    Layout: ``<root>/fairface_label_train.csv`` and ``fairface_label_val.csv`` (columns ``file``,
    ``age``, ``gender``, ``race``, ``service_test``) with ``file`` paths such as ``train/1.jpg`` and
    ``val/1.jpg`` relative to ``<root>``.

    Parameters
    ----------
    split : "train" = the label_train file (minus the val part), "val" = a seeded part of it
        (needs ``val_fraction`` > 0, stratified by race×gender), "test" = the label_val file
        (MIME uses FairFace's validation set as its test set), "all" = both files.
    target : "gender" (Male 0 / Female 1, MIME's task) or "age" (the nine age bins).
    sensitive : "race" (the only option).
    groups : races kept, coded 0, 1, ... in the given order. Default ("White", "Black") = MIME's
        majority (0) and minority (1); None keeps all seven races in FairFace's order.
    val_fraction : share of label_train held out as "val" (0 = no val split).
    image_size, transform : see :class:`ImageTable`.
    """
    check_split("fairface", split)
    _no_extra("fairface", extra, ["target", "sensitive", "groups", "val_fraction", "image_size",
                                  "transform"])
    if target not in ("gender", "age"):
        raise _bad_option("target", target, "gender, age")
    if sensitive != "race":
        raise _bad_option("sensitive", sensitive, "race")
    races = _FF_RACES if groups is None else groups
    if (isinstance(races, str) or len(races) < 2 or len(set(races)) != len(races)
            or any(r not in _FF_RACES for r in races)):
        raise _bad_option("groups", groups, "None or two or more distinct races of "
                          + ", ".join(_FF_RACES))
    val_fraction = _check_fraction(val_fraction)
    if split == "val" and val_fraction == 0:
        raise ValueError("fairface split 'val' needs val_fraction > 0 (FairFace's own val file is "
                         "the 'test' split here, as in MIME)")
    _check_image_options(image_size, transform)
    d = _fairface_dir(root)
    frames = []
    if split in ("train", "val", "all"):
        df = _read_fairface_csv(d / "fairface_label_train.csv")
        if split != "all" and val_fraction > 0:
            strata = (df["race"] + "|" + df["gender"]).to_numpy()
            tr, va = _parts(strata, [1 - val_fraction, val_fraction], seed)
            df = df.iloc[tr if split == "train" else va]
        frames.append(df)
    if split in ("test", "all"):
        frames.append(_read_fairface_csv(d / "fairface_label_val.csv"))
    df = pd.concat(frames, ignore_index=True)
    df = df[df["race"].isin(races)]
    _check_images("fairface", d, list(df["file"]))
    y = (df["gender"].map(_FF_GENDERS.index) if target == "gender" else df["age"].map(_FF_AGES.index))
    return ImageTable([d / f for f in df["file"]], y.to_numpy(np.int64), name="fairface", split=split,
                      classes=list(_FF_GENDERS if target == "gender" else AGE_BINS),
                      groups={"race": df["race"].map(list(races).index).to_numpy(np.int64)},
                      group_names={"race": tuple(races)}, image_size=image_size,
                      transform=transform, source=str(d))


# ---------------------------------------------------------------------------- fingerprints


def source_files(name: str, root=None) -> list[Path]:
    """The files whose bytes fingerprint ``name`` (see the module docstring for the face datasets)."""
    if name in _CIFAR:
        _, train, test, meta, _ = _CIFAR[name]
        d = _cifar_dir(name, root)
        return [d / f for f in [*train, *test, meta]]
    if name == "celeba":
        d = _celeba_dir(root)
        imgs = d / "img_align_celeba"
        return [d / "list_attr_celeba.txt", d / "list_eval_partition.txt",
                _manifest(name, imgs, [f for f in os.listdir(imgs) if (imgs / f).is_file()])]
    if name == "utkface":
        d = _utk_dir(root)
        return [_manifest(name, d, [f for f in os.listdir(d) if f.lower().endswith(".jpg")])]
    if name == "fairface":
        d = _fairface_dir(root)
        rel = [f"{sub}/{f}" for sub in ("train", "val") for f in os.listdir(d / sub)
               if (d / sub / f).is_file()]
        return [d / "fairface_label_train.csv", d / "fairface_label_val.csv", _manifest(name, d, rel)]
    raise ValueError(f"{name!r} is not a full-scale dataset; allowed: "
                     "cifar10, cifar100, celeba, utkface, fairface")


register(Entry("cifar10", "fullscale:load_cifar10", "full-scale image",
               "CIFAR-10: 60k 32×32 colour images, 10 classes (HBR)",
               _cifar_fix("cifar10")))
register(Entry("cifar100", "fullscale:load_cifar100", "full-scale image",
               "CIFAR-100: 60k 32×32 colour images, 100 fine / 20 coarse classes (HBR)",
               _cifar_fix("cifar100")))
register(Entry("celeba", "fullscale:load_celeba", "full-scale image",
               "CelebA: 202,599 aligned faces with 40 binary attributes; Smiling vs Male (AIM-Fair)",
               _CELEBA_FIX))
register(Entry("utkface", "fullscale:load_utkface", "full-scale image",
               "UTKFace: ~24k cropped faces with age, gender and race in the file names", _UTK_FIX))
register(Entry("fairface", "fullscale:load_fairface", "full-scale image",
               "FairFace: 108k race-balanced faces; gender task, White vs Black groups (MIME)",
               _FF_FIX))
