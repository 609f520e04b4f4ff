"""The runner's hooks of the MIME chapter (:mod:`fairbook.book.chapters`): conditions across the
parameters of ``notebooks/mime.md``, checked before any kernel starts, and the chapter's input files."""
from __future__ import annotations

from ..errors import ParameterError

__all__ = ["check_parameters", "input_files"]


def check_parameters(values: dict) -> None:
    """Conditions across the MIME chapter's parameters, checked before any kernel starts."""
    for name in ("betas", "map_betas", "emp_betas"):
        b = values.get(name)
        if b is not None and (0.0 not in b or max(b) <= 0 or len(set(b)) != len(b)):
            raise ParameterError(f"parameter '{name}' of chapter 'mime': got {b}; allowed: distinct "
                                 "fractions in [0, 1] including 0 and at least one value above 0")
    if values.get("minor_sep", 0) >= values.get("major_sep", float("inf")):
        raise ParameterError(f"parameter 'minor_sep' of chapter 'mime': got {values['minor_sep']}; "
                             f"allowed: a value below major_sep = {values['major_sep']} (the minority "
                             "is the group with more class overlap)")
    if len(set(values.get("datasets", []))) != len(values.get("datasets", [])):
        raise ParameterError(f"parameter 'datasets' of chapter 'mime': got {values['datasets']}; "
                             "allowed: distinct dataset names")


def input_files(values: dict) -> dict:
    """Files beyond the datasets whose fingerprint enters a run's key: none for MIME."""
    return {}
