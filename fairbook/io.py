"""Where a notebook writes its results: the run directory the runner gives it.

Inside a run (``FAIRBOOK_RUN_DIR`` set by the runner) tables go to ``results/`` and figures to
``figures/``; outside one (a notebook opened by hand) they go under ``./fairbook-output/``.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd


def output_dir(kind: str) -> Path:
    """``results`` or ``figures`` directory of the current run, created if needed."""
    root = Path(os.environ.get("FAIRBOOK_RUN_DIR", "fairbook-output"))
    path = root / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_table(df: pd.DataFrame, name: str) -> Path:
    """Write a tidy table as ``results/<name>.csv`` and return its path."""
    path = output_dir("results") / f"{name}.csv"
    df.to_csv(path, index=False)
    return path


def save_json(obj: Any, name: str) -> Path:
    """Write ``results/<name>.json``."""
    path = output_dir("results") / f"{name}.json"
    path.write_text(json.dumps(obj, indent=2, default=float))
    return path


def record(key: str, value: Any) -> None:
    """Add ``key`` (e.g. ``device``) to the run's provenance via ``results/_runinfo.json``."""
    path = output_dir("results") / "_runinfo.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    info[key] = value
    path.write_text(json.dumps(info, indent=2, default=str))


def progress_enabled() -> bool:
    """tqdm bars are shown unless ``FAIRBOOK_PROGRESS=0`` (set by the runner and the tests)."""
    return os.environ.get("FAIRBOOK_PROGRESS", "1") != "0"


def swap_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished directory ``tmp`` to ``final``; an existing ``final`` is replaced only once
    the new one is in place, and is put back if the swap fails."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
