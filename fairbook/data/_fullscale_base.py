"""What the full-scale loaders of :mod:`fairbook.data.fullscale` share: finding a dataset's folder,
option checks, stratified splits, image manifests (the face datasets' fingerprints) and the lazy
:class:`ImageTable` the face datasets come back as."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from ..paths import cache_home
from . import CorruptData, DataNotFound, candidate_dirs

# ----------------------------------------------------------------------------------- helpers


def _bad_option(option: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"option {option}={value!r} is invalid; allowed: {allowed}")


def _no_extra(name: str, extra: dict, allowed: Sequence[str]) -> None:
    if extra:
        raise ValueError(f"unknown option(s) {', '.join(sorted(extra))} for dataset '{name}'; "
                         f"allowed: {', '.join(allowed)}")


def _check_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise _bad_option("val_fraction", value, "a number in [0, 1)")
    return float(value)


def _locate(name: str, root, layouts: Sequence[str],
            missing_in: Callable[[Path], list[str]], fix: str) -> Path:
    """The first ``candidate/layout`` directory for which ``missing_in`` reports nothing.

    ``layouts`` are sub-directories tried inside each candidate (``""`` = the candidate itself).
    Raises DataNotFound listing each candidate with what was missing in its closest layout
    (fewest missing items; an existing directory wins a tie, then the earlier layout).
    """
    tried = []
    for base in candidate_dirs(name, root):
        if not base.is_dir():
            tried.append(f"{base} (does not exist)")
            continue
        reports = []
        for order, sub in enumerate(layouts):
            d = base / sub if sub else base
            if not d.is_dir():
                reports.append((1, 1, order, [f"{sub}/"]))
                continue
            missing = missing_in(d)
            if not missing:
                return d
            reports.append((len(missing), 0, order, [f"{sub}/{m}" if sub else m for m in missing]))
        tried.append(f"{base}: missing {', '.join(min(reports)[3])}")
    raise DataNotFound(name, tried, fix)


def _missing_files(required: Sequence[str]) -> Callable[[Path], list[str]]:
    """A ``missing_in`` check: the ``required`` entries (a trailing ``/`` means a directory)."""
    def check(d: Path) -> list[str]:
        return [r for r in required
                if not ((d / r).is_dir() if r.endswith("/") else (d / r).is_file())]
    return check


def _parts(strata: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split ``range(len(strata))`` into parts of the given fractions, stratified by ``strata``.

    Each part has exactly ``round(fraction × N)`` rows overall (the last takes the remainder) and
    within ±1 of its share of every stratum: the rows of a stratum are shuffled and given evenly
    spaced positions in (0, 1), then all rows are ordered by position (random tie-break) and cut.
    Deterministic for a seed; each part is returned sorted.
    """
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    pos = np.empty(len(strata))
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        pos[idx] = (np.arange(len(idx)) + 0.5) / len(idx)
    order = np.lexsort((rng.random(len(strata)), pos))
    cuts = np.round(np.cumsum(fractions)[:-1] * len(strata)).astype(int)
    return [np.sort(p) for p in np.split(order, cuts)]


def _manifest(name: str, image_root: Path, rel_names: Sequence[str]) -> Path:
    """Write (only when changed) a manifest of ``rel_names`` with byte sizes; return its path."""
    lines = [f"{n}\t{(image_root / n).stat().st_size}" for n in sorted(rel_names)]
    text = f"# {name} images under {image_root.resolve()}\n" + "\n".join(lines) + "\n"
    key = hashlib.sha256(str(image_root.resolve()).encode()).hexdigest()[:16]
    for base in (cache_home(), Path(tempfile.gettempdir()) / "fairbook"):
        path = base / "manifests" / key / f"{name}-images.manifest"
        try:
            if not path.is_file() or path.read_text() != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
            return path
        except OSError:
            continue
    raise OSError(f"cannot write the {name} image manifest in {cache_home()} or the temp dir")


# ------------------------------------------------------------------------------ ImageTable


class ImageTable(TorchDataset):
    """A lazy image dataset: file paths plus labels; an image is read only when indexed.

    Mirrors :class:`fairbook.data.Dataset`: ``targets`` (also ``y``) int64, ``groups`` /
    ``group_names`` for the sensitive attributes, ``classes``, ``name``, ``split``, ``source``,
    ``semi_synthetic`` (always False: these are real attributes). ``skipped`` counts files that
    were ignored because their labels could not be read (UTKFace).

    ``table[i]`` returns ``(image, target, i)``: ``image`` is a float tensor C×H×W in [0, 1]. With
    ``transform=None`` the RGB image is resized to ``image_size``×``image_size`` (bilinear; no resize
    when ``image_size`` is None); otherwise ``transform(PIL RGB image)`` is used instead and may
    return a tensor or a PIL image (converted).
    """

    def __init__(self, paths, targets, *, name: str, split: str, classes: Sequence[str],
                 groups: dict[str, np.ndarray] | None = None,
                 group_names: dict[str, tuple[str, ...]] | None = None,
                 image_size: int | None = 224, transform: Callable | None = None,
                 source: str = "", skipped: int = 0):
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.groups = {k: np.asarray(v, dtype=np.int64) for k, v in (groups or {}).items()}
        self.group_names = dict(group_names or {})
        self.classes = list(classes)
        self.name, self.split, self.source = name, split, source
        self.image_size, self.transform, self.skipped = image_size, transform, skipped
        self.semi_synthetic = False

    @property
    def y(self) -> np.ndarray:
        return self.targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, ValueError) as e:
            raise CorruptData(f"{path}: cannot read image ({e})") from e
        if self.transform is not None:
            img = self.transform(img)
        elif self.image_size is not None:
            img = img.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        if isinstance(img, Image.Image):
            img = torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)
            img = img.float().div_(255)
        return img, int(self.targets[i]), i

    def subset(self, idx) -> "ImageTable":
        """The rows ``idx`` (indices or boolean mask) as a new ImageTable."""
        idx = np.asarray(idx)
        return ImageTable(self.paths[idx], self.targets[idx], name=self.name, split=self.split,
                          classes=self.classes, groups={k: v[idx] for k, v in self.groups.items()},
                          group_names=self.group_names, image_size=self.image_size,
                          transform=self.transform, source=self.source, skipped=self.skipped)

    def __repr__(self) -> str:
        return (f"ImageTable(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.classes}, groups={list(self.groups)})")


def _check_images(name: str, image_root: Path, rel_names: Sequence[str]) -> None:
    """CorruptData listing the first few of ``rel_names`` that do not exist under ``image_root``."""
    present: set[str] = set()
    for sub in sorted({os.path.dirname(n) for n in rel_names}):
        d = image_root / sub
        present.update(os.path.join(sub, f) if sub else f for f in (os.listdir(d) if d.is_dir() else []))
    missing = [n for n in rel_names if n not in present]
    if missing:
        raise CorruptData(f"{name}: {len(missing)} listed image(s) missing under {image_root}, e.g. "
                          f"{', '.join(missing[:5])}")


def _check_image_options(image_size, transform) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise _bad_option("image_size", image_size, "a positive int or None")
    if transform is not None and not callable(transform):
        raise _bad_option("transform", transform, "a callable taking a PIL image, or None")
