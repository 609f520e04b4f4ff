"""Executors of fairbook.grid (not a test): `python benchmarks/grid.py`.

A 16-fit grid of the default GCM Adult setting (GCM at T = 2 over λ in {0.1, 0.3, 1.0} and
OverSampling, four seeds each; the default profile's Recipe) run with ``local`` (in this process:
one task after another, 2 torch threads each, i.e. workers = 1) and with ``processes`` (2 workers,
1 thread each), the task cache off, in one run; results checked equal where the thread counts match
(``local`` with workers = 2 against ``processes``).
"""
from __future__ import annotations

import json
import os
import time

os.environ.setdefault("FAIRBOOK_PROGRESS", "0")
import fairbook  # noqa: E402,F401

from fairbook import gcm, grid  # noqa: E402
from fairbook.book import chapters  # noqa: E402


def main():
    prof = chapters.get("gcm").values("default")  # the notebook's defaults
    recipe = gcm.experiment.Recipe(widths=tuple(prof["widths"]), batch_size=prof["batch_size"],
                                   epochs=prof["epochs"], steps_per_epoch=prof["steps_per_epoch"], lr=prof["lr"],
                                   select=prof["select"])
    shared = {"recipe": recipe, "splits": {"adult": gcm.experiment.load_splits("adult", seed=0)}, "dataset": "adult"}
    tasks = [{"method": "gcm", "options": {"lam": lam, "T": 2.0, "form": "squared"}, "model_seed": s}
             for lam in (0.1, 0.3, 1.0) for s in range(4)]
    tasks += [{"method": "oversampling", "options": {}, "model_seed": s} for s in range(4)]
    out = {"cores": os.cpu_count(), "tasks": len(tasks)}
    grid.run(gcm.experiment.train_eval, tasks[:2], grid.Grid("processes", 2, cache=False), shared=shared)  # spawn workers
    results = {}
    for name, g in {"local_workers1": grid.Grid("local", 1, cache=False),
                    "local_workers2": grid.Grid("local", 2, cache=False),
                    "processes_workers2": grid.Grid("processes", 2, cache=False)}.items():
        t = time.perf_counter()
        results[name] = grid.run(gcm.experiment.train_eval, tasks, g, shared=shared)
        out[f"{name}_s"] = round(time.perf_counter() - t, 2)
    grid.shutdown()
    out["processes_speedup_vs_local_workers1"] = round(out["local_workers1_s"] / out["processes_workers2_s"], 2)
    out["processes_equal_local_workers2"] = results["processes_workers2"] == results["local_workers2"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
