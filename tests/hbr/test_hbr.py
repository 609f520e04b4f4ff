"""fairbook.hbr: margins/AUM (eqs. 2-4, vs PyPI ``aum``), the allocation (eqs. 5-6, appendix A), the
resampling strategies (vs imbalanced-learn), pool selection, pruning, t-tests (vs scipy), experiment smoke."""
import numpy as np
import pandas as pd
import pytest
import torch
from aum import AUMCalculator
from scipy import stats as sps

from fairbook import hbr, metrics, models, train


# --- tiny data -----------------------------------------------------------------------------------------
def _indexed(y):
    """Samples whose only feature is their row index, shape (n, 1)."""
    return np.arange(len(y), dtype=float).reshape(-1, 1)


def _toy_resample():
    """18 samples, classes interleaved 0,1,2,...; class 0 has hand-chosen AUMs."""
    y = np.tile([0, 1, 2], 6)
    aum = np.linspace(0.0, 1.0, 18)
    aum[[0, 3, 6, 9, 12, 15]] = [0.5, -1.0, 2.0, 0.1, 3.0, -0.2]  # lowest three: rows 3, 15, 9
    return _indexed(y), y, aum


def _pool(per_class=(4, 5, 20), start=1000, seed=0):
    """A pool whose X encodes unique ids (start + row), shuffled classes, random confidences."""
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(per_class)), per_class))
    X = (start + np.arange(len(y), dtype=float)).reshape(-1, 1)
    conf = np.random.default_rng(seed + 1).uniform(size=len(y))
    return hbr.Pool(X, y, conf, real_confidence=np.array([0.5, 0.5, 0.4]))


def _images(n, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, 1, 4, 4)).astype(np.float32) + y[:, None, None, None]
    return X, y


def _bias_frame(seed, n_i=2, n_j=3):
    rng = np.random.default_rng(seed)
    rows = [{"i": i, "j": j, "score": s, **{m: rng.uniform() for m in hbr.experiment.BIAS_METRICS + ("avg",)}}
            for i in range(n_i) for j in range(n_j) for s in ("recall", "precision")]
    return pd.DataFrame(rows)


# --- hardness: eqs. 2-4 --------------------------------------------------------------------------------
def test_margins_by_hand():
    z = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, -1.0], [1.0, 1.0, 1.0], [-2.0, -5.0, -1.0]])
    y = torch.tensor([0, 0, 2, 1])
    # z_y - max_{i != y} z_i on the logits (not the probabilities)
    np.testing.assert_allclose(hbr.margins(z, y).numpy(), [1.0, -3.0, 0.0, -4.0])


def test_aum_tracker_matches_pypi_aum(tmp_path):
    rng = np.random.default_rng(0)
    n, c = 23, 4
    y = torch.as_tensor(rng.integers(0, c, n))
    tracker, calc = hbr.AUMTracker(n), AUMCalculator(save_dir=str(tmp_path), compressed=True)
    for epoch in range(5):
        ids = rng.permutation(n)
        if epoch == 4:  # a batch that repeats some samples
            ids = np.concatenate([ids, ids[:5]])
        for batch in np.array_split(ids, 3):
            logits = torch.as_tensor(rng.normal(0, 3, (len(batch), c)), dtype=torch.float32)
            targets = y[batch]
            tracker(logits, targets, torch.as_tensor(batch), epoch)
            calc.update(logits, targets, batch.tolist())
    ref = np.array([calc.sums[i] / calc.counts[i] for i in range(n)])
    np.testing.assert_allclose(tracker.values, ref, rtol=1e-10, atol=1e-12)
    assert tracker.counts.numpy().tolist() == [calc.counts[i] for i in range(n)]


def test_aum_tracker_never_seen_raises():
    tracker = hbr.AUMTracker(5)
    tracker(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.arange(4), 1)
    with pytest.raises(ValueError, match="1 samples were never seen"):
        tracker.values


def test_aum_tracker_as_fit_hook(tmp_path):
    X, y = _images(48)
    tracker, calc = hbr.AUMTracker(len(y)), AUMCalculator(save_dir=str(tmp_path), compressed=True)

    def hook(logits, yb, ids, epoch):
        tracker(logits, yb, ids, epoch)
        calc.update(logits.float().cpu(), yb.long().cpu(), torch.as_tensor(ids).tolist())

    model = train.seeded(lambda: models.MLP(16, (8,), 3), 0)
    train.fit(model, X, y, epochs=2, batch_size=16, select=None, on_logits=hook, seed=0, device="cpu")
    assert np.isfinite(tracker.values).all()
    assert (tracker.counts.numpy() == 2).all()  # every sample once per epoch
    np.testing.assert_allclose(tracker.values, [calc.sums[i] / calc.counts[i] for i in range(len(y))],
                               rtol=1e-10, atol=1e-12)


def test_ensemble_confidence_is_mean_softmax_of_true_class():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)) for _ in range(2)]
    X = np.random.default_rng(0).normal(size=(6, 1, 2, 2)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        p = [torch.softmax(m(torch.as_tensor(X)), 1).numpy()[np.arange(6), labels] for m in nets]
    np.testing.assert_allclose(hbr.ensemble_confidence(nets, X, labels), (p[0] + p[1]) / 2, rtol=1e-5)


def test_class_hardness_is_groupby_mean():
    rng = np.random.default_rng(1)
    y, h = rng.integers(0, 4, 50), rng.normal(size=50)
    y[:4] = [0, 1, 2, 3]
    ref = pd.Series(h).groupby(y).mean().to_numpy()
    np.testing.assert_allclose(hbr.class_hardness(h, y), ref)
    np.testing.assert_allclose(hbr.class_hardness(h, y, n_classes=4), ref)


def test_class_hardness_missing_class_raises():
    with pytest.raises(ValueError, match=r"\[1\]"):
        hbr.class_hardness([0.1, 0.2, 0.3], [0, 2, 2])
    with pytest.raises(ValueError, match=r"\[3\]"):
        hbr.class_hardness([0.1, 0.2, 0.3], [0, 1, 2], n_classes=4)


# --- allocation: eqs. 5-6 ------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha, expected", [(1, [172, 86, 43]), (0, [100, 100, 100]), (0.5, [136, 93, 71])])
def test_resampling_counts_by_hand(alpha, expected):
    # hardness 1/AUM = [1, .5, .25] -> shares 4/7, 2/7, 1/7 of 300 = 171.4, 85.7, 42.9 -> ceil
    # alpha = .5: 100 + floor(.5 * [72, -14, -57]) = [136, 93, 71]
    assert hbr.resampling_counts([1, 2, 4], [100, 100, 100], alpha).tolist() == expected


def test_resampling_counts_alpha_too_large_raises():
    # alpha = 2: 100 + floor(2 * [72, -14, -57]) = [244, 72, -14]
    with pytest.raises(ValueError, match=r"alpha=2.*\[2\].*\[244, 72, -14\]"):
        hbr.resampling_counts([1, 2, 4], [100, 100, 100], alpha=2)


def test_resampling_counts_empty_class_raises():
    # alpha = 1.75: 100 + floor(1.75 * [72, -14, -57]) = [226, 75, 0]: a class left with 0 samples
    with pytest.raises(ValueError, match=r"alpha=1.75.*\[2\]"):
        hbr.resampling_counts([1, 2, 4], [100, 100, 100], alpha=1.75)
    assert hbr.resampling_counts([1, 2, 4], [100, 100, 100], alpha=1.7).tolist() == [222, 76, 3]


def test_resampling_counts_negative_aum_offset():
    # appendix A: offset by -min + 1e-4 -> [1e-4, 2.0001, 4.0001]; 1/h = [1e4, .49998, .24999]
    # shares x 30000 = [29997.75, 1.4998, 0.7499] -> ceil [29998, 2, 1]
    assert hbr.resampling_counts([-2, 0, 2], 10000).tolist() == [29998, 2, 1]
    # same offset, 300 samples: [299.98, .015, .0075] -> [300, 1, 1];
    # alpha = .5: 100 + floor(.5 * [200, -99, -99]) = [200, 50, 50]
    assert hbr.resampling_counts([-2, 0, 2], [100] * 3).tolist() == [300, 1, 1]
    assert hbr.resampling_counts([-2, 0, 2], [100] * 3, alpha=0.5).tolist() == [200, 50, 50]
    # a shift of all AUMs does not matter once the minimum is negative
    assert hbr.resampling_counts([-5, -3, -1], 10000).tolist() == [29998, 2, 1]


def test_resampling_counts_log_by_hand():
    # log1p([171.43, 85.71, 42.86]) = [5.1499, 4.4625, 3.7810], rescaled to 300 = [115.35, 99.96, 84.69]
    assert hbr.resampling_counts([1, 2, 4], [100] * 3, f="log").tolist() == [116, 100, 85]


@pytest.mark.parametrize("seed", range(4))
def test_resampling_counts_properties(seed):
    rng = np.random.default_rng(seed)
    c, a = 10, 500
    aum = rng.normal(1.0, 1.0, c) if seed % 2 else rng.uniform(0.5, 5.0, c)
    b = hbr.resampling_counts(aum, a)
    order = np.argsort(aum)  # hardest (lowest AUM) first
    assert (np.diff(b[order]) <= 0).all() and b[order[0]] > a > b[order[-1]]
    assert 0 <= b.sum() - c * a < c  # ceil adds at most C - 1
    blog = hbr.resampling_counts(aum, a, f="log")
    assert 0 <= blog.sum() - c * a < c
    assert (np.diff(blog[order]) <= 0).all()
    assert blog.max() / blog.min() < b.max() / b.min()


def test_resampling_counts_errors():
    with pytest.raises(ValueError, match="alpha"):
        hbr.resampling_counts([1, 2], [10, 10], alpha=-0.5)
    with pytest.raises(ValueError, match="f must be"):
        hbr.resampling_counts([1, 2], [10, 10], f="sqrt")
    with pytest.raises(ValueError, match="finite"):
        hbr.resampling_counts([1, np.nan], [10, 10])
    with pytest.raises(ValueError, match=">= 2 classes"):
        hbr.resampling_counts([1.0], [10])


# --- resampling ----------------------------------------------------------------------------------------
def test_undersampling_removes_easiest():
    X, y, aum = _toy_resample()
    Xr, yr, table = hbr.resample(X, y, aum, [3, 6, 6], "random", seed=0)
    rows = Xr[:, 0].astype(int)
    assert sorted(rows[yr == 0]) == [3, 9, 15]  # the 3 lowest-AUM rows of class 0 survive
    assert sorted(rows[yr == 1]) == list(range(1, 18, 3)) and sorted(rows[yr == 2]) == list(range(2, 18, 3))
    assert (y[rows] == yr).all()
    assert table[["class", "a", "b", "removed", "added"]].to_numpy().tolist() == [
        [0, 6, 3, 3, 0], [1, 6, 6, 0, 0], [2, 6, 6, 0, 0]]
    assert (table["source"] == "random").all()


def test_random_oversampling_duplicates_same_class():
    X, y, aum = _toy_resample()
    Xr, yr, table = hbr.resample(X, y, aum, [3, 6, 15], "random", seed=0)
    assert np.bincount(yr).tolist() == [3, 6, 15]
    rows = Xr[:, 0].astype(int)
    assert (y[rows] == yr).all()  # every sample is a copy of a sample of its own class
    extra = rows[yr == 2]
    assert set(range(2, 18, 3)) <= set(extra) and len(extra) == 15
    assert table["added"].tolist() == [0, 0, 9] and table["removed"].tolist() == [3, 0, 0]


def test_holdout_draws_without_replacement_from_right_class():
    X, y, aum = _toy_resample()
    pool = _pool(per_class=(5, 4, 20))
    Xr, yr, table = hbr.resample(X, y, aum, [2, 10, 9], "holdout", seed=0, pool=pool)
    assert np.bincount(yr).tolist() == [2, 10, 9]
    drawn = Xr[Xr[:, 0] >= 1000, 0].astype(int) - 1000
    drawn_y = yr[Xr[:, 0] >= 1000]
    assert len(drawn) == 7 and len(set(drawn)) == 7  # 4 for class 1, 3 for class 2, no repeats
    assert (pool.y[drawn] == drawn_y).all() and sorted(drawn_y) == [1] * 4 + [2] * 3
    assert table["added"].tolist() == [0, 4, 3]
    # class 1 needs 4 and its pool has 4: all of them are drawn
    assert sorted(drawn[drawn_y == 1]) == sorted(np.flatnonzero(pool.y == 1))


def test_smote_counts_and_segments():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 8)
    X = rng.normal(size=(24, 1, 1, 3)).astype(np.float32)
    aum = rng.normal(size=24)
    counts = [5, 8, 14]
    Xr, yr, table = hbr.resample(X, y, aum, counts, "smote", seed=3)
    assert np.bincount(yr).tolist() == counts and Xr.shape == (27, 1, 1, 3) and Xr.dtype == np.float32
    assert table["added"].tolist() == [0, 0, 6] and table["removed"].tolist() == [3, 0, 0]
    # imbalanced-learn directly on the undersampled data
    from imblearn.over_sampling import SMOTE
    k0 = np.flatnonzero(y == 0)[np.argsort(aum[y == 0])[:5]]
    kept = np.concatenate([np.sort(k0), np.flatnonzero(y == 1), np.flatnonzero(y == 2)])
    Xs, ys = SMOTE(sampling_strategy={2: 14}, k_neighbors=5, random_state=3).fit_resample(
        X[kept].reshape(len(kept), -1), y[kept])
    np.testing.assert_array_equal(Xr.reshape(len(Xr), -1), Xs)
    np.testing.assert_array_equal(yr, ys)
    # every synthetic sample lies on a segment between two real samples of class 2
    real = X[y == 2].reshape(-1, 3).astype(float)
    for s in Xr[21:].reshape(-1, 3).astype(float):
        best = np.inf
        for p in real:
            for q in real:
                d = q - p
                if not d.any():
                    continue
                t = np.clip((s - p) @ d / (d @ d), 0, 1)
                best = min(best, np.linalg.norm(p + t * d - s))
        assert best < 1e-5


@pytest.mark.parametrize("strategy", ["random", "smote", "holdout", "hEDM"])
def test_resample_deterministic_per_seed(strategy):
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 8)
    X = rng.normal(size=(24, 2))
    aum = rng.normal(size=24)
    pool = hbr.Pool(rng.normal(size=(60, 2)), np.repeat([0, 1, 2], 20), rng.uniform(size=60))
    counts = [4, 8, 16]
    a = hbr.resample(X, y, aum, counts, strategy, seed=0, pool=pool)
    b = hbr.resample(X, y, aum, counts, strategy, seed=0, pool=pool)
    c = hbr.resample(X, y, aum, counts, strategy, seed=1, pool=pool)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_resample_errors():
    X, y, aum = _toy_resample()
    with pytest.raises(ValueError, match="strategy must be one of"):
        hbr.resample(X, y, aum, [6, 6, 6], "adasyn", seed=0)
    with pytest.raises(ValueError, match="needs a pool"):
        hbr.resample(X, y, aum, [6, 6, 8], "holdout", seed=0)
    with pytest.raises(ValueError, match="class 2 needs 5 extra samples but the holdout pool has 4"):
        hbr.resample(X, y, aum, [6, 6, 11], "holdout", seed=0, pool=_pool(per_class=(4, 5, 4)))
    with pytest.raises(ValueError, match="confidences"):
        hbr.resample(X, y, aum, [6, 6, 8], "hEDM", seed=0, pool=hbr.Pool(X, y))
    with pytest.raises(ValueError, match="one entry per class"):
        hbr.resample(X, y, aum, [6, 6], "random", seed=0)


# --- EDM pools (appendix A) ----------------------------------------------------------------------------
def test_pool_candidates():
    conf = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    assert hbr.pool_candidates("rEDM", conf, 2).tolist() == list(range(6))
    assert sorted(hbr.pool_candidates("hEDM", conf, 2)) == [1, 2, 3, 5]  # 4 least confident
    assert sorted(hbr.pool_candidates("aEDM", conf, 2, target=0.6)) == [0, 2, 3, 4]  # 4 closest to .6
    assert sorted(hbr.pool_candidates("hEDM", conf, 1)) == [1, 5]
    assert sorted(hbr.pool_candidates("hEDM", conf, 5)) == list(range(6))  # 2n > pool: everything
    with pytest.raises(ValueError, match="target"):
        hbr.pool_candidates("aEDM", conf, 2)
    with pytest.raises(ValueError, match="pool strategy"):
        hbr.pool_candidates("EDM", conf, 2)


@pytest.mark.parametrize("seed", range(3))
def test_resample_pool_draws_from_candidates(seed):
    X, y, aum = _toy_resample()
    pool = _pool(per_class=(4, 5, 20), seed=seed)
    mine = np.flatnonzero(pool.y == 2)
    for strategy, key in (("hEDM", pool.confidence[mine]),
                          ("aEDM", np.abs(pool.confidence[mine] - pool.real_confidence[2]))):
        Xr, yr, _ = hbr.resample(X, y, aum, [6, 6, 9], strategy, seed=seed, pool=pool)
        drawn = Xr[Xr[:, 0] >= 1000, 0].astype(int) - 1000
        allowed = set(mine[np.argsort(key)[:6]])  # 2n = 6 candidates of class 2
        assert len(drawn) == 3 and len(set(drawn)) == 3 and set(drawn) <= allowed
        assert (yr[Xr[:, 0] >= 1000] == 2).all()


# --- experiments ---------------------------------------------------------------------------------------
def test_ttest_table_matches_scipy():
    base, res = _bias_frame(0), _bias_frame(1)
    base.loc[(base.i == 1) & (base.j == 2) & (base.score == "precision"), "delta_m"] = np.nan
    out = hbr.experiment.ttest_table(base, res.sample(frac=1, random_state=0))  # pairing by key, not by position
    assert len(out) == 2 * 6
    for score in ("recall", "precision"):
        b = base[base.score == score].sort_values(["i", "j"])
        r = res[res.score == score].sort_values(["i", "j"])
        for m in hbr.experiment.BIAS_METRICS + ("avg",):
            x, z = b[m].to_numpy(), r[m].to_numpy()
            ok = ~np.isnan(x)
            ref = (sps.ttest_rel(x[ok], z[ok]) if m != "avg"  # two-sided, as the authors' code
                   else sps.ttest_rel(z[ok], x[ok]))
            row = out[(out.score == score) & (out.metric == m)].iloc[0]
            assert row.t == pytest.approx(ref.statistic) and row.p == pytest.approx(ref.pvalue)
            assert row.n == ok.sum() and row.resampled == pytest.approx(z.mean())
            assert row.significant == (ref.pvalue < 0.05)
    assert out[(out.score == "precision") & (out.metric == "delta_m")].n.item() == 5


def test_ttest_table_mismatched_pairs_raise():
    base, res = _bias_frame(0), _bias_frame(1)
    with pytest.raises(ValueError, match="one to one"):
        hbr.experiment.ttest_table(base, res.iloc[1:])
    res.loc[0, "j"] = 7
    with pytest.raises(ValueError, match="one to one"):
        hbr.experiment.ttest_table(base, res)


def test_prune_per_class():
    y = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [10, 20, 30]))
    kept, held = hbr.experiment.prune_per_class(y, 0.3, seed=5)
    assert np.bincount(y[kept]).tolist() == [7, 14, 21]
    assert np.bincount(y[held]).tolist() == [3, 6, 9]
    assert sorted(np.concatenate([kept, held])) == list(range(60))
    k2, _ = hbr.experiment.prune_per_class(y, 0.3, seed=5)
    k3, _ = hbr.experiment.prune_per_class(y, 0.3, seed=6)
    np.testing.assert_array_equal(kept, k2)
    assert not np.array_equal(kept, k3)
    assert len(hbr.experiment.prune_per_class(y, 0.0, seed=0)[0]) == 60
    # rounded, not truncated: .58 x [5, 7, 9] = [2.9, 4.06, 5.22] -> [3, 4, 5]
    small = np.repeat([0, 1, 2], [5, 7, 9])
    assert np.bincount(small[hbr.experiment.prune_per_class(small, 0.42, seed=0)[0]]).tolist() == [3, 4, 5]
    for rate in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="pruning rate"):
            hbr.experiment.prune_per_class(y, rate, seed=0)


def test_recipe_fit_and_pair_scores():
    recipe = hbr.experiment.Recipe(widths=(8,), epochs=2, batch_size=32, device="cpu")
    data = [_images(198, seed=0), _images(198, seed=1)]
    test = _images(60, seed=2)
    easy, hard = np.array([0]), np.array([2])
    calls = []
    out = hbr.experiment.pair_scores(recipe, data, test, n_models=2, n_classes=3, easy=easy, hard=hard, k=1,
                                     label="base", progress=lambda: calls.append(1))
    assert len(out) == 8 and len(calls) == 4
    assert sorted(out.score.unique()) == ["precision", "recall"]
    for row in out.itertuples():
        assert row.model_seed == hbr.design.model_seed(row.i, row.j) and row.setting == "base"
    # the row of (i=1, j=1) is the model trained on data[1] with seed hbr.design.model_seed(1, 1)
    model = recipe.fit(*data[1], seed=hbr.design.model_seed(1, 1), n_classes=3)
    pred = train.predict(train.logits_of(model, test[0])).numpy()
    rec = metrics.per_class_recall(test[1], pred, 3)
    row = out[(out.i == 1) & (out.j == 1) & (out.score == "recall")].iloc[0]
    np.testing.assert_allclose(row[["c0", "c1", "c2"]].to_numpy(float), rec)
    assert row.delta_m == pytest.approx(rec.max() - rec.min())
    assert row.delta_he == pytest.approx(rec[0] - rec[2]) and row.avg == pytest.approx(rec.mean())
    # pairs line up with ttest_table
    noise = np.random.default_rng(0).normal(0.01, 0.01, len(out))
    assert len(hbr.experiment.ttest_table(out, out.assign(delta_m=out.delta_m - noise))) == 12


def test_train_ensemble_averages_aum():
    recipe = hbr.experiment.Recipe(widths=(8,), epochs=2, batch_size=32, device="cpu")
    X, y = _images(60)
    ens = hbr.experiment.train_ensemble(recipe, X, y, seeds=[0, 1], n_classes=3)
    assert len(ens.models) == 2 and ens.aum_per_model.shape == (2, 60)
    assert np.isfinite(ens.aum).all() and not np.allclose(ens.aum_per_model[0], ens.aum_per_model[1])
    np.testing.assert_allclose(ens.aum, ens.aum_per_model.mean(0))
    # the ensemble is trained as one batched model; each member equals its own separate fit
    for s, aum_s in zip((0, 1), ens.aum_per_model):
        tracker = hbr.AUMTracker(60)
        recipe.fit(X, y, s, 3, on_logits=tracker)
        np.testing.assert_allclose(aum_s, tracker.values, atol=1e-5)


def test_pair_logits_equal_the_pairs_fitted_one_by_one():
    recipe = hbr.experiment.Recipe(widths=(8,), epochs=2, batch_size=16, device="cpu", milestones=(1,))
    sets = [_images(50, seed=1), _images(41, seed=2)]
    test_X = _images(20, seed=3)[0]
    got = hbr.experiment.pair_logits(recipe, sets, test_X, n_models=2, n_classes=3)
    for (i, j), logits in got.items():
        ref = recipe.fit(*sets[i], hbr.design.model_seed(i, j), 3)
        torch.testing.assert_close(logits, train.logits_of(ref, test_X), atol=1e-5, rtol=1e-4)


# --- chapter plumbing ----------------------------------------------------------------------------------
def test_per_class_subset_is_balanced_and_seeded():
    y = np.repeat(np.arange(3), [10, 12, 7])
    idx = hbr.experiment.per_class_subset(y, 5, seed=1)
    assert np.bincount(y[idx]).tolist() == [5, 5, 5] and len(set(idx)) == 15
    assert np.array_equal(idx, hbr.experiment.per_class_subset(y, 5, seed=1))
    assert not np.array_equal(idx, hbr.experiment.per_class_subset(y, 5, seed=2))
    assert len(hbr.experiment.per_class_subset(y, 0, 0)) == len(y)
    with pytest.raises(ValueError, match="class 2 has 7 samples"):
        hbr.experiment.per_class_subset(y, 8, 0)


def test_holdout_shortfall_and_plan_table():
    # AUM [1, 2, 4], 100 per class, pruning 50%: kept 50 each, b = ceil(150 * [4/7, 2/7, 1/7]) = [86, 43, 22]
    assert hbr.experiment.holdout_shortfall([1.0, 2.0, 4.0], 100, 0.5) == (86 - 50) - 50
    kept = 20
    b = hbr.resampling_counts([1.0, 2.0, 4.0], np.full(3, kept))
    assert hbr.experiment.holdout_shortfall([1.0, 2.0, 4.0], 100, 0.8) == (b - kept).max() - 80
    plan = hbr.experiment.plan_table([10, 10, 10], [14, 9, 7])
    assert plan[["removed", "added"]].values.tolist() == [[0, 4], [1, 0], [3, 0]]


def _values(**kw):
    from fairbook.book import chapters

    return {**chapters.get("hbr").values("default"), **kw}


def test_check_parameters_rejects_impossible_combinations(tmp_path):
    from fairbook.errors import ParameterError

    hbr.chapter.check_parameters(_values())
    for kw, msg in [({"model": "resnet18"}, "'model'.*cifar10"),
                    ({"milestones": [50]}, "'milestones'.*within the 16 epochs"),
                    ({"cs1_strategies": ["random", "random"]}, "'cs1_strategies'.*repeat"),
                    ({"cs2_strategies": ["holdout"]}, "'cs2_strategies'.*no holdout"),
                    ({"cs1_strategies": ["hEDM"]}, "'cs1_strategies'.*case study 2"),
                    ({"pool": str(tmp_path / "missing.npz")}, "'pool'.*EDM")]:
        with pytest.raises(ParameterError, match=msg):
            hbr.chapter.check_parameters(_values(**kw))
    # a pool that is never used needs no file
    hbr.chapter.check_parameters(_values(pool=str(tmp_path / "missing.npz"), cs2_strategies=["random"]))


def test_edm_pool_is_found_under_the_data_root_and_fingerprinted(tmp_path, monkeypatch):
    from fairbook.book import runner

    (tmp_path / "edm").mkdir()
    np.savez(tmp_path / "edm" / "c10.npz", image=np.zeros((2, 4, 4, 3), np.uint8), label=np.arange(2))
    assert hbr.experiment.resolve_pool("edm/c10.npz", str(tmp_path)) == (tmp_path / "edm" / "c10.npz").resolve()
    assert hbr.experiment.resolve_pool("edm/c10.npz") is None
    monkeypatch.setenv("FAIRBOOK_DATA", str(tmp_path))
    assert hbr.experiment.resolve_pool("edm/c10.npz") is not None
    v = _values(pool="edm/c10.npz")
    hbr.chapter.check_parameters(v)
    fp = runner.data_fingerprint("hbr", v)
    assert set(fp) == {"fashion-mnist", "pool"}
    np.savez(tmp_path / "edm" / "c10.npz", image=np.ones((2, 4, 4, 3), np.uint8), label=np.arange(2))
    assert runner.data_fingerprint("hbr", v)["pool"] != fp["pool"]
    assert "pool" not in runner.data_fingerprint("hbr", _values())


def test_case_studies_pair_base_and_resampled_models():
    X, y = _images(240, n_classes=3, seed=3)
    test = _images(90, n_classes=3, seed=4)
    recipe = hbr.experiment.Recipe(widths=(8,), epochs=2, batch_size=32)
    aum = np.random.default_rng(0).normal(1.0, 0.3, len(y))
    class_aum = np.array([1.0, 1.5, 2.5])
    cs1 = hbr.experiment.case_study_1(recipe, X, y, aum, class_aum, test, [0.5], ["random", "holdout"], 2, 1, 3, 1)
    # base models trained once per rate and shared by both strategies; pairs (i, j) = (0,0), (1,0)
    assert sorted(cs1.scores.strategy.unique()) == ["holdout", "none", "random"]
    assert (cs1.scores.groupby("strategy").size() == 4).all()  # 2 pairs x (recall, precision)
    assert set(cs1.tests.metric) == set(hbr.experiment.BIAS_METRICS) | {"avg"} and (cs1.tests.n == 2).all()
    plan = cs1.plan[cs1.plan.strategy == "holdout"]
    assert plan.a.tolist() == [40, 40, 40] and plan.b.tolist() == hbr.resampling_counts(class_aum, 40).tolist()
    pool = hbr.Pool(*_images(300, 3, seed=5), confidence=np.linspace(0, 1, 300),
                    real_confidence=np.array([0.5, 0.5, 0.5]))
    cs2 = hbr.experiment.case_study_2(recipe, X, y, aum, class_aum, test, [1.0], ["smote", "hEDM"], 2, 1, 3, 1, pool)
    assert sorted(cs2.tests.strategy.unique()) == ["hEDM", "smote"]
    base = cs2.scores[cs2.scores.strategy == "none"]
    assert base.model_seed.tolist() == [hbr.design.model_seed(i, 0) for i in (0, 0, 1, 1)]


def test_generated_pool_trains_once_and_samples_the_asked_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_CACHE", str(tmp_path / "cache"))
    X, y = _images(24, n_classes=3)
    X = (X - X.min()) / (X.max() - X.min())
    logs = []
    imgs, labels = hbr.experiment.generated_pool("toy", X, y, 3, [2, 0], 3, 0, ddpm_steps=2, sample_steps=2,
                                                 guidance=1.0, log=logs.append)
    assert imgs.shape == (6, 4, 4, 1) and imgs.dtype == np.uint8 and labels.tolist() == [2, 2, 2, 0, 0, 0]
    again = hbr.experiment.generated_pool("toy", X, y, 3, [2, 0], 3, 0, ddpm_steps=2, sample_steps=2, guidance=1.0,
                                          log=logs.append)
    assert np.array_equal(imgs, again[0]) and sum("cache hit" in m for m in logs) == 2


def test_metric_changes_cover_every_alpha():
    """Base models are shared by every α (same easy/hard split); each α still gets its own changes."""
    X, y = _images(240, n_classes=3, seed=3)
    test = _images(90, n_classes=3, seed=4)
    recipe = hbr.experiment.Recipe(widths=(8,), epochs=1, batch_size=32)
    aum = np.random.default_rng(0).normal(1.0, 0.3, len(y))
    cs2 = hbr.experiment.case_study_2(recipe, X, y, aum, np.array([1.0, 1.5, 2.5]), test, [1.0, 0.5], ["random"], 2, 1,
                                      3, 1)
    ch = hbr.analysis.metric_changes(cs2)
    assert sorted(ch.parameter.unique()) == [0.5, 1.0]
    sc = cs2.scores
    for alpha in (0.5, 1.0):
        row = ch[(ch.parameter == alpha) & (ch.score == "recall") & (ch.metric == "delta_m")].iloc[0]
        res = sc[(sc.strategy == "random") & (sc.parameter == alpha) & (sc.score == "recall")].delta_m.mean()
        base = sc[(sc.strategy == "none") & (sc.parameter == alpha) & (sc.score == "recall")].delta_m.mean()
        assert row.change == pytest.approx(res - base)
    # the base models were trained once: their rows are identical under both α
    b = sc[sc.strategy == "none"]
    assert np.array_equal(b[b.parameter == 0.5].delta_m.values, b[b.parameter == 1.0].delta_m.values)
