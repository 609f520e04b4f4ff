"""Generator budget and quality (not a test): `python benchmarks/generative.py [--steps N]`.

Trains the default conditional DDPM on Fashion-MNIST (train split) with a fresh cache, times it,
samples per class with each sampler variant (``--variants sampler:steps:precision``, e.g. the old
default ``ddim:20:fp32`` against ``dpm++:10:bf16``), and reports a real-data classifier's accuracy
on the samples, sampling throughput and the cost of a cache hit: the quality report before/after a
change to the generator.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import fairbook  # noqa: F401  (sets OMP_WAIT_POLICY before torch)
import numpy as np

from fairbook import data, models, train
from fairbook.generative import ddpm, quality


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=ddpm.DDPMConfig().steps)
    ap.add_argument("--batch-size", type=int, default=ddpm.DDPMConfig().batch_size)
    ap.add_argument("--no-mid-attention", action="store_true", help="UNet without its mid-block attention")
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--variants", nargs="+", default=["ddim:20:fp32", "dpm++:10:fp32", "dpm++:10:bf16"])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    args = ap.parse_args()
    os.environ["FAIRBOOK_CACHE"] = tempfile.mkdtemp()
    os.environ.setdefault("FAIRBOOK_PROGRESS", "0")
    trn, tst = data.load("fashion-mnist", "train"), data.load("fashion-mnist", "test")
    cfg = ddpm.DDPMConfig(steps=args.steps, batch_size=args.batch_size, mid_attention=not args.no_mid_attention)
    t = time.perf_counter()
    gen = ddpm.cached_generator("fashion-mnist", "train", trn.X, trn.y, 10, cfg)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    ddpm.cached_generator("fashion-mnist", "train", trn.X, trn.y, 10, cfg)
    hit_s = time.perf_counter() - t
    labels = np.repeat(np.arange(10), args.per_class)
    clfs = {"mlp": models.MLP(784, (256, 256), 10), "cnn": models.SmallCNN(1, 10)}
    for clf in clfs.values():
        train.fit(clf, trn.X, trn.y, epochs=3, batch_size=256, optim=train.Optim("adam", lr=1e-3), select=None)
    out = {"ddpm_steps": args.steps, "batch_size": cfg.batch_size, "mid_attention": cfg.mid_attention, "train_s": train_s, "cache_hit_s": hit_s, "samples": len(labels),
           "final_train_loss": float(np.mean(gen.history[-50:])),
           "classifier_real_test_acc": {k: train.evaluate(c, tst.X, tst.y)["acc"] for k, c in clfs.items()}}
    for variant in args.variants:
        sampler, steps, precision = variant.split(":")
        for g in args.guidance:
            t = time.perf_counter()
            imgs = ddpm.sample(gen, labels, steps=int(steps), guidance=g, seed=0, sampler=sampler, precision=precision)
            sample_s = time.perf_counter() - t
            out[f"{variant} guidance {g:g}"] = _report(imgs, labels, sample_s, clfs, trn, tst)
            print(variant, g, {k: v["acc_on_samples"] for k, v in out[f"{variant} guidance {g:g}"].items()
                               if isinstance(v, dict)}, round(len(labels) / sample_s, 1), "img/s", flush=True)
    print(json.dumps(out, indent=1))


def _report(imgs, labels, sample_s, clfs, trn, tst) -> dict:
    """Throughput and, per real-data classifier, its accuracy and confidence on the samples."""
    res = {"samples_per_s": len(labels) / sample_s}
    for k, clf in clfs.items():
        rep = quality.classifier_report(clf, ddpm.pool_to_tensor(imgs), labels, trn.classes)
        spec = quality.hardness_spectrum(clf, tst.X[:1000], tst.y[:1000], ddpm.pool_to_tensor(imgs), labels)
        res[k] = {"acc_on_samples": float(rep.iloc[-1].accuracy),
                  "per_class_acc": dict(zip(rep.condition[:-1], rep.accuracy[:-1].round(3))),
                  "median_confidence_real": float(spec[spec.source == "real"].confidence.median()),
                  "median_confidence_generated": float(spec[spec.source == "generated"].confidence.median())}
    return res


if __name__ == "__main__":
    main()
