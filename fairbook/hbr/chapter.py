"""The runner's hooks of the HBR chapter (:mod:`fairbook.book.runner` reads them from here).

* :func:`check_parameters` -- conditions between the chapter's parameters, before any kernel starts;
* :func:`input_files` -- files besides the datasets that decide a run's result (an EDM pool).
"""
from __future__ import annotations

from ..errors import ParameterError
from .experiment import resolve_pool
from .resampling import parse_strategy, uses_pool

__all__ = ["check_parameters", "input_files"]


def check_parameters(values: dict) -> None:
    """Conditions between the chapter's parameters, checked before any kernel starts."""
    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'hbr': {msg}; got {values[name]!r}")

    if values["model"] == "resnet18" and values["dataset"] not in ("cifar10", "cifar100"):
        bad("model", "resnet18 is the CIFAR ResNet-18 (3x32x32 inputs): use it with cifar10 or cifar100")
    if any(m > values["epochs"] for m in values["milestones"]):
        bad("milestones", f"learning-rate milestones must lie within the {values['epochs']} epochs")
    for name in ("cs1_strategies", "cs2_strategies"):
        if len(set(values[name])) != len(values[name]):
            bad(name, "strategies must not repeat")
    if any(parse_strategy(s)[1] == "holdout" for s in values["cs2_strategies"]):
        bad("cs2_strategies", "case study 2 has no holdout set (holdout belongs to cs1_strategies)")
    if any(uses_pool(s) for s in values["cs1_strategies"]):
        bad("cs1_strategies", "generated pools belong to case study 2 (the paper: retraining a generator "
                              "per pruned dataset is out of scope)")
    if values.get("holdout_reserve") and values["n_per_class"] == 0:
        bad("holdout_reserve", "D is the whole training split (n_per_class = 0): no real samples are left "
                               "outside it; use 0")
    if values["pool"] == "ddpm" and values["pool_per_class"] == 0 and any(
            uses_pool(s) for s in values["cs2_strategies"]):
        bad("pool_per_class", "a generated pool needs a size: 0 (all) only applies to an EDM file")
    if values["pool"] != "ddpm" and any(uses_pool(s) for s in values["cs2_strategies"]):
        if resolve_pool(values["pool"], values.get("data_root") or None) is None:
            bad("pool", "must be 'ddpm' (generate with fairbook.generative) or an EDM-style .npz (keys image, "
                        "label), given as a path or relative to data_root or $FAIRBOOK_DATA")


def input_files(values: dict) -> dict:
    """Files besides the datasets that decide a run's result: the EDM pool, when one is used."""
    if values["pool"] == "ddpm" or not any(uses_pool(s) for s in values["cs2_strategies"]):
        return {}
    return {"pool": resolve_pool(values["pool"], values.get("data_root") or None)}
