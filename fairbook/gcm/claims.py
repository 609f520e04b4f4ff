"""The GCM chapter's claims (Li et al., IJCAI 2023) judged on a run: selection on validation, paired
per-seed differences, the permuted-attribute null of Fig. 2 and the bootstrap of Table 1.

Every comparison of two methods is the **paired difference over shared seeds**: a seed index gives
both methods the same data split and the same initial weights (``fairbook.train.seeded``), so the
difference of their test values at one seed is one replicate, and :func:`fairbook.claims.difference`
tests the mean of those differences over the seeds both methods ran with.

Where a method has a grid of strengths (λ, α, T), the setting is **chosen on the validation split,
once for all seeds** ("per mean"): among the settings whose seed-mean validation AP (accuracy for
Table 6) reaches the floor -- the reference method's seed-mean minus ``ap_tolerance`` -- the one
with the best seed-mean validation fairness (:func:`choose`; Vanilla, the reference, is exempt from
the floor). The chosen setting's per-seed *test* values are then paired. A family of methods
(GCM at two temperatures; "the best baseline") is represented by its member with the best
validation score, chosen the same way. The test split is never used to choose.

Table 1 is arithmetic on the training rows: :func:`cell_ratio_bootstrap` resamples the rows (the
replicated unit is the training example) to put an interval on the population ratio Z11/Z01, judged
against the chapter's threshold 2 ("very unequal"). Fig. 2's disparity is judged against a
permuted-attribute null (:func:`disparity_vs_null`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from .. import claims as C

__all__ = ["choose", "best_at_similar_ap", "chosen_settings", "family_best", "seed_values", "paired",
           "cell_ratio_bootstrap", "log_median_disparity", "log_norm_median", "disparity_statistic",
           "disparity_vs_null", "disparity_fairness", "undefined_fraction", "BASELINES", "RATIO_THRESHOLD",
           "CLAIMS", "Fig4Choices", "judge", "judge_dp", "judge_fig2", "judge_fig4", "judge_gcm_vs_best",
           "judge_table1", "judge_table2", "judge_table6", "judge_tables34"]

#: The baselines of Fig. 4 (the family "the best baseline" is chosen from).
BASELINES = ("Vanilla", "OverSampling", "EOR", "Adversarial")
#: Table 1's "very unequal": Z11/Z01 above this (the paper's Adult ratio is 5.7).
RATIO_THRESHOLD = 2.0


# --- selection on validation ------------------------------------------------------------------------------
def choose(f: pd.DataFrame, method: str, floor_col: str, floor: float, score_col: str,
           exempt: Sequence[str] = ("Vanilla",)) -> pd.Series | None:
    """The setting (row of ``f``, one row per setting of ``method``) with the best ``score_col``
    among those whose ``floor_col`` reaches ``floor``; methods in ``exempt`` (the reference,
    Vanilla) without the floor. None when none qualifies."""
    ok = f if method in exempt else f[f[floor_col] >= floor]
    ok = ok[ok[score_col].notna()]
    return ok.loc[ok[score_col].idxmax()] if len(ok) else None


def best_at_similar_ap(summary: pd.DataFrame, dataset: str, methods: Sequence[str],
                       ap_tolerance: float) -> tuple[pd.DataFrame, float]:
    """Fig. 4's "best at similar AP": per method, among the strengths of ``summary`` (seed means,
    columns ``dataset, method, val_ap, val_neg_deo``) whose validation AP reaches OverSampling's minus
    ``ap_tolerance``, the one with the best validation −ΔEO. Returns (one row per method, floor)."""
    sub = summary[summary.dataset == dataset]
    floor = float(sub[sub.method == "OverSampling"].val_ap.iloc[0]) - ap_tolerance
    out = []
    for m in methods:
        row = choose(sub[sub.method == m], m, "val_ap", floor, "val_neg_deo")
        if row is not None:
            out.append({"dataset": dataset, "method": m, **row.drop(["dataset", "method"]).to_dict()})
        else:
            out.append({"dataset": dataset, "method": m, "ap": np.nan, "neg_deo": np.nan})
    return pd.DataFrame(out), floor


def _is_nan(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _rows(runs: pd.DataFrame, method, setting: str, value) -> np.ndarray:
    """Row positions of ``method`` at setting ``value`` (NaN matches NaN: Vanilla's strength)."""
    col = runs[setting].to_numpy(dtype=object)
    same = (np.array([_is_nan(v) for v in col], dtype=bool) if _is_nan(value)
            else np.array([v == value for v in col], dtype=bool))
    return np.flatnonzero((runs["method"].to_numpy(dtype=object) == method) & same)


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def chosen_settings(runs: pd.DataFrame, methods: Sequence[str], *, setting: str, floor_col: str,
                    floor: float, score_col: str, exempt: Sequence[str] = ("Vanilla",)) -> dict:
    """Per method of ``methods``: its chosen setting as ``{setting: value, floor_col: seed mean,
    score_col: seed mean}``, or None -- :func:`choose` applied to the seed means of ``runs`` (one
    row per seed and setting, columns ``method``, ``setting``, ``seed``, ``floor_col``, ``score_col``)."""
    m_col = runs["method"].to_numpy(dtype=object)
    s_col = runs[setting].to_numpy(dtype=object)
    fl, sc = runs[floor_col].to_numpy(dtype=float), runs[score_col].to_numpy(dtype=float)
    out = {}
    for m in methods:
        rows = np.flatnonzero(m_col == m)
        groups: dict = {}
        for r in rows:  # settings in order of first appearance (as pandas' groupby(sort=False))
            groups.setdefault(None if _is_nan(s_col[r]) else s_col[r], []).append(r)
        best = None
        for key, idx in groups.items():
            f, v = _mean(fl[idx]), _mean(sc[idx])
            if (m in exempt or f >= floor) and np.isfinite(v) and (best is None or v > best[score_col]):
                best = {setting: s_col[idx[0]], floor_col: f, score_col: v}
        out[m] = best
    return out


def family_best(chosen: dict, methods: Sequence[str], score_col: str) -> str | None:
    """The member of ``methods`` whose chosen setting has the best ``score_col`` (validation); the
    first one on a tie."""
    scored = {m: chosen[m][score_col] for m in methods if chosen.get(m) is not None
              and np.isfinite(chosen[m][score_col])}
    return max(scored, key=scored.get) if scored else None


def seed_values(runs: pd.DataFrame, method: str | None, setting: str, chosen: dict | None,
                value: str) -> dict:
    """``{seed: value}`` of ``method`` at its chosen setting; empty if none was chosen."""
    if method is None or chosen is None:
        return {}
    idx = _rows(runs, method, setting, chosen[setting])
    return dict(zip(runs["seed"].to_numpy()[idx].tolist(), runs[value].to_numpy(dtype=float)[idx].tolist()))


def paired(a: dict, b: dict) -> np.ndarray:
    """a − b over the seeds both ran with (sorted by seed)."""
    return np.array([a[k] - b[k] for k in sorted(set(a) & set(b))], dtype=float)


# --- Table 1: bootstrap over the training rows ------------------------------------------------------------
def cell_ratio_bootstrap(y, a, *, threshold: float = RATIO_THRESHOLD, n_boot: int = 9999,
                         seed: int = 0, level: float = 0.95) -> dict:
    """Z11/Z01 (GCM Table 1: privileged over unprivileged positives per shuffled batch, i.e. the
    ratio of the two cells' counts) with a bootstrap over the training rows.

    Resampling n rows with replacement draws the four cells' counts from a multinomial with the
    observed shares, which is how it is computed. Returns ``estimate`` = ratio − ``threshold``,
    the percentile interval of it, the two-sided bootstrap p of "ratio = threshold"
    ((1 + resamples on the other side) / (1 + B), doubled), the bootstrap standard error, the
    MDE (2.8 standard errors) and n (rows).
    """
    y, a = np.asarray(y).ravel(), np.asarray(a).ravel()
    if len(y) != len(a) or len(y) == 0:
        raise ValueError(f"y and a must be non-empty and of equal length, got {len(y)} and {len(a)}")
    counts = np.array([np.sum((a == ai) & (y == yi)) for ai, yi in ((0, 0), (0, 1), (1, 0), (1, 1))])
    if counts[1] == 0:
        raise ValueError("no row with a = 0 and y = 1: Z11/Z01 is undefined")
    n = int(counts.sum())
    ratio = counts[3] / counts[1]
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_boot)
    with np.errstate(divide="ignore"):
        boot = draws[:, 3] / draws[:, 1]
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    below = (1 + np.sum(boot <= threshold)) / (1 + n_boot)
    above = (1 + np.sum(boot >= threshold)) / (1 + n_boot)
    se = float(np.std(boot[np.isfinite(boot)], ddof=1))
    return {"ratio": float(ratio), "estimate": float(ratio - threshold),
            "ci": (float(lo - threshold), float(hi - threshold)), "p": float(min(1.0, 2 * min(below, above))),
            "se": se, "mde": float((_st.norm.ppf(0.975) + _st.norm.ppf(0.8)) * se), "n": n}


# --- Fig. 2: the permuted-attribute null --------------------------------------------------------------------
def log_median_disparity(trace: pd.DataFrame, suffix: str = "", k: int = 2) -> np.ndarray:
    """log median_t r̂_θ^{Y=y} (eq. 8) for each y, from the tracker's columns ``r_y{y}{suffix}`` (NaN
    steps left out; NaN where no step is defined)."""
    out = np.full(k, np.nan)
    for yy in range(k):
        med = trace[f"r_y{yy}{suffix}"].median()
        if np.isfinite(med) and med > 0:
            out[yy] = math.log(med)
    return out


def log_norm_median(trace: pd.DataFrame, suffix: str = "", k: int = 2) -> np.ndarray:
    """median_t of the norm-based disparity (:attr:`fairbook.gcm.Disparity.log_norm`, already a log)
    for each y, from the tracker's columns ``lognorm_y{y}{suffix}`` (NaN where none is defined)."""
    out = np.full(k, np.nan)
    for yy in range(k):
        col = f"lognorm_y{yy}{suffix}"
        if col in trace:
            med = trace[col].median()
            out[yy] = med if np.isfinite(med) else np.nan
    return out


def disparity_statistic(logs: np.ndarray) -> np.ndarray:
    """Row i of ``logs`` (shape (1 + K, k): the true attribute, then K permuted ones; entries
    :func:`log_median_disparity`): max over y of |logs[i, y] − the mean of the other rows|.

    How far one attribute's typical disparity lies from that of the others. Every row is treated
    alike (leave-one-out centre), so under the null -- the attribute unrelated to the gradients
    given y, making the true attribute one more random split of the rows -- the true row's
    statistic has the same distribution as a permuted row's. Eq. 8 exceeds 1 by noise alone (a mean
    of ratios), so the distance from 1 would not be a test; the distance from the permuted rows is.
    """
    logs = np.asarray(logs, dtype=float)
    n = logs.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    total = np.nansum(logs, axis=0)
    counts = np.sum(np.isfinite(logs), axis=0)
    out = np.full(n, np.nan)
    for i in range(n):
        ok = np.isfinite(logs[i])
        others = counts - ok
        centre = (total - np.where(ok, logs[i], 0.0)) / np.where(others > 0, others, np.nan)
        dev = np.abs(logs[i] - centre)
        out[i] = np.nanmax(dev) if np.isfinite(dev).any() else np.nan
    return out


def undefined_fraction(trace: pd.DataFrame, k: int = 2) -> float:
    """Share of the r̂_w elements (eq. 6) that were undefined (zero gradient of the a = 1 cell) over
    all recorded steps and both y, for the true attribute."""
    total = float(trace["elements"].sum()) * k
    bad = float(sum(trace[f"undefined_y{yy}"].sum() for yy in range(k)))
    return bad / total if total else math.nan


def disparity_vs_null(traces: pd.DataFrame, k: int = 2) -> pd.DataFrame:
    """Per (dataset, training, seed) trace of :class:`fairbook.gcm.DisparityTracker`: the medians of
    r̂, of the norm-based log disparity and of the code's disparity; for both r̂ (eq. 8, via
    :func:`log_median_disparity`) and the norm-based measure (:func:`log_norm_median`, the headline)
    the null's median (over the permutations), :func:`disparity_statistic` of the true attribute, the
    mean and range of the permuted ones' (NaN without permutations, columns ``*_perm{j}``) and the
    excess ``statistic − null_mean`` (``excess`` for eq. 8, ``lognorm_excess`` for the headline); and
    the fraction of undefined r̂ elements (:func:`undefined_fraction`)."""
    perms = sorted({int(c.rsplit("perm", 1)[1]) for c in traces.columns
                    if c.startswith("r_y") and "_perm" in c})
    rows = []
    for (ds, tr, sd), h in traces.groupby(["dataset", "training", "seed"], sort=False):
        row = {"dataset": ds, "training": tr, "seed": sd}
        row.update({f"median r̂ (Y={yy})": h[f"r_y{yy}"].median() for yy in range(k)})
        row.update({f"median log-norm (Y={yy})": h[f"lognorm_y{yy}"].median() for yy in range(k)
                    if f"lognorm_y{yy}" in h})
        row.update({f"median code (Y={yy})": h[f"code_y{yy}"].median() for yy in range(k) if f"code_y{yy}" in h})
        for prefix, per in (("", log_median_disparity), ("lognorm_", log_norm_median)):
            logs = [per(h, "", k)] + [per(h, f"_perm{j}", k) for j in perms]
            logs = np.array([logs[0]] + [x for x in logs[1:] if np.isfinite(x).any()])
            stats = disparity_statistic(logs)
            null = stats[1:][np.isfinite(stats[1:])]
            if prefix == "":
                row.update({f"null median r̂ (Y={yy})": float(np.exp(np.nanmean(logs[1:, yy])))
                            if len(logs) > 1 and np.isfinite(logs[1:, yy]).any() else math.nan for yy in range(k)})
            null_mean = float(null.mean()) if null.size else math.nan
            if prefix == "":
                row["n_perm"] = int(null.size)
            row.update({f"{prefix}statistic": stats[0], f"{prefix}null_mean": null_mean,
                        f"{prefix}null_min": float(null.min()) if null.size else math.nan,
                        f"{prefix}null_max": float(null.max()) if null.size else math.nan,
                        f"{prefix}excess": stats[0] - null_mean})
        row["undefined_fraction"] = undefined_fraction(h, k)
        rows.append(row)
    return pd.DataFrame(rows)


def disparity_fairness(runs: pd.DataFrame, k: int = 2) -> pd.DataFrame:
    """"Higher disparity, worse fairness", per seed: the Spearman correlation, over the settings
    (method × strength) of one seed, between the final norm-based disparity ``max_y |lognorm_y|``
    (:func:`fairbook.gcm.final_disparity`) and the test ΔEO. One row per seed (``rho``, ``n``)."""
    r = runs.assign(disparity=np.nanmax(np.abs(runs[[f"lognorm_y{yy}" for yy in range(k)]].to_numpy(float)), 1))
    out = []
    for sd, g in r.groupby("seed"):
        g = g[np.isfinite(g.disparity) & np.isfinite(g.delta_eo)]
        rho = _st.spearmanr(g.disparity, g.delta_eo).statistic if len(g) >= 3 else math.nan
        out.append({"seed": sd, "rho": float(rho), "n": len(g)})
    return pd.DataFrame(out)


# --- the claims: specifications ------------------------------------------------------------------------------
# One fairbook.claims.Claim per claim of the paper. Texts that depend on the run's arguments carry
# str.format fields ({ap_tolerance:g}, ...), filled by _spec.
T1_RATIO = C.Claim(
    "gcm_t1_ratio", "Standard training draws the (a, y) cells very unequally on Adult", "Table 1",
    "Z11/Z01 = 57/10 = 5.7",
    f"Z11/Z01 of Adult's training rows minus {RATIO_THRESHOLD:g} (> 0: more unequal than the threshold)",
    "training example (bootstrap over the training rows)", "gcm-table1", paper_effect=57 / 10 - RATIO_THRESHOLD)
FIG2_DISPARITY = C.Claim(
    "gcm_fig2_disparity", "Oversampling leaves a group contribution disparity (r̂ ≠ 1)", "Fig. 2",
    "r̂ ≈ 1.5 after oversampling (CelebA)",
    "distance of the median norm-based disparity log(|Z0|‖ḡ0‖ / |Z1|‖ḡ1‖) (max over y) of the true "
    "attribute from the permuted ones', minus the same for a permuted attribute (mean over permutations "
    "within y); Adult with oversampling (> 0: the sexes' contributions differ more than a random split's)",
    "seed", "gcm-fig2")
DISPARITY_FAIRNESS = C.Claim(
    "gcm_disparity_fairness", "Higher contribution disparity goes with worse fairness", "§3, Fig. 2",
    "disparity and −ΔEO move together during training (Fig. 2)",
    "Spearman ρ, over Adult's Fig. 4 settings of one seed, between the final norm-based disparity "
    "max_y |log-norm| and the test ΔEO (> 0: more disparity, less fair)", "seed", "gcm-fig2")
OS_ADULT = C.Claim(
    "gcm_os_adult", "Oversampling fails to improve fairness on Adult (it is less fair than vanilla)",
    "Fig. 2, Fig. 4", "−ΔEO −0.096 → −0.140 (Fig. 2); vanilla −0.108 (Fig. 4)",
    "test −ΔEO, Vanilla − OverSampling (> 0: oversampling less fair)", "seed", "gcm-fig4",
    paper_effect=0.140 - 0.096)
OS_COMPAS = C.Claim(
    "gcm_os_compas", "Oversampling improves fairness on COMPAS", "Fig. 4", "−ΔEO −0.383 → −0.038",
    "test −ΔEO, OverSampling − Vanilla (> 0: oversampling fairer)", "seed", "gcm-fig4",
    paper_effect=0.383 - 0.038)
_BEST_QUANTITY = ("test −ΔEO, GCM − the best baseline, each at its validation-chosen setting with validation AP ≥ "
                  "OverSampling's − {ap_tolerance:g} (> 0: GCM fairer)")
GCM_BEST_ADULT = C.Claim(
    "gcm_best_adult", "GCM is fairer than the best baseline at similar AP on Adult", "Fig. 4",
    "GCM (T=2) −0.033 vs EOR −0.051", _BEST_QUANTITY, "seed", "gcm-fig4", paper_effect=0.051 - 0.033)
GCM_BEST_COMPAS = C.Claim(
    "gcm_best_compas", "GCM is fairer than the best baseline at similar AP on COMPAS", "Fig. 4",
    "GCM the fairest curve (Fig. 4)", _BEST_QUANTITY, "seed", "gcm-fig4")
GCM_AP_ADULT = C.Claim(
    "gcm_ap_adult", "GCM's fairness comes at an AP similar to OverSampling's on Adult", "§4.2, Table 3",
    "GCM (T=2) at 0.751 (§4.2, 'accuracy'); OverSampling AP 0.762 (Table 3, λ = 0)",
    "test AP, chosen GCM − OverSampling; the same when within ±{margin:g} (the chapter's ap_tolerance)",
    "seed", "gcm-fig4")
GCM_TEMPERATURE = C.Claim(
    "gcm_temperature", "Gradient reweighing (T={t_max:g}) is fairer than plain matching (T={t_min:g}) on Adult",
    "Fig. 4", "T=2 above T=0 (Fig. 4)",
    "test −ΔEO, GCM at the larger T − at the smaller T, each at its validation-chosen λ (> 0: reweighing fairer)",
    "seed", "gcm-fig4")
#: Table 2, per layer l: GCM on bias_l against GCM on weight_l
BIAS_LAYERS = tuple(C.Claim(
    f"gcm_bias_layer{layer}", f"Aligning the biases beats aligning the weights (layer {layer})", "Table 2", paper,
    f"test −ΔEO, GCM on bias_{layer} − on weight_{layer}, each at its validation-chosen λ above the AP floor "
    "(> 0: biases fairer)", "seed", "gcm-table2", paper_effect=effect)
    for layer, paper, effect in ((0, "bias_0 −0.058 vs weight_0 −0.118", 0.118 - 0.058),
                                 (1, "bias_1 −0.070 vs weight_1 −0.079", 0.079 - 0.070)))
_ALIGN_QUANTITY = ("test −ΔEO, chosen GCM − {source}'s method at its validation-best λ > 0{floor_txt} "
                   "(> 0: GCM fairer)")
GCM_VS_IGA = C.Claim(
    "gcm_vs_iga", "IGA improves fairness less than GCM on Adult", "Table 3", "IGA best −0.095 vs GCM −0.033",
    _ALIGN_QUANTITY, "seed", "gcm-table34", paper_effect=0.095 - 0.033)
GCM_VS_DIRECT = C.Claim(
    "gcm_vs_direct", "Direct aligning improves fairness less than GCM at similar AP", "Table 4",
    "direct −0.130 at AP 0.750 vs GCM −0.033 at 0.751", _ALIGN_QUANTITY, "seed", "gcm-table34",
    paper_effect=0.130 - 0.033)
GCM_BEST_COLORED = C.Claim(
    "gcm_best_colored", "GCM is the fairest method on coloured digits ({image_dataset})", "Table 5",
    "GCM (T=2) −0.013 vs EOR −0.016", _BEST_QUANTITY, "seed", "gcm-table5", paper_effect=0.016 - 0.013)
GCM_MULTICLASS = C.Claim(
    "gcm_multiclass", "GCM has the lowest Bias on colour/gray ten-class data", "Table 6",
    "GCM −0.028 vs OverSampling −0.066 (CIFAR-10S)",
    "−Bias on the reporting half of the test images, GCM − the best baseline, both chosen on the "
    "other half (> 0: GCM less biased)", "seed", "gcm-table6", paper_effect=0.066 - 0.028)
GCM_DP_COMPAS = C.Claim(
    "gcm_dp_compas", "GCM with resampling beats the baselines on ΔDP (COMPAS)", "§4.3 (other fairness metrics)",
    "−0.0027 vs EOR −0.015, resampling −0.029",
    "test −ΔDP, GCM + resampling − the best baseline, each at its validation-chosen setting with "
    "validation AP ≥ Resampling's − {ap_tolerance:g} (> 0: GCM fairer)", "seed", "gcm-dp",
    paper_effect=0.015 - 0.0027)
#: every claim the chapter judges, in the order of the table :func:`judge` returns
CLAIMS = (T1_RATIO, FIG2_DISPARITY, DISPARITY_FAIRNESS, OS_ADULT, OS_COMPAS, GCM_BEST_ADULT, GCM_BEST_COMPAS,
          GCM_AP_ADULT, GCM_TEMPERATURE, *BIAS_LAYERS, GCM_VS_IGA, GCM_VS_DIRECT, GCM_BEST_COLORED, GCM_MULTICLASS,
          GCM_DP_COMPAS)


# --- the claims: judging ------------------------------------------------------------------------------------
def _spec(claim: C.Claim, **fields) -> C.Claim:
    """``claim`` with its texts' format fields filled from ``fields`` (texts without fields unchanged)."""
    return replace(claim, **{f: getattr(claim, f).format(**fields) for f in ("claim", "quantity")})


def _neg(runs: pd.DataFrame, cols: dict) -> pd.DataFrame:
    """A copy with negated columns (−ΔEO, −ΔDP: higher is fairer)."""
    runs = runs.copy()
    for new, old in cols.items():
        runs[new] = -runs[old]
    return runs


def _diff(claim: C.Claim, d, empty_note: str) -> dict:
    row = C.difference(claim, d)
    if len(np.asarray(d)) == 0:
        row["note"] = empty_note
    return row


def _prepend_note(row: dict, text: str) -> dict:
    """``text`` in front of the row's note (joined by "; ")."""
    row["note"] = text + ("; " + row["note"] if row["note"] else "")
    return row


def _label(method, chosen, setting) -> str:
    """"GCM (T=2) @ 0.3": a method at its chosen setting, for the notes ("none" when none qualified)."""
    if method is None or chosen is None:
        return "none"
    s = chosen[setting]
    if s is None or (isinstance(s, float) and math.isnan(s)) or s == "":
        return str(method)
    return f"{method} @ {s:g}" if isinstance(s, (int, float, np.number)) else f"{method} @ {s}"


def _versus(runs: pd.DataFrame, chosen: dict, first: str | None, second: str | None, setting: str,
            value: str) -> tuple[np.ndarray, str]:
    """The paired differences ``first − second`` of ``value``, each at its chosen setting, and the note
    naming both ("GCM (T=2) @ 0.3 vs EOR @ 1")."""
    d = paired(seed_values(runs, first, setting, chosen.get(first), value),
               seed_values(runs, second, setting, chosen.get(second), value))
    return d, f"{_label(first, chosen.get(first), setting)} vs {_label(second, chosen.get(second), setting)}"


def judge_table1(adult_y, adult_a, n_boot: int = 9999, seed: int = 0) -> list[dict]:
    """Table 1: Adult's Z11/Z01 against :data:`RATIO_THRESHOLD` (:func:`cell_ratio_bootstrap`)."""
    b = cell_ratio_bootstrap(adult_y, adult_a, n_boot=n_boot, seed=seed)
    return [C.custom(T1_RATIO, n=b["n"], estimate=b["estimate"], ci=b["ci"], p=b["p"], mde=b["mde"],
                     note=f"ratio {b['ratio']:.2f}; percentile interval of {n_boot} bootstrap resamples")]


def judge_fig2(disparity: pd.DataFrame, fig4_runs: pd.DataFrame) -> list[dict]:
    """Fig. 2: the disparity after oversampling against the permuted null (``disparity``:
    :func:`disparity_vs_null`), and its rank correlation with ΔEO over Fig. 4's settings when
    ``fig4_runs`` has the final disparity (:func:`disparity_fairness`)."""
    dis = disparity[(disparity.dataset == "adult") & (disparity.training == "oversampling")].sort_values("seed")
    row = C.difference(FIG2_DISPARITY, dis["lognorm_excess"].to_numpy())
    if len(dis):
        _prepend_note(row, f"{int(dis.n_perm.min())} permutations per step; eq. 8's excess "
                           f"{dis.excess.mean():.3f}; undefined r̂ elements {dis.undefined_fraction.mean():.1%}")
    rows = [row]
    if "lognorm_y0" in fig4_runs:
        per = disparity_fairness(fig4_runs[fig4_runs.dataset == "adult"])
        row = C.difference(DISPARITY_FAIRNESS, per["rho"].to_numpy())
        rows.append(_prepend_note(row, f"{int(per.n.median())} settings per seed"))
    return rows


@dataclass(frozen=True)
class Fig4Choices:
    """Fig. 4's runs per dataset (``by_ds``, −ΔEO columns added), each dataset's AP floor (OverSampling's
    seed-mean validation AP − ap_tolerance) and every method's setting chosen on validation
    (:func:`chosen_settings`); ``gcm_methods`` the GCM family (one member per temperature)."""

    by_ds: dict
    floors: dict
    chosen: dict
    gcm_methods: tuple[str, ...]
    setting: str = "strength"

    @classmethod
    def of(cls, fig4_runs: pd.DataFrame, temperatures: Sequence[float], ap_tolerance: float) -> "Fig4Choices":
        runs = _neg(fig4_runs, {"neg_deo": "delta_eo", "val_neg_deo": "val_delta_eo"})
        by_ds = {ds: runs[runs.dataset == ds].reset_index(drop=True) for ds in runs.dataset.unique()}
        gcm_methods = tuple(f"GCM (T={T:g})" for T in temperatures)
        floors, chosen = {}, {}
        for ds, sub in by_ds.items():
            floors[ds] = float(sub[sub.method == "OverSampling"].val_ap.mean()) - ap_tolerance
            chosen[ds] = chosen_settings(sub, list(BASELINES) + list(gcm_methods), setting=cls.setting,
                                         floor_col="val_ap", floor=floors[ds], score_col="val_neg_deo")
        return cls(by_ds, floors, chosen, gcm_methods)

    def per_seed(self, ds: str, method: str, value: str = "neg_deo") -> dict:
        """``{seed: value}`` of every run of ``method`` on ``ds`` (for the methods without a strength)."""
        r = self.by_ds[ds]
        idx = np.flatnonzero(r.method.to_numpy(dtype=object) == method)
        return dict(zip(r.seed.to_numpy()[idx].tolist(), r[value].to_numpy(dtype=float)[idx].tolist()))

    def gcm_best(self, ds: str) -> str | None:
        """The GCM temperature with the best validation −ΔEO at its chosen λ on ``ds``."""
        return family_best(self.chosen[ds], self.gcm_methods, "val_neg_deo")

    def gcm_seeds(self, ds: str, value: str = "neg_deo") -> dict:
        """``{seed: value}`` of the chosen GCM (:meth:`gcm_best`) at its chosen λ on ``ds``."""
        g = self.gcm_best(ds)
        return seed_values(self.by_ds[ds], g, self.setting, self.chosen[ds].get(g), value)


def judge_gcm_vs_best(f4: Fig4Choices, ds: str, baselines: Sequence[str], claim: C.Claim) -> dict:
    """GCM against the best of ``baselines`` on ``ds``, each at its validation-chosen setting."""
    ch = f4.chosen[ds]
    d, note = _versus(f4.by_ds[ds], ch, f4.gcm_best(ds), family_best(ch, baselines, "val_neg_deo"), f4.setting,
                      "neg_deo")
    return _prepend_note(_diff(claim, d, "no GCM setting or no baseline reached the AP floor"), note)


def judge_fig4(f4: Fig4Choices, temperatures: Sequence[float], ap_tolerance: float, margin: float) -> list[dict]:
    """Fig. 4: oversampling vs vanilla (Adult, COMPAS), GCM vs the best baseline at similar AP, GCM's AP
    (equivalence with OverSampling's within ``margin``) and the larger temperature vs the smaller."""
    rows = [C.difference(OS_ADULT, paired(f4.per_seed("adult", "Vanilla"), f4.per_seed("adult", "OverSampling"))),
            C.difference(OS_COMPAS, paired(f4.per_seed("compas", "OverSampling"), f4.per_seed("compas", "Vanilla")))]
    for ds, claim in (("adult", GCM_BEST_ADULT), ("compas", GCM_BEST_COMPAS)):
        rows.append(judge_gcm_vs_best(f4, ds, BASELINES, _spec(claim, ap_tolerance=ap_tolerance)))
    d = paired(f4.gcm_seeds("adult", "ap"), f4.per_seed("adult", "OverSampling", "ap"))
    row = C.equivalence(_spec(GCM_AP_ADULT, margin=margin), d, margin=margin)
    if len(d) == 0:
        row["note"] = "no GCM setting reached the AP floor"
    rows.append(row)
    if len(f4.gcm_methods) > 1:
        hi, lo = f"GCM (T={max(temperatures):g})", f"GCM (T={min(temperatures):g})"
        d, _ = _versus(f4.by_ds["adult"], f4.chosen["adult"], hi, lo, f4.setting, "neg_deo")
        claim = _spec(GCM_TEMPERATURE, t_max=max(temperatures), t_min=min(temperatures))
        rows.append(_diff(claim, d, "a temperature had no λ above the AP floor"))
    return rows


def judge_table2(layer_runs: pd.DataFrame, floor: float) -> list[dict]:
    """Table 2: GCM on each layer's biases vs on its weights, each at its validation-chosen λ above
    ``floor`` (Fig. 4's Adult AP floor)."""
    lr = _neg(layer_runs.rename(columns={"subset": "method"}), {"neg_deo": "delta_eo", "val_neg_deo": "val_delta_eo"})
    ch = chosen_settings(lr, list(lr.method.unique()), setting="lambda", floor_col="val_ap", floor=floor,
                         score_col="val_neg_deo", exempt=())
    rows = []
    for layer, claim in enumerate(BIAS_LAYERS):
        d, _ = _versus(lr, ch, f"bias_{layer}", f"weight_{layer}", "lambda", "neg_deo")
        rows.append(_diff(claim, d, "a subset had no λ above the AP floor"))
    return rows


def judge_tables34(f4: Fig4Choices, iga_runs: pd.DataFrame, direct_runs: pd.DataFrame) -> list[dict]:
    """Tables 3-4: the chosen GCM (Adult, Fig. 4) vs IGA and vs direct aligning, each at its
    validation-best λ > 0 above Fig. 4's Adult AP floor."""
    g_seed, floor, rows = f4.gcm_seeds("adult"), f4.floors["adult"], []
    for claim, tab in ((GCM_VS_IGA, iga_runs), (GCM_VS_DIRECT, direct_runs)):
        t = _neg(tab[tab.lam > 0].assign(method="m"), {"neg_deo": "delta_eo", "val_neg_deo": "val_delta_eo"})
        c = chosen_settings(t, ["m"], setting="lam", floor_col="val_ap", floor=floor, score_col="val_neg_deo",
                            exempt=())["m"]
        d = paired(g_seed, seed_values(t, "m", "lam", c, "neg_deo"))
        claim = _spec(claim, source=claim.source, floor_txt="" if floor == -math.inf else " above the AP floor")
        row = _diff(claim, d, "no λ > 0 reached the AP floor" if c is None else "no GCM setting reached the AP floor")
        rows.append(_prepend_note(row, f"λ = {c['lam']:g}") if c is not None else row)
    return rows


def judge_table6(multiclass_runs: pd.DataFrame, ap_tolerance: float) -> list[dict]:
    """Table 6: GCM's −Bias vs the best baseline's on the reporting half, settings chosen on the other
    half above OverSampling's accuracy − ``ap_tolerance``."""
    m6 = multiclass_runs
    floor6 = float(m6[m6.method == "OverSampling"]["sel acc"].mean()) - ap_tolerance
    base6 = [m for m in ("Vanilla", "OverSampling", "Adv") if m in set(m6.method)]
    ch6 = chosen_settings(m6, base6 + ["GCM"], setting="setting", floor_col="sel acc", floor=floor6,
                          score_col="sel -Bias")
    d, note = _versus(m6, ch6, "GCM", family_best(ch6, base6, "sel -Bias"), "setting", "rep -Bias")
    return [_prepend_note(_diff(GCM_MULTICLASS, d, "no GCM setting or no baseline reached the accuracy floor"), note)]


def judge_dp(dp_runs: pd.DataFrame, ap_tolerance: float) -> list[dict]:
    """The ΔDP extension (COMPAS): GCM + resampling vs the best baseline on −ΔDP, each at its
    validation-chosen setting above Resampling's AP − ``ap_tolerance``."""
    dp = _neg(dp_runs, {"neg_ddp": "delta_dp", "val_neg_ddp": "val_delta_dp"})
    floor_dp = float(dp[dp.method == "Resampling"].val_ap.mean()) - ap_tolerance
    base_dp = [m for m in ("Vanilla", "OverSampling", "Resampling", "EOR", "Adversarial") if m in set(dp.method)]
    chd = chosen_settings(dp, base_dp + ["GCM + resampling"], setting="strength", floor_col="val_ap",
                          floor=floor_dp, score_col="val_neg_ddp")
    d, note = _versus(dp, chd, "GCM + resampling", family_best(chd, base_dp, "val_neg_ddp"), "strength", "neg_ddp")
    return [_prepend_note(_diff(_spec(GCM_DP_COMPAS, ap_tolerance=ap_tolerance), d, "no setting reached the AP floor"),
                          note)]


def judge(*, adult_y, adult_a, disparity: pd.DataFrame, fig4_runs: pd.DataFrame,
          layer_runs: pd.DataFrame, iga_runs: pd.DataFrame, direct_runs: pd.DataFrame,
          dp_runs: pd.DataFrame, multiclass_runs: pd.DataFrame | None = None,
          image_dataset: str | None = None, temperatures: Sequence[float] = (0.0, 2.0),
          ap_tolerance: float = 0.02, ap_margin: float | None = None, n_boot: int = 9999,
          seed: int = 0) -> pd.DataFrame:
    """The GCM paper's claims (:data:`CLAIMS`) against one run, as :func:`fairbook.claims.table`
    (chapter "gcm").

    Parameters (all per-seed tables; ``seed`` columns pair the methods)
    ----------
    adult_y, adult_a : Adult's training labels and sensitive attribute (Table 1).
    disparity : :func:`disparity_vs_null` of the Fig. 2 traces (dataset, training, seed, excess).
    fig4_runs : dataset, method, strength, seed, ap, delta_eo, val_ap, val_delta_eo (Fig. 4; the
        image dataset's rows are Table 5).
    layer_runs : subset, lambda, seed, delta_eo, val_ap, val_delta_eo (Table 2, Adult).
    iga_runs, direct_runs : lam (NaN for Vanilla), seed, delta_eo, val_ap, val_delta_eo (Tables 3-4).
    dp_runs : method, strength, seed, delta_dp, val_ap, val_delta_dp (COMPAS, ΔDP extension).
    multiclass_runs : method, setting, seed, "sel acc", "sel -Bias" (selection half), "rep -Bias"
        (reporting half) (Table 6).
    image_dataset : the Fig. 4 image dataset whose rows are Table 5 (None: no Table 5 claim).
    temperatures : GCM's T grid (the T claim compares the largest with the smallest).
    ap_tolerance : the chapter's "similar AP": how far below OverSampling's validation AP (Resampling's
        for ΔDP, OverSampling's accuracy for Table 6) a setting may be chosen.
    ap_margin : the equivalence margin of the AP claim (default ``ap_tolerance``).
    n_boot, seed : Table 1's bootstrap.
    """
    margin = ap_tolerance if ap_margin is None else ap_margin
    f4 = Fig4Choices.of(fig4_runs, temperatures, ap_tolerance)
    rows = [*judge_table1(adult_y, adult_a, n_boot, seed), *judge_fig2(disparity, fig4_runs),
            *judge_fig4(f4, temperatures, ap_tolerance, margin), *judge_table2(layer_runs, f4.floors["adult"]),
            *judge_tables34(f4, iga_runs, direct_runs)]
    if image_dataset and image_dataset in f4.chosen:
        claim = _spec(GCM_BEST_COLORED, image_dataset=image_dataset, ap_tolerance=ap_tolerance)
        rows.append(judge_gcm_vs_best(f4, image_dataset, ("OverSampling", "Adversarial", "EOR"), claim))
    if multiclass_runs is not None and len(multiclass_runs):
        rows += judge_table6(multiclass_runs, ap_tolerance)
    rows += judge_dp(dp_runs, ap_tolerance)
    return C.table(rows, chapter="gcm")
