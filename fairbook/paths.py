"""Where things live, and what a cache key hashes.

The package has three layers: the core (top-level modules and ``data``, ``generative``, ``metrics``,
``train``), one subpackage per paper (``mime``, ``hbr``, ``gcm``, ``aimfair``, and any chapter added
later) and the book harness (``book``: parameters, runner, site, command line). A run's key and a grid
task's key hash :func:`source_fingerprint` of the core plus the one paper subpackage they run, so
editing the harness (the site's layout, the profiles) or another paper leaves them valid.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: subpackages that belong to the core (every paper may import them)
CORE_SUBPACKAGES = ("data", "generative", "metrics", "train")
#: the book harness: knows the papers through their ``chapter`` hooks; nothing else imports it
HARNESS = "book"
SOURCE_SUFFIXES = (".py", ".yml")


def project_root() -> Path:
    """The checkout holding ``notebooks/`` and ``_config.yml`` (override with ``FAIRBOOK_ROOT``)."""
    return Path(os.environ.get("FAIRBOOK_ROOT", PACKAGE_DIR.parent)).resolve()


def runs_dir() -> Path:
    """Where runs land: ``$FAIRBOOK_RUNS`` or ``<project>/runs``."""
    return Path(os.environ.get("FAIRBOOK_RUNS", project_root() / "runs")).resolve()


def cache_home() -> Path:
    """The user cache of fairbook: ``$XDG_CACHE_HOME/fairbook`` or ``~/.cache/fairbook``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fairbook"


def papers(package_dir: Path | None = None) -> list[str]:
    """The paper subpackages: every subpackage that is neither core nor the harness."""
    package_dir = package_dir or PACKAGE_DIR
    return sorted(p.parent.name for p in package_dir.glob("*/__init__.py")
                  if p.parent.name not in CORE_SUBPACKAGES + (HARNESS,))


def scope_of(module: str, package_dir: Path | None = None) -> str | None:
    """The paper a module belongs to (``fairbook.hbr.experiment`` -> ``hbr``), else ``None``."""
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "fairbook" and parts[1] in papers(package_dir):
        return parts[1]
    return None


def source_fingerprint(paper: str | None = None, package_dir: Path | None = None) -> str:
    """Hash of the core's source plus, if given, the ``paper`` subpackage's (``*.py``, ``*.yml``).

    The harness and the other papers are left out: they cannot change what a paper's code computes.
    """
    package_dir = package_dir or PACKAGE_DIR
    skip = set(papers(package_dir)) | {HARNESS}
    if paper is not None:
        if paper not in skip - {HARNESS}:
            raise ValueError(f"paper must be one of {', '.join(papers(package_dir))}, got {paper!r}")
        skip.discard(paper)
    h = hashlib.sha256()
    for p in sorted(package_dir.rglob("*")):
        rel = p.relative_to(package_dir)
        if (p.suffix in SOURCE_SUFFIXES and "__pycache__" not in rel.parts
                and not (len(rel.parts) > 1 and rel.parts[0] in skip)):
            h.update(rel.as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()
