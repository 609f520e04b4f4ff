"""The book's chapters (jupytext MyST sources in ``notebooks/``) and their profiles.

Profiles live in one place, ``fairbook/book/profiles/<profile>.yml``, as ``{chapter: {parameter: value}}``.
A profile value must name a parameter of the chapter's ``parameters`` cell and pass its check;
values a profile leaves out keep the notebook's own default.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ParameterError
from ..paths import project_root
from .params import ParamSpec, parse_parameters_cell, parse_text

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES = ("smoke", "default", "paper")
#: Reading order of the book; chapters land here as they are written.
ORDER = ("mime", "hbr", "gcm", "aimfair")
#: The runner's hooks of each chapter: a module defining ``check_parameters(values)`` (conditions that
#: tie parameters together, raising ParameterError) and ``input_files(values)`` (files beyond the
#: datasets whose fingerprint enters the run's key). The chapter's paper subpackage is the module's parent.
HOOKS = {name: f"fairbook.{name}.chapter" for name in ORDER}


def hooks(name: str):
    """The hooks module of chapter ``name`` (:data:`HOOKS`), or ``None`` for a chapter without one."""
    return importlib.import_module(HOOKS[name]) if name in HOOKS else None


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def available() -> list[str]:
    """Chapter names in reading order (those with a source in ``notebooks/``)."""
    present = {p.stem for p in notebooks_dir().glob("*.md")}
    return [c for c in ORDER if c in present] + sorted(present - set(ORDER))


@dataclass(frozen=True)
class Chapter:
    name: str
    source: Path
    title: str
    params: dict[str, ParamSpec]

    def values(self, profile: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
        """All parameter values for ``profile`` plus command-line ``overrides`` (strings), validated."""
        prof = load_profile(profile).get(self.name, {})
        values = {n: s.default for n, s in self.params.items()}
        values.update(prof)  # already validated by load_profile
        for name, text in (overrides or {}).items():
            if name not in self.params:
                raise ParameterError(
                    f"unknown parameter '{name}' for chapter '{self.name}' (given {text!r}); "
                    f"allowed: {', '.join(self.params)}")
            spec = self.params[name]
            values[name] = spec.check(parse_text(spec, str(text)), self.name, "command line")
        return values


def get(name: str) -> Chapter:
    """The chapter called ``name``; an unknown name lists the chapters that exist."""
    names = available()
    if name not in names:
        raise ParameterError(f"unknown chapter '{name}'; allowed: {', '.join(names) or '(none)'}")
    return _read(notebooks_dir() / f"{name}.md")


@functools.lru_cache(maxsize=32)
def _read_cached(path: Path, mtime: float) -> Chapter:
    import jupytext

    nb = jupytext.read(path)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"chapter '{path.stem}' must have exactly one cell tagged 'parameters', "
                             f"found {len(cells)}")
    title = next((line.lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"
                  for line in c.source.splitlines() if line.startswith("# ")), path.stem)
    return Chapter(path.stem, path, title, parse_parameters_cell(cells[0].source, path.stem))


def _read(path: Path) -> Chapter:
    return _read_cached(path, path.stat().st_mtime)


def load_profile(profile: str) -> dict[str, dict[str, Any]]:
    """The validated ``{chapter: {parameter: value}}`` of a profile."""
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile '{profile}'; allowed: {', '.join(PROFILES)}")
    raw = yaml.safe_load((PROFILES_DIR / f"{profile}.yml").read_text()) or {}
    out: dict[str, dict[str, Any]] = {}
    for chapter, values in raw.items():
        ch = get(chapter) if chapter in available() else None
        if ch is None:
            raise ParameterError(f"profile '{profile}' names chapter '{chapter}', which has no source "
                                 f"in {notebooks_dir()}; allowed: {', '.join(available())}")
        out[chapter] = {}
        for name, value in (values or {}).items():
            if name not in ch.params:
                raise ParameterError(
                    f"profile '{profile}' sets parameter '{name}' (to {value!r}), which chapter "
                    f"'{chapter}' does not declare; allowed: {', '.join(ch.params)}")
            out[chapter][name] = ch.params[name].check(value, chapter, f"profile '{profile}'")
    return out
