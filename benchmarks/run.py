"""Performance measurements of the book (not tests): `make benchmarks`.

* Monte Carlo throughput of MIME's push experiment (simulated pushes per second).
* Runner overhead per chapter: a chapter with one trivial cell, run through the real runner
  (jupytext conversion + kernel start + papermill + provenance + atomic install).
* MIME chapter wall time per profile (smoke here; default with --default).
`benchmarks/book_build.sh` times `make book` cold (fresh clone, install included) and warm.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("FAIRBOOK_PROGRESS", "0")

from fairbook import mime  # noqa: E402
from fairbook.book import runner  # noqa: E402


def push_throughput(n: int = 10_000_000, repeats: int = 3) -> dict:
    major, minor = mime.Group.make(-1, 1, 0.6), mime.Group.make(-0.5, 0.5, 0.6)
    rng = np.random.default_rng(0)
    d_prev = rng.normal(0, 0.3, size=1000)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        mime.simulate_push(minor, major, d_prev, 0.05, n // len(d_prev), rng)
        rates.append(n / (time.perf_counter() - t))
    t = time.perf_counter()
    mime.push_experiment(major, minor, K=20, trials=1_000_000, eta=0.05, d0=-0.5, rng=rng)
    full = 1_000_000 / (time.perf_counter() - t)
    return {"pushes_per_s": statistics.median(rates), "push_experiment_trials_per_s_K20": full}


def runner_overhead(repeats: int = 3) -> dict:
    from conftest import TOY  # a one-cell chapter

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "notebooks").mkdir()
        for src in (ROOT / "notebooks").glob("*.md"):
            (root / "notebooks" / src.name).write_text(src.read_text())
        (root / "notebooks" / "toy.md").write_text(TOY)
        os.environ.update(FAIRBOOK_ROOT=str(root), FAIRBOOK_RUNS=str(root / "runs"))
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            runner.run("toy", "smoke", {"n": str(i)}, log=lambda m: None)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        runner.run("toy", "smoke", {"n": "0"}, log=lambda m: None)
        reuse = time.perf_counter() - t
    for k in ("FAIRBOOK_ROOT", "FAIRBOOK_RUNS"):
        os.environ.pop(k)
    return {"runner_overhead_s": statistics.median(times), "runner_overhead_all_s": times,
            "reuse_lookup_s": reuse}


def chapter_time(profile: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FAIRBOOK_RUNS"] = tmp
        t = time.perf_counter()
        runner.run("mime", profile, log=lambda m: None)
        wall = time.perf_counter() - t
        os.environ.pop("FAIRBOOK_RUNS")
    return {f"mime_{profile}_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--default", action="store_true", help="also time the default MIME chapter")
    args = ap.parse_args()
    out = {**push_throughput(), **runner_overhead(), **chapter_time("smoke")}
    if args.default:
        out.update(chapter_time("default"))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
