"""Contextual conditions for the DDPM: the offline analog of AIM-Fair's contextual prompts (CSDG)."""
import numpy as np
import pandas as pd
import pytest
import torch

from fairbook.generative import context as ctx
from fairbook.generative import ddpm, diversity
from fairbook.models import MLP

TINY = ddpm.DDPMConfig(channels=(8, 16), steps=3, batch_size=8, seed=0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def bar(length=8, width=2, shear=0.0, size=12, channel=0, channels=3, value=1.0):
    """A vertical bar, centred, sheared by ``shear`` columns per row upwards (> 0 leans right)."""
    img = np.zeros((channels, size, size), np.float32)
    top = (size - length) // 2
    centre = top + (length - 1) / 2
    for r in range(top, top + length):
        c0 = int(round((size - width) / 2 + shear * (centre - r)))
        img[channel, r, max(c0, 0):max(c0 + width, 0)] = value
    return img


def bars(n=40, size=8, seed=0):
    """Coloured bars of random length, width and slant; y = long bar, s = colour (red/green)."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 0, 1, 1], n // 4)
    s = np.tile([0, 1, 0, 1], n // 4)
    # thin/thick and left/right leaning bars in every cell, with random length, jitter and ink
    X = np.stack([bar(length=int(rng.integers(3, 5) if yy == 0 else rng.integers(5, 8)),
                      width=1 + 2 * ((i // 4) % 2) + int(rng.integers(0, 2)) * ((i // 4) % 2 == 0),
                      shear=(1 if (i // 8) % 2 else -1) * float(rng.uniform(0.2, 0.6)), size=size,
                      channel=int(ss), value=float(rng.uniform(0.6, 1.0)))
                  for i, (yy, ss) in enumerate(zip(y, s))])
    return X, y, s


# ------------------------------------------------------------------------------------- attributes
def test_attributes_order_thick_thin_slanted_upright_long_short():
    imgs = np.stack([bar(width=1), bar(width=3), bar(shear=0.5, width=1), bar(shear=-0.5, width=1),
                     bar(length=4, width=1)])
    a = ctx.context_attributes(imgs)
    assert list(a.columns) == list(ctx.ATTRIBUTES) and len(a) == 5
    thin, thick, right, left, short = (a.iloc[i] for i in range(5))
    assert thick.thickness > 2 * thin.thickness and thick.ink == pytest.approx(3 * thin.ink)
    assert thin.slant == pytest.approx(0, abs=1e-9) and thick.slant == pytest.approx(0, abs=1e-9)
    assert right.slant > 15 and left.slant < -15 and right.slant == pytest.approx(-left.slant)
    assert thin.height > short.height and thin.width == pytest.approx(short.width)
    # exact values for an upright binary L x w bar: height sqrt(L^2 - 1), width sqrt(w^2 - 1),
    # thickness 2 L w / (2 L + 2 w - (2 - sqrt 2)) (one corner of the forward-difference perimeter)
    assert thick.height == pytest.approx(np.sqrt(63)) and thick.width == pytest.approx(np.sqrt(8))
    assert thick.thickness == pytest.approx(2 * 24 / (22 - (2 - np.sqrt(2))))


def test_attributes_ignore_colour_and_handle_blank_images():
    red, green = bar(shear=0.3, channel=0), bar(shear=0.3, channel=1)
    gray = bar(shear=0.3, channels=1)
    a = ctx.context_attributes(np.stack([red, green]))
    pd.testing.assert_frame_equal(a.iloc[[0]].reset_index(drop=True), a.iloc[[1]].reset_index(drop=True))
    pd.testing.assert_frame_equal(a.iloc[[0]], ctx.context_attributes(gray[None]))
    blank = ctx.context_attributes(np.zeros((1, 3, 12, 12), np.float32))
    assert (blank.to_numpy() == 0).all()
    # batching does not change anything
    X, _, _ = bars(12)
    pd.testing.assert_frame_equal(ctx.context_attributes(X), ctx.context_attributes(X, batch_size=5))


# ------------------------------------------------------------------------------------------- bins
def test_bins_are_quantiles_and_reusable():
    values = np.random.default_rng(0).permutation(100).astype(float)
    b = ctx.context_bins(values, 4)
    assert b.n_bins == 4 and len(b.edges) == 3
    assert np.bincount(b(values)).tolist() == [25, 25, 25, 25]
    assert b.edges == pytest.approx(np.quantile(values, [0.25, 0.5, 0.75]))
    # the same edges bin new values; a value on an edge goes up; outside values go to the ends
    assert b([-5, b.edges[0], 49.0, 1e6]).tolist() == [0, 1, 1, 3]
    assert ctx.context_bins(values, 1)(values).tolist() == [0] * 100
    assert ctx.QuantileBins(b.edges) == b


def test_context_combines_attribute_bins_row_major():
    X, _, _ = bars(40)
    c = ctx.fit_context(X, ("thickness", "slant"), (2, 3))
    assert c.shape == (2, 3) and c.n_contexts == 6 and len(c.labels()) == 6
    a = ctx.context_attributes(X)
    k = c.assign(X)
    assert np.array_equal(k, c.assign(a))
    assert np.array_equal(k, 3 * c.bins[0](a.thickness) + c.bins[1](a.slant))
    assert set(k) == set(range(6))
    assert "thickness" in c.labels()[0] and "slant" in c.labels()[0] and "<" in c.labels()[0]
    assert ctx.Context.from_dict(c.to_dict()) == c
    assert c.key() == ctx.fit_context(X, ("thickness", "slant"), (2, 3)).key()
    assert c.key() != ctx.fit_context(X, ("thickness", "slant"), 2).key()
    assert c.key() != ctx.fit_context(X, ("slant", "thickness"), (3, 2)).key()
    assert ctx.fit_context(X, "ink", 1).n_contexts == 1


# ------------------------------------------------------------------------------------- conditions
def test_condition_encoding_roundtrips():
    K = 4
    cells, contexts = np.meshgrid(np.arange(4), np.arange(K + 1), indexing="ij")
    cond = ctx.encode_condition(cells.ravel(), contexts.ravel(), K)
    assert cond.tolist() == list(range(4 * (K + 1)))  # dense: every condition used once
    back_cell, back_context = ctx.decode_condition(cond, K)
    assert np.array_equal(back_cell, cells.ravel()) and np.array_equal(back_context, contexts.ravel())
    assert ctx.encode_condition(3, K, K) == 3 * (K + 1) + K  # the plain condition of cell 3


def test_contextual_conditions_duplicate_every_image_once_per_mode():
    y, s, k = np.array([0, 1, 1, 0, 1]), np.array([1, 0, 1, 1, 1]), np.array([2, 0, 1, 1, 2])
    index, cond, n_conditions = ctx.contextual_conditions(y, s, k, 3)
    assert n_conditions == 4 * 4 and len(index) == len(cond) == 10
    assert index.tolist() == [0, 1, 2, 3, 4] * 2
    cell, context = ctx.decode_condition(cond, 3)
    assert np.array_equal(cell, np.tile(ddpm.cell_condition(y, s), 2))
    assert context[:5].tolist() == k.tolist() and (context[5:] == 3).all()
    # the plain condition of a cell sees exactly the images of that cell
    for c in range(4):
        plain = index[(cell == c) & (context == 3)]
        assert sorted(plain) == sorted(np.flatnonzero(ddpm.cell_condition(y, s) == c))
    assert cond.max() < n_conditions


# -------------------------------------------------------------------------------------- generator
def test_generator_trains_through_the_cache_and_samples_every_cell(cache):
    X, y, s = bars(40)
    logs = []
    gen = ctx.train_contextual_generator(X, y, s, n_bins=2, config=TINY, dataset="toy", log=logs.append)
    assert gen.n_contexts == 4 and gen.model.n_conditions == 4 * 5 and gen.counts.sum() == 40
    assert gen.counts.shape == (4, 4) and (gen.counts > 0).all()
    assert "trained" in logs[-1]
    again = ctx.train_contextual_generator(X, y, s, n_bins=2, config=TINY, dataset="toy", log=logs.append)
    assert "cache hit" in logs[-1] and again.model.cache_path == gen.model.cache_path
    # another vocabulary is another generator (the key holds the context definition)
    ctx.train_contextual_generator(X, y, s, attributes=("thickness",), n_bins=2, config=TINY,
                                   dataset="toy")
    assert len(list(cache.glob("generators/toy-*"))) == 2

    counts = {(0, 0): 5, (0, 1): 3, (1, 0): 0, (1, 1): 4}
    Xc, yc, sc, kc = ctx.sample_cells(gen, counts, mode="contextual", steps=2, seed=1)
    assert Xc.shape == (12, 3, 8, 8) and Xc.dtype == np.float32 and 0 <= Xc.min() and Xc.max() <= 1
    assert list(zip(yc, sc)) == [(0, 0)] * 5 + [(0, 1)] * 3 + [(1, 1)] * 4
    assert kc.tolist() == [0, 0, 1, 2, 3] + [0, 1, 2] + [0, 1, 2, 3]  # uniform over contexts
    Xp, yp, sp, kp = ctx.sample_cells(gen, counts, mode="plain", steps=2, seed=1)
    assert Xp.shape == Xc.shape and np.array_equal(yp, yc) and np.array_equal(sp, sc) and (kp == 4).all()
    assert not np.array_equal(Xp, Xc)

    # deterministic, cached (one pool per condition) and a larger request extends a smaller one
    n_pools = len(list((gen.model.cache_path / "pools").glob("*.npz")))
    assert n_pools == 4 + 3 + 4 + 3
    assert np.array_equal(ctx.sample_cells(gen, counts, mode="contextual", steps=2, seed=1)[0], Xc)
    assert len(list((gen.model.cache_path / "pools").glob("*.npz"))) == n_pools
    big = ctx.sample_cells(gen, 8, mode="plain", steps=2, seed=1)
    assert len(big[0]) == 32 and np.array_equal(big[0][:5], Xp[:5])  # first 5 of cell (0, 0)
    assert not np.array_equal(ctx.sample_cells(gen, counts, mode="plain", steps=2, seed=2)[0], Xp)
    # counts as a list in cell order; an empty request
    assert len(ctx.sample_cells(gen, [1, 0, 0, 2], mode="plain", steps=2)[0]) == 3
    empty = ctx.sample_cells(gen, 0, steps=2)
    assert empty[0].shape == (0, 3, 8, 8) and len(empty[3]) == 0
    # an uncached generator samples the same images without writing pools
    gen.model.cache_path = None
    assert np.array_equal(ctx.sample_cells(gen, counts, mode="contextual", steps=2, seed=1)[0], Xc)


# -------------------------------------------------------------------------------------- diversity
def test_pairwise_distance_identical_zero_and_varied_larger():
    same = np.repeat(bar()[None], 6, axis=0)
    assert diversity.mean_pairwise_distance(same) == pytest.approx(0, abs=1e-6)
    varied = np.stack([bar(width=w, shear=sh) for w in (1, 2, 3) for sh in (-0.4, 0.4)])
    assert diversity.mean_pairwise_distance(varied) > 1
    two = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert diversity.mean_pairwise_distance(two) == pytest.approx(5.0)
    assert np.isnan(diversity.mean_pairwise_distance(two[:1]))
    many = np.random.default_rng(0).random((50, 3))
    sub = diversity.mean_pairwise_distance(many, max_n=20, seed=3)
    assert sub == diversity.mean_pairwise_distance(many, max_n=20, seed=3)
    assert sub != diversity.mean_pairwise_distance(many)


def test_entropy_and_coverage():
    assert diversity.context_entropy([0, 1, 2, 3], 4) == pytest.approx(1.0)
    assert diversity.context_entropy([2, 2, 2], 4) == pytest.approx(0.0)
    assert 0 < diversity.context_entropy([0, 0, 0, 1], 4) < 0.5
    assert diversity.context_coverage([0, 1, 1, 3], [0, 1, 2, 4], 4) == pytest.approx(2 / 3)  # 4 = plain
    assert np.isnan(diversity.context_coverage([0, 1], [4, 4], 4))


def test_diversity_report_per_cell():
    same = np.repeat(bar()[None], 4, axis=0)
    varied = np.stack([bar(width=w, shear=sh, channel=1) for w in (1, 3) for sh in (-0.5, 0.5)])
    X = np.concatenate([same, varied])
    y, s = np.array([0] * 4 + [1] * 4), np.array([0] * 4 + [1] * 4)
    c = ctx.fit_context(varied, ("thickness", "slant"), 2)
    requested = np.array([4, 4, 4, 4] + list(c.assign(varied)))
    torch.manual_seed(0)
    rep = diversity.diversity_report(X, y, s, context=c, requested=requested,
                               classifier=MLP(3 * 12 * 12, (16,), 2))
    assert rep[["y", "s", "n"]].values.tolist() == [[0, 0, 4], [1, 1, 4]]
    first, second = rep.iloc[0], rep.iloc[1]
    assert first.pixel_distance == pytest.approx(0, abs=1e-6) and second.pixel_distance > 0.1
    assert first.feature_distance == pytest.approx(0, abs=1e-5) and second.feature_distance > 0
    assert first.std_thickness == 0 and second.std_thickness > 0 and second.std_slant > 10
    assert first.context_entropy == 0 and second.context_entropy == pytest.approx(1.0)
    assert np.isnan(first.coverage) and second.coverage == 1.0
    plain = diversity.diversity_report(X, y, s)
    assert "coverage" not in plain and "feature_distance" not in plain and "std_ink" in plain


# ----------------------------------------------------------------------------------------- errors
def test_bad_inputs(cache):
    X, y, s = bars(8)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ctx.context_attributes(X[0])
    with pytest.raises(ValueError, match="uint8"):
        ctx.context_attributes((X * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="channels-last"):
        ctx.context_attributes(X.transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
        ctx.context_bins([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="too few distinct values"):
        ctx.context_bins([1.0, 1.0, 1.0, 2.0], 3)
    with pytest.raises(ValueError, match="finite"):
        ctx.context_bins([1.0, np.nan], 2)
    with pytest.raises(ValueError, match="strictly increasing"):
        ctx.QuantileBins((2.0, 1.0))
    with pytest.raises(ValueError, match="attributes must be distinct names"):
        ctx.fit_context(X, ("thickness", "hair"))
    with pytest.raises(ValueError, match="one per attribute"):
        ctx.fit_context(X, ("thickness", "slant"), (2, 2, 2))
    with pytest.raises(ValueError, match=r"contexts must lie in \[0, 1\]"):
        ctx.contextual_conditions([0, 1], [0, 1], [0, 2], 2)
    with pytest.raises(ValueError, match=r"s must lie in \[0, 1\] \(n_groups=2\)"):
        ctx.contextual_conditions([0, 1], [0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="one entry per image"):
        ctx.contextual_conditions([0, 1], [0], [0, 1], 2)
    with pytest.raises(ValueError, match="int labels"):
        ctx.contextual_conditions([0.5, 1], [0, 1], [0, 1], 2)
    with pytest.raises(ValueError, match=r"contexts in \[0, 3\]"):
        ctx.encode_condition(0, 4, 3)
    with pytest.raises(ValueError, match="no training image"):
        ctx.train_contextual_generator(X, y, s, n_bins=4, config=TINY, dataset="toy")
    with pytest.raises(ValueError, match="max_n must be >= 2"):
        diversity.mean_pairwise_distance(np.zeros((3, 2)), max_n=1)
    with pytest.raises(ValueError, match="need the context"):
        diversity.diversity_report(X, y, s, requested=np.zeros(8, int))
    X40, y40, s40 = bars(40)
    gen = ctx.train_contextual_generator(X40, y40, s40, n_bins=2, config=TINY, dataset="toy")
    with pytest.raises(ValueError, match="mode must be one of"):
        ctx.sample_cells(gen, 1, mode="detailed")
    with pytest.raises(ValueError, match=r"key \(2, 0\) is not a cell"):
        ctx.sample_cells(gen, {(2, 0): 1})
    with pytest.raises(ValueError, match="4 counts in cell order"):
        ctx.sample_cells(gen, [1, 2])
    with pytest.raises(ValueError, match="ints >= 0"):
        ctx.sample_cells(gen, -1)
