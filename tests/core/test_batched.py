"""fit_many equals K separate fit calls (to float tolerance), whatever each model's data, seed,
optimiser state and selected epoch."""
import numpy as np
import pytest
import torch
from torch import nn

from fairbook import models, train
from fairbook.train import fit_many


def _data(n, d=6, seed=0, classes=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, classes))
    y = (X @ w + rng.normal(scale=2.0, size=(n, classes))).argmax(1)
    return X, y


def _mlp(seed, out=2, d=6):
    return train.seeded(lambda: models.MLP(d, (16, 8), out), seed)


def _same(a, b, atol=1e-5):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for n in sa:
        torch.testing.assert_close(sa[n].float(), sb[n].float(), atol=atol, rtol=1e-4, msg=n)


OPTIMS = [train.Optim("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
          train.Optim("sgd", 0.05, momentum=0.0),
          train.Optim("adam", 3e-3, weight_decay=1e-3),
          train.Optim("adamw", 5e-3, betas=(0.5, 0.999), weight_decay=0.08)]


@pytest.mark.parametrize("optim", OPTIMS, ids=lambda o: f"{o.name}-m{o.momentum}")
def test_different_training_sets_sizes_and_seeds_equal_separate_fits(optim):
    # three models: different data, different sizes (so different numbers of steps and a ragged last
    # batch), different initial weights and seeds
    sets = [_data(n, seed=i) for i, n in enumerate((150, 97, 203))]
    val = _data(80, seed=9)
    kw = dict(epochs=4, batch_size=32, optim=optim, schedule=train.Schedule("cosine", min_lr_factor=0.01),
              val=val, select="acc")
    seeds = [3, 4, 5]
    ref = [train.fit(_mlp(10 + k), *sets[k], seed=seeds[k], **kw) for k in range(3)]
    got = fit_many([_mlp(10 + k) for k in range(3)], sets, seeds=seeds, **kw)
    for r, g in zip(ref, got):
        assert g.best_epoch == r.best_epoch
        _same(g.model, r.model)
        np.testing.assert_allclose(g.history.train_loss, r.history.train_loss, rtol=1e-4)
        np.testing.assert_allclose(g.history.val_acc, r.history.val_acc)
        np.testing.assert_allclose(g.history.lr, r.history.lr)


def test_models_pick_different_epochs_and_restore_their_own_best_state():
    X, y = _data(300, seed=1)
    Xv, yv = _data(40, seed=2)
    kw = dict(epochs=8, batch_size=16, optim=train.Optim("sgd", 0.1, momentum=0.9), val=(Xv, yv),
              select="acc")
    seeds = [0, 1, 2, 3]
    ref = [train.fit(_mlp(s), X, y, seed=s, **kw) for s in seeds]
    assert len({r.best_epoch for r in ref}) > 1, "the case must have models choosing different epochs"
    got = fit_many([_mlp(s) for s in seeds], [(X, y)] * 4, seeds=seeds, **kw)
    assert [g.best_epoch for g in got] == [r.best_epoch for r in ref]
    for r, g in zip(ref, got):
        _same(g.model, r.model)
        for n, t in r.best_state.items():
            torch.testing.assert_close(g.best_state[n], t, atol=1e-5, rtol=1e-4)


def test_hooks_see_each_models_own_batches_and_module():
    sets = [_data(70, seed=1), _data(45, seed=2)]
    seen_ref = [[], []]
    seen_got = [[], []]
    ends_got = [[], []]
    kw = dict(epochs=2, batch_size=20, optim=train.Optim("adam", 1e-2), select=None)
    for k in range(2):
        train.fit(_mlp(k), *sets[k], seed=7 + k, on_logits=lambda lg, y, ids, e, k=k: seen_ref[k].append(
            (e, ids.clone(), lg.clone())), **kw)
    fit_many([_mlp(k) for k in range(2)], sets, seeds=[7, 8],
             on_logits=[lambda lg, y, ids, e, k=k: seen_got[k].append((e, ids.clone(), lg.clone())) for k in range(2)],
             on_epoch_end=[lambda e, m, row, k=k: ends_got[k].append((e, m.head.weight.detach().clone())) for k in range(2)],
             **kw)
    for k in range(2):
        assert len(seen_got[k]) == len(seen_ref[k]) == 2 * -(-len(sets[k][1]) // 20)
        for (e1, i1, l1), (e2, i2, l2) in zip(seen_ref[k], seen_got[k]):
            assert e1 == e2 and torch.equal(i1, i2)
            torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-4)
        # on_epoch_end gets the model as trained so far: the two epochs' weights differ
        assert [e for e, _ in ends_got[k]] == [1, 2]
        assert not torch.equal(ends_got[k][0][1], ends_got[k][1][1])


def test_class_weight_bce_and_steps_per_epoch():
    sets = [_data(90, seed=3), _data(60, seed=4)]
    kw = dict(epochs=3, batch_size=25, optim=train.Optim("sgd", 0.2, momentum=0.9), select=None,
              class_weight=[1.0, 3.0], steps_per_epoch=5)
    ref = [train.fit(_mlp(k), *sets[k], seed=k, **kw) for k in range(2)]
    got = fit_many([_mlp(k) for k in range(2)], sets, seeds=[0, 1], **kw)
    for r, g in zip(ref, got):
        _same(g.model, r.model)
    kw = dict(epochs=3, batch_size=25, optim=train.Optim("adam", 1e-2), select=None, loss="bce")
    ref = [train.fit(_mlp(k, out=1), *sets[k], seed=k, **kw) for k in range(2)]
    got = fit_many([_mlp(k, out=1) for k in range(2)], sets, seeds=[0, 1], **kw)
    for r, g in zip(ref, got):
        _same(g.model, r.model)


def test_batchnorm_models_and_augmentation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    make = lambda s: train.seeded(lambda: models.SmallCNN(1, 3, channels=(4, 4, 8)), s)
    aug = train.random_crop_flip
    kw = dict(epochs=2, batch_size=24, optim=train.Optim("sgd", 0.05, momentum=0.9), select="acc",
              val=(X[:20], y[:20]), augment=aug)
    ref = [train.fit(make(s), X[s * 10:], y[s * 10:], seed=s, **kw) for s in range(2)]
    got = fit_many([make(s) for s in range(2)], [(X[s * 10:], y[s * 10:]) for s in range(2)], seeds=[0, 1], **kw)
    for r, g in zip(ref, got):
        _same(g.model, r.model, atol=1e-4)   # running statistics included
        assert g.best_epoch == r.best_epoch


def test_models_do_not_share_storage_afterwards():
    X, y = _data(40)
    got = fit_many([_mlp(0), _mlp(1)], [(X, y)] * 2, seeds=[0, 1], epochs=1, select=None)
    w0 = got[1].model.head.weight.detach().clone()
    with torch.no_grad():
        got[0].model.head.weight.add_(1.0)
    assert torch.equal(got[1].model.head.weight, w0)


@pytest.mark.parametrize("bad, match", [
    (dict(models=[models.MLP(6, (4,), 2), models.MLP(6, (5,), 2)], batched=True), "one architecture"),
    (dict(batched="yes"), "batched must be"),
    (dict(seeds=[0]), "2 models, 2 datasets and 1 seeds"),
    (dict(select="acc", val=None), "needs a validation set"),
    (dict(val=[(np.zeros((2, 6), np.float32), np.zeros(2))]), "val has 1 entries for 2 models"),
    (dict(loss="mse"), "loss must be"),
    (dict(optim=train.Optim("rmsprop")), "optimiser must be one of"),
])
def test_bad_input_is_refused_before_training(bad, match):
    X, y = _data(20)
    args = dict(models=[models.MLP(6, (4,), 2), models.MLP(6, (4,), 2)], datasets=[(X, y)] * 2,
                seeds=[0, 1], epochs=1, select=None)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        fit_many(args.pop("models"), args.pop("datasets"), **args)


def test_auto_falls_back_to_separate_fits_for_dropout_and_insisting_names_the_reason():
    X, y = _data(50)
    make = lambda s: train.seeded(lambda: models.MLP(6, (8,), 2, dropout=0.2), s)  # noqa: E731
    kw = dict(epochs=2, batch_size=16, select=None)
    ref = [train.fit(make(s), X, y, seed=s, **kw) for s in (0, 1)]
    got = fit_many([make(s) for s in (0, 1)], [(X, y)] * 2, seeds=[0, 1], **kw)
    for r, g in zip(ref, got):
        for n, t in r.model.state_dict().items():
            assert torch.equal(t, g.model.state_dict()[n])   # the same code path: bit for bit
    with pytest.raises(ValueError, match="dropout"):
        fit_many([make(s) for s in (0, 1)], [(X, y)] * 2, seeds=[0, 1], batched=True, **kw)
