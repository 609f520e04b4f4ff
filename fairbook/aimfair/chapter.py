"""The AIM-Fair chapter's runner hooks (:mod:`fairbook.book.runner`): :func:`check_parameters`, the
conditions that tie its parameters together, and :func:`input_files`, the files besides the datasets
that decide a run's result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..generative import sd
from .data import bias_ratios

__all__ = ["check_parameters", "input_files"]

_FRACTION_PARAMS = ("top_k", "topk_sweep", "random_fractions", "real_fractions")
_LIST_PARAMS = ("channels", "topk_sweep", "syn_bias_sweep", "syn_amounts", "random_fractions",
                "context_bins", "ft_lrs", "real_fractions", "context_counts")
_SMALL_MODELS = ("cnn", "narrow-resnet18")  #: networks for the 28x28 datasets
_SMALL_DATASETS = ("colored-mnist", "colored-fashion-mnist")
_FACE_DATASETS = ("celeba", "utkface")  #: the paper's datasets (§4.1), read from disk, fine-tuned on SD images


def check_parameters(values: dict) -> None:
    """Conditions on the AIM-Fair chapter's parameters, checked before any kernel starts
    (:mod:`fairbook.book.runner`); raises :class:`fairbook.errors.ParameterError` naming the parameter.
    Only the keys present in ``values`` are checked.

    ``real_bias``, ``test_bias`` and every ``syn_bias_sweep`` entry must parse with :func:`fairbook.aimfair.bias_ratios`; ``top_k``
    and every ``topk_sweep`` / ``random_fractions`` entry lie in (0, 1] (shares of the parameter
    tensors, :func:`fairbook.aimfair.k_for_fraction`); the list parameters are non-empty; ``dataset='celeba'`` and
    ``dataset='utkface'`` need ``sd_images`` (the synthetic fine-tuning data) and, with
    ``model='resnet18'``, ``weights`` (the paper fine-tunes an ImageNet-pretrained ResNet-18);
    ``model='cnn'`` and ``'narrow-resnet18'`` are for the 28×28 datasets, not for CelebA or UTKFace.
    """
    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'aimfair': {msg}; got {values[name]!r}")

    for name in _LIST_PARAMS:
        if name in values and len(values[name]) == 0:
            bad(name, "needs at least one value")
    ratio = "a minority:majority ratio 'a:b' with 0 <= a <= b and b > 0 (e.g. '1:9'; '1:1' is balanced)"
    for name in ("real_bias", "test_bias"):
        if name in values:
            try:
                bias_ratios(values[name])
            except ValueError:
                bad(name, f"must be {ratio}")
    for entry in values.get("syn_bias_sweep", []):
        try:
            bias_ratios(entry)
        except ValueError:
            bad("syn_bias_sweep", f"every entry must be {ratio}; {entry!r} is not")
    for name in _FRACTION_PARAMS:
        if name not in values:
            continue
        many = isinstance(values[name], (list, tuple))
        for f in values[name] if many else [values[name]]:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
                share = "a share of the parameter tensors in (0, 1] (0 selects none)"
                bad(name, f"every entry must be {share}; {f!r} is not" if many else f"must be {share}")
    dataset, model = values.get("dataset"), values.get("model")
    if dataset not in _FACE_DATASETS and "context_counts" in values and "context_bins" in values:
        n_contexts = int(np.prod(values["context_bins"]))
        over = [c for c in values["context_counts"] if not 1 <= c <= n_contexts]
        if over:
            bad("context_counts", f"every count must be between 1 and the generator's "
                f"{n_contexts} contexts (the product of context_bins {list(values['context_bins'])}); "
                f"{over} are not")
    if dataset in _FACE_DATASETS:
        if model in _SMALL_MODELS:
            bad("model", f"{model} is a network for the 28x28 datasets (" + ", ".join(_SMALL_DATASETS)
                + f"): use resnet18 for dataset={dataset!r}")
        if "sd_images" in values and not values["sd_images"]:
            bad("sd_images", f"dataset={dataset!r} fine-tunes on Stable Diffusion images: pass -p "
                "sd_images <folder written by fairbook.generative.sd.generate_cells>")
        if model == "resnet18" and "weights" in values and not values["weights"]:
            bad("weights", f"dataset={dataset!r} with model='resnet18' starts, as the paper, from an "
                "ImageNet-pretrained ResNet-18: pass -p weights <local ImageNet ResNet-18 checkpoint>")


def input_files(values: dict) -> dict[str, Path]:
    """Files besides the datasets that decide a run's result (fingerprinted by :mod:`fairbook.book.runner`):
    the manifests (:data:`fairbook.generative.sd.MANIFEST`, written last, so it marks a finished
    layout and lists every image with its prompt and seed) of ``sd_images`` and ``sd_plain_images``
    when ``dataset='celeba'`` or ``'utkface'`` reads them, and the ``weights`` file when
    ``model='resnet18'`` loads it; empty parameters are skipped. Relative paths are taken from the current directory. A path that
    does not exist raises :class:`fairbook.errors.ParameterError` naming the parameter."""
    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'aimfair': {msg}; got {values[name]!r}")

    out: dict[str, Path] = {}
    if values.get("dataset") in _FACE_DATASETS:
        for name in ("sd_images", "sd_plain_images"):
            if values.get(name):
                manifest = Path(values[name]).expanduser().resolve() / sd.MANIFEST
                if not manifest.is_file():
                    bad(name, f"{manifest} does not exist: the folder must hold a finished layout of "
                        f"fairbook.generative.sd.generate_cells (its {sd.MANIFEST} is written last)")
                out[name] = manifest
    if values.get("model") == "resnet18" and values.get("weights"):
        path = Path(values["weights"]).expanduser().resolve()
        if not path.is_file():
            bad("weights", f"{path} is not a file: pass a local ImageNet ResNet-18 checkpoint "
                "(.safetensors or a state dict)")
        out["weights"] = path
    return out
