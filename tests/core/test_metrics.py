"""fairbook.metrics: hand-computed examples, cross-checks against sklearn / fairlearn / scipy,
degenerate cases, and properties of HBR's class-bias metrics."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from fairbook import metrics as M

fl = pytest.importorskip("fairlearn.metrics")


# --- a small multi-class example, confusion matrix written out by hand --------------------------------
#   true 0 -> predicted 0, 1, 0        row [2, 1, 0]
#   true 1 -> predicted 1, 2           row [0, 1, 1]
#   true 2 -> predicted 2, 2, 0, 1     row [1, 1, 2]
Y3 = [0, 0, 0, 1, 1, 2, 2, 2, 2]
P3 = [0, 1, 0, 1, 2, 2, 2, 0, 1]
CM3 = np.array([[2, 1, 0],
                [0, 1, 1],
                [1, 1, 2]])
RECALL3 = np.array([2 / 3, 1 / 2, 2 / 4])      # diagonal / row sums (3, 2, 4)
PRECISION3 = np.array([2 / 3, 1 / 3, 2 / 3])   # diagonal / column sums (3, 3, 3)


def test_confusion_matrix_by_hand():
    np.testing.assert_array_equal(M.confusion_matrix(Y3, P3), CM3)
    np.testing.assert_array_equal(M.confusion_matrix(Y3, P3), skm.confusion_matrix(Y3, P3))
    # an explicit n_classes pads absent classes with zeros
    cm5 = M.confusion_matrix(Y3, P3, n_classes=5)
    assert cm5.shape == (5, 5) and cm5[:3, :3].tolist() == CM3.tolist() and cm5[3:].sum() == 0
    with pytest.raises(ValueError, match="n_classes"):
        M.confusion_matrix(Y3, P3, n_classes=2)


def test_accuracy_recall_precision_by_hand_and_sklearn():
    assert M.accuracy(Y3, P3) == pytest.approx(5 / 9)
    assert M.accuracy(Y3, P3) == pytest.approx(skm.accuracy_score(Y3, P3))
    np.testing.assert_allclose(M.per_class_recall(Y3, P3), RECALL3)
    np.testing.assert_allclose(M.per_class_precision(Y3, P3), PRECISION3)
    np.testing.assert_allclose(M.per_class_recall(Y3, P3), skm.recall_score(Y3, P3, average=None))
    np.testing.assert_allclose(M.per_class_precision(Y3, P3), skm.precision_score(Y3, P3, average=None))
    assert M.class_averaged_recall(Y3, P3) == pytest.approx(5 / 9)
    assert M.class_averaged_recall(Y3, P3) == pytest.approx(skm.balanced_accuracy_score(Y3, P3))
    assert M.class_averaged_precision(Y3, P3) == pytest.approx(5 / 9)
    assert M.class_averaged_precision(Y3, P3) == pytest.approx(skm.precision_score(Y3, P3, average="macro"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_against_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, 400)
    p = np.where(rng.random(400) < 0.6, y, rng.integers(0, 10, 400))
    np.testing.assert_allclose(M.per_class_recall(y, p, 10), skm.recall_score(y, p, average=None))
    np.testing.assert_allclose(M.per_class_precision(y, p, 10), skm.precision_score(y, p, average=None))
    np.testing.assert_array_equal(M.confusion_matrix(y, p, 10), skm.confusion_matrix(y, p, labels=range(10)))


def test_class_never_predicted_gives_nan_precision_not_zero():
    y, p = [0, 1, 2, 2], [0, 1, 1, 1]          # class 2 is never predicted
    prec = M.per_class_precision(y, p)
    np.testing.assert_allclose(prec, [1.0, 1 / 3, np.nan])
    ref = skm.precision_score(y, p, average=None, zero_division=np.nan)
    np.testing.assert_allclose(prec, ref)
    with pytest.raises(ValueError, match=r"classes \[2\]"):
        M.class_averaged_precision(y, p)
    assert np.isnan(M.class_averaged_precision(y, p, nan_ok=True))
    # recall is still defined for every class present in y
    np.testing.assert_allclose(M.per_class_recall(y, p), [1.0, 1.0, 0.0])


def test_class_without_samples_gives_nan_recall():
    rec = M.per_class_recall([0, 0, 1], [0, 1, 1], n_classes=3)
    np.testing.assert_allclose(rec, [0.5, 1.0, np.nan])
    with pytest.raises(ValueError):
        M.class_averaged_recall([0, 0, 1], [0, 1, 1], n_classes=3)


def test_input_validation_and_conversions():
    with pytest.raises(ValueError, match="same length"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        M.accuracy([], [])
    with pytest.raises(ValueError, match="integer"):
        M.accuracy([0.5, 1], [0, 1])
    # pandas, bools and (n, 1) columns are accepted
    assert M.accuracy(pd.Series([True, False]), np.array([[1], [1]])) == 0.5


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    y = torch.tensor([0, 1, 1, 0])
    p = torch.tensor([0.0, 1.0, 0.0, 0.0], requires_grad=True)  # grad-tracking tensors are detached
    assert M.accuracy(y, p) == 0.75
    assert M.equalized_odds_sum(y, p.round(), torch.tensor([0, 0, 1, 1])) == pytest.approx(1.0)


# --- HBR class-bias metrics ---------------------------------------------------------------------------
R10 = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.85, 0.75, 0.65, 0.55])  # 0.50 .. 0.95 step 0.05


def test_delta_metrics_by_hand():
    assert M.delta_max(R10) == pytest.approx(0.95 - 0.5)
    # k = 2 for 10 classes: (0.95 + 0.90)/2 - (0.50 + 0.55)/2
    assert M.delta_quantile(R10) == pytest.approx(0.925 - 0.525)
    # population std: deviations ±0.025, ±0.075, ..., ±0.225 around 0.725
    var = 2 * (0.025**2 + 0.075**2 + 0.125**2 + 0.175**2 + 0.225**2) / 10
    assert M.delta_std(R10) == pytest.approx(np.sqrt(var))
    assert M.delta_std(R10, ddof=1) == pytest.approx(np.sqrt(var * 10 / 9))
    # |r - 0.725| sorted: .025 .025 .075 .075 .125 .125 .175 .175 .225 .225 -> median .125
    assert M.delta_mad(R10) == pytest.approx(0.125)
    assert M.delta_mad(R10) == pytest.approx(stats.median_abs_deviation(R10, scale=1.0))
    easy, hard = [5, 0, 6], [4, 9, 3]       # the three best / worst classes
    assert M.delta_he(R10, easy, hard) == pytest.approx((0.95 + 0.9 + 0.85) / 3 - (0.5 + 0.55 + 0.6) / 3)


def test_default_quantile_k():
    assert M.default_quantile_k(10) == 2 and M.default_quantile_k(100) == 10
    with pytest.raises(ValueError, match="pass k"):
        M.default_quantile_k(7)
    with pytest.raises(ValueError, match="pass k"):
        M.delta_quantile(np.linspace(0, 1, 7))
    assert M.delta_quantile(np.linspace(0, 1, 7), k=1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must"):
        M.delta_quantile(R10, k=11)
    with pytest.raises(ValueError, match="k must"):
        M.delta_quantile(R10, k=0)


@pytest.mark.parametrize("seed", range(5))
def test_delta_metric_properties(seed):
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.3, 1.0, 100)
    fns = {"m": M.delta_max, "q": M.delta_quantile, "s": M.delta_std, "mad": M.delta_mad}
    base = {k: f(r) for k, f in fns.items()}
    for k, f in fns.items():
        assert base[k] >= 0
        assert f(rng.permutation(r)) == pytest.approx(base[k])           # permutation invariant
        assert f(r + 0.37) == pytest.approx(base[k])                     # shift invariant
        assert f(0.5 * r) == pytest.approx(0.5 * base[k])                # scale equivariant
        assert f(np.full(100, 0.8)) == pytest.approx(0.0, abs=1e-15)     # no bias -> 0
    # the quantile gap interpolates between the max gap (k = 1) and 0 (k = C), decreasing in k
    qs = [M.delta_quantile(r, k) for k in range(1, 101)]
    assert qs[0] == pytest.approx(base["m"]) and qs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b - 1e-12 for a, b in zip(qs, qs[1:]))
    assert base["q"] <= base["m"]
    # Δhe with E, H = the k best / worst classes is Δq
    order = np.argsort(r)
    assert M.delta_he(r, order[-10:], order[:10]) == pytest.approx(M.delta_quantile(r, 10))
    assert M.delta_he(r, order[:10], order[-10:]) == pytest.approx(-M.delta_quantile(r, 10))  # sign


def test_mad_is_robust_but_max_and_std_are_not():
    r = R10.copy()
    r2 = r.copy()
    r2[4] = 0.0                      # one class collapses
    assert M.delta_mad(r2) == pytest.approx(M.delta_mad(r))
    assert M.delta_max(r2) > M.delta_max(r) and M.delta_std(r2) > M.delta_std(r)


def test_easy_hard_classes_like_hbr_code():
    # b_c after resampling: above the mean -> hard (oversampled), otherwise easy
    easy, hard = M.easy_hard_classes([4000, 6500, 5000, 4500])
    assert easy.tolist() == [0, 2, 3] and hard.tolist() == [1]
    with pytest.raises(ValueError, match="same count"):
        M.easy_hard_classes([5, 5, 5])
    r = np.array([0.9, 0.6, 0.8, 0.85])
    assert M.delta_he(r, easy, hard) == pytest.approx((0.9 + 0.8 + 0.85) / 3 - 0.6)
    mask_e = np.array([True, False, True, True])
    assert M.delta_he(r, mask_e, ~mask_e) == pytest.approx(M.delta_he(r, easy, hard))


def test_delta_he_validation():
    with pytest.raises(ValueError, match="overlap"):
        M.delta_he(R10, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        M.delta_he(R10, [], [1])
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        M.delta_he(R10, [10], [1])


def test_delta_metrics_nan_policy():
    r = np.array([0.9, np.nan, 0.5, 0.7])
    for f in (M.delta_max, M.delta_std, M.delta_mad, lambda v, nan_ok=False: M.delta_quantile(v, 1, nan_ok)):
        with pytest.raises(ValueError, match=r"classes \[1\]"):
            f(r)
        assert np.isnan(f(r, nan_ok=True))
    # NaN outside E ∪ H does not matter for Δhe
    assert M.delta_he(r, [0], [2]) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        M.delta_he(r, [0, 1], [2])


def test_class_bias_report():
    rep = M.class_bias_report(R10, easy=[5, 0], hard=[4, 9])
    assert set(rep) == {"delta_m", "delta_q", "delta_sigma", "delta_mad", "avg", "delta_he"}
    assert rep["delta_q"] == pytest.approx(M.delta_quantile(R10)) and rep["avg"] == pytest.approx(0.725)
    assert rep["delta_he"] == pytest.approx(rep["delta_q"])
    assert "delta_he" not in M.class_bias_report(R10)
    with pytest.raises(ValueError, match="both"):
        M.class_bias_report(R10, easy=[0])


# --- binary group fairness: a hand-made example ------------------------------------------------------
#   a=0: y=1 x4 predicted 1,1,1,0 (TPR 3/4); y=0 x4 predicted 1,0,0,0 (FPR 1/4)
#   a=1: y=1 x2 predicted 1,0     (TPR 1/2); y=0 x5 predicted 1,1,0,0,0 (FPR 2/5)
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
P = np.array([1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0])
A = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])


def test_group_metrics_by_hand():
    np.testing.assert_allclose(M.true_positive_rates(Y, P, A), [3 / 4, 1 / 2])
    np.testing.assert_allclose(M.false_positive_rates(Y, P, A), [1 / 4, 2 / 5])
    assert M.delta_tpr(Y, P, A) == pytest.approx(0.25)
    assert M.delta_fpr(Y, P, A) == pytest.approx(0.15)
    assert M.equalized_odds_sum(Y, P, A) == pytest.approx(0.40)      # GCM ΔEO
    assert M.equalized_odds_mean(Y, P, A) == pytest.approx(0.20)     # AIM-Fair EO
    assert M.equalized_odds_max(Y, P, A) == pytest.approx(0.25)      # max(ΔTPR, ΔFPR): ΔTPR wins
    assert M.equal_opportunity_ratio(Y, P, A) == pytest.approx(1.5)  # TPR_0 / TPR_1 = 0.75 / 0.5
    np.testing.assert_allclose(M.selection_rates(P, A), [4 / 8, 3 / 7])
    assert M.demographic_parity_difference(Y, P, A) == pytest.approx(1 / 2 - 3 / 7)
    cells = M.cell_accuracies(Y, P, A)               # acc[y, a]
    np.testing.assert_allclose(cells, [[3 / 4, 3 / 5], [3 / 4, 1 / 2]])
    assert M.worst_group_accuracy(Y, P, A) == pytest.approx(0.5)
    # population std of (0.75, 0.6, 0.75, 0.5): mean 0.65, squared deviations sum to 0.045
    assert M.group_accuracy_std(Y, P, A) == pytest.approx(np.sqrt(0.045 / 4))
    np.testing.assert_allclose(M.group_accuracies(Y, P, A), [6 / 8, 4 / 7])
    assert M.accuracy(Y, P) == pytest.approx(10 / 15)


def test_eop_direction_is_unprivileged_over_privileged():
    # swapping the group labels inverts EOP; ΔEO and ΔDP are symmetric
    assert M.equal_opportunity_ratio(Y, P, 1 - A) == pytest.approx(1 / 1.5)
    assert M.equalized_odds_sum(Y, P, 1 - A) == pytest.approx(M.equalized_odds_sum(Y, P, A))
    assert M.demographic_parity_difference(Y, P, 1 - A) == pytest.approx(
        M.demographic_parity_difference(Y, P, A))


def _fairlearn_refs(y, p, a):
    mf = fl.MetricFrame(metrics={"tpr": fl.true_positive_rate, "fpr": fl.false_positive_rate},
                        y_true=y, y_pred=p, sensitive_features=a)
    wst = fl.MetricFrame(metrics=skm.accuracy_score, y_true=y, y_pred=p,
                         sensitive_features=pd.DataFrame({"y": y, "a": a})).group_min()
    return {
        "tpr": mf.by_group["tpr"].loc[[0, 1]].to_numpy(),
        "fpr": mf.by_group["fpr"].loc[[0, 1]].to_numpy(),
        "eo_mean": fl.equalized_odds_difference(y, p, sensitive_features=a, agg="mean"),
        "eo_worst": fl.equalized_odds_difference(y, p, sensitive_features=a),
        "dp": fl.demographic_parity_difference(y, p, sensitive_features=a),
        "wst": wst,
    }


def _random_binary(seed, n=600):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(a == 1, 0.6, 0.3)).astype(int)
    score = y * 1.2 + a * 0.5 + rng.normal(0, 1, n)
    p = (score > 0.8).astype(int)
    return y, p, a, score


@pytest.mark.parametrize("case", ["hand", 0, 1, 2, 3])
def test_group_metrics_against_fairlearn(case):
    y, p, a = (Y, P, A) if case == "hand" else _random_binary(case)[:3]
    ref = _fairlearn_refs(y, p, a)
    np.testing.assert_allclose(M.true_positive_rates(y, p, a), ref["tpr"])
    np.testing.assert_allclose(M.false_positive_rates(y, p, a), ref["fpr"])
    assert M.equalized_odds_mean(y, p, a) == pytest.approx(ref["eo_mean"])           # AIM-Fair EO
    assert M.equalized_odds_sum(y, p, a) == pytest.approx(2 * ref["eo_mean"])        # GCM ΔEO
    assert max(M.delta_tpr(y, p, a), M.delta_fpr(y, p, a)) == pytest.approx(ref["eo_worst"])
    assert M.equalized_odds_max(y, p, a) == pytest.approx(ref["eo_worst"])         # AIM-Fair tables' EO
    assert M.demographic_parity_difference(y, p, a) == pytest.approx(ref["dp"])
    assert M.worst_group_accuracy(y, p, a) == pytest.approx(ref["wst"])


def test_equalized_odds_max_by_hand():
    # a=0: TPR 2/2, FPR 0/2; a=1: TPR 1/2, FPR 2/2 -> ΔTPR 0.5, ΔFPR 1 (the FPR gap is the worst)
    y = [1, 1, 0, 0, 1, 1, 0, 0]
    p = [1, 1, 0, 0, 1, 0, 1, 1]
    a = [0, 0, 0, 0, 1, 1, 1, 1]
    assert M.equalized_odds_max(y, p, a) == pytest.approx(1.0)
    assert M.equalized_odds_max(y, p, [1 - g for g in a]) == pytest.approx(1.0)      # symmetric
    assert M.equalized_odds_mean(y, p, a) == pytest.approx(0.75)
    assert M.equalized_odds_max(np.array(y), np.array(p), np.array(a)) == pytest.approx(
        fl.equalized_odds_difference(np.array(y), np.array(p), sensitive_features=np.array(a)))
    # from cell accuracies acc[y, a]: the gaps are |acc[1,0] - acc[1,1]| and |acc[0,0] - acc[0,1]|
    c = M.cell_accuracies(y, p, a)
    assert M.equalized_odds_max(y, p, a) == pytest.approx(max(abs(c[1, 0] - c[1, 1]), abs(c[0, 0] - c[0, 1])))


def test_aimfair_eq9_average_over_all_four_terms():
    # eq. 9: average over (y, ŷ) of |P_s0(Ŷ=ŷ|Y=y) - P_s1(Ŷ=ŷ|Y=y)|
    y, p, a, _ = _random_binary(7)
    terms = []
    for yy in (0, 1):
        for yh in (0, 1):
            r = [np.mean(p[(y == yy) & (a == g)] == yh) for g in (0, 1)]
            terms.append(abs(r[0] - r[1]))
    assert M.equalized_odds_mean(y, p, a) == pytest.approx(np.mean(terms))


def test_aggregate_cell_accuracies_averages_cells_first():
    c1 = [[0.9, 0.5], [0.7, 0.8]]
    c2 = [[0.5, 0.9], [0.8, 0.7]]
    agg = M.aggregate_cell_accuracies([c1, c2])
    np.testing.assert_allclose(agg["cells"], [[0.7, 0.7], [0.75, 0.75]])
    assert agg["wst"] == pytest.approx(0.7)            # the mean of per-seed minima would be 0.5
    assert agg["std"] == pytest.approx(0.025)
    with pytest.raises(ValueError, match="shape"):
        M.aggregate_cell_accuracies(c1)


def test_average_precision_matches_sklearn():
    y, _, _, score = _random_binary(3)
    assert M.average_precision(y, score) == pytest.approx(skm.average_precision_score(y, score))
    # rank-based: logits and probabilities give the same AP
    assert M.average_precision(y, 1 / (1 + np.exp(-score))) == pytest.approx(M.average_precision(y, score))
    # hand example: scores ranked 0.9(+) 0.8(-) 0.7(+) 0.1(-) -> AP = 1/2 (1 + 2/3)
    assert M.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="no positives"):
        M.average_precision([0, 0], [0.2, 0.3])
    assert np.isnan(M.average_precision([0, 0], [0.2, 0.3], nan_ok=True))


# --- degenerate groups ----------------------------------------------------------------------------------
def test_group_without_positives_raises_or_nan():
    y = np.array([1, 0, 1, 0, 0, 0])
    p = np.array([1, 0, 0, 1, 0, 1])
    a = np.array([0, 0, 0, 1, 1, 1])          # group a=1 has no y=1
    with pytest.raises(ValueError, match="a=1"):
        M.true_positive_rates(y, p, a)
    for f in (M.delta_tpr, M.equalized_odds_sum, M.equalized_odds_mean, M.equalized_odds_max,
              M.equal_opportunity_ratio,
              M.worst_group_accuracy, M.group_accuracy_std):
        with pytest.raises(ValueError, match="a=1"):
            f(y, p, a)
        assert np.isnan(f(y, p, a, nan_ok=True))
    tpr = M.true_positive_rates(y, p, a, nan_ok=True)
    assert tpr[0] == pytest.approx(0.5) and np.isnan(tpr[1])
    # quantities that do not need positives of a=1 stay defined
    np.testing.assert_allclose(M.false_positive_rates(y, p, a), [0.0, 2 / 3])
    assert M.demographic_parity_difference(y, p, a) == pytest.approx(1 / 3)
    rep = M.group_report(y, p, a, nan_ok=True)
    assert np.isnan(rep["tpr_a1"]) and np.isnan(rep["eo_sum"]) and np.isnan(rep["wst"])
    assert rep["fpr_a1"] == pytest.approx(2 / 3) and rep["dp_diff"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        M.group_report(y, p, a)


def test_group_without_negatives_and_empty_group():
    y, p, a = [1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 0, 0]   # a=1 has no y=0
    with pytest.raises(ValueError, match="FPR undefined for group a=1"):
        M.false_positive_rates(y, p, a)
    with pytest.raises(ValueError, match="a=1"):
        M.selection_rates([1, 0], [0, 0])                 # a=1 has no samples at all


def test_eop_undefined_when_privileged_tpr_is_zero():
    y, p, a = [1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 1, 1]
    with pytest.raises(ValueError, match="privileged"):
        M.equal_opportunity_ratio(y, p, a)
    assert np.isnan(M.equal_opportunity_ratio(y, p, a, nan_ok=True))


def test_binary_inputs_are_validated():
    with pytest.raises(ValueError, match="binary"):
        M.equalized_odds_sum([0, 1, 2], [0, 1, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="binary"):
        M.equalized_odds_sum([0, 1, 1], [0, 1, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="same length"):
        M.equalized_odds_sum([0, 1, 1], [0, 1], [0, 1, 1])


# --- Wang et al. (2020) CIFAR-10S bias --------------------------------------------------------------------
def test_cifar10s_bias_by_hand():
    color = [0, 0, 1, 2]      # rates .50 .25 .25
    gray = [0, 1, 1, 1]       # rates .25 .75 .00
    p = np.r_[color, gray]
    a = np.r_[np.ones(4, int), np.zeros(4, int)]
    per = M.cifar10s_bias(p, a, per_class=True)
    np.testing.assert_allclose(per, [0.5 / 0.75 - 0.5, 0.75 / 1.0 - 0.5, 0.25 / 0.25 - 0.5])
    assert M.cifar10s_bias(p, a) == pytest.approx(11 / 36)
    assert M.cifar10s_bias(p, 1 - a) == pytest.approx(11 / 36)              # symmetric in the domains
    # counts (Wang et al.) = rates when both domains have the same size; duplicating one domain
    # changes counts but not rates
    p2, a2 = np.r_[color, color, gray], np.r_[np.ones(8, int), np.zeros(4, int)]
    assert M.cifar10s_bias(p2, a2) == pytest.approx(11 / 36)


def test_cifar10s_bias_properties_and_degenerate():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 10, 1000)
    a = np.r_[np.ones(1000, int), np.zeros(1000, int)]
    assert M.cifar10s_bias(np.r_[pred, pred], a) == pytest.approx(0.0)      # domain-blind model
    # fully domain-separated predictions: classes 0-4 only in colour, 5-9 only in gray -> 0.5
    sep = np.r_[pred % 5, 5 + pred % 5]
    assert M.cifar10s_bias(sep, a) == pytest.approx(0.5)
    val = M.cifar10s_bias(rng.integers(0, 10, 2000), a)
    assert 0 <= val <= 0.5
    with pytest.raises(ValueError, match=r"classes \[3\]"):
        M.cifar10s_bias([0, 1, 2, 0], [1, 1, 0, 0], n_classes=4)
    assert np.isnan(M.cifar10s_bias([0, 1, 2, 0], [1, 1, 0, 0], n_classes=4, nan_ok=True))
    with pytest.raises(ValueError, match="a=0"):
        M.cifar10s_bias([0, 1], [1, 1])


def test_cifar10s_bias_validates_inputs():
    with pytest.raises(ValueError, match="same length"):
        M.cifar10s_bias([0, 1, 2], [1, 0])
    with pytest.raises(ValueError, match="n_classes=3"):
        M.cifar10s_bias([0, 3], [1, 0], n_classes=3)
    with pytest.raises(ValueError, match="non-negative"):
        M.cifar10s_bias([0, -1], [1, 0], n_classes=3)
    with pytest.raises(ValueError, match="binary"):
        M.cifar10s_bias([0, 1, 1], [1, 0, 2])
    with pytest.raises(ValueError, match="integer"):
        M.cifar10s_bias([0.5, 1], [1, 0])


# --- the report ----------------------------------------------------------------------------------------------
def test_group_report_is_consistent():
    y, p, a, score = _random_binary(5)
    rep = M.group_report(y, p, a, scores=score)
    expected_keys = {"acc", "tpr_a0", "tpr_a1", "fpr_a0", "fpr_a1", "delta_tpr", "delta_fpr", "eo_sum",
                     "eo_mean", "eop", "sel_a0", "sel_a1", "dp_diff", "acc_a0", "acc_a1", "acc_y0_a0",
                     "acc_y0_a1", "acc_y1_a0", "acc_y1_a1", "wst", "std", "ap"}
    assert set(rep) == expected_keys
    assert all(isinstance(v, float) for v in rep.values())
    assert rep["eo_sum"] == pytest.approx(2 * rep["eo_mean"])
    assert rep["eo_sum"] == pytest.approx(M.equalized_odds_sum(y, p, a))
    assert rep["eop"] == pytest.approx(rep["tpr_a0"] / rep["tpr_a1"])
    assert rep["wst"] == pytest.approx(M.worst_group_accuracy(y, p, a))
    assert rep["std"] == pytest.approx(M.group_accuracy_std(y, p, a))
    assert rep["dp_diff"] == pytest.approx(M.demographic_parity_difference(y, p, a))
    assert rep["ap"] == pytest.approx(skm.average_precision_score(y, score))
    assert rep["acc"] == pytest.approx(skm.accuracy_score(y, p))
    assert "ap" not in M.group_report(y, p, a)
