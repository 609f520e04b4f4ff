"""Selective-mask cost (not a test): `python benchmarks/aimfair.py [--model cnn|resnet18]`.

Mask generation of AIM-Fair (three dataset-averaged gradients, eqs. 1-3, over the biased real set R,
the biased synthetic set S1 and the balanced synthetic set S2, then eqs. 4-7) against fine-tuning
epochs through the engine, interleaved repeats in one run:

* ``epoch_same_data``: one fine-tuning epoch over the same images the mask reads (R, S1 and S2);
* ``epoch_s2``: one selective fine-tuning epoch over S2 alone (what the chapter trains per epoch).

Target: mask generation costs no more than one fine-tuning epoch on the same data.
Random 3x28x28 images (the default profile's shapes; the cost does not depend on the pixels).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

os.environ.setdefault("FAIRBOOK_PROGRESS", "0")
import fairbook  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch)
import numpy as np  # noqa: E402

from fairbook import aimfair, models, train  # noqa: E402


def main(model_name: str = "cnn", n: int = 2000, repeats: int = 3, batch_size: int = 128) -> dict:
    rng = np.random.default_rng(0)
    size = 28 if model_name == "cnn" else 64
    sets = {k: (rng.random((n, 3, size, size), dtype=np.float32), rng.integers(0, 2, n)) for k in ("R", "S1", "S2")}
    build = (lambda: models.SmallCNN(3, 1, (8, 16, 32))) if model_name == "cnn" else (lambda: models.resnet(18, 1))
    base = train.seeded(build, 0)
    X_all = np.concatenate([sets[k][0] for k in sets])
    y_all = np.concatenate([sets[k][1] for k in sets])
    kw = dict(epochs=1, batch_size=batch_size, optim=train.Optim("sgd", lr=0.01, momentum=0.9), loss="bce", select=None)
    out = {"mask_s": [], "epoch_same_data_s": [], "epoch_s2_s": []}
    for _ in range(repeats):
        t = time.perf_counter()
        g = {k: aimfair.dataset_gradients(base, X, y, batch_size=batch_size) for k, (X, y) in sets.items()}
        mask = aimfair.selective_mask(g["R"], g["S1"], g["S2"], aimfair.k_for_fraction(base, 0.88))
        out["mask_s"].append(time.perf_counter() - t)
        t = time.perf_counter()
        train.fit(copy.deepcopy(base), X_all, y_all, **kw)
        out["epoch_same_data_s"].append(time.perf_counter() - t)
        t = time.perf_counter()
        aimfair.selective_finetune(copy.deepcopy(base), mask, *sets["S2"], **kw)
        out["epoch_s2_s"].append(time.perf_counter() - t)
    res = {k: statistics.median(v) for k, v in out.items()}
    res.update(model=model_name, images_per_set=n, image_size=size, batch_size=batch_size,
               mask_over_epoch_same_data=res["mask_s"] / res["epoch_same_data_s"],
               mask_over_epoch_s2=res["mask_s"] / res["epoch_s2_s"])
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("cnn", "resnet18"), default="cnn")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    print(json.dumps(main(args.model, args.n), indent=1))
