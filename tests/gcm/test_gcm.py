"""fairbook.gcm: per-group gradients (eq. 7, vs manual backward), r̂ (eqs. 6, 8, 9, by hand), the GCM
regulariser (eqs. 10, 12, 13, 14: by hand, vs numpy, finite differences), baselines (EOR, IGA eq. 16,
direct aligning eq. 17, adversarial debiasing, fairlearn), evaluation (vs fairlearn/sklearn), Table 1
bookkeeping (vs the engine's batches) and a tiny end-to-end fit."""
import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import average_precision_score
from torch import nn

from fairbook import gcm, models, train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Keep CPU use light (another job shares the machine); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- tiny data -----------------------------------------------------------------------------------------
def _biased(n=400, d=4, seed=0):
    """Synthetic biased data: a=1 (70%) has more positives and feature 0 leaks a."""
    rng = np.random.default_rng(seed)
    a = (rng.uniform(size=n) < 0.7).astype(np.int64)
    y = (rng.uniform(size=n) < np.where(a == 1, 0.45, 0.15)).astype(np.int64)
    X = rng.normal(size=(n, d)) + y[:, None]
    X[:, 0] += 1.5 * a
    return X.astype(np.float32), y, a


def _linear(w, b, dtype=torch.float32):
    m = nn.Linear(len(w), 1).to(dtype)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([w], dtype=dtype))
        m.bias.fill_(b)
    return m


def _tanh_mlp(d=3, h=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, 1)).to(dtype)


def _numpy_cells(X, y, a, w, b):
    """Per-cell mean-BCE gradients (g_w = mean((p - y) x), g_b = mean(p - y)) and eq. 12 confidences of a
    logistic model, in numpy: an independent reference."""
    p = 1 / (1 + np.exp(-(X @ np.asarray(w) + b)))
    g, c, n = {}, {}, {}
    for ai, yi in gcm.CELLS:
        m = (a == ai) & (y == yi)
        r = p[m] - y[m]
        g[(ai, yi)] = (np.mean(r[:, None] * X[m], axis=0), np.array([r.mean()]))
        c[(ai, yi)] = p[m].mean() if yi == 1 else 1 - p[m].mean()
        n[(ai, yi)] = m.sum()
    return g, c, n


def _np_penalty(g, W, form):
    tot = 0.0
    for yy in (0, 1):
        for g0, g1 in zip(g[(0, yy)], g[(1, yy)]):
            if form == "paper":
                tot += np.abs(W[(0, yy)] * np.abs(g0) - W[(1, yy)] * np.abs(g1)).sum()
            else:
                tot += np.abs(W[(0, yy)] * g0 ** 2 - W[(1, yy)] * g1 ** 2).sum()
    return tot


def _gg(cells):
    """A GroupGradients with names w (2,), b (1,) from {(a, y): (w-list, b-list)}."""
    return gcm.GroupGradients(["w", "b"], {k: (torch.tensor(v[0]), torch.tensor(v[1])) for k, v in cells.items()},
                              {k: 1 for k in cells})


HAND = {(0, 0): ([1.0, -2.0], [0.5]), (1, 0): ([3.0, 1.0], [-0.5]),
        (0, 1): ([-1.0, 2.0], [1.0]), (1, 1): ([0.5, 0.5], [2.0])}


# --- eq. 7: per-group gradients -----------------------------------------------------------------------
def test_group_gradients_match_manual_per_group_backward():
    X, y, a = _biased(n=60)
    model = _tanh_mlp(d=4, dtype=torch.float32)
    gg = gcm.group_gradients(model, gcm.make_batch(model, X, y, a))
    assert gg.names == [n for n, _ in model.named_parameters()]
    for ai, yi in gcm.CELLS:
        m = (a == ai) & (y == yi)
        assert gg.sizes[(ai, yi)] == m.sum() > 0
        model.zero_grad()
        out = model(torch.as_tensor(X[m])).squeeze(1)
        nn.BCEWithLogitsLoss()(out, torch.as_tensor(y[m]).float()).backward()
        for g, (_, p) in zip(gg.grads[(ai, yi)], model.named_parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


# --- eqs. 6, 8, 9: r̂ by hand ---------------------------------------------------------------------------
def _hand_batch():
    """Zero-initialised logistic model: p = 0.5 everywhere, so g_w = ±0.5 · mean(x) per cell."""
    X = np.array([[1, 2], [3, 0],            # (a=0, y=0): mean [2, 1]  -> g_w = [1, .5],   g_b = .5
                  [2, 2],                    # (a=1, y=0): mean [2, 2]  -> g_w = [1, 1],    g_b = .5
                  [4, -2],                   # (a=0, y=1): mean [4, -2] -> g_w = [-2, 1],   g_b = -.5
                  [1, 1], [1, -1], [2, 0]],  # (a=1, y=1): mean [4/3, 0] -> g_w = [-2/3, 0], g_b = -.5
                 dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    a = np.array([0, 0, 1, 0, 1, 1, 1])
    model = _linear([0.0, 0.0], 0.0)
    return model, gcm.make_batch(model, X, y, a)


def test_disparity_by_hand_on_a_linear_model():
    model, batch = _hand_batch()
    gg = gcm.group_gradients(model, batch)
    assert gg.sizes == {(0, 0): 2, (1, 0): 1, (0, 1): 1, (1, 1): 3}
    d = gcm.contribution_disparity(gg)
    # y = 0: r_w = 2·[1, .5] / (1·[1, 1]) = [2, 1];  r_b = 2·.5 / (1·.5) = 2
    np.testing.assert_allclose(d.per_parameter[0]["weight"].numpy().ravel(), [2, 1], rtol=1e-6)
    assert d.per_layer[0] == pytest.approx({"weight": 1.5, "bias": 2.0})
    assert d.model[0] == pytest.approx(5 / 3)
    # y = 1: r_w = 1·[2, 1] / (3·[2/3, 0]) = [1, undefined];  r_b = .5 / (3·.5) = 1/3
    r1 = d.per_parameter[1]["weight"].numpy().ravel()
    assert r1[0] == pytest.approx(1.0) and np.isnan(r1[1])
    assert d.per_layer[1] == pytest.approx({"weight": 1.0, "bias": 1 / 3})
    assert d.model[1] == pytest.approx(2 / 3) and d.undefined == {0: 0, 1: 1}
    # without the |Z| factor: y = 0 -> [1, .5], 1 -> mean 5/6
    assert gcm.contribution_disparity(gg, size_weighted=False).model[0] == pytest.approx(5 / 6)
    # the code's folded per-tensor ratio of squared norms: y=0: max(2/1.25, ·)=1.6 and 1; y=1: 5/(4/9), 1
    assert gcm.code_disparity(gg) == pytest.approx({0: 1.3, 1: (11.25 + 1) / 2})


def test_tracker_records_every_iteration_and_nan_for_missing_cells():
    model, batch = _hand_batch()
    tr = gcm.DisparityTracker()
    out = tr(model, batch)
    assert out.item() == 0.0
    keep = batch["y"] == 0  # only y = 0 cells
    tr(model, {**batch, "logits": model(batch["x"][keep]), "y": batch["y"][keep],
               "groups": batch["groups"][keep]})
    tr.on_epoch_end(1)
    tr(model, batch)
    h = tr.history
    assert list(h["step"]) == [0, 1, 2] and list(h["epoch"]) == [1, 1, 2]
    assert h.loc[0, "r_y0"] == pytest.approx(5 / 3) and h.loc[0, "r_y1"] == pytest.approx(2 / 3)
    assert h.loc[1, "r_y0"] == pytest.approx(5 / 3) and np.isnan(h.loc[1, "r_y1"])
    assert h.loc[0, "r_y0[bias]"] == pytest.approx(2.0)
    assert list(h.loc[0, ["n_00", "n_01", "n_10", "n_11"]]) == [2, 1, 1, 3]
    tr2 = gcm.DisparityTracker(every=2, per_layer=False)
    for _ in range(3):
        tr2(model, batch)
    assert len(tr2.history) == 2 and "r_y0[bias]" not in tr2.history


def test_permute_within_keeps_cell_sizes_and_is_seeded():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    a = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0, 1, 1])
    p1 = gcm.permute_within(a, y, np.random.default_rng([3, 0, 0]))
    p2 = gcm.permute_within(a, y, np.random.default_rng([3, 0, 0]))
    assert torch.equal(p1, p2) and p1.dtype == a.dtype
    for yy in (0, 1):
        assert int(p1[y == yy].sum()) == int(a[y == yy].sum())  # |Z_1y| and |Z_0y| unchanged
    draws = {tuple(gcm.permute_within(a, y, np.random.default_rng([3, 0, j])).tolist()) for j in range(20)}
    assert len(draws) > 5


def test_tracker_permuted_null_columns_and_training_unchanged():
    """n_permutations adds r_y*_perm* columns measured with a permuted within y, leaves the true
    columns as they were and does not change training (the permutations have their own generator)."""
    X, y, a = _biased(n=200, d=4, seed=3)

    def run(k):
        tr = gcm.DisparityTracker(per_layer=False, n_permutations=k, perm_seed=7)
        model = train.seeded(lambda: models.MLP(4, (8,), 1), 0)
        gcm.fit_method("oversampling", model, X, y, a, tracker=tr, epochs=1, steps_per_epoch=3, batch_size=40,
                       optim=train.Optim("adam", lr=1e-2), seed=0)
        return tr.history, model

    h0, m0 = run(0)
    h2, m2 = run(2)
    assert all(torch.equal(p, q) for p, q in zip(m0.parameters(), m2.parameters()))
    pd.testing.assert_frame_equal(h0, h2[h0.columns])
    assert {"r_y0_perm0", "r_y1_perm1", "undefined_y0_perm1"} <= set(h2.columns)
    assert np.isfinite(h2["r_y0_perm0"]).all() and not np.allclose(h2["r_y0_perm0"], h2["r_y0"])
    assert (h2["elements"] == sum(p.numel() for p in m2.parameters())).all()
    h2b, _ = run(2)
    pd.testing.assert_frame_equal(h2, h2b)
    with pytest.raises(ValueError, match="n_permutations"):
        gcm.DisparityTracker(n_permutations=-1)


# --- eqs. 10, 12, 13: the regulariser -------------------------------------------------------------------
def test_gcm_penalty_by_hand_both_forms():
    gg = _gg(HAND)
    W = {(0, 0): 0.5, (1, 0): 2.0, (0, 1): 1.0, (1, 1): 0.25}
    # paper: y0 |.5-6| + |1-2| + |.25-1| = 7.25; y1 |1-.125| + |2-.125| + |1-.5| = 3.25
    assert gcm.gcm_penalty(gg, W, "paper").item() == pytest.approx(10.5)
    # squared: y0 |.5-18| + |2-2| + |.125-.5| = 17.875; y1 |1-.0625| + |4-.0625| + |1-1| = 4.875
    assert gcm.gcm_penalty(gg, W, "squared").item() == pytest.approx(22.75)
    # weights None = eq. 10 (T = 0): y0 2 + 1 + 0; y1 .5 + 1.5 + 1
    assert gcm.gcm_penalty(gg, None, "paper").item() == pytest.approx(6.0)


@pytest.mark.parametrize("form", gcm.regularizer.FORMS)
@pytest.mark.parametrize("T", [0.0, 2.0])
def test_gcm_loss_matches_numpy_on_logistic_model(form, T):
    X, y, a = _biased(n=50, d=2, seed=1)
    w, b = [0.3, -0.7], 0.1
    model = _linear(w, b, torch.float64)
    reg = gcm.gcm_loss(0.7, T=T, form=form)
    val = reg(model, gcm.make_batch(model, X.astype(np.float64), y, a))
    g, c, _ = _numpy_cells(X.astype(np.float64), y, a, w, b)
    W = {k: (1.0 if T == 0 else v ** T) for k, v in c.items()}
    assert val.item() == pytest.approx(0.7 * _np_penalty(g, W, form), rel=1e-9)
    for k in gcm.CELLS:
        assert reg.last["confidence"][k].item() == pytest.approx(c[k], rel=1e-12)
        # T = 0 gives weights 1, T = 2 squares the mean confidences
        assert reg.last["weights"][k].item() == pytest.approx(1.0 if T == 0 else c[k] ** 2, rel=1e-12)


def test_confidence_weights_temperature():
    conf = {(0, 0): torch.tensor(0.0), (1, 1): torch.tensor(0.6)}
    assert {k: v.item() for k, v in gcm.confidence_weights(conf, 0).items()} == {(0, 0): 1.0, (1, 1): 1.0}
    assert gcm.confidence_weights(conf, 2)[(1, 1)].item() == pytest.approx(0.36)
    with pytest.raises(ValueError, match="T must be"):
        gcm.confidence_weights(conf, -1)


@pytest.mark.parametrize("T", [0.0, 2.0])
@pytest.mark.parametrize("form", gcm.regularizer.FORMS)
def test_regulariser_gradient_equals_finite_differences(form, T):
    """Double backward: the gradient of λ·L_fair w.r.t. the weights equals central differences of
    L_fair (the weights W = c^T are constants for the optimiser, so FD holds them at their value)."""
    X, y, a = _biased(n=40, d=3, seed=2)
    X = torch.as_tensor(X, dtype=torch.float64)
    model = _tanh_mlp(d=3, h=4, seed=3)
    reg = gcm.gcm_loss(1.5, T=T, form=form)
    model.zero_grad()
    reg(model, gcm.make_batch(model, X, y, a)).backward()
    W = {k: v.clone() for k, v in reg.last["weights"].items()}

    def value():
        return 1.5 * gcm.gcm_penalty(gcm.group_gradients(model, gcm.make_batch(model, X, y, a)), W, form).item()

    params = list(model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in params) > 1e-6  # the regulariser reaches the weights
    rng, eps = np.random.default_rng(0), 1e-6
    for p in params:
        for j in rng.choice(p.numel(), size=min(3, p.numel()), replace=False):
            fd = []
            for step in (eps, -2 * eps):
                with torch.no_grad():
                    p.view(-1)[j] += step
                fd.append(value())
            with torch.no_grad():
                p.view(-1)[j] += eps
            assert p.grad.view(-1)[j].item() == pytest.approx((fd[0] - fd[1]) / (2 * eps), rel=1e-4, abs=1e-8)


def test_layer_and_bias_restriction():
    torch.manual_seed(0)
    mlp = models.MLP(4, (5, 3), 1)
    assert gcm.layer_parameters(mlp, 0, "bias") == ["body.1.bias"]
    assert gcm.layer_parameters(mlp, [0, 1], "weight") == ["body.1.weight", "body.3.weight"]
    assert gcm.layer_parameters(mlp, 2) == ["head.weight", "head.bias"]
    assert [n for n, _ in gcm.select_parameters(mlp, ["head"])] == ["head.weight", "head.bias"]
    X, y, a = _biased(n=80, d=4)
    batch = gcm.make_batch(mlp, X, y, a)
    full = gcm.group_gradients(mlp, batch)
    per_tensor = {n: gcm.gcm_penalty(gcm.GroupGradients([n], {k: (v[i],) for k, v in full.grads.items()},
                                                         full.sizes)).item()
                  for i, n in enumerate(full.names)}
    for kind in ("bias", "weight"):
        gg = gcm.group_gradients(mlp, batch, kind=kind)
        assert all(n.endswith(kind) for n in gg.names) and len(gg.names) == 3
        assert gcm.gcm_penalty(gg).item() == pytest.approx(sum(v for n, v in per_tensor.items()
                                                               if n.endswith(kind)), rel=1e-6)
    bias0 = gcm.gcm_loss(1.0, params=gcm.layer_parameters(mlp, 0, "bias"))
    assert bias0(mlp, batch).item() == pytest.approx(per_tensor["body.1.bias"], rel=1e-6)
    assert bias0.last["names"] == ["body.1.bias"]
    # frozen tensors take no gradient and are left out
    mlp.head.bias.requires_grad_(False)
    assert "head.bias" not in gcm.group_gradients(mlp, gcm.make_batch(mlp, X, y, a)).names
    with pytest.raises(ValueError, match="unknown parameter/module names"):
        gcm.gcm_loss(1.0, params=["body.9"])(mlp, batch)
    with pytest.raises(ValueError, match="layer indices"):
        gcm.layer_parameters(mlp, 3)


# --- baselines -----------------------------------------------------------------------------------------
def test_eor_penalty_zero_when_group_rates_equal():
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    a = torch.tensor([0, 0, 1, 0, 1, 1])
    equal = torch.tensor([[-1.0], [1.0], [0.0], [2.0], [2.0], [2.0]])  # mean p: .5/.5 and σ(2)/σ(2)
    assert gcm.baselines.eor_penalty(equal, y, a).item() == pytest.approx(0.0, abs=1e-7)
    unequal = equal.clone()
    unequal[4:] = 0.0  # (a=1, y=1): p = .5
    assert gcm.baselines.eor_penalty(unequal, y, a).item() == pytest.approx(1 / (1 + np.exp(-2)) - 0.5)
    two = torch.cat([torch.zeros_like(unequal), unequal], 1)  # softmax model: same p
    assert gcm.baselines.eor_penalty(two, y, a).item() == pytest.approx(gcm.baselines.eor_penalty(unequal, y, a).item())
    batch = {"logits": unequal, "y": y, "groups": a}
    assert gcm.baselines.eor_loss(3.0)(None, batch).item() == pytest.approx(3 * (1 / (1 + np.exp(-2)) - 0.5))


def test_iga_and_direct_aligning_by_hand():
    t = torch.tensor
    grads, batch = {0: [t([1.0, 2.0])], 1: [t([3.0, 0.0])]}, [t([1.0, 1.0])]
    assert gcm.baselines.iga_penalty(grads, batch).item() == pytest.approx(0 + 1 + 4 + 1)
    assert gcm.baselines.iga_penalty(grads, batch, "abs").item() == pytest.approx(0 + 1 + 2 + 1)
    gg = _gg(HAND)
    # y0: |1-3| + |-2-1| + |.5+.5| = 6; y1: |-1-.5| + |2-.5| + |1-2| = 4
    assert gcm.baselines.direct_aligning_penalty(gg).item() == pytest.approx(10.0)
    assert gcm.baselines.direct_aligning_penalty(gg, "squared").item() == pytest.approx(4 + 9 + 1 + 2.25 + 2.25 + 1)


def test_iga_and_direct_losses_match_numpy_on_logistic_model():
    X, y, a = _biased(n=50, d=2, seed=4)
    X = X.astype(np.float64)
    w, b = [0.2, 0.5], -0.3
    model = _linear(w, b, torch.float64)
    batch = gcm.make_batch(model, X, y, a)
    p = 1 / (1 + np.exp(-(X @ np.asarray(w) + b)))

    def grad(m):
        r = p[m] - y[m]
        return np.concatenate([np.mean(r[:, None] * X[m], 0), [r.mean()]])

    g_all = grad(np.ones(len(y), bool))
    iga = sum(((grad(a == ai) - g_all) ** 2).sum() for ai in (0, 1))
    assert gcm.baselines.iga_loss(2.0)(model, batch).item() == pytest.approx(2 * iga, rel=1e-9)
    g, _, _ = _numpy_cells(X, y, a, w, b)
    direct = sum(np.abs(np.concatenate(g[(0, yy)]) - np.concatenate(g[(1, yy)])).sum() for yy in (0, 1))
    assert gcm.baselines.direct_aligning_loss(0.5)(model, batch).item() == pytest.approx(0.5 * direct, rel=1e-9)


def test_adversarial_debiasing_projection_and_adversary_update():
    X, y, a = _biased(n=64, d=3, seed=5)
    model = _tanh_mlp(d=3, h=4, seed=1)
    adv = gcm.baselines.adversarial_loss(alpha=0.5, lr=0.05)
    batch = gcm.make_batch(model, X.astype(np.float64), y, a)
    term = adv(model, batch)  # builds and trains the adversary one step
    assert term.item() == 0.0 and "adversary_loss" in adv.last
    before = [q.detach().clone() for q in adv.adversary.parameters()]
    params = list(model.parameters())
    z = gcm.binary_logit(batch["logits"])
    yt, at = batch["y"].double(), batch["groups"]
    gp = torch.autograd.grad(nn.functional.binary_cross_entropy_with_logits(z, yt), params, retain_graph=True)
    ga = torch.autograd.grad(adv.adversary_loss(z, batch["y"], at, frozen=True), params, retain_graph=True)
    model.zero_grad()
    term.backward()
    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])  # noqa: E731
    d = flat([q.grad for q in params])
    gp, ga = flat(gp), flat(ga)
    # Zhang et al.: update = ∇L_P − proj_{∇L_A}∇L_P − α∇L_A; the term supplies all but ∇L_P
    expected = -(gp @ ga) / (ga @ ga) * ga - 0.5 * ga
    torch.testing.assert_close(d, expected, rtol=1e-8, atol=1e-10)
    assert abs(float((gp + d + 0.5 * ga) @ ga)) < 1e-8  # the projected part is orthogonal to ∇L_A
    adv(model, gcm.make_batch(model, X.astype(np.float64), y, a))
    assert any(not torch.equal(b0, q) for b0, q in zip(before, adv.adversary.parameters()))
    rev = gcm.baselines.adversarial_loss(alpha=0.5, projection=False)
    out = rev(model, gcm.make_batch(model, X.astype(np.float64), y, a))
    assert out.item() < 0  # −α·L_A


@pytest.mark.filterwarnings("ignore:Setting a value on a Series via .at")  # fairlearn 0.15 on pandas 3
@pytest.mark.filterwarnings("ignore:Setting an item of incompatible dtype")
def test_fairlearn_baselines_run_and_equalise_odds():
    X, y, a = _biased(n=600, d=4, seed=6)
    pred, score = gcm.baselines.threshold_optimizer_baseline(X, y, a, X, a, seed=0)
    assert pred.shape == score.shape == y.shape and set(np.unique(pred)) <= {0, 1}
    assert np.all((score >= 0) & (score <= 1))
    from sklearn.linear_model import LogisticRegression

    lr_pred = LogisticRegression(max_iter=1000).fit(X, y).predict(X)
    lr_eo = gcm.report(y, lr_pred, a)["delta_eo"]
    assert gcm.report(y, pred, a, score)["delta_eo"] < lr_eo
    pred, score = gcm.baselines.exponentiated_gradient_baseline(X, y, a, X, seed=0, max_iter=10)
    assert pred.shape == y.shape and set(np.unique(pred)) <= {0, 1} and np.all((score >= 0) & (score <= 1))


# --- evaluation ----------------------------------------------------------------------------------------
def test_evaluation_numbers_match_fairlearn_and_sklearn():
    X, y, a = _biased(n=300, d=4, seed=7)
    model = _linear([0.8, 0.2, -0.1, 0.5], -1.0)
    r = gcm.model_report(model, X, y, a)
    logit = X @ np.array([0.8, 0.2, -0.1, 0.5]) - 1.0
    pred = (logit > 0).astype(int)
    assert r["delta_eo"] == pytest.approx(2 * equalized_odds_difference(y, pred, sensitive_features=a,
                                                                        agg="mean"))
    assert r["delta_dp"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=a))
    assert r["ap"] == pytest.approx(average_precision_score(y, logit), rel=1e-6)
    tpr = [pred[(a == g) & (y == 1)].mean() for g in (0, 1)]
    assert r["eop"] == pytest.approx(tpr[0] / tpr[1])
    v = gcm.val_metrics(y, torch.as_tensor(logit[:, None]), a=a)
    assert set(v) == {"ap", "delta_eo", "eop", "eop_folded", "delta_dp"} and v["delta_eo"] == pytest.approx(r["delta_eo"])
    assert v["eop_folded"] == pytest.approx(r["eop_folded"])


# --- Table 1 bookkeeping -------------------------------------------------------------------------------
def test_subgroup_sizes_formula_and_engine_simulation():
    X, y, a = _biased(n=400, d=2, seed=8)
    B = 40
    table = gcm.experiment.subgroup_sizes_per_iteration(y, a, B)
    counts = {f"Z{ai}{yi}": ((a == ai) & (y == yi)).sum() for ai, yi in gcm.CELLS}
    assert dict(table.loc["standard"]) == pytest.approx({k: B * c / 400 for k, c in counts.items()})
    assert dict(table.loc["oversampling"]) == {k: 10.0 for k in counts}
    for sampler in ("shuffle", "group_balanced"):
        seen = []

        def hook(logits, yb, ids, epoch):
            seen.append([int(((a[ids] == ai) & (y[ids] == yi)).sum()) for ai, yi in gcm.CELLS])

        train.fit(nn.Linear(2, 1), X, y, epochs=1, batch_size=B, loss="bce", sampler=sampler, groups=a,
                  select=None, on_logits=hook, optim=train.Optim("sgd", lr=1e-3))
        seen = np.array(seen)
        row = "standard" if sampler == "shuffle" else "oversampling"
        np.testing.assert_allclose(seen.mean(0), table.loc[row].to_numpy())
        if sampler == "group_balanced":
            assert (seen == B // 4).all()
        else:
            assert seen.std(0).sum() > 0  # shuffled batches vary around the expectation


# --- end to end ----------------------------------------------------------------------------------------
def test_tiny_fit_with_gcm_and_tracker():
    X, y, a = _biased(n=400, d=4, seed=9)
    Xv, yv, av = _biased(n=200, d=4, seed=10)
    torch.manual_seed(0)
    model = models.MLP(4, (8,), 1)
    reg, tracker = gcm.gcm_loss(1.0, T=2.0), gcm.DisparityTracker()
    res = train.fit(model, X, y, epochs=2, steps_per_epoch=4, batch_size=32, loss="bce",
                    sampler="group_balanced", groups=a, extra_loss=gcm.combine(reg, tracker),
                    on_epoch_end=tracker.on_epoch_end, optim=train.Optim("adam", lr=1e-2),
                    val=(Xv, yv), val_metrics=gcm.val_metrics, val_context={"a": av},
                    select="delta_eo", mode="min")
    h = res.history
    assert np.isfinite(h["train_loss"]).all() and np.isfinite(h["val_delta_eo"]).all()
    assert res.best_epoch == int(h.loc[h["val_delta_eo"].idxmin(), "epoch"])
    th = tracker.history
    assert len(th) == 8 and list(th["epoch"]) == [1] * 4 + [2] * 4
    assert (th[["n_00", "n_01", "n_10", "n_11"]] == 8).all().all()
    assert np.isfinite(th[["r_y0", "r_y1", "code_y0", "code_y1"]]).all().all()
    assert float(reg.last["reg"]) > 0


@pytest.mark.parametrize("method", gcm.METHODS)
def test_fit_method_every_method_runs(method):
    X, y, a = _biased(n=200, d=4, seed=11)
    torch.manual_seed(0)
    res = gcm.fit_method(method, models.MLP(4, (6,), 1), X, y, a, val=(X, y, a), epochs=1,
                         steps_per_epoch=3, batch_size=16, optim=train.Optim("adam", lr=1e-2))
    assert np.isfinite(res.history["train_loss"]).all() and "val_delta_eo" in res.history


def test_fit_method_with_tracker_and_paper_recipe_keys():
    X, y, a = _biased(n=200, d=4, seed=12)
    tracker = gcm.DisparityTracker(per_layer=False)
    epochs_seen = []
    torch.manual_seed(0)
    gcm.fit_method("gcm", models.MLP(4, (6,), 1), X, y, a, options={"lam": 0.5, "T": 2, "form": "squared"},
                   tracker=tracker, epochs=2, steps_per_epoch=3, batch_size=16,
                   on_epoch_end=lambda e, m, r: epochs_seen.append(e))
    assert epochs_seen == [1, 2] and list(tracker.history["epoch"]) == [1, 1, 1, 2, 2, 2]
    assert (tracker.history["n_01"] == 4).all()
    assert set(gcm.experiment.ADULT_FIT) <= set(train.fit.__code__.co_varnames)


# --- errors --------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="lam must be"):
        gcm.gcm_loss(-0.1)
    with pytest.raises(ValueError, match="T must be"):
        gcm.gcm_loss(1.0, T=-1)
    with pytest.raises(ValueError, match="form must be one of paper, squared"):
        gcm.gcm_loss(1.0, form="l2")
    with pytest.raises(ValueError, match="kind must be"):
        gcm.gcm_loss(1.0, kind="gamma")
    with pytest.raises(ValueError, match="lam must be"):
        gcm.baselines.eor_loss(float("nan"))
    with pytest.raises(ValueError, match="form must be"):
        gcm.baselines.iga_loss(1.0, form="paper")
    with pytest.raises(ValueError, match="no option 'T'"):
        gcm.method_loss("eor", T=2)
    with pytest.raises(ValueError, match="method must be"):
        gcm.method_loss("fairmixup")
    model, batch = _hand_batch()
    with pytest.raises(ValueError, match="unknown parameter/module names"):
        gcm.gcm_loss(1.0, params=["layer7"])(model, batch)
    keep = batch["groups"] == 1
    part = {"logits": model(batch["x"][keep]), "y": batch["y"][keep], "groups": batch["groups"][keep]}
    with pytest.raises(ValueError, match=r"\(a=0, y=0\), \(a=0, y=1\).*group_balanced"):
        gcm.gcm_loss(1.0)(model, part)
    with pytest.raises(ValueError, match="groups=a"):
        gcm.gcm_loss(1.0)(model, {**batch, "groups": None})
    with pytest.raises(ValueError, match="binary"):
        gcm.gcm_loss(1.0)(model, {**batch, "y": batch["y"] * 2})
    with pytest.raises(ValueError, match="multiple of 4"):
        gcm.experiment.subgroup_sizes_per_iteration([0, 1], [0, 1], 10)


def test_check_parameters_rejects_impossible_values():
    from fairbook.errors import ParameterError

    ok = {"batch_size": 200, "temperatures": [0.0, 2.0], "gcm_lams": [0.1], "n_seeds": 3, "image_seeds": 2}
    gcm.chapter.check_parameters(ok)
    with pytest.raises(ParameterError, match="batch_size"):
        gcm.chapter.check_parameters({**ok, "batch_size": 202})
    with pytest.raises(ParameterError, match="gcm_lams"):
        gcm.chapter.check_parameters({**ok, "gcm_lams": []})
    with pytest.raises(ParameterError, match="image_seeds"):
        gcm.chapter.check_parameters({**ok, "image_seeds": 4})


def test_per_group_forward_gives_the_same_gradients_and_penalty_gradient():
    """The authors' separate forward per cell equals slicing the batch's logits for an MLP."""
    torch.manual_seed(0)
    model = models.MLP(5, (6,), 1)
    x = torch.randn(40, 5)
    y = torch.tensor([0, 1] * 20)
    a = torch.tensor([0] * 20 + [1] * 20)
    batch = gcm.make_batch(model, x, y, a)
    shared = gcm.group_gradients(model, batch, create_graph=True)
    split = gcm.group_gradients(model, batch, create_graph=True, per_group_forward=True)
    for cell in gcm.CELLS:
        for g1, g2 in zip(shared.grads[cell], split.grads[cell]):
            assert torch.allclose(g1, g2, atol=1e-6)
    p1 = gcm.gcm_penalty(shared, form="squared")
    p2 = gcm.gcm_penalty(split, form="squared")
    d1 = torch.autograd.grad(p1, list(model.parameters()))
    d2 = torch.autograd.grad(p2, list(model.parameters()))
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(d1, d2))
    with pytest.raises(ValueError, match="batch\\['x'\\]"):
        gcm.group_gradients(model, {k: v for k, v in batch.items() if k != "x"}, per_group_forward=True)


# --- shared per-group forward (PerGroupForward.batch_forward, the engine's batch logits) ---------------------
def _plain(extra_loss):
    """The same loss as a bare function: no ``batch_forward``, so the engine calls ``model(x)``."""
    return lambda model, batch: extra_loss(model, batch)


def test_combine_keeps_the_single_batch_forward():
    reg, tracker = gcm.gcm_loss(1.0), gcm.DisparityTracker()
    both = gcm.combine(reg, tracker)
    assert both.batch_forward == reg.batch_forward
    assert not hasattr(gcm.combine(tracker), "batch_forward")
    assert not hasattr(gcm.combine(gcm.gcm_loss(1.0), gcm.baselines.direct_aligning_loss(1.0)), "batch_forward")

def _counting(model):
    """Record the number of rows of every forward call of ``model`` (a forward hook)."""
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append(len(inp[0])))
    return calls


def _interleaved(n=40, d=5, k=2, seed=0):
    """A shuffled batch whose (a, y) cells are interleaved (never one contiguous block)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    a = (torch.arange(n) // k) % 2
    perm = torch.randperm(n, generator=g)
    return torch.randn(n, d, generator=g), y[perm], a[perm]


class _Scaled(nn.Module):
    """An MLP times a learnable scalar: a tensor outside every nn.Linear, so the shared forward takes
    the per-cell path (one forward per cell) instead of the Linear path (one forward of the batch)."""

    def __init__(self, d, out):
        super().__init__()
        self.mlp, self.scale = models.MLP(d, (6,), out), nn.Parameter(torch.tensor(1.3))

    def forward(self, x):
        return self.mlp(x) * self.scale


#: model builder, and the forwards per step of the shared path for 2k cells
PATHS = {"linear": (lambda d, out: models.MLP(d, (6,), out), lambda cells: 1),
         "per-cell": (_Scaled, lambda cells: cells)}


def _head(model):
    return model.mlp.head if isinstance(model, _Scaled) else model.head


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_shared_forward_assembles_the_batch_logits_in_row_order(k, path):
    x, y, a = _interleaved(k=max(k, 2))
    cell_id = a * 10 + y
    assert (cell_id[1:] != cell_id[:-1]).sum() > 2 * (2 * max(k, 2))  # cells are not contiguous
    torch.manual_seed(1)
    model = PATHS[path][0](5, k)
    calls = _counting(_head(model))
    for reg in (gcm.gcm_loss(1.0, T=2.0), gcm.baselines.direct_aligning_loss(0.5)):
        calls.clear()
        out = reg.batch_forward(model, x, y, a)
        # one forward of the sorted batch, or one per cell
        assert len(calls) == PATHS[path][1](2 * max(k, 2)) and sum(calls) == len(x)
        with torch.no_grad():
            ref = model(x)
        assert out.shape == ref.shape and out.requires_grad
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # the same with groups as a numpy array (the engine passes tensors; make_batch-style callers may not)
    torch.testing.assert_close(gcm.gcm_loss(1.0).batch_forward(model, x, y, a.numpy()), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_shared_forward_takes_cell_by_cell_batches_as_views(path):
    """The group samplers' batches come cell by cell: the forward reads the batch itself (Linear path)
    or each cell's slice of it (per-cell path), no gather; the logits are the whole batch's."""
    x, y, a = _interleaved(n=40, seed=3)
    order = torch.argsort(a * 2 + y, stable=True)
    x, y, a = x[order].contiguous(), y[order], a[order]
    torch.manual_seed(0)
    model = PATHS[path][0](5, 1)
    seen = []
    model.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    out = gcm.gcm_loss(1.0).batch_forward(model, x, y, a)
    starts = [0] + torch.cumsum(torch.bincount(a * 2 + y), 0).tolist()[:-1]
    assert [t.data_ptr() for t in seen] == [x[s:].data_ptr() for s in starts[:PATHS[path][1](4)]]
    torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_shared_forward_gradients_reuse_the_cell_outputs(path):
    """gradients() after forward() takes no new forward and gives the cells' gradients and the penalty's
    double-backward gradient of separate per-cell passes."""
    x, y, a = _interleaved(n=48, seed=2)
    torch.manual_seed(0)
    model = PATHS[path][0](5, 1)
    calls = _counting(_head(model))
    for reg, penalty in ((gcm.gcm_loss(1.3, T=2.0, form="squared"), None),
                         (gcm.baselines.direct_aligning_loss(0.7, form="abs"), gcm.baselines.direct_aligning_penalty)):
        calls.clear()
        logits = reg.batch_forward(model, x, y, a)
        batch = {"x": x, "y": y, "ids": torch.arange(len(x)), "groups": a, "logits": logits}
        term = reg(model, batch)
        assert len(calls) == PATHS[path][1](4)  # the shared forward only
        assert reg._cached is None  # consumed
        d_shared = torch.autograd.grad(term, list(model.parameters()))
        calls.clear()
        ref_batch = gcm.make_batch(model, x, y, a)
        ref = reg(model, ref_batch)  # no forward() first: separate per-group forwards of its own
        assert len(calls) == 1 + 4
        assert term.item() == pytest.approx(ref.item(), rel=1e-5)
        d_ref = torch.autograd.grad(ref, list(model.parameters()))
        for u, v in zip(d_shared, d_ref):
            torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-6)
    # a stale cache (forward on another batch) is not used for a different x
    reg = gcm.gcm_loss(1.0)
    reg.batch_forward(model, x[:24].clone(), y[:24], a[:24])
    other = gcm.make_batch(model, x, y, a)
    assert reg(model, other).item() == pytest.approx(gcm.gcm_loss(1.0)(model, other).item(), rel=1e-6)


def _sorted_cells(x, y, a, k=2):
    order = torch.argsort(a * k + y, stable=True)
    return x[order].contiguous(), y[order], a[order]


@pytest.mark.parametrize("equal", [True, False])
@pytest.mark.parametrize("out", [1, 2, 3])
def test_linear_group_gradients_equal_one_backward_per_cell(out, equal):
    """δ_cᵀh_c from one backward of the batch = autograd's gradient of each cell's mean loss, for equal
    cells (one bmm) and unequal ones, one logit, two and three softmax outputs; and the penalty's
    double backward through them is the per-cell one."""
    k = max(out, 2)
    g = torch.Generator().manual_seed(out)
    sizes = [5] * (2 * k) if equal else [3 + i for i in range(2 * k)]
    cell_ids = torch.repeat_interleave(torch.arange(2 * k), torch.tensor(sizes))
    a, y = cell_ids // k, cell_ids % k
    x = torch.randn(len(a), 4, generator=g)
    torch.manual_seed(0)
    model = models.MLP(4, (6, 5), out)
    named = gcm.select_parameters(model)
    owners = gcm.gradients._linear_owners(model, named)
    logits, taps = gcm.gradients._tapped_forward(model, x, owners)
    fast = gcm.linear_group_gradients(named, owners, taps, gcm.sample_losses(logits, y), sizes, k)
    ref = gcm.group_gradients(model, gcm.make_batch(model, x, y, a), create_graph=True, per_group_forward=True)
    assert fast.names == ref.names and fast.sizes == ref.sizes and list(fast.grads) == gcm.cells(k)
    for cell in gcm.cells(k):
        for u, v in zip(fast.grads[cell], ref.grads[cell]):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
    for form in gcm.regularizer.FORMS:
        d_fast = torch.autograd.grad(gcm.gcm_penalty(fast, form=form), list(model.parameters()), retain_graph=True)
        d_ref = torch.autograd.grad(gcm.gcm_penalty(ref, form=form), list(model.parameters()), retain_graph=True)
        for u, v in zip(d_fast, d_ref):
            torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-6)


def test_linear_path_with_a_restriction_and_other_parameters():
    """Restricted to Linear tensors (the head's bias), a model with a tensor outside every Linear takes
    the Linear path too (one forward), with the per-cell gradients and penalty gradient."""
    x, y, a = _sorted_cells(*_interleaved(n=40, seed=6))
    torch.manual_seed(0)
    model = _Scaled(5, 1)
    calls = _counting(model.mlp.head)
    for params, kind in ((["mlp.head"], "bias"), (["mlp.body.1", "mlp.head"], "weight")):
        reg = gcm.gcm_loss(1.0, T=2.0, params=params, kind=kind)
        calls.clear()
        logits = reg.batch_forward(model, x, y, a)
        assert calls == [40] and reg._cached[1][0] == "linear"
        term = reg(model, {"x": x, "y": y, "groups": a, "logits": logits})
        ref = gcm.gcm_loss(1.0, T=2.0, params=params, kind=kind)(model, gcm.make_batch(model, x, y, a))
        assert term.item() == pytest.approx(ref.item(), rel=1e-5)
        for u, v in zip(torch.autograd.grad(term, list(model.parameters()), allow_unused=True),
                        torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)):
            assert (u is None) == (v is None)
            if u is not None:
                torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-6)
    # a tensor outside every Linear selected: the per-cell path
    reg = gcm.gcm_loss(1.0)
    calls.clear()
    reg.batch_forward(model, x, y, a)
    assert len(calls) == 4 and reg._cached[1][0] == "cells"


class _Tied(nn.Module):
    """One Linear applied twice (weight sharing): the per-cell formula δ_cᵀh_c does not hold."""

    def __init__(self):
        super().__init__()
        self.lin, self.head = nn.Linear(5, 5), nn.Linear(5, 1)

    def forward(self, x):
        return self.head(torch.relu(self.lin(torch.relu(self.lin(x)))))


class _SharedWeight(nn.Module):
    """Two Linear modules with one weight tensor (it is listed once, under the first)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(5, 5), nn.Linear(5, 5), nn.Linear(5, 1)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


class _Rows(nn.Module):
    """A Linear on the flattened rows of a (n, 3, 5) input: 3n rows, not the batch's n."""

    def __init__(self):
        super().__init__()
        self.lin, self.head = nn.Linear(5, 2), nn.Linear(6, 1)

    def forward(self, x):
        return self.head(torch.relu(self.lin(x.reshape(-1, 5))).reshape(len(x), -1))


class _Residual(nn.Module):
    """The Linear's output changed in place (``z += x``)."""

    def __init__(self):
        super().__init__()
        self.lin, self.head = nn.Linear(5, 5), nn.Linear(5, 1)

    def forward(self, x):
        z = self.lin(x)
        z += x
        return self.head(torch.relu(z))


def _weight_normed():
    model = models.MLP(5, (6,), 1)
    torch.nn.utils.parametrizations.weight_norm(model.head)
    return model


#: models on which δ_cᵀh_c from one pass is not the cells' gradient, and the input shape
NOT_LINEAR_PATH = {
    "called twice": (_Tied, (5,)),
    "weight shared by two Linears": (_SharedWeight, (5,)),
    "in-place ReLU on the output": (lambda: nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 1)),
                                    (5,)),
    "in-place residual add": (_Residual, (5,)),
    "flattened rows": (_Rows, (3, 5)),
    "weight norm": (_weight_normed, (5,)),
}


@pytest.mark.parametrize("case", NOT_LINEAR_PATH)
def test_linear_path_falls_back_when_its_formula_does_not_hold(case):
    build, shape = NOT_LINEAR_PATH[case]
    _, y, a = _sorted_cells(*_interleaved(n=40, seed=7))
    x = torch.randn(40, *shape, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    model = build()
    reg = gcm.gcm_loss(1.0, T=2.0, form="squared")
    logits = reg.batch_forward(model, x, y, a)
    assert reg._cached is None or reg._cached[1][0] == "cells"
    batch = {"x": x, "y": y, "groups": a, "logits": logits}
    gg = reg.gradients(model, batch)
    ref = gcm.group_gradients(model, gcm.make_batch(model, x, y, a), create_graph=True, per_group_forward=True)
    for cell in gcm.CELLS:
        for u, v in zip(gg.grads[cell], ref.grads[cell]):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
    reg.batch_forward(model, x, y, a)
    term = reg(model, batch | {"logits": logits})
    assert term.item() == pytest.approx(gcm.gcm_loss(1.0, T=2.0, form="squared")(model, gcm.make_batch(
        model, x, y, a)).item(), rel=1e-5)


def test_linear_path_with_dropout_in_train_mode_uses_the_batch_masks():
    """Dropout after a Linear (train mode): the Linear path's cell gradients are those of the batch's
    own forward, the same dropout masks as the loss (autograd per cell through the shared graph)."""
    x, y, a = _sorted_cells(*_interleaved(n=40, seed=8))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 1)).train()
    reg = gcm.gcm_loss(1.0)
    logits = reg.batch_forward(model, x, y, a)
    assert reg._cached[1][0] == "linear"
    batch = {"x": x, "y": y, "groups": a, "logits": logits}
    fast = reg.gradients(model, batch)
    ref = gcm.group_gradients(model, batch, create_graph=True)  # one autograd.grad per cell, same graph
    for cell in gcm.CELLS:
        for u, v in zip(fast.grads[cell], ref.grads[cell]):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


def test_group_gradients_stack_orders_the_cells_and_needs_them_all():
    gg = _gg(HAND)
    w, b = gg.stack()
    assert w.shape == (4, 2) and b.shape == (4, 1)
    for i, cell in enumerate(gcm.CELLS):
        assert torch.equal(w[i], gg.grads[cell][0]) and torch.equal(b[i], gg.grads[cell][1])
    # a stacked copy is used only while grads still holds its views
    fast = gcm.GroupGradients(gg.names, {c: (w[i], b[i]) for i, c in enumerate(gcm.CELLS)}, gg.sizes,
                              stacked=(w, b))
    assert fast.stack()[0] is w
    fast.grads[(0, 1)] = (torch.ones(2), torch.ones(1))
    w2, _ = fast.stack()
    assert w2 is not w and torch.equal(w2[1], torch.ones(2)) and torch.equal(w2[0], w[0])
    part = gcm.GroupGradients(gg.names, {c: v for c, v in gg.grads.items() if c != (1, 0)}, gg.sizes)
    with pytest.raises(ValueError, match=r"all 4 \(a, y\) cells; missing \(1, 0\)"):
        part.stack("gcm_penalty")


def _fit_params(extra, X, y, a, out=1, loss="bce", steps=3, optim=None, batch_size=16, sampler="group_balanced",
                path="linear"):
    torch.manual_seed(0)
    model = PATHS[path][0](X.shape[1], out)
    calls = _counting(_head(model))
    res = train.fit(model, X, y, epochs=1, steps_per_epoch=steps, batch_size=batch_size, loss=loss,
                    sampler=sampler, groups=a, select=None, extra_loss=extra,
                    optim=optim or train.Optim("sgd", lr=0.1))
    return [p.detach().clone() for p in model.parameters()], res.history, len(calls)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T", [0.0, 2.0])
@pytest.mark.parametrize("form", gcm.regularizer.FORMS)
def test_fit_with_shared_forward_equals_separate_forwards_gcm(form, T, path):
    """gcm_loss (engine takes its batch logits from the shared forward) and a bare function around
    gcm_loss (engine's model(x), GCM's own per-cell passes) train to the same parameters; the shared
    form does 1 forward a step (Linear path) or 4 (per-cell path), not 5."""
    X, y, a = _biased(n=200, d=4, seed=11)
    p_shared, h_shared, n_shared = _fit_params(gcm.gcm_loss(1.0, T=T, form=form), X, y, a, path=path)
    p_sep, h_sep, n_sep = _fit_params(_plain(gcm.gcm_loss(1.0, T=T, form=form)), X, y, a, path=path)
    p_van, _, _ = _fit_params(None, X, y, a, path=path)
    assert (n_shared, n_sep) == (3 * PATHS[path][1](4), 3 * 5)
    for u, v in zip(p_shared, p_sep):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
    assert h_shared["train_loss"].iloc[0] == pytest.approx(h_sep["train_loss"].iloc[0], rel=1e-5)
    assert max(float((u - v).abs().max()) for u, v in zip(p_shared, p_van)) > 1e-3  # the term acts


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", gcm.baselines.ALIGN_FORMS)
def test_fit_with_shared_forward_equals_separate_forwards_direct(form, path):
    X, y, a = _biased(n=200, d=4, seed=13)
    p_shared, _, n_shared = _fit_params(gcm.baselines.direct_aligning_loss(2.0, form=form), X, y, a, path=path)
    p_sep, _, n_sep = _fit_params(_plain(gcm.baselines.direct_aligning_loss(2.0, form=form)), X, y, a, path=path)
    p_van, _, _ = _fit_params(None, X, y, a, path=path)
    assert (n_shared, n_sep) == (3 * PATHS[path][1](4), 3 * 5)
    for u, v in zip(p_shared, p_sep):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
    assert max(float((u - v).abs().max()) for u, v in zip(p_shared, p_van)) > 1e-3


@pytest.mark.parametrize("path", PATHS)
def test_fit_with_shared_forward_equals_separate_forwards_shuffled_batches(path):
    """Group-balanced batches come cell by cell; shuffled ones interleave the cells (of unequal
    sizes), so the engine's loss only matches if the logits are put back in the batch's row order."""
    X, y, a = _biased(n=200, d=4, seed=11)
    kw = dict(batch_size=100, steps=2, sampler="shuffle", path=path)
    for make in (lambda: gcm.gcm_loss(1.0, T=2.0, form="paper"), lambda: gcm.baselines.direct_aligning_loss(2.0)):
        p_shared, h_shared, n_shared = _fit_params(make(), X, y, a, **kw)
        p_sep, h_sep, n_sep = _fit_params(_plain(make()), X, y, a, **kw)
        assert (n_shared, n_sep) == (2 * PATHS[path][1](4), 2 * 5)
        for u, v in zip(p_shared, p_sep):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
        assert h_shared["train_loss"].iloc[0] == pytest.approx(h_sep["train_loss"].iloc[0], rel=1e-5)


def test_fit_with_shared_forward_two_softmax_outputs():
    """Binary task with two softmax outputs and the engine's cross-entropy: same equivalence."""
    X, y, a = _biased(n=200, d=4, seed=17)
    kw = dict(out=2, loss="ce")
    p_shared, _, _ = _fit_params(gcm.gcm_loss(1.0, T=2.0, form="squared"), X, y, a, **kw)
    p_sep, _, _ = _fit_params(_plain(gcm.gcm_loss(1.0, T=2.0, form="squared")), X, y, a, **kw)
    for u, v in zip(p_shared, p_sep):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", gcm.regularizer.FORMS)
def test_fit_with_shared_forward_equals_separate_forwards_three_classes(form, path):
    X, y, a = _three_class(n=240, seed=3)
    kw = dict(out=3, loss="ce", batch_size=18, optim=train.Optim("adam", lr=1e-2), path=path)
    p_shared, _, n_shared = _fit_params(gcm.gcm_loss(1.0, T=2.0, form=form), X, y, a, **kw)
    p_sep, _, n_sep = _fit_params(_plain(gcm.gcm_loss(1.0, T=2.0, form=form)), X, y, a, **kw)
    assert (n_shared, n_sep) == (3 * PATHS[path][1](6), 3 * 7)
    for u, v in zip(p_shared, p_sep):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


class _BNNet(nn.Module):
    def __init__(self, d=5):
        super().__init__()
        self.lin, self.bn, self.head = nn.Linear(d, 6), nn.BatchNorm1d(6), nn.Linear(6, 1)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.lin(x))))


def test_shared_forward_falls_back_to_model_x_with_batchnorm():
    x, y, a = _interleaved(n=40, seed=4)
    torch.manual_seed(0)
    model = _BNNet()
    calls = _counting(model.head)
    reg = gcm.gcm_loss(1.0, T=2.0)
    out = reg.batch_forward(model, x, y, a)
    assert calls == [40] and reg._cached is None  # one whole-batch pass: batch statistics are shared
    torch.testing.assert_close(out, model(x))
    # a per-cell pass would have differed (the fallback is needed)
    m = (a == 0) & (y == 0)
    assert not torch.allclose(model(x[m]), model(x)[m], atol=1e-3)
    calls.clear()
    batch = {"x": x, "y": y, "groups": a, "logits": out}
    val = reg(model, batch)
    assert calls == []  # gradients from slicing the batch's logits, no per-group forward
    ref = gcm.gcm_penalty(gcm.group_gradients(model, batch, create_graph=True), reg.last["weights"])
    assert val.item() == pytest.approx(ref.item(), rel=1e-6)


def test_shared_forward_lam_zero_is_model_x_and_zero_loss():
    x, y, a = _interleaved(n=40, seed=5)
    torch.manual_seed(0)
    model = models.MLP(5, (6,), 1)
    calls = _counting(model.head)
    for reg in (gcm.gcm_loss(0.0, T=2.0), gcm.baselines.direct_aligning_loss(0.0)):
        calls.clear()
        out = reg.batch_forward(model, x, y, a)
        assert calls == [40] and reg._cached is None
        torch.testing.assert_close(out, model(x), rtol=0, atol=0)
        term = reg(model, {"x": x, "y": y, "groups": a, "logits": out})
        assert term.item() == 0.0 and term.dim() == 0
    # no groups (engine without groups=): model(x) too
    calls.clear()
    out = gcm.gcm_loss(1.0).batch_forward(model, x, y, None)
    assert calls == [40]
    # in the engine, λ = 0 trains exactly like no extra loss (oversampling)
    X, yy, aa = _biased(n=200, d=4, seed=14)
    p0, _, _ = _fit_params(gcm.gcm_loss(0.0), X, yy, aa)
    p1, _, _ = _fit_params(None, X, yy, aa)
    for u, v in zip(p0, p1):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


# --- multi-class (K > 2 softmax outputs, GCM Table 6) -------------------------------------------------
def _three_class(n=240, d=4, seed=0, k=3):
    """Random K-class data, a binary; every (a, y) cell populated."""
    rng = np.random.default_rng(seed)
    a = (rng.uniform(size=n) < 0.6).astype(np.int64)
    y = rng.integers(0, k, size=n)
    y[:2 * k] = np.arange(2 * k) % k
    a[:2 * k] = np.arange(2 * k) // k
    X = rng.normal(size=(n, d)) + 0.5 * y[:, None]
    X[:, 0] += a
    return X.astype(np.float32), y, a


def test_cells_and_n_classes():
    assert gcm.cells() == list(gcm.CELLS) == gcm.cells(2)
    assert gcm.cells(3) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert gcm.gradients.n_classes(torch.zeros(5)) == gcm.gradients.n_classes(torch.zeros(5, 1)) == 2
    assert gcm.gradients.n_classes(torch.zeros(5, 2)) == 2 and gcm.gradients.n_classes(torch.zeros(5, 7)) == 7
    y, a = torch.tensor([0, 2, 1, 2, 0, 1]), torch.tensor([0, 0, 0, 1, 1, 1])
    masks = gcm.cell_masks(y, a, k=3)
    assert list(masks) == gcm.cells(3)
    assert masks[(0, 2)].tolist() == [False, True, False, False, False, False]
    with pytest.raises(ValueError, match=r"\(a=1, y=2\)"):
        gcm.cell_masks(y[:3], a[:3], k=3)
    assert list(gcm.cell_masks(y[:3], a[:3], require_all=False, k=3)) == [(0, 0), (0, 1), (0, 2)]


def test_sample_losses_and_true_class_probability():
    torch.manual_seed(0)
    lg3, y3 = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])
    torch.testing.assert_close(gcm.sample_losses(lg3, y3), nn.functional.cross_entropy(lg3, y3, reduction="none"))
    torch.testing.assert_close(gcm.gradients.true_class_probability(lg3, y3), torch.softmax(lg3, 1)[torch.arange(8), y3])
    yb = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    z = torch.randn(8, dtype=torch.float64)
    bce = nn.functional.binary_cross_entropy_with_logits(z, yb.double(), reduction="none")
    for lg in (z, z[:, None]):
        torch.testing.assert_close(gcm.sample_losses(lg, yb), bce)
    two = torch.stack([torch.zeros_like(z), z], 1) + 0.3  # softmax model: same probability, same loss
    torch.testing.assert_close(gcm.sample_losses(two, yb), bce)
    torch.testing.assert_close(gcm.sample_losses(two, yb), nn.functional.cross_entropy(two, yb, reduction="none"))
    p = torch.sigmoid(z)
    torch.testing.assert_close(gcm.gradients.true_class_probability(z[:, None], yb), torch.where(yb == 1, p, 1 - p))
    torch.testing.assert_close(gcm.gradients.true_class_probability(two, yb), torch.softmax(two, 1)[torch.arange(8), yb])


@pytest.mark.parametrize("out", [2, 3, 4])
def test_group_gradients_k_classes_match_manual_cross_entropy(out):
    """Per cell: gradient of the mean cross-entropy over the cell's rows, fresh forward (2 outputs: the
    BCE of l_1 - l_0 the code uses equals the 2-class cross-entropy)."""
    k = max(out, 2)
    X, y, a = _three_class(n=90, d=4, seed=out, k=k)
    torch.manual_seed(0)
    model = _tanh_mlp(d=4, h=5).float()
    model[-1] = nn.Linear(5, out)
    batch = gcm.make_batch(model, X, y, a)
    for kw in ({}, {"per_group_forward": True}):
        gg = gcm.group_gradients(model, batch, **kw)
        assert gg.k == k and list(gg.grads) == gcm.cells(k)
        for ai, yi in gcm.cells(k):
            m = (a == ai) & (y == yi)
            assert gg.sizes[(ai, yi)] == m.sum() > 0
            loss = nn.functional.cross_entropy(model(torch.as_tensor(X[m])), torch.as_tensor(y[m]))
            ref = torch.autograd.grad(loss, list(model.parameters()))
            for g, r in zip(gg.grads[(ai, yi)], ref):
                torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    # group_confidence: the cell's mean softmax probability of its class
    conf = gcm.group_confidence(batch)
    p = torch.softmax(batch["logits"].detach(), 1).numpy()
    for ai, yi in gcm.cells(k):
        m = (a == ai) & (y == yi)
        assert conf[(ai, yi)].item() == pytest.approx(p[m, yi].mean(), rel=1e-6)


def _gg3():
    """A K = 3 GroupGradients with names w (2,), b (1,)."""
    cells3 = {**HAND, (0, 2): ([2.0, 0.0], [-1.0]), (1, 2): ([-1.0, 3.0], [0.5])}
    grads = {c: (torch.tensor(v[0]), torch.tensor(v[1])) for c, v in cells3.items()}
    return gcm.GroupGradients(["w", "b"], grads, {c: 1 for c in cells3}, 3)


def test_penalties_sum_over_three_classes_by_hand():
    gg = _gg3()
    W = {(0, 0): 0.5, (1, 0): 2.0, (0, 1): 1.0, (1, 1): 0.25, (0, 2): 3.0, (1, 2): 0.5}
    # y0, y1 as in test_gcm_penalty_by_hand_both_forms (7.25 + 3.25);
    # y2 paper: |6 - .5| + |0 - 1.5| + |3 - .25| = 9.75
    assert gcm.gcm_penalty(gg, W, "paper").item() == pytest.approx(10.5 + 9.75)
    # y2 squared: |12 - .5| + |0 - 4.5| + |3 - .125| = 18.875
    assert gcm.gcm_penalty(gg, W, "squared").item() == pytest.approx(22.75 + 18.875)
    # weights 1: y2 |2 - 1| + |0 - 3| + |1 - .5| = 4.5
    assert gcm.gcm_penalty(gg, None, "paper").item() == pytest.approx(6.0 + 4.5)
    # direct: y2 |2+1| + |0-3| + |-1-.5| = 7.5
    assert gcm.baselines.direct_aligning_penalty(gg).item() == pytest.approx(10.0 + 7.5)
    assert gcm.baselines.direct_aligning_penalty(gg, "squared").item() == pytest.approx(19.5 + 9 + 9 + 2.25)
    # the K = 2 view of the same cells ignores y = 2
    binary_view = gcm.GroupGradients(gg.names, gg.grads, gg.sizes)
    assert gcm.gcm_penalty(binary_view, W, "paper").item() == pytest.approx(10.5)
    part = gcm.GroupGradients(gg.names, {c: v for c, v in gg.grads.items() if c != (1, 2)}, gg.sizes, 3)
    with pytest.raises(ValueError, match=r"all 6 \(a, y\) cells; missing \(1, 2\)"):
        gcm.gcm_penalty(part)
    with pytest.raises(ValueError, match=r"missing \(1, 2\)"):
        gcm.baselines.direct_aligning_penalty(part)
    # disparity over the three classes
    d = gcm.contribution_disparity(gg)
    assert set(d.model) == {0, 1, 2}
    # y2: r_w = [2/1, 0/3], r_b = 1/.5 -> per layer {w: 1, b: 2}, model (2 + 0 + 2)/3
    assert d.per_layer[2] == pytest.approx({"w": 1.0, "b": 2.0}) and d.undefined[2] == 0
    assert d.model[2] == pytest.approx(4 / 3)
    assert gcm.code_disparity(gg)[2] == pytest.approx((10 / 4 + 4) / 2)
    assert np.isnan(gcm.code_disparity(part)[2]) and np.isnan(gcm.contribution_disparity(part).model[2])


@pytest.mark.parametrize("T", [0.0, 2.0])
@pytest.mark.parametrize("form", gcm.regularizer.FORMS)
def test_gcm_loss_three_classes_equals_manual_sum(form, T):
    X, y, a = _three_class(n=60, d=3, seed=7)
    torch.manual_seed(2)
    model = nn.Linear(3, 3).double()
    Xt = torch.as_tensor(X, dtype=torch.float64)
    reg = gcm.gcm_loss(0.6, T=T, form=form)
    val = reg(model, gcm.make_batch(model, Xt, y, a))
    total = 0.0
    for yy in range(3):
        g, w = {}, {}
        for ai in (0, 1):
            m = (a == ai) & (y == yy)
            lg = model(Xt[m])
            g[ai] = torch.autograd.grad(nn.functional.cross_entropy(lg, torch.as_tensor(y[m])),
                                        list(model.parameters()))
            c = torch.softmax(lg.detach(), 1)[:, yy].mean().item()
            w[ai] = 1.0 if T == 0 else c ** T
            assert reg.last["confidence"][(ai, yy)].item() == pytest.approx(c, rel=1e-12)
        for g0, g1 in zip(g[0], g[1]):
            f = (lambda t: t.abs()) if form == "paper" else (lambda t: t ** 2)
            total += (w[0] * f(g0) - w[1] * f(g1)).abs().sum().item()
    assert val.item() == pytest.approx(0.6 * total, rel=1e-9)
    assert set(reg.last["weights"]) == set(gcm.cells(3))


def test_three_classes_errors():
    X, y, a = _three_class(n=60, d=3, seed=8)
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    batch = gcm.make_batch(model, X, y, a)
    keep = ~((batch["groups"] == 1) & (batch["y"] == 2))
    part = {"x": batch["x"][keep], "logits": model(batch["x"][keep]), "y": batch["y"][keep],
            "groups": batch["groups"][keep]}
    for f in (gcm.gcm_loss(1.0), gcm.baselines.direct_aligning_loss(1.0)):
        with pytest.raises(ValueError, match=r"\(a=1, y=2\).*group_balanced"):
            f(model, part)
    with pytest.raises(ValueError, match=r"\(a=1, y=2\)"):
        gcm.group_confidence(part)
    reg = gcm.gcm_loss(1.0)  # the engine's path: shared forward, then the term
    logits = reg.batch_forward(model, part["x"], part["y"], part["groups"])
    with pytest.raises(ValueError, match=r"no samples in the \(a, y\) cells \(a=1, y=2\);"):
        reg(model, {**part, "logits": logits})
    bad = batch["y"].clone()
    bad[0] = 3
    for f in (gcm.gcm_loss(1.0), gcm.baselines.direct_aligning_loss(1.0), gcm.baselines.iga_loss(1.0), gcm.baselines.adversarial_loss()):
        with pytest.raises(ValueError, match=r"classes 0\.\.2"):
            f(model, {**batch, "y": bad})
    with pytest.raises(ValueError, match=r"classes 0\.\.2"):
        gcm.group_gradients(model, {**batch, "y": -batch["y"]})
    with pytest.raises(ValueError, match="1 or 2 output columns"):
        gcm.baselines.eor_penalty(batch["logits"], batch["y"], batch["groups"])
    with pytest.raises(ValueError, match="1 or 2 output columns"):
        gcm.baselines.eor_loss(1.0)(model, batch)
    with pytest.raises(ValueError, match="1 or 2 output columns"):
        gcm.binary_logit(torch.zeros(4, 3))


def test_iga_three_classes_matches_manual():
    X, y, a = _three_class(n=60, d=3, seed=9)
    torch.manual_seed(0)
    model = nn.Linear(3, 3).double()
    Xt, yt = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y)
    val = gcm.baselines.iga_loss(1.5)(model, gcm.make_batch(model, Xt, y, a))
    ps = list(model.parameters())

    def grad(m):
        return torch.autograd.grad(nn.functional.cross_entropy(model(Xt[m]), yt[m]), ps)

    g_all = grad(torch.ones(len(y), dtype=torch.bool))
    ref = sum(((gi - g) ** 2).sum().item() for ai in (0, 1)
              for gi, g in zip(grad(torch.as_tensor(a == ai)), g_all))
    assert val.item() == pytest.approx(1.5 * ref, rel=1e-9)


def test_tracker_three_classes_columns():
    X, y, a = _three_class(n=60, d=3, seed=10)
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    tr = gcm.DisparityTracker()
    tr(model, gcm.make_batch(model, X, y, a))
    h = tr.history
    assert [c for c in h.columns if c.startswith("n_")] == [f"n_{ai}{yi}" for ai, yi in gcm.cells(3)]
    assert h.loc[0, "n_12"] == ((a == 1) & (y == 2)).sum()
    assert np.isfinite(h[["r_y0", "r_y1", "r_y2", "code_y2"]]).all().all() and "r_y2[bias]" in h
    # binary: no third class's columns (unchanged layout)
    tr2 = gcm.DisparityTracker(per_layer=False)
    Xb, yb, ab = _biased(n=60, d=3)
    tr2(_linear([0.1, 0.2, 0.3], 0.0), gcm.make_batch(_linear([0.1, 0.2, 0.3], 0.0), Xb, yb, ab))
    assert list(tr2.history.columns) == ["step", "epoch", "n_00", "n_01", "n_10", "n_11", "elements", "r_y0",
                                         "lognorm_y0", "code_y0", "undefined_y0", "r_y1", "lognorm_y1", "code_y1",
                                         "undefined_y1"]


def test_adversary_features_three_classes():
    X, y, a = _three_class(n=64, d=3, seed=12)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    adv = gcm.baselines.adversarial_loss(alpha=0.5, lr=0.05)
    batch = gcm.make_batch(model, X.astype(np.float64), y, a)
    term = adv(model, batch)
    assert adv.adversary.lin.in_features == 3 + 9 and term.item() == 0.0
    # features [s, s ⊗ onehot(y)] by hand
    lg = batch["logits"].detach()
    c, w, b = adv.adversary.c.detach(), adv.adversary.lin.weight.detach(), adv.adversary.lin.bias.detach()
    s = torch.softmax((1 + c.abs()) * lg, 1)
    feats = torch.cat([s, torch.stack([s[:, i] * (batch["y"] == j) for i in range(3) for j in range(3)], 1)], 1)
    torch.testing.assert_close(adv.adversary(lg, batch["y"]), (feats @ w.T + b)[:, 0])
    # the projection surrogate: gradient −proj_{∇L_A}∇L_P − α∇L_A with L_P the cross-entropy
    params = list(model.parameters())
    gp = torch.autograd.grad(nn.functional.cross_entropy(batch["logits"], batch["y"]), params, retain_graph=True)
    ga = torch.autograd.grad(adv.adversary_loss(batch["logits"], batch["y"], batch["groups"], frozen=True),
                             params, retain_graph=True)
    model.zero_grad()
    term.backward()
    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])  # noqa: E731
    gp, ga = flat(gp), flat(ga)
    torch.testing.assert_close(flat([q.grad for q in params]), -(gp @ ga) / (ga @ ga) * ga - 0.5 * ga,
                               rtol=1e-8, atol=1e-10)
    # binary models (one or two outputs) keep the three binary features
    for out in (1, 2):
        adv2 = gcm.baselines.adversarial_loss()
        m2 = nn.Linear(3, out)
        Xb, yb, ab = _biased(n=32, d=3)
        adv2(m2, gcm.make_batch(m2, Xb, yb, ab))
        assert adv2.adversary.lin.in_features == 3


@pytest.mark.parametrize("method", ["gcm", "adversarial", "oversampling", "direct", "iga"])
def test_fit_method_three_classes_runs_and_trains(method):
    k = 3
    X, y, a = _three_class(n=240, d=4, seed=15, k=k)
    torch.manual_seed(0)
    model = models.MLP(4, (6,), k)
    before = [p.detach().clone() for p in model.parameters()]
    options = {"gcm": {"lam": 1.0, "T": 2.0, "form": "squared"}, "adversarial": {"alpha": 0.5},
               "direct": {"lam": 1.0}, "iga": {"lam": 1.0}, "oversampling": {}}[method]
    seen = []

    def hook(lg, yb, ids, epoch):
        seen.append((lg.shape, np.bincount(yb.numpy(), minlength=k)))

    res = gcm.fit_method(method, model, X, y, a, loss="ce", batch_size=6 * k, epochs=1, steps_per_epoch=3,
                         options=options, optim=train.Optim("adam", lr=1e-2), on_logits=hook)
    assert np.isfinite(res.history["train_loss"]).all()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert len(seen) == 3 and all(s == (18, k) and (c == 6).all() for s, c in seen)


def test_fit_method_three_classes_regulariser_changes_the_update():
    """λ > 0 trains differently from OverSampling (λ = 0) on the same batches: the K-class term acts."""
    X, y, a = _three_class(n=240, d=4, seed=16)
    out = {}
    for method, opts in (("oversampling", {}), ("gcm", {"lam": 5.0, "T": 0.0, "form": "paper"}),
                         ("direct", {"lam": 5.0})):
        torch.manual_seed(0)
        model = models.MLP(4, (6,), 3)
        gcm.fit_method(method, model, X, y, a, loss="ce", batch_size=18, epochs=1, steps_per_epoch=3,
                       options=opts, optim=train.Optim("sgd", lr=0.1))
        out[method] = [p.detach().clone() for p in model.parameters()]
    for method in ("gcm", "direct"):
        assert max(float((u - v).abs().max()) for u, v in zip(out[method], out["oversampling"])) > 1e-4
