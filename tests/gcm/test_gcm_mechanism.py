"""fairbook.gcm and fairbook.gcm.claims: the mechanism behind the chapter's headline measure.

The norm-based disparity ``Disparity.log_norm`` by hand (per-cell autograd), its permuted-attribute
null (no disparity for an attribute unrelated to the gradients, a clear one for a group with 3x
larger inputs), λ > 0 lowering the GCM penalty, the direction of the confidence weights W = c^T,
the authors' parameter subset (``--sl 1``), ``final_disparity``, the EOP epoch kept by
``fit_method``, the equal-search-budget rule of ``check_parameters`` and the claims built on
``lognorm`` (``disparity_vs_null``, ``disparity_fairness``, ``claims``)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from fairbook import gcm, models, train
from fairbook.errors import ParameterError
from test_gcm import _biased, _one_thread  # noqa: F401 -- the main GCM tests' data and one-thread fixture


# --- helpers ---------------------------------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def _scaled_groups(n, d, seed, scale):
    """y depends on x; a is a fair coin independent of (x, y); then the a = 1 rows' inputs are
    multiplied by ``scale`` (1: a unrelated to everything; 3: a = 1 has 3x larger inputs)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ np.linspace(1, -1, d))))).astype(np.int64)
    a = rng.integers(0, 2, n).astype(np.int64)
    X[a == 1] *= scale
    return X.astype(np.float32), y, a


def _balanced_index(y, a, per_cell, rng):
    return np.concatenate([rng.choice(np.flatnonzero((a == ai) & (y == yi)), per_cell, replace=False)
                           for ai, yi in gcm.CELLS])


def _cell_grads_by_hand(model, X, y, a):
    """{(a, y): tuple of d mean-BCE / d θ} from a separate forward per cell (independent of gcm)."""
    params = list(model.parameters())
    out = {}
    for ai, yi in gcm.CELLS:
        m = (a == ai) & (y == yi)
        if not m.any():
            continue
        z = model(torch.as_tensor(X[m], dtype=torch.float64)).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(z, torch.as_tensor(y[m], dtype=torch.float64))
        out[(ai, yi)] = torch.autograd.grad(loss, params)
    return out


def _norm(gs):
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in gs))


# --- 1. log_norm by hand -----------------------------------------------------------------------------------
def test_log_norm_by_hand_from_per_cell_autograd():
    """log_norm[y] = log(|Z0y|·‖ḡ0y‖ / (|Z1y|·‖ḡ1y‖)), the norm over all tensors concatenated; the
    cells' mean-loss gradients taken by a separate forward/backward per cell."""
    X, y, a = _biased(n=80, d=3, seed=4)
    X = X.astype(np.float64)
    torch.manual_seed(1)
    model = models.MLP(3, (5, 4), 1).double()
    sizes = {c: int(((a == c[0]) & (y == c[1])).sum()) for c in gcm.CELLS}
    assert len(set(sizes.values())) == 4  # unequal cells: the size factor matters
    hand = _cell_grads_by_hand(model, X, y, a)
    gg = gcm.group_gradients(model, gcm.make_batch(model, X, y, a))
    for c in gcm.CELLS:  # the package's gradients are the per-cell ones
        for g, h in zip(gg.grads[c], hand[c]):
            torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)
    d = gcm.contribution_disparity(gg)
    du = gcm.contribution_disparity(gg, size_weighted=False)
    for yy in (0, 1):
        n0, n1 = _norm(hand[(0, yy)]), _norm(hand[(1, yy)])
        assert d.log_norm[yy] == pytest.approx(math.log(sizes[(0, yy)] * n0 / (sizes[(1, yy)] * n1)), rel=1e-10)
        assert du.log_norm[yy] == pytest.approx(math.log(n0 / n1), rel=1e-10)
        # the size factor alone separates the two
        assert d.log_norm[yy] - du.log_norm[yy] == pytest.approx(math.log(sizes[(0, yy)] / sizes[(1, yy)]))
        # the norm over all tensors at once, not a mean of per-tensor log ratios
        per_tensor = np.mean([math.log(float(g0.norm()) / float(g1.norm()))
                              for g0, g1 in zip(hand[(0, yy)], hand[(1, yy)])])
        assert du.log_norm[yy] != pytest.approx(per_tensor, rel=1e-3)
    # the same from a hand-built GroupGradients with the hand gradients
    gg_hand = gcm.GroupGradients([n for n, _ in model.named_parameters()], hand, sizes)
    assert gcm.contribution_disparity(gg_hand).log_norm == pytest.approx(d.log_norm, rel=1e-12)
    # swapping the groups flips the sign
    flipped = gcm.contribution_disparity(gcm.group_gradients(model, gcm.make_batch(model, X, y, 1 - a)))
    assert flipped.log_norm == pytest.approx({k: -v for k, v in d.log_norm.items()}, rel=1e-10)


def test_log_norm_hand_numbers_and_nan_cells():
    """Hand-made gradients with norms 5, 3, 1, 10 and sizes 2, 5, 3, 1; NaN for a missing cell or a
    cell whose whole gradient is zero."""
    t = torch.tensor
    grads = {(0, 0): (t([3.0, 0.0]), t([4.0])), (1, 0): (t([1.0, 2.0]), t([2.0])),
             (0, 1): (t([0.0, 1.0]), t([0.0])), (1, 1): (t([6.0, 0.0]), t([8.0]))}
    sizes = {(0, 0): 2, (1, 0): 5, (0, 1): 3, (1, 1): 1}
    d = gcm.contribution_disparity(gcm.GroupGradients(["w", "b"], grads, sizes))
    assert d.log_norm[0] == pytest.approx(math.log(2 * 5 / (5 * 3)))   # ‖(3,0,4)‖ = 5, ‖(1,2,2)‖ = 3
    assert d.log_norm[1] == pytest.approx(math.log(3 * 1 / (1 * 10)))  # ‖(0,1,0)‖ = 1, ‖(6,0,8)‖ = 10
    du = gcm.contribution_disparity(gcm.GroupGradients(["w", "b"], grads, sizes), size_weighted=False)
    assert du.log_norm[0] == pytest.approx(math.log(5 / 3)) and du.log_norm[1] == pytest.approx(math.log(1 / 10))
    # a missing cell: that y is NaN, the other one unchanged
    part = {k: v for k, v in grads.items() if k != (1, 1)}
    dp = gcm.contribution_disparity(gcm.GroupGradients(["w", "b"], part, sizes))
    assert math.isnan(dp.log_norm[1]) and dp.log_norm[0] == pytest.approx(d.log_norm[0])
    # a whole cell's gradient zero: undefined (NaN), not ±inf
    zero = {**grads, (0, 1): (t([0.0, 0.0]), t([0.0]))}
    assert math.isnan(gcm.contribution_disparity(gcm.GroupGradients(["w", "b"], zero, sizes)).log_norm[1])
    # from a real batch lacking the (a=1, y=1) cell
    X, y, a = _biased(n=60, d=3, seed=5)
    keep = ~((a == 1) & (y == 1))
    model = models.MLP(3, (4,), 1)
    gg = gcm.group_gradients(model, gcm.make_batch(model, X[keep], y[keep], a[keep]), require_all=False)
    dd = gcm.contribution_disparity(gg)
    assert math.isnan(dd.log_norm[1]) and np.isfinite(dd.log_norm[0])


# --- 2. the permuted-attribute null ------------------------------------------------------------------------
def _tracked(scale, *, seed=0, n_batches=40, per_cell=16, n_perm=8):
    X, y, a = _scaled_groups(4000, 4, seed, scale)
    torch.manual_seed(seed)
    model = models.MLP(4, (16,), 1)
    tracker = gcm.DisparityTracker(per_layer=False, n_permutations=n_perm, perm_seed=seed)
    rng = np.random.default_rng(100 + seed)
    for _ in range(n_batches):
        idx = _balanced_index(y, a, per_cell, rng)
        tracker(model, gcm.make_batch(model, X[idx], y[idx], a[idx]))
    h = tracker.history
    true = gcm.claims.log_norm_median(h)
    perm = np.array([gcm.claims.log_norm_median(h, f"_perm{j}") for j in range(n_perm)])
    summary = gcm.claims.disparity_vs_null(h.assign(dataset="synthetic", training="none", seed=seed)).iloc[0]
    return h, true, perm, summary


def test_log_norm_under_an_unrelated_attribute_is_inside_its_null_band():
    """a independent of x and y (group-balanced batches): the true attribute is one more random split,
    so its median log-norm is ≈ 0 and its distance from the permuted ones is within theirs."""
    h, true, perm, s = _tracked(scale=1.0)
    assert {"lognorm_y0", "lognorm_y1", "lognorm_y0_perm7", "lognorm_y1_perm0"} <= set(h.columns)
    assert np.isfinite(h[["lognorm_y0", "lognorm_y1"]].to_numpy()).all()
    assert np.abs(true).max() < 0.1
    spread = np.abs(perm).max(axis=0)
    assert (np.abs(true) <= 2 * spread + 0.02).all()
    assert s.lognorm_statistic <= s.lognorm_null_max
    assert abs(s.lognorm_excess) < 0.1
    # the permuted columns are different splits, not copies of the true one
    assert not np.allclose(h["lognorm_y0_perm0"], h["lognorm_y0"])


def test_log_norm_with_larger_inputs_in_one_group_lies_outside_its_null_band():
    """a = 1 has 3x larger inputs, hence larger gradients: log(‖ḡ0‖/‖ḡ1‖) < 0, far outside the band of
    the permuted attributes (which stay ≈ 0). Fails if the permutation did nothing."""
    h, true, perm, s = _tracked(scale=3.0)
    assert (true < -0.3).all()
    assert np.abs(perm).max() < 0.15
    assert (true < perm.min(axis=0) - 0.2).all()
    assert s.lognorm_statistic > 2 * s.lognorm_null_max
    assert s.lognorm_excess > 0.3
    # the per-step values agree with contribution_disparity on a permuted batch drawn the same way
    X, y, a = _scaled_groups(4000, 4, 0, 3.0)
    torch.manual_seed(0)
    model = models.MLP(4, (16,), 1)
    idx = _balanced_index(y, a, 16, np.random.default_rng(100))
    batch = gcm.make_batch(model, X[idx], y[idx], a[idx])
    ap = gcm.permute_within(batch["groups"], batch["y"], np.random.default_rng([0, 0, 3]))
    dp = gcm.contribution_disparity(gcm.group_gradients(model, {**batch, "groups": ap}))
    assert h.loc[0, "lognorm_y1_perm3"] == pytest.approx(dp.log_norm[1], rel=1e-9)
    assert h.loc[0, "lognorm_y0"] == pytest.approx(gcm.contribution_disparity(
        gcm.group_gradients(model, batch)).log_norm[0], rel=1e-9)


# --- 3. λ > 0 lowers the GCM penalty ---------------------------------------------------------------------------
def test_positive_lambda_lowers_the_gcm_penalty():
    X, y, a = _scaled_groups(2000, 4, 0, 3.0)
    idx = _balanced_index(y, a, 100, np.random.default_rng(5))
    out = {}
    for lam in (0.0, 1.0):
        model = train.seeded(lambda: models.MLP(4, (16,), 1), 0)
        gcm.fit_method("gcm", model, X, y, a, options={"lam": lam, "T": 0}, epochs=2, steps_per_epoch=40,
                       batch_size=64, optim=train.Optim("adam", lr=1e-2), seed=0)
        gg = gcm.group_gradients(model, gcm.make_batch(model, X[idx], y[idx], a[idx]))
        out[lam] = (gcm.gcm_penalty(gg).item(), gcm.contribution_disparity(gg).log_norm)
    (p0, ln0), (p1, ln1) = out[0.0], out[1.0]
    assert p0 > 1.0  # the groups differ: a clear penalty without the regulariser
    assert p1 < 0.5 * p0
    assert max(abs(v) for v in ln1.values()) < max(abs(v) for v in ln0.values())


# --- 4. T > 0: the weights' direction --------------------------------------------------------------------------
def test_temperature_gives_the_lower_confidence_cell_the_smaller_weight():
    """z = x (w = 1, b = 0). Cell (0, 1) is the least confident on its true class; W = c^T gives it the
    smallest weight, so matching W0|g0| = W1|g1| leaves it the larger |g|."""
    x = np.array([-2.0, 0.0, -1.0, 0.0, -2.0, -2.0, 2.0, 2.0])
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    model = nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.zero_()
    batch = gcm.make_batch(model, torch.as_tensor(x[:, None]), y, a)
    s = _sigmoid
    hand_c = {(0, 0): ((1 - s(-2)) + (1 - s(0))) / 2, (0, 1): (s(-1) + s(0)) / 2,
              (1, 0): 1 - s(-2), (1, 1): s(2)}
    conf = gcm.group_confidence(batch)
    assert {k: float(v) for k, v in conf.items()} == pytest.approx(hand_c, rel=1e-12)
    assert min(hand_c, key=hand_c.get) == (0, 1)
    W2 = {k: float(v) for k, v in gcm.confidence_weights(conf, 2.0).items()}
    assert W2 == pytest.approx({k: c ** 2 for k, c in hand_c.items()}, rel=1e-12)
    assert W2[(0, 1)] < W2[(1, 1)] and W2[(0, 0)] < W2[(1, 0)]  # the less confident cell weighs less
    assert all(float(v) == 1.0 for v in gcm.confidence_weights(conf, 0.0).values())
    reg = gcm.gcm_loss(1.0, T=2.0)
    reg(model, batch)
    assert {k: float(v) for k, v in reg.last["weights"].items()} == pytest.approx(W2, rel=1e-12)

    # equal contributions |g0| = |g1| = 1: matched at T = 0, not at T = 2
    g = {c: torch.tensor([1.0], dtype=torch.float64, requires_grad=True) for c in gcm.CELLS}
    gg = gcm.GroupGradients(["w"], {c: (g[c],) for c in gcm.CELLS}, {c: 4 for c in gcm.CELLS})
    assert gcm.gcm_penalty(gg, None).item() == 0.0
    pen = gcm.gcm_penalty(gg, W2)
    assert pen.item() == pytest.approx(abs(W2[(0, 0)] - W2[(1, 0)]) + abs(W2[(0, 1)] - W2[(1, 1)]))
    pen.backward()
    # descent raises the low-confidence cell's |g| and lowers the other's
    assert g[(0, 1)].grad.item() == pytest.approx(-W2[(0, 1)])
    assert g[(1, 1)].grad.item() == pytest.approx(W2[(1, 1)])
    # the minimiser over |g01| (|g11| = 1) is W11/W01 > 1: the less confident cell keeps the larger |g|
    grid = np.linspace(0.5, 8.0, 3751)
    vals = [gcm.gcm_penalty(gcm.GroupGradients(["w"], {**{c: (torch.tensor([1.0]),) for c in gcm.CELLS},
                                                       (0, 1): (torch.tensor([v]),)}, gg.sizes), W2).item()
            for v in grid]
    best = grid[int(np.argmin(vals))]
    assert best == pytest.approx(W2[(1, 1)] / W2[(0, 1)], abs=2e-3) and best > 1.5


# --- 5. the authors' parameters (--sl 1) ------------------------------------------------------------------------
def test_authors_parameters_leave_out_the_first_weight_only():
    m = models.MLP(5, (7, 3), 1)
    names = [n for n, _ in m.named_parameters()]
    assert names[0] == "body.1.weight"
    assert gcm.authors_parameters(m) == names[1:]
    adult = models.MLP(120, gcm.experiment.ADULT_WIDTHS, 1)
    kept = set(gcm.authors_parameters(adult))
    total = sum(p.numel() for p in adult.parameters())
    assert total == 64601 and sum(p.numel() for n, p in adult.named_parameters() if n in kept) == 64601 - 24000
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    assert [n for n, _ in conv.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert gcm.authors_parameters(conv) == ["0.bias", "3.weight", "3.bias"]
    nobias = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1))
    assert gcm.authors_parameters(nobias) == ["2.weight", "2.bias"]


def test_gcm_loss_on_the_authors_parameters_leaves_out_the_first_weights_gradient():
    """The penalty restricted to authors_parameters is the full one minus the first weight's own term,
    by hand from per-cell gradients. Its gradient still reaches the first weight (through the other
    tensors' gradients, which depend on it): ``params`` chooses which gradients are matched."""
    X, y, a = _biased(n=60, d=3, seed=6)
    X = X.astype(np.float64)
    torch.manual_seed(2)
    model = models.MLP(3, (4,), 1).double()
    names = gcm.authors_parameters(model)
    batch = gcm.make_batch(model, X, y, a)
    reg = gcm.gcm_loss(1.0, params=names)
    val = reg(model, batch)
    assert reg.last["names"] == names
    hand = _cell_grads_by_hand(model, X, y, a)
    all_names = [n for n, _ in model.named_parameters()]
    expected = sum(float((hand[(0, yy)][i].abs() - hand[(1, yy)][i].abs()).abs().sum())
                   for yy in (0, 1) for i, n in enumerate(all_names) if n != "body.1.weight")
    first = sum(float((hand[(0, yy)][0].abs() - hand[(1, yy)][0].abs()).abs().sum()) for yy in (0, 1))
    assert first > 0
    assert val.item() == pytest.approx(expected, rel=1e-10)
    full = gcm.gcm_loss(1.0)(model, gcm.make_batch(model, X, y, a))
    assert val.item() == pytest.approx(full.item() - first, rel=1e-10)
    # gradient of the penalty term alone on every parameter equals that of (full − first weight's term)
    ps = list(model.parameters())
    g_auth = torch.autograd.grad(val, ps)
    g_full = torch.autograd.grad(full, ps)
    g_first = torch.autograd.grad(gcm.gcm_loss(1.0, params=["body.1.weight"])(model, gcm.make_batch(model, X, y, a)), ps)
    for ga, gf, g1 in zip(g_auth, g_full, g_first):
        torch.testing.assert_close(ga, gf - g1, rtol=1e-8, atol=1e-12)
    assert float(g_auth[0].abs().sum()) > 0  # second-order path through h = relu(W1 x + b1)


# --- 6. final_disparity ----------------------------------------------------------------------------------------
def test_final_disparity_is_the_disparity_of_its_seeded_balanced_batch(monkeypatch):
    X, y, a = _biased(n=300, d=4, seed=7)
    # make (a=0, y=1) small: 3 rows
    small = np.flatnonzero((a == 0) & (y == 1))
    drop = small[3:]
    keep = np.setdiff1d(np.arange(len(y)), drop)
    X, y, a = X[keep], y[keep], a[keep]
    counts = {c: int(((a == c[0]) & (y == c[1])).sum()) for c in gcm.CELLS}
    assert counts[(0, 1)] == 3 and min(v for c, v in counts.items() if c != (0, 1)) > 10
    torch.manual_seed(3)
    model = models.MLP(4, (6,), 1)

    seen = []
    real = gcm.group_gradients

    def spy(*args, **kw):
        gg = real(*args, **kw)
        seen.append(dict(gg.sizes))
        return gg

    monkeypatch.setattr(gcm.disparity, "group_gradients", spy)  # the name final_disparity calls
    out = gcm.final_disparity(model, X, y, a, n_per_cell=10, seed=4)
    monkeypatch.undo()
    assert seen == [{(0, 0): 10, (0, 1): 3, (1, 0): 10, (1, 1): 10}]  # capped, fewer for the small cell

    rng = np.random.default_rng(4)
    idx = np.concatenate([rng.permutation(np.flatnonzero((a == aa) & (y == yy)))[:10]
                          for aa in (0, 1) for yy in (0, 1)])
    d = gcm.contribution_disparity(gcm.group_gradients(model, gcm.make_batch(model, X[idx], y[idx], a[idx])))
    expected = {**{f"lognorm_y{k}": v for k, v in d.log_norm.items()}, **{f"r_y{k}": v for k, v in d.model.items()}}
    assert set(out) == {"lognorm_y0", "lognorm_y1", "r_y0", "r_y1"}
    assert out == pytest.approx(expected, rel=1e-12)
    # another seed draws other rows; a cap above every cell uses all rows whatever the seed
    assert gcm.final_disparity(model, X, y, a, n_per_cell=10, seed=5)["lognorm_y0"] != pytest.approx(
        out["lognorm_y0"], rel=1e-6)
    all_rows = gcm.contribution_disparity(gcm.group_gradients(model, gcm.make_batch(model, X, y, a)))
    for s in (0, 1):
        full = gcm.final_disparity(model, X, y, a, n_per_cell=10_000, seed=s)
        assert full["lognorm_y0"] == pytest.approx(all_rows.log_norm[0], rel=1e-5)
        assert full["lognorm_y1"] == pytest.approx(all_rows.log_norm[1], rel=1e-5)


# --- 7. fit_method keeps the EOP epoch ---------------------------------------------------------------------------
def _fit_with_val(val=True):
    X, y, a = _biased(400, 4, 1)
    Xv, yv, av = _biased(300, 4, 2)
    states = {}

    def snap(epoch, model, row):
        states[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    model = train.seeded(lambda: models.MLP(4, (8,), 1), 2)
    res = gcm.fit_method("oversampling", model, X, y, a, val=(Xv, yv, av) if val else None, epochs=6,
                         steps_per_epoch=5, batch_size=32, optim=train.Optim("adam", lr=1e-2), seed=2,
                         on_epoch_end=snap)
    return res, states, (Xv, yv, av)


def test_fit_method_keeps_the_epoch_of_highest_validation_eop():
    res, states, (Xv, yv, av) = _fit_with_val()
    h = res.history
    eop_epoch = int(h.loc[h["val_eop_folded"].idxmax(), "epoch"])
    dEO_epoch = int(h.loc[h["val_delta_eo"].idxmin(), "epoch"])
    assert len({eop_epoch, dEO_epoch, 6}) == 3  # the case separates the three models
    assert res.best_epoch == dEO_epoch
    epoch, state = res.other_best["eop"]
    assert epoch == eop_epoch
    assert all(torch.equal(state[k], states[eop_epoch][k]) for k in state)
    before = {k: v.clone() for k, v in res.model.state_dict().items()}
    got = gcm.experiment.eop_at_own_epoch(res, Xv, yv, av)
    # eop_at_own_epoch leaves the returned (ΔEO-selected) model alone
    assert all(torch.equal(before[k], v) for k, v in res.model.state_dict().items())
    other = models.MLP(4, (8,), 1)
    other.load_state_dict(states[eop_epoch])
    assert got == gcm.model_report(other, Xv, yv, av)["eop_folded"]
    assert got == pytest.approx(h["val_eop_folded"].max(), rel=1e-6)  # on val: the recorded maximum
    assert got != pytest.approx(gcm.model_report(res.model, Xv, yv, av)["eop_folded"], rel=1e-4)


def test_fit_method_without_val_keeps_no_eop_epoch():
    res, _, (Xv, yv, av) = _fit_with_val(val=False)
    assert "eop" not in res.other_best and "val_eop_folded" not in res.history
    assert gcm.experiment.eop_at_own_epoch(res, Xv, yv, av) == gcm.model_report(res.model, Xv, yv, av)["eop_folded"]


# --- 8. check_parameters: equal search budgets --------------------------------------------------------------------
GRIDS = {"temperatures": [0.0, 2.0], "gcm_lams": [0.1, 0.3, 1.0], "eor_lams": [0.1, 1.0, 3.0],
         "adv_alphas": [0.3, 1.0, 3.0], "iga_lams": [0.0, 1.0, 2.0, 10.0], "direct_lams": [0.0, 0.01, 0.1, 0.3],
         "image_gcm_lams": [0.1, 0.3], "image_eor_lams": [0.1, 0.3], "image_adv_alphas": [0.3, 1.0]}


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_check_parameters_accepts_the_profiles(profile):
    from fairbook.book import chapters

    values = chapters.get("gcm").values(profile)
    gcm.chapter.check_parameters(values)
    n = len(values["gcm_lams"])
    assert len(values["eor_lams"]) == len(values["adv_alphas"]) == n
    assert sum(v > 0 for v in values["iga_lams"]) == sum(v > 0 for v in values["direct_lams"]) == n


@pytest.mark.parametrize("name, value", [
    ("eor_lams", [0.1, 1.0, 3.0, 10.0]),
    ("adv_alphas", [1.0]),
    ("iga_lams", [0.0, 1.0, 2.0]),             # two λ > 0 instead of three
    ("iga_lams", [1.0, 2.0, 10.0, 30.0]),      # four λ > 0 (no λ = 0 column)
    ("direct_lams", [0.0, 0.0, 0.1, 0.3]),     # the λ = 0 entries do not count
    ("image_adv_alphas", [0.3]),
    ("image_eor_lams", [0.1, 0.3, 1.0]),
])
def test_check_parameters_rejects_unequal_search_budgets(name, value):
    gcm.chapter.check_parameters(GRIDS)
    with pytest.raises(ParameterError, match=f"parameter '{name}'"):
        gcm.chapter.check_parameters({**GRIDS, name: value})


def test_check_parameters_counts_only_positive_lambdas():
    ok = {**GRIDS, "iga_lams": [0.0, 0.0, 1.0, 2.0, 3.0], "direct_lams": [0.5, 0.6, 0.7]}
    gcm.chapter.check_parameters(ok)
    # image grids are judged against image_gcm_lams, not the tabular grids
    gcm.chapter.check_parameters({**GRIDS, "image_gcm_lams": [1.0], "image_eor_lams": [1.0], "image_adv_alphas": [1.0]})


# --- 9. claims on lognorm ------------------------------------------------------------------------------------------
OFFSETS = np.array([-0.5, -0.1, 0.0, 0.2, 0.7, np.nan])  # median 0 (NaN left out)


def _trace(seed, medians, rng):
    """A tracker-like trace whose lognorm columns have the given medians (rows: true, perm0..perm2)."""
    n = len(OFFSETS)
    h = {"step": np.arange(n), "elements": 50, "undefined_y0": 1, "undefined_y1": 2, "code_y0": 1.5, "code_y1": 2.5}
    for i, suf in enumerate([""] + [f"_perm{j}" for j in range(len(medians) - 1)]):
        for yy in (0, 1):
            h[f"lognorm_y{yy}{suf}"] = medians[i][yy] + rng.permutation(OFFSETS)
            h[f"r_y{yy}{suf}"] = np.exp(rng.normal(0.2, 0.1, n))
    return pd.DataFrame(h).assign(dataset="adult", training="oversampling", seed=seed)


def _loo_statistic(logs):
    logs = np.asarray(logs, float)
    out = []
    for i in range(len(logs)):
        others = np.delete(logs, i, axis=0)
        out.append(np.max(np.abs(logs[i] - others.mean(axis=0))))
    return np.array(out)


HAND_MEDIANS = [(0.6, -0.2), (0.0, 0.1), (0.3, 0.0), (-0.3, -0.1)]


def test_disparity_vs_null_lognorm_excess_by_hand():
    rng = np.random.default_rng(0)
    other = [(0.05, 0.4), (0.1, -0.2), (-0.2, 0.3), (0.0, 0.0)]
    traces = pd.concat([_trace(1, HAND_MEDIANS, rng), _trace(2, other, rng)], ignore_index=True)
    out = gcm.claims.disparity_vs_null(traces).set_index("seed")
    r = out.loc[1]
    assert r["median log-norm (Y=0)"] == pytest.approx(0.6) and r["median log-norm (Y=1)"] == pytest.approx(-0.2)
    # by hand: statistics 0.6 (true), 0.2, 0.2, 0.6 (permuted)
    assert r.lognorm_statistic == pytest.approx(0.6)
    assert r.lognorm_null_mean == pytest.approx(1 / 3)
    assert (r.lognorm_null_min, r.lognorm_null_max) == pytest.approx((0.2, 0.6))
    assert r.lognorm_excess == pytest.approx(0.6 - 1 / 3)
    assert r.n_perm == 3 and r.undefined_fraction == pytest.approx(3 * 6 / (2 * 50 * 6))
    for seed, med in ((1, HAND_MEDIANS), (2, other)):
        s = _loo_statistic(med)
        assert gcm.claims.disparity_statistic(np.array(med)) == pytest.approx(s)
        assert out.loc[seed, "lognorm_excess"] == pytest.approx(s[0] - s[1:].mean())
        assert out.loc[seed, "lognorm_statistic"] == pytest.approx(s[0])


def _fairness_runs(rng, seeds=(0, 1, 2, 3)):
    rows = []
    settings = [("Vanilla", np.nan), ("OverSampling", np.nan), ("EOR", 1.0), ("Adversarial", 0.3),
                ("GCM (T=0)", 0.1), ("GCM (T=2)", 0.1), ("GCM (T=2)", 1.0)]
    for ds in ("adult", "compas"):
        for s in seeds:
            for m, lam in settings:
                rows.append({"dataset": ds, "method": m, "strength": lam, "seed": s,
                             "ap": 0.75 + rng.normal(0, 0.005), "val_ap": 0.75 + rng.normal(0, 0.005),
                             "delta_eo": abs(rng.normal(0.1, 0.05)), "val_delta_eo": abs(rng.normal(0.1, 0.05)),
                             "lognorm_y0": rng.normal(0, 0.3), "lognorm_y1": rng.normal(0, 0.3)})
    f = pd.DataFrame(rows)
    f.loc[3, "lognorm_y1"] = np.nan  # max over y skips NaN
    return f


def test_disparity_fairness_is_the_per_seed_spearman():
    f = _fairness_runs(np.random.default_rng(1))
    adult = f[f.dataset == "adult"]
    out = gcm.claims.disparity_fairness(adult).set_index("seed")
    assert list(out.index) == [0, 1, 2, 3]
    for s, g in adult.groupby("seed"):
        dis = [max(abs(v) for v in (r.lognorm_y0, r.lognorm_y1) if np.isfinite(v)) for r in g.itertuples()]
        rho = stats.spearmanr(dis, g.delta_eo).statistic
        assert out.loc[s, "rho"] == pytest.approx(rho, rel=1e-12) and out.loc[s, "n"] == len(g)
    # a perfectly monotone seed gives ρ = 1, reversed ρ = -1
    mono = pd.DataFrame({"seed": 9, "lognorm_y0": [0.1, -0.5, 0.3, 0.9], "lognorm_y1": [0.0, 0.2, -0.1, 0.0],
                         "delta_eo": [0.01, 0.2, 0.05, 0.3]})
    assert gcm.claims.disparity_fairness(mono).rho.iloc[0] == pytest.approx(1.0)
    assert gcm.claims.disparity_fairness(mono.assign(delta_eo=-mono.delta_eo)).rho.iloc[0] == pytest.approx(-1.0)


def _claims_inputs(rng, fig4, disparity):
    seeds = sorted(fig4.seed.unique())

    def sweep(cols, grid):
        return pd.DataFrame([{cols[0]: k, cols[1]: lam, "seed": s, "delta_eo": abs(rng.normal(0.1, 0.03)),
                              "val_delta_eo": abs(rng.normal(0.1, 0.03)), "ap": 0.75, "val_ap": 0.75}
                             for s in seeds for k, lam in grid])

    layers = sweep(("subset", "lambda"), [(f"{k}_{l}", lam) for k in ("weight", "bias") for l in (0, 1)
                                         for lam in (0.3, 3.0)])
    iga = sweep(("setting", "lam"), [("Vanilla", np.nan), ("λ=0", 0.0), ("λ=1", 1.0)])
    direct = sweep(("setting", "lam"), [("Vanilla", np.nan), ("λ=0", 0.0), ("λ=0.1", 0.1)])
    dp = pd.DataFrame([{"method": m, "strength": lam, "seed": s, "delta_dp": abs(rng.normal(0.1, 0.03)),
                        "val_delta_dp": abs(rng.normal(0.1, 0.03)), "ap": 0.65, "val_ap": 0.65}
                       for s in seeds for m, lam in [("Vanilla", np.nan), ("OverSampling", np.nan),
                                                     ("Resampling", np.nan), ("EOR", 1.0),
                                                     ("GCM + resampling", 0.1)]])
    y = np.r_[np.zeros(300), np.ones(100), np.zeros(600), np.ones(570)].astype(int)
    a = np.r_[np.zeros(400), np.ones(1170)].astype(int)
    return dict(adult_y=y, adult_a=a, disparity=disparity, fig4_runs=fig4, layer_runs=layers, iga_runs=iga,
                direct_runs=direct, dp_runs=dp, ap_tolerance=0.02, n_boot=199)


def test_claims_has_the_disparity_fairness_row_from_lognorm():
    rng = np.random.default_rng(2)
    fig4 = _fairness_runs(rng)
    meds = [HAND_MEDIANS, [(0.05, 0.4), (0.1, -0.2), (-0.2, 0.3), (0.0, 0.0)],
            [(0.9, 0.0), (0.1, 0.1), (0.0, -0.1), (-0.1, 0.0)], [(0.2, 0.2), (0.1, 0.0), (0.0, 0.3), (0.3, 0.1)]]
    disparity = gcm.claims.disparity_vs_null(
        pd.concat([_trace(s, m, rng) for s, m in zip((0, 1, 2, 3), meds)], ignore_index=True))
    out = gcm.claims.judge(**_claims_inputs(rng, fig4, disparity)).set_index("key")
    rhos = gcm.claims.disparity_fairness(fig4[fig4.dataset == "adult"]).rho.to_numpy()
    assert np.isfinite(rhos).all() and len(rhos) == 4
    row = out.loc["gcm_disparity_fairness"]
    assert row.n == 4 and row.estimate == pytest.approx(rhos.mean())
    # independent: Spearman of the hand max_y |lognorm| per seed (adult rows only)
    hand = []
    for s, g in fig4[fig4.dataset == "adult"].groupby("seed"):
        dis = np.nanmax(np.abs(g[["lognorm_y0", "lognorm_y1"]].to_numpy()), axis=1)
        hand.append(stats.spearmanr(dis, g.delta_eo).statistic)
    assert row.estimate == pytest.approx(np.mean(hand))
    assert "7 settings per seed" in row.note
    # Fig. 2 now judges lognorm_excess: the mean over seeds of the hand-checked excesses
    ex = [(lambda s: s[0] - s[1:].mean())(_loo_statistic(m)) for m in meds]
    assert out.loc["gcm_fig2_disparity", "estimate"] == pytest.approx(np.mean(ex))
    # without lognorm columns in fig4_runs there is no such row
    out2 = gcm.claims.judge(**_claims_inputs(rng, fig4.drop(columns=["lognorm_y0", "lognorm_y1"]), disparity))
    assert "gcm_disparity_fairness" not in set(out2.key)


def test_scale_check_is_vanilla_and_oversampling_per_seed():
    X, y, a = _biased(n=200, d=4, seed=3)
    kw = dict(batch_size=40, epochs=1, steps_per_epoch=3, optim=train.Optim("adam", lr=0.01))
    out = gcm.experiment.scale_check(X, y, a, (X, y, a), [5, 6], widths=(4,), **kw)
    assert list(zip(out.seed, out.method)) == [(5, "vanilla"), (5, "oversampling"), (6, "vanilla"), (6, "oversampling")]
    ref = gcm.fit_method("oversampling", train.seeded(lambda: models.MLP(4, (4,), 1), 6), X, y, a, seed=6, **kw)
    r = gcm.model_report(ref.model, X, y, a)
    row = out[(out.seed == 6) & (out.method == "oversampling")].iloc[0]
    assert row["delta_eo"] == pytest.approx(r["delta_eo"]) and row["ap"] == pytest.approx(r["ap"])
