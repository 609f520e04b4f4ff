"""The paired design of HBR's experiments (appendices B-C): seeds of every (i, j) and the oriented t-test.

* :func:`model_seed`, :func:`prune_seed`, :func:`resample_seed`, :func:`seed_table` -- HBR appendix B;
* :func:`improvement_ttest` -- HBR appendix C: :func:`fairbook.stats.paired_ttest` over the
  4 × 4 = 16 model pairs, oriented so that t > 0 means resampling improved the metric.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..stats import TTestResult, paired_ttest

__all__ = ["model_seed", "prune_seed", "resample_seed", "seed_table", "improvement_ttest"]

_J_LIMIT = 420_000 // 42  # j < 10000 keeps 42·j below the 420000 stride: all seeds distinct


def _index(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return int(v)


def model_seed(i: int, j: int) -> int:
    """Model-initialisation seed of HBR appendix B: ``seed_model(i, j) = 42 + 420000·i + 42·j``.

    Parameters
    ----------
    i : int
        Index of the **dataset replicate**: the i-th independently pruned dataset D^CLP (case study 1)
        or the i-th independently resampled dataset (case study 2). The paper uses i ∈ {0, 1, 2, 3}.
    j : int
        Index of the **model within that replicate** (independent initialisations trained on the same
        dataset), j ∈ {0, 1, 2, 3} in the paper. Must be < 10000 so that distinct (i, j) give distinct
        seeds.

    The same (i, j) is used for the base and the resampled model, which is what makes them a pair
    for :func:`improvement_ttest`.
    """
    i, j = _index(i, "i"), _index(j, "j")
    if j >= _J_LIMIT:
        raise ValueError(f"j must be < {_J_LIMIT} for the seeds to be distinct, got {j}")
    return 42 + 420_000 * i + 42 * j


def prune_seed(i: int) -> int:
    """Pruning seed of HBR appendix B: ``seed_prune(i) = 42·i``, with i the index of the pruned
    dataset D^CLP (case study 1, i ∈ {0, 1, 2, 3}); all j models of replicate i share it."""
    return 42 * _index(i, "i")


def resample_seed(i: int) -> int:
    """Resampling seed of the i-th resampled dataset (case study 2): ``42·i``.

    The paper only says each resampled dataset is "controlled by its own resampling seed"
    (appendix B); ``42·i`` is what its code does (``set_reproducibility(42 * dataset_idx)`` before
    resampling dataset ``dataset_idx``), i.e. the same formula as :func:`prune_seed`.
    """
    return 42 * _index(i, "i")


def seed_table(n_datasets: int = 4, n_models: int = 4) -> pd.DataFrame:
    """All (i, j) of HBR's design with their seeds.

    Columns ``i`` (dataset replicate), ``j`` (model within replicate), ``model_seed``, ``prune_seed``
    and ``resample_seed``; ``n_datasets × n_models`` rows (4 × 4 = 16 pairs in the paper), ordered by
    i then j -- the pairing order for :func:`improvement_ttest`.
    """
    n_datasets, n_models = _index(n_datasets, "n_datasets"), _index(n_models, "n_models")
    rows = [{"i": i, "j": j, "model_seed": model_seed(i, j), "prune_seed": prune_seed(i),
             "resample_seed": resample_seed(i)}
            for i in range(n_datasets) for j in range(n_models)]
    return pd.DataFrame(rows, columns=["i", "j", "model_seed", "prune_seed", "resample_seed"])


def improvement_ttest(base: Any, resampled: Any, lower_is_better: bool = True,
                      alternative: str = "greater") -> TTestResult:
    """HBR's paired t-test (appendix C), oriented so that **t > 0 means resampling helped**.

    Parameters
    ----------
    base : array-like, shape (n,)
        The metric of the n models trained on the base dataset (X_i; D^CLP in case study 1, the full
        dataset in case study 2), in seed order (:func:`seed_table`).
    resampled : array-like, shape (n,)
        The same metric for the paired models trained on the resampled dataset (Y_i).
    lower_is_better : bool
        True for the class-bias metrics Δm, Δq, Δhe, Δσ, ΔMAD (the test is on ``base − resampled``);
        False for the class-averaged recall/precision ("Δ_avg" rows; test on ``resampled − base``).
    alternative : str
        Default ``"greater"``: H_A "resampling improves fairness".

    Notes
    -----
    Appendix C writes ``D_i = Y_i − X_i`` with H_A: μ_D > 0 "i.e., resampling improves fairness", and
    says negative t "indicate that applying HBR worsened fairness". For lower-is-better Δ metrics
    these two statements agree only if D is the *reduction* X_i − Y_i, which is what the paper's code
    computes (``ttest_rel(baseline, resampled)`` for the Δ metrics and the reverse for the averages).
    The code calls ``ttest_rel`` with its two-sided default, although text and code comment describe
    the one-sided test; ``alternative="two-sided"`` reproduces the code's p-values (the t statistic
    is the same either way).
    """
    if lower_is_better:
        return paired_ttest(base, resampled, alternative)
    return paired_ttest(resampled, base, alternative)
