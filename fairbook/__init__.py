"""fairbook: tested implementations of the methods and metrics of four fairness papers.

Import is light: submodules load on first use (``fairbook.mime``, ``fairbook.book.runner``, ...).
"""
from __future__ import annotations

from ._lazy import submodules
import os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting make small tensor ops ~50x slower on a 2-core machine
# whenever another process (a notebook kernel, a test worker) is busy; threads that sleep at once
# make every small op pay a wake-up. A short spin (GOMP_SPINCOUNT, libgomp; it takes precedence over
# the passive policy) keeps most of both: on the GCM step (many 500-row matmuls) 2.6x a vanilla step
# instead of 4.2x on an idle machine, 1.6x slower than fully passive when two busy processes share
# the cores (benchmarks/gcm.py). Only effective when fairbook is imported before torch, which the
# book's notebooks and the runner's kernels do.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

_SUBMODULES = {"claims", "data", "errors", "generative", "grid", "io", "metrics", "models", "paths", "plotting",
               "stats", "train",  # the core
               "mime", "hbr", "gcm", "aimfair",  # one subpackage per paper
               "book"}  # the harness: parameters, runner, site, command line


__getattr__ = submodules(__name__, _SUBMODULES)
