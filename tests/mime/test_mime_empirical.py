"""MIME Section 4 (fairbook.mime.experiment, Table 1 in fairbook.mime.theory): the real-data beta sweep,
Definition 2, the authors' recipes, projections and Table 1."""
import numpy as np
import pandas as pd
import pytest
import torch

from fairbook import mime, models, train
from fairbook.mime import experiment
from fairbook.data import Dataset

FIT = dict(epochs=3, batch_size=64, optim=train.Optim("adam", lr=1e-2))


def toy(n, seed, shift=0.0):
    """Two groups: group 0 well separated (easy), group 1 overlapping (hard), 2 features."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    y = rng.integers(0, 2, n)
    sep = np.where(a == 0, 2.0, 0.5)
    X = np.stack([(2 * y - 1) * sep + rng.normal(size=n) + shift * a, rng.normal(size=n)], 1)
    return Dataset(X.astype(np.float32), y.astype(np.int64), "toy", "all", ["0", "1"],
                   groups={"g": a.astype(np.int64)}, group_names={"g": ("easy", "hard")})


def splits(trial):
    return toy(600, 10 + trial), toy(300, 100 + trial), toy(300, 1000 + trial)


def make():
    return models.MLP(2, [8], 2)


def test_beta_sweep_replaces_majority_with_minority():
    df = experiment.beta_sweep(splits, "g", 0, [0.0, 0.5, 1.0], n_train=100, trials=2, make_model=make,
                         fit_kwargs=FIT, seed=0)
    assert len(df) == 6 and set(df.beta) == {0.0, 0.5, 1.0}
    assert df.set_index(["trial", "beta"]).n_minor.tolist() == [0, 50, 100] * 2
    assert df.majority_acc.between(0, 1).all() and (df.best_test_acc >= df.majority_acc - 1e-12).all()
    assert df.best_epoch.between(1, FIT["epochs"]).all()
    again = experiment.beta_sweep(splits, "g", 0, [0.0, 0.5, 1.0], n_train=100, trials=2, make_model=make,
                            fit_kwargs=FIT, seed=0)
    assert df.equals(again)


def test_beta_sweep_rejects_too_large_training_size():
    with pytest.raises(ValueError, match="n_train = 5000 exceeds"):
        experiment.beta_sweep(splits, "g", 0, [0.0], n_train=5000, trials=1, make_model=make, fit_kwargs=FIT)


def test_group_difficulty_finds_the_easy_group():
    trn, val, tst = splits(0)
    out = experiment.group_difficulty(trn, tst, "g", 250, make, dict(FIT, epochs=10), val=val)
    assert out.loc[out.majority_by_definition_2, "group"].tolist() == [0]
    assert out.own_test_acc[0] > out.own_test_acc[1] + 0.1


def test_empirical_overlap_hand_case():
    x = np.array([0.0, 1.0, 2.0, 3.0, 1.5, 2.5])
    y = np.array([0, 0, 0, 1, 1, 1])
    # best threshold between 1.0 and 1.5 misclassifies only x=2.0 (class 0 above): 0.5 * 1/3
    O, d = mime.empirical_overlap(x, y)
    assert O == pytest.approx(0.5 / 3) and 1.0 < d < 1.5 or (2.0 < d < 2.5 and O == pytest.approx(0.5 / 3))
    # separable data has zero overlap; a threshold between the classes
    O, d = mime.empirical_overlap(np.array([0, 1, 5, 6.0]), np.array([0, 0, 1, 1]))
    assert O == 0 and 1 < d < 5
    with pytest.raises(ValueError, match="both classes"):
        mime.empirical_overlap(np.array([1.0, 2.0]), np.array([1, 1]))


def test_empirical_overlap_matches_theory_for_gaussian_samples():
    g = mime.Group.make(-1, 1, 1.0)
    x, y = g.sample(200_000, np.random.default_rng(0))
    O, d = mime.empirical_overlap(x, y - 1)
    assert O == pytest.approx(g.overlap(), abs=0.005) and d == pytest.approx(0.0, abs=0.1)


def test_decision_projection_is_signed_distance_to_the_hyperplane():
    torch.manual_seed(0)
    model = models.MLP(3, [5], 2)
    X = torch.randn(50, 3)
    x = experiment.decision_projection(model, X)
    feats, logits = models.penultimate(model, X)
    w = model.head.weight.detach()
    b = model.head.bias.detach()
    expected = (feats @ (w[1] - w[0]) + (b[1] - b[0])) / (w[1] - w[0]).norm()
    assert np.allclose(x, expected.numpy(), atol=1e-5)
    one = models.MLP(3, [5], 1)
    assert np.allclose(experiment.decision_projection(one, X),
                       (train.logits_of(one, X)[:, 0] / one.head.weight[0].norm()).detach().numpy(), atol=1e-5)


def test_table1_on_simulated_projection():
    rng = np.random.default_rng(0)
    major, minor = mime.Group.make(-1, 1, 0.5), mime.Group.make(-0.5 + 0.3, 0.5 + 0.3, 0.5)
    xa, ya = major.sample(20_000, rng)
    xb, yb = minor.sample(20_000, rng)
    x = np.concatenate([xa, xb])
    y = np.concatenate([ya, yb]) - 1
    a = np.repeat([0, 1], 20_000)
    row = mime.table1(x, y, a, majority=0)
    sd = x.std()
    assert row["O_major"] == pytest.approx(major.overlap(), abs=0.01)
    assert row["O_minor"] == pytest.approx(minor.overlap(), abs=0.01)
    assert row["domain_gap"] == pytest.approx(0.3 / sd, abs=0.1)
    assert row["O_major<O_minor"] and row["ks_major"] < 0.02
    # a clearly non-Gaussian class is flagged by a large KS distance
    x2 = x.copy()
    x2[(a == 0) & (y == 1)] = rng.exponential(size=((a == 0) & (y == 1)).sum())
    assert mime.table1(x2, y, a, 0)["ks_major"] > 0.1


def test_image_recipe_is_the_papers():
    r = experiment.Recipe.image("fairface")
    assert r.optim.name == "adamw" and r.optim.lr == 5e-4 and r.optim.betas == (0.5, 0.999)
    assert r.optim.weight_decay == 0.08 and r.schedule.name == "cosine" and r.schedule.t_max == 30
    assert r.fit_kwargs() == dict(epochs=35, batch_size=30, optim=r.optim, schedule=r.schedule)


def test_class_balanced_equalises_classes_within_each_group():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], [300, 200])
    y = np.concatenate([(rng.random(300) < 0.2), (rng.random(200) < 0.6)]).astype(int)
    idx = experiment.class_balanced(y, groups, np.random.default_rng(1))
    assert np.all(np.diff(idx) > 0)
    for g in (0, 1):
        counts = [int(((groups[idx] == g) & (y[idx] == c)).sum()) for c in (0, 1)]
        smallest = min(int(((groups == g) & (y == c)).sum()) for c in (0, 1))
        assert counts == [smallest, smallest]


def test_beta_indices_are_nested_across_beta():
    pools = {0: np.arange(100), 1: np.arange(1000, 1100)}
    sets = [set(experiment.beta_indices(pools, 0, 40, b)) for b in (0.0, 0.25, 0.5, 1.0)]
    assert all(len(s) == 40 for s in sets)
    for a, b in zip(sets, sets[1:]):
        assert {i for i in b if i < 1000} <= {i for i in a if i < 1000}     # majority part shrinks
        assert {i for i in a if i >= 1000} <= {i for i in b if i >= 1000}   # minority part grows


def test_beta_sweep_selects_on_majority_validation_and_never_reads_test():
    """Scrambling the test labels changes the reported test accuracy but not the chosen epoch: the
    choice reads validation only, and only its majority rows (minority validation rows are ignored)."""
    def scrambled(trial):
        trn, val, tst = splits(trial)
        tst.y[:] = np.random.default_rng(trial).permutation(tst.y)
        return trn, val, tst

    def noisy_minority_val(trial):
        trn, val, tst = splits(trial)
        hard = val.groups["g"] == 1
        val.y[hard] = 1 - val.y[hard]                                        # flip minority labels
        return trn, val, tst

    kw = dict(betas=[0.0, 0.5], n_train=100, trials=2, make_model=make, fit_kwargs=dict(FIT, epochs=4), seed=0)
    base = experiment.beta_sweep(splits, "g", 0, **kw)
    assert base.best_epoch.tolist() == experiment.beta_sweep(scrambled, "g", 0, **kw).best_epoch.tolist()
    assert base.best_epoch.tolist() == experiment.beta_sweep(noisy_minority_val, "g", 0, **kw).best_epoch.tolist()


def test_beta_sweep_balances_classes_by_default(monkeypatch):
    def skewed(trial):
        d = [toy(n, s + trial) for n, s in ((900, 10), (300, 100), (300, 1000))]
        for ds in d:                                     # drop most of class 1 in the easy group
            keep = ~((ds.groups["g"] == 0) & (ds.y == 1) & (np.arange(len(ds.y)) % 3 != 0))
            ds_sub = ds.subset(np.flatnonzero(keep))
            ds.__dict__.update(ds_sub.__dict__)
        return tuple(d)
    seen = []
    orig = experiment.class_balanced
    monkeypatch.setattr(experiment, "class_balanced",
                        lambda y, g, rng: seen.append((np.asarray(y), np.asarray(g))) or orig(y, g, rng))
    experiment.beta_sweep(skewed, "g", 0, [0.0], n_train=50, trials=1, make_model=make, fit_kwargs=FIT)
    assert len(seen) == 3                            # train, validation and test balanced
    seen.clear()
    experiment.beta_sweep(skewed, "g", 0, [0.0], n_train=50, trials=1, make_model=make, fit_kwargs=FIT,
                          balance=False)
    assert not seen


def test_tabular_recipe_is_the_authors_and_cosine_ends_at_one_percent():
    r = experiment.Recipe.tabular(epochs=10)
    assert r.optim == train.Optim("adamw", lr=5e-4, betas=(0.5, 0.999), weight_decay=0.08)
    assert r.batch_size == 30 and r.schedule.min_lr_factor == 0.01 and r.epochs == 10
    opt = r.optim.build(torch.nn.Linear(2, 1).parameters())
    sched = r.schedule.build(opt, epochs=10)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] == pytest.approx(0.01 * 5e-4) and all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_linear_probe_sweep_keeps_the_backbone_fixed(monkeypatch):
    calls = []
    orig_fit, orig_many = train.fit, train.fit_many

    def spy(model, X, y, **kw):
        calls.append(type(model).__name__)
        return orig_fit(model, X, y, **kw)

    def spy_many(models, datasets, **kw):
        calls.append((type(models[0]).__name__, len(models)))
        return orig_many(models, datasets, batched=True, **kw)

    monkeypatch.setattr(train, "fit", spy)
    monkeypatch.setattr(train, "fit_many", spy_many)
    df = experiment.linear_probe_sweep(splits, "g", 0, [0.0, 0.5, 1.0], n_train=100, trials=2, make_model=make,
                                       fit_kwargs=FIT, probe_kwargs=dict(epochs=5, batch_size=32,
                                                                         optim=train.Optim("adam", lr=1e-2)))
    # per trial: one backbone (an MLP), then one linear head per beta trained as one batch, nothing else
    assert calls == ["MLP", ("Linear", 3)] * 2
    assert len(df) == 6 and df.majority_acc.between(0, 1).all()
    assert df.set_index(["trial", "beta"]).n_minor.tolist() == [0, 50, 100] * 2


def test_image_recipes_are_the_authors_per_dataset():
    ff, utk = experiment.Recipe.image("fairface"), experiment.Recipe.image("utkface")
    assert (ff.epochs, ff.batch_size, ff.schedule.t_max) == (35, 30, 30)
    assert ff.optim == train.Optim("adamw", lr=5e-4, betas=(0.5, 0.999), weight_decay=0.08)
    assert (utk.epochs, utk.batch_size, utk.schedule.t_max) == (65, 25, 65)
    assert utk.optim == train.Optim("adamw", lr=6e-4, betas=(0.5, 0.999), weight_decay=0.05)
    short = experiment.Recipe.image("utkface", epochs=3, batch_size=8)
    assert (short.epochs, short.batch_size, short.optim, short.schedule) == (3, 8, utk.optim, utk.schedule)
    with pytest.raises(ValueError, match="Recipe.image: dataset got 'adult'"):
        experiment.Recipe.image("adult")


def test_adam_recipe_has_no_schedule():
    r = experiment.Recipe.adam(epochs=4, batch_size=64, lr=1e-3)
    assert r.fit_kwargs() == dict(epochs=4, batch_size=64, optim=train.Optim("adam", lr=1e-3),
                                  schedule=train.Schedule())


def test_beta_sweep_batched_equals_the_betas_fitted_one_by_one(monkeypatch):
    kw = dict(n_train=100, trials=2, make_model=make, fit_kwargs=experiment.Recipe.tabular(epochs=4).fit_kwargs())
    together = experiment.beta_sweep(splits, "g", 0, [0.0, 0.3, 0.7, 1.0], **kw)
    orig = train.fit_many
    monkeypatch.setattr(train, "fit_many", lambda *a, **k: orig(*a, **{**k, "batched": False}))
    apart = experiment.beta_sweep(splits, "g", 0, [0.0, 0.3, 0.7, 1.0], **kw)
    pd.testing.assert_frame_equal(together, apart, atol=1e-6, rtol=0)


def test_beta_sweep_starts_every_beta_of_a_trial_from_one_initialisation(monkeypatch):
    starts = []
    orig = train.fit_many

    def spy(models, datasets, **kw):
        starts.append([{n: t.clone() for n, t in m.state_dict().items()} for m in models])
        return orig(models, datasets, **kw)

    monkeypatch.setattr(train, "fit_many", spy)
    experiment.beta_sweep(splits, "g", 0, [0.0, 0.5, 1.0], n_train=100, trials=2, make_model=make, fit_kwargs=FIT)
    assert len(starts) == 2 and all(len(s) == 3 for s in starts)
    for trial in starts:
        for other in trial[1:]:
            assert all(torch.equal(other[n], trial[0][n]) for n in trial[0])
    assert not torch.equal(starts[0][0]["head.weight"], starts[1][0]["head.weight"])  # trials differ


def test_projection_at_half_is_the_half_mix_model_projected():
    """Equal to the steps one by one: n // 2 samples of each group drawn with the seed, one fit with
    validation selection, the test set projected on the learnt direction."""
    trn, val, tst = splits(0)
    x = experiment.projection_at_half(trn, val, tst, "g", 100, make, FIT, seed=3)
    rng = np.random.default_rng(3)
    idx = np.concatenate([rng.choice(np.flatnonzero(trn.groups["g"] == g), 50, replace=False) for g in (0, 1)])
    res = train.fit(train.seeded(make, 3), trn.X[idx], trn.y[idx], val=(val.X, val.y), seed=3, **FIT)
    np.testing.assert_array_equal(x, experiment.decision_projection(res.model, tst.X))
    assert x.shape == (len(tst.y),)
