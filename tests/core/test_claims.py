"""fairbook.claims: intervals, tests, Holm, MDE and verdicts against scipy and simulated truth."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fairbook import claims as C

CLAIM = C.Claim(key="a_beats_b", claim="A is fairer than B", source="Table 1", paper="0.10 vs 0.05",
                quantity="fairness, A − B (> 0: A fairer)", unit="seed", section="x-sec", paper_effect=0.05)


def _claim(key="k", effect=None):
    return C.Claim(key=key, claim="c", source="Fig. 1", paper="p", quantity="q", unit="seed",
                   paper_effect=effect)


def test_difference_matches_scipy_t_test_and_interval():
    d = np.array([0.3, 0.1, 0.4, 0.2, 0.25])
    row = C.difference(CLAIM, d)
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(0.95)
    assert row["estimate"] == pytest.approx(d.mean())
    assert row["p"] == pytest.approx(res.pvalue)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert row["n"] == 5 and row["kind"] == "difference"


def test_hand_computed_case():
    # d = (1, 2, 3): mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3) = 3.4641, df 2
    row = C.difference(_claim(), [1.0, 2.0, 3.0])
    t = 2 * math.sqrt(3)
    assert row["p"] == pytest.approx(2 * stats.t.sf(t, 2))
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert row["ci_low"] == pytest.approx(2 - half) and row["ci_high"] == pytest.approx(2 + half)


def test_mde_matches_noncentral_t_power():
    sd, n = 2.0, 10
    mde = C.mde_t(sd, n)
    crit = stats.t.ppf(0.975, n - 1)
    ncp = mde * math.sqrt(n) / sd
    power = stats.nct.sf(crit, n - 1, ncp) + stats.nct.cdf(-crit, n - 1, ncp)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert C.mde_t(sd, 40) < mde  # more units detect smaller effects
    assert C.mde_t(sd, 1) == math.inf and C.mde_t(0.0, 5) == 0.0
    # the normal approximation (z_.975 + z_.8) sd / sqrt(n) is a lower bound at small n
    assert mde > (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / math.sqrt(n)


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert np.allclose(C.holm(p)[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(C.holm(p)[4])
    assert np.all(C.holm([0.5, 0.9]) <= 1.0)


def test_verdicts_direction_and_holm():
    rows = [C.difference(_claim("up"), [1.0, 1.1, 0.9, 1.05]),
            C.difference(_claim("down"), [-1.0, -1.1, -0.9, -1.05]),
            C.difference(_claim("noise"), [0.1, -0.2, 0.15, -0.1])]
    t = C.table(rows, "toy")
    assert list(t.columns) == C.COLUMNS
    assert dict(zip(t.key, t.verdict)) == {"up": "reproduced", "down": "contradicted", "noise": "inconclusive"}
    assert (t.p_holm >= t.p).all()
    assert set(t.verdict) <= set(C.VERDICTS)


def test_holm_can_turn_a_nominal_result_inconclusive():
    d = np.array([0.5, 1.5, 0.2, 1.1, 0.9, 0.1, 1.4, 0.3])  # p ≈ 0.003 alone
    p = C.difference(_claim("a"), d)["p"]
    assert p < 0.05 and 30 * p > 0.05
    family = [C.difference(_claim("a"), d)] + [
        C.difference(_claim(f"z{i}"), [0.3, -0.2, 0.1, -0.25, 0.05]) for i in range(29)]
    many = C.table(family, "toy")
    assert many.p_holm.iloc[0] == pytest.approx(30 * p)
    assert many.verdict.iloc[0] == "inconclusive"


def test_null_is_rarely_reproduced_and_large_effect_is():
    rng = np.random.default_rng(0)
    null = [C.table([C.difference(_claim(), rng.normal(0, 1, 5))], "t").verdict.iloc[0] for _ in range(200)]
    assert np.mean(np.array(null) == "reproduced") < 0.05
    assert np.mean(np.array(null) != "inconclusive") < 0.10
    big = [C.table([C.difference(_claim(), rng.normal(3, 1, 5))], "t").verdict.iloc[0] for _ in range(100)]
    assert np.mean(np.array(big) == "reproduced") > 0.9


def test_underpowered_note():
    t = C.table([C.difference(_claim(effect=0.01), [0.5, -0.4, 0.2])], "toy")
    assert t.verdict.iloc[0] == "inconclusive" and "underpowered" in t.note.iloc[0]
    t = C.table([C.difference(_claim(effect=10.0), [0.5, -0.4, 0.2, 0.1, -0.3, 0.2])], "toy")
    assert "underpowered" not in t.note.iloc[0]


def test_equivalence_tost():
    d = np.full(30, 0.0) + np.random.default_rng(1).normal(0, 0.01, 30)
    t = C.table([C.equivalence(_claim("same"), d, margin=0.05)], "toy")
    assert t.verdict.iloc[0] == "reproduced" and t.kind.iloc[0] == "equivalence"
    # far outside the margin: contradicted
    t = C.table([C.equivalence(_claim("diff"), d + 0.5, margin=0.05)], "toy")
    assert t.verdict.iloc[0] == "contradicted"
    # too noisy to decide
    t = C.table([C.equivalence(_claim("noisy"), [0.1, -0.2, 0.05], margin=0.05)], "toy")
    assert t.verdict.iloc[0] == "inconclusive"
    # TOST p = max of the two one-sided p-values (scipy)
    x = np.array([0.01, -0.02, 0.015, 0.0, 0.005])
    row = C.equivalence(_claim(), x, margin=0.05)
    p1 = stats.ttest_1samp(x, -0.05, alternative="greater").pvalue
    p2 = stats.ttest_1samp(x, 0.05, alternative="less").pvalue
    assert row["p"] == pytest.approx(max(p1, p2))
    with pytest.raises(ValueError, match="margin"):
        C.equivalence(_claim(), x, margin=0)


def test_equivalence_at_the_margin_is_not_reproduced():
    rng = np.random.default_rng(2)
    out = [C.table([C.equivalence(_claim(), rng.normal(0.05, 0.02, 8), 0.05)], "t").verdict.iloc[0]
           for _ in range(200)]
    assert np.mean(np.array(out) == "reproduced") <= 0.06


def test_nested_averages_models_within_datasets():
    # 3 datasets x 4 models: the test runs over the 3 dataset means
    groups = np.repeat([0, 1, 2], 4)
    d = np.array([1, 1.2, 0.8, 1.0, 0.2, 0.3, 0.1, 0.2, 0.5, 0.6, 0.4, 0.5])
    row = C.nested(_claim(), d, groups)
    means = [1.0, 0.2, 0.5]
    assert row["n"] == 3
    assert row["p"] == pytest.approx(stats.ttest_1samp(means, 0).pvalue)
    assert "12 models in 3 datasets" in row["note"]


def test_nested_controls_type_one_error_where_the_naive_test_does_not():
    rng = np.random.default_rng(4)
    naive, nested = [], []
    groups = np.repeat(np.arange(4), 4)
    for _ in range(400):
        d = np.repeat(rng.normal(0, 1, 4), 4) + rng.normal(0, 1, 16)  # dataset sd = model sd
        naive.append(stats.ttest_1samp(d, 0).pvalue < 0.05)
        nested.append(C.nested(_claim(), d, groups)["p"] < 0.05)
    assert np.mean(naive) > 0.1  # the naive 16-model test is anti-conservative
    assert np.mean(nested) < 0.08


def test_permutation_claim():
    null = np.random.default_rng(5).normal(0, 1, 999)
    row = C.permutation(_claim(), 4.0, null)
    assert row["p"] == pytest.approx((1 + np.sum(null >= 4.0)) / 1000)
    assert row["estimate"] == pytest.approx(4.0 - null.mean())
    assert row["ci_low"] < row["estimate"] < row["ci_high"]
    t = C.table([row, C.permutation(_claim("b"), 0.1, null)], "toy")
    assert list(t.verdict) == ["reproduced", "inconclusive"]


def test_nan_units_are_dropped_and_reported():
    row = C.difference(_claim(), [1.0, np.nan, 2.0, 3.0])
    assert row["n"] == 3 and "1 of 4 units undefined" in row["note"]
    t = C.table([C.difference(_claim(), [1.0])], "toy")
    assert t.verdict.iloc[0] == "inconclusive" and "n < 2" in t.note.iloc[0]


def test_claim_validation_and_unique_keys():
    with pytest.raises(ValueError, match="key"):
        C.Claim(key="Bad Key", claim="c", source="s", paper="p", quantity="q", unit="u")
    with pytest.raises(ValueError, match="unit"):
        C.Claim(key="k", claim="c", source="s", paper="p", quantity="q", unit=" ")
    with pytest.raises(ValueError, match="unique"):
        C.table([C.difference(_claim("k"), [1, 2]), C.difference(_claim("k"), [1, 2])], "toy")


def test_summary_and_interval_text():
    t = C.table([C.difference(_claim("a"), [1.0, 1.1, 0.9]), C.difference(_claim("b"), [0.1, -0.2, 0.3])], "toy")
    assert C.summary(t) == "1 reproduced, 0 contradicted, 1 inconclusive (of 2 claims)"
    text = C.interval_text({"estimate": -0.0123, "ci_low": -0.05, "ci_high": 0.02})
    assert text == "−0.0123 [−0.05, 0.02]"
    assert repr(C.Text("x y")) == "x y"


def test_scorecard_page_from_runs(tmp_path):
    import json

    from fairbook.book import runner, site

    runs = []
    for name, d in (("alpha", [1.0, 1.1, 0.9]), ("beta", [0.1, -0.2, 0.3])):
        path = tmp_path / name
        (path / "results").mkdir(parents=True)
        (path / "provenance.json").write_text(json.dumps({"chapter": name, "title": f"Paper {name}",
                                                         "profile": "smoke"}))
        claim = C.Claim(key=f"{name}_k", claim="A | B", source="Fig. 2", paper="0.1", quantity="q",
                        unit="seed", section=f"{name}-sec" if name == "alpha" else "")
        C.table([C.difference(claim, d)], name).to_csv(path / "results" / "claims.csv", index=False)
        runs.append(runner.Run(name, "smoke", path, False))
    (tmp_path / "gamma" / "results").mkdir(parents=True)
    (tmp_path / "gamma" / "provenance.json").write_text(json.dumps({"chapter": "gamma", "title": "G",
                                                                    "profile": "smoke"}))
    page = site.scorecard_page(runs + [runner.Run("gamma", "smoke", tmp_path / "gamma", False)])
    assert "## Paper alpha" in page and "## Paper beta" in page
    assert "1 reproduced, 0 contradicted, 0 inconclusive (of 1 claims)" in page
    assert "{bdg-success}`reproduced`" in page and "{bdg-secondary}`inconclusive`" in page
    assert "{ref}`alpha-sec`" in page and "{doc}`chapters/beta`" in page
    assert "A \\| B" in page  # a table cell cannot break the row
    assert site._p(1e-9) == "< 0.0001" and site._p(0.0123) == "0.012" and site._p(float("nan")) == "n/a"
    assert "wrote no claims table" in page


def test_zero_spread_has_no_test():
    t = C.table([C.difference(_claim(), [0.5, 0.5, 0.5])], "toy")
    assert np.isnan(t.p.iloc[0]) and t.verdict.iloc[0] == "inconclusive"
    assert "zero spread" in t.note.iloc[0]
    assert C.mde_t(0.0, 5) == 0.0 and C.mde_t(2.0, 7) == pytest.approx(2 * C.mde_t(1.0, 7))
