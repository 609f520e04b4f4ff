"""Models of the four papers, built from torch / torchvision blocks (no weights are downloaded).

* :class:`MLP` — MIME's Adult MLP (101-50-50-50-2), GCM's 120-200-200-1, the 784-256-256-10 benchmark.
* :class:`SmallCNN` — a small CNN for 28x28 (and 32x32) images.
* :func:`cifar_resnet18` — HBR's "LowRes" ResNet-18: 3x3 stride-1 stem, no max-pool.
* :func:`resnet` — torchvision ResNet-18/34 for 224-pixel inputs (MIME, AIM-Fair), optionally from a
  local weights file (safetensors or a state dict loaded with ``weights_only=True``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet34


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


def cifar_resnet18(num_classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 images (HBR's "LowRes"): torchvision's BasicBlocks with a 3x3 stride-1
    stem and no max-pool."""
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
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
    if weights is not None:
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
        if state.get("fc.weight") is not None and state["fc.weight"].shape[0] != num_classes:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("fc.") for k in missing):
            raise ValueError(f"weights {path} do not fit ResNet-{depth}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
    return model


def head(model: nn.Module) -> nn.Linear:
    """The final linear layer (``head`` of MLP/SmallCNN, ``fc`` of ResNets)."""
    for name in ("head", "fc"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Linear):
            return layer
    raise ValueError(f"{type(model).__name__} has no final linear layer named 'head' or 'fc'")


@torch.no_grad()
def penultimate(model: nn.Module, X, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate-layer features (the input of the final linear layer) and logits, in eval mode.
    ``X``: tensor/array, or a Dataset yielding ``(x, y, index)``."""
    from .train import logits_of

    feats: list[torch.Tensor] = []
    hook = head(model).register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().cpu()))
    try:
        logits = logits_of(model, X, batch_size, device=next(model.parameters()).device)
    finally:
        hook.remove()
    return torch.cat(feats), logits
