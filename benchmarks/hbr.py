"""HBR chapter costs (not a test): `python benchmarks/hbr.py [--chapters]`.

* AUM tracking overhead: the chapter's model trained on its data with and without the AUMTracker
  hook, interleaved repeats in one run (target: <= 10% extra training time).
* One chapter model: seconds per model of the default recipe (the chapter trains hundreds).
* With --chapters: wall time of the hbr chapter through the real runner for the smoke profile
  (target <= 60 s) and the default profile (target <= 8 min; the generator and its pool cached
  first, as the budget says, and timed separately).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("FAIRBOOK_PROGRESS", "0")
import fairbook  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch)
from fairbook import data, hbr  # noqa: E402
from fairbook.book import chapters, runner  # noqa: E402


def aum_overhead(repeats: int = 5) -> dict:
    values = chapters.get("hbr").values("default")
    full = data.load(values["dataset"], "train")
    D = full.subset(hbr.experiment.per_class_subset(full.y, values["n_per_class"], 0))
    recipe = hbr.experiment.Recipe(widths=tuple(values["widths"]), epochs=values["epochs"], lr=values["lr"],
                                   batch_size=values["batch_size"], weight_decay=values["weight_decay"],
                                   milestones=tuple(values["milestones"]))
    plain, tracked = [], []
    recipe.fit(D.X, D.y, 0, 10)  # warm-up
    for r in range(repeats):
        t = time.perf_counter()
        recipe.fit(D.X, D.y, r, 10)
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        recipe.fit(D.X, D.y, r, 10, on_logits=hbr.AUMTracker(len(D.y)))
        tracked.append(time.perf_counter() - t)
    p, a = statistics.median(plain), statistics.median(tracked)
    return {"model_s_plain": p, "model_s_with_aum": a, "aum_overhead": a / p - 1,
            "samples_per_s": len(D.y) * values["epochs"] / p}


def warm_generator() -> float:
    """Train the default profile's generator into the user cache (what the budget excludes); the
    chapter's own pool is sampled (and timed as pool_seconds) in the timed run."""
    v = chapters.get("hbr").values("default")
    full = data.load(v["dataset"], "train")
    D = full.subset(hbr.experiment.per_class_subset(full.y, v["n_per_class"], v["seed"]))
    t = time.perf_counter()
    hbr.experiment.generated_pool(v["dataset"], D.X, D.y, 10, [0], 1, v["seed"], v["ddpm_steps"],
                                  v["sample_steps"], v["guidance"])
    return time.perf_counter() - t


def chapter_times() -> dict:
    out = {"generator_train_s": warm_generator()}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FAIRBOOK_RUNS"] = tmp
        for profile in ("smoke", "default"):
            t = time.perf_counter()
            runner.run("hbr", profile, force=True, log=lambda m: None)
            out[f"{profile}_s"] = time.perf_counter() - t
            run = next(p for p in Path(tmp, "hbr").iterdir() if p.name.startswith(profile))
            out[f"{profile}_pool_s"] = json.loads((run / "provenance.json").read_text())["notebook_info"].get("pool_seconds")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--chapters", action="store_true")
    args = ap.parse_args()
    res = aum_overhead()
    if args.chapters:
        res.update(chapter_times())
    print(json.dumps(res, indent=1))
