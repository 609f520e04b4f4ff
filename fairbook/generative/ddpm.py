"""Conditional diffusion on the book's small image datasets, on diffusers' UNet2DModel and schedulers.

Training: DDPM (Ho et al. 2020) with ``DDPMScheduler``'s forward process and the epsilon objective;
a condition is a class label or a (target, group) cell (:func:`cell_condition`), embedded by the
UNet's class embedding. With probability ``cond_dropout`` a label is replaced by the extra *null*
condition, which enables classifier-free guidance at sampling time (Ho & Salimans 2022).
Sampling: ``DDIMScheduler`` (trailing timestep spacing) for a chosen number of steps; ``guidance = 1``
is plain conditional sampling, ``guidance > 1`` mixes out_uncond + g (out_cond - out_uncond) of the
model's output (epsilon or v).

Images are in [0, 1] as (N, C, H, W) float arrays (``fairbook.data``); they are scaled to [-1, 1]
and padded with black to the size the UNet's levels need (28 -> 32 for four levels), and cropped
back when sampled.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..io import progress_enabled
from ..paths import cache_home
from ..train import resolve_device


@dataclass(frozen=True)
class DDPMConfig:
    """UNet size and training schedule (the defaults train on Fashion-MNIST in minutes on a CPU).

    ``patch`` > 1 folds each ``patch x patch`` block of pixels into channels before the UNet
    (``pixel_unshuffle``; lossless): a 28x28 image becomes 4 x 14 x 14, four times fewer positions
    per convolution, which is what makes minutes of CPU training enough. ``ema_decay`` > 0 samples
    with an exponential moving average of the weights (diffusers' ``EMAModel`` with warm-up);
    ``snr_gamma`` > 0 weights the loss by min-SNR-gamma (Hang et al. 2023); the learning rate warms
    up linearly for ``warmup`` steps and then follows a cosine to zero (``lr_schedule="cosine"``).
    """

    channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    patch: int = 2
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # the cosine schedule: better than linear at 28x28
    prediction_type: str = "v_prediction"
    steps: int = 500
    batch_size: int = 96
    lr: float = 2e-3
    lr_schedule: str = "cosine"
    warmup: int = 50
    ema_decay: float = 0.999
    snr_gamma: float = 5.0
    cond_dropout: float = 0.1
    mid_attention: bool = True
    seed: int = 0

    def __post_init__(self):
        checks = {"steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "cond_dropout": 0 <= self.cond_dropout < 1, "channels": len(self.channels) >= 1,
                  "patch": self.patch >= 1, "warmup": self.warmup >= 0,
                  "ema_decay": 0 <= self.ema_decay < 1, "snr_gamma": self.snr_gamma >= 0,
                  "num_train_timesteps": self.num_train_timesteps >= 2,
                  "lr_schedule": self.lr_schedule in ("constant", "cosine"),
                  "prediction_type": self.prediction_type in ("epsilon", "v_prediction"),
                  "beta_schedule": self.beta_schedule in ("linear", "scaled_linear", "squaredcos_cap_v2")}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid DDPMConfig value(s) for {', '.join(bad)}: {self}")


def cell_condition(y, a, n_groups: int = 2) -> np.ndarray:
    """Condition index of a (target y, group a) cell: ``y * n_groups + a``."""
    return np.asarray(y, dtype=np.int64) * n_groups + np.asarray(a, dtype=np.int64)


@dataclass
class ConditionalDDPM:
    """A trained UNet2DModel with its noise scheduler and what it was trained on."""

    unet: torch.nn.Module
    scheduler: object
    config: DDPMConfig
    n_conditions: int
    image_shape: tuple[int, int, int]  # (C, H, W) of the data, before padding
    history: list[float] = field(default_factory=list)
    cache_path: Path | None = None  # where :func:`cached_generator` keeps it (pools are cached there)

    @property
    def null_condition(self) -> int:
        return self.n_conditions

    def save(self, path: str | os.PathLike) -> Path:
        """``save_pretrained`` (safetensors) of the UNet and scheduler plus ``fairbook.json``."""
        path = Path(path)
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(path / "scheduler")
        meta = {"config": asdict(self.config), "n_conditions": self.n_conditions,
                "image_shape": list(self.image_shape), "history": self.history}
        (path / "fairbook.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device="auto") -> "ConditionalDDPM":
        from diffusers import DDPMScheduler, UNet2DModel

        path = Path(path)
        if not (path / "fairbook.json").is_file():
            raise FileNotFoundError(f"{path} holds no saved generator (fairbook.json missing)")
        meta = json.loads((path / "fairbook.json").read_text())
        cfg = {**_BEFORE_OPTIONS, **meta["config"]}  # generators saved before these options existed
        cfg["channels"] = tuple(cfg["channels"])
        unet = UNet2DModel.from_pretrained(path / "unet", local_files_only=True).to(resolve_device(device))
        sched = DDPMScheduler.from_pretrained(path / "scheduler", local_files_only=True)
        return cls(unet.eval(), sched, DDPMConfig(**cfg), meta["n_conditions"],
                   tuple(meta["image_shape"]), meta["history"])


#: What a generator saved before patch folding, v-prediction, EMA, min-SNR and the lr schedule used.
_BEFORE_OPTIONS = {"patch": 1, "prediction_type": "epsilon", "ema_decay": 0.0, "snr_gamma": 0.0,
                   "lr_schedule": "constant", "warmup": 0}
#: Changes whenever sampling itself changes, so that cached pools are not reused across versions.
SAMPLER_VERSION = "ddim-trailing-1"


def _pad(size: int, multiple: int) -> int:
    return (-size) % multiple


def _multiple(config: DDPMConfig) -> int:
    """Image sizes must divide by this: the patch, then one halving per UNet level after the first."""
    return config.patch * 2 ** (len(config.channels) - 1)


def _to_model_space(X: torch.Tensor, multiple: int) -> torch.Tensor:
    """[0, 1] -> [-1, 1], padded with black (-1) so height and width are multiples of ``multiple``."""
    ph, pw = _pad(X.shape[-2], multiple), _pad(X.shape[-1], multiple)
    x = X * 2 - 1
    return torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=-1.0)


def build_unet(config: DDPMConfig, image_shape, n_conditions: int):
    from diffusers import UNet2DModel

    c, h, w = image_shape
    m = _multiple(config)
    size = (h + _pad(h, m), w + _pad(w, m))
    if size[0] != size[1]:
        raise ValueError(f"square images are needed, got {h}x{w}")
    n = len(config.channels)
    c = c * config.patch ** 2
    return UNet2DModel(sample_size=size[0] // config.patch, in_channels=c, out_channels=c,
                       layers_per_block=config.layers_per_block, block_out_channels=config.channels,
                       down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
                       norm_num_groups=min(8, config.channels[0]), num_class_embeds=n_conditions + 1,
                       add_attention=config.mid_attention)


def train_ddpm(X, cond, n_conditions: int, config: DDPMConfig = DDPMConfig(), device="auto",
               desc: str = "ddpm") -> ConditionalDDPM:
    """Train a conditional DDPM on images ``X`` (N, C, H, W) in [0, 1] with conditions ``cond``."""
    from diffusers import DDPMScheduler

    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    cond = torch.as_tensor(np.asarray(cond), dtype=torch.long)
    if X.ndim != 4 or len(X) != len(cond) or len(X) == 0:
        raise ValueError(f"X must be (N, C, H, W) with one condition per image; got {tuple(X.shape)} "
                         f"and {tuple(cond.shape)}")
    if cond.min() < 0 or cond.max() >= n_conditions:
        raise ValueError(f"conditions must lie in [0, {n_conditions - 1}], got [{int(cond.min())}, "
                         f"{int(cond.max())}]")
    from diffusers.training_utils import EMAModel, compute_snr

    device = resolve_device(device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    unet = build_unet(config, tuple(X.shape[1:]), n_conditions).to(device)
    sched = DDPMScheduler(num_train_timesteps=config.num_train_timesteps,
                          beta_schedule=config.beta_schedule, prediction_type=config.prediction_type)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr)
    lr_at = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(config, s))
    ema = (EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=2 / 3)
           if config.ema_decay > 0 else None)
    data = _to_model_space(X, _multiple(config))
    history = []
    unet.train()
    bar = tqdm(range(config.steps), desc=desc, disable=not progress_enabled(), leave=False)
    for _ in bar:
        idx = torch.randint(len(data), (config.batch_size,), generator=gen)
        x0, c = data[idx].to(device), cond[idx].clone()
        c[torch.rand(len(c), generator=gen) < config.cond_dropout] = n_conditions  # null condition
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, config.num_train_timesteps, (len(x0),), generator=gen).to(device)
        noisy = _fold(sched.add_noise(x0, noise, t), config.patch)
        pred = unet(noisy, t, class_labels=c.to(device)).sample
        target = noise if config.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
        err = (_unfold(pred, config.patch) - target).pow(2).mean(dim=(1, 2, 3))
        if config.snr_gamma > 0:  # min-SNR-gamma weights (Hang et al. 2023, their eq. for eps / v)
            snr = compute_snr(sched, t).clamp_min(1e-12)
            w = snr.clamp(max=config.snr_gamma) / (snr if config.prediction_type == "epsilon" else snr + 1)
            err = err * w
        loss = err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_at.step()
        if ema is not None:
            ema.step(unet.parameters())
        history.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    if ema is not None:
        ema.copy_to(unet.parameters())
    return ConditionalDDPM(unet.eval(), sched, config, n_conditions, tuple(X.shape[1:]), history)


def _lr_factor(config: DDPMConfig, step: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or a cosine down to zero."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    if config.lr_schedule == "constant":
        return 1.0
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _fold(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C p^2, H/p, W/p): each p x p block of pixels becomes channels."""
    return x if patch == 1 else torch.nn.functional.pixel_unshuffle(x, patch)


def _unfold(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of :func:`_fold`."""
    return x if patch == 1 else torch.nn.functional.pixel_shuffle(x, patch)


SAMPLERS = ("ddim", "dpm++")
PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str, device="auto") -> str:
    """``"auto"``: ``bf16`` where the device computes bfloat16 natively (a CUDA GPU that supports it,
    a CPU with AVX512-BF16 or AMX as oneDNN reports), else ``fp32``; other values as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    dev = resolve_device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def _sampler(model: ConditionalDDPM, sampler: str, steps: int):
    """A fresh scheduler set to ``steps``: DDIM or DPM-Solver++ (2M, Lu et al. 2022), both with
    "trailing" timestep spacing."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if sampler == "ddim":
        # "trailing" spacing starts at the last training timestep (pure noise) instead of
        # 1000 - 1000/steps; measurably better samples at 20 steps (Lin et al. 2024)
        sch = DDIMScheduler.from_config(model.scheduler.config, timestep_spacing="trailing")
    else:
        sch = DPMSolverMultistepScheduler.from_config(model.scheduler.config, algorithm_type="dpmsolver++",
                                                      solver_order=2, timestep_spacing="trailing",
                                                      final_sigmas_type="zero")
    sch.set_timesteps(steps)
    return sch


@torch.no_grad()
def sample(model: ConditionalDDPM, cond, steps: int = 50, guidance: float = 1.0, seed: int = 0,
           batch_size: int = 256, device="auto", sampler: str = "ddim", precision: str = "fp32") -> np.ndarray:
    """Samples for each entry of ``cond`` with ``sampler`` (``ddim`` or ``dpm++``, DPM-Solver++ 2M:
    as good in fewer steps); returns uint8 images (N, H, W, C) (EDM layout). ``precision="bf16"``
    runs the UNet under bfloat16 autocast (the scheduler's arithmetic stays fp32): about twice as
    fast on a CPU with bf16 instructions, and on a GPU; ``"auto"`` picks it where the device has them
    (:func:`resolve_precision`).

    Image ``i`` depends only on ``(seed, i)`` and ``cond[i]``, not on the batch it is drawn in.
    """
    if steps < 1 or guidance < 0:
        raise ValueError(f"steps must be >= 1 and guidance >= 0, got {steps}, {guidance}")
    if sampler not in SAMPLERS or precision not in PRECISIONS:
        raise ValueError(f"sampler must be one of {SAMPLERS} and precision one of {PRECISIONS}, "
                         f"got {sampler!r}, {precision!r}")
    precision = resolve_precision(precision, device)
    cond = torch.as_tensor(np.asarray(cond), dtype=torch.long)
    if len(cond) and (cond.min() < 0 or cond.max() >= model.n_conditions):
        raise ValueError(f"conditions must lie in [0, {model.n_conditions - 1}]")
    device = resolve_device(device)
    unet = model.unet.to(device).eval()
    c, h, w = model.image_shape
    patch = model.config.patch
    size = unet.config.sample_size * patch
    out = []
    for lo in range(0, len(cond), batch_size):
        cb = cond[lo:lo + batch_size].to(device)
        noise = torch.stack([torch.randn((c, size, size), generator=torch.Generator().manual_seed(
            int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:8], 16)))
            for i in range(lo, lo + len(cb))]).to(device)
        x = noise
        sch = _sampler(model, sampler, steps)  # fresh per batch: DPM-Solver++ keeps earlier outputs
        for t in sch.timesteps:
            tt = torch.full((len(cb),), int(t), device=device, dtype=torch.long)
            xf = _fold(x, patch)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                if guidance == 1.0:
                    out_t = unet(xf, tt, class_labels=cb).sample
                else:
                    both = unet(torch.cat([xf, xf]), torch.cat([tt, tt]),
                                class_labels=torch.cat([cb, torch.full_like(cb, model.null_condition)])).sample
            if guidance == 1.0:
                out_t = out_t.float()
            else:
                out_c, out_u = both.float().chunk(2)
                out_t = out_u + guidance * (out_c - out_u)
            x = sch.step(_unfold(out_t, patch), t, x).prev_sample
        ph, pw = size - h, size - w
        x = x[:, :, ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, h, w, c), np.uint8)


def cache_root() -> Path:
    """``$FAIRBOOK_CACHE/generators`` or ``~/.cache/fairbook/generators``."""
    return Path(os.environ.get("FAIRBOOK_CACHE") or cache_home()) / "generators"


def generator_key(dataset: str, subset: str, data_fingerprint: str, config: DDPMConfig,
                  n_conditions: int) -> str:
    """Cache key of a trained generator: dataset, subset, data, training parameters and seed."""
    blob = json.dumps({"dataset": dataset, "subset": subset, "data": data_fingerprint,
                       "config": asdict(config), "n_conditions": n_conditions}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_generator(dataset: str, subset: str, X, cond, n_conditions: int,
                     config: DDPMConfig = DDPMConfig(), device="auto", log=None) -> ConditionalDDPM:
    """Load the generator trained on exactly this data and config, or train and cache it.

    The fingerprint covers the training arrays themselves, so any change of data or subset retrains.
    The cache entry is written to a temporary folder and renamed into place when complete.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    cond = np.ascontiguousarray(cond, dtype=np.int64)
    fp = hashlib.sha256(X.tobytes() + cond.tobytes()).hexdigest()
    key = generator_key(dataset, subset, fp, config, n_conditions)
    path = cache_root() / f"{dataset}-{key}"
    if (path / "fairbook.json").is_file():
        if log:
            log(f"generator cache hit: {path}")
        model = ConditionalDDPM.load(path, device)
        model.cache_path = path
        return model
    model = train_ddpm(X, cond, n_conditions, config, device, desc=f"ddpm {dataset}")
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    try:
        os.replace(tmp, path)
    except OSError:  # a concurrent run cached the same generator first
        shutil.rmtree(tmp, ignore_errors=True)
    if log:
        log(f"generator trained and cached: {path}")
    model.cache_path = path
    return model


def write_pool(path: str | os.PathLike, images: np.ndarray, labels, seeds=None, **extra) -> Path:
    """Write a sample pool as one ``.npz`` with the EDM CIFAR release's keys: ``image`` (uint8
    N x H x W x C) and ``label``; plus ``seed`` and any ``extra`` arrays."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise ValueError("images must be uint8 (N, H, W, C) with one label each")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"image": images, "label": labels}
    if seeds is not None:
        arrays["seed"] = np.asarray(seeds)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def make_pool(model: ConditionalDDPM, n_per_condition: int, path: str | os.PathLike, steps: int = 50,
              guidance: float = 1.0, seed: int = 0, conditions=None, sampler: str = "ddim",
              precision: str = "fp32") -> Path:
    """Sample ``n_per_condition`` images of each condition (all by default) and write the pool; image
    ``i`` has seed ``(seed, i)`` (see :func:`sample`), recorded in the pool's ``seed`` array."""
    conds = np.arange(model.n_conditions) if conditions is None else np.asarray(conditions)
    labels = np.repeat(conds, n_per_condition)
    images = sample(model, labels, steps=steps, guidance=guidance, seed=seed, sampler=sampler, precision=precision)
    return write_pool(path, images, labels, seeds=np.full(len(labels), seed), index=np.arange(len(labels)),
                      steps=steps, guidance=guidance, sampler=sampler, precision=precision)


def cached_pool(model: ConditionalDDPM, n_per_condition: int, steps: int = 50, guidance: float = 1.0,
                seed: int = 0, conditions=None, log=None, sampler: str = "ddim",
                precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_pool` kept next to a cached generator (``<generator>/pools/<key>.npz``) and
    reused when the same pool is asked for again; without a cache path the pool is only sampled."""
    conds = np.arange(model.n_conditions) if conditions is None else np.asarray(conditions)
    precision = resolve_precision(precision, next(model.unet.parameters()).device)
    how = dict(steps=steps, guidance=guidance, seed=seed, sampler=sampler, precision=precision)
    if model.cache_path is None:
        labels = np.repeat(conds, n_per_condition)
        return sample(model, labels, **how), labels
    spec = [SAMPLER_VERSION, int(n_per_condition), int(steps), float(guidance), int(seed), conds.tolist()]
    if (sampler, precision) != ("ddim", "fp32"):  # keys of the DDIM fp32 pools kept as they were
        spec += [sampler, precision]
    key = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    path = model.cache_path / "pools" / f"{key}.npz"
    if path.is_file():
        if log:
            log(f"sample pool cache hit: {path}")
    else:
        make_pool(model, n_per_condition, path, conditions=conds, **how)
        if log:
            log(f"sample pool written: {path}")
    return read_pool(path)


def read_pool(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x H x W x C, labels) from a pool written by :func:`write_pool` or from the
    1M-image EDM CIFAR ``.npz`` (same keys)."""
    with np.load(path) as z:
        missing = {"image", "label"} - set(z.files)
        if missing:
            raise ValueError(f"{path} is not a sample pool: missing keys {sorted(missing)}")
        return z["image"], z["label"]


def pool_to_tensor(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1], the layout of ``fairbook.data``."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
