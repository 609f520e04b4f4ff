"""AIM-Fair's table columns (Zhao et al. CVPR 2025, eqs. 9-10): :func:`table_metrics` of one model
(ACC, the four cell accuracies, WST, EO as eq. 9's mean and as the worst case max(ΔTPR, ΔFPR) that
the paper's tables match, STD) and :func:`aggregate` over seeds (the authors' order of operations).
The metrics themselves live in :mod:`fairbook.metrics`.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
from torch import nn

from .. import metrics, train
from ..data.fullscale import ImageTable
from ._util import fail as _fail
from .data import CELLS

__all__ = ["METRICS", "table_metrics", "aggregate"]

#: keys of :func:`table_metrics`; :func:`aggregate` treats every other column except ``seed`` as a setting
METRICS = ("acc", "acc_y0_s0", "acc_y0_s1", "acc_y1_s0", "acc_y1_s1", "wst", "eo", "eo_max", "std")
_CELL_KEYS = METRICS[1:5]


def table_metrics(model: nn.Module, X, y=None, s=None, device="auto",
             batch_size: int = 4096) -> dict[str, float]:
    """AIM-Fair's table columns for one model (threshold 0.5 on a single logit, else argmax):
    ``acc``; the four cell accuracies ``acc_y{y}_s{s}``; ``wst`` (eq. 10, min over the four
    cells); ``eo`` (eq. 9, (ΔTPR + ΔFPR)/2, in [0, 1]: the definition, also the authors' code);
    ``eo_max`` (max(ΔTPR, ΔFPR), :func:`fairbook.metrics.equalized_odds_max`: what the EO values
    printed in the paper's tables match, e.g. Table 5); ``std`` (population std of the four
    cells). Fractions, not percent. ``X`` may be a Dataset yielding ``(x, y, index)``; ``y``
    then defaults to its ``y`` attribute. ``s`` is the binary protected attribute; for an
    ImageTable with a single group it defaults to that group."""
    where = "table_metrics"
    if y is None:
        y = getattr(X, "y", None)
        if y is None:
            raise _fail(where, "y", None, "labels (or X a Dataset with a 'y' attribute)")
    if s is None and isinstance(X, ImageTable) and len(X.groups) == 1:
        s = next(iter(X.groups.values()))
    if s is None:
        raise _fail(where, "s", None, "the binary protected attribute of every sample")
    if not (len(X) == len(y) == len(s)):
        raise _fail(where, "y, s", f"lengths {len(y)}, {len(s)}", f"one per sample of X ({len(X)})")
    logits = train.logits_of(model, X, batch_size=batch_size, device=device)
    pred = train.predict(logits).numpy()
    cells = metrics.cell_accuracies(y, pred, s)
    out = {"acc": metrics.accuracy(y, pred)}
    out.update({f"acc_y{a}_s{b}": float(cells[a, b]) for a, b in CELLS})
    out.update(wst=metrics.worst_group_accuracy(y, pred, s), eo=metrics.equalized_odds_mean(y, pred, s),
               eo_max=metrics.equalized_odds_max(y, pred, s), std=metrics.group_accuracy_std(y, pred, s))
    return out


def aggregate(rows, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean over seeds per setting, in the authors' order of operations.

    ``rows``: records (dicts or a DataFrame) holding the :data:`METRICS` of :func:`table_metrics` and
    the setting columns (default ``by``: every column except the metrics and ``seed``). Per
    setting: ``acc``, ``eo``, ``eo_max`` and the four cell accuracies are averaged over seeds; ``wst`` and
    ``std`` are then recomputed from the seed-averaged cell accuracies
    (:func:`fairbook.metrics.aggregate_cell_accuracies`), not averaged. ``n_seeds`` counts rows.
    """
    where = "aggregate"
    df = pd.DataFrame(rows).reset_index(drop=True)
    if df.empty:
        raise _fail(where, "rows", "no rows", "one record per (setting, seed)")
    missing = [m for m in ("acc", "eo", "eo_max", *_CELL_KEYS) if m not in df]
    if missing:
        raise _fail(where, "rows", f"records without {missing}", "the keys of aimfair.table_metrics")
    if by is None:
        by = [c for c in df.columns if c not in METRICS and c != "seed"]
    else:
        by = list(by)
        unknown = [c for c in by if c not in df]
        if unknown:
            raise _fail(where, "by", unknown, f"columns of rows: {', '.join(map(str, df.columns))}")
    groups = df.groupby(by, sort=False, dropna=False) if by else [((), df)]
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        cells = g[list(_CELL_KEYS)].to_numpy(float).reshape(-1, 2, 2)
        agg = metrics.aggregate_cell_accuracies(cells)
        row = dict(zip(by, key))
        row.update(n_seeds=len(g), acc=float(g["acc"].mean()))
        row.update({c: float(agg["cells"][a, b]) for c, (a, b) in zip(_CELL_KEYS, CELLS)})
        row.update(wst=agg["wst"], eo=float(g["eo"].mean()), eo_max=float(g["eo_max"].mean()),
                   std=agg["std"])
        out.append(row)
    return pd.DataFrame(out)
