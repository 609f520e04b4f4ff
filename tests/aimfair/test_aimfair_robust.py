"""fairbook.aimfair.robust: CVaR DRO (by hand, gradient), group DRO (q updates vs numpy, objective, absent
groups, fit integration), JTT's error set, upsampling and bias-ratio estimate; bad inputs."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from fairbook import train
from fairbook.aimfair import robust


def _sp(z):  # softplus in float64: BCE of logit z with target 1 is sp(-z), with target 0 sp(z)
    return math.log1p(math.exp(z))


# ---------------------------------------------------------------------------------------------- CVaR
LOGITS = [0.0, math.log(3), -math.log(3), 2.0]
Y = [1, 1, 1, 0]
LOSSES = [math.log(2), math.log(4 / 3), math.log(4), _sp(2.0)]  # by hand


def _batch(logits=LOGITS, y=Y, groups=None, grad=False):
    z = torch.tensor(logits, dtype=torch.float64).reshape(-1, 1).requires_grad_(grad)
    return {"x": None, "y": torch.tensor(y), "ids": None, "groups": groups, "logits": z}


def test_cvar_by_hand():
    b = _batch()
    assert robust.per_sample_loss(b["logits"], b["y"]).tolist() == pytest.approx(LOSSES, rel=1e-12)
    top2 = (_sp(2.0) + math.log(4)) / 2
    extra = robust.cvar_dro(0.5)(None, b).item()
    assert extra == pytest.approx(top2 - sum(LOSSES) / 4, rel=1e-12)
    total = train.loss_fn("bce")(b["logits"], b["y"]).item() + extra  # its y.float(): float32 loss
    assert total == pytest.approx(top2, rel=1e-6)
    assert robust.cvar_dro(0.3)(None, b).item() == pytest.approx(extra, rel=1e-12)  # k = ceil(1.2) = 2
    assert robust.cvar_dro(0.25)(None, b).item() == pytest.approx(_sp(2.0) - sum(LOSSES) / 4)


def test_cvar_alpha_one_is_exactly_zero():
    b = _batch([0.3, -1.7, 2.2, 0.1, 5.0], [1, 0, 1, 1, 0], grad=True)
    extra = robust.cvar_dro(1.0)(None, b)
    assert extra.item() == 0.0
    ce = {"y": torch.tensor([0, 2, 1]), "logits": torch.randn(3, 3)}
    assert robust.cvar_dro(1, loss="ce")(None, ce).item() == 0.0


def test_cvar_gradient_matches_hand_objective():
    b = _batch(grad=True)
    (train.loss_fn("bce")(b["logits"], b["y"]) + robust.cvar_dro(0.5)(None, b)).backward()
    z = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    hand = (nn.functional.softplus(-z[2]) + nn.functional.softplus(z[3])) / 2  # the two largest
    hand.backward()
    assert torch.allclose(b["logits"].grad.reshape(-1), z.grad, atol=1e-12)
    assert b["logits"].grad[:2].abs().max().item() == 0.0


def test_cvar_ce():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 2])
    l = nn.functional.cross_entropy(logits, y, reduction="none")
    extra = robust.cvar_dro(0.6, loss="ce")(None, {"logits": logits, "y": y}).item()  # k = 2
    assert extra == pytest.approx(l.sort().values[1:].mean().item() - l.mean().item(), rel=1e-12)


# ----------------------------------------------------------------------------------------- group DRO
def _np_losses(logits, y):
    z = np.asarray(logits, float)
    return np.where(np.asarray(y) == 1, np.log1p(np.exp(-z)), np.log1p(np.exp(z)))


def test_group_dro_two_steps_vs_numpy():
    eta = 0.5
    dro = robust.GroupDRO(4, eta=eta)
    assert dro.q.tolist() == [0.25] * 4
    q = np.full(4, 0.25)
    steps = [([0.5, -1.0, 2.0, 0.2, -0.3, 1.5], [0, 0, 1, 1, 1, 0], [0, 1, 0, 1, 1, 0]),  # all 4 cells
             ([1.0, -2.0, 0.7, 0.4], [1, 1, 0, 0], [0, 0, 0, 0])]                         # cells 0 and 2
    for logits, y, a in steps:
        l = _np_losses(logits, y)
        g = 2 * np.asarray(y) + np.asarray(a)
        present = np.unique(g)
        L = np.array([l[g == k].mean() for k in present])
        mass = q[present].sum()
        q_new = q[present] * np.exp(eta * L)
        q_before = dro.q
        q[present] = q_new / q_new.sum() * mass
        objective = (q[present] * L).sum() / q[present].sum()
        extra = dro(None, _batch(logits, y, torch.tensor(a))).item()
        assert dro.q == pytest.approx(q, rel=1e-12)
        assert dro.q.sum() == pytest.approx(1.0)
        assert extra == pytest.approx(objective - l.mean(), rel=1e-10)
        absent = np.setdiff1d(np.arange(4), present)
        assert dro.q[absent].tolist() == q_before[absent].tolist()  # absent groups keep their q
    assert (dro.q[[1, 3]] != 0.25).all() and dro.q[0] != dro.q[2]


def test_group_dro_objective_by_hand_and_gradient():
    # one sample per cell, eta = 0: q stays uniform, the objective is the mean of the four losses
    logits, y, a = [0.0, math.log(3), -math.log(3), 2.0], [1, 1, 1, 0], [0, 1, 0, 1]  # cells 2, 3, 2, 1
    dro = robust.GroupDRO(4, eta=0.0)
    b = _batch(logits, y, torch.tensor(a), grad=True)
    extra = dro(None, b)
    L2, L3, L1 = (math.log(2) + math.log(4)) / 2, math.log(4 / 3), _sp(2.0)
    assert extra.item() == pytest.approx((L1 + L2 + L3) / 3 - sum(LOSSES) / 4, rel=1e-12)
    (train.loss_fn("bce")(b["logits"], b["y"]) + extra).backward()
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    sp = nn.functional.softplus
    ((sp(-z[0]) + sp(-z[2])) / 2 / 3 + sp(-z[1]) / 3 + sp(z[3]) / 3).backward()
    assert torch.allclose(b["logits"].grad.reshape(-1), z.grad, atol=1e-12)
    assert dro.q.tolist() == [0.25] * 4


def test_group_dro_needs_groups():
    with pytest.raises(ValueError, match=r"groups=a"):
        robust.GroupDRO(4)(None, _batch())
    with pytest.raises(ValueError, match=r"groups'\] got \[0, 1, 2\]; allowed: attribute values in 0..1"):
        robust.GroupDRO(4)(None, _batch(groups=torch.tensor([0, 2, 1, 0])))  # a = 2 with n_a = 2
    with pytest.raises(ValueError, match="4 labels"):
        robust.GroupDRO(4)(None, _batch(groups=torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="multiple of the 3 classes"):
        robust.GroupDRO(4, loss="ce")(None, {"logits": torch.randn(2, 3), "y": torch.tensor([0, 1]),
                                             "groups": torch.tensor([0, 1])})


def _shortcut_data(n, signal, seed):
    """y balanced; s = y except for exactly 10% of each class (the minority cells (0, 1), (1, 0));
    feature 1 shows s strongly, feature 0 shows y with mean ±signal and unit noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    s = y.copy()
    for c in (0, 1):
        rows = np.flatnonzero(y == c)
        s[rng.choice(rows, size=len(rows) // 10, replace=False)] = 1 - c
    X = np.stack([(2 * y - 1) * signal + rng.normal(size=n),
                  (2 * s - 1) * 2.0 + 0.5 * rng.normal(size=n)], 1).astype(np.float32)
    return X, y, s


def _fit(X, y, s, extra=None, epochs=15):
    model = train.seeded(lambda: nn.Linear(2, 1), 0)
    train.fit(model, X, y, epochs=epochs, batch_size=200, optim=train.Optim("adam", lr=0.05),
              loss="bce", select=None, groups=s, extra_loss=extra, device="cpu", seed=0)
    return model


def test_group_dro_raises_minority_accuracy_in_fit():
    X, y, s = _shortcut_data(2000, 0.7, seed=0)
    Xt, yt, st = _shortcut_data(2000, 0.7, seed=1)
    minority = yt != st
    acc = {}
    for name, extra in [("erm", None), ("dro", robust.GroupDRO(4, eta=0.1))]:
        model = _fit(X, y, s, extra)
        acc[name] = (~robust.error_set(model, Xt, yt, device="cpu"))[minority].mean()
    assert acc["erm"] < 0.3 and acc["dro"] > acc["erm"] + 0.3, acc
    assert extra.q.sum() == pytest.approx(1.0) and (extra.q > 0).all()


# ----------------------------------------------------------------------------------------------- JTT
def test_error_set_hand_model():
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0]]))
        lin.bias.zero_()
    X = np.array([[1.0, 5.0], [-2.0, 0.0], [3.0, 1.0], [-0.5, 2.0]], np.float32)  # predicts 1, 0, 1, 0
    y = np.array([1, 1, 0, 0])
    assert robust.error_set(lin, X, y, batch_size=3, device="cpu").tolist() == [False, True, True, False]
    two = nn.Linear(2, 3, bias=False)  # several logits: argmax
    with torch.no_grad():
        two.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    X3 = np.array([[2.0, 1.0], [0.0, 1.0], [-1.0, -1.0]], np.float32)  # predicts 0, 1, 2
    assert robust.error_set(two, X3, [0, 2, 2], device="cpu").tolist() == [False, True, False]
    with pytest.raises(ValueError, match="3 labels"):
        robust.error_set(lin, X, y[:3], device="cpu")
    with pytest.raises(ValueError, match="error_set: batch_size got 0"):
        robust.error_set(lin, X, y, batch_size=0)


def test_upweight_counts():
    err = np.array([False, True, False, True, True])
    idx = robust.upweight(err, 3)
    assert idx.dtype == np.int64
    assert idx.tolist() == [0, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4]
    assert np.bincount(idx).tolist() == [1, 3, 1, 3, 3]
    assert robust.upweight(err, 1).tolist() == [0, 1, 2, 3, 4]
    shuffled = robust.upweight(err, 3, seed=0)
    assert sorted(shuffled.tolist()) == idx.tolist() and shuffled.tolist() != idx.tolist()
    assert robust.upweight(np.array([0, 1]), np.int64(2)).tolist() == [0, 1, 1]


def test_minority_share_by_hand():
    y = np.repeat([0, 1], 10)
    s = y.copy()
    s[[0, 1]] = 1   # class 0: 2 minority rows of 10
    s[[10]] = 0     # class 1: 1 minority row of 10
    assert robust.error_set_minority_share(y != s, y) == pytest.approx(0.15)
    assert robust.error_set_minority_share(np.ones(4, bool), [0, 0, 1, 1]) == 0.5  # clipped
    y2 = np.repeat([0, 1], [4, 10])  # unbalanced classes: the mean of per-class shares, not 2/14
    err2 = np.isin(np.arange(14), [0, 4])
    assert robust.error_set_minority_share(err2, y2) == pytest.approx((1 / 4 + 1 / 10) / 2)
    assert robust.error_set_minority_share(np.zeros(3, bool), [1, 1, 1]) == 0.0


def test_minority_share_from_trained_model():
    X, y, s = _shortcut_data(2000, 0.3, seed=2)  # weak signal: the model follows the shortcut s
    model = _fit(X, y, s, epochs=10)
    err = robust.error_set(model, X, y, device="cpu")
    assert abs(robust.error_set_minority_share(err, y) - 0.1) < 0.05
    assert err.sum() > 0 and (y != s)[err].mean() > 0.7


# ---------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("alpha", [0, -0.1, 1.5, float("nan"), True, "0.5", None])
def test_cvar_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"cvar_dro: alpha got .*; allowed: a finite number in \(0, 1\]"):
        robust.cvar_dro(alpha)


@pytest.mark.parametrize("make", [lambda: robust.cvar_dro(0.5, loss="mse"),
                                  lambda: robust.GroupDRO(4, loss="BCE"),
                                  lambda: robust.per_sample_loss(torch.zeros(1, 1), torch.zeros(1), "l1")])
def test_bad_loss(make):
    with pytest.raises(ValueError, match=r"loss got '.*'; allowed: 'bce'"):
        make()


@pytest.mark.parametrize("n_groups", [0, 1, 3, 4.0, True, "4"])
def test_group_dro_bad_n_groups(n_groups):
    with pytest.raises(ValueError, match=r"GroupDRO: n_groups got .*; allowed:"):
        robust.GroupDRO(n_groups)


@pytest.mark.parametrize("eta", [-0.01, float("inf"), float("nan"), "0.1", None])
def test_group_dro_bad_eta(eta):
    with pytest.raises(ValueError, match=r"GroupDRO: eta got .*; allowed: a finite number >= 0"):
        robust.GroupDRO(4, eta=eta)


@pytest.mark.parametrize("lam", [0, -1, 2.5, 2.0, True, "3", None])
def test_upweight_bad_lambda(lam):
    with pytest.raises(ValueError, match=r"upweight: lambda_up got .*; allowed: an integer >= 1"):
        robust.upweight(np.array([True, False]), lam)


@pytest.mark.parametrize("error", [np.array([[True, False]]), np.array([0.5, 1.0]), np.array([0, 2])])
def test_bad_error_arrays(error):
    with pytest.raises(ValueError, match=r"upweight: error got .*; allowed: a 1-D boolean"):
        robust.upweight(error, 2)
    with pytest.raises(ValueError, match=r"error_set_minority_share: error got"):
        robust.error_set_minority_share(error, [0] * error.shape[-1])


def test_bad_other_inputs():
    with pytest.raises(ValueError, match=r"upweight: seed got 1.5"):
        robust.upweight(np.array([True]), 2, seed=1.5)
    with pytest.raises(ValueError, match=r"error_set_minority_share: y got '2 labels'"):
        robust.error_set_minority_share(np.array([True, False, True]), [0, 1])
    with pytest.raises(ValueError, match=r"error_set_minority_share: y got '0 labels'"):
        robust.error_set_minority_share(np.array([], bool), [])
