"""MIME (Chari et al., ECCV 2022): minority inclusion for majority group enhancement.

The method's public API, reached as ``fairbook.mime.Group``, ``fairbook.mime.theorem1``, ``fairbook.mime.mime_curve``, ...:

* :mod:`~fairbook.mime.theory` -- Section 3: groups (eq. 2, 7), the ideal threshold (eq. 4), overlap
  (eq. 8), domain gap (Definition 5), one push (eq. 10-11), Theorems 1-3 (eq. 11-15), and the same
  quantities on samples of a learnt projection (§4.1, Table 1);
* :mod:`~fairbook.mime.curve` -- the MIME curve (§4.2, Figs. 5-6b), the Table 2 statistics and the
  existence map.

Both are numpy/scipy/pandas only, so ``import fairbook.mime`` stays light. The chapter's submodules load
on first use: :mod:`~fairbook.mime.experiment` (Section 4 on real data: recipes, β sweeps, linear
probes; torch), :mod:`~fairbook.mime.claims` (the paper's claims judged on a run) and
:mod:`~fairbook.mime.chapter` (the runner's hooks).
"""
from __future__ import annotations

from .._lazy import submodules

from . import curve, theory
from .curve import *  # noqa: F403 - the public API is the union of the two modules' __all__
from .theory import *  # noqa: F403

__all__ = [*theory.__all__, *curve.__all__]

#: submodules loaded on first access (``mime.experiment`` imports torch)
_LAZY = ("experiment", "claims", "chapter")


__getattr__ = submodules(__name__, _LAZY)
