"""The GCM chapter's hooks for the book's runner (:mod:`fairbook.book.runner`): conditions between
parameters (:func:`check_parameters`) and the chapter's input files (:func:`input_files`: none)."""
from __future__ import annotations

import collections

from ..errors import ParameterError

__all__ = ["check_parameters", "input_files"]


# --- the chapter's parameter checks ----------------------------------------------------------------------
def check_parameters(values: dict) -> None:
    """Conditions between the GCM chapter's parameters, checked before any kernel starts
    (:mod:`fairbook.book.runner`)."""

    def bad(name, msg):
        raise ParameterError(f"parameter '{name}' of chapter 'gcm': {msg}; got {values[name]!r}")

    for name in ("batch_size", "image_batch_size"):
        if name in values and values[name] % 4:
            bad(name, "must be a multiple of 4 (group-balanced batches hold a quarter per (a, y) cell)")
    if values.get("multiclass_dataset", "none") != "none" and values.get("multiclass_batch_size", 20) % 20:
        bad("multiclass_batch_size", "must be a multiple of 20 (one share per (colour, class) cell of the "
            "ten-class Table 6)")
    if values.get("image_model") == "alexnet" and values.get("image_size", 64) < 63:
        bad("image_size", "must be at least 63 for image_model='alexnet' (its pooling needs 63x63 inputs)")
    if values.get("multiclass_dataset", "none") != "none" and not 0 < values.get("skew", 0.95) < 1:
        bad("skew", "must lie strictly between 0 and 1: at 0 or 1 some (colour, class) cells are empty and "
            "group-balanced batches cannot be drawn")
    if values.get("image_dataset") == "celeba" and values.get("image_model", "mlp") == "mlp":
        bad("image_model", "must be alexnet or resnet18 for image_dataset='celeba' (the MLP is for the "
            "28x28 digits)")
    for name in ("temperatures", "gcm_lams", "eor_lams", "adv_alphas", "layer_lams", "iga_lams",
                 "direct_lams", "image_gcm_lams", "image_eor_lams", "image_adv_alphas"):
        if name in values and len(values[name]) == 0:
            bad(name, "needs at least one value")
    if "image_seeds" in values and "n_seeds" in values and values["image_seeds"] > values["n_seeds"]:
        bad("image_seeds", f"cannot exceed n_seeds = {values['n_seeds']} (Table 5 uses the first seeds)")
    grids = {n: len(values[n]) for n in ("gcm_lams", "eor_lams", "adv_alphas") if n in values}
    grids.update({n: sum(v > 0 for v in values[n]) for n in ("iga_lams", "direct_lams") if n in values})
    if len(set(grids.values())) > 1:
        common = collections.Counter(grids.values()).most_common(1)[0][0]
        name = next(n for n in grids if grids[n] != common)
        bad(name, "every method searches the same number of settings (GCM per temperature, EOR, "
                  "adversarial, IGA and direct aligning with λ > 0), so that no method wins by a larger "
                  f"search; the grids have {grids}")
    for name in ("image_eor_lams", "image_adv_alphas"):
        if name in values and "image_gcm_lams" in values and len(values[name]) != len(values["image_gcm_lams"]):
            bad(name, f"must have as many values as image_gcm_lams ({len(values['image_gcm_lams'])}): equal "
                      "search budgets on the images")


def input_files(values: dict) -> dict:
    """Files the chapter reads beyond its notebook, the package and the datasets: none."""
    return {}
