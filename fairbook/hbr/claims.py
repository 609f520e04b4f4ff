"""The HBR paper's claims against a run of the chapter (:func:`judge`).

Every claim is a specification (a :class:`fairbook.claims.Claim` of :data:`CLAIMS`), judged with
:mod:`fairbook.claims` by a short function per section of the chapter; :func:`judge` runs them all.
The replicated unit of the case studies is the **dataset replicate i** (the i-th pruned dataset
D^CLP_i in case study 1, the i-th resampled dataset in case study 2): the models j of one dataset
share it and are not independent, so per-model values are averaged within each dataset and the
test runs over datasets (:func:`fairbook.claims.nested`).

* Improvement claims ("HBR lowers the recall gap Δhe") use the paired change of each (i, j) pair:
  base model minus resampled model with the same seeds (appendix B), d > 0 = a smaller gap.
* Comparisons of two strategies ("holdout reduces Δhe more than random oversampling") use the
  paired difference of their reductions on the same (setting, i, j) -- the base model cancels, so
  d = Δhe(other) − Δhe(better) -- averaged over the settings (pruning rates, α) and the models of
  each dataset; never a comparison of t statistics.
* Claims "at every rate / every α" are intersection-union tests (Berger 1982): one nested test per
  setting; the claim is supported only if every setting's test is, so its p is the largest of them
  (the estimate shown is that weakest setting's). If some setting goes the other way, the
  evidence against the claim is the smallest p of those settings, Bonferroni-adjusted for their
  number.
* "Class-averaged recall is kept" is an equivalence claim within ``kept_margin`` (TOST over datasets).
* "Class bias exists in balanced data" compares the ensemble's recall gap Δm with the gap a
  classifier with **equal** per-class recall would show on this test set by chance: each class's
  recall Binomial(n_c, r̄)/n_c with r̄ the ensemble's class-averaged recall (a multinomial null;
  conservative for the ensemble average, whose per-class recall varies at most that much).
* "Recall and precision are aligned" is the Pearson correlation over classes of the base models'
  mean per-class recall and precision, with a Fisher-z interval and test of ρ = 0 (n = classes).
* "Up to 32 %" (the relative reduction of Δhe) is the ratio of the mean reduction to the base
  models' mean Δhe at the α where it is largest, with a bootstrap interval over datasets; its p is
  that α's nested t-test, Bonferroni-adjusted for the number of α it was chosen from
  (:func:`relative_reduction`). "Larger α, larger reduction" is the per-dataset least-squares slope
  of the reduction on α, t-tested over datasets (:func:`alpha_trend`).
* The controls the paper lacks are compared with HBR like two strategies: paired differences of
  the Δhe reduction on the same (setting, i, j). ``logit-adjust`` is the base models with their
  logits shifted by log(b'/a) — the class-prior change alone; ``reweight`` trains on the unchanged
  data with loss weights b'/a. If HBR does no better than these, its gains are a prior shift.
* Appendix E's mechanism: the oversampled (hard) classes are predicted more often — the change in
  their TP + FP per model, nested over datasets; and whether the changes are boundary shifts inside
  the hard classes — the share of the absolute change of the confusion counts inside the hard
  block minus the share the base models' own errors have there (the null), nested over datasets.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps

from .. import claims as C
from .. import metrics, stats

__all__ = ["judge", "CLAIMS", "SECTIONS", "CLAIM_KEYS", "KEPT_MARGIN", "UNIT", "every_level", "nested_equivalence",
           "bias_null", "correlation", "relative_reduction", "alpha_trend", "glue_context"]

#: Default equivalence margin of "class-averaged recall is kept": ±1 percentage point of recall.
KEPT_MARGIN = 0.01
#: The replicated unit of every case-study claim.
UNIT = "dataset replicate i (models averaged per dataset)"


def nested_equivalence(claim: C.Claim, d, groups, margin: float) -> dict:
    """:func:`fairbook.claims.equivalence` at the unit of the dataset: ``d`` averaged per group first."""
    frame = pd.DataFrame({"d": np.asarray(d, dtype=float), "g": np.asarray(groups)}).dropna()
    means = frame.groupby("g", sort=True)["d"].mean().to_numpy()
    row = C.equivalence(claim, means, margin)
    row["note"] = f"{len(frame)} models in {means.size} datasets, averaged per dataset"
    return row


def every_level(claim: C.Claim, changes: pd.DataFrame, test: Callable[[C.Claim, pd.DataFrame], dict],
                what: str = "setting", whats: str | None = None) -> dict:
    """Intersection-union test of "the effect holds at every level" (every pruning rate, every α).

    ``changes`` has a ``parameter`` column; ``test(claim, rows_of_one_level)`` returns one claims row.
    When every level's estimate is on the paper's side, the claim's p is the largest per-level p (an
    IUT is level α without adjustment). Otherwise the p of the level most against the paper,
    multiplied by the number of such levels (Bonferroni), tests "it fails at some level".
    """
    levels = sorted(changes["parameter"].unique())
    rows = [test(claim, changes[changes["parameter"] == lv]) for lv in levels]
    side = np.array([r["_paper_side"] for r in rows])
    p = np.array([r["p"] if np.isfinite(r["p"]) else 1.0 for r in rows])
    whats = whats or f"{what}s"
    if side.all():
        k = int(np.argmax(p))
        p_claim = float(p[k])
        how = (f"one {what} ({levels[k]:g})" if len(levels) == 1 else
               f"weakest of {len(levels)} {whats} ({levels[k]:g}); p = max over {whats} (intersection-union)")
    else:
        off = np.flatnonzero(~side)
        k = int(off[np.argmin(p[off])])
        p_claim = float(min(1.0, p[k] * off.size))
        how = (f"one {what} ({levels[k]:g}), against the paper" if len(levels) == 1 else
               f"{off.size} of {len(levels)} {whats} against the paper; shown: {levels[k]:g}, "
               f"p Bonferroni over those {off.size}")
    row = dict(rows[k])
    row["p"] = p_claim if all(np.isfinite(r["p"]) for r in rows) else math.nan
    row["note"] = f"{row['note']}; {how}" if row["note"] else how
    return row


def bias_null(test_counts, mean_recall: float, n_draws: int, seed: int) -> np.ndarray:
    """Δm (max − min per-class recall) of a classifier with equal per-class recall ``mean_recall``:
    per class Binomial(n_c, mean_recall) / n_c on a test set with ``test_counts[c]`` samples."""
    n = np.asarray(test_counts, dtype=np.int64)
    if n.ndim != 1 or n.size < 2 or (n < 1).any():
        raise ValueError(f"test_counts must give >= 1 test sample for each of >= 2 classes, got {n}")
    rng = np.random.default_rng(seed)
    r = rng.binomial(n, mean_recall, size=(n_draws, n.size)) / n
    return r.max(1) - r.min(1)


def correlation(claim: C.Claim, x, y, level: float = 0.95) -> dict:
    """Pearson r of paired values (here: classes), Fisher-z interval, t-test of ρ = 0 (two-sided).

    The MDE is the smallest |ρ| the test detects with 80 % power at this n (Fisher-z approximation).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[ok], y[ok], int(ok.sum())
    note = f"{(~ok).sum()} classes undefined" if (~ok).any() else ""
    if n < 4 or np.std(x) == 0 or np.std(y) == 0:
        return C.custom(claim, n=n, estimate=math.nan, ci=(math.nan, math.nan), p=math.nan,
                        kind="correlation", note=(note + "; " if note else "") + "too few classes")
    res = sps.pearsonr(x, y)
    ci = res.confidence_interval(level)
    z = (sps.norm.ppf(1 - C.ALPHA / 2) + sps.norm.ppf(C.POWER)) / math.sqrt(n - 3)
    return C.custom(claim, n=n, estimate=float(res.statistic), ci=(float(ci.low), float(ci.high)),
                    p=float(res.pvalue), mde=float(np.tanh(z)), kind="correlation", note=note)


def relative_reduction(claim: C.Claim, scores: pd.DataFrame, strategy: str, n_boot: int = 2000,
                       seed: int = 0) -> dict:
    """"Δhe falls by up to X %": per level (α), R = mean reduction of recall Δhe / mean base Δhe over
    the datasets (models averaged per dataset); the level with the largest R is shown, with a
    percentile bootstrap interval resampling the datasets (the pair (reduction, base) of a dataset
    together); p is that level's nested t-test of the reduction, Bonferroni-adjusted for the number
    of levels it was picked from."""
    w = _wide(scores)
    changes = _changes(w, strategy, "delta_he", "recall")
    keys, cols = w["recall"]
    best = None
    levels = sorted(scores["parameter"].unique())
    for lv in levels:
        ch = changes[changes["parameter"] == lv]
        on = keys["parameter"] == lv
        base = pd.DataFrame({"i": keys["i"][on], "b": cols[("delta_he", "none")][on]}).groupby("i")["b"].mean()
        d = ch.groupby("i")["d"].mean().reindex(base.index).to_numpy()
        r = float(d.mean() / base.mean())
        if best is None or r > best[0]:
            best = (r, lv, d, base.to_numpy())
    r, lv, d, b = best
    ci = (math.nan, math.nan)
    if d.size >= 2 and np.std(d) > 0:
        pairs = np.stack([d, b], 1)
        boot = stats.bootstrap_ci(np.arange(d.size), stat=lambda idx: pairs[idx.astype(int), 0].mean()
                                  / pairs[idx.astype(int), 1].mean(), n_resamples=n_boot, seed=seed,
                                  method="percentile")
        ci = (float(boot.low), float(boot.high))
    t = C.difference(claim, d)
    p = min(1.0, t["p"] * len(levels)) if np.isfinite(t["p"]) else math.nan
    return C.custom(claim, n=d.size, estimate=r, ci=ci, p=p, kind="relative",
                    note=f"largest of {len(levels)} levels ({lv:g}); base Δhe {b.mean():.4f}, reduction "
                         f"{d.mean():.4f}; p: that level's t over datasets × {len(levels)}")


def alpha_trend(claim: C.Claim, changes: pd.DataFrame) -> dict:
    """"A larger α reduces the gap more": per dataset i, the least-squares slope of the reduction d
    (models averaged per (α, i)) on α; t-test of the slopes over datasets (needs >= 2 values of α)."""
    per = changes.groupby(["i", "parameter"])["d"].mean().unstack("parameter")
    alphas = per.columns.to_numpy(dtype=float)
    if alphas.size < 2:
        return C.custom(claim, n=0, estimate=math.nan, ci=(math.nan, math.nan), p=math.nan,
                        note="needs at least two values of α")
    x = alphas - alphas.mean()
    slopes = (per.to_numpy() - per.to_numpy().mean(1, keepdims=True)) @ x / (x @ x)
    row = C.difference(claim, slopes)
    row["note"] = (row["note"] + "; " if row["note"] else "") + (
        f"slope per unit α over α = {', '.join(f'{a:g}' for a in alphas)}, one per dataset")
    return row


def _wide(scores: pd.DataFrame) -> dict:
    """Per score: the (parameter, i, j) keys and, per (metric, strategy), Δhe / avg aligned on them
    (one pivot for all claims; NaN where a strategy has no row for a key)."""
    w = scores.assign(_row=1.0).set_index(["score", "parameter", "i", "j", "strategy"])[
        ["delta_he", "avg", "_row"]]
    if not w.index.is_unique:
        raise ValueError("scores must have one row per (score, parameter, i, j, strategy)")
    out = {}
    for score, part in w.unstack("strategy").groupby(level="score", sort=False):
        idx = part.index
        keys = {k: idx.get_level_values(k).to_numpy() for k in ("parameter", "i", "j")}
        arr = part.to_numpy(dtype=float)
        out[score] = (keys, {col: arr[:, k] for k, col in enumerate(part.columns)})
    return out


def _changes(wide: dict, strategy: str, metric: str, score: str, against: str = "none") -> pd.DataFrame:
    """:func:`fairbook.hbr.analysis.paired_changes` on the table of :func:`_wide`."""
    keys, cols = wide[score]
    has_a = np.isfinite(cols.get(("_row", strategy), np.full(len(keys["i"]), np.nan)))
    has_b = np.isfinite(cols.get(("_row", against), np.full(len(keys["i"]), np.nan)))
    if not has_a.any() or (has_a != has_b).any():
        raise ValueError(f"{strategy!r} and {against!r} rows must pair one to one on (parameter, i, j)")
    sign = 1.0 if metric == "avg" else -1.0
    d = sign * (cols[(metric, strategy)] - cols[(metric, against)])
    return pd.DataFrame({**{k: v[has_a] for k, v in keys.items()}, "d": d[has_a]})


def _nested(claim, rows):
    return C.nested(claim, rows["d"], rows["i"])


def _has(scores: pd.DataFrame | None, *strategies: str) -> bool:
    return scores is not None and set(strategies) <= set(scores["strategy"])


# --- the claims: one specification each ---------------------------------------------------------------
#: Default MyST labels of the chapter's sections; :func:`judge`'s ``sections`` replaces them by key.
SECTIONS = {"fig1": "hbr-fig1", "cs1": "hbr-cs1", "overall": "hbr-overall", "cs2": "hbr-cs2",
            "fig7": "hbr-fig7", "controls": "hbr-controls", "mechanism": "hbr-mechanism"}
_PRIOR_SHIFT = "the class-prior shift alone (post-hoc logit adjustment)"
_NEW_CONTENT = "§1 (only informative new content helps)"
_UNTESTED = "not tested in the paper (its premise: frequency changes alone do not help)"

BIAS_EXISTS = C.Claim(
    key="hbr_bias_exists", claim="class bias exists in data-balanced datasets",
    source="Fig. 1, §1", paper="CIFAR-10: cat recall 89 % vs 95 % class average",
    quantity="recall gap Δm (max − min class recall) of the baseline ensemble minus that of a "
             "classifier with equal per-class recall on this test set (> 0: bias)",
    unit="draw of the equal-recall (binomial) null over test samples", section=SECTIONS["fig1"])
CS1_HOLDOUT_RECALL = C.Claim(
    key="hbr_cs1_holdout_recall", claim="CS1: HBR with holdout oversampling lowers the recall "
    "gap Δhe at every pruning rate", source="Table D1, §4",
    paper="t = 3.72 … 9.22, all p < 0.05; Δhe ≈ 0.01 lower (CIFAR-10)",
    quantity="recall Δhe, base − resampled on the same (i, j) (> 0: smaller gap)", unit=UNIT,
    section=SECTIONS["cs1"], paper_effect=0.01)
CS1_HOLDOUT_PRECISION = C.Claim(
    key="hbr_cs1_holdout_precision", claim="CS1: meanwhile the precision gap Δhe grows",
    source="Table D1, Fig. 5", paper="t = −0.94 … −2.90 (all < 0)",
    quantity="precision Δhe, resampled − base on the same (i, j), mean over rates "
             "(> 0: larger gap)", unit=UNIT, section=SECTIONS["cs1"])
#: holdout against the other oversamplers of case study 1, by strategy
CS1_HOLDOUT_VS = {other: C.Claim(
    key=f"hbr_cs1_holdout_vs_{other}",
    claim=f"CS1: holdout oversampling reduces Δhe more than {name} oversampling",
    source="Table D1, §4", paper="mean t over rates: holdout 6.2, random 1.0, SMOTE 2.3",
    quantity=f"recall Δhe({other}) − Δhe(holdout) on the same (rate, i, j), mean over "
             f"rates (> 0: holdout closes the gap more)", unit=UNIT, section=SECTIONS["cs1"])
    for other, name in (("random", "random"), ("smote", "SMOTE"))}
CS1_AVG_RECALL_KEPT = C.Claim(  # {kept_margin} is filled in by judge()
    key="hbr_cs1_avg_recall_kept", claim="CS1: class-averaged recall is kept",
    source="Table D5, Fig. 8", paper="t = 0.07 … 1.43 (no significant drop)",
    quantity="class-averaged recall, resampled (holdout) − base, mean over rates; kept if "
             "within ±{kept_margin:g}", unit=UNIT, section=SECTIONS["overall"])
#: holdout against the controls the paper lacks, by control
CS1_HOLDOUT_VS_CONTROL = {other: C.Claim(
    key=f"hbr_cs1_holdout_vs_{other.replace('-', '_')}",
    claim=f"CS1: new samples (holdout) reduce Δhe more than {name}",
    source=_NEW_CONTENT, paper=_UNTESTED,
    quantity=f"recall Δhe({other}) − Δhe(holdout) on the same (rate, i, j), mean over rates "
             f"(> 0: the new samples add to the prior shift)", unit=UNIT, section=SECTIONS["controls"])
    for other, name in (("logit-adjust", _PRIOR_SHIFT), ("reweight", "loss reweighting by b'/a"))}
CS1_PREDICTED_MORE = C.Claim(
    key="hbr_cs1_predicted_more", claim="CS1: HBR makes the hard classes predicted more often "
    "(their TP and FP rise)", source="Appendix E, Figs. E1–E8",
    paper="TP and FP of hard classes up, FN and TN down (CIFAR-10/100)",
    quantity="test predictions of the hard classes (TP + FP), holdout − base on the same (rate, i, j), "
             "mean over rates (> 0: predicted more)", unit=UNIT, section=SECTIONS["mechanism"])
CS1_CLUSTER = C.Claim(
    key="hbr_cs1_cluster", claim="CS1: HBR's changes are boundary shifts among the hard classes",
    source="Appendix E (this book's question)", paper="not measured in the paper",
    quantity="share of the absolute change of off-diagonal confusion counts among the hard classes "
             "minus the base models' share of errors there (> 0: concentrated inside the hard classes)",
    unit=UNIT, section=SECTIONS["mechanism"])
CS2_HEDM_RECALL = C.Claim(
    key="hbr_cs2_hedm_recall", claim="CS2: the hardest generated samples (hEDM) lower the recall "
    "gap Δhe at every α", source="Table D3, §4",
    paper="t = 5.75, 17.71, 12.31; Δhe 0.043 → 0.029 (CIFAR-10)",
    quantity="recall Δhe, base − resampled on the same (i, j) (> 0: smaller gap)", unit=UNIT,
    section=SECTIONS["cs2"], paper_effect=0.014)
CS2_HEDM_RELATIVE = C.Claim(
    key="hbr_cs2_hedm_relative", claim="HBR reduces the recall gap by up to 32 % (CIFAR-10)",
    source="Abstract, §4", paper="up to 32 % (0.043 → 0.029, CIFAR-10), 16 % (CIFAR-100)",
    quantity="relative reduction of recall Δhe by hEDM, (base − resampled) / base, at the α where "
             "it is largest (> 0: smaller gap)", unit=UNIT, section=SECTIONS["cs2"], paper_effect=0.32)
CS2_ALPHA_TREND = C.Claim(
    key="hbr_cs2_alpha_trend", claim="CS2: a larger α reduces the recall gap more (hEDM)",
    source="§3.1.1, Fig. 6", paper="α = 1, 3, 5 on CIFAR-10 for its weaker hardness imbalance",
    quantity="slope of the Δhe reduction (base − resampled) on α, per dataset (> 0: grows with α)",
    unit=UNIT, section=SECTIONS["cs2"])
#: hEDM against the other oversamplers of case study 2, by strategy
CS2_HEDM_VS = {other: C.Claim(
    key=f"hbr_cs2_hedm_vs_{other.lower()}",
    claim=f"CS2: hEDM reduces Δhe more than {name} oversampling",
    source="Table D3, §4", paper=paper,
    quantity=f"recall Δhe({other}) − Δhe(hEDM) on the same (α, i, j), mean over α "
             f"(> 0: hEDM closes the gap more)", unit=UNIT, section=SECTIONS["cs2"])
    for other, name, paper in (
        ("rEDM", "rEDM", "α = 1: t 5.75 (hEDM) vs 1.96 (rEDM); α = 3: 17.71 vs 3.91"),
        ("random", "random", "random t = −0.15, 1.83, 2.82 vs hEDM 5.75, 17.71, 12.31"),
        ("smote", "SMOTE", "SMOTE t = 1.61, 1.15, 1.81 vs hEDM 5.75, 17.71, 12.31"))}
CS2_HEDM_VS_LOGIT_ADJUST = C.Claim(
    key="hbr_cs2_hedm_vs_logit_adjust",
    claim=f"CS2: hEDM reduces Δhe more than {_PRIOR_SHIFT}",
    source=_NEW_CONTENT, paper=_UNTESTED,
    quantity="recall Δhe(logit-adjust) − Δhe(hEDM) on the same (α, i, j), mean over α "
             "(> 0: the generated samples add to the prior shift)", unit=UNIT, section=SECTIONS["controls"])
CS2_AVG_RECALL_KEPT = C.Claim(  # {kept_margin} is filled in by judge()
    key="hbr_cs2_avg_recall_kept", claim="CS2: the gap shrinks without a loss of average recall",
    source="§1, Table D6", paper="overall accuracy kept, in most cases slightly higher",
    quantity="class-averaged recall, hEDM − base, mean over α; kept if within ±{kept_margin:g}",
    unit=UNIT, section=SECTIONS["overall"])
ALIGN = C.Claim(
    key="hbr_align", claim="per-class recall and precision are aligned",
    source="Fig. 7, §4", paper="Pearson 0.94 (CIFAR-10), 0.90 (CIFAR-100)",
    quantity="Pearson r over classes of the base models' mean per-class recall and precision "
             "(> 0: aligned)", unit="class", section=SECTIONS["fig7"], paper_effect=0.94)

#: Every claim :func:`judge` can return, in its order (a run without some strategy leaves its claims out).
CLAIMS = (BIAS_EXISTS, CS1_HOLDOUT_RECALL, CS1_HOLDOUT_PRECISION, *CS1_HOLDOUT_VS.values(), CS1_AVG_RECALL_KEPT,
          *CS1_HOLDOUT_VS_CONTROL.values(), CS1_PREDICTED_MORE, CS1_CLUSTER, CS2_HEDM_RECALL, CS2_HEDM_RELATIVE,
          CS2_ALPHA_TREND, *CS2_HEDM_VS.values(), CS2_HEDM_VS_LOGIT_ADJUST, CS2_AVG_RECALL_KEPT, ALIGN)
CLAIM_KEYS = tuple(c.key for c in CLAIMS)


# --- judging, one function per section of the chapter -------------------------------------------------
def _fig1(recall, test_counts, n_null: int, seed: int) -> list[dict]:
    """Fig. 1: the baseline ensemble's recall gap against the equal-recall null (:func:`bias_null`)."""
    recall = np.atleast_2d(np.asarray(recall, dtype=float))
    r_ens = recall.mean(0)
    observed = metrics.delta_max(r_ens)
    null = bias_null(test_counts, float(r_ens.mean()), n_null, seed)
    return [C.permutation(BIAS_EXISTS, observed, null)]


def _case_study_1(scores: pd.DataFrame | None, kept_margin: float) -> list[dict]:
    """Case study 1 (Table D1, D5): the holdout strategy against the base models and the other oversamplers."""
    if not _has(scores, "holdout"):
        return []
    w = _wide(scores)
    rows = [every_level(CS1_HOLDOUT_RECALL, _changes(w, "holdout", "delta_he", "recall"), _nested, "rate")]
    ch = _changes(w, "holdout", "delta_he", "precision")
    rows.append(C.nested(CS1_HOLDOUT_PRECISION, -ch["d"], ch["i"]))
    for other, claim in CS1_HOLDOUT_VS.items():
        if _has(scores, other):
            ch = _changes(w, "holdout", "delta_he", "recall", against=other)
            rows.append(C.nested(claim, ch["d"], ch["i"]))
    ch = _changes(w, "holdout", "avg", "recall")
    rows.append(nested_equivalence(_margin(CS1_AVG_RECALL_KEPT, kept_margin), ch["d"], ch["i"], kept_margin))
    return rows


def _case_study_1_controls(scores: pd.DataFrame | None) -> list[dict]:
    """Controls of case study 1: the holdout's new samples against a pure class-prior shift."""
    rows = []
    w = None if scores is None else _wide(scores)
    for other, claim in CS1_HOLDOUT_VS_CONTROL.items():
        if _has(scores, "holdout", other):
            ch = _changes(w, "holdout", "delta_he", "recall", against=other)
            rows.append(C.nested(claim, ch["d"], ch["i"]))
    return rows


def _mechanism(predictions: pd.DataFrame | None, cluster: pd.DataFrame | None, hard) -> list[dict]:
    """Appendix E: the hard classes predicted more often; the changes concentrated among them."""
    rows = []
    if predictions is not None and hard is not None:
        pc = predictions[predictions["class"].isin(list(hard)) & predictions["count"].isin(["TP", "FP"])]
        per = pc.groupby(["parameter", "i", "j"])["change"].sum().reset_index()
        rows.append(C.nested(CS1_PREDICTED_MORE, per["change"], per["i"]))
    if cluster is not None:
        cl = cluster.dropna(subset=["share", "null"])
        rows.append(C.nested(CS1_CLUSTER, cl["share"] - cl["null"], cl["i"]))
    return rows


def _case_study_2(scores: pd.DataFrame | None, kept_margin: float, seed: int, candidates: str) -> list[dict]:
    """Case study 2 (Table D3, D6): hEDM against the base models, the other oversamplers and the
    prior shift; ``candidates`` (what the generated candidates are) is added to every note."""
    if not _has(scores, "hEDM"):
        return []
    w = _wide(scores)
    ch = _changes(w, "hEDM", "delta_he", "recall")
    rows = [every_level(CS2_HEDM_RECALL, ch, _nested, "α", "values of α"),
            relative_reduction(CS2_HEDM_RELATIVE, scores[scores["strategy"].isin(["none", "hEDM"])], "hEDM",
                               seed=seed)]
    if scores["parameter"].nunique() >= 2:
        rows.append(alpha_trend(CS2_ALPHA_TREND, ch))
    for other, claim in CS2_HEDM_VS.items():
        if _has(scores, other):
            ch = _changes(w, "hEDM", "delta_he", "recall", against=other)
            rows.append(C.nested(claim, ch["d"], ch["i"]))
    if _has(scores, "logit-adjust"):
        ch = _changes(w, "hEDM", "delta_he", "recall", against="logit-adjust")
        rows.append(C.nested(CS2_HEDM_VS_LOGIT_ADJUST, ch["d"], ch["i"]))
    ch = _changes(w, "hEDM", "avg", "recall")
    rows.append(nested_equivalence(_margin(CS2_AVG_RECALL_KEPT, kept_margin), ch["d"], ch["i"], kept_margin))
    for row in rows if candidates else []:
        row["note"] = f"{row['note']}; {candidates}" if row["note"] else candidates
    return rows


def _fig7(scores: pd.DataFrame | None) -> list[dict]:
    """Fig. 7: per-class recall and precision of case study 2's base models, correlated over classes."""
    if scores is None:
        return []
    base = scores[scores["strategy"] == "none"]
    base = base[base["parameter"] == base["parameter"].iloc[0]]  # the base models, listed once
    cls = sorted((c for c in base.columns if c[:1] == "c" and c[1:].isdigit()), key=lambda c: int(c[1:]))
    r = base[base.score == "recall"][cls].mean().to_numpy()
    with np.errstate(all="ignore"):
        p = base[base.score == "precision"][cls].mean(skipna=True).to_numpy()
    return [correlation(ALIGN, r, p)]


def _margin(claim: C.Claim, kept_margin: float) -> C.Claim:
    """An equivalence claim with its margin written into the quantity."""
    return replace(claim, quantity=claim.quantity.format(kept_margin=kept_margin))


def judge(cs1_scores: pd.DataFrame | None, cs2_scores: pd.DataFrame | None, recall, test_counts, *,
          kept_margin: float = KEPT_MARGIN, n_null: int = 2000, seed: int = 0,
          sections: dict | None = None, cs1_predictions: pd.DataFrame | None = None,
          cs1_cluster: pd.DataFrame | None = None, hard=None, cs2_candidates: str = "") -> pd.DataFrame:
    """The HBR paper's claims (:data:`CLAIMS`) against this run, judged with :mod:`fairbook.claims`
    (Holm over them).

    Parameters
    ----------
    cs1_scores, cs2_scores : DataFrame or None
        The ``scores`` of :func:`fairbook.hbr.experiment.case_study_1` /
        :func:`~fairbook.hbr.experiment.case_study_2` (columns ``parameter, strategy, score, i, j``,
        the Δ metrics, ``avg`` and ``c0 …`` per class). Claims whose strategies the run does not have
        are left out.
    recall : array, shape (n_models, C)
        Per-class test recall of each model of the baseline (AUM) ensemble (Fig. 1).
    test_counts : array, shape (C,)
        Test samples per class (for the equal-recall null of "class bias exists").
    kept_margin : float
        Equivalence margin (recall, ±) of "class-averaged recall is kept".
    n_null, seed : int
        Draws and seed of the equal-recall null.
    sections : dict, optional
        MyST labels of the sections by the keys of :data:`SECTIONS`: ``fig1``, ``cs1``, ``overall``,
        ``cs2``, ``fig7``, ``controls``, ``mechanism``.
    cs1_predictions, hard : DataFrame, sequence of int, optional
        :func:`fairbook.hbr.analysis.prediction_changes` of case study 1's holdout strategy and the
        hard classes: the claim "hard classes are predicted more often" (appendix E).
    cs1_cluster : DataFrame, optional
        :func:`fairbook.hbr.analysis.cluster_share` of the holdout strategy: "boundary shifts inside
        the hard classes", against the base models' own share of errors there.
    cs2_candidates : str
        What the generated candidates are (e.g. the share recognised as their class), added to the
        notes of the claims that use the generated pool.

    Returns
    -------
    DataFrame with the columns of :data:`fairbook.claims.COLUMNS` (``chapter = "hbr"``).
    """
    rows = [*_fig1(recall, test_counts, n_null, seed), *_case_study_1(cs1_scores, kept_margin),
            *_case_study_1_controls(cs1_scores), *_mechanism(cs1_predictions, cs1_cluster, hard),
            *_case_study_2(cs2_scores, kept_margin, seed, cs2_candidates), *_fig7(cs2_scores)]
    label = {SECTIONS[k]: v for k, v in (sections or {}).items() if k in SECTIONS}
    for row in rows:
        row["section"] = label.get(row["section"], row["section"])
    return C.table(rows, chapter="hbr")


def glue_context(claims_table: pd.DataFrame, **values) -> None:
    """Glue what the chapter's prose cites beside :func:`fairbook.claims.glue`: ``hbr_<name>`` for each
    keyword value (design sizes, margins), and "not run" for every claim of :data:`CLAIM_KEYS` the
    run left out (its strategies were not in the profile), so that the prose's references resolve."""
    from myst_nb import glue  # myst_nb: only inside a notebook kernel

    for name, value in values.items():
        glue(f"hbr_{name}", C.Text(f"{value:g}" if isinstance(value, float) else str(value)), display=False)
    for key in CLAIM_KEYS:
        if key not in set(claims_table["key"]):
            for suffix in ("verdict", "estimate", "p", "n"):
                glue(f"{key}_{suffix}", C.Text("not run"), display=False)
