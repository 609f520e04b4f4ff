"""GCM step cost (not a test): `python benchmarks/gcm.py`.

One GCM step (per-group gradients with create_graph=True, the regulariser, double backward) against
one vanilla step on the paper's Adult model (MLP 120-200-200-1, batch 2000 = 500 per (a, y) cell,
Adam), both through the engine with group-balanced batches, interleaved repeats in one run; the
median and the min-over-min ratio, and the ratio of matmul FLOPs counted by the profiler.
Target: a GCM step costs <= 3x a vanilla step. The exact double backward needs 2.72x the matmul
FLOPs of a vanilla step (counted), so 3x leaves ~10% for everything else. The MLP's tensors are all
nn.Linear, so the cells' gradients come from one forward and one backward over the whole batch
(gcm.linear_group_gradients: full-batch matmuls, one batched matmul for the four cells' weight
gradients) instead of four per-cell passes. Measured on an idle machine over 22 runs in two
sessions: 2.64x-2.97x by median (GCM step 18.5-29.2 ms, vanilla 6.4-11.0 ms; the host's speed
varies between runs, the ratio less; on the faster days the fixed per-step costs weigh more).
Before the Linear path (four per-cell passes): 3.07x-3.29x; with the purely passive OpenMP wait
policy (before fairbook's short spin, fairbook/__init__.py) 3.7x-4.3x. The min-over-min ratio is
noisier (one unusually fast vanilla repeat moves it by 0.3).
"""
from __future__ import annotations

import json
import os
import statistics
import time

os.environ.setdefault("FAIRBOOK_PROGRESS", "0")
import fairbook  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch)
from fairbook import data, gcm, models, train  # noqa: E402


def step_seconds(extra_loss, X, y, a, steps: int = 30) -> float:
    model = train.seeded(lambda: adult_mlp(X), 0)
    t = time.perf_counter()
    train.fit(model, X, y, epochs=1, steps_per_epoch=steps, batch_size=2000, sampler="group_balanced",
              groups=a, optim=train.Optim("adam", lr=1e-3), loss="bce", select=None, extra_loss=extra_loss)
    return (time.perf_counter() - t) / steps


def gcm_loss():
    return gcm.gcm_loss(1.0, T=2.0, form="squared")


def main(repeats: int = 7) -> dict:
    ds = data.load("adult", "train", layout="fair-mixup")
    X, y, a = ds.X, ds.y, ds.groups["sex"]
    step_seconds(None, X, y, a, 5)  # warm-up
    vanilla, gcm_t2 = [], []
    for _ in range(repeats):
        vanilla.append(step_seconds(None, X, y, a))
        gcm_t2.append(step_seconds(gcm_loss(), X, y, a))
    v, g = statistics.median(vanilla), statistics.median(gcm_t2)
    return {"adult_dims": int(X.shape[1]), "repeats": repeats, "vanilla_step_s": v, "gcm_step_s": g,
            "gcm_over_vanilla": g / v, "gcm_over_vanilla_min": min(gcm_t2) / min(vanilla),
            "matmul_flops_ratio": matmul_flops(gcm_loss(), X, y, a) / matmul_flops(None, X, y, a),
            "cell_gradients": "one pass over the batch (nn.Linear)" if linear_path(X) else "per-cell passes"}


def adult_mlp(X):
    return models.MLP(X.shape[1], gcm.experiment.ADULT_WIDTHS, 1)


def linear_path(X) -> bool:
    """Whether GCM takes the cells' gradients from one pass (gcm.linear_group_gradients) on this model."""
    model = adult_mlp(X)
    return gcm.gradients._linear_owners(model, gcm.select_parameters(model)) is not None


def matmul_flops(extra_loss, X, y, a, steps: int = 3) -> float:
    """Matmul FLOPs of one step, counted by the PyTorch profiler (``with_flops``): the floor of the
    ratio at equal matmul speed."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        step_seconds(extra_loss, X, y, a, steps)
    return sum(e.flops for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / steps


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
