"""Stable Diffusion text-to-image generation for AIM-Fair (§3.1, §4.3).

AIM-Fair generates its synthetic training data with Stable Diffusion v2.1, a DDIM sampler with 50
steps, classifier-free guidance 9.0, 512x512 images (:data:`AIMFAIR_SETTINGS`), ~50 contextual
prompts and ~10,000 images per (target, protected) cell. This module

- loads a local copy of the weights (:func:`load_pipeline`; nothing is ever downloaded),
- generates a fixed number of images per cell with per-image seeds and writes them as one
  on-disk layout, atomically (:func:`generate_cells`)::

      out_dir/
        y0_a0_not-smiling_female/00000.png 00001.png ...
        y1_a1_smiling_male/00000.png ...
        manifest.csv      file, cell, target, protected, y, a, index, prompt_index, prompt, seed
        prompts.json      the prompts per cell + the generation settings

- reads the layout back with labels ``y`` (target) and ``a`` (protected) (:func:`load_cells`),
- builds a tiny random-weight pipeline from configs (:func:`tiny_pipeline`) so that every line of
  this path runs and is tested on a CPU without the real weights.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
import importlib.util
import os
import re
import shutil
import uuid
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import progress_enabled, swap_into_place
from .prompts import Cell, _check_cells, load_prompts, save_prompts

__all__ = [
    "AIMFAIR_SETTINGS", "AIMFAIR_PROMPTS_PER_CELL", "AIMFAIR_IMAGES_PER_CELL", "MODEL_REPO",
    "MODEL_DIRNAME", "default_model_path", "load_pipeline", "image_seed", "generate_cells",
    "is_complete_layout", "load_cells", "SyntheticCells", "tiny_pipeline",
]

#: Sampler settings of AIM-Fair's generation (Stable Diffusion v2.1, DDIM): keyword arguments of
#: :func:`generate_cells`, so ``generate_cells(pipe, prompts, n, out, seed, **AIMFAIR_SETTINGS)``.
AIMFAIR_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {"steps": 50, "guidance": 9.0, "height": 512, "width": 512})
#: Contextual prompts per cell in the paper's best setting (Tab. 5, "Contextual + Head Poses (50)").
AIMFAIR_PROMPTS_PER_CELL = 50
#: Images generated per cell before sub-sampling N_S = N_R / G of them (§4.3).
AIMFAIR_IMAGES_PER_CELL = 10_000

#: The Hugging Face repository of the 512-px Stable Diffusion 2.1 (diffusers format).
MODEL_REPO = "stabilityai/stable-diffusion-2-1-base"
#: Folder name looked up under ``$FAIRBOOK_MODELS`` when no explicit path is given.
MODEL_DIRNAME = "stable-diffusion-2-1"

MANIFEST = "manifest.csv"
PROMPTS = "prompts.json"
MANIFEST_COLUMNS = ["file", "cell", "target", "protected", "y", "a", "index", "prompt_index",
                    "prompt", "seed"]


# ------------------------------------------------------------------------------------ loading
def default_model_path() -> Path | None:
    """``$FAIRBOOK_MODELS/stable-diffusion-2-1`` when ``FAIRBOOK_MODELS`` is set, else None."""
    root = os.environ.get("FAIRBOOK_MODELS")
    return Path(root).expanduser() / MODEL_DIRNAME if root else None


def _missing_model(tried: Sequence[str], reason: str) -> FileNotFoundError:
    target = f"$FAIRBOOK_MODELS/{MODEL_DIRNAME}"
    places = "\n".join(f"  - {t}" for t in tried) or "  - (no path given and FAIRBOOK_MODELS unset)"
    return FileNotFoundError(
        f"Stable Diffusion 2.1 weights not found ({reason}). Tried:\n{places}\n"
        f"AIM-Fair generates with Stable Diffusion v2.1; fairbook never downloads at run time. "
        f"On a machine with internet, download {MODEL_REPO} (or stabilityai/stable-diffusion-2-1, "
        f"the 768-px model) in diffusers format, several GB:\n"
        f"    hf download {MODEL_REPO} --local-dir {target}\n"
        f"(`huggingface-cli download ...` with huggingface_hub < 1.0), then either pass its folder "
        f"-- the one holding model_index.json -- as load_pipeline(path=...) / the chapter's "
        f"model path parameter, or set FAIRBOOK_MODELS so that {target}/model_index.json exists.")


@contextlib.contextmanager
def _quiet_loading():
    """Silence diffusers'/transformers' loading and saving progress bars when fairbook's progress
    bars are off (``FAIRBOOK_PROGRESS=0``); their previous state is restored afterwards."""
    if progress_enabled():
        yield
        return
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog
    was = [(lib, lib.is_progress_bar_enabled()) for lib in (dlog, tlog)]
    for lib, _ in was:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in was:
            if enabled:
                lib.enable_progress_bar()


def load_pipeline(path: str | os.PathLike | None = None, device: Any = "auto", dtype: Any = None):
    """Load a local Stable Diffusion pipeline with AIM-Fair's DDIM sampler.

    ``StableDiffusionPipeline.from_pretrained(path, local_files_only=True)``, then the scheduler is
    replaced by a ``DDIMScheduler`` built from the pipeline's own scheduler config (so the model's
    beta schedule and prediction type are kept). The safety checker is disabled (``None``):
    AIM-Fair's generation does not use one (SD 2.x ships none) and it would silently replace
    flagged images by black ones, corrupting per-cell counts.

    Parameters
    ----------
    path : folder of the pipeline in diffusers format (holding ``model_index.json``); default
        ``$FAIRBOOK_MODELS/stable-diffusion-2-1``. A missing or unreadable folder raises
        ``FileNotFoundError`` saying what to download and where to put it.
    device : ``"auto"`` (CUDA if present, else CPU) or a torch device.
    dtype : torch dtype; default float16 on CUDA, float32 on CPU.
    """
    if path is None:
        path = default_model_path()
        if path is None:
            raise _missing_model([], "no path given and FAIRBOOK_MODELS is not set")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise _missing_model([str(path)], f"{path} is not a folder")
    if not (path / "model_index.json").is_file():
        raise _missing_model([str(path)], f"{path} has no model_index.json")

    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from ..train import resolve_device

    device = resolve_device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    # without accelerate, diffusers warns on every load that it falls back to this anyway
    extra = {} if importlib.util.find_spec("accelerate") else {"low_cpu_mem_usage": False}
    try:
        with _quiet_loading():
            pipe = StableDiffusionPipeline.from_pretrained(
                str(path), local_files_only=True, safety_checker=None,
                requires_safety_checker=False, dtype=dtype, **extra)
    except (OSError, ValueError, KeyError) as e:
        raise _missing_model([str(path)], f"diffusers could not load it: {e}") from e
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------- generation
def image_seed(seed: int, y: int, a: int, index: int) -> int:
    """The seed of image ``index`` of cell ``(y, a)``: 63 bits of ``SeedSequence([seed, y, a,
    index])``. Independent of the order and number of cells, of ``n_per_cell`` and of batching."""
    state = np.random.SeedSequence([int(seed), int(y), int(a), int(index)]).generate_state(
        2, np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) & (2**63 - 1))


def is_complete_layout(out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds a finished layout (its manifest is written last)."""
    return (Path(out_dir) / MANIFEST).is_file()


def _counts(n_per_cell: int | Mapping[Any, int], cells: list[Cell]) -> dict[Cell, int]:
    def check(n, what):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n_per_cell{what} must be a non-negative int, got {n!r}")
        return int(n)

    if isinstance(n_per_cell, Mapping):
        by_name = {(k.name if isinstance(k, Cell) else str(k)): v for k, v in n_per_cell.items()}
        missing = [c.name for c in cells if c.name not in by_name]
        extra = sorted(set(by_name) - {c.name for c in cells})
        if missing or extra:
            raise ValueError(f"n_per_cell must give a count for exactly the prompt cells; missing "
                             f"{missing}, unknown {extra}")
        return {c: check(by_name[c.name], f"[{c.name}]") for c in cells}
    n = check(n_per_cell, "")
    if n == 0:
        raise ValueError("n_per_cell must be at least 1")
    return {c: n for c in cells}


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if is_complete_layout(out):
        if not overwrite:
            raise FileExistsError(f"{out} already holds a complete generated layout; pass "
                                  f"overwrite=True to replace it (or choose another out_dir)")
        return
    if any(out.iterdir()):
        raise FileExistsError(f"{out} exists, is not empty and is not a generated layout (no "
                              f"{MANIFEST}); refusing to replace it. Remove it or choose another "
                              f"out_dir")


def _check_generation(prompts: Mapping[Any, Sequence[str]], n_per_cell: int | Mapping[Any, int], seed: int,
                      steps: int, height: int, width: int,
                      batch_size: int) -> tuple[list[Cell], dict[Cell, list[str]], dict[Cell, int]]:
    """``generate_cells``'s checks of its arguments; the cells, their prompts and image counts."""
    cells = _check_cells(prompts)
    texts: dict[Cell, list[str]] = {}
    for key, cell in zip(prompts, cells):
        p = prompts[key]
        if isinstance(p, str) or not p or not all(isinstance(t, str) and t.strip() for t in p):
            raise ValueError(f"cell {cell.name}: prompts must be a non-empty list of non-empty "
                             f"strings")
        texts[cell] = list(p)
    counts = _counts(n_per_cell, cells)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    for name, value in (("steps", steps), ("height", height), ("width", width),
                        ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if height % 8 or width % 8:
        raise ValueError(f"height and width must be multiples of 8, got {height}x{width}")
    return cells, texts, counts


def _generate_batch(pipe, prompts: list[str], seeds: list[int], negative_prompt: str | None,
                    sampling: Mapping[str, Any]) -> np.ndarray:
    """One pipeline call: the images of ``prompts``, image i from its own CPU generator seeded with
    ``seeds[i]``, as (N, H, W, 3) uint8."""
    import torch

    negative = None if negative_prompt is None else [negative_prompt] * len(prompts)
    result = pipe(prompt=prompts, negative_prompt=negative, **sampling,
                  generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], output_type="np")
    images = np.asarray(result.images)
    if images.shape[0] != len(prompts) or images.ndim != 4 or images.shape[-1] != 3:
        raise RuntimeError(f"the pipeline returned images of shape {images.shape} "
                           f"for a batch of {len(prompts)}")
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)


def _generate_cell(pipe, cell: Cell, n: int, cell_prompts: list[str], folder: Path, seed: int, batch_size: int,
                   negative_prompt: str | None, sampling: Mapping[str, Any], bar) -> list[dict[str, Any]]:
    """Generate cell ``cell``'s ``n`` images in batches into ``folder / cell.name``; their manifest rows."""
    from PIL import Image

    (folder / cell.name).mkdir()
    rows: list[dict[str, Any]] = []
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        seeds = [image_seed(seed, cell.y, cell.a, i) for i in idx]
        batch_prompts = [cell_prompts[i % len(cell_prompts)] for i in idx]
        images = _generate_batch(pipe, batch_prompts, seeds, negative_prompt, sampling)
        for i, s, text, img in zip(idx, seeds, batch_prompts, images):
            rel = f"{cell.name}/{i:05d}.png"
            Image.fromarray(img).save(folder / rel)
            rows.append({"file": rel, "cell": cell.name, "target": cell.target,
                         "protected": cell.protected, "y": cell.y, "a": cell.a,
                         "index": i, "prompt_index": i % len(cell_prompts),
                         "prompt": text, "seed": s})
        bar.update(len(idx))
    return rows


def _settings(pipe, seed: int, steps: int, guidance: float, height: int, width: int, batch_size: int,
              negative_prompt: str | None, counts: dict[Cell, int]) -> dict[str, Any]:
    """The generation settings saved with the prompts (``prompts.json``)."""
    return {
        "seed": int(seed), "steps": int(steps), "guidance": float(guidance),
        "height": int(height), "width": int(width), "batch_size": int(batch_size),
        "negative_prompt": negative_prompt,
        "n_per_cell": {c.name: k for c, k in counts.items()},
        "scheduler": type(getattr(pipe, "scheduler", None)).__name__,
        "model": str(getattr(getattr(pipe, "config", None), "_name_or_path", "")
                     or getattr(pipe, "name_or_path", "") or ""),
        "seed_rule": "image_seed(seed, y, a, index) = SeedSequence([seed, y, a, index]) -> "
                     "63 bits; one CPU torch.Generator per image",
        "prompt_rule": "image index i uses prompt i mod len(prompts)",
        "versions": _versions(),
    }


def generate_cells(pipe, prompts: Mapping[Any, Sequence[str]],
                   n_per_cell: int | Mapping[Any, int], out_dir: str | os.PathLike, seed: int,
                   steps: int = 50, guidance: float = 9.0, height: int = 512, width: int = 512,
                   batch_size: int = 4, negative_prompt: str | None = None,
                   overwrite: bool = False) -> pd.DataFrame:
    """Generate ``n_per_cell`` images for every cell and write them as one layout (module doc).

    Image ``i`` of a cell uses prompt ``i mod len(prompts[cell])`` (cycling through the cell's
    prompts) and its own ``torch.Generator`` (on the CPU, so the starting noise is the same on any
    device) seeded with :func:`image_seed` ``(seed, y, a, i)``. With the same pipeline, settings,
    device and ``batch_size``, the same ``seed`` reproduces the images bit for bit; other batch
    sizes give the same noise but may differ in the last bits of floating-point arithmetic.

    The layout is written into a hidden temporary folder next to ``out_dir`` and renamed into place
    only when complete (``manifest.csv`` last), so a failure or interruption never leaves a half
    layout: the temporary folder is removed and an existing layout is left untouched. An existing
    complete layout is replaced only with ``overwrite=True``; a non-empty folder that is not a
    layout is never replaced.

    Parameters
    ----------
    pipe : a diffusers text-to-image pipeline (:func:`load_pipeline`, :func:`tiny_pipeline`) or any
        callable accepting the same keyword arguments and returning ``.images`` (N, H, W, 3).
    prompts : ``{cell: [prompts]}`` from :mod:`fairbook.generative.prompts`.
    n_per_cell : images per cell, an int or ``{cell or cell name: count}`` (e.g. a biased 1:9
        synthetic set for AIM-Fair's mask).
    out_dir : destination folder (must not exist, be empty, or be a layout with ``overwrite``).
    seed : non-negative base seed.
    steps, guidance, height, width : DDIM steps, classifier-free guidance scale, image size
        (AIM-Fair: 50, 9.0, 512x512 -- :data:`AIMFAIR_SETTINGS`).
    batch_size : images per pipeline call (within one cell).
    negative_prompt : optional negative prompt for every image (AIM-Fair uses none).

    Returns
    -------
    The manifest as a DataFrame (columns ``file, cell, target, protected, y, a, index,
    prompt_index, prompt, seed``; ``file`` relative to ``out_dir``).
    """
    from tqdm.auto import tqdm

    cells, texts, counts = _check_generation(prompts, n_per_cell, seed, steps, height, width, batch_size)
    out = Path(out_dir).resolve()
    _prepare_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    sampling = {"height": height, "width": width, "num_inference_steps": steps, "guidance_scale": guidance}
    rows: list[dict[str, Any]] = []
    try:
        bar = tqdm(total=sum(counts.values()), desc="generating images", unit="img",
                   disable=not progress_enabled())
        for cell in cells:
            rows += _generate_cell(pipe, cell, counts[cell], texts[cell], tmp, seed, batch_size,
                                   negative_prompt, sampling, bar)
        bar.close()
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        save_prompts(tmp / PROMPTS, texts, meta=_settings(pipe, seed, steps, guidance, height, width, batch_size,
                                                          negative_prompt, counts))
        manifest.to_csv(tmp / MANIFEST, index=False)  # last: marks the layout complete
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("diffusers", "transformers", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------------------------ reading
@dataclass
class SyntheticCells:
    """A generated layout read back by :func:`load_cells`.

    ``X``: images (N, 3, H, W) float32 in [0, 1] (None when read with ``images=False``);
    ``paths``: absolute image paths; ``y``: target labels, ``a``: protected labels (int64);
    ``manifest``: the manifest rows in the same order; ``cells``; ``prompts`` and ``settings`` from
    ``prompts.json``.
    """

    X: np.ndarray | None
    paths: list[Path]
    y: np.ndarray
    a: np.ndarray
    manifest: pd.DataFrame
    cells: list[Cell]
    prompts: dict[Cell, list[str]]
    settings: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> pd.Series:
        """Images per cell name."""
        return self.manifest.groupby("cell").size()

    def to_dataset(self, name: str = "synthetic", split: str = "train", group: str = "a"):
        """As a :class:`fairbook.data.Dataset` (``groups[group]`` = the protected labels)."""
        if self.X is None:
            raise ValueError("read the layout with load_cells(..., images=True) to get arrays")
        from ..data import Dataset

        def names(attr, label):
            words = {getattr(c, label): getattr(c, attr) for c in self.cells}
            return [words.get(i, str(i)) for i in range(max(words) + 1)]

        return Dataset(X=self.X, y=self.y, name=name, split=split,
                       classes=names("target", "y"), groups={group: self.a},
                       group_names={group: tuple(names("protected", "a"))},
                       semi_synthetic=False, source=str(self.root or ""))


def load_cells(out_dir: str | os.PathLike, images: bool = True,
               image_size: int | tuple[int, int] | None = None) -> SyntheticCells:
    """Read a layout written by :func:`generate_cells` (the AIM-Fair chapter's synthetic data).

    Parameters
    ----------
    out_dir : the layout folder.
    images : load the images as a float32 (N, 3, H, W) array in [0, 1]; with False only paths and
        labels are returned (use this for the paper's 10k images per cell).
    image_size : resize on load (bilinear) to ``size`` or ``(height, width)``.

    Raises ``FileNotFoundError`` when the folder, its manifest, its prompt file or any image listed
    in the manifest is missing, and ``ValueError`` when the manifest is malformed.
    """
    root = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no generated layout at {root}: the folder does not exist; "
                                f"create it with fairbook.generative.sd.generate_cells")
    if not is_complete_layout(root):
        raise FileNotFoundError(f"{root} holds no complete generated layout (no {MANIFEST}); "
                                f"regenerate it with generate_cells(..., overwrite=True)")
    df = pd.read_csv(root / MANIFEST, keep_default_na=False,
                     dtype={"file": str, "cell": str, "target": str, "protected": str,
                            "prompt": str})
    missing_cols = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing_cols:
        raise ValueError(f"{root / MANIFEST} lacks the columns {missing_cols}")
    for col in ("y", "a", "index", "prompt_index", "seed"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise ValueError(f"{root / MANIFEST}: column {col!r} must hold integers")
    if df["file"].duplicated().any():
        raise ValueError(f"{root / MANIFEST} lists a file twice: "
                         f"{df.loc[df['file'].duplicated(), 'file'].iloc[0]}")
    paths = [root / f for f in df["file"]]
    missing = [str(p.relative_to(root)) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(df)} images listed in {root / MANIFEST} are missing, e.g. "
            f"{', '.join(missing[:3])}; the layout is damaged -- regenerate it with "
            f"generate_cells(..., overwrite=True)")
    if not (root / PROMPTS).is_file():
        raise FileNotFoundError(f"{root / PROMPTS} is missing; the layout is damaged -- "
                                f"regenerate it with generate_cells(..., overwrite=True)")
    prompts, settings = load_prompts(root / PROMPTS, with_meta=True)
    by_name = {c.name: c for c in prompts}
    for name, rows in df.groupby("cell", sort=False):
        cell = by_name.get(name)
        if cell is None:
            raise ValueError(f"{root / MANIFEST}: cell {name!r} is not in {PROMPTS}")
        bad = rows[(rows["y"] != cell.y) | (rows["a"] != cell.a) | (rows["target"] != cell.target)
                   | (rows["protected"] != cell.protected)]
        if len(bad):
            raise ValueError(f"{root / MANIFEST}: row {bad.index[0]} disagrees with cell {cell}")

    X = None
    if images:
        from PIL import Image
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        arrays = []
        for p in paths:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(im))
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"images in {root} have different sizes {sorted(shapes)}; pass "
                             f"image_size=... to resize them on load")
        X = (np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
             if arrays else np.zeros((0, 3, 0, 0), np.float32))
    return SyntheticCells(X=X, paths=paths, y=df["y"].to_numpy(np.int64),
                          a=df["a"].to_numpy(np.int64), manifest=df, cells=list(prompts),
                          prompts=prompts, settings=settings, root=root)


# ------------------------------------------------------------------------------ tiny pipeline
def _bytes_to_unicode() -> list[str]:
    """The 256 byte-level BPE symbols of GPT-2/CLIP, in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
                 + list(range(ord("\xae"), ord("\xff") + 1)))
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


# Words that the tiny tokenizer keeps whole (besides the prompt vocabularies' own words).
_TINY_WORDS = ("portrait face photo of a an with head tilted person people man woman male female "
               "smiling not young old blond hair eyes glasses attractive gender race white black "
               "asian indian others")


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the lowest-ranked adjacent pair until none applies."""
    while len(symbols) > 1:
        pairs = [(ranks[p], i) for i, p in enumerate(zip(symbols, symbols[1:])) if p in ranks]
        if not pairs:
            break
        _, i = min(pairs)
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def _write_tiny_tokenizer(folder: Path) -> tuple[Path, Path, int]:
    """A small CLIP BPE vocabulary: every byte symbol, with and without the end-of-word marker,
    the start/end tokens, and merges that make each word of the prompt vocabularies one token (so
    prompts stay within CLIP's 77 tokens, as with the real tokenizer)."""
    from .prompts import PLAIN_TEMPLATE, VOCABULARIES
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars]
    text = " ".join([_TINY_WORDS, PLAIN_TEMPLATE, *(p for v in VOCABULARIES.values() for p in v)])
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(set(re.findall(r"[a-z]+", text.lower()))):
        pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            tokens.append(pieces[0])
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    merges = sorted(ranks, key=ranks.get)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder / "vocab.json", folder / "merges.txt", len(vocab)


def tiny_pipeline(path: str | os.PathLike, seed: int = 0) -> Path:
    """Build a tiny random-weight Stable Diffusion pipeline from configs, save it, return ``path``.

    Same architecture family and file layout as SD 2.1 in diffusers format -- CLIP tokenizer
    (character-level vocab/merges written here) and text encoder (2 layers, width 32), a
    cross-attention UNet2DConditionModel (2 blocks, 32/64 channels), an AutoencoderKL with the SD
    scale factor 8 and 4 latent channels, a PNDM scheduler config as SD ships (which
    :func:`load_pipeline` turns into DDIM) -- at ~4 MB, saved as safetensors with
    ``save_pretrained``. Its images are noise-like; it exists so that the whole generation path runs
    offline in tests and in the ``smoke`` profile (default size 64x64, ~0.1 s per image on a CPU
    with a few DDIM steps). Weights are a function of ``seed`` only; torch's global RNG is left as
    it was.
    """
    import torch
    from diffusers import (AutoencoderKL, PNDMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="fairbook-tok-") as tok_dir:
        vocab, merges, vocab_size = _write_tiny_tokenizer(Path(tok_dir))
        tokenizer = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)
    eos = vocab_size - 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
            bos_token_id=eos - 1, eos_token_id=eos, pad_token_id=eos))
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=32)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16), norm_num_groups=8, sample_size=64)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with _quiet_loading():
        pipe.save_pretrained(path, safe_serialization=True)
    return path
