"""The MIME chapter's claims (Chari et al., ECCV 2022) judged on a run (:mod:`fairbook.claims`).

The claims are a table of specifications (:class:`fairbook.claims.Claim`: the paper's words, where it
says them, its own figure, the quantity this run compares and the replicated unit), one short judging
function per family of claims, and :func:`judge`, which concatenates their rows into the chapter's
claims table with Holm-adjusted p-values and verdicts (:func:`fairbook.claims.table`).

A specification whose texts depend on the run (the chosen β*, a dataset's name) holds ``{placeholders}``
that :func:`_fill` fills in; its key is the prefix of the keys it produces (``mime_real`` →
``mime_real_adult``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats

from .. import claims as C
from .curve import heldout_gains, heldout_interior_vs_end, max_gain, signflip_null

__all__ = ["CURVE_SETTINGS", "PAPER_TABLE2", "PUSH", "THEOREMS", "CURVES", "NOGAP_INTERIOR", "MAXGAIN",
           "REAL", "REAL_MAXGAIN", "PROBE", "push_claims", "theorem_claims", "curve_claims", "real_claims",
           "probe_claims", "judge", "real_verdicts"]

#: the MIME-curve settings of the chapter (the ``setting`` column of the curves) and their key tags
CURVE_SETTINGS = {"no gap": "nogap", "small gap": "smallgap", "large gap": "largegap",
                  "placebo": "placebo", "no gap, fixed start": "nogap_fixed",
                  "no gap, start-free learner": "nogap_erm"}
#: the paper's Table 2 per dataset: (dataset id, #MIME trials / total, avg. MIME perf. gain in pp)
PAPER_TABLE2 = {"fairface": ("DS-1", "4/5", 0.72), "utkface": ("DS-3", "5/5", 0.70),
                "adult": ("DS-5", "4/5", 0.98)}

# --- the specifications ----------------------------------------------------------------------------
#: Key Result 1 on the push experiment (:func:`fairbook.mime.theory.push_experiment`)
PUSH = C.Claim(
    "mime_push", "A minority sample pushed onto a stack of K − 1 majority samples improves the "
    "majority's hyperplane more than another majority sample (Key Result 1)",
    "§3, Theorem 1, eq. 10-11; Fig. 2", "E P{h_K^-} < E P{h_K^+} (proved for small Δ)",
    "(P^major{h_K^+} − P^major{h_K^-})/η per trial, one Monte Carlo push of each kind; "
    "> 0: the minority push is better", "trial (one learnt h_{K-1}, one push of each kind)",
    section="mime-push")

_THEOREM_QUANTITY = "(E P^+ − E P^-)/η at h_{K-1} = d* ± Δ, worst side; > 0: the minority push is better"
_PUSH_UNIT = "Monte Carlo push pair (independent majority and minority pushes from h_{K-1} = d* ± Δ)"
_THEOREM_TEXTS = (  # (key, claim, source, paper)
    ("mime_thm1", "No domain gap: with O_major < O_minor a minority push improves the majority more "
     "(Key Result 1)", "§3, Theorem 1, eq. 11",
     "E P{h_K^-} < E P{h_K^+} for small Δ and variances not very large"),
    ("mime_thm2_case1", "Domain gap δ < Δ, h_{K-1} and the minority's ideal hyperplane on different "
     "sides: a minority push improves the majority more (Key Result 2)",
     "§3, Theorem 2, case 1, eq. 13", "E P{h_K^-} < E P{h_K^+} for δ + Δ small"),
    ("mime_thm2_case2", "Domain gap δ < Δ, same side and eq. 12 holds: a minority push improves the "
     "majority more (Key Result 2)", "§3, Theorem 2, case 2, eq. 12-13",
     "E P{h_K^-} < E P{h_K^+} when O_major/O_minor < (1 − δ/Δ) f"),
    ("mime_thm3", "General distributions and priors: where eq. 15 holds a minority push improves the "
     "majority more on either side (Key Result 3)", "§3, Theorem 3, eq. 14-15",
     "E P{h_K^-} < E P{h_K^+} whenever eq. 15 holds"))
#: each theorem's prediction against its Monte Carlo (:func:`fairbook.mime.theory.theorem_checks`)
THEOREMS = {key: C.Claim(key, claim, source, paper, _THEOREM_QUANTITY, _PUSH_UNIT, section="mime-theorems")
            for key, claim, source, paper in _THEOREM_TEXTS}

_HELDOUT_UNIT = "trial (odd-numbered, held out from the choice of β*)"
_PEAK = "majority accuracy peaks at some β > 0 when the domain gap is small (Fig. 5)"
_CURVE_TEXTS = (  # (setting tag, claim, source, paper)
    ("nogap", "With no domain gap, replacing some majority training samples by minority samples raises "
     "majority accuracy", "§3 Key Result 1; Fig. 5", _PEAK),
    ("smallgap", "With a small domain gap, replacing some majority training samples by minority samples "
     "raises majority accuracy", "§3 Key Result 2; Fig. 5; §5 Conclusion", _PEAK),
    ("nogap_erm", "With no domain gap, minority samples raise majority accuracy for a learner whose answer "
     "does not depend on a start point or a step (the empirical-risk minimiser)",
     "§3 Key Result 1; Fig. 5 (a control the paper does not run)", _PEAK),
    ("largegap", "With a large domain gap, minority samples do not help: majority accuracy falls as β "
     "grows", "§4.2; Fig. 6b", "majority accuracy decreases with β (chickens vs humans, "
     "domain gap 1.62 in Table 1)"))
#: the MIME curve per setting tag (:data:`CURVE_SETTINGS`): held-out gain at β* (``{what}``, ``{beta_star}``)
CURVES = {tag: C.Claim(f"mime_curve_{tag}", claim, source, paper,
                       "majority accuracy {what} (pp), β* = {beta_star:g} chosen on the even trials; "
                       "> 0: the paper's direction", _HELDOUT_UNIT, section="mime-curve")
          for tag, claim, source, paper in _CURVE_TEXTS}
#: no gap: an interior peak against the end point β = 1
NOGAP_INTERIOR = C.Claim(
    "mime_curve_nogap_interior", "With no domain gap the majority's accuracy peaks at an interior β: a "
    "training set without majority samples (β = 1) is worse than the best mixture", "§4.2; Fig. 5",
    "majority accuracy lowest with no majority samples, highest at an intermediate β (Fig. 5)",
    "majority accuracy at the interior β* − at β = 1 (pp), β* = {beta_star:g} chosen among 0 < β < 1 on "
    "the even trials; > 0: an interior peak", _HELDOUT_UNIT, section="mime-curve")
_MAXGAIN_QUANTITY = ("max over β > 0 of the mean majority-accuracy gain over β = 0 (pp), all trials, minus "
                     "its mean under the sign-flip null; > 0: more gain than noise and the choice of the best "
                     "β produce")
#: the max-over-β gain of the curve against its sign-flip null; the claim's words are the curve's
MAXGAIN = {tag: dataclasses.replace(CURVES[tag], key=f"mime_maxgain_{tag}", quantity=_MAXGAIN_QUANTITY,
                                    unit="trial (null: trials' gain vectors sign-flipped)")
           for tag in ("nogap", "smallgap")}
#: the real-data β sweep (:func:`fairbook.mime.experiment.beta_sweep`), per dataset ``{name}``
REAL = C.Claim(
    "mime_real", "On {name}, replacing some majority training samples by minority samples raises the "
    "majority's test accuracy", "§4.2; Figs. 5-6a; Table 2", "{paper}",
    "majority test accuracy at β* − at β = 0 (pp, epoch chosen on validation), β* = {beta_star:g} chosen on "
    "the even trials; > 0: minority inclusion helps",
    "trial (its own random split; odd-numbered, held out from the choice of β*)", section="mime-real")
REAL_MAXGAIN = C.Claim(
    "mime_real_maxgain", "On {name}, replacing some majority training samples by minority samples raises "
    "the majority's test accuracy (best β, all trials)", "§4.2; Table 2", "{paper}", _MAXGAIN_QUANTITY,
    "trial (its own random split; null: gains sign-flipped)", section="mime-real")
#: the linear probe on a frozen feature extractor (:func:`fairbook.mime.experiment.linear_probe_sweep`)
PROBE = C.Claim(
    "mime_probe", "On {name}, with a fixed feature extractor and a learnt last layer (the setting of the "
    "theory), minority samples raise the majority's test accuracy", "§3 (Assumptions 1-2) applied to §4.2",
    "the theory certifies the effect for a learnt linear classifier on fixed features",
    "majority test accuracy of the linear probe at β* − at β = 0 (pp), β* = {beta_star:g} chosen on the "
    "even trials; > 0: minority inclusion helps",
    "trial (its own random split and backbone; odd-numbered, held out)", section="mime-real")


def _fill(spec: C.Claim, suffix: str = "", paper_effect: float | None = None, **values) -> C.Claim:
    """``spec`` for one case: its key extended by ``_suffix`` and the ``{placeholders}`` of its claim,
    paper and quantity filled with ``values``."""
    texts = {f: getattr(spec, f).format(**values) for f in ("claim", "paper", "quantity")}
    return dataclasses.replace(spec, key=f"{spec.key}_{suffix}" if suffix else spec.key,
                               paper_effect=paper_effect, **texts)


# --- the judging functions -------------------------------------------------------------------------
def _trials_as_n(row: dict, curve: pd.DataFrame) -> dict:
    """A permutation claim's n is its number of trials (the null draws are in the note)."""
    row["n"] = int(curve["trial"].nunique())
    return row


def _maxgain(claim: C.Claim, curve: pd.DataFrame, flips: int, rng: np.random.Generator) -> dict:
    """The max-over-β gain of ``curve`` against its sign-flip null (:func:`signflip_null`)."""
    return _trials_as_n(C.permutation(claim, max_gain(curve), signflip_null(curve, flips, rng)), curve)


def push_claims(push: pd.DataFrame, eta: float) -> list[dict]:
    """Key Result 1 on the push experiment: per trial (P^+ − P^-)/η, t-test."""
    return [C.difference(PUSH, (push.P_plus - push.P_minus) / eta)]


def _side_claim(claim: C.Claim, row: pd.Series, n: int) -> dict:
    """A theorem's prediction against its Monte Carlo: the worst checked side decides."""
    sides = [(row[f"adv_{t}"], row[f"se_{t}"]) for t in ("lower", "upper") if np.isfinite(row[f"adv_{t}"])]
    adv, se = min(sides)
    z = stats.norm.ppf(0.975)
    pvals = [2 * stats.norm.sf(abs(a / s)) if s > 0 else float(a == 0) for a, s in sides]
    note = f"{len(sides)} side(s) of the ideal hyperplane; worst side shown"
    if not row["theorem predicts MIME"]:
        return C.custom(claim, n=n, estimate=adv, ci=(adv - z * se, adv + z * se), p=float("nan"),
                        mde=(z + stats.norm.ppf(C.POWER)) * se,
                        note="the theorem's assumptions or condition fail here: no prediction to test")
    # both sides must be better (intersection-union test): the largest per-side p when all are > 0
    p = max(pvals) if all(a > 0 for a, _ in sides) else pvals[[a for a, _ in sides].index(adv)]
    return C.custom(claim, n=n, estimate=adv, ci=(adv - z * se, adv + z * se), p=p,
                    mde=(z + stats.norm.ppf(C.POWER)) * se, note=note)


def theorem_claims(theorems: pd.DataFrame, pushes: int) -> list[dict]:
    """Each theorem's prediction against the Monte Carlo push advantage at d* ± Δ (z-test; both sides
    must show it where the theorem covers both), ``pushes`` pushes per kind and side. Where the
    theorem's condition fails there is nothing to test."""
    rows = theorems[theorems.key.isin(list(THEOREMS))]
    return [_side_claim(THEOREMS[row.key], row, pushes) for _, row in rows.iterrows()]


def curve_claims(curves: pd.DataFrame, flips: int, seed: int, first: int = 0) -> list[dict]:
    """The MIME curves per setting (:data:`CURVE_SETTINGS`): held-out gain at β* (the large gap with
    the sign flipped: the paper expects no gain); for no gap also the interior peak against β = 1;
    for no and small gap the max-over-β gain against its sign-flip null. ``first`` (the number of
    claims judged before these) seeds each null's draws, as :func:`judge` has always numbered them."""
    rows = []
    for setting, tag in CURVE_SETTINGS.items():
        df = curves[curves.setting == setting]
        if df.empty or tag not in CURVES:
            continue
        beta_star, gain = heldout_gains(df)
        sign, what = (-1, "at β = 0 − at β*") if tag == "largegap" else (1, "at β* − at β = 0")
        rows.append(C.difference(_fill(CURVES[tag], what=what, beta_star=beta_star), sign * gain.to_numpy()))
        if tag == "nogap":
            beta_in, gain_in = heldout_interior_vs_end(df)
            rows.append(C.difference(_fill(NOGAP_INTERIOR, beta_star=beta_in), gain_in.to_numpy()))
        if tag in MAXGAIN:
            rng = np.random.default_rng([seed, 14, first + len(rows)])
            rows.append(_maxgain(MAXGAIN[tag], df, flips, rng))
    return rows


def _paper_table2(name: str) -> tuple[str, float | None]:
    """The paper's Table 2 figure for dataset ``name`` (:data:`PAPER_TABLE2`) and its effect in pp."""
    ds, count, effect = PAPER_TABLE2.get(name, (None, None, None))
    if not ds:
        return "not among the paper's datasets; its conclusion for small domain gaps", effect
    fig6a = "; Fig. 6a: a gain peaking at β = 0.6" if name == "adult" else ""
    return f"Table 2 ({ds}): {count} trials with a gain, mean best gain {effect} pp{fig6a}", effect


def real_claims(sweeps: pd.DataFrame, flips: int, seed: int, first: int = 0) -> list[dict]:
    """The real-data β sweep per dataset: held-out gain at β* (validation-chosen epochs), unit = trial
    with its own random split; and its max-over-β gain on all trials against the sign-flip null
    (``first`` seeds the null draws as in :func:`curve_claims`)."""
    rows = []
    for name, df in sweeps.groupby("dataset", sort=False):
        beta_star, gain = heldout_gains(df, "majority_acc")
        paper, effect = _paper_table2(name)
        rows.append(C.difference(_fill(REAL, name, effect, name=name, paper=paper, beta_star=beta_star),
                                 gain.to_numpy()))
        rng = np.random.default_rng([seed, 15, first + len(rows)])
        rows.append(_maxgain(_fill(REAL_MAXGAIN, name, effect, name=name, paper=paper), df, flips, rng))
    return rows


def probe_claims(probes: pd.DataFrame) -> list[dict]:
    """The same held-out gain for the linear probe: a fixed feature extractor and a learnt last
    layer, the setting of the theory."""
    rows = []
    for name, df in probes.groupby("dataset", sort=False):
        beta_star, gain = heldout_gains(df, "majority_acc")
        rows.append(C.difference(_fill(PROBE, name, name=name, beta_star=beta_star), gain.to_numpy()))
    return rows


def judge(push: pd.DataFrame | None = None, theorems: pd.DataFrame | None = None,
          curves: pd.DataFrame | None = None, sweeps: pd.DataFrame | None = None, *, eta: float = 1.0,
          pushes: int = 0, flips: int = 2000, seed: int = 0, probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The MIME chapter's family of claims judged on this run (:mod:`fairbook.claims`).

    ``push``: :func:`fairbook.mime.theory.push_experiment`'s trials (step ``eta``) →
    :func:`push_claims` (``mime_push``); ``theorems``: :func:`fairbook.mime.theory.theorem_checks`
    (``pushes`` Monte Carlo pushes per kind and side) → :func:`theorem_claims` (``mime_thm1``,
    ``mime_thm2_case1``, ``mime_thm2_case2``, ``mime_thm3``); ``curves``:
    :func:`fairbook.mime.curve.mime_curve` rows with a ``setting`` column (keys of
    :data:`CURVE_SETTINGS`) → :func:`curve_claims` (``mime_curve_<tag>``,
    ``mime_curve_nogap_interior``, ``mime_maxgain_<tag>``, ``flips`` sign-flip draws); ``sweeps``:
    :func:`fairbook.mime.experiment.beta_sweep` rows with a ``dataset`` column → :func:`real_claims`
    (``mime_real_<dataset>``, ``mime_real_maxgain_<dataset>``); ``probes``:
    :func:`fairbook.mime.experiment.linear_probe_sweep` rows → :func:`probe_claims`
    (``mime_probe_<dataset>``). A missing input leaves its claims out.
    """
    rows = []
    if push is not None:
        rows += push_claims(push, eta)
    if theorems is not None:
        rows += theorem_claims(theorems, pushes)
    if curves is not None:
        rows += curve_claims(curves, flips, seed, first=len(rows))
    if sweeps is not None:
        rows += real_claims(sweeps, flips, seed, first=len(rows))
    if probes is not None:
        rows += probe_claims(probes)
    return C.table(rows, chapter="mime")


def real_verdicts(claims_table: pd.DataFrame) -> str:
    """One sentence per real dataset of the claims table (:func:`judge`), for the prose (via glue)."""
    rows = claims_table.set_index("key")
    parts = []
    for key in claims_table.key[claims_table.key.str.match(r"mime_real_(?!maxgain_)")]:
        r, ds = rows.loc[key], key.removeprefix("mime_real_")
        text = (f"{ds}: {r.verdict}, gain at β* {C.interval_text(r)} pp over {r.n} held-out trials "
                f"(Holm p = {r.p_holm:.2g})")
        best = f"mime_real_maxgain_{ds}"
        if best in rows.index:
            b = rows.loc[best]
            text += (f", best-β gain minus its sign-flip null {b.estimate:+.2f} pp over all {b.n} trials "
                     f"({b.verdict}, Holm p = {b.p_holm:.2g})")
        probe = f"mime_probe_{ds}"
        if probe in rows.index:
            q = rows.loc[probe]
            text += f", linear probe on frozen features {C.interval_text(q)} pp ({q.verdict})"
        parts.append(text)
    return "; ".join(parts) if parts else "no real dataset in this run"
