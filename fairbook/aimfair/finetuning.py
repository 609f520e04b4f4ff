"""AIM-Fair's selective fine-tuning (SFT, Zhao et al. CVPR 2025, §3.3, eq. 8) and the parameter
subsets of its fine-tuning baselines (Tables 3-4).

* :func:`selective_finetune` (eq. 8) and :func:`finetune`, the one fine-tuning call of every method
  (through :func:`fairbook.train.fit`); its controls: :func:`random_like`, the random mask matched to
  a selective mask in tensors or in scalars, and :func:`bn_recalibration`, BatchNorm statistics
  re-estimated with no parameter moved;
* parameter subsets of the fine-tuning baselines: :func:`blocks`, :func:`full`, :func:`linear_probe`,
  :func:`random_selection`, :func:`update_one_block`, :func:`freeze_one_block`.

During fine-tuning BatchNorm running statistics of frozen layers still move (``freeze_bn_stats=False``,
as in the authors' code) unless told otherwise, for every method alike (:func:`finetune`).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models import ResNet

from .. import models, train
from ._util import fail as _fail
from .mask import SelectiveMask, _batches, k_for_fraction

__all__ = ["selective_finetune", "finetune", "bn_recalibration", "blocks", "full", "linear_probe",
           "random_selection", "random_like", "update_one_block", "freeze_one_block"]


# ---------------------------------------------------------------- selective fine-tuning (eq. 8)
def _bn_modules_frozen(model: nn.Module, trainable: set[str]) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm modules none of whose parameters is trained (affine-free ones included)."""
    out = []
    for prefix, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            own = [f"{prefix}.{n}" if prefix else n for n, _ in mod.named_parameters(recurse=False)]
            if not any(n in trainable for n in own):
                out.append(mod)
    return out


def _with_masked_decay(extra_loss, weight_decay: float, names: Sequence[str]):
    """``extra_loss`` plus (weight_decay / 2) Σ ||θ||² over the parameters ``names``: its gradient
    weight_decay·θ is the coupled weight decay of SGD/Adam, and passes through the engine's
    gradient masks. ``extra_loss``'s ``batch_forward`` (the engine's shared forward hook, see
    :func:`fairbook.train.fit`) is kept on the wrapper."""
    def term(model, batch):
        params = dict(model.named_parameters())
        l2 = sum(params[n].pow(2).sum() for n in names)
        out = 0.5 * weight_decay * l2
        return out if extra_loss is None else out + extra_loss(model, batch)
    if getattr(extra_loss, "batch_forward", None) is not None:
        term.batch_forward = extra_loss.batch_forward
    return term


def selective_finetune(model: nn.Module, mask: SelectiveMask, X, y=None, *,
                       freeze_bn_stats: bool = False, **fit_kwargs) -> train.FitResult:
    """Selective fine-tuning (AIM-Fair §3.3, eq. 8): θ ← θ − η (M ⊙ ∇θ L) on the balanced
    synthetic data: :func:`finetune` with a :class:`SelectiveMask`.

    Tensor level (the paper's): ``fit(trainable=mask.trainable)`` — every other tensor is frozen
    (``requires_grad=False``, as in the authors' code). Element level: ``trainable`` plus
    ``grad_masks=mask.grad_masks()``; a coupled weight decay (``Optim("sgd"|"adam",
    weight_decay=...)``) would shrink unselected elements of a trained tensor, so it is moved into
    an L2 term of the loss whose gradient is masked like the rest (same update for the selected
    elements, none for the others; the reported ``train_loss`` includes it). AdamW's decoupled
    decay cannot be masked and is refused at element level. ``freeze_bn_stats`` and
    ``fit_kwargs``: as in :func:`finetune`.
    """
    if not isinstance(mask, SelectiveMask):
        raise _fail("selective_finetune", "mask", type(mask).__name__, "a SelectiveMask from selective_mask()")
    return _finetune("selective_finetune", model, mask, X, y, freeze_bn_stats, fit_kwargs)


def finetune(model: nn.Module, selection, X, y=None, *, freeze_bn_stats: bool = False,
             **fit_kwargs) -> train.FitResult:
    """Fine-tune the parameters ``selection`` of ``model`` in place, through :func:`fairbook.train.fit`:
    one function for every method of a comparison, so they share one BatchNorm setting.

    ``selection``: a :class:`SelectiveMask` (SFT, see :func:`selective_finetune`) or a set of
    parameter names (full fine-tuning, linear probing, random selection, sub-tuning: :func:`full`,
    :func:`linear_probe`, :func:`random_selection`, :func:`update_one_block`, ...); every other
    tensor is frozen.

    ``freeze_bn_stats``: ``False`` (default, the authors' behaviour): the model trains in
    ``train()`` mode and every BatchNorm layer's running mean/variance keeps updating on the
    synthetic batches, frozen layers included. ``True``: for the BatchNorm layers none of whose
    parameters is trained, ``track_running_stats`` is switched off during fine-tuning, so their
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` stay bit-identical; in
    ``train()`` mode these layers still normalise each batch with its own batch statistics (as
    always in train mode), and in ``eval()`` mode (validation, test) they use the kept running
    statistics. The flag is restored afterwards. Layers with a trained parameter update as usual.

    ``fit_kwargs`` go to :func:`fairbook.train.fit` (``epochs``, ``optim``, ``loss="bce"``,
    ``val``/``select`` ...); ``trainable`` and ``grad_masks`` come from ``selection``.
    """
    return _finetune("finetune", model, selection, X, y, freeze_bn_stats, fit_kwargs)


def _finetune(where: str, model: nn.Module, selection, X, y, freeze_bn_stats, fit_kwargs: dict):
    for key in ("trainable", "grad_masks"):
        if key in fit_kwargs:
            raise _fail(where, key, "an explicit value", "nothing: the selection sets it")
    if not isinstance(freeze_bn_stats, bool):
        raise _fail(where, "freeze_bn_stats", freeze_bn_stats, "True or False")
    kwargs = dict(fit_kwargs)
    if isinstance(selection, SelectiveMask):
        mask = selection
        mask.check_model(model, where)
        trainable = mask.trainable
        if not trainable:
            raise _fail(where, "mask", "an empty selection (K1 ∩ K2 = ∅)", "a mask selecting at least "
                        "one parameter (raise k)")
        if mask.level == "element":
            opt = fit_kwargs.get("optim", train.Optim())
            if opt.weight_decay:
                if opt.name == "adamw":
                    raise _fail(where, "optim", opt, "weight_decay=0 for 'adamw' at level='element' "
                                "(its decoupled decay would move unselected elements), or sgd/adam")
                kwargs["optim"] = dataclasses.replace(opt, weight_decay=0.0)
                kwargs["extra_loss"] = _with_masked_decay(fit_kwargs.get("extra_loss"),
                                                          opt.weight_decay, sorted(trainable))
            kwargs["grad_masks"] = mask.grad_masks()
    elif isinstance(selection, (set, frozenset, list, tuple)) and all(isinstance(n, str) for n in selection):
        trainable = set(selection)
        unknown = trainable - full(model)
        if not trainable or unknown:
            raise _fail(where, "selection", f"{len(trainable)} names, unknown {sorted(unknown)[:3]}",
                        "a non-empty set of the model's parameter names")
    else:
        raise _fail(where, "selection", type(selection).__name__,
                    "a SelectiveMask or a set of parameter names")
    kwargs["trainable"] = trainable
    frozen_bn = _bn_modules_frozen(model, trainable) if freeze_bn_stats else []
    for mod in frozen_bn:
        mod.track_running_stats = False
    try:
        return train.fit(model, X, y, **kwargs)
    finally:
        for mod in frozen_bn:
            mod.track_running_stats = True


def bn_recalibration(model: nn.Module, X, y, *, epochs: int, batch_size: int = 128, seed: int = 0,
                     device="auto", num_workers: int = 0) -> nn.Module:
    """The null of every fine-tuning run: no parameter moves, only the BatchNorm running statistics
    are re-estimated on the fine-tuning data (train-mode forward passes without gradients over
    ``epochs`` shuffled passes of ``X``, the layers' own momentum). Fine-tuning in train mode
    (``freeze_bn_stats=False``) does the same on the way, so what a method gains above this control
    is what its updated parameters add. ``y`` only pairs with ``X`` (unused). In place; returns the
    model in eval mode."""
    where = "bn_recalibration"
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise _fail(where, "epochs", epochs, "an integer >= 1")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise _fail(where, "batch_size", batch_size, "an integer >= 1")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise _fail(where, "model", type(model).__name__, "a model with BatchNorm layers")
    dev = train.resolve_device(device)
    home = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    model.to(dev).train()
    with torch.no_grad():
        for _ in range(epochs):
            for xb, _yb in _batches(X, y, rng.permutation(len(X)), batch_size, num_workers):
                model(xb.to(dev))
    return model.to(home).eval()


# ------------------------------------------------------------------------------ baselines (Tables 3-4)
def blocks(model: nn.Module) -> OrderedDict[str, list[str]]:
    """The blocks of Table 4's sub-tuning baselines and Fig. 2: block name -> parameter names.

    torchvision ResNet (also :func:`fairbook.models.cifar_resnet18`): ``stem`` (conv1, bn1),
    ``layer1`` .. ``layer4``, ``fc``. :class:`fairbook.models.SmallCNN`: ``block1`` .. ``block3``
    (each conv + BatchNorm of ``body``) and ``head``. Other architectures raise.
    """
    names = [n for n, _ in model.named_parameters()]
    out: OrderedDict[str, list[str]] = OrderedDict()
    if isinstance(model, ResNet):
        top = {"conv1": "stem", "bn1": "stem", "layer1": "layer1", "layer2": "layer2",
               "layer3": "layer3", "layer4": "layer4", "fc": "fc"}
        for b in ("stem", "layer1", "layer2", "layer3", "layer4", "fc"):
            out[b] = []
        for n in names:
            b = top.get(n.split(".")[0])
            if b is None:
                raise _fail("blocks", "model", f"ResNet with an unexpected parameter {n!r}",
                            "a torchvision ResNet (conv1, bn1, layer1-4, fc)")
            out[b].append(n)
    elif isinstance(model, models.SmallCNN):
        current = None
        for child, mod in model.body.named_children():
            if isinstance(mod, nn.Conv2d):
                current = f"block{len(out) + 1}"
                out[current] = []
            for n, _ in mod.named_parameters():
                if current is None:
                    raise _fail("blocks", "model", "a SmallCNN whose body starts without a conv",
                                "SmallCNN as built by fairbook.models")
                out[current].append(f"body.{child}.{n}")
        out["head"] = [n for n in names if n.startswith("head.")]
    else:
        raise _fail("blocks", "model", type(model).__name__,
                    "a torchvision ResNet or fairbook.models.SmallCNN")
    return out


def full(model: nn.Module) -> set[str]:
    """Every parameter tensor: full fine-tuning (FFT, Table 3)."""
    return {n for n, _ in model.named_parameters()}


def linear_probe(model: nn.Module) -> set[str]:
    """The final linear layer's parameters (linear probing, Table 3)."""
    head = models.head(model)
    prefix = next(n for n, m in model.named_modules() if m is head)
    return {f"{prefix}.{n}" for n, _ in head.named_parameters()}


def random_selection(model: nn.Module, fraction: float, seed: int) -> set[str]:
    """``round(fraction × n_tensors)`` (at least 1) parameter tensors drawn uniformly without
    replacement; Table 4's "random selection" (updating ratios 40%, 55%, 70%, 85%)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise _fail("random_selection", "fraction", fraction, "a number in (0, 1]")
    names = [n for n, _ in model.named_parameters()]
    k = k_for_fraction(names, fraction, "tensor")
    rng = np.random.default_rng(seed)
    return {names[i] for i in rng.choice(len(names), size=k, replace=False)}


def random_like(model: nn.Module, mask: SelectiveMask, match: str, seed: int) -> set[str]:
    """The matched random control of a mask: uniformly drawn parameter tensors with as many
    tensors as ``mask.trainable`` (``match="tensors"``) or about as many scalar parameters as the
    mask trains (``match="scalars"``: tensors are added in a random order while the total stays
    closest to the mask's count, never empty). Against it, SFT's gain is the choice of tensors, not
    their number or size."""
    where = "random_like"
    if not isinstance(mask, SelectiveMask):
        raise _fail(where, "mask", type(mask).__name__, "a SelectiveMask from selective_mask()")
    if match not in ("tensors", "scalars"):
        raise _fail(where, "match", match, "'tensors' or 'scalars'")
    mask.check_model(model, where)
    sizes = OrderedDict((n, p.numel()) for n, p in model.named_parameters())
    names = list(sizes)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    if match == "tensors":
        return set(order[:len(mask.trainable)])
    target, total, out = mask.n_selected_parameters(), 0, set()
    for n in order:
        if not out or abs(total + sizes[n] - target) < abs(total - target):
            out.add(n)
            total += sizes[n]
    return out


def _block(model: nn.Module, block: str, where: str) -> tuple[dict, list[str]]:
    bl = blocks(model)
    if block not in bl:
        raise _fail(where, "block", block, ", ".join(bl))
    return bl, bl[block]


def update_one_block(model: nn.Module, block: str) -> set[str]:
    """Sub-tuning by updating one block (Table 4, Kaplun et al.): the block's parameter names."""
    return set(_block(model, block, "update_one_block")[1])


def freeze_one_block(model: nn.Module, block: str) -> set[str]:
    """Sub-tuning by freezing one block (Table 4, Fig. 2): every parameter name outside it."""
    return full(model) - set(_block(model, block, "freeze_one_block")[1])
