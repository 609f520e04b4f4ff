"""Unit tests of fairbook.aimfair (mask, finetuning, evaluation, data, chapter): cell ratios, dataset gradients (eqs. 1-3), the selective mask
(eqs. 4-7), selective fine-tuning (eq. 8) with and without frozen BatchNorm statistics, the
baselines of Tables 3-4, and the evaluation/aggregation of the paper's tables."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fairbook import aimfair as A
from fairbook import train as T
from fairbook.aimfair import chapter as CH
from fairbook.aimfair import data as AD
from fairbook.aimfair import finetuning as FT
from fairbook.data.images import AIM_FAIR_RATIOS, cell_counts
from fairbook.models import MLP, SmallCNN, resnet


# ------------------------------------------------------------------------------------ helpers
def clone_params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def clone_buffers(model):
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(in_channels=1, num_classes=1, channels=(4, 6, 8))


def images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 1, 8, 8, generator=g)
    y = (X.mean((1, 2, 3)) > 0.5).long()
    return X, y


class Indexed(torch.utils.data.Dataset):
    """A Dataset yielding (x, y, index), like the package's image tables."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], int(self.y[i]), i


def mask_for(model, chosen, level="tensor"):
    """A SelectiveMask through selective_mask whose selection is ``chosen``: a set of names
    (tensor level) or a dict name -> bool tensor (element level). Δ1 = 0 / Δ2 = 1 on the chosen
    units and Δ1 = 1 / Δ2 = 0 elsewhere, k = the number of chosen units, so K1 = K2 = K = chosen."""
    g_S1, g_R, g_S2 = {}, {}, {}
    for n, p in model.named_parameters():
        on = (chosen[n].float() if level == "element" and n in chosen
              else torch.full(p.shape, float(level == "tensor" and n in chosen)))
        g_S1[n], g_R[n], g_S2[n] = torch.zeros(p.shape), 1 - on, on
    k = len(chosen) if level == "tensor" else int(sum(int(m.sum()) for m in chosen.values()))
    return A.selective_mask(g_R, g_S1, g_S2, k, level=level)


# ------------------------------------------------------------------------------------ ratios
def test_bias_ratios_match_the_papers_1_to_9_subset_and_table6():
    r = A.bias_ratios(0.1)
    assert r == pytest.approx((0.05, 0.45, 0.45, 0.05))
    assert r == pytest.approx(AIM_FAIR_RATIOS)
    assert cell_counts(20_000, r).tolist() == [1000, 9000, 9000, 1000]   # REFERENCE: CelebA counts
    assert A.bias_ratios("1:9") == pytest.approx(r)
    assert A.bias_ratios("3:7") == pytest.approx((0.15, 0.35, 0.35, 0.15))
    assert A.bias_ratios(0.5) == A.balanced_ratios() == (0.25, 0.25, 0.25, 0.25)
    for m in (0.0, 0.2, 0.4, 0.5):
        assert sum(A.bias_ratios(m)) == pytest.approx(1.0)
        r = A.bias_ratios(m)
        assert r[0] + r[1] == pytest.approx(0.5) and r[0] / 0.5 == pytest.approx(m)


@pytest.mark.parametrize("bad", [0.6, -0.1, "9:1", "1-9", "a:b", True, None])
def test_bias_ratios_rejects(bad):
    with pytest.raises(ValueError, match="bias_ratios: minority got"):
        A.bias_ratios(bad)


# ------------------------------------------------------------------------------------ gradients
def full_batch_gradient(model, X, y, loss="bce"):
    model.zero_grad()
    out = model(X)
    value = (nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y.float())
             if loss == "bce" else nn.functional.cross_entropy(out, y))
    value.backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("loss,out", [("bce", 1), ("ce", 2)])
def test_dataset_gradients_equal_the_full_batch_gradient_of_the_mean_loss(loss, out):
    torch.manual_seed(0)
    model = MLP(5, (7,), out)
    X = torch.randn(37, 5)
    y = (X[:, 0] > 0).long()
    want = full_batch_gradient(model, X, y, loss)
    got = A.dataset_gradients(model, X, y, batch_size=8, loss=loss, device="cpu")  # 4×8 + 5
    assert list(got) == [n for n, _ in model.named_parameters()]
    for k in want:
        assert got[k].shape == want[k].shape
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    # an unweighted mean of batch means would differ with an uneven last batch
    unweighted = {k: torch.zeros_like(v) for k, v in want.items()}
    for i in range(0, 37, 8):
        for k, v in full_batch_gradient(model, X[i:i + 8], y[i:i + 8], loss).items():
            unweighted[k] += v / 5
    assert any(not torch.allclose(unweighted[k], got[k], atol=1e-6) for k in got)
    # numpy input and a Dataset of (x, y, index) give the same numbers
    via_numpy = A.dataset_gradients(model, X.numpy(), y.numpy(), batch_size=8, loss=loss, device="cpu")
    via_ds = A.dataset_gradients(model, Indexed(X, y), batch_size=8, loss=loss, device="cpu")
    for k in got:
        torch.testing.assert_close(via_numpy[k], got[k])
        torch.testing.assert_close(via_ds[k], got[k])


def test_dataset_gradients_leave_the_model_unchanged_and_use_train_mode():
    model = cnn()
    X, y = images(30)
    model.eval()
    params, buffers = clone_params(model), clone_buffers(model)
    model.head.weight.grad = torch.full_like(model.head.weight, 7.0)    # a caller's own .grad
    model.body[0].weight.requires_grad_(False)                          # a caller's frozen tensor
    rng = torch.get_rng_state()
    g_train = A.dataset_gradients(model, X, y, batch_size=8, device="cpu")
    # parameters, BN running stats and num_batches_tracked, grads, flags, mode: all as before
    assert all(torch.equal(params[k], v) for k, v in clone_params(model).items())
    assert all(torch.equal(buffers[k], v) for k, v in clone_buffers(model).items())
    assert torch.equal(model.head.weight.grad, torch.full_like(model.head.weight, 7.0))
    assert model.body[1].weight.grad is None
    assert not model.body[0].weight.requires_grad and model.body[1].weight.requires_grad
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert g_train["body.0.weight"].abs().sum() > 0      # frozen tensors get a gradient too
    # train mode (BN batch statistics) is not eval mode; eval mode is the full-batch eval gradient
    model.body[0].weight.requires_grad_(True)
    g_eval = A.dataset_gradients(model, X, y, batch_size=8, train_mode=False, device="cpu")
    want = full_batch_gradient(model, X, y)
    for k in want:
        torch.testing.assert_close(g_eval[k], want[k], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(g_train["body.0.weight"], g_eval["body.0.weight"], atol=1e-6)
    # a train-mode forward outside the function would move the BN statistics (the test has teeth)
    model.train()
    model(X)
    assert not torch.equal(buffers["body.1.running_mean"], model.body[1].running_mean)


def test_dataset_gradients_with_dropout_are_seeded():
    torch.manual_seed(0)
    model = MLP(5, (16,), 1, dropout=0.5)
    X = torch.randn(20, 5)
    y = (X[:, 0] > 0).long()
    a = A.dataset_gradients(model, X, y, batch_size=6, device="cpu", seed=3)
    b = A.dataset_gradients(model, X, y, batch_size=6, device="cpu", seed=3)
    c = A.dataset_gradients(model, X, y, batch_size=6, device="cpu", seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_dataset_gradients_reject_bad_inputs():
    model = MLP(2, (3,), 1)
    X, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="dataset_gradients: loss got 'mse'"):
        A.dataset_gradients(model, X, y, loss="mse")
    with pytest.raises(ValueError, match="dataset_gradients: batch_size got 0"):
        A.dataset_gradients(model, X, y, batch_size=0)
    with pytest.raises(ValueError, match="dataset_gradients: y got None"):
        A.dataset_gradients(model, X)
    with pytest.raises(ValueError, match="dataset_gradients: y got '3 labels'"):
        A.dataset_gradients(model, X, y[:3])
    with pytest.raises(ValueError, match="empty"):
        A.dataset_gradients(model, X[:0], y[:0])


# ------------------------------------------------------------------------------------ mask
def hand_gradients():
    """Five tensors, dyadic values (exact in floating point, so ties are real ties). Per-tensor
    means of |g_R − g_S1|: a .375, b .125, c .25, d .125, e .5 (a's |mean| would be .125: the mean
    of absolute differences is meant); of |g_S1 − g_S2|: a .5, b .0625, c .5, d .25, e .875."""
    g_S1 = {"a": torch.zeros(2), "b": torch.zeros(1), "c": torch.zeros(3), "d": torch.zeros(1, 1),
            "e": torch.zeros(2)}
    g_R = {"a": torch.tensor([0.5, -0.25]), "b": torch.tensor([0.125]),
           "c": torch.tensor([0.25, -0.25, 0.25]), "d": torch.tensor([[-0.125]]),
           "e": torch.tensor([0.5, 0.5])}
    g_S2 = {"a": torch.tensor([0.5, -0.5]), "b": torch.tensor([0.0625]),
            "c": torch.tensor([0.75, 0.375, 0.375]), "d": torch.tensor([[0.25]]),
            "e": torch.tensor([-0.875, 0.875])}
    return g_R, g_S1, g_S2


def test_tensor_level_mask_reproduces_the_hand_ranking():
    g_R, g_S1, g_S2 = hand_gradients()
    m = A.selective_mask(g_R, g_S1, g_S2, 3)
    np.testing.assert_array_equal(m.delta1, [0.375, 0.125, 0.25, 0.125, 0.5])
    np.testing.assert_array_equal(m.delta2, [0.5, 0.0625, 0.5, 0.25, 0.875])
    # R1 = b, d (tie: parameter order), c, a, e;  R2 = e, a, c (tie: parameter order), d, b
    t = m.table().set_index("name")
    assert t["rank1"].to_dict() == {"b": 1, "d": 2, "c": 3, "a": 4, "e": 5}
    assert t["rank2"].to_dict() == {"e": 1, "a": 2, "c": 3, "d": 4, "b": 5}
    assert set(t.index[t.in_K1]) == {"b", "d", "c"} and set(t.index[t.in_K2]) == {"e", "a", "c"}
    assert m.trainable == {"c"} and m.level == "tensor" and m.k == 3
    m4 = A.selective_mask(g_R, g_S1, g_S2, 4)
    assert m4.trainable == {"a", "c", "d"}
    masks = m4.grad_masks()
    assert set(masks) == {"a", "c", "d"} and masks["d"].shape == (1, 1)
    assert all(torch.equal(v, torch.ones_like(v)) for v in masks.values())
    assert m4.n_selected_parameters() == 2 + 3 + 1
    assert A.selective_mask(g_R, g_S1, g_S2, 5).trainable == {"a", "b", "c", "d", "e"}


def test_element_level_mask_reproduces_the_hand_ranking():
    g_R, g_S1, g_S2 = hand_gradients()
    m = A.selective_mask(g_R, g_S1, g_S2, 4, level="element")
    # elements in order a0 a1 b0 c0 c1 c2 d0 e0 e1
    np.testing.assert_array_equal(m.delta1, [.5, .25, .125, .25, .25, .25, .125, .5, .5])
    np.testing.assert_array_equal(m.delta2, [.5, .5, .0625, .75, .375, .375, .25, .875, .875])
    # K1 (4 smallest Δ1, ties by position): b0, d0, a1, c0; K2 (4 largest Δ2): e0, e1, c0, a0
    # (a0 and a1 tie at .5 with a0 first) -> K = {c0}
    assert np.flatnonzero(m.in_K1).tolist() == [1, 2, 3, 6]
    assert np.flatnonzero(m.in_K2).tolist() == [0, 3, 7, 8]
    assert m.trainable == {"c"}
    assert torch.equal(m.grad_masks()["c"], torch.tensor([1.0, 0.0, 0.0]))
    m6 = A.selective_mask(g_R, g_S1, g_S2, 6, level="element")
    # K1 = a1 b0 d0 c0 c1 c2; K2 = e0 e1 c0 a0 a1 c1 -> a1, c0, c1
    assert m6.trainable == {"a", "c"}
    masks = m6.grad_masks()
    assert torch.equal(masks["a"], torch.tensor([0.0, 1.0]))
    assert torch.equal(masks["c"], torch.tensor([1.0, 1.0, 0.0]))
    assert m6.n_selected_parameters() == 3
    t = m6.table().set_index("name")
    assert t["selected"].to_dict() == {"a": 1, "b": 0, "c": 2, "d": 0, "e": 0}


def test_cosine_mask_reproduces_the_hand_ranking():
    g_S1 = {"p": torch.tensor([1.0, 0.0]), "q": torch.tensor([1.0, 0.0]), "r": torch.tensor([0.0, 1.0])}
    g_R = {"p": torch.tensor([2.0, 0.0]), "q": torch.tensor([0.0, 1.0]), "r": torch.tensor([-1.0, 1.0])}
    g_S2 = {"p": torch.tensor([-1.0, 0.0]), "q": torch.tensor([1.0, 1.0]), "r": torch.tensor([0.0, 5.0])}
    m = A.selective_mask(g_R, g_S1, g_S2, 2, measure="cosine")
    np.testing.assert_allclose(m.delta1, [0.0, 1.0, 1 - 1 / math.sqrt(2)], atol=1e-12)
    np.testing.assert_allclose(m.delta2, [2.0, 1 - 1 / math.sqrt(2), 0.0], atol=1e-12)
    # K1 = {p, r}, K2 = {p, q} -> {p}; the absolute measure picks differently here
    assert m.trainable == {"p"} and m.measure == "cosine"
    assert A.selective_mask(g_R, g_S1, g_S2, 2).trainable == {"p", "r"}


def test_ties_follow_parameter_order():
    g = {n: torch.zeros(2) for n in ("z", "y", "x", "w")}
    m = A.selective_mask(g, g, g, 2)
    assert m.trainable == {"z", "y"}          # the first two in parameter order, not alphabetical
    m = A.selective_mask(g, g, g, 3, level="element")
    assert m.trainable == {"z", "y"} and torch.equal(m.grad_masks()["y"], torch.tensor([1.0, 0.0]))


def test_selective_mask_rejects_bad_inputs():
    g_R, g_S1, g_S2 = hand_gradients()
    with pytest.raises(ValueError, match="level got 'layer'; allowed: 'tensor' or 'element'"):
        A.selective_mask(g_R, g_S1, g_S2, 2, level="layer")
    with pytest.raises(ValueError, match="measure got 'l2'"):
        A.selective_mask(g_R, g_S1, g_S2, 2, measure="l2")
    with pytest.raises(ValueError, match="measure got 'cosine'.*level='tensor'"):
        A.selective_mask(g_R, g_S1, g_S2, 2, level="element", measure="cosine")
    with pytest.raises(ValueError, match=r"k got 6; allowed: an integer in \[1, 5\]"):
        A.selective_mask(g_R, g_S1, g_S2, 6)
    with pytest.raises(ValueError, match=r"k got 0; allowed: an integer in \[1, 9\]"):
        A.selective_mask(g_R, g_S1, g_S2, 0, level="element")
    with pytest.raises(ValueError, match="g_S2 got .*missing \\['e'\\]"):
        A.selective_mask(g_R, g_S1, {k: v for k, v in g_S2.items() if k != "e"}, 2)
    with pytest.raises(ValueError, match=r"g_S1\['a'\] got 'shape \(3,\)'"):
        A.selective_mask(g_R, {**g_S1, "a": torch.zeros(3)}, g_S2, 2)
    with pytest.raises(ValueError, match="g_R got 'dict'"):
        A.selective_mask({}, g_S1, g_S2, 2)


def test_k_for_fraction_and_fraction_of_parameters():
    net = resnet(18, 1)
    assert A.k_for_fraction(net, 55 / 62) == 55
    assert A.k_for_fraction(net, 0.64) == 40          # Fig. 5: k = 40 ≈ 64% of the tensors
    assert A.k_for_fraction(["a", "b", "c"], 0.01) == 1
    model = cnn()
    total = sum(p.numel() for p in model.parameters())
    assert total == 729 and A.k_for_fraction(model, 0.5, "element") == 365   # 364.5 rounds up
    m = mask_for(model, {"head.weight", "head.bias"})
    assert m.fraction_of_parameters(model) == pytest.approx((8 + 1) / total)
    with pytest.raises(ValueError, match="fraction got 0"):
        A.k_for_fraction(model, 0)
    with pytest.raises(ValueError, match="sizes are needed"):
        A.k_for_fraction(["a"], 0.5, "element")
    with pytest.raises(ValueError, match="fraction_of_parameters: model got"):
        m.fraction_of_parameters(MLP(2, (3,), 1))


# ------------------------------------------------------------------------------------ fine-tuning
FIT = dict(epochs=2, batch_size=16, loss="bce", select=None, device="cpu",
           optim=T.Optim("sgd", lr=0.5, momentum=0.9))


def test_tensor_level_finetuning_changes_exactly_the_selected_tensors():
    model = cnn()
    X, y = images(40)
    chosen = {"body.4.weight", "body.9.bias", "head.weight"}
    m = mask_for(model, chosen)
    assert m.trainable == chosen
    before = clone_params(model)
    res = A.selective_finetune(model, m, X, y, **FIT)
    assert isinstance(res, T.FitResult) and len(res.history) == 2
    after = clone_params(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == chosen
    assert all(p.requires_grad for p in model.parameters())       # flags given back


def test_element_level_finetuning_changes_only_the_selected_elements_even_with_weight_decay():
    model = cnn()
    X, y = images(40)
    g = torch.Generator().manual_seed(1)
    chosen = {n: torch.rand(p.shape, generator=g) < 0.5
              for n, p in model.named_parameters()
              if n in ("body.4.weight", "body.5.weight", "head.weight")}
    m = mask_for(model, chosen, level="element")
    assert m.trainable == set(chosen)
    assert all(torch.equal(m.grad_masks()[n], chosen[n].float()) for n in chosen)
    before = clone_params(model)
    fit = dict(FIT, optim=T.Optim("sgd", lr=0.5, momentum=0.9, weight_decay=0.05))
    A.selective_finetune(model, m, X, y, **fit)
    after = clone_params(model)
    for n in before:
        sel = chosen.get(n, torch.zeros(before[n].shape, dtype=torch.bool))
        assert torch.equal(before[n][~sel], after[n][~sel]), n      # bit-identical
        assert (before[n][sel] != after[n][sel]).all(), n           # weight decay moves every one


class CountingForward:
    """An extra loss with the engine's shared-forward hook, counting the calls of both."""

    def __init__(self):
        self.forwards = self.calls = 0

    def __call__(self, model, batch):
        self.calls += 1
        return batch["logits"].sum() * 0.0

    def batch_forward(self, model, x, y, groups):
        self.forwards += 1
        return model(x)


def test_element_level_weight_decay_keeps_the_extra_losss_batch_forward():
    extra = CountingForward()
    wrapped = FT._with_masked_decay(extra, 0.1, ["head.weight"])
    assert wrapped.batch_forward == extra.batch_forward
    assert not hasattr(FT._with_masked_decay(lambda m, b: 0.0, 0.1, ["head.weight"]), "batch_forward")
    # through selective_finetune: the engine takes every batch's logits from batch_forward
    model = cnn()
    X, y = images(40)
    m = mask_for(model, {"head.weight": torch.ones(1, 8, dtype=torch.bool)}, level="element")
    fit = dict(FIT, optim=T.Optim("sgd", lr=0.5, momentum=0.9, weight_decay=0.05), extra_loss=extra)
    A.selective_finetune(model, m, X, y, **fit)
    steps = 2 * math.ceil(40 / 16)
    assert extra.calls == steps and extra.forwards == steps


def test_element_level_refuses_adamw_weight_decay_and_fit_overrides():
    model = cnn()
    X, y = images(16)
    m = mask_for(model, {"head.weight": torch.ones(1, 8, dtype=torch.bool)}, level="element")
    with pytest.raises(ValueError, match="selective_finetune: optim got .*adamw"):
        A.selective_finetune(model, m, X, y,
                             **dict(FIT, optim=T.Optim("adamw", lr=0.1, weight_decay=0.1)))
    with pytest.raises(ValueError, match="selective_finetune: trainable got"):
        A.selective_finetune(model, m, X, y, trainable={"head.bias"}, **FIT)
    with pytest.raises(ValueError, match="selective_finetune: mask got 'set'"):
        A.selective_finetune(model, {"head.bias"}, X, y, **FIT)
    with pytest.raises(ValueError, match="selective_finetune: model got"):
        A.selective_finetune(MLP(64, (3,), 1), m, X, y, **FIT)
    zeros = {n: torch.zeros(p.shape) for n, p in model.named_parameters()}
    empty = A.selective_mask(zeros, zeros, {**zeros, "head.bias": torch.ones(1)}, 1)
    assert empty.trainable == set()                      # K1 = {body.0.weight}, K2 = {head.bias}
    with pytest.raises(ValueError, match="selective_finetune: mask got 'an empty selection"):
        A.selective_finetune(model, empty, X, y, **FIT)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_stats_keeps_frozen_layers_running_statistics(freeze):
    model = cnn()
    X, y = images(40)
    m = mask_for(model, {"body.8.weight", "body.9.weight", "body.9.bias", "head.weight", "head.bias"})
    buffers, params = clone_buffers(model), clone_params(model)
    A.selective_finetune(model, m, X, y, freeze_bn_stats=freeze, **FIT)
    now = clone_buffers(model)
    frozen_bn = [f"body.{i}.{b}" for i in (1, 5)
                 for b in ("running_mean", "running_var", "num_batches_tracked")]
    assert all(torch.equal(buffers[b], now[b]) for b in frozen_bn) == freeze
    for b in ("running_mean", "running_var"):
        assert not torch.equal(buffers[f"body.9.{b}"], now[f"body.9.{b}"])   # trained layer moves
    assert all(mod.track_running_stats for mod in model.modules()
               if isinstance(mod, nn.BatchNorm2d))
    after = clone_params(model)
    assert all(torch.equal(params[k], after[k]) for k in params if k not in m.trainable)


def test_baselines_honour_freeze_bn_stats_through_finetune():
    # one BatchNorm setting for every method: a linear probe keeps the frozen layers' statistics
    X, y = images(40)
    for freeze in (True, False):
        model = cnn()
        buffers = clone_buffers(model)
        A.finetune(model, A.linear_probe(model), X, y, freeze_bn_stats=freeze, **FIT)
        now = clone_buffers(model)
        assert all(torch.equal(buffers[b], now[b]) for b in buffers) == freeze
    with pytest.raises(ValueError, match="finetune: selection got .1 names, unknown"):
        A.finetune(cnn(), {"nope"}, X, y, **FIT)
    with pytest.raises(ValueError, match="finetune: selection got 'int'"):
        A.finetune(cnn(), 3, X, y, **FIT)
    with pytest.raises(ValueError, match="finetune: trainable got"):
        A.finetune(cnn(), {"head.bias"}, X, y, trainable={"head.bias"}, **FIT)


@pytest.mark.parametrize("freeze", [True, False])
def test_sft_with_every_tensor_selected_equals_full_finetuning_exactly(freeze):
    X, y = images(40)
    base = cnn()
    n = len(A.full(base))
    g = {k: torch.randn(p.shape) for k, p in base.named_parameters()}
    mask = A.selective_mask(g, {k: v * 2 for k, v in g.items()}, {k: -v for k, v in g.items()}, n)
    assert mask.trainable == A.full(base)
    sft, fft = cnn(), cnn()
    A.selective_finetune(sft, mask, X, y, freeze_bn_stats=freeze, **FIT)
    A.finetune(fft, A.full(fft), X, y, freeze_bn_stats=freeze, **FIT)
    a, b = sft.state_dict(), fft.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_random_like_matches_the_mask_in_tensors_or_in_scalars():
    model = SmallCNN(3, 1, (8, 16, 32))
    sizes = {k: p.numel() for k, p in model.named_parameters()}
    chosen = {"body.4.weight", "body.5.bias", "head.weight"}
    m = mask_for(model, chosen)
    picks = [A.random_like(model, m, "tensors", seed) for seed in range(20)]
    assert all(len(p) == 3 and p <= set(sizes) for p in picks)
    assert len({frozenset(p) for p in picks}) > 5                      # random, seeded
    assert A.random_like(model, m, "tensors", 3) == A.random_like(model, m, "tensors", 3)
    target = m.n_selected_parameters()
    for seed in range(20):
        p = A.random_like(model, m, "scalars", seed)
        total = sum(sizes[k] for k in p)
        # greedy: no unpicked tensor would bring the total closer to the mask's count
        assert all(abs(total + sizes[k] - target) >= abs(total - target) for k in set(sizes) - p)
    with pytest.raises(ValueError, match="random_like: match got 'bytes'"):
        A.random_like(model, m, "bytes", 0)
    with pytest.raises(ValueError, match="random_like: mask got 'set'"):
        A.random_like(model, chosen, "tensors", 0)


def cell_images(n_per_cell=64, seed=0):
    """Images whose (y, s) cells differ in their channel means, rows ordered cell by cell (as
    cell_rows returns them): BatchNorm's batch statistics then depend on which cells share a batch."""
    g = torch.Generator().manual_seed(seed)
    X, y = [], []
    for c, (yy, ss) in enumerate(A.CELLS):
        x = torch.rand(n_per_cell, 3, 8, 8, generator=g) * 0.3
        x[:, 0 if ss == 0 else 1] += 0.6
        x[:, 2] += 0.4 * yy
        X.append(x)
        y += [yy] * n_per_cell
    return torch.cat(X), torch.tensor(y)


def _gap(a, b):
    return float(torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a)))


def test_batchnorm_gradient_does_not_depend_on_the_input_order():
    torch.manual_seed(0)
    model = SmallCNN(3, 1, (4, 6, 8))
    X, y = cell_images()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(5))
    kw = dict(batch_size=32, device="cpu")
    ordered = A.dataset_gradients(model, X, y, **kw)                  # cell-ordered input, shuffled inside
    mixed = A.dataset_gradients(model, X[perm], y[perm], **kw)
    between_shuffles = _gap(A.dataset_gradients(model, X, y, seed=1, **kw),
                            A.dataset_gradients(model, X, y, seed=2, **kw))
    assert _gap(ordered, mixed) < 2 * between_shuffles
    # the regime matters: unshuffled single-cell batches move the gradient far more
    single_cell = A.dataset_gradients(model, X, y, shuffle=False, **kw)
    assert _gap(single_cell, mixed) > 3 * between_shuffles
    # without BatchNorm's batch statistics (eval mode) the order does not matter at all
    ev = dict(kw, train_mode=False)
    a, b = A.dataset_gradients(model, X, y, shuffle=False, **ev), A.dataset_gradients(model, X[perm], y[perm], **ev)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ValueError, match="dataset_gradients: shuffle got 1"):
        A.dataset_gradients(model, X, y, shuffle=1, **kw)


# ------------------------------------------------------------------------------------ baselines
def test_blocks_of_small_cnn_and_resnet18():
    model = cnn()
    assert A.blocks(model) == {"block1": ["body.0.weight", "body.1.weight", "body.1.bias"],
                               "block2": ["body.4.weight", "body.5.weight", "body.5.bias"],
                               "block3": ["body.8.weight", "body.9.weight", "body.9.bias"],
                               "head": ["head.weight", "head.bias"]}
    net = resnet(18, 1)
    bl = A.blocks(net)
    assert list(bl) == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert sum(len(v) for v in bl.values()) == 62 == len(A.full(net))
    assert bl["stem"] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert bl["fc"] == ["fc.weight", "fc.bias"]
    assert [len(bl[f"layer{i}"]) for i in range(1, 5)] == [12, 15, 15, 15]
    flat = [n for v in bl.values() for n in v]
    assert len(set(flat)) == 62 and set(flat) == A.full(net)
    assert A.linear_probe(net) == {"fc.weight", "fc.bias"}
    assert A.linear_probe(model) == {"head.weight", "head.bias"}
    assert A.update_one_block(net, "layer2") == set(bl["layer2"])
    assert A.freeze_one_block(net, "stem") == A.full(net) - set(bl["stem"])
    with pytest.raises(ValueError, match="update_one_block: block got 'layer5'; allowed: stem, layer1"):
        A.update_one_block(net, "layer5")
    with pytest.raises(ValueError, match="blocks: model got 'MLP'"):
        A.blocks(MLP(2, (3,), 1))


def test_random_selection_is_deterministic_and_covers_the_fraction():
    net = resnet(18, 1)
    a = A.random_selection(net, 0.55, seed=0)
    assert a == A.random_selection(net, 0.55, seed=0)
    assert a != A.random_selection(net, 0.55, seed=1)
    assert len(a) == 34 and a <= A.full(net)               # round(0.55 × 62)
    assert len(A.random_selection(net, 0.85, seed=0)) == 53
    with pytest.raises(ValueError, match="random_selection: fraction got 1.5"):
        A.random_selection(net, 1.5, seed=0)


def cells_of(y, s):
    y, s = np.asarray(y), np.asarray(s)
    return [int(((y == a) & (s == b)).sum()) for a, b in A.CELLS]


def test_repair_fills_every_cell_up_to_the_largest_real_cell():
    rng = np.random.default_rng(0)
    y_r = np.repeat([0, 0, 1, 1], [3, 10, 6, 1])
    s_r = np.repeat([0, 1, 0, 1], [3, 10, 6, 1])
    X_r = rng.random((20, 2))
    y_s = np.repeat([0, 0, 1, 1], [8, 2, 5, 12])
    s_s = np.repeat([0, 1, 0, 1], [8, 2, 5, 12])
    X_s = 10 + np.arange(27)[:, None] * np.ones((1, 2))       # row i encodes its index
    X, y, s = A.repair(X_r, y_r, s_r, X_s, y_s, s_s, seed=0)
    assert cells_of(y, s) == [10, 10, 10, 10]
    np.testing.assert_array_equal(X[:20], X_r)               # the real data first, untouched
    idx = (X[20:, 0] - 10).astype(int)
    assert len(set(idx)) == len(idx)                        # without replacement
    np.testing.assert_array_equal(y[20:], y_s[idx])
    np.testing.assert_array_equal(s[20:], s_s[idx])
    X2, _, _ = A.repair(X_r, y_r, s_r, X_s, y_s, s_s, seed=0)
    np.testing.assert_array_equal(X, X2)
    Xt, yt, st = A.repair(*(torch.as_tensor(a) for a in (X_r, y_r, s_r, X_s, y_s, s_s)), seed=0)
    assert isinstance(Xt, torch.Tensor) and cells_of(yt.numpy(), st.numpy()) == [10, 10, 10, 10]
    keep = np.ones(27, bool)
    keep[10:12] = False                                      # cell (1, 0) keeps 3 of its 5
    with pytest.raises(ValueError, match=r"repair: cell \(y=1, s=0\) needs 4 .* only 3"):
        A.repair(X_r, y_r, s_r, X_s[keep], y_s[keep], s_s[keep])
    with pytest.raises(ValueError, match="y_real must be binary"):
        A.repair(X_r, y_r + 1, s_r, X_s, y_s, s_s)
    with pytest.raises(ValueError, match="repair: s_syn got"):
        A.repair(X_r, y_r, s_r, X_s, y_s, s_s[:-1])


def test_supplement_concatenates_real_and_synthetic():
    X, y = A.supplement(np.zeros((3, 2)), [0, 1, 1], np.ones((2, 2)), [1, 0])
    np.testing.assert_array_equal(X, np.r_[np.zeros((3, 2)), np.ones((2, 2))])
    np.testing.assert_array_equal(y, [0, 1, 1, 1, 0])
    Xt, yt = A.supplement(torch.zeros(3, 2), torch.tensor([0, 1, 1]), torch.ones(2, 2),
                          torch.tensor([1, 0]))
    assert isinstance(Xt, torch.Tensor) and Xt.shape == (5, 2) and yt.tolist() == [0, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="supplement: X_syn got 'samples of shape \\(3,\\)'"):
        A.supplement(np.zeros((3, 2)), [0, 1, 1], np.ones((2, 3)), [1, 0])
    with pytest.raises(ValueError, match="supplement: y_syn got '1 labels'"):
        A.supplement(np.zeros((3, 2)), [0, 1, 1], np.ones((2, 2)), [1])


# ------------------------------------------------------------------------------------ evaluation
class Lookup(nn.Module):
    """Returns stored single logits by sample index (x holds the index)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logits[x[:, 0].long()].unsqueeze(-1)


def test_table_metrics_and_aggregate_against_hand_computation():
    # cells (y, s): (0,0) 4 samples 3 right; (0,1) 2 samples 2 right; (1,0) 2 samples 1 right;
    # (1,1) 4 samples 2 right
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    s = np.array([0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0])
    X = torch.arange(12, dtype=torch.float32)[:, None]
    r = A.table_metrics(Lookup(np.where(pred == 1, 2.0, -2.0)), X, y, s, device="cpu")
    cells = {"acc_y0_s0": 0.75, "acc_y0_s1": 1.0, "acc_y1_s0": 0.5, "acc_y1_s1": 0.5}
    assert r == pytest.approx({"acc": 8 / 12, **cells, "wst": 0.5,
                               # TPR: s0 1/2, s1 2/4; FPR: s0 1/4, s1 0/2 -> (0 + 0.25) / 2
                               "eo": 0.125, "eo_max": 0.25,       # max(0, 0.25): the tables' EO
                               "std": float(np.std(list(cells.values())))})
    assert set(r) == set(A.METRICS)
    # a Dataset yielding (x, y, index) with its own y
    assert A.table_metrics(Lookup(np.where(pred == 1, 2.0, -2.0)), Indexed(X, y), s=s, device="cpu") == r

    rows = [
        {"method": "ft", "seed": 0, "acc": 0.8, "acc_y0_s0": 0.9, "acc_y0_s1": 0.6, "acc_y1_s0": 0.7,
         "acc_y1_s1": 0.8, "wst": 0.6, "eo": 0.2, "eo_max": 0.3, "std": 0.1},
        {"method": "ft", "seed": 1, "acc": 0.6, "acc_y0_s0": 0.5, "acc_y0_s1": 0.8, "acc_y1_s0": 0.7,
         "acc_y1_s1": 0.8, "wst": 0.5, "eo": 0.1, "eo_max": 0.2, "std": 0.1},
        {"method": "lp", "seed": 0, **{k: 0.5 for k in A.METRICS}},
    ]
    agg = A.aggregate(rows).set_index("method")
    ft = agg.loc["ft"]
    assert ft["n_seeds"] == 2 and ft["acc"] == pytest.approx(0.7) and ft["eo"] == pytest.approx(0.15)
    assert ft["eo_max"] == pytest.approx(0.25) and agg.loc["lp", "eo_max"] == pytest.approx(0.5)
    assert list(agg.columns) == ["n_seeds", *A.METRICS]
    # seed-averaged cells 0.7, 0.7, 0.7, 0.8 -> WST 0.7 (the mean of per-seed WST would be 0.55)
    assert [ft[c] for c in ("acc_y0_s0", "acc_y0_s1", "acc_y1_s0", "acc_y1_s1")] == pytest.approx(
        [0.7, 0.7, 0.7, 0.8])
    assert ft["wst"] == pytest.approx(0.7)
    assert ft["std"] == pytest.approx(np.std([0.7, 0.7, 0.7, 0.8]))
    assert agg.loc["lp", "wst"] == pytest.approx(0.5) and agg.loc["lp", "std"] == pytest.approx(0)
    one = A.aggregate(pd.DataFrame(rows[:2]).drop(columns="method"))
    assert len(one) == 1 and one.loc[0, "wst"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="aggregate: rows got .*without \\['eo'\\]"):
        A.aggregate([{k: v for k, v in rows[0].items() if k != "eo"}])
    with pytest.raises(ValueError, match="aggregate: rows got .*without \\['eo_max'\\]"):
        A.aggregate([{k: v for k, v in rows[0].items() if k != "eo_max"}])
    with pytest.raises(ValueError, match="aggregate: by got \\['lr'\\]"):
        A.aggregate(rows, by=["lr"])
    with pytest.raises(ValueError, match="table_metrics: s got None"):
        A.table_metrics(Lookup([0.0]), X[:1], y[:1])


# ------------------------------------------------------------- the paper's data on disk (ImageTables)
# A tiny CelebA in its real on-disk format (96 images: partition i % 3, Smiling i % 2,
# Male i // 2 % 2, so every partition holds 8 images of each (Smiling, Male) cell) and a tiny
# Stable Diffusion layout written by sd.generate_cells with the offline random-weight pipeline.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))  # the tiny on-disk datasets
from test_data_fullscale import make_celeba  # noqa: E402

import fairbook.data as fd
from fairbook.data.fullscale import ImageTable
from fairbook.data.images import biased_cells


def read_images(table):
    """Every image of an ImageTable, read back as one float32 array (N, C, H, W)."""
    return np.stack([table[i][0].numpy() for i in range(len(table))])


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory):
    return make_celeba(tmp_path_factory.mktemp("celeba"), n=96)


@pytest.fixture(scope="module")
def sd_layout(tmp_path_factory):
    """3 images per (smiling, male) cell, 16x16, one DDIM step, written by generate_cells."""
    from fairbook.generative import prompts as P
    from fairbook.generative import sd

    root = tmp_path_factory.mktemp("sd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("FAIRBOOK_PROGRESS", "0")
        pipe = sd.load_pipeline(sd.tiny_pipeline(root / "model", seed=0), device="cpu")
        cells = P.make_cells({"not smiling": 0, "smiling": 1}, {"female": 0, "male": 1})
        prompts = P.contextual_prompts(cells, 2, P.TemplateExpander(seed=0))
        sd.generate_cells(pipe, prompts, 3, root / "layout", seed=0, steps=1, height=16, width=16,
                          batch_size=4)
    return root / "layout"


def file_index(paths):
    return np.array([int(Path(p).stem) - 1 for p in paths])  # 000001.jpg is image i = 0


def test_celeba_setting_has_exact_cells_is_deterministic_and_keeps_full_val_test(celeba_root):
    st = AD.celeba_setting(celeba_root, n_real=16, image_size=8)
    assert set(st) == {"train", "val", "test"}
    X, y, s = st["train"]
    assert isinstance(X, ImageTable) and X.image_size == 8 and X[0][0].shape == (3, 8, 8)
    assert cells_of(y, s) == list(cell_counts(16, AIM_FAIR_RATIOS)) == [1, 7, 7, 1]
    np.testing.assert_array_equal(y, X.y)
    np.testing.assert_array_equal(s, X.groups["Male"])
    i = file_index(X.paths)                       # the labels are those of the files
    assert (i % 3 == 0).all() and len(set(i)) == 16 and (np.diff(i) > 0).all()
    np.testing.assert_array_equal(y, i % 2)
    np.testing.assert_array_equal(s, i // 2 % 2)
    # the same draw as biased_cells on the partition with rng [seed, 2]
    full = fd.load("celeba", "train", root=celeba_root)
    ds = fd.Dataset(X=np.arange(len(full))[:, None], y=full.y, name="celeba", split="train",
                    classes=full.classes, groups={"Male": full.groups["Male"]})
    ref = biased_cells(ds, "Male", 16, AIM_FAIR_RATIOS, seed=np.random.default_rng([0, 2]))
    np.testing.assert_array_equal(X.paths, full.paths[ref.X[:, 0]])
    # deterministic for a seed, different for another
    again = AD.celeba_setting(celeba_root, n_real=16, image_size=8)["train"][0]
    np.testing.assert_array_equal(again.paths, X.paths)
    other = AD.celeba_setting(celeba_root, n_real=16, image_size=8, seed=1)["train"][0]
    assert list(other.paths) != list(X.paths)
    # validation and test are the whole official partitions
    for name, code in (("val", 1), ("test", 2)):
        Xp, yp, sp = st[name]
        ref = fd.load("celeba", name, root=celeba_root)
        assert isinstance(Xp, ImageTable) and len(Xp) == 32 and Xp.image_size == 8
        np.testing.assert_array_equal(Xp.paths, ref.paths)
        assert (file_index(Xp.paths) % 3 == code).all()
        np.testing.assert_array_equal(yp, ref.y)
        np.testing.assert_array_equal(sp, ref.groups["Male"])
    # other ratios, and a cell the partition cannot fill
    _, y4, s4 = AD.celeba_setting(celeba_root, n_real=8, ratios=A.bias_ratios("1:3"))["train"]
    assert cells_of(y4, s4) == [1, 3, 3, 1]
    with pytest.raises(ValueError, match=r"celeba_setting: cell \(y=0, s=1\) = \(Smiling=0, "
                                         r"Male=1\) needs 9 images .* has only 8"):
        AD.celeba_setting(celeba_root, n_real=20)
    with pytest.raises(ValueError, match="celeba_setting: ratios got"):
        AD.celeba_setting(celeba_root, ratios=(0.5, 0.5))
    with pytest.raises(ValueError, match="celeba_setting: n_real got 0"):
        AD.celeba_setting(celeba_root, n_real=0)


def test_take_and_join_on_image_tables_and_arrays(celeba_root):
    a = fd.load("celeba", "train", root=celeba_root, image_size=8)
    b = fd.load("celeba", "test", root=celeba_root, image_size=8)
    t = AD.take(a, [3, 0])
    assert isinstance(t, ImageTable) and list(t.paths) == [a.paths[3], a.paths[0]]
    assert t.y.tolist() == [a.y[3], a.y[0]] and t.groups["Male"].tolist() == [a.groups["Male"][3],
                                                                              a.groups["Male"][0]]
    torch.testing.assert_close(t[0][0], a[3][0], rtol=0, atol=0)
    assert len(AD.take(a, [])) == 0 and len(AD.take(a, a.y == 1)) == 16
    j = AD.join(a, b)
    assert isinstance(j, ImageTable) and len(j) == 64 and j.image_size == 8
    assert list(j.paths) == list(a.paths) + list(b.paths)
    np.testing.assert_array_equal(j.y, np.r_[a.y, b.y])
    np.testing.assert_array_equal(j.groups["Male"], np.r_[a.groups["Male"], b.groups["Male"]])
    x, label, idx = j[32 + 5]
    torch.testing.assert_close(x, b[5][0], rtol=0, atol=0)
    assert (label, idx) == (b.y[5], 37)
    assert AD.join(a).paths.tolist() == a.paths.tolist()
    with pytest.raises(ValueError, match=r"join: Xs\[1\] got 'an ImageTable with image_size=16'"):
        AD.join(a, fd.load("celeba", "test", root=celeba_root, image_size=16))
    with pytest.raises(ValueError, match=r"join: Xs\[1\] got \"an ImageTable with groups \['Young'\]"):
        AD.join(a, fd.load("celeba", "test", root=celeba_root, image_size=8, sensitive="Young"))
    with pytest.raises(ValueError, match="join: Xs got 'a mix of ImageTables and arrays"):
        AD.join(a, np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="take: idx got"):
        AD.take(a, [0.5])
    # arrays and tensors
    M = np.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(AD.take(M, [4, 1]), M[[4, 1]])
    assert isinstance(AD.take(torch.as_tensor(M), [4, 1]), torch.Tensor)
    np.testing.assert_array_equal(AD.join(M, M[:2]), np.r_[M, M[:2]])
    assert AD.join(torch.ones(2, 3), torch.zeros(1, 3)).shape == (3, 3)


def test_synthetic_table_reads_the_layouts_labels_and_images(sd_layout):
    from fairbook.generative import sd

    X, y, s = AD.synthetic_table(sd_layout, image_size=8, protected_name="Male")
    manifest = pd.read_csv(sd_layout / "manifest.csv")
    assert isinstance(X, ImageTable) and len(X) == 12 and X.image_size == 8
    np.testing.assert_array_equal(y, manifest["y"])
    np.testing.assert_array_equal(s, manifest["a"])
    np.testing.assert_array_equal(X.y, y)
    np.testing.assert_array_equal(X.groups["Male"], s)
    assert cells_of(y, s) == [3, 3, 3, 3]
    assert [Path(p) for p in X.paths] == [sd_layout / f for f in manifest["file"]]
    assert list(X.classes) == ["not smiling", "smiling"]
    assert X.group_names["Male"] == ("female", "male")
    ref = sd.load_cells(sd_layout, images=True, image_size=8).X
    np.testing.assert_allclose(read_images(X), ref, rtol=0, atol=1e-6)
    native = AD.synthetic_table(sd_layout, image_size=None)[0]
    assert native[0][0].shape == (3, 16, 16) and list(native.groups) == ["s"]


def test_supplement_and_repair_on_image_tables_give_the_rows_of_arrays(celeba_root, sd_layout):
    Tr, yr, sr = AD.celeba_setting(celeba_root, n_real=8, ratios=A.bias_ratios("1:3"),
                                  image_size=8)["train"]
    Ts, ys, ss = AD.synthetic_table(sd_layout, image_size=8, protected_name="Male")
    Xr, Xs = read_images(Tr), read_images(Ts)
    assert cells_of(yr, sr) == [1, 3, 3, 1]

    Xt, yt = A.supplement(Tr, yr, Ts, ys)
    Xa, ya = A.supplement(Xr, yr, Xs, ys)
    assert isinstance(Xt, ImageTable) and len(Xt) == 20
    np.testing.assert_array_equal(yt, ya)
    np.testing.assert_array_equal(Xt.y, ya)
    np.testing.assert_array_equal(Xt.groups["Male"], np.r_[sr, ss])
    np.testing.assert_array_equal(read_images(Xt), Xa)

    for seed in (0, 3):
        Xt, yt, st = A.repair(Tr, yr, sr, Ts, ys, ss, seed=seed)
        Xa, ya, sa = A.repair(Xr, yr, sr, Xs, ys, ss, seed=seed)
        assert isinstance(Xt, ImageTable) and cells_of(yt, st) == [3, 3, 3, 3]
        np.testing.assert_array_equal(yt, ya)
        np.testing.assert_array_equal(st, sa)
        np.testing.assert_array_equal(Xt.y, yt)
        np.testing.assert_array_equal(Xt.groups["Male"], st)
        np.testing.assert_array_equal(read_images(Xt), Xa)
        assert list(Xt.paths[:8]) == list(Tr.paths)
    Xt0 = A.repair(Tr, yr, sr, Ts, ys, ss, seed=0)[0]
    assert list(Xt0.paths) != list(Xt.paths)              # seed 3 drew other synthetic rows

    with pytest.raises(ValueError, match="supplement: X_syn got 'a mix of ImageTables"):
        A.supplement(Tr, yr, Xs, ys)
    with pytest.raises(ValueError, match="repair: y_real got 'labels differing from X_real.y'"):
        A.repair(Tr, 1 - yr, sr, Ts, ys, ss)
    with pytest.raises(ValueError, match=r"repair: s_syn got \"values matching none"):
        A.repair(Tr, yr, sr, Ts, ys, 1 - ss)
    Ts_s = AD.synthetic_table(sd_layout, image_size=8)[0]  # protected attribute named "s"
    with pytest.raises(ValueError, match=r"repair: X_syn got \"an ImageTable with groups \['s'\]"):
        A.repair(Tr, yr, sr, Ts_s, ys, ss)
    with pytest.raises(ValueError, match=r"repair: cell \(y=0, s=0\) needs 2 .* only 1"):
        keep = np.r_[0, 3:12]                               # cell (0, 0) keeps 1 of its 3
        A.repair(Tr, yr, sr, AD.take(Ts, keep), ys[keep], ss[keep])


def test_dataset_gradients_and_table_metrics_on_an_image_table_match_arrays(celeba_root, sd_layout):
    Xr = AD.celeba_setting(celeba_root, image_size=8, n_real=16)["test"][0]
    Ts = AD.synthetic_table(sd_layout, image_size=8, protected_name="Male")[0]
    table = AD.join(Xr, Ts)
    X, y, s = torch.as_tensor(read_images(table)), table.y, table.groups["Male"]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(2, 1))
    g_t = A.dataset_gradients(net, table, batch_size=10, device="cpu")
    g_a = A.dataset_gradients(net, X, y, batch_size=10, device="cpu")
    assert list(g_t) == list(g_a) == [n for n, _ in net.named_parameters()]
    for k in g_a:
        assert g_a[k].abs().sum() > 0
        torch.testing.assert_close(g_t[k], g_a[k], rtol=1e-5, atol=1e-7)
    # one logit per sample: spread the predictions so that every cell accuracy is informative
    net[-1].bias.data -= T.logits_of(net, X, device="cpu").median()
    r_t = A.table_metrics(net, table, device="cpu")              # y and s from the table
    r_a = A.table_metrics(net, X, y, s, device="cpu")
    assert r_t == pytest.approx(r_a, abs=1e-12)
    assert 0 < r_a["acc"] < 1
    assert A.table_metrics(net, table, s=s, device="cpu") == pytest.approx(r_a, abs=1e-12)


# ------------------------------------------------------------------------------ runner hooks
def _values(profile="default", **kw):
    from fairbook.book import chapters

    return {**chapters.get("aimfair").values(profile), **kw}


def _celeba(tmp_path, **kw):
    """Paper-profile values with existing sd layouts (a manifest each) and weights."""
    for d in ("sd", "plain"):
        (tmp_path / d).mkdir(exist_ok=True)
        (tmp_path / d / "manifest.csv").write_text(f"file,cell\n{d}/0.png,y0_a0\n")
    (tmp_path / "r18.pt").write_bytes(b"weights")
    return _values("paper", **{"sd_images": str(tmp_path / "sd"), "sd_plain_images": str(tmp_path / "plain"),
                               "weights": str(tmp_path / "r18.pt"), **kw})


def test_check_parameters_accepts_the_profiles_and_rejects_impossible_values(tmp_path):
    from fairbook.errors import ParameterError

    for profile in ("smoke", "default"):
        CH.check_parameters(_values(profile))
    CH.check_parameters(_celeba(tmp_path))
    CH.check_parameters({})                                     # only the keys given are checked
    CH.check_parameters({"dataset": "celeba"})
    for kw, msg in [({"real_bias": "9:1"}, r"'real_bias'.*'a:b'.*got '9:1'"),
                    ({"real_bias": "0.1"}, "'real_bias'"),
                    ({"syn_bias_sweep": ["3:7", "1-9"]}, r"'syn_bias_sweep'.*'1-9' is not"),
                    ({"top_k": 0.0}, r"'top_k'.*\(0, 1\].*; got 0.0$"),
                    ({"top_k": 1.5}, "'top_k'"),
                    ({"topk_sweep": [0.5, 0.0]}, r"'topk_sweep'.*0.0 is not"),
                    ({"random_fractions": [1.2]}, "'random_fractions'.*1.2 is not"),
                    ({"topk_sweep": []}, "'topk_sweep'.*at least one value"),
                    ({"syn_bias_sweep": []}, "'syn_bias_sweep'.*at least one value"),
                    ({"syn_amounts": []}, "'syn_amounts'.*at least one value"),
                    ({"random_fractions": []}, "'random_fractions'.*at least one value")]:
        with pytest.raises(ParameterError, match=r"^parameter " + msg):
            CH.check_parameters(_values(**kw))
        with pytest.raises(ParameterError, match="of chapter 'aimfair'"):
            CH.check_parameters(kw)                             # alone: still checked
    for kw, msg in [({"sd_images": ""}, "'sd_images'.*-p sd_images"),
                    ({"weights": ""}, "'weights'.*pass -p weights <local ImageNet ResNet-18 checkpoint>"),
                    ({"model": "cnn"}, "'model'.*28x28")]:
        with pytest.raises(ParameterError, match=msg):
            CH.check_parameters(_celeba(tmp_path, **kw))
    # a random-init ResNet-18 and no Stable Diffusion images are fine off CelebA
    CH.check_parameters(_values(model="resnet18", weights=""))
    # Table 5's context counts must exist among the generator's contexts (no silent skip)
    with pytest.raises(ParameterError, match=r"'context_counts'.*between 1 and the generator's 4 contexts.*\[25\]"):
        CH.check_parameters(_values(context_bins=[2, 2], context_counts=[1, 4, 25]))
    CH.check_parameters(_values(context_bins=[5, 5], context_counts=[1, 4, 25]))


def test_runner_rejects_the_paper_profile_without_its_files_before_running():
    from fairbook.book import runner
    from fairbook.errors import ParameterError

    with pytest.raises(ParameterError, match="'sd_images' of chapter 'aimfair'"):
        runner.prepare("aimfair", "paper")
    with pytest.raises(ParameterError, match="'weights' of chapter 'aimfair'"):
        runner.prepare("aimfair", "paper", {"sd_images": "/somewhere"})


def test_input_files_are_the_manifests_and_weights_the_run_reads(tmp_path, monkeypatch):
    from fairbook.book import runner
    from fairbook.generative import sd
    from fairbook.errors import ParameterError

    v = _celeba(tmp_path)
    files = CH.input_files(v)
    assert files == {"sd_images": (tmp_path / "sd" / sd.MANIFEST).resolve(),
                     "sd_plain_images": (tmp_path / "plain" / sd.MANIFEST).resolve(),
                     "weights": (tmp_path / "r18.pt").resolve()}
    assert CH.input_files({**v, "sd_plain_images": "", "weights": ""}) == {"sd_images": files["sd_images"]}
    assert CH.input_files(_values()) == {}                       # the default profile reads none
    assert CH.input_files({**v, "dataset": "colored-mnist", "model": "cnn"}) == {}   # not read: not used
    monkeypatch.chdir(tmp_path)                                 # relative paths: from the current directory
    assert CH.input_files({**v, "sd_images": "sd", "weights": "r18.pt"}) == files
    for kw, msg in [({"sd_images": str(tmp_path / "nowhere")}, r"'sd_images'.*nowhere.*manifest\.csv"),
                    ({"sd_plain_images": str(tmp_path)}, "'sd_plain_images'.*generate_cells"),
                    ({"weights": str(tmp_path / "missing.pt")}, "'weights'.*missing.pt is not a file")]:
        with pytest.raises(ParameterError, match=msg):
            CH.input_files({**v, **kw})
    # the runner fingerprints them: a changed manifest or checkpoint changes the run's key
    monkeypatch.setattr("fairbook.data.fingerprints_for", lambda chapter, values: {})
    fp = runner.data_fingerprint("aimfair", v)
    assert set(fp) == {"sd_images", "sd_plain_images", "weights"}
    (tmp_path / "sd" / sd.MANIFEST).write_text("file,cell\nsd/1.png,y1_a1\n")
    (tmp_path / "r18.pt").write_bytes(b"other weights")
    fp2 = runner.data_fingerprint("aimfair", v)
    assert fp2["sd_images"] != fp["sd_images"] and fp2["weights"] != fp["weights"]
    assert fp2["sd_plain_images"] == fp["sd_plain_images"]


# ------------------------------------------------------------------------------ UTKFace (§4.1)
# 120 tiny UTKFace files in the release's naming: gender i % 2 (1 = female), White when i // 2 is
# even (race 0), else race 1-4; 30 images per (gender, White) cell before the loader's 60/20/20 split.
from test_data_fullscale import make_utkface


def _utk_name(i):
    race = 0 if i // 2 % 2 == 0 else 1 + i // 4 % 4
    return f"{1 + i}_{i % 2}_{race}_2017{i:013d}.jpg.chip.jpg"


def _utk_labels(paths):
    """(gender, White) of each file, read from its name."""
    parts = [Path(p).name.split("_") for p in paths]
    return (np.array([int(p[1]) for p in parts]), np.array([int(p[2] == "0") for p in parts]))


@pytest.fixture(scope="module")
def utk_root(tmp_path_factory):
    return make_utkface(tmp_path_factory.mktemp("utkface"), [_utk_name(i) for i in range(120)])


def test_utkface_setting_biased_train_full_val_balanced_test(utk_root):
    full = {name: fd.load("utkface", name, root=utk_root, image_size=8) for name in ("train", "val", "test")}
    assert [len(full[n]) for n in ("train", "val", "test")] == [72, 24, 24]
    tr_cells = cells_of(full["train"].y, full["train"].groups["race"] == 0)
    te_cells = cells_of(full["test"].y, full["test"].groups["race"] == 0)
    assert min(tr_cells[1], tr_cells[2]) >= 9 and min(tr_cells) >= 1 and min(te_cells) >= 2

    st = AD.utkface_setting(utk_root, n_real=20, n_test=8, image_size=8)
    assert set(st) == {"train", "val", "test"}
    X, y, s = st["train"]
    assert isinstance(X, ImageTable) and X.image_size == 8 and X[0][0].shape == (3, 8, 8)
    assert cells_of(y, s) == list(cell_counts(20, AIM_FAIR_RATIOS)) == [1, 9, 9, 1]
    np.testing.assert_array_equal(y, X.y)
    assert set(X.groups) == {"White"} and X.group_names["White"] == ("non-White", "White")
    assert X.classes == ["Male", "Female"]
    np.testing.assert_array_equal(s, X.groups["White"])
    g, w = _utk_labels(X.paths)                    # y = 1 female, s = 1 White, from the file names
    np.testing.assert_array_equal(y, g)
    np.testing.assert_array_equal(s, w)
    assert set(X.paths) <= set(full["train"].paths) and len(set(X.paths)) == 20
    pos = [list(full["train"].paths).index(p) for p in X.paths]
    assert (np.diff(pos) > 0).all()                # kept in file order
    # the draw: cell by cell in CELLS order from default_rng([seed, 2]) on the train split
    fy, fs = full["train"].y, (full["train"].groups["race"] == 0).astype(int)
    rng = np.random.default_rng([0, 2])
    ref = np.sort(np.concatenate([rng.choice(np.flatnonzero((fy == a) & (fs == b)), k, replace=False)
                                  for (a, b), k in zip(A.CELLS, [1, 9, 9, 1])]))
    np.testing.assert_array_equal(X.paths, full["train"].paths[ref])
    # validation: the whole val split
    Xv, yv, sv = st["val"]
    np.testing.assert_array_equal(Xv.paths, full["val"].paths)
    np.testing.assert_array_equal(yv, full["val"].y)
    np.testing.assert_array_equal(sv, 1 - full["val"].groups["race"])
    # test: balanced, n_test // 4 per cell, from default_rng([seed, 4]), in file order
    Xt, yt, st_ = st["test"]
    assert cells_of(yt, st_) == [2, 2, 2, 2] and len(Xt) == 8
    np.testing.assert_array_equal(np.stack(_utk_labels(Xt.paths)), np.stack([yt, st_]))
    fy, fs = full["test"].y, (full["test"].groups["race"] == 0).astype(int)
    rng = np.random.default_rng([0, 4])
    ref = np.sort(np.concatenate([rng.choice(np.flatnonzero((fy == a) & (fs == b)), 2, replace=False)
                                  for a, b in A.CELLS]))
    np.testing.assert_array_equal(Xt.paths, full["test"].paths[ref])
    # n_test = 0: the whole test split; other ratios
    whole = AD.utkface_setting(utk_root, n_real=20, n_test=0)["test"]
    np.testing.assert_array_equal(whole[0].paths, full["test"].paths)
    assert cells_of(whole[1], whole[2]) == te_cells
    _, y4, s4 = AD.utkface_setting(utk_root, n_real=8, ratios=A.bias_ratios("1:3"), n_test=4)["train"]
    assert cells_of(y4, s4) == [1, 3, 3, 1]
    _, yb, sb = AD.utkface_setting(utk_root, n_real=8, ratios=A.balanced_ratios(), n_test=4)["train"]
    assert cells_of(yb, sb) == [2, 2, 2, 2]


def test_utkface_setting_is_deterministic_and_seeded(utk_root):
    a = AD.utkface_setting(utk_root, n_real=20, n_test=8, image_size=8)
    b = AD.utkface_setting(utk_root, n_real=20, n_test=8, image_size=8)
    c = AD.utkface_setting(utk_root, n_real=20, n_test=8, image_size=8, seed=1)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(a[part][0].paths, b[part][0].paths)
        np.testing.assert_array_equal(a[part][2], b[part][2])
    assert list(c["train"][0].paths) != list(a["train"][0].paths)
    assert list(c["test"][0].paths) != list(a["test"][0].paths)
    np.testing.assert_array_equal(c["val"][0].paths, a["val"][0].paths)   # the split does not move
    assert set(c["train"][0].paths).isdisjoint(c["test"][0].paths)


def test_utkface_setting_names_the_cell_and_rejects_bad_arguments(utk_root, tmp_path, monkeypatch):
    full = fd.load("utkface", "test", root=utk_root)
    small = min(cells_of(full.y, full.groups["race"] == 0))
    with pytest.raises(ValueError, match=r"utkface_setting: cell \(y=0, s=1\) = \(Male, White\) needs "
                                         r"45 images for n_real=100.* utkface train split has only \d+"):
        AD.utkface_setting(utk_root, n_real=100)
    with pytest.raises(ValueError, match=rf"utkface_setting: cell \(y=\d, s=\d\) = \(\w+, [\w-]+\) needs "
                                         rf"{small + 1} images for a balanced test set of "
                                         rf"n_test={4 * small + 4}.* utkface test split has only {small}"):
        AD.utkface_setting(utk_root, n_real=8, n_test=4 * small + 4)
    for kw, msg in [({"n_real": 0}, "n_real got 0"), ({"n_real": True}, "n_real got True"),
                    ({"n_test": 6}, "n_test got 6; allowed: 0 .* multiple of 4"),
                    ({"n_test": -4}, "n_test got -4"), ({"n_test": 8.0}, "n_test got 8.0"),
                    ({"ratios": (0.5, 0.5)}, "ratios got")]:
        with pytest.raises(ValueError, match="utkface_setting: " + msg):
            AD.utkface_setting(utk_root, **kw)
    from fairbook.data import DataNotFound

    monkeypatch.delenv("FAIRBOOK_DATA", raising=False)          # no data anywhere: the loader's message
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFound, match="dataset 'utkface' not found"):
        AD.utkface_setting(tmp_path / "nowhere")


def test_utkface_gets_the_celeba_checks_and_input_files(tmp_path):
    from fairbook.errors import ParameterError

    v = _celeba(tmp_path, dataset="utkface")
    CH.check_parameters(v)
    CH.check_parameters({"dataset": "utkface"})
    for kw, msg in [({"sd_images": ""}, "'sd_images'.*dataset='utkface'.*-p sd_images"),
                    ({"weights": ""}, "'weights'.*dataset='utkface'.*pass -p weights"),
                    ({"model": "cnn"}, "'model'.*28x28.*dataset='utkface'")]:
        with pytest.raises(ParameterError, match=msg):
            CH.check_parameters({**v, **kw})
    files = CH.input_files(v)
    assert files == CH.input_files({**v, "dataset": "celeba"})
    assert set(files) == {"sd_images", "sd_plain_images", "weights"}
    with pytest.raises(ParameterError, match="'sd_images'"):
        CH.input_files({**v, "sd_images": str(tmp_path / "nowhere")})


# ------------------------------------------------------------------------ Table 5's context count, splits
def context_pool(per=(7, 5, 9, 6), n_contexts=3):
    """A pool whose (cell, context) group sizes are known: cell i, context k holds per[i] + k rows."""
    y, s, c = [], [], []
    for i, (yy, ss) in enumerate(A.CELLS):
        for k in range(n_contexts):
            n = per[i] + k
            y += [yy] * n
            s += [ss] * n
            c += [k] * n
    return np.array(y), np.array(s), np.array(c)


def test_context_rows_span_the_asked_number_of_contexts_with_equal_cells():
    y, s, c = context_pool()
    n = AD.context_cell_size(y, s, c, [1, 2])
    assert n == 4                                  # smallest group 5 rows, rounded to a multiple of 2
    assert AD.context_cell_size(y, s, c, [1, 3]) == 3
    for count in (1, 2):
        for seed in range(5):
            idx = AD.context_rows(y, s, c, n, count, np.random.default_rng(seed))
            assert len(set(idx)) == len(idx) == 4 * n
            for yy, ss in A.CELLS:
                rows = idx[(y[idx] == yy) & (s[idx] == ss)]
                assert len(rows) == n
                vals, per_ctx = np.unique(c[rows], return_counts=True)
                assert len(vals) == count and (per_ctx == n // count).all()
    drawn = {tuple(np.unique(c[AD.context_rows(y, s, c, n, 1, np.random.default_rng(k))[:n]]))
             for k in range(20)}
    assert len(drawn) > 1                          # the context of a one-context cell is random
    with pytest.raises(ValueError, match="context_rows: count got 3"):
        AD.context_rows(y, s, c, n, 3, np.random.default_rng(0))      # 3 does not divide 4
    with pytest.raises(ValueError, match="context_rows: count got 4"):
        AD.context_rows(y, s, c, 8, 4, np.random.default_rng(0))      # only 3 contexts
    with pytest.raises(ValueError, match="context_rows: n_per_cell got 12"):
        AD.context_rows(y, s, c, 12, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="context_cell_size: counts got"):
        AD.context_cell_size(y, s, c, [])


def test_subsample_with_cell_ratios_draws_a_biased_test_split():
    y = np.repeat([0, 0, 1, 1], 100)
    s = np.tile(np.repeat([0, 1], 100), 2)
    X = np.arange(400)
    Xs, ys, ss = AD.subsample(X, y, s, 200, np.random.default_rng(0), ratios=A.bias_ratios("1:9"))
    counts = [int(((ys == a) & (ss == b)).sum()) for a, b in A.CELLS]
    assert counts == [10, 90, 90, 10] and np.all(np.diff(Xs) > 0)
    # the whole split with a 1:9 bias: the majority cells (100 rows) bound the size at 222
    _, ys, ss = AD.subsample(X, y, s, 0, np.random.default_rng(0), ratios=A.bias_ratios("1:9"))
    assert len(ys) == 222 and int(((ys == 0) & (ss == 1)).sum()) <= 100
    assert len(AD.subsample(X, y, s, 50, np.random.default_rng(0))[1]) == 50


def test_bn_recalibration_moves_only_the_running_statistics():
    X, y = cell_images()
    model = SmallCNN(3, 1, (4, 6, 8))
    params, buffers = clone_params(model), clone_buffers(model)
    out = A.bn_recalibration(model, X, y, epochs=2, batch_size=32, seed=0)
    assert out is model and not model.training
    assert all(torch.equal(params[k], v) for k, v in clone_params(model).items())
    now = clone_buffers(model)
    assert all(not torch.equal(buffers[k], now[k]) for k in now if "running" in k)
    assert int(now["body.1.num_batches_tracked"]) == 2 * len(y) // 32
    # the running mean converges to the data's channel means (first BN after conv: check stem input)
    m = SmallCNN(3, 1, (4, 6, 8))
    A.bn_recalibration(m, X, y, epochs=30, batch_size=64, seed=1)
    with torch.no_grad():
        feats = m.body[0](X)
    assert torch.allclose(m.body[1].running_mean, feats.mean((0, 2, 3)), atol=1e-3)
    with pytest.raises(ValueError, match="bn_recalibration: model got 'MLP'"):
        A.bn_recalibration(MLP(3, (4,), 1), torch.zeros(4, 3), torch.zeros(4), epochs=1)
    with pytest.raises(ValueError, match="bn_recalibration: epochs got 0"):
        A.bn_recalibration(model, X, y, epochs=0)
