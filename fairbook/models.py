"""Models of the four papers, built from torch / torchvision blocks (no weights are downloaded).

* :class:`MLP` — MIME's Adult MLP (101-50-50-50-2), GCM's 120-200-200-1, the 784-256-256-10 benchmark.
* :class:`SmallCNN` — a small CNN for 28x28 (and 32x32) images.
* :func:`cifar_resnet18` — HBR's "LowRes" ResNet-18: 3x3 stride-1 stem, no max-pool; any width
  (AIM-Fair's narrow ResNet-18 on the CPU).
* :func:`resnet` — torchvision ResNet-18/34 for 224-pixel inputs (MIME, AIM-Fair), optionally from a
  local weights file (safetensors or a state dict loaded with ``weights_only=True``).
* :func:`alexnet` — torchvision AlexNet, GCM's CelebA network (GCM §4.1), local weights likewise.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import alexnet as tv_alexnet, resnet18, resnet34

from .train import logits_of


class MLP(nn.Module):
    """Fully connected network ``in_dim -> widths... -> out_dim`` with ReLU (and optional dropout)."""

    def __init__(self, in_dim: int, widths: tuple[int, ...] | list[int], out_dim: int,
                 dropout: float = 0.0):
        super().__init__()
        if in_dim < 1 or out_dim < 1 or any(w < 1 for w in widths):
            raise ValueError(f"layer sizes must be >= 1, got in_dim={in_dim}, widths={list(widths)}, "
                             f"out_dim={out_dim}")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_dim
        for w in widths:
            layers += [nn.Linear(prev, w), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            prev = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallCNN(nn.Module):
    """Three conv blocks (conv-BN-ReLU, 2x2 max-pool) and a linear head; for 28x28 or 32x32 inputs."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 channels: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        blocks: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            blocks += [nn.Conv2d(prev, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.MaxPool2d(2)]
            prev = c
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Standardize(nn.Module):
    """Per-channel ``(x - mean) / std`` as the first layer (HBR: dataset channel statistics)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def cifar_resnet18(num_classes: int = 10, width: int = 64, stem_stride: int = 1) -> nn.Module:
    """ResNet-18 for 28x28 / 32x32 images (HBR's "LowRes"): torchvision's BasicBlocks with a 3x3
    stride-1 stem and no max-pool; a torchvision ``ResNet`` (62 parameter tensors with its head).

    ``width``: channels of the stem and of ``layer1`` (then 2x, 4x, 8x, torchvision's ResNet-18 has
    64). A narrow ResNet-18 (e.g. ``width=8``, 0.17 M parameters) keeps the architecture's 62
    tensors at a cost a CPU affords: AIM-Fair's tensor-level selection needs that many to choose from.
    ``stem_stride=2`` halves the resolution in the stem (about 3x faster on 28x28 images).
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"cifar_resnet18: width got {width!r}; allowed: an integer >= 1 (64 = ResNet-18)")
    if stem_stride not in (1, 2):
        raise ValueError(f"cifar_resnet18: stem_stride got {stem_stride!r}; allowed: 1 or 2")
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=stem_stride, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if width != 64:
        from torchvision.models.resnet import BasicBlock
        model.bn1 = nn.BatchNorm2d(width)
        model.inplanes = width
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            setattr(model, name, model._make_layer(BasicBlock, width * 2 ** i, 2, stride=1 if i == 0 else 2))
        model.fc = nn.Linear(8 * width, num_classes)
        for m in model.modules():  # torchvision's initialisation of the rebuilt layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
    return model


def resnet(depth: int = 18, num_classes: int = 2, weights: str | Path | None = None) -> nn.Module:
    """torchvision ResNet-18/34 for 224-pixel inputs with a ``num_classes`` head.

    ``weights``: a local ``.safetensors`` file or a state-dict file (loaded with ``weights_only=True``),
    e.g. ImageNet weights copied to the machine. A classifier head of another size is dropped and the
    new head keeps its fresh initialisation.
    """
    builders = {18: resnet18, 34: resnet34}
    if depth not in builders:
        raise ValueError(f"depth must be 18 or 34, got {depth}")
    model = builders[depth](weights=None, num_classes=num_classes)
    return model if weights is None else _load_local(model, weights, "fc.", f"ResNet-{depth}")


def alexnet(num_classes: int = 1, weights: str | Path | None = None) -> nn.Module:
    """torchvision AlexNet (Krizhevsky et al. 2012) with a ``num_classes`` head: GCM's network for
    CelebA (GCM §4.1, "AlexNet"; one logit for a binary target). Its adaptive 6x6 average pool
    accepts any input of at least 63x63 pixels (64x64 crops as well as 224x224).

    ``weights``: a local file as in :func:`resnet` (nothing is downloaded); a head
    (``classifier.6``) of another size is dropped and the new head keeps its fresh initialisation.
    """
    model = tv_alexnet(weights=None, num_classes=num_classes)
    return model if weights is None else _load_local(model, weights, "classifier.6.", "AlexNet")


def _load_local(model: nn.Module, weights: str | Path, head_prefix: str, arch: str) -> nn.Module:
    """Load a local ``.safetensors`` / state-dict file into ``model``; a head (``head_prefix``) of
    another size is dropped, anything else that does not fit raises."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"weights {path} hold a {type(state).__name__}, not a state dict")
    head_w = state.get(head_prefix + "weight")
    if head_w is not None and head_w.shape[0] != model.state_dict()[head_prefix + "weight"].shape[0]:
        state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(head_prefix) for k in missing):
        raise ValueError(f"weights {path} do not fit {arch}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model


def head(model: nn.Module) -> nn.Linear:
    """The final linear layer (``head`` of MLP/SmallCNN, ``fc`` of ResNets, ``classifier[-1]`` of
    AlexNet)."""
    classifier = getattr(model, "classifier", None)
    last = classifier[-1] if isinstance(classifier, nn.Sequential) and len(classifier) else None
    for layer in (getattr(model, "head", None), getattr(model, "fc", None), last):
        if isinstance(layer, nn.Linear):
            return layer
    raise ValueError(f"{type(model).__name__} has no final linear layer named 'head', 'fc' or "
                     "'classifier[-1]'")


@torch.no_grad()
def penultimate(model: nn.Module, X, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate-layer features (the input of the final linear layer) and logits, in eval mode.
    ``X``: tensor/array, or a Dataset yielding ``(x, y, index)``."""
    feats: list[torch.Tensor] = []
    hook = head(model).register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().cpu()))
    try:
        logits = logits_of(model, X, batch_size, device=next(model.parameters()).device)
    finally:
        hook.remove()
    return torch.cat(feats), logits
