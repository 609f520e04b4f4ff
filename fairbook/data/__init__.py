"""The dataset registry: ``fairbook.data.load(name, split=..., root=None, seed=0, **options)``.

Sources are tried in order: an explicit ``root`` -> ``$FAIRBOOK_DATA/<name>`` -> the user cache
``~/.cache/fairbook/<name>`` -> a copy shipped in an installed Python or Debian package. Nothing is
ever downloaded. When no source works, :class:`DataNotFound` names the dataset, every place tried
and the one command that fixes it.

Small datasets come back as a :class:`Dataset` of arrays; the papers' full-scale image datasets
(CelebA, UTKFace, FairFace) as a lazy ``torch.utils.data.Dataset`` with the same attributes.
"""
from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..paths import cache_home

SPLITS = ("train", "val", "test", "all")


class DataNotFound(FileNotFoundError):
    """No source of a dataset exists; the message lists the places tried and the fixing command."""

    def __init__(self, name: str, tried: list[str], fix: str):
        self.name, self.tried, self.fix = name, tried, fix
        places = "\n".join(f"  - {t}" for t in tried)
        super().__init__(f"dataset '{name}' not found. Tried:\n{places}\nFix: {fix}")


class CorruptData(ValueError):
    """A dataset file exists but is truncated or malformed (never returned as a partial dataset)."""


@dataclass
class Dataset:
    """Arrays of one split.

    ``X``: tabular (N, D) float32, images (N, C, H, W) float32 in [0, 1]. ``y``: (N,) int64.
    ``groups``: sensitive attributes, each (N,) int64; ``group_names[attr][v]`` names value ``v``.
    ``semi_synthetic`` is True when a group attribute was injected (coloured digits etc.); tables and
    figures must say so.
    """

    X: np.ndarray
    y: np.ndarray
    name: str
    split: str
    classes: list[str]
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    group_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    feature_names: list[str] | None = None
    semi_synthetic: bool = False
    source: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "Dataset":
        """The rows ``idx`` (indices or boolean mask) as a new Dataset."""
        idx = np.asarray(idx)
        return replace(self, X=self.X[idx], y=self.y[idx],
                       groups={k: v[idx] for k, v in self.groups.items()})


@dataclass(frozen=True)
class Entry:
    """A registered dataset: ``loader`` is ``"module:function"`` inside ``fairbook.data``."""

    name: str
    loader: str
    kind: str  # "tabular", "image", "full-scale image"
    description: str
    fix: str  # the one command that makes the dataset available


MAKE = "make setup data  (installs the offline copies)"
REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> None:
    REGISTRY[entry.name] = entry


def names() -> list[str]:
    _load_entries()
    return sorted(REGISTRY)


def _load_entries() -> None:
    for mod in ("tabular", "images", "fullscale"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{mod}":
                raise


def entry(name: str) -> Entry:
    _load_entries()
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset '{name}'; allowed: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def check_split(dataset: str, split: str) -> None:
    """The one check of a ``split`` argument, shared by every loader."""
    if split not in SPLITS:
        raise ValueError(f"dataset '{dataset}': split got {split!r}, but split must be one of "
                         f"{', '.join(SPLITS)}")


def load(name: str, split: str = "train", root: str | os.PathLike | None = None, seed: int = 0,
         **options: Any):
    """Load ``split`` of dataset ``name`` (see the module docstring for the source order)."""
    e = entry(name)
    check_split(name, split)
    module, func = e.loader.split(":")
    fn: Callable = getattr(importlib.import_module(f"{__name__}.{module}"), func)
    return fn(split=split, root=Path(root) if root else None, seed=seed, **options)


def candidate_dirs(name: str, root: str | os.PathLike | None) -> list[Path]:
    """Directories to look in, in order: an explicit root (``root/<name>``, then ``root`` itself, so one
    root may hold several datasets), $FAIRBOOK_DATA/<name>, ~/.cache/fairbook/<name>."""
    dirs = []
    if root:
        dirs += [Path(root) / name, Path(root)]
    if os.environ.get("FAIRBOOK_DATA"):
        dirs.append(Path(os.environ["FAIRBOOK_DATA"]) / name)
    dirs.append(cache_home() / name)
    return dirs


_FP_CACHE: dict[tuple, str] = {}


def file_fingerprint(paths: list[Path]) -> str:
    """sha256 over the bytes of ``paths`` (cached by path, size and mtime)."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if key not in _FP_CACHE:
            fh = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    fh.update(chunk)
            _FP_CACHE[key] = fh.hexdigest()
        h.update(p.name.encode())
        h.update(_FP_CACHE[key].encode())
    return h.hexdigest()


def source_files(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The files ``load(name, root=root)`` would read; :class:`DataNotFound` when there are none."""
    module, _ = entry(name).loader.split(":")
    mod = importlib.import_module(f"{__name__}.{module}")
    return list(mod.source_files(name, Path(root) if root else None))


def fingerprint(name: str, root: str | os.PathLike | None = None) -> str:
    """Fingerprint of the files the dataset would be loaded from (same source order as ``load``)."""
    return file_fingerprint(source_files(name, root))


def fingerprints_for(chapter: str, values: dict[str, Any]) -> dict[str, str]:
    """Fingerprints of the datasets a chapter run reads: its ``datasets`` parameter (a list of
    registry names), ``dataset`` parameter (one name) and any ``<role>_dataset`` parameter naming a
    registered dataset (GCM's ``image_dataset``; "none" is not one), with ``data_root`` as the
    explicit root."""
    wanted = list(values.get("datasets") or ([values["dataset"]] if values.get("dataset") else []))
    known = names()
    wanted += [v for k, v in values.items() if k.endswith("_dataset") and v in known and v not in wanted]
    root = values.get("data_root") or None
    return {name: fingerprint(name, root) for name in wanted}
