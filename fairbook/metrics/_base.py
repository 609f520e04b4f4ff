"""Input conversion and checks shared by the metrics (the conventions of :mod:`fairbook.metrics`)."""
from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any) -> np.ndarray:
    """Convert an array-like (including a torch tensor on any device, with or without grad) to numpy."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _undefined(msg: str, nan_ok: bool) -> float:
    if nan_ok:
        return float("nan")
    raise ValueError(msg + " (pass nan_ok=True to get NaN instead)")


def _labels(x: Any, name: str) -> np.ndarray:
    arr = as_numpy(x)
    if arr.ndim == 2 and arr.shape[1] == 1:  # a column vector, e.g. a (n, 1) model output
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"{name} must hold integer labels")
    return arr.astype(np.int64)


def _binary(x: Any, name: str) -> np.ndarray:
    arr = _labels(x, name)
    bad = np.setdiff1d(np.unique(arr), [0, 1])
    if bad.size:
        raise ValueError(f"{name} must be binary (0/1), found values {bad.tolist()}")
    return arr


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    if not next(iter(lengths.values())):
        raise ValueError("inputs are empty")


def _binary_inputs(y_true, y_pred, a):
    y, p, g = _binary(y_true, "y_true"), _binary(y_pred, "y_pred"), _binary(a, "a")
    _same_length(y_true=y, y_pred=p, a=g)
    return y, p, g


def _vector(r: Any, name: str = "r") -> np.ndarray:
    arr = as_numpy(r).astype(float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector of per-class scores, got shape {arr.shape}")
    return arr


def _check_nan(r: np.ndarray, nan_ok: bool, what: str) -> bool:
    """True if ``r`` has NaNs and the caller accepts NaN (the result should then be NaN)."""
    nan = np.isnan(r)
    if not nan.any():
        return False
    _undefined(f"{what}: per-class scores are undefined (NaN) for classes {np.flatnonzero(nan).tolist()}",
               nan_ok)
    return True
