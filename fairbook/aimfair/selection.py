"""Choosing a setting on the validation split, for the chapter's experiments and its claims alike.

A setting (e.g. the fine-tuning learning rate) is chosen by the seed-mean of a **validation**
metric, never on the test split, so the test numbers of the chosen setting are not biased by the
choice (:mod:`fairbook.aimfair.claims`).
"""
from __future__ import annotations

import pandas as pd

__all__ = ["LR_TABLE", "chosen"]

#: The table of the learning-rate search (one row per lr and seed): the chosen runs are copied to
#: ``main`` (:func:`fairbook.aimfair.experiment.lr_search`); the claims skip it.
LR_TABLE = "lr search"


def chosen(runs: pd.DataFrame, table: str, method: str, by: str = "lr", metric: str = "val_wst",
           higher: bool = True):
    """The value of the setting column ``by`` (e.g. the fine-tuning learning rate) whose runs of
    (``table``, ``method``) have the best seed-mean validation ``metric``; ties go to the first value
    in the order of the runs. Raises if the method has no runs or no ``by`` column."""
    if by not in runs.columns:
        raise ValueError(f"chosen: runs without the setting column {by!r}")
    g = runs[(runs["table"] == table) & (runs["method"] == method)]
    if g.empty:
        raise ValueError(f"chosen: no runs of ({table!r}, {method!r})")
    means = g.groupby(by, sort=False)[metric].mean()
    return (means.idxmax() if higher else means.idxmin())
