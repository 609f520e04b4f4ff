"""fairbook.gcm.claims: the GCM chapter's claims on synthetic per-seed result tables whose truth is
known (a null effect is not reproduced, a large one is), a hand-checked case, the selection on
validation, Table 1's bootstrap and Fig. 2's permuted-attribute null."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fairbook import claims as C
from fairbook.gcm import claims as G

TOL = 0.02


@pytest.fixture(autouse=True)
def _fast_mde(monkeypatch):
    """The MDE is linear in the sd (mde_t(sd, n) = sd · mde_t(1, n)): the same numbers, cached per n,
    so that the 200-draw simulations stay fast. Checked against the real function once."""
    real = C.mde_t
    cache = {}

    def fast(sd, n, alpha=C.ALPHA, power=C.POWER):
        if n < 2 or not np.isfinite(sd):
            return math.inf
        if (n, alpha, power) not in cache:
            cache[n, alpha, power] = real(1.0, n, alpha, power)
        return sd * cache[n, alpha, power]

    assert fast(0.37, 5) == pytest.approx(real(0.37, 5))
    monkeypatch.setattr(C, "mde_t", fast)
FIG4 = {"Vanilla": [np.nan], "OverSampling": [np.nan], "EOR": [0.1, 1.0], "Adversarial": [0.3],
        "GCM (T=0)": [0.1, 0.3], "GCM (T=2)": [0.1, 0.3]}
DIRECTIONAL = ["gcm_fig2_disparity", "gcm_os_adult", "gcm_os_compas", "gcm_best_adult", "gcm_best_compas",
               "gcm_temperature", "gcm_bias_layer0", "gcm_bias_layer1", "gcm_vs_iga", "gcm_vs_direct",
               "gcm_best_colored", "gcm_multiclass", "gcm_dp_compas"]


def _cells(n01, n11, n00=3000, n10=6000):
    y = np.r_[np.zeros(n00), np.ones(n01), np.zeros(n10), np.ones(n11)].astype(int)
    a = np.r_[np.zeros(n00 + n01), np.ones(n10 + n11)].astype(int)
    return y, a


def synthetic(rng, *, effect=0.0, ap_gap=0.0, ratio=5.7, n_seeds=5, sd=0.02, seed_sd=0.05, ap_sd=0.004):
    """Per-seed result tables shaped like the notebook's. ``effect`` > 0 puts every claim in the paper's
    direction by that much on the −ΔEO/−ΔDP/−Bias scale (0: no difference anywhere); GCM's AP is
    OverSampling's minus ``ap_gap``. A seed shifts every method alike (it cancels in the pairs);
    validation and test values have independent noise around the same truth."""
    seeds = list(range(100, 100 + n_seeds))

    def noisy(true, off, sd=sd):
        return true + off + rng.normal(0, sd), true + off + rng.normal(0, sd)  # (test, validation)

    fig4 = []
    for ds in ("adult", "compas", "colored-mnist"):
        for s in seeds:
            off = rng.normal(0, seed_sd)
            for m, grid in FIG4.items():
                for lam in grid:
                    fair = -0.1 + effect * ((m.startswith("GCM")) + (m == "GCM (T=2)")
                                            + (ds == "adult" and m == "Vanilla")
                                            + (ds == "compas" and m == "OverSampling"))
                    ap = 0.75 - (ap_gap if m.startswith("GCM") else 0.0)
                    (t, v), (ta, va) = noisy(fair, off), noisy(ap, 0.0, ap_sd)
                    fig4.append({"dataset": ds, "method": m, "strength": lam, "seed": s, "delta_eo": -t,
                                 "val_delta_eo": -v, "ap": ta, "val_ap": va})
    fig4 = pd.DataFrame(fig4)

    def sweep(cols, grid, bonus):
        rows = []
        for s in seeds:
            off = rng.normal(0, seed_sd)
            for key, lam in grid:
                (t, v), (ta, va) = noisy(-0.1 + bonus(key), off), noisy(0.75, 0.0, ap_sd)
                rows.append({cols[0]: key, cols[1]: lam, "seed": s, "delta_eo": -t, "val_delta_eo": -v,
                             "ap": ta, "val_ap": va})
        return pd.DataFrame(rows)

    layers = sweep(("subset", "lambda"), [(f"{k}_{l}", lam) for k in ("weight", "bias") for l in (0, 1)
                                         for lam in (0.3, 3.0)], lambda k: effect * k.startswith("bias"))
    iga = sweep(("setting", "lam"), [("Vanilla", np.nan)] + [(f"λ={x:g}", x) for x in (0.0, 1.0, 2.0)],
                lambda k: 0.0)
    direct = sweep(("setting", "lam"), [("Vanilla", np.nan)] + [(f"λ={x:g}", x) for x in (0.0, 0.1, 0.3)],
                   lambda k: 0.0)
    dp = []
    for s in seeds:
        off = rng.normal(0, seed_sd)
        for m, grid in {"Vanilla": [np.nan], "OverSampling": [np.nan], "EOR": [1.0], "Adversarial": [0.3],
                        "Resampling": [np.nan], "GCM + resampling": [0.1, 0.3]}.items():
            for lam in grid:
                (t, v), (ta, va) = noisy(-0.1 + effect * (m == "GCM + resampling"), off), noisy(0.65, 0.0, ap_sd)
                dp.append({"method": m, "strength": lam, "seed": s, "delta_dp": -t, "val_delta_dp": -v,
                           "ap": ta, "val_ap": va})
    mc = []
    for s in seeds:
        off = rng.normal(0, seed_sd)
        for m, setting in [("Vanilla", ""), ("OverSampling", ""), ("Adv", "α=1"), ("GCM", "T=0, λ=0.1"),
                           ("GCM", "T=2, λ=0.1")]:
            (t, v), (ta, va) = noisy(-0.1 + effect * (m == "GCM"), off), noisy(0.9, 0.0, ap_sd)
            mc.append({"method": m, "setting": setting, "seed": s, "rep -Bias": t, "sel -Bias": v,
                       "sel acc": va, "rep acc": ta})
    excess = rng.normal(effect, 0.05, n_seeds)
    disparity = pd.DataFrame({"dataset": "adult", "training": "oversampling", "seed": seeds,
                              "lognorm_excess": excess, "excess": excess + 0.3, "n_perm": 4,
                              "undefined_fraction": 0.1})
    y, a = _cells(1000, int(round(1000 * ratio)))
    return dict(adult_y=y, adult_a=a, disparity=disparity, fig4_runs=fig4, layer_runs=layers, iga_runs=iga,
                direct_runs=direct, dp_runs=pd.DataFrame(dp), multiclass_runs=pd.DataFrame(mc),
                image_dataset="colored-mnist", temperatures=[0.0, 2.0], ap_tolerance=TOL, n_boot=499)


def _verdicts(**kw):
    out = G.judge(**synthetic(**kw))
    return out.set_index("key").verdict


def test_table_has_the_claims_columns_and_sections():
    out = G.judge(**synthetic(np.random.default_rng(0), effect=0.2))
    assert list(out.columns) == C.COLUMNS
    assert set(DIRECTIONAL + ["gcm_t1_ratio", "gcm_ap_adult"]) == set(out.key)
    assert (out.chapter == "gcm").all() and out.section.str.startswith("gcm-").all()
    assert set(out.verdict) <= set(C.VERDICTS)
    assert (out.n[out.key != "gcm_t1_ratio"] == 5).all()


def test_null_effect_is_not_reproduced():
    """200 draws without any effect: no fairness difference, Table 1's ratio at the threshold, GCM's AP
    off by the equivalence margin (the null of "similar AP"; the selection floor is wider so that GCM
    is still chosen). Each claim is reproduced in < 10 % of the draws."""
    rng = np.random.default_rng(1)
    keys = DIRECTIONAL + ["gcm_t1_ratio", "gcm_ap_adult"]
    counts = pd.Series(0, index=keys)
    for _ in range(200):
        kw = synthetic(rng, effect=0.0, ratio=G.RATIO_THRESHOLD, ap_gap=TOL, n_seeds=3)
        v = G.judge(**{**kw, "ap_tolerance": 3 * TOL, "ap_margin": TOL}).set_index("key").verdict
        counts += (v[keys] == "reproduced").astype(int)
    assert (counts <= 20).all(), counts[counts > 20]


def test_large_effect_is_reproduced():
    rng = np.random.default_rng(3)
    for _ in range(20):
        v = _verdicts(rng=rng, effect=0.2, n_seeds=5)
        assert (v == "reproduced").all(), v[v != "reproduced"]


def test_flipped_effect_is_contradicted():
    """The same effect against the paper's direction flips every directional verdict."""
    rng = np.random.default_rng(4)
    v = _verdicts(rng=rng, effect=-0.2, n_seeds=5)
    flipped = [k for k in DIRECTIONAL if k not in ("gcm_vs_iga", "gcm_vs_direct")]
    assert (v[flipped] == "contradicted").all(), v[flipped]
    # GCM at T=2 is 2·effect from IGA / direct: also against the paper
    assert (v[["gcm_vs_iga", "gcm_vs_direct"]] == "contradicted").all()
    v = _verdicts(rng=rng, ap_gap=0.1, n_seeds=5)  # far outside the margin, but GCM below the AP floor
    assert v["gcm_ap_adult"] == "inconclusive"


def test_hand_checked_pairing_and_selection():
    """Three seeds, values chosen by hand: the estimate is the mean paired difference at the
    validation-chosen settings, the interval the t interval of those differences."""
    rng = np.random.default_rng(5)
    kw = synthetic(rng, n_seeds=3, sd=0.0, seed_sd=0.0)
    f = kw["fig4_runs"]
    adult = f.dataset == "adult"
    # OverSampling vs Vanilla on Adult: Vanilla − OverSampling = 0.01, 0.03, 0.05 at seeds 100..102
    for s, dv in zip((100, 101, 102), (0.01, 0.03, 0.05)):
        f.loc[adult & (f.method == "Vanilla") & (f.seed == s), "delta_eo"] = 0.1 - dv
    out = G.judge(**kw).set_index("key")
    d = np.array([0.01, 0.03, 0.05])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert out.loc["gcm_os_adult", "estimate"] == pytest.approx(0.03)
    assert out.loc["gcm_os_adult", "ci_low"] == pytest.approx(0.03 - half)
    assert out.loc["gcm_os_adult", "p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    # selection: GCM (T=2) at λ=0.3 has the best validation −ΔEO; its test values are what is paired
    f.loc[adult & (f.method == "GCM (T=2)") & (f.strength == 0.3), "val_delta_eo"] = 0.0
    f.loc[adult & (f.method == "GCM (T=2)") & (f.strength == 0.3), "delta_eo"] = [0.08, 0.07, 0.06]
    f.loc[adult & (f.method == "GCM (T=2)") & (f.strength == 0.3), "val_ap"] = 0.7  # below the floor
    out = G.judge(**kw).set_index("key")
    assert "GCM (T=2) @ 0.3" not in out.loc["gcm_best_adult", "note"]
    f.loc[adult & (f.method == "GCM (T=2)") & (f.strength == 0.3), "val_ap"] = 0.75
    out = G.judge(**kw).set_index("key")
    assert out.loc["gcm_best_adult", "note"].startswith("GCM (T=2) @ 0.3")
    # the best baseline by validation is Vanilla (all equal but Vanilla's test ΔEO was lowered above;
    # ties on validation go to the first method, Vanilla)
    van = f[adult & (f.method == "Vanilla")].sort_values("seed").delta_eo.to_numpy()
    expected = np.mean(-np.array([0.08, 0.07, 0.06]) + van)
    assert out.loc["gcm_best_adult", "estimate"] == pytest.approx(expected)


def test_no_setting_above_the_floor_gives_no_test():
    kw = synthetic(np.random.default_rng(6), effect=0.2)
    kw["direct_runs"]["val_ap"] = 0.5
    row = G.judge(**kw).set_index("key").loc["gcm_vs_direct"]
    assert row.n == 0 and row.verdict == "inconclusive" and "AP floor" in row.note


def test_choose_respects_floor_and_exemption():
    f = pd.DataFrame({"strength": [1, 2, 3], "val_ap": [0.8, 0.6, 0.7], "score": [0.1, 0.9, 0.5]})
    assert G.choose(f, "EOR", "val_ap", 0.65, "score").strength == 3
    assert G.choose(f, "Vanilla", "val_ap", 0.65, "score").strength == 2
    assert G.choose(f, "EOR", "val_ap", 0.9, "score") is None


def test_cell_ratio_bootstrap():
    y, a = _cells(1000, 5700)
    b = G.cell_ratio_bootstrap(y, a, n_boot=1999, seed=0)
    assert b["ratio"] == pytest.approx(5.7)
    assert b["estimate"] == pytest.approx(3.7)
    # the ratio of two binomial counts: delta-method se ≈ r·sqrt(1/n11 + 1/n01 − ...) ≈ 0.2
    assert 0.1 < b["se"] < 0.3 and b["ci"][0] < 3.7 < b["ci"][1] and b["p"] < 0.01
    y, a = _cells(1000, 2000)
    b = G.cell_ratio_bootstrap(y, a, n_boot=1999, seed=0)
    assert abs(b["estimate"]) < 1e-12 and b["p"] > 0.5
    assert G.cell_ratio_bootstrap(y, a, n_boot=199, seed=3) == G.cell_ratio_bootstrap(y, a, n_boot=199, seed=3)
    with pytest.raises(ValueError, match="Z01"):
        G.cell_ratio_bootstrap(np.zeros(5), np.zeros(5))


def test_disparity_statistic_is_exchangeable_under_the_null():
    """Rows drawn alike: the true row's statistic minus the permuted rows' mean averages 0, so the
    per-seed excess is not reproduced under the null (≥ 90 % of 200 draws), and a shifted true row is."""
    rng = np.random.default_rng(7)
    ex = np.array([[G.disparity_statistic(rng.normal(0.3, 0.1, (5, 2)))] for _ in range(2000)])[:, 0]
    exc = ex[:, 0] - ex[:, 1:].mean(1)
    assert abs(exc.mean()) < 3 * exc.std() / math.sqrt(len(exc))
    claim = C.Claim("x", "c", "s", "p", "q", "seed")
    hits = 0
    for _ in range(200):
        d = [(lambda s: s[0] - s[1:].mean())(G.disparity_statistic(rng.normal(0.3, 0.1, (5, 2)))) for _ in range(3)]
        hits += C.table([C.difference(claim, d)], "t").verdict[0] == "reproduced"
    assert hits <= 20
    logs = rng.normal(0.3, 0.02, (5, 2))
    logs[0, 1] -= 0.5  # the true attribute's disparity below the null's (r̂ < null): still detected
    s = G.disparity_statistic(logs)
    assert s[0] > 0.4 and s[1:].max() < 0.2
    assert s[0] == pytest.approx(abs(logs[0, 1] - logs[1:, 1].mean()))


def test_disparity_vs_null_reads_the_tracker_columns():
    n = 30
    rng = np.random.default_rng(8)
    h = pd.DataFrame({"step": range(n), "r_y0": np.full(n, 2.0), "r_y1": np.full(n, 1.0),
                      "code_y0": 1.0, "code_y1": 1.0, "elements": 100, "undefined_y0": 10, "undefined_y1": 30})
    for j in range(3):
        h[f"r_y0_perm{j}"] = np.exp(rng.normal(0.1, 0.01, n))
        h[f"r_y1_perm{j}"] = np.exp(rng.normal(0.1, 0.01, n))
    out = G.disparity_vs_null(h.assign(dataset="adult", training="oversampling", seed=1))
    r = out.iloc[0]
    assert r.n_perm == 3 and r.undefined_fraction == pytest.approx(40 / 200)
    assert r["median r̂ (Y=0)"] == 2.0 and r["null median r̂ (Y=0)"] == pytest.approx(math.exp(0.1), rel=0.02)
    # true row: |log 2 − 0.1|; a permuted row's centre holds the true row: |0.1 − (log 2 + 0.2)/3|
    assert r.statistic == pytest.approx(math.log(2.0) - 0.1, abs=0.02)
    assert r.excess == pytest.approx(2 / 3 * (math.log(2.0) - 0.1), abs=0.02)
