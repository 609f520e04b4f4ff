"""Submodules loaded on first attribute access, so that importing a package stays light."""
from __future__ import annotations

import importlib
from typing import Callable, Iterable


def submodules(package: str, names: Iterable[str]) -> Callable:
    """A module ``__getattr__`` for ``package`` that imports ``package.<name>`` for each of ``names``
    on first use (PEP 562); any other name raises AttributeError."""
    names = frozenset(names)

    def __getattr__(name: str):
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
