"""K same-shaped models in one batched loop vs K separate fits (not a test): `python benchmarks/batched.py`.

Ratios are measured in one run, same data, seeds and arguments, and the batched models are checked
to equal the separate ones (largest parameter difference printed):
* MIME's real-data beta sweep: K = 11 Adult MLPs (101-50-50-50-2; 1,800 rows each, one per beta, the
  authors' recipe: AdamW, batch 30, cosine), validation every epoch, target >= 4x;
* HBR's AUM ensemble: K = 4 Fashion-MNIST MLPs (784-128-10; 5,000 rows, batch 256, SGD Nesterov,
  the AUM logits hook on every batch), target >= 2x;
* both with 1 and 2 torch threads (issue 19's thread measurement).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

os.environ.setdefault("FAIRBOOK_PROGRESS", "0")
from fairbook import hbr, mime, models, train  # noqa: E402
from fairbook.train import fit_many  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def max_diff(ref, got) -> float:
    return max((r.model.state_dict()[n] - g.model.state_dict()[n]).abs().max().item()
               for r, g in zip(ref, got) for n in r.model.state_dict())


def mime_sweep(epochs: int = 3):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 101)).astype(np.float32)
    y = (X[:, :5].sum(1) + rng.normal(size=4000) > 0).astype(np.int64)
    sets = [(X[i * 200:i * 200 + 1800], y[i * 200:i * 200 + 1800]) for i in range(11)]
    val = (X[-400:], y[-400:])
    kw = dict(val=val, select="acc", **mime.experiment.Recipe.tabular(epochs).fit_kwargs())
    make = lambda: train.seeded(lambda: models.MLP(101, (50, 50, 50), 2), 7)  # noqa: E731  one init per trial
    t_seq, ref = timed(lambda: [train.fit(make(), *sets[k], seed=7, **kw) for k in range(11)])
    t_bat, got = timed(lambda: fit_many([make() for _ in range(11)], sets, seeds=[7] * 11, **kw))
    return t_seq, t_bat, max_diff(ref, got)


def aum_ensemble(epochs: int = 4):
    rng = np.random.default_rng(1)
    X = rng.random(size=(5000, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 5000)
    seeds = [0, 1, 2, 3]
    kw = dict(epochs=epochs, batch_size=256, optim=train.Optim("sgd", 0.1, 0.9, True, 5e-4), select=None)
    make = lambda s: train.seeded(lambda: models.MLP(784, (128,), 10), s)  # noqa: E731

    def separate():
        out = []
        for s in seeds:
            tr = hbr.AUMTracker(len(y))
            out.append(train.fit(make(s), X, y, seed=s, on_logits=tr, **kw))
        return out

    def batched():
        trackers = [hbr.AUMTracker(len(y)) for _ in seeds]
        return fit_many([make(s) for s in seeds], [(X, y)] * 4, seeds=seeds, on_logits=trackers, **kw)

    t_seq, ref = timed(separate)
    t_bat, got = timed(batched)
    return t_seq, t_bat, max_diff(ref, got)


def main():
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, fn, target in (("mime_sweep_K11", mime_sweep, 4.0), ("hbr_aum_K4", aum_ensemble, 2.0)):
            fn()  # warm-up (allocator, vmap tracing)
            t_seq, t_bat, diff = fn()
            out[f"{name}_threads{threads}"] = {"separate_s": round(t_seq, 2), "batched_s": round(t_bat, 2),
                                               "speedup": round(t_seq / t_bat, 2), "target": target,
                                               "max_param_diff": float(f"{diff:.2e}")}
            print(name, threads, out[f"{name}_threads{threads}"], flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
