"""fairbook.hbr claims and Table D analogs on synthetic result tables whose truth is known.

The synthetic case studies have HBR's nested design: per setting (rate / α), dataset replicates i with a
random effect shared by their models j, base and resampled models paired on (i, j).
"""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fairbook import claims as C
from fairbook import hbr, stats

N_CLASSES = 6


@pytest.fixture
def fast_mde(monkeypatch):
    """The MDE only writes the 'underpowered' note, never a verdict: a normal approximation keeps the
    simulations fast (``claims.mde_t`` integrates the noncentral t numerically, seconds per call)."""
    def approx(sd, n, alpha=C.ALPHA, power=C.POWER):
        if n < 2 or not np.isfinite(sd):
            return math.inf
        return float((sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * sd / math.sqrt(n))
    monkeypatch.setattr(C, "mde_t", approx)


def study_scores(rng, strategies, effects, levels=(1.0, 2.0), n_i=5, n_j=3, sd_data=0.01, sd_model=0.01,
                 avg_effect=0.0, prec_effect=None, align=0.0, grow=False):
    """Scores of a synthetic case study.

    ``effects[s]``: how much strategy s lowers recall Δhe (> 0: smaller gap); precision Δhe rises by
    ``prec_effect[s]`` (default the same amount); the class-averaged recall changes by ``avg_effect``.
    Each resampled dataset (setting, strategy, i) has a random effect N(0, sd_data) shared by its
    models; every model has its own N(0, sd_model). Per-class scores of the base models: precision
    = ``align`` × recall + independent noise. ``grow``: the effects scale with the level (lv / levels[0]).
    """
    prec_effect = effects if prec_effect is None else prec_effect
    rows = []
    profile = rng.uniform(0.4, 0.95, N_CLASSES)  # the classes' recall, shared by every model
    for lv in levels:
        for s in ("none",) + tuple(strategies):
            eff = 0.0 if s == "none" else effects[s] * (lv / levels[0] if grow else 1.0)
            peff = 0.0 if s == "none" else prec_effect[s]
            aeff = 0.0 if s == "none" else avg_effect
            u = rng.normal(0, sd_data, size=(n_i, 3))
            for i in range(n_i):
                for j in range(n_j):
                    e = rng.normal(0, sd_model, size=3)
                    rec = profile + rng.normal(0, 0.02, N_CLASSES)
                    prec = align * rec + rng.normal(0, 0.1, N_CLASSES)
                    for score, he, cl in (("recall", 0.2 - eff + u[i, 0] + e[0], rec),
                                          ("precision", 0.2 + peff + u[i, 1] + e[1], prec)):
                        row = {"i": i, "j": j, "score": score, "strategy": s, "parameter": lv,
                               "delta_he": he, "avg": 0.8 + aeff + u[i, 2] + e[2],
                               **{m: rng.uniform() for m in ("delta_m", "delta_q", "delta_sigma", "delta_mad")},
                               **{f"c{c}": v for c, v in enumerate(cl)}}
                        rows.append(row)
    return pd.DataFrame(rows)


CS1 = ("random", "smote", "holdout")
CS2 = ("random", "smote", "rEDM", "hEDM")


def run_claims(rng, cs1_eff, cs2_eff, *, recall=None, counts=None, grow=False, **kw):
    cs1 = study_scores(rng, CS1, cs1_eff, levels=(0.5, 0.75), **kw)
    cs2 = study_scores(rng, CS2, cs2_eff, levels=(1.0, 2.0), grow=grow, **kw)
    counts = np.full(N_CLASSES, 200) if counts is None else counts
    if recall is None:  # an equal-recall classifier: the null of "class bias exists"
        recall = rng.binomial(counts, 0.8, size=(3, N_CLASSES)) / counts
    return hbr.claims.judge(cs1, cs2, recall, counts, n_null=400, seed=int(rng.integers(1 << 30)))


NULL1 = dict.fromkeys(CS1, 0.0)
NULL2 = dict.fromkeys(CS2, 0.0)
BIG1 = {"random": 0.0, "smote": 0.0, "holdout": 0.05}
BIG2 = {"random": 0.0, "smote": 0.0, "rEDM": 0.0, "hEDM": 0.05}


# --- the package pieces ------------------------------------------------------------------------------
def test_paired_changes_orientation_and_pairing():
    rng = np.random.default_rng(0)
    sc = study_scores(rng, ("holdout", "random"), {"holdout": 0.05, "random": 0.0}, sd_data=0, sd_model=0,
                      avg_effect=0.02)
    he = hbr.analysis.paired_changes(sc, "holdout", "delta_he", "recall")
    np.testing.assert_allclose(he["d"], 0.05)  # base − resampled: a smaller gap is d > 0
    np.testing.assert_allclose(hbr.analysis.paired_changes(sc, "holdout", "avg", "recall")["d"], 0.02)  # higher avg
    vs = hbr.analysis.paired_changes(sc, "holdout", "delta_he", "recall", against="random")
    np.testing.assert_allclose(vs["d"], 0.05)  # Δhe(random) − Δhe(holdout)
    assert len(he) == 2 * 5 * 3 and list(he.columns) == ["parameter", "i", "j", "d"]
    with pytest.raises(ValueError, match="pair one to one"):
        hbr.analysis.paired_changes(sc[~((sc.strategy == "none") & (sc.i == 0))], "holdout", "delta_he", "recall")


def test_dataset_ttest_by_hand():
    # datasets 0, 1, 2 with models' d: (1, 3) → 2, (2, 4) → 3, (6,) → 6, NaN dropped
    d = [1.0, 3.0, 2.0, 4.0, 6.0, np.nan]
    g = [0, 0, 1, 1, 2, 2]
    res = hbr.analysis.dataset_ttest(d, g)
    means = np.array([2.0, 3.0, 6.0])
    t = means.mean() / (means.std(ddof=1) / math.sqrt(3))
    assert res["n"] == 3 and res["mean"] == pytest.approx(11 / 3)
    assert res["t"] == pytest.approx(t)
    assert res["p"] == pytest.approx(sps.ttest_1samp(means, 0).pvalue)
    assert hbr.analysis.dataset_ttest([-x for x in d], g)["t"] == pytest.approx(-t)
    assert math.isnan(hbr.analysis.dataset_ttest([1.0, 2.0], [0, 0])["p"])  # one dataset: no test
    tied = hbr.analysis.dataset_ttest([0.1, 0.1, 0.0, 0.2], [0, 1, 2, 2])  # every dataset mean 0.1
    assert math.isnan(tied["t"]) and math.isnan(tied["p"]) and tied["mean"] == pytest.approx(0.1)


def test_dataset_level_test_keeps_its_level_where_the_naive_test_does_not():
    """Dataset sd = model sd, 4 × 4 pairs, no effect: the naive 16-pair test rejects far too often."""
    rng = np.random.default_rng(1)
    naive = ds = 0
    draws = 400
    groups = np.repeat(np.arange(4), 4)
    for _ in range(draws):
        d = np.repeat(rng.normal(size=4), 4) + rng.normal(size=16)
        naive += stats.paired_ttest(d, np.zeros(16), "greater").pvalue < 0.05
        ds += hbr.analysis.dataset_ttest(d, groups)["p"] < 0.05
    assert naive / draws > 0.1
    assert ds / draws < 0.09


def test_table_tests_holm_within_the_table_and_naive_beside():
    rng = np.random.default_rng(2)
    sc = study_scores(rng, ("holdout", "random"), {"holdout": 0.05, "random": 0.0}, sd_data=0.005)
    tab = hbr.analysis.table_tests(sc, ("delta_he",))
    assert len(tab) == 2 * 2 * 2  # score × strategy × level
    np.testing.assert_allclose(tab["p_holm"], C.holm(tab["p"]))
    assert (tab["significant"] == (tab["p_holm"] < 0.05)).all()
    row = tab[(tab.strategy == "holdout") & (tab.score == "recall") & (tab.parameter == 1.0)].iloc[0]
    ch = hbr.analysis.paired_changes(sc[sc.parameter == 1.0], "holdout", "delta_he", "recall")
    ref = hbr.analysis.dataset_ttest(ch["d"], ch["i"])
    assert row["t"] == pytest.approx(ref["t"]) and row["n"] == 5 and row["pairs"] == 15
    assert row["t_naive"] == pytest.approx(sps.ttest_1samp(ch["d"], 0).statistic)
    assert row["significant"] and row["t"] > 0
    rand = tab[(tab.strategy == "random") & (tab.score == "recall")]
    assert not rand["significant"].any()
    avg = hbr.analysis.table_tests(sc, ("avg",))
    assert set(avg.metric) == {"avg"} and len(avg) == 2 * 2 * 2


def test_every_level_is_an_intersection_union_test(fast_mde):
    claim = C.Claim(key="x", claim="c", source="s", paper="p", quantity="q", unit="u")
    frame = pd.DataFrame({"parameter": [1] * 3 + [2] * 3, "i": [0, 1, 2] * 2,
                          "d": [1.0, 1.1, 0.9, 0.1, 0.5, 0.2]})
    rows = {lv: C.nested(claim, g["d"], g["i"]) for lv, g in frame.groupby("parameter")}
    both = hbr.claims.every_level(claim, frame, hbr.claims._nested)
    assert both["p"] == pytest.approx(max(r["p"] for r in rows.values()))
    assert both["estimate"] == pytest.approx(rows[2]["estimate"])  # the weakest level is shown
    flipped = frame.assign(d=np.where(frame.parameter == 2, -frame.d, frame.d))
    against = hbr.claims.every_level(claim, flipped, hbr.claims._nested)
    assert not against["_paper_side"] and against["estimate"] < 0
    assert against["p"] == pytest.approx(rows[2]["p"])  # one level against: Bonferroni × 1


def test_bias_null_and_correlation_by_hand():
    null = hbr.claims.bias_null([50, 50, 50], 0.8, 1000, seed=0)
    assert null.shape == (1000,) and (null >= 0).all() and np.allclose(null * 50, np.round(null * 50))
    np.testing.assert_array_equal(null, hbr.claims.bias_null([50, 50, 50], 0.8, 1000, seed=0))
    with pytest.raises(ValueError, match="test sample"):
        hbr.claims.bias_null([50, 0], 0.8, 10, seed=0)
    claim = C.Claim(key="r", claim="c", source="s", paper="p", quantity="q", unit="class")
    x = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.5])
    y = np.array([0.2, 0.3, 0.5, 0.7, 0.95, 0.4])
    row = hbr.claims.correlation(claim, x, y)
    ref = sps.pearsonr(x, y)
    z, se = np.arctanh(ref.statistic), 1 / math.sqrt(6 - 3)
    assert row["estimate"] == pytest.approx(ref.statistic) and row["p"] == pytest.approx(ref.pvalue)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((np.tanh(z - 1.959964 * se), np.tanh(z + 1.959964 * se)))
    assert row["n"] == 6 and 0 < row["mde"] < 1


# --- the claims on synthetic runs ----------------------------------------------------------------------
KEYS = ["hbr_bias_exists", "hbr_cs1_holdout_recall", "hbr_cs1_holdout_precision", "hbr_cs1_holdout_vs_random",
        "hbr_cs1_holdout_vs_smote", "hbr_cs1_avg_recall_kept", "hbr_cs2_hedm_recall", "hbr_cs2_hedm_relative",
        "hbr_cs2_alpha_trend", "hbr_cs2_hedm_vs_redm", "hbr_cs2_hedm_vs_random", "hbr_cs2_hedm_vs_smote",
        "hbr_cs2_avg_recall_kept", "hbr_align"]
#: The claims of the controls and the mechanism, which need strategies / tables these synthetic runs lack
#: (tested in test_hbr_controls.py).
EXTRA_KEYS = {"hbr_cs1_holdout_vs_logit_adjust", "hbr_cs1_holdout_vs_reweight", "hbr_cs1_predicted_more",
              "hbr_cs1_cluster", "hbr_cs2_hedm_vs_logit_adjust"}


def test_claims_table_shape(fast_mde):
    out = run_claims(np.random.default_rng(3), BIG1, BIG2)
    assert list(out.columns) == C.COLUMNS and list(out.key) == KEYS
    assert (out.chapter == "hbr").all() and set(out.verdict) <= set(C.VERDICTS)
    assert (out[out.key.str.startswith("hbr_cs")].unit == hbr.claims.UNIT).all()
    assert out.set_index("key").loc["hbr_cs1_holdout_recall", "n"] == 5  # datasets, not 5 × 3 models


def test_null_effects_are_not_reproduced(fast_mde):
    """No effect anywhere (and the average moved by twice the margin): ≥ 90 % not reproduced, per claim."""
    rng = np.random.default_rng(4)
    draws = 200
    hits = pd.Series(0, index=KEYS)
    for _ in range(draws):
        out = run_claims(rng, NULL1, NULL2, prec_effect=dict.fromkeys(CS1 + CS2, 0.0), avg_effect=0.02,
                         n_i=3, n_j=2)
        hits += (out.set_index("key")["verdict"] == "reproduced").reindex(KEYS).astype(int)
    assert (hits / draws <= 0.10).all(), (hits / draws).to_dict()


def test_large_effects_are_reproduced(fast_mde):
    rng = np.random.default_rng(5)
    big = 0.0  # the average recall unchanged: "kept" is true
    counts = np.full(N_CLASSES, 200)
    biased = np.tile([0.95, 0.9, 0.85, 0.8, 0.7, 0.5], (3, 1))  # a real class bias
    verdicts = pd.DataFrame([run_claims(rng, BIG1, BIG2, recall=biased, counts=counts, align=1.0,
                                        avg_effect=big, sd_model=0.003, sd_data=0.003, grow=True)
                             .set_index("key")["verdict"] for _ in range(20)])
    share = (verdicts == "reproduced").mean()
    assert (share >= 0.9).all(), share.to_dict()


def test_flipped_effects_are_contradicted(fast_mde):
    rng = np.random.default_rng(6)
    flip1 = {k: -v for k, v in BIG1.items()}
    flip2 = {k: -v for k, v in BIG2.items()}
    out = run_claims(rng, flip1, flip2, align=-1.0, avg_effect=0.05, sd_model=0.003, sd_data=0.003, grow=True)
    v = out.set_index("key")["verdict"]
    assert (v.drop("hbr_bias_exists") == "contradicted").all(), v.to_dict()
    assert v["hbr_bias_exists"] != "reproduced"  # an equal-recall classifier shows no bias


def test_claims_skip_strategies_the_run_lacks(fast_mde):
    """The paper-path run: case study 1 with random only, case study 2 with hEDM only."""
    rng = np.random.default_rng(7)
    cs1 = study_scores(rng, ("random",), {"random": 0.0})
    cs2 = study_scores(rng, ("hEDM",), {"hEDM": 0.0})
    out = hbr.claims.judge(cs1, cs2, np.full((1, N_CLASSES), 0.8), np.full(N_CLASSES, 100), n_null=100)
    assert list(out.key) == ["hbr_bias_exists", "hbr_cs2_hedm_recall", "hbr_cs2_hedm_relative",
                             "hbr_cs2_alpha_trend", "hbr_cs2_avg_recall_kept", "hbr_align"]


def test_claims_with_the_real_mde_once():
    """One run through the real claims.mde_t (seconds): the underpowered note uses the paper's effect."""
    rng = np.random.default_rng(8)
    cs1 = study_scores(rng, ("holdout",), {"holdout": 0.0}, levels=(0.5,), n_i=2, n_j=2, sd_data=0.05)
    out = hbr.claims.judge(cs1, None, np.full((1, N_CLASSES), 0.8), np.full(N_CLASSES, 100), n_null=100)
    row = out.set_index("key").loc["hbr_cs1_holdout_recall"]
    assert row["verdict"] == "inconclusive" and row["mde"] > 0.01
    assert "underpowered" in row["note"] and row["paper_effect"] == 0.01


def test_glue_context_fills_absent_claims(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, str(value)))
    table = pd.DataFrame({"key": ["hbr_bias_exists", "hbr_align"]})
    hbr.claims.glue_context(table, n_datasets=3, kept_margin=0.01)
    assert glued["hbr_n_datasets"] == "3" and glued["hbr_kept_margin"] == "0.01"
    assert glued["hbr_cs1_holdout_recall_verdict"] == "not run" and "hbr_align_verdict" not in glued
    assert set(KEYS) | EXTRA_KEYS == set(hbr.claims.CLAIM_KEYS) and not set(KEYS) & EXTRA_KEYS


def test_claims_are_a_table_of_specifications():
    """The claims are module-level specifications; judge() fills in the margin and the section labels."""
    assert hbr.claims.CLAIM_KEYS == (
        "hbr_bias_exists", "hbr_cs1_holdout_recall", "hbr_cs1_holdout_precision", "hbr_cs1_holdout_vs_random",
        "hbr_cs1_holdout_vs_smote", "hbr_cs1_avg_recall_kept", "hbr_cs1_holdout_vs_logit_adjust",
        "hbr_cs1_holdout_vs_reweight", "hbr_cs1_predicted_more", "hbr_cs1_cluster", "hbr_cs2_hedm_recall",
        "hbr_cs2_hedm_relative", "hbr_cs2_alpha_trend", "hbr_cs2_hedm_vs_redm", "hbr_cs2_hedm_vs_random",
        "hbr_cs2_hedm_vs_smote", "hbr_cs2_hedm_vs_logit_adjust", "hbr_cs2_avg_recall_kept", "hbr_align")
    assert {c.section for c in hbr.claims.CLAIMS} == set(hbr.claims.SECTIONS.values())
    out = hbr.claims.judge(None, None, np.full((1, N_CLASSES), 0.8), np.full(N_CLASSES, 100), n_null=100,
                           sections={"fig1": "elsewhere"})
    assert out.key.tolist() == ["hbr_bias_exists"] and out.section.tolist() == ["elsewhere"]
    kept = hbr.claims._margin(hbr.claims.CS1_AVG_RECALL_KEPT, 0.02)
    assert kept.quantity.endswith("kept if within ±0.02") and "{" not in kept.quantity
