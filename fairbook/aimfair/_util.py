"""The error message every AIM-Fair function raises on a bad argument."""
from __future__ import annotations

from typing import Any

__all__ = ["fail"]


def fail(where: str, name: str, value: Any, allowed: str) -> ValueError:
    """``ValueError("<where>: <name> got <value>; allowed: <allowed>")``, to be raised."""
    return ValueError(f"{where}: {name} got {value!r}; allowed: {allowed}")
