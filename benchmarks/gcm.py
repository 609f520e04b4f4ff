"""GCM step cost (not a test): `python benchmarks/gcm.py`.

One GCM step (per-group gradients with create_graph=True, the regulariser, double backward) against
one vanilla step on the paper's Adult model (MLP 120-200-200-1, batch 2000 = 500 per (a, y) cell,
Adam), both through the engine with group-balanced batches, interleaved repeats in one run.
Target: a GCM step costs <= 3x a vanilla step. Measured on an idle machine: 2.6x-3.2x (GCM step about
24 ms) with fairbook's short OpenMP spin (GOMP_SPINCOUNT=10000, fairbook/__init__.py); 3.7x-4.3x (43 ms)
with the purely passive wait policy. The exact double backward needs about 2.75x the matmul FLOPs
of a vanilla step here, on 500-row matmuls that run less efficiently on 2 cores.
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
    model = train.seeded(lambda: models.MLP(X.shape[1], gcm.ADULT_WIDTHS, 1), 0)
    t = time.perf_counter()
    train.fit(model, X, y, epochs=1, steps_per_epoch=steps, batch_size=2000, sampler="group_balanced",
              groups=a, optim=train.Optim("adam", lr=1e-3), loss="bce", select=None, extra_loss=extra_loss)
    return (time.perf_counter() - t) / steps


def main(repeats: int = 3) -> dict:
    ds = data.load("adult", "train", layout="fair-mixup")
    X, y, a = ds.X, ds.y, ds.groups["sex"]
    step_seconds(None, X, y, a, 5)  # warm-up
    vanilla, gcm_t2 = [], []
    for _ in range(repeats):
        vanilla.append(step_seconds(None, X, y, a))
        gcm_t2.append(step_seconds(gcm.gcm_loss(1.0, T=2.0, form="squared"), X, y, a))
    v, g = statistics.median(vanilla), statistics.median(gcm_t2)
    return {"adult_dims": int(X.shape[1]), "vanilla_step_s": v, "gcm_step_s": g, "gcm_over_vanilla": g / v}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
