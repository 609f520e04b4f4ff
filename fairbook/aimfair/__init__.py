"""AIM-Fair (Zhao et al., "AIM-Fair: Advancing Algorithmic Fairness via Selectively Fine-Tuning
Biased Models with Contextual Synthetic Data", CVPR 2025): selective mask generation and selective
fine-tuning (§3.2-3.3, eqs. 1-8), the baselines of Tables 1, 3 and 4 and the evaluation of its tables.

The method, reached from here (``fairbook.aimfair.selective_mask``, ``fairbook.aimfair.selective_finetune``):

* :mod:`~fairbook.aimfair.mask` -- selective mask generation (SMG, §3.2): :func:`dataset_gradients`
  (eqs. 1-3), :func:`selective_mask` -> :class:`SelectiveMask` (eqs. 4-7), :func:`k_for_fraction`;
* :mod:`~fairbook.aimfair.finetuning` -- selective fine-tuning (SFT, §3.3): :func:`selective_finetune`
  (eq. 8) and :func:`finetune`, the one fine-tuning call of every method; its controls
  :func:`random_like` and :func:`bn_recalibration`; the parameter subsets of the fine-tuning
  baselines (Tables 3-4): :func:`blocks`, :func:`full`, :func:`linear_probe`, :func:`random_selection`,
  :func:`update_one_block`, :func:`freeze_one_block`;
* :mod:`~fairbook.aimfair.robust` -- Table 1's robust-optimisation baselines: :func:`cvar_dro`,
  :class:`GroupDRO`, JTT (:func:`error_set`, :func:`upweight`) and :func:`error_set_minority_share`;
* :mod:`~fairbook.aimfair.evaluation` -- the tables' columns: :func:`table_metrics` (ACC, cell
  accuracies, WST, EO, STD) and :func:`aggregate` over seeds;
* the cell ratios :func:`bias_ratios` / :func:`balanced_ratios` and Table 3's data baselines
  :func:`supplement` and :func:`repair` (:mod:`~fairbook.aimfair.data`).

The chapter's own modules are reached as attributes (``from fairbook import aimfair``;
``aimfair.data``, ``aimfair.experiment``, ``aimfair.claims``, ``aimfair.chapter``): the data settings
and pool draws, the experiments (recipes, runs, tables), the claims and the runner's hooks.
Cells are ordered (y, s) = (0, 0), (0, 1), (1, 0), (1, 1) everywhere (:data:`CELLS`).
"""
from __future__ import annotations

from .._lazy import submodules

from .data import CELLS, balanced_ratios, bias_ratios, repair, supplement
from .evaluation import METRICS, aggregate, table_metrics
from .finetuning import (blocks, bn_recalibration, finetune, freeze_one_block, full, linear_probe, random_like,
                         random_selection, selective_finetune, update_one_block)
from .mask import LEVELS, MEASURES, SelectiveMask, dataset_gradients, k_for_fraction, selective_mask
from .robust import GroupDRO, cvar_dro, error_set, error_set_minority_share, per_sample_loss, upweight

__all__ = [
    # selective mask generation (§3.2, eqs. 1-7)
    "LEVELS", "MEASURES", "dataset_gradients", "SelectiveMask", "selective_mask", "k_for_fraction",
    # selective fine-tuning (§3.3, eq. 8), its controls and the fine-tuning baselines (Tables 3-4)
    "selective_finetune", "finetune", "bn_recalibration", "random_like", "blocks", "full", "linear_probe",
    "random_selection", "update_one_block", "freeze_one_block",
    # robust-optimisation baselines (Table 1)
    "per_sample_loss", "cvar_dro", "GroupDRO", "error_set", "upweight", "error_set_minority_share",
    # cell ratios and the data baselines (§4.1, Tables 3 and 6)
    "CELLS", "bias_ratios", "balanced_ratios", "supplement", "repair",
    # the tables' columns (eqs. 9-10)
    "METRICS", "table_metrics", "aggregate",
]

#: the chapter's modules, imported on first use: ``aimfair.experiment``, ``aimfair.claims``, ...
_SUBMODULES = {"chapter", "claims", "data", "evaluation", "experiment", "finetuning", "mask", "robust", "selection"}


__getattr__ = submodules(__name__, _SUBMODULES)
