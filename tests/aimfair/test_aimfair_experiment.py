"""fairbook.aimfair.experiment: the chapter's networks, its training recipe, runs and pool draws."""
import numpy as np
import pandas as pd
import pytest
import torch

from fairbook import aimfair as A
from fairbook import models
from fairbook.aimfair import data as AD
from fairbook.aimfair import experiment as EX
from fairbook.data.images import cell_counts


def data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, 12, 12, generator=g)
    y = (X[:, 0].mean((1, 2)) > X[:, 1].mean((1, 2))).long()
    return X, y


def recipe(**kw):
    X, y = data(32, seed=1)
    return EX.Recipe(**{"model": "cnn", "val": (X, y), "batch_size": 16, "pre_epochs": 2, "pre_milestone": 1,
                        "ft_epochs": 2, "channels": (4, 4, 4), **kw})


def test_networks():
    assert len(list(EX.network("narrow-resnet18", width=2).parameters())) == 62
    assert isinstance(EX.network("cnn", channels=(4, 4, 4)), models.SmallCNN)
    with pytest.raises(ValueError, match="network: name got 'vgg'"):
        EX.network("vgg")


def test_train_from_scratch_is_seeded_and_overridable():
    r = recipe()
    X, y = data()
    a, b = r.train_from_scratch(X, y, 3), r.train_from_scratch(X, y, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = r.train_from_scratch(X, y, 4)
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    one = r.train_from_scratch(X, y, 3, optim=r.sgd(1.0), select=None)  # overrides reach fit
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), one.state_dict().values()))


def test_finetune_copies_the_base_and_matches_aimfair_finetune():
    r = recipe(freeze_bn_stats=True)
    X, y = data()
    base = r.train_from_scratch(X, y, 0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    head = A.linear_probe(base)
    out = r.finetune(base, head, X, y, lr=0.1, seed=5)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())      # base untouched
    ref = r.train_from_scratch(X, y, 0)
    A.finetune(ref, head, X, y, freeze_bn_stats=True, epochs=2, batch_size=16, optim=r.sgd(0.1), loss="bce",
               val=r.val, select="acc", seed=5)
    assert all(torch.equal(ref.state_dict()[k], v) for k, v in out.state_dict().items())


def test_fit_job_returns_the_seconds_per_fine_tuning_epoch_and_runs_keep_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_TASKS", str(tmp_path))
    r = recipe()
    X, y = data()
    base = r.train_from_scratch(X, y, 0)
    model, seconds = EX.fit_job(r, EX.Job(X, y, seed=5, base=base.state_dict(), selection=A.linear_probe(base), lr=0.1))
    assert seconds > 0 and _same(model, r.finetune(base, A.linear_probe(base), X, y, lr=0.1, seed=5))
    assert EX.fit_job(r, EX.Job(X, y, seed=5))[1] is None                  # from scratch: no fine-tuning epoch
    s = np.arange(len(y)) % 2
    runs = EX.Runs((X, y.numpy(), s), (X, y.numpy(), s), recipe=r)
    runs.record("t", "ft", 0, EX.Job(X, y, seed=0, base=base.state_dict(), selection=A.full(base), lr=0.1))
    runs.record("t", "scratch", 0, EX.Job(X, y, seed=0))
    runs.flush()
    assert len(runs.epoch_seconds) == 1 and runs.epoch_seconds[0] > 0


def test_the_recipe_is_settings_only():
    import dataclasses

    r = recipe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.ft_epochs = 3
    assert "epoch_seconds" not in {f.name for f in dataclasses.fields(r)}


def test_gradients_are_the_three_dataset_gradients():
    r = recipe()
    X, y = data()
    m = r.make_model()
    g = r.gradients(m, (X, y), (X[:20], y[:20]), (X[20:], y[20:]), seed=2)
    assert list(g) == ["R", "S1", "S2"]
    ref = A.dataset_gradients(m, X[:20], y[:20], batch_size=16, seed=2)
    assert all(torch.equal(ref[k], g["S1"][k]) for k in ref)
    unshuffled = r.gradients(m, (X, y), (X, y), (X, y), seed=2, shuffle=False)
    assert all(torch.equal(unshuffled["R"][k], A.dataset_gradients(m, X, y, batch_size=16, shuffle=False)[k])
               for k in ref)


def test_condition_judge_learns_a_readable_condition():
    X, y = data(200, seed=3)
    judge = EX.condition_judge(X, y, channels=(4, 4, 4), batch_size=32, epochs=8, seed=0)
    from fairbook import train
    acc = (train.predict(train.logits_of(judge, X)) == y).float().mean().item()
    assert acc > 0.8                          # y is a colour contrast: easy to read
    assert isinstance(judge, models.SmallCNN) and judge.head.out_features == 2


def _same(a, b):
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_mask_and_sft_from_scratch_are_the_method_step_by_step():
    r = recipe()
    X, y = data()
    R, S1, S2 = (X, y), (X[:24], y[:24]), (X[24:], y[24:])
    base, sft = r.sft_from_scratch(R, S1, S2, seed=3, top_k=0.5, level="tensor", lr=0.1)
    ref = r.train_from_scratch(X, y, 3)
    assert _same(ref, base)
    g = r.gradients(ref, R, S1, S2, 3)
    mask = r.mask(ref, g, 0.5, "tensor")
    assert mask.trainable == A.selective_mask(g["R"], g["S1"], g["S2"], A.k_for_fraction(ref, 0.5, "tensor"),
                                              level="tensor").trainable
    assert _same(r.finetune(ref, mask, *S2, lr=0.1, seed=3), sft) and not _same(base, sft)


def test_error_set_and_jtt_are_the_two_stages():
    from fairbook import train
    from fairbook.aimfair import robust

    r = recipe()
    X, y = data()
    err = r.error_set(X, y, seed=2, epochs=1)
    ident = r.train_from_scratch(X, y, 2, epochs=1, select=None, schedule=train.Schedule())
    np.testing.assert_array_equal(err, robust.error_set(ident, X, y))
    err = np.zeros(len(y), dtype=bool)
    err[:5] = True                                   # a known error set: rows 0-4 upsampled
    idx = robust.upweight(err, 3)
    assert _same(r.jtt(X, y.numpy(), err, 3, seed=4), r.train_from_scratch(X[idx], y.numpy()[idx], 4))


class Fixed(torch.nn.Module):
    """A one-logit model whose logit is ``b`` for every input: its predictions are all 1 (b > 0)."""

    def __init__(self, b):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor([float(b)]))

    def forward(self, x):
        return self.b.expand(len(x), 1)


def cells(n=8):
    y = np.array([0, 0, 1, 1] * (n // 4))
    s = np.array([0, 1, 0, 1] * (n // 4))
    return torch.zeros(n, 1), y, s


def test_runs_record_test_and_validation_and_summarise_over_seeds():
    X, y, s = cells()
    runs = EX.Runs((X, y, s), (X, y, s))
    runs.record("t", "always 1", 0, Fixed(1.0), lr=0.1)
    runs.record("t", "always 1", 1, Fixed(2.0), lr=0.1)
    df = runs.frame()
    assert list(df.columns[:4]) == ["table", "method", "seed", "lr"] and len(df) == 2
    # predicting 1 everywhere: accuracy 0.5, the y = 0 cells at 0, so WST 0; the same on validation
    assert (df.acc == 0.5).all() and (df.wst == 0).all() and (df.val_acc == 0.5).all() and (df.val_wst == 0).all()
    out = runs.summary(["t"])
    assert len(out) == 1 and out.n_seeds.iloc[0] == 2 and out.val_acc.iloc[0] == 0.5 and "lr" not in out


class Linear1(torch.nn.Module):
    """logit = w x[:, 0]."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(float(w)))

    def forward(self, x):
        return (self.w * x[:, :1]).reshape(-1, 1)


def test_lr_search_chooses_on_validation_and_records_the_chosen_runs_as_main():
    _, y, s = cells()
    sign = torch.as_tensor(2.0 * y - 1).reshape(-1, 1)
    # validation: x = +-1 with the label, so w > 0 is right everywhere; test the other way round (it
    # must not decide)
    runs = EX.Runs((sign, y, s), (-sign, y, s))
    calls = []

    def finetune(seed, sel, lr):
        calls.append((seed, sel, lr))
        return Linear1(lr - 0.5)

    best, kept = EX.lr_search(runs, finetune, {"m": lambda seed: f"sel{seed}", "other": lambda seed: "o"},
                              seeds=[0, 1], lrs=[0.1, 0.9], keep=["m"], before=lambda seed: calls.append(seed))
    assert best == {"m": 0.9, "other": 0.9}
    assert calls[0] == 0 and calls[1] == (0, "sel0", 0.1) and calls[5] == 1   # before() opens each seed
    assert set(kept) == {("m", 0), ("m", 1)} and float(kept["m", 0].w) == pytest.approx(0.4)
    df = runs.frame()
    assert len(df[df.table == "lr search"]) == 8
    main = df[df.table == "main"]
    assert len(main) == 4 and (main.lr == 0.9).all() and (main.val_acc == 1).all() and (main.acc == 0).all()


def test_draw_cells_draws_the_cell_counts_without_repeats():
    y = np.repeat([0, 0, 1, 1], 25)
    s = np.tile(np.repeat([0, 1], 25), 2)
    X = np.arange(100)[:, None].astype(np.float32)
    Xd, yd, sd = AD.draw_cells(X, y, s, A.bias_ratios("1:4"), 40, np.random.default_rng(0))
    assert len(set(Xd[:, 0].tolist())) == 40
    counts = [int(((yd == a) & (sd == b)).sum()) for a, b in A.CELLS]
    assert counts == list(cell_counts(40, A.bias_ratios("1:4")))


def _tiny(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 2, n)
    X = (rng.random((n, 3, 12, 12)) + y[:, None, None, None] * 0.5).astype(np.float32)
    return X, y, s


def test_jobs_queued_in_runs_train_as_a_grid_and_equal_training_here(tmp_path, monkeypatch):
    from fairbook import grid

    monkeypatch.setenv("FAIRBOOK_TASKS", str(tmp_path))
    X, y, s = _tiny()
    Xv, yv, sv = _tiny(seed=1)
    recipe = EX.Recipe("cnn", (Xv, yv), batch_size=16, pre_epochs=2, pre_milestone=1, ft_epochs=1, channels=(4, 4, 4))
    base = recipe.train_from_scratch(X, y, 3)
    sel = A.full(base)
    here = EX.Runs((Xv, yv, sv), (X, y, s))
    here.record("t", "scratch", 0, recipe.train_from_scratch(X, y, 0))
    here.record("t", "ft", 0, recipe.finetune(base, sel, X, y, lr=0.01, seed=0))
    frames = []
    for g in (grid.Grid("local", 2), grid.Grid("processes", 2, cache=False)):
        runs = EX.Runs((Xv, yv, sv), (X, y, s), recipe=recipe, grid=g)
        runs.record("t", "scratch", 0, EX.Job(X, y, seed=0))
        kept = runs.record("t", "ft", 0, EX.Job(X, y, seed=0, base=base.state_dict(), selection=sel, lr=0.01), keep=True)
        frames.append(runs.frame())
        got, want = runs.models[kept.index], recipe.finetune(base, sel, X, y, lr=0.01, seed=0)
        for (k, a), b in zip(got.state_dict().items(), want.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=1e-5), k
    grid.shutdown()
    pd.testing.assert_frame_equal(frames[0], frames[1])
    cols = ["table", "method", "seed", "acc", "wst", "val_acc"]
    pd.testing.assert_frame_equal(frames[0][cols], here.frame()[cols], atol=1e-6)


def test_a_job_needs_the_recipe():
    X, y, s = _tiny()
    with pytest.raises(ValueError, match="recipe"):
        EX.Runs((X, y, s), (X, y, s)).record("t", "m", 0, EX.Job(X, y, seed=0))


def test_train_many_and_error_sets_equal_training_one_by_one(tmp_path, monkeypatch):
    from fairbook import grid

    monkeypatch.setenv("FAIRBOOK_TASKS", str(tmp_path))
    X, y, _ = _tiny()
    Xv, yv, _ = _tiny(seed=1)
    recipe = EX.Recipe("cnn", (Xv, yv), batch_size=16, pre_epochs=2, pre_milestone=1, channels=(4, 4, 4))
    same_threads = grid.Grid("local", 1, threads=torch.get_num_threads())
    many = recipe.train_many([EX.Job(X, y, seed=s) for s in (0, 1)], same_threads)
    for s, m in zip((0, 1), many):
        one = recipe.train_from_scratch(X, y, s)
        for (k, a), b in zip(m.state_dict().items(), one.state_dict().values()):
            assert torch.equal(a, b), k
    sets = recipe.error_sets(X, y, [0, 1], 1, same_threads)
    assert all(np.array_equal(e, recipe.error_set(X, y, s, 1)) for s, e in zip((0, 1), sets))


def test_the_mask_takes_an_explicit_k():
    X, y, _ = _tiny()
    recipe = EX.Recipe("cnn", (X, y), batch_size=16, channels=(4, 4, 4))
    model = recipe.make_model()
    g = recipe.gradients(model, (X, y), (X, y), (X[::-1].copy(), y[::-1].copy()), 0)
    assert len(recipe.mask(model, g, 0.5, "tensor", k=2).trainable) <= 2
    assert recipe.mask(model, g, 0.5, "tensor").k == A.k_for_fraction(model, 0.5, "tensor")


def test_pool_draw_is_draw_cells_on_its_own_stream():
    X, y, s = _tiny(96)
    got = EX.pool_draw((X, y, s), A.balanced_ratios(), 16, 7, 2, 11)
    want = AD.draw_cells(X, y, s, A.balanced_ratios(), 16, np.random.default_rng([7, 2, 11]))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    other = EX.pool_draw((X, y, s), A.balanced_ratios(), 16, 7, 3, 11)  # another seed: another draw
    assert not np.array_equal(got[0], other[0])


def test_prepare_is_pretraining_draws_and_gradients_seed_by_seed(tmp_path, monkeypatch):
    from fairbook import grid

    monkeypatch.setenv("FAIRBOOK_TASKS", str(tmp_path))
    X, y, _ = _tiny()
    pool = _tiny(96, seed=2)
    Xv, yv, _ = _tiny(seed=1)
    recipe = EX.Recipe("cnn", (Xv, yv), batch_size=16, pre_epochs=2, pre_milestone=1, channels=(4, 4, 4))
    ratios = A.bias_ratios("1:4")
    prep = EX.prepare(recipe, (X, y), pool, [0, 1], 5, 24, ratios, 0.5, "tensor",
                      grid.Grid("local", 1, threads=torch.get_num_threads()))
    assert len(prep.mask_seconds) == 2
    for s in (0, 1):
        assert _same(recipe.train_from_scratch(X, y, s), prep.pretrained[s])
        S1 = EX.pool_draw(pool, ratios, 24, 5, s, 12)[:2]
        S2 = EX.pool_draw(pool, A.balanced_ratios(), 24, 5, s, 11)[:2]
        assert all(np.array_equal(a, b) for a, b in zip(S1 + S2, prep.S1[s] + prep.S2[s]))
        g = recipe.gradients(prep.pretrained[s], (X, y), S1, S2, s)
        assert all(torch.equal(g[k][n], prep.grads[s][k][n]) for k in g for n in g[k])


def test_cell_grid_lays_out_each_cell_in_a_row():
    y = np.array([0, 0, 1, 1] * 4)
    s = np.array([0, 1, 0, 1] * 4)
    X = np.zeros((16, 3, 2, 2), np.float32) + np.arange(16)[:, None, None, None] / 16
    grid = EX.cell_grid(X, y, s, per_cell=2)
    assert grid.shape == (8, 4, 3)
    # row (1, 0): rows 2, 6, 10, 14 of X; two spread evenly: the first and the last
    assert grid[4, 0, 0] == X[2, 0, 0, 0] and grid[4, 2, 0] == X[14, 0, 0, 0]
    with pytest.raises(ValueError, match="no image"):
        EX.cell_grid(X[:2], y[:2], s[:2])
