"""fairbook.hbr controls and checks: the AUM hook's logits, the holdout shortfall, case study 1's pairing,
the reweight / logit-adjust controls, the authors' rounding (against a transcription of their code),
strategy parsing, hcEDM, the mechanism tables (appendix E), AUM stability, and the claims helpers
relative_reduction / alpha_trend. Every expected value is computed by hand or independently."""
import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from fairbook import claims as C
from fairbook import hbr, train


# --- helpers -------------------------------------------------------------------------------------------
def authors_counts(class_aum, a, alpha):
    """Transcription of ``compute_sample_allocation_after_resampling`` (PawPuk/ClassHardnessImportance,
    src/utils/evaluation.py @ 0c77162)."""
    h = np.asarray(class_aum, dtype=float)
    N = int(np.sum(a))
    if h.min() < 0:
        h = h + (-h.min() + 0.0001)
    inv = [1 / float(v) for v in h]
    s = sum(inv)
    ratios = [v / s for v in inv]
    n = [int(round(r * N)) for r in ratios]
    if alpha > 1:
        avg = int(np.mean(n))
        for c in range(len(n)):
            d = abs(n[c] - avg)
            if n[c] > avg:
                n[c] = avg + int(alpha * d)
            else:
                n[c] = avg - int(alpha * d)
    return n


def _np_margins(z, y):
    """Margin z_y − max_{c≠y} z_c computed with numpy (independent of hbr.margins)."""
    z = np.asarray(z, dtype=float)
    y = np.asarray(y)
    true = z[np.arange(len(y)), y]
    other = np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z).max(1)
    return true - other


def _ids(X):
    """The sample identities encoded in feature 0."""
    return np.asarray(X)[:, 0].astype(np.int64)


def _toy():
    """18 samples with their row index as feature, classes interleaved 0,1,2,...; hand-chosen AUMs."""
    y = np.tile([0, 1, 2], 6)
    X = np.arange(18, dtype=float).reshape(-1, 1)
    aum = np.linspace(0.0, 1.0, 18)  # increases with the row: the later rows of a class are the easiest
    aum[[0, 3, 6, 9, 12, 15]] = [0.5, -1.0, 2.0, 0.1, 3.0, -0.2]  # class 0: lowest three rows 3, 15, 9
    return X, y, aum


def _claim(key="x"):
    return C.Claim(key=key, claim="c", source="s", paper="p", quantity="q", unit="u")


@pytest.fixture
def restore_torch_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


# --- 1. the AUM hook sees train-mode logits of the augmented batch -----------------------------------------
def test_aum_hook_sees_train_mode_augmented_logits(restore_torch_rng):
    """train.fit's on_logits receives, for every batch, the logits of a train-mode forward (BatchNorm batch
    statistics, Dropout active) of the *augmented* batch by the weights before that step's update; an
    eval-mode forward of the plain inputs (or either half of that change alone) gives other margins.
    AUMTracker's values are the mean over epochs of each sample's margin on exactly those logits."""
    rng = np.random.default_rng(0)
    n, epochs = 24, 3
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.arange(n) % 3
    model = train.seeded(lambda: torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
        torch.nn.Linear(16, 3)), 0)

    def transform(x):  # deterministic and recognisable: features reversed, scaled and shifted
        return x.flip(-1) * 2.0 + 1.0

    records, seen = [], []

    def aug(xb, gen):
        out = transform(xb)
        # the weights of this forward (the step comes after it) and the RNG state Dropout will draw from
        records.append({"x": xb.clone(), "x_aug": out.clone(), "model": copy.deepcopy(model),
                        "rng": torch.get_rng_state()})
        return out

    tracker = hbr.AUMTracker(n)

    def hook(logits, yb, ids, epoch):
        seen.append((logits.clone(), yb.clone(), torch.as_tensor(ids).clone(), epoch))
        tracker(logits, yb, ids, epoch)

    train.fit(model, X, y, epochs=epochs, batch_size=8, select=None, on_logits=hook, augment=aug, seed=0,
              device="cpu")
    assert len(records) == len(seen) == epochs * 3
    Xt = torch.as_tensor(X)
    for k, (rec, (z, yb, ids, epoch)) in enumerate(zip(records, seen)):
        assert epoch == k // 3 + 1
        np.testing.assert_array_equal(rec["x"].numpy(), X[ids.numpy()])  # the batch of those ids
        np.testing.assert_array_equal(yb.numpy(), y[ids.numpy()])
        np.testing.assert_allclose(rec["x_aug"].numpy(), X[ids.numpy()][:, ::-1] * 2 + 1)
        m = rec["model"]
        with torch.no_grad():
            torch.set_rng_state(rec["rng"])
            ref = m.train()(rec["x_aug"])  # train mode, augmented, same Dropout mask
            torch.set_rng_state(rec["rng"])
            train_plain = m.train()(Xt[ids])  # train mode, not augmented
            eval_aug = m.eval()(rec["x_aug"])  # eval mode, augmented
            eval_plain = m.eval()(Xt[ids])  # what an eval-mode hook would see
        np.testing.assert_allclose(z.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
        mz = _np_margins(z, yb)
        for other in (train_plain, eval_aug, eval_plain):
            assert np.abs(mz - _np_margins(other, yb)).max() > 0.05
        if k + 1 < len(records):  # the logits are those before this step's update
            torch.set_rng_state(rec["rng"])
            with torch.no_grad():
                post = records[k + 1]["model"].train()(rec["x_aug"])
            assert np.abs(post.numpy() - z.numpy()).max() > 1e-4

    # AUM = mean over epochs of the margins of the recorded logits (every sample once per epoch)
    per_sample = [[] for _ in range(n)]
    for z, yb, ids, _ in seen:
        np.testing.assert_allclose(hbr.margins(z, yb).numpy(), _np_margins(z, yb), rtol=1e-6, atol=1e-6)
        for i, mgn in zip(ids.tolist(), _np_margins(z, yb)):
            per_sample[i].append(mgn)
    assert all(len(v) == epochs for v in per_sample)
    np.testing.assert_allclose(tracker.values, [np.mean(v) for v in per_sample], rtol=1e-6, atol=1e-6)


# --- 2. holdout_shortfall predicts when the holdout resampling fails ---------------------------------------
def test_holdout_shortfall_predicts_holdout_failure():
    """holdout_shortfall(class_aum, n, rate, f, reserve) <= 0 exactly when resample(..., "holdout") succeeds
    on a D of n per class pruned at ``rate`` with the pruned-away part plus ``reserve`` real samples per class
    as its pool; checked on random settings at the boundary (shortfall 1, 0, -1) and away from it."""
    rng = np.random.default_rng(7)
    ok = failed = boundary = 0
    for trial in range(40):
        n_classes = int(rng.integers(2, 6))
        class_aum = rng.uniform(0.4, 4.0, n_classes)
        n = int(rng.integers(8, 40))
        rate = float(rng.uniform(0.05, 0.75))
        f = ("identity", "log")[trial % 2]
        rounding = ("paper", "authors")[(trial // 2) % 2]
        y = np.repeat(np.arange(n_classes), n)
        X = np.arange(len(y), dtype=float).reshape(-1, 1)
        aum = rng.normal(size=len(y))
        kept, held = hbr.experiment.prune_per_class(y, rate, seed=trial, n_classes=n_classes)
        a = np.bincount(y[kept], minlength=n_classes)
        try:
            counts = hbr.resampling_counts(class_aum, a, 1.0, f, rounding)
        except ValueError:  # no allocation at all: the shortfall cannot be computed either
            with pytest.raises(ValueError):
                hbr.experiment.holdout_shortfall(class_aum, n, rate, f, 0, rounding)
            continue
        s0 = hbr.experiment.holdout_shortfall(class_aum, n, rate, f, 0, rounding)
        # the shortfall as defined: the largest need minus the pool of one class
        assert s0 == int((counts - a).max() - (n - a[0]))
        for reserve in sorted({0, max(0, s0 - 1), max(0, s0), s0 + 1 if s0 >= 0 else 0, int(rng.integers(0, 8))}):
            short = hbr.experiment.holdout_shortfall(class_aum, n, rate, f, reserve, rounding)
            assert short == s0 - reserve
            r_X = (10_000 + np.arange(n_classes * reserve, dtype=float)).reshape(-1, 1)
            pool = hbr.Pool(np.concatenate([X[held], r_X]),
                            np.concatenate([y[held], np.repeat(np.arange(n_classes), reserve)]))
            boundary += short == 0
            if short > 0:
                failed += 1
                with pytest.raises(ValueError, match="extra samples but the holdout pool has"):
                    hbr.resample(X[kept], y[kept], aum[kept], counts, "holdout", seed=trial, pool=pool,
                                 n_classes=n_classes)
            else:
                ok += 1
                Xr, yr, _ = hbr.resample(X[kept], y[kept], aum[kept], counts, "holdout", seed=trial, pool=pool,
                                         n_classes=n_classes)
                assert np.bincount(yr, minlength=n_classes).tolist() == counts.tolist()
    assert ok >= 20 and failed >= 20 and boundary >= 10


# --- 3. case study 1: base and resampled models share the pruned subset -----------------------------------
class FakeRecipe:
    """Records every fit (data, seed, class weights) and returns an untrained nn.Linear seeded by ``seed``."""

    def __init__(self):
        self.calls = []

    def fit(self, X, y, seed, n_classes, on_logits=None, class_weight=None):
        torch.manual_seed(seed)
        model = torch.nn.Linear(X.shape[1], n_classes)
        self.calls.append({"X": np.array(X, copy=True), "y": np.array(y, copy=True), "seed": seed,
                           "class_weight": None if class_weight is None else np.asarray(class_weight, float),
                           "on_logits": on_logits, "model": model})
        return model

    def fit_many(self, datasets, seeds, n_classes, on_logits=None, class_weight=None):
        hooks = on_logits or [None] * len(seeds)
        return [self.fit(X, y, s, n_classes, on_logits=h, class_weight=class_weight)
                for (X, y), s, h in zip(datasets, seeds, hooks)]


def test_case_study_1_pairs_every_variant_on_the_pruned_subset(restore_torch_rng):
    """case_study_1 with a recording recipe: for each dataset i the base models train on X[kept_i]; every
    resampled set is kept_i minus its class's easiest (highest-AUM) samples plus holdout (pruned-away or
    reserve) samples or duplicates; under-only only removes, over-only-holdout only adds; reweight trains on
    exactly X[kept_i] with class_weight = b'/a; logit-adjust trains nothing and scores the base models'
    logits shifted by log(b'/a)."""
    n_classes, n_per = 3, 20
    y = np.repeat(np.arange(n_classes), n_per)
    X = np.stack([np.arange(len(y)), np.zeros(len(y))], 1).astype(np.float32)  # feature 0: identity
    aum = np.random.default_rng(1).permutation(len(y)).astype(float) / len(y)  # distinct AUMs
    class_aum = np.array([1.0, 1.5, 2.5])
    n_res = 4
    reserve = (np.stack([10_000 + np.arange(n_classes * n_res), np.zeros(n_classes * n_res)], 1).astype(np.float32),
               np.repeat(np.arange(n_classes), n_res))
    rng = np.random.default_rng(2)
    test = (rng.normal(size=(60, 2)).astype(np.float32), np.arange(60) % n_classes)
    rates = [0.25, 0.5]
    strategies = ["random", "holdout", "under-only", "over-only-holdout", "reweight", "logit-adjust"]
    n_d, n_m = 2, 2
    recipe, ticks = FakeRecipe(), []
    study = hbr.experiment.case_study_1(recipe, X, y, aum, class_aum, test, rates, strategies, n_d, n_m, n_classes, 1,
                                        reserve=reserve, progress=lambda: ticks.append(1))
    trained = [s for s in strategies if s != "logit-adjust"]
    # logit-adjust trains no model: base models once per rate plus one set per other strategy
    assert len(recipe.calls) == len(rates) * n_d * n_m * (1 + len(trained)) == len(ticks)
    assert all(c["on_logits"] is None for c in recipe.calls)
    reserve_ids = set(_ids(reserve[0]).tolist())
    calls = iter(recipe.calls)
    for rate in rates:
        parts = [hbr.experiment.prune_per_class(y, rate, hbr.design.prune_seed(i), n_classes) for i in range(n_d)]
        a = np.bincount(y[parts[0][0]], minlength=n_classes)
        counts = hbr.resampling_counts(class_aum, a, 1.0)
        # hand: kept 15 (rate .25) / 10 (rate .5) per class; 45 · [.4839, .3226, .1935] -> [22, 15, 9]
        assert counts.tolist() == ([22, 15, 9] if rate == 0.25 else [15, 10, 6])
        base_models = {}
        for group in ["none"] + trained:
            for i in range(n_d):
                kept, held = parts[i]
                removed = set()
                for c in range(n_classes):  # the a_c − b'_c easiest (highest AUM) samples of class c
                    idx = kept[y[kept] == c]
                    removed |= set(idx[np.argsort(-aum[idx])][:max(0, a[c] - counts[c])].tolist())
                for j in range(n_m):
                    call = next(calls)
                    assert call["seed"] == hbr.design.model_seed(i, j)
                    ids = _ids(call["X"])
                    real = ids[ids < len(y)]
                    np.testing.assert_array_equal(call["y"][ids < len(y)], y[real])
                    extra_ids = ids[np.isin(ids, list(reserve_ids))]
                    np.testing.assert_array_equal(call["y"][np.isin(ids, list(reserve_ids))],
                                                  reserve[1][extra_ids - 10_000])
                    per_class = np.bincount(call["y"], minlength=n_classes)
                    if group in ("none", "reweight"):
                        np.testing.assert_array_equal(call["X"], X[kept])
                        np.testing.assert_array_equal(call["y"], y[kept])
                    if group == "none":
                        assert call["class_weight"] is None
                        base_models[i, j] = call["model"]
                    elif group == "reweight":
                        np.testing.assert_allclose(call["class_weight"], counts / a)
                    elif group == "under-only":
                        assert sorted(ids.tolist()) == sorted(set(kept.tolist()) - removed)
                        assert per_class.tolist() == np.minimum(a, counts).tolist()
                    elif group == "over-only-holdout":
                        assert set(kept.tolist()) <= set(ids.tolist()) and len(set(ids.tolist())) == len(ids)
                        new = set(ids.tolist()) - set(kept.tolist())
                        assert new <= set(held.tolist()) | reserve_ids
                        assert per_class.tolist() == np.maximum(a, counts).tolist()
                    elif group == "holdout":
                        assert len(set(ids.tolist())) == len(ids)  # drawn without replacement
                        assert set(ids.tolist()) & set(kept.tolist()) == set(kept.tolist()) - removed
                        new = set(ids.tolist()) - set(kept.tolist())
                        assert new <= set(held.tolist()) | reserve_ids
                        assert per_class.tolist() == counts.tolist()
                        if rate == 0.25:  # class 0 needs 7 but only 5 were pruned away: the reserve is used
                            assert len(new & reserve_ids) >= 2
                    elif group == "random":
                        assert set(ids.tolist()) == set(kept.tolist()) - removed
                        assert np.isin(ids, kept).all() and (y[ids] == call["y"]).all()
                        assert per_class.tolist() == counts.tolist()
        # logit-adjust: the base models' test logits shifted by log(b'/a), no new model
        cm = study.confusion
        offset = np.log(counts / a)
        changed = False
        for (i, j), m in base_models.items():
            with torch.no_grad():
                z = m(torch.as_tensor(test[0])).numpy()
            for strategy, shift in (("none", 0.0), ("logit-adjust", offset)):
                pred = (z + shift).argmax(1)
                ref = np.bincount(test[1] * n_classes + pred, minlength=n_classes ** 2)
                row = cm[(cm.parameter == rate) & (cm.strategy == strategy) & (cm.i == i) & (cm.j == j)]
                assert len(row) == 1
                got = row[[f"n_{t}_{q}" for t in range(n_classes) for q in range(n_classes)]].to_numpy()[0]
                np.testing.assert_array_equal(got, ref)
            changed |= not np.array_equal(z.argmax(1), (z + offset).argmax(1))
        assert changed  # the offset moved some prediction: the comparison above has teeth
    assert next(calls, None) is None
    assert set(study.scores.strategy) == {"none", *strategies}


# --- 4. the reweight and logit-adjust controls by hand ---------------------------------------------------
def test_class_weights_and_logit_offsets_by_hand():
    """class_weights = b'/a and logit_offsets = log(b'/a) on hand values; bad inputs raise."""
    np.testing.assert_allclose(hbr.logit_offsets([100, 100], [150, 50]), [math.log(1.5), math.log(0.5)])
    np.testing.assert_allclose(hbr.class_weights([100, 100, 50], [150, 50, 50]), [1.5, 0.5, 1.0])
    np.testing.assert_allclose(hbr.class_weights([40, 10], [10, 40]), [0.25, 4.0])
    for a, b in (([10, 10], [10, 0]), ([10, 0], [10, 10]), ([10, 10], [10, 10, 10])):
        with pytest.raises(ValueError, match="positive counts"):
            hbr.class_weights(a, b)


def test_score_logits_offset_flips_a_prediction():
    """score_logits adds the offset to the logits before the argmax: log(1.5), log(.5) turn the prediction
    of the class-0 sample with logits (0, 0.5) from 1 into 0, and leave (0, 2) at 1."""
    z = {(0, 0): torch.tensor([[0.0, 0.5], [0.0, 2.0]])}
    y = np.array([0, 1])
    off = hbr.logit_offsets([100, 100], [150, 50])  # (0.405, −0.693): (0.405, −0.193) and (0.405, 1.307)
    plain, cm_plain = hbr.experiment.score_logits(z, y, 2, [1], [0], 1, "base")
    shifted, cm_shift = hbr.experiment.score_logits(z, y, 2, [1], [0], 1, "logit-adjust", off)
    rec_p = plain[plain.score == "recall"].iloc[0]
    rec_s = shifted[shifted.score == "recall"].iloc[0]
    assert (rec_p.c0, rec_p.c1) == (0.0, 1.0) and (rec_s.c0, rec_s.c1) == (1.0, 1.0)
    assert rec_p.delta_he == pytest.approx(1.0 - 0.0) and rec_s.delta_he == pytest.approx(0.0)  # easy − hard
    cols = ["n_0_0", "n_0_1", "n_1_0", "n_1_1"]
    assert cm_plain[cols].to_numpy().tolist() == [[0, 1, 0, 1]]
    assert cm_shift[cols].to_numpy().tolist() == [[1, 0, 0, 1]]
    prec_s = shifted[shifted.score == "precision"].iloc[0]
    assert (prec_s.c0, prec_s.c1) == (1.0, 1.0)


def test_fit_class_weight_is_torch_weighted_cross_entropy():
    """train.fit with class_weight, one full batch, one SGD step: the loss is Σ w_y·nll / Σ w_y (torch's
    weighted cross-entropy) and the parameters equal a manual step on its gradient; without the weights
    the step differs; class_weight with BCE or a non-positive weight raises."""
    torch.manual_seed(0)
    X = torch.randn(12, 3)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    w = np.array([0.5, 2.0, 1.25])
    init = train.seeded(lambda: torch.nn.Linear(3, 3), 3)
    lr = 0.5
    opt = train.Optim("sgd", lr=lr, momentum=0.0)

    ref = copy.deepcopy(init)
    z = ref(X)
    nll = -torch.log_softmax(z, 1)[torch.arange(12), y]
    wy = torch.as_tensor(w, dtype=torch.float32)[y]
    loss = (wy * nll).sum() / wy.sum()
    assert loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(z, y, weight=torch.as_tensor(w, dtype=torch.float32)).item(), rel=1e-6)
    assert abs(loss.item() - nll.mean().item()) > 1e-3  # the weights matter here
    loss.backward()
    manual = {n: (p - lr * p.grad).detach() for n, p in ref.named_parameters()}

    res = train.fit(copy.deepcopy(init), X.numpy(), y.numpy(), epochs=1, batch_size=12, optim=opt, select=None,
                    class_weight=w, seed=0, device="cpu")
    for n, p in res.model.named_parameters():
        np.testing.assert_allclose(p.detach().numpy(), manual[n].numpy(), rtol=1e-5, atol=1e-6)
    assert res.history.train_loss.iloc[0] == pytest.approx(loss.item(), rel=1e-5)

    plain = train.fit(copy.deepcopy(init), X.numpy(), y.numpy(), epochs=1, batch_size=12, optim=opt, select=None,
                      seed=0, device="cpu")
    assert np.abs(plain.model.weight.detach().numpy() - manual["weight"].numpy()).max() > 1e-3
    assert plain.history.train_loss.iloc[0] == pytest.approx(nll.mean().item(), rel=1e-5)

    with pytest.raises(ValueError, match="class_weight needs loss='ce'"):
        train.fit(torch.nn.Linear(3, 1), X.numpy(), (y > 0).long().numpy(), epochs=1, loss="bce",
                  class_weight=[1.0, 2.0], select=None, device="cpu")
    with pytest.raises(ValueError, match="positive weights"):
        train.fit(copy.deepcopy(init), X.numpy(), y.numpy(), epochs=1, class_weight=[1.0, 0.0, 1.0], select=None,
                  device="cpu")


# --- 5. the authors' rounding ------------------------------------------------------------------------------
def test_authors_rounding_hand_example():
    """class_aum (.365, 1.2, 2, 7.456), 500 per class: the authors' code gives (1302, 396, 238, 64) at α = 1
    and, as it only stretches for α > 1, the same at α = .3; at α = 2 it would give (2104, 292, −24, −372),
    which resampling_counts refuses. The paper's ceil gives (1303, 397, 238, 64)."""
    aum, a = [0.365, 1.2, 2.0, 7.456], [500] * 4
    assert authors_counts(aum, a, 1) == [1302, 396, 238, 64]
    assert authors_counts(aum, a, 2) == [2104, 292, -24, -372]
    assert hbr.resampling_counts(aum, a, 1, rounding="authors").tolist() == [1302, 396, 238, 64]
    assert hbr.resampling_counts(aum, a, 0.3, rounding="authors").tolist() == [1302, 396, 238, 64]
    with pytest.raises(ValueError, match=r"\[2104, 292, -24, -372\]"):
        hbr.resampling_counts(aum, a, 2, rounding="authors")
    assert hbr.resampling_counts(aum, a, 1, rounding="paper").tolist() == [1303, 397, 238, 64]
    with pytest.raises(ValueError, match="rounding must be one of"):
        hbr.resampling_counts(aum, a, 1, rounding="floor")
    # exact halves: Python's round is half to even, as in their code; the paper's ceil rounds up
    # AUM (2, 2), Σa = 5: shares 2.5, 2.5; AUM (1, 3), Σa = 6: shares 4.5, 1.5
    for aum, a, auth, paper in (([2.0, 2.0], [2, 3], [2, 2], [3, 3]), ([1.0, 3.0], [3, 3], [4, 2], [5, 2])):
        assert authors_counts(aum, a, 1) == auth
        assert hbr.resampling_counts(aum, a, 1, rounding="authors").tolist() == auth
        assert hbr.resampling_counts(aum, a, 1, rounding="paper").tolist() == paper


def test_authors_rounding_matches_transcription():
    """resampling_counts(..., rounding="authors") equals the transcription of the authors' code on random
    class AUMs (some negative), sizes and α, and raises exactly where their code yields a count < 1."""
    rng = np.random.default_rng(11)
    alphas = [0.0, 0.3, 0.5, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0]
    equal = raised = 0
    for trial in range(400):
        c = int(rng.integers(2, 11))
        aum = rng.uniform(0.2, 5.0, c) if trial % 2 else rng.normal(1.0, 1.0, c)
        a = np.full(c, int(rng.integers(5, 600))) if trial % 3 else rng.integers(5, 600, c)
        alpha = alphas[trial % len(alphas)]
        ref = authors_counts(aum, a, alpha)
        if min(ref) < 1:
            raised += 1
            with pytest.raises(ValueError, match="without samples"):
                hbr.resampling_counts(aum, a, alpha, rounding="authors")
        else:
            equal += 1
            assert hbr.resampling_counts(aum, a, alpha, rounding="authors").tolist() == ref, (aum, a, alpha)
    assert equal >= 150 and raised >= 50


def test_paper_and_authors_rounding_differ_by_at_most_one_at_alpha_1():
    """At α = 1 the paper's b' = ceil(share · Σa) and the authors' round(share · Σa) of the same share:
    0 <= paper − authors <= 1 per class (ceil − round of one real number), and both differ somewhere."""
    rng = np.random.default_rng(12)
    diff_seen = 0
    for trial in range(300):
        c = int(rng.integers(2, 11))
        aum = rng.uniform(0.2, 5.0, c) if trial % 2 else rng.normal(1.0, 1.0, c)
        a = np.full(c, int(rng.integers(20, 600))) if trial % 3 else rng.integers(20, 600, c)
        try:
            auth = hbr.resampling_counts(aum, a, 1.0, rounding="authors")
        except ValueError:  # the authors' round can give a tiny class 0 samples
            assert min(authors_counts(aum, a, 1.0)) < 1
            continue
        paper = hbr.resampling_counts(aum, a, 1.0, rounding="paper")
        d = paper - auth
        assert ((d >= 0) & (d <= 1)).all(), (aum, a, paper, auth)
        diff_seen += int(d.sum())
    assert diff_seen > 100


# --- 6. strategies, hcEDM, imbalance, reserve, pool checks, mechanism tables ---------------------------------
def test_parse_strategy_every_name():
    """Every oversampler is ("both", name), over-only-<oversampler> is ("over", name), the three controls have
    their modes; uses_pool is true exactly for the generated pools; malformed names raise."""
    for s in hbr.STRATEGIES:
        assert hbr.parse_strategy(s) == ("both", s)
        assert hbr.parse_strategy(f"over-only-{s}") == ("over", s)
        assert hbr.uses_pool(s) == hbr.uses_pool(f"over-only-{s}") == (s in ("rEDM", "aEDM", "hEDM", "hcEDM"))
    assert hbr.parse_strategy("under-only") == ("under", None)
    assert hbr.parse_strategy("reweight") == ("reweight", None)
    assert hbr.parse_strategy("logit-adjust") == ("logit", None)
    assert not any(hbr.uses_pool(s) for s in hbr.CONTROLS)
    for bad in ("over-only-", "over-only-reweight", "over-only-under-only", "bogus", "Random", "under-only-random"):
        with pytest.raises(ValueError, match="strategy must be one of"):
            hbr.parse_strategy(bad)
    with pytest.raises(ValueError, match="training-time control"):
        hbr.resample(*_toy(), [6, 6, 6], "reweight", seed=0)


def test_under_only_and_over_only_random_by_hand():
    """under-only removes the easiest samples of shrinking classes and adds none; over-only-random keeps every
    sample and duplicates samples of growing classes only."""
    X, y, aum = _toy()
    counts = [3, 4, 15]
    Xr, yr, tab = hbr.resample(X, y, aum, counts, "under-only", seed=0)
    rows = Xr[:, 0].astype(int)
    assert sorted(rows[yr == 0]) == [3, 9, 15]  # AUM −1, .1, −.2: the three hardest of class 0
    assert sorted(rows[yr == 1]) == [1, 4, 7, 10]  # rows 13 and 16 have the highest AUM of class 1
    assert sorted(rows[yr == 2]) == [2, 5, 8, 11, 14, 17]  # class 2 would grow: untouched
    assert tab[["class", "a", "b", "removed", "added"]].to_numpy().tolist() == [
        [0, 6, 3, 3, 0], [1, 6, 4, 2, 0], [2, 6, 6, 0, 0]]
    assert (tab.source == "under-only").all()

    Xr, yr, tab = hbr.resample(X, y, aum, counts, "over-only-random", seed=0)
    rows = Xr[:, 0].astype(int)
    assert np.bincount(yr).tolist() == [6, 6, 15]
    assert set(range(18)) <= set(rows.tolist())  # nothing removed
    assert sorted(rows[yr == 0]) == list(range(0, 18, 3)) and sorted(rows[yr == 1]) == list(range(1, 18, 3))
    assert (y[rows] == yr).all()  # the 9 extra samples are copies of class-2 samples
    assert tab[["b", "removed", "added"]].to_numpy().tolist() == [[6, 0, 0], [6, 0, 0], [15, 0, 9]]


def test_hcedm_candidates_are_the_least_confident_recognised():
    """hcEDM: the 2n least confident among the images the ensemble assigns to their class (hand case);
    without ``correct`` it raises; through resample it draws only recognised images."""
    conf = np.array([0.9, 0.1, 0.5, 0.2, 0.05, 0.7, 0.3])
    correct = np.array([True, False, True, True, False, True, True])
    assert hbr.pool_candidates("hcEDM", conf, 2, correct=correct).tolist() == [3, 6, 2, 5]
    assert hbr.pool_candidates("hEDM", conf, 2).tolist() == [4, 1, 3, 6]  # hEDM ignores recognition
    assert hbr.pool_candidates("hcEDM", conf, 3, correct=correct).tolist() == [3, 6, 2, 5, 0]  # all 5 there are
    with pytest.raises(ValueError, match="hcEDM needs"):
        hbr.pool_candidates("hcEDM", conf, 2)
    X, y, aum = _toy()
    pool = hbr.Pool(np.arange(1000, 1007, dtype=float).reshape(-1, 1), np.full(7, 2), conf, correct=correct)
    for seed in range(5):
        Xr, yr, _ = hbr.resample(X, y, aum, [6, 6, 8], "hcEDM", seed=seed, pool=pool)
        drawn = Xr[Xr[:, 0] >= 1000, 0].astype(int) - 1000
        assert len(set(drawn.tolist())) == 2 and set(drawn.tolist()) <= {3, 6, 2, 5}  # recognised, 2n least confident
    with pytest.raises(ValueError, match="hcEDM needs"):
        hbr.resample(X, y, aum, [6, 6, 8], "hcEDM", seed=0, pool=hbr.Pool(pool.X, pool.y, conf))


def test_induced_imbalance_by_hand():
    """a = (10, 10, 10), b' = (14, 9, 7): ratios 1.4 / .7; HBR removes 4 and adds 4, under-only removes 4,
    over-only adds 4, reweight and logit-adjust move nothing."""
    a, b = [10, 10, 10], [14, 9, 7]
    expect = {"random": (4, 4), "hEDM": (4, 4), "under-only": (4, 0), "over-only-random": (0, 4),
              "over-only-hcEDM": (0, 4), "reweight": (0, 0), "logit-adjust": (0, 0)}
    for s, (rem, add) in expect.items():
        out = hbr.induced_imbalance(a, b, s)
        assert out == {"max_ratio": pytest.approx(1.4), "min_ratio": pytest.approx(0.7), "removed": rem,
                       "added": add, "moved": rem + add}, s
    with pytest.raises(ValueError):
        hbr.induced_imbalance(a, b, "bogus")


def test_holdout_reserve_is_outside_d():
    """holdout_reserve: n per class, none of them in D, no repeats, seeded; too few left outside D raises."""
    y_full = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [10, 12, 8]))
    taken = np.concatenate([np.flatnonzero(y_full == c)[:k] for c, k in ((0, 5), (1, 5), (2, 6))])
    r = hbr.experiment.holdout_reserve(y_full, taken, 2, seed=0)
    assert len(r) == 6 and len(set(r.tolist())) == 6 and not set(r.tolist()) & set(taken.tolist())
    assert np.bincount(y_full[r]).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(r, hbr.experiment.holdout_reserve(y_full, taken, 2, seed=0))
    assert any(not np.array_equal(r, hbr.experiment.holdout_reserve(y_full, taken, 2, seed=s)) for s in range(1, 5))
    assert hbr.experiment.holdout_reserve(y_full, taken, 0, seed=0).size == 0
    with pytest.raises(ValueError, match="class 2 has 2 training samples outside D, fewer than the holdout "
                                         "reserve of 3"):
        hbr.experiment.holdout_reserve(y_full, taken, 3, seed=0)
    with pytest.raises(ValueError, match="class 3 has 0"):
        hbr.experiment.holdout_reserve(y_full, taken, 1, seed=0, n_classes=4)


def test_check_pool_names_strategy_and_alpha():
    """check_pool: hcEDM with 2 recognised class-2 images cannot add 3 at α = 2 — a ValueError naming hcEDM
    and α = 2; hEDM (5 candidates) and non-pool strategies pass."""
    X, y, aum = _toy()
    pool = hbr.Pool(np.arange(1000, 1005, dtype=float).reshape(-1, 1), np.full(5, 2),
                    np.array([0.1, 0.2, 0.3, 0.4, 0.5]), correct=np.array([True, False, False, True, False]))
    by_alpha = {1.0: np.array([6, 6, 6]), 2.0: np.array([3, 6, 9])}
    hbr.experiment.check_pool(pool, X, y, aum, by_alpha, ["random", "hEDM", "smote"], 3)
    with pytest.raises(ValueError, match=r"'hcEDM' cannot run at α = 2[:;].*class 2 needs 3 extra samples but "
                                         r"the hcEDM pool has 2"):
        hbr.experiment.check_pool(pool, X, y, aum, by_alpha, ["random", "hEDM", "hcEDM"], 3)
    with pytest.raises(ValueError, match=r"'over-only-hcEDM' cannot run at α = 2"):
        hbr.experiment.check_pool(pool, X, y, aum, by_alpha, ["over-only-hcEDM"], 3)
    ok = hbr.Pool(pool.X, pool.y, pool.confidence, correct=np.array([True, True, False, True, False]))
    hbr.experiment.check_pool(ok, X, y, aum, by_alpha, ["hcEDM"], 3)


def test_candidate_recognition_by_hand():
    """The share of candidates the ensemble assigns to their class, per oversampled class weighted by its
    extra samples: class 0 needs 2, class 1 needs 4 (class 2 shrinks and is ignored)."""
    py = np.array([0] * 6 + [1] * 10 + [2] * 3)
    conf = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
                     0.9, 0.8, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.95,
                     0.5, 0.5, 0.5])
    pred = np.array([0, 0, 1, 2, 0, 0,
                     2, 1, 1, 1, 0, 1, 1, 2, 1, 0,
                     0, 1, 1])
    pool = hbr.Pool(np.zeros((19, 1)), py, conf, real_confidence=np.array([0.33, 0.62, 0.5]))
    a, counts = [10, 10, 10], [12, 14, 4]
    # hEDM: class 0 -> 4 least confident {0,1,2,3}: 2/4; class 1 -> 8 least {8..14, 7}: 6/8
    assert hbr.analysis.candidate_recognition(pool, pred, a, counts, "hEDM") == pytest.approx((2 * 0.5 + 4 * 0.75) / 6)
    assert hbr.analysis.candidate_recognition(pool, pred, a, counts, "over-only-hEDM") == pytest.approx(4 / 6)
    # rEDM: every image: class 0 4/6, class 1 6/10
    assert hbr.analysis.candidate_recognition(pool, pred, a, counts, "rEDM") == pytest.approx((2 * 4 / 6 + 4 * 0.6) / 6)
    # aEDM: closest to .33 -> {2,3,1,4}: 2/4; closest to .62 -> all but positions 8, 9: 4/8
    assert hbr.analysis.candidate_recognition(pool, pred, a, counts, "aEDM") == pytest.approx(0.5)
    # hcEDM draws from the recognised images only
    rec = hbr.Pool(pool.X, py, conf, correct=pred == py)
    assert hbr.analysis.candidate_recognition(rec, pred, a, counts, "hcEDM") == pytest.approx(1.0)
    assert math.isnan(hbr.analysis.candidate_recognition(pool, pred, a, counts, "random"))
    assert math.isnan(hbr.analysis.candidate_recognition(pool, pred, a, counts, "holdout"))


def test_candidate_sets_per_class_by_hand():
    """The per-class rows behind candidate_recognition (same pool as above): hEDM's candidates, needs and
    mean confidences; a listed class that the allocation does not grow still gets one candidate set."""
    py = np.array([0] * 6 + [1] * 10 + [2] * 3)
    conf = np.linspace(0.05, 0.95, 19)
    pred = np.where(np.arange(19) % 2 == 0, py, (py + 1) % 3)
    pool = hbr.Pool(np.zeros((19, 1)), py, conf)
    t = hbr.analysis.candidate_sets(pool, pred, [10, 10, 10], [12, 14, 4], "hEDM")
    assert t["class"].tolist() == [0, 1] and t["need"].tolist() == [2, 4] and t["candidates"].tolist() == [4, 8]
    assert t["mean confidence"].tolist() == pytest.approx([conf[:4].mean(), conf[6:14].mean()])
    assert t["recognised as their class"].tolist() == pytest.approx([0.5, 0.5])
    listed = hbr.analysis.candidate_sets(pool, pred, [10, 10, 10], [12, 14, 4], "hEDM", classes=[0, 2])
    assert listed["need"].tolist() == [2, 1] and listed["candidates"].tolist() == [4, 2]
    assert hbr.analysis.candidate_sets(pool, pred, [10, 10, 10], [12, 14, 4], "random").empty


def test_control_table_joins_the_gap_the_average_and_the_imbalance():
    tests = pd.DataFrame({"score": ["recall", "precision", "recall"], "metric": ["delta_he"] * 3,
                          "strategy": ["holdout"] * 3, "parameter": [0.5, 0.5, 0.75], "mean": [0.1, 9.0, 0.2],
                          "ci_low": [0.0, 0.0, 0.1], "ci_high": [0.2, 0.0, 0.3], "p_holm": [0.5, 0.5, 0.01]})
    avg = pd.DataFrame({"score": ["recall", "recall"], "metric": ["avg"] * 2, "strategy": ["holdout"] * 2,
                        "parameter": [0.5, 0.75], "mean": [-0.01, -0.02]})
    imb = pd.DataFrame({"level": [0.5, 0.75], "strategy": ["holdout"] * 2, "parameter": [0.5, 0.75],
                        "max_ratio": [2.0, 2.5], "moved": [10, 20]})
    out = hbr.analysis.control_table(tests, avg, imb)
    assert out["Δhe reduction"].tolist() == [0.1, 0.2] and out["avg recall change"].tolist() == [-0.01, -0.02]
    assert out["moved"].tolist() == [10, 20] and "level" not in out


def _confusion_study():
    """A Study with hand confusion matrices: parameter .5, datasets i = 0, 1 (j = 0), strategies none,
    holdout (and random, to be ignored)."""
    base0 = [[8, 1, 1], [2, 6, 2], [0, 3, 7]]
    hold0 = [[7, 1, 2], [1, 7, 2], [0, 1, 9]]
    base1 = [[9, 1, 0], [1, 8, 1], [0, 2, 8]]
    hold1 = base1  # no change at all
    rand = [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
    rows = []
    for strategy, i, m in (("none", 0, base0), ("none", 1, base1), ("holdout", 0, hold0), ("holdout", 1, hold1),
                           ("random", 0, rand), ("random", 1, rand), ("none", 0, base0)):  # base listed twice
        rows.append({"parameter": 0.5, "i": i, "j": 0, "strategy": strategy, "level": 0.5,
                     **{f"n_{t}_{q}": m[t][q] for t in range(3) for q in range(3)}})
    empty = pd.DataFrame()
    return hbr.experiment.Study(empty, empty, empty, empty, pd.DataFrame(rows))


def test_prediction_changes_and_cluster_share_by_hand():
    """prediction_changes: TP, FP (column sums off the diagonal) and FN (row sums) of holdout − base per
    (parameter, i, j, class); cluster_share: the part of the absolute change off the diagonal inside the
    cluster {1, 2}, and the base errors' part there (the null)."""
    study = _confusion_study()
    pc = hbr.analysis.prediction_changes(study, "holdout", 3)
    assert set(pc.columns) >= {"parameter", "i", "j", "class", "change", "count"} and len(pc) == 2 * 3 * 3

    def get(i, what):
        part = pc[(pc.i == i) & (pc["count"] == what)].sort_values("class")
        return part["change"].tolist()

    # base0 TP (8, 6, 7), FP (2, 4, 3), FN (2, 4, 3); hold0 TP (7, 7, 9), FP (1, 2, 4), FN (3, 3, 1)
    assert get(0, "TP") == [-1, 1, 2] and get(0, "FP") == [-1, -2, 1] and get(0, "FN") == [1, -1, -2]
    assert get(1, "TP") == [0, 0, 0] and get(1, "FP") == [0, 0, 0] and get(1, "FN") == [0, 0, 0]

    cs = hbr.analysis.cluster_share(study, "holdout", [1, 2], 3).sort_values("i")
    # |Δ| off the diagonal: (0,2)=1, (1,0)=1, (2,1)=2 -> 4, inside {1,2}: 2 -> .5; base errors 9, inside 2+3
    assert cs["share"].iloc[0] == pytest.approx(0.5) and cs["null"].iloc[0] == pytest.approx(5 / 9)
    assert math.isnan(cs["share"].iloc[1]) and cs["null"].iloc[1] == pytest.approx(3 / 5)  # no change: 0/0
    bad = hbr.experiment.Study(*[pd.DataFrame()] * 4, study.confusion[~((study.confusion.strategy == "holdout")
                                                                        & (study.confusion.i == 1))])
    with pytest.raises(ValueError, match="pair one to one"):
        hbr.analysis.prediction_changes(bad, "holdout", 3)
    with pytest.raises(ValueError, match="pair one to one"):
        hbr.analysis.cluster_share(bad, "holdout", [1, 2], 3)


def test_claims_mechanism_rows(monkeypatch):
    """claims(cs1_predictions=, hard=, cs1_cluster=): "predicted more" is the per-model sum of the hard
    classes' TP + FP changes, nested over datasets; "cluster" is share − null over the defined datasets."""
    monkeypatch.setattr(C, "mde_t", lambda sd, n, alpha=C.ALPHA, power=C.POWER: math.inf)
    study = _confusion_study()
    pc = hbr.analysis.prediction_changes(study, "holdout", 3)
    cl = hbr.analysis.cluster_share(study, "holdout", [1, 2], 3)
    out = hbr.claims.judge(None, None, np.full((1, 3), 0.8), np.full(3, 50), n_null=50, cs1_predictions=pc,
                           hard=[1, 2], cs1_cluster=cl, cs2_candidates="CANDIDATES-NOTE").set_index("key")
    assert list(out.index) == ["hbr_bias_exists", "hbr_cs1_predicted_more", "hbr_cs1_cluster"]
    # dataset 0: TP (1 + 2) + FP (−2 + 1) = 2; dataset 1: 0 -> mean 1 over 2 datasets
    row = out.loc["hbr_cs1_predicted_more"]
    assert row["estimate"] == pytest.approx(1.0) and row["n"] == 2
    assert row["p"] == pytest.approx(sps.ttest_1samp([2.0, 0.0], 0).pvalue)
    row = out.loc["hbr_cs1_cluster"]
    assert row["estimate"] == pytest.approx(0.5 - 5 / 9) and row["n"] == 1
    assert "CANDIDATES-NOTE" not in out["note"].str.cat()  # cs2_candidates only annotates case study 2's claims


def test_aum_stability_identical_models_and_single_models():
    """aum_stability: with identical per-model AUMs every subset gives Spearman 1 and zero change; the rows
    per k are min(C(K, k), n_draws); with all subsets enumerated, the k = 1 rows are each model against
    the full ensemble (Spearman and allocation change recomputed with scipy and resampling_counts)."""
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(4), 10)
    v = rng.uniform(0.5, 3.0, len(y)) + np.repeat([0.0, 0.5, 1.0, 1.5], 10)
    K, n_draws = 5, 9  # C(5, k) = 5, 10, 10, 5: rows 5, 9, 9, 5
    out = hbr.analysis.aum_stability(np.tile(v, (K, 1)), y, 4, [10] * 4, n_draws=n_draws)
    assert out.groupby("k").size().to_dict() == {k: min(math.comb(K, k), n_draws) for k in range(1, K)}
    assert (out.spearman_class_aum == 1.0).all()
    assert (out.max_abs_change == 0).all() and (out.total_abs_change == 0).all()

    per = np.stack([v + rng.normal(0, 0.6, len(y)) for _ in range(3)])
    out = hbr.analysis.aum_stability(per, y, 4, [100] * 4, n_draws=10)
    assert out.groupby("k").size().to_dict() == {1: 3, 2: 3}
    full_h = hbr.class_hardness(per.mean(0), y, 4)
    full_b = hbr.resampling_counts(full_h, [100] * 4)
    k1 = out[out.k == 1].sort_values("draw")
    for m, (_, row) in enumerate(k1.iterrows()):  # all combinations, in order: draw m is model m
        h = pd.Series(per[m]).groupby(y).mean().to_numpy()
        assert row.spearman_class_aum == pytest.approx(sps.spearmanr(h, full_h).statistic)
        b = hbr.resampling_counts(h, [100] * 4)
        assert row.max_abs_change == np.abs(b - full_b).max() and row.total_abs_change == np.abs(b - full_b).sum()
    assert (out.total_abs_change > 0).any()


# --- 7. relative_reduction and alpha_trend -----------------------------------------------------------------
def _scores(reduction, levels, n_i=4, n_j=2, seed=0, noise=0.005):
    """Scores with strategies none / hEDM: base recall Δhe 0.1 + 0.02 i + noise, hEDM = base − reduction[lv]
    + noise; precision rows random (must be ignored)."""
    rng = np.random.default_rng(seed)
    rows = []
    for lv in levels:
        for i in range(n_i):
            for j in range(n_j):
                base = 0.1 + 0.02 * i + rng.uniform(0, 0.01)
                res = base - reduction[lv] + rng.normal(0, noise)
                for s, he in (("none", base), ("hEDM", res)):
                    rows.append({"parameter": lv, "strategy": s, "score": "recall", "i": i, "j": j,
                                 "delta_he": he, "avg": rng.uniform()})
                    rows.append({"parameter": lv, "strategy": s, "score": "precision", "i": i, "j": j,
                                 "delta_he": rng.uniform(), "avg": rng.uniform()})
    return pd.DataFrame(rows)


def _by_hand(scores, lv):
    rec = scores[(scores.score == "recall") & (scores.parameter == lv)]
    b = rec[rec.strategy == "none"].set_index(["i", "j"]).delta_he.sort_index()
    r = rec[rec.strategy == "hEDM"].set_index(["i", "j"]).delta_he.sort_index()
    d = (b - r).groupby(level="i").mean().to_numpy()
    return d, b.groupby(level="i").mean().to_numpy()


def test_relative_reduction_by_hand():
    """relative_reduction: per level R = mean dataset reduction / mean dataset base Δhe; the largest R is the
    estimate; p = that level's t-test over datasets × number of levels (capped at 1); the interval is the
    percentile bootstrap of R over datasets."""
    levels = [1.0, 2.0, 3.0]
    sc = _scores({1.0: 0.01, 2.0: 0.03, 3.0: 0.02}, levels)
    ratio = {lv: _by_hand(sc, lv)[0].mean() / _by_hand(sc, lv)[1].mean() for lv in levels}
    best = max(ratio, key=ratio.get)
    assert best == 2.0
    d, b = _by_hand(sc, best)
    row = hbr.claims.relative_reduction(_claim(), sc, "hEDM", n_boot=500, seed=3)
    assert row["estimate"] == pytest.approx(ratio[best]) and row["n"] == 4
    ref_p = sps.ttest_1samp(d, 0).pvalue
    assert 0 < ref_p * 3 < 1
    assert row["p"] == pytest.approx(ref_p * 3)
    boot = sps.bootstrap((np.arange(4.0),), lambda idx: d[idx.astype(int)].mean() / b[idx.astype(int)].mean(),
                         n_resamples=500, method="percentile", rng=np.random.default_rng(3))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((boot.confidence_interval.low,
                                                             boot.confidence_interval.high))
    assert "(2)" in row["note"] and "3 levels" in row["note"]

    # no real reduction: the Bonferroni product exceeds 1 and p is capped
    sc = _scores({1.0: 0.0, 2.0: 0.0, 3.0: 0.0}, levels, seed=4, noise=0.01)
    ratio = {lv: _by_hand(sc, lv)[0].mean() / _by_hand(sc, lv)[1].mean() for lv in levels}
    best = max(ratio, key=ratio.get)
    ref_p = sps.ttest_1samp(_by_hand(sc, best)[0], 0).pvalue
    row = hbr.claims.relative_reduction(_claim(), sc, "hEDM", n_boot=200)
    assert row["estimate"] == pytest.approx(ratio[best])
    assert ref_p * 3 > 1 and row["p"] == 1.0


def test_alpha_trend_slopes_are_polyfit_slopes():
    """alpha_trend: per dataset the least-squares slope of the (model-averaged) reduction on α equals
    np.polyfit's; estimate = mean slope, p = scipy's one-sample t-test of the slopes; one α gives NaN."""
    rng = np.random.default_rng(9)
    alphas = [0.5, 1.0, 3.0]  # unequal spacing
    rows = [{"parameter": al, "i": i, "j": j, "d": 0.01 * (i + 1) * al + rng.normal(0, 0.01)}
            for al in alphas for i in range(5) for j in range(3)]
    changes = pd.DataFrame(rows)
    per = changes.groupby(["i", "parameter"]).d.mean()
    slopes = np.array([np.polyfit(alphas, per.loc[i].reindex(alphas).to_numpy(), 1)[0] for i in range(5)])
    row = hbr.claims.alpha_trend(_claim(), changes)
    assert row["n"] == 5 and row["estimate"] == pytest.approx(slopes.mean())
    assert row["p"] == pytest.approx(sps.ttest_1samp(slopes, 0).pvalue)
    lo, hi = sps.t.interval(0.95, 4, loc=slopes.mean(), scale=sps.sem(slopes))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
    one = hbr.claims.alpha_trend(_claim(), changes[changes.parameter == 1.0])
    assert math.isnan(one["estimate"]) and "two values" in one["note"]
