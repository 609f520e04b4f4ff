"""Full-scale dataset loaders, tested on tiny files written in each dataset's real on-disk format."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import fairbook.data as fd
from fairbook.data import CorruptData, DataNotFound
from fairbook.data import fullscale as fs

CELEBA_ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips "
                "Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin "
                "Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open "
                "Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
                "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
                "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep the user's $FAIRBOOK_DATA and ~/.cache out of the tests."""
    monkeypatch.delenv("FAIRBOOK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _jpg(path, seed=0, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=90)


# ------------------------------------------------------------------------------------ CIFAR

def make_cifar10(root, n=20):
    """Five train batches and a test batch of ``n`` images each; labels cycle over the classes."""
    d = root / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(d / f, {b"batch_label": f.encode(), b"labels": [i % 10 for i in range(n)],
                      b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                      b"filenames": [b"x.png"] * n})
    _dump(d / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)],
                               b"num_cases_per_batch": n, b"num_vis": 3072})
    return root


def make_cifar100(root, n=200):
    d = root / "cifar-100-python"
    rng = np.random.default_rng(1)
    for f in ("train", "test"):
        fine = [i % 100 for i in range(n)]
        _dump(d / f, {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                      b"fine_labels": fine, b"coarse_labels": [c // 5 for c in fine]})
    _dump(d / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                       b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return root


def test_cifar10_splits_shapes_and_values(tmp_path):
    root = make_cifar10(tmp_path / "c10")
    train = fs.load_cifar10("train", root, 0)
    assert train.X.shape == (100, 3, 32, 32) and train.X.dtype == np.float32
    assert train.y.dtype == np.int64 and list(train.y[:3]) == [0, 1, 2]
    assert 0 <= train.X.min() and train.X.max() <= 1
    assert train.classes == [f"class{i}" for i in range(10)] and train.name == "cifar10"
    raw = pickle.load(open(root / "cifar-10-batches-py" / "data_batch_1", "rb"), encoding="bytes")
    np.testing.assert_allclose(train.X[0].reshape(-1) * 255, raw[b"data"][0], atol=1e-3)
    assert len(fs.load_cifar10("test", root, 0)) == 20
    assert len(fd.load("cifar10", "all", root=root)) == 120
    # root may also be the batches folder itself
    assert len(fs.load_cifar10("test", root / "cifar-10-batches-py", 0)) == 20


def test_cifar10_val_fraction_is_stratified_and_seeded(tmp_path):
    root = make_cifar10(tmp_path)
    tr, va = (fs.load_cifar10(s, root, 3, val_fraction=0.2) for s in ("train", "val"))
    assert len(tr) == 80 and len(va) == 20
    assert np.bincount(va.y).tolist() == [2] * 10
    full = fs.load_cifar10("train", root, 3).X.reshape(100, -1)
    rows = {r.tobytes() for r in full}
    both = np.concatenate([tr.X, va.X]).reshape(100, -1)
    assert {r.tobytes() for r in both} == rows  # disjoint and covering
    again = fs.load_cifar10("val", root, 3, val_fraction=0.2)
    other = fs.load_cifar10("val", root, 4, val_fraction=0.2)
    assert np.array_equal(again.X, va.X) and not np.array_equal(other.X, va.X)


def test_cifar_options_are_validated(tmp_path):
    root = make_cifar10(tmp_path)
    with pytest.raises(ValueError, match="val_fraction > 0"):
        fs.load_cifar10("val", root, 0)
    with pytest.raises(ValueError, match=r"val_fraction=1\.5.*\[0, 1\)"):
        fs.load_cifar10("train", root, 0, val_fraction=1.5)
    with pytest.raises(ValueError, match="unknown option.*colour.*allowed: val_fraction"):
        fs.load_cifar10("train", root, 0, colour=True)
    with pytest.raises(ValueError, match="split must be one of"):
        fs.load_cifar10("dev", root, 0)


def test_cifar100_fine_and_coarse(tmp_path):
    root = make_cifar100(tmp_path)
    fine = fs.load_cifar100("train", root, 0)
    coarse = fs.load_cifar100("test", root, 0, label="coarse")
    assert len(fine.classes) == 100 and fine.y.max() == 99
    assert coarse.classes[:2] == ["coarse0", "coarse1"] and coarse.y.max() == 19
    assert np.array_equal(coarse.y, fine.y // 5)
    with pytest.raises(ValueError, match="label='super'.*fine, coarse"):
        fs.load_cifar100("train", root, 0, label="super")


def test_cifar_corrupt_files_name_the_file(tmp_path):
    root = make_cifar10(tmp_path)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(CorruptData, match="data_batch_3"):
        fs.load_cifar10("train", root, 0)
    assert len(fs.load_cifar10("test", root, 0)) == 20  # other splits are unaffected
    _dump(batch, {b"data": np.zeros((5, 100), np.uint8), b"labels": [0] * 5})
    with pytest.raises(CorruptData, match=r"data_batch_3.*\(N, 3072\)"):
        fs.load_cifar10("train", root, 0)
    _dump(batch, {b"data": np.zeros((5, 3072), np.uint8), b"labels": [0] * 4})
    with pytest.raises(CorruptData, match="data_batch_3.*4 labels for 5 images"):
        fs.load_cifar10("train", root, 0)


def test_cifar_pickle_may_not_run_code(tmp_path):
    root = make_cifar10(tmp_path)
    _dump(root / "cifar-10-batches-py" / "test_batch", {b"data": os.system})  # a global function
    with pytest.raises(CorruptData, match="test_batch.*not allowed"):
        fs.load_cifar10("test", root, 0)


def test_not_found_lists_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(DataNotFound) as err:
        fd.load("cifar10", root=given)
    msg = str(err.value)
    assert f"{given}: missing cifar-10-batches-py/" in msg
    assert "cifar-10-batches-py/data_batch_1" in msg and "batches.meta" in msg
    assert str(tmp_path / "xdg-cache" / "fairbook" / "cifar10") + " (does not exist)" in msg
    assert f"{given / 'cifar10'}" in msg  # a root may hold several datasets: root/<name> is tried first
    assert len(err.value.tried) == 4 and "FAIRBOOK_DATA/cifar10" in err.value.fix
    for name in ("celeba", "utkface", "fairface", "cifar100"):
        with pytest.raises(DataNotFound, match=f"dataset '{name}' not found"):
            fd.load(name, root=given)


def test_env_and_cache_sources(tmp_path, monkeypatch):
    make_cifar10(tmp_path / "xdg-cache" / "fairbook" / "cifar10")
    assert fd.load("cifar10", "test").source.startswith(str(tmp_path / "xdg-cache"))
    make_cifar10(tmp_path / "data" / "cifar10")
    monkeypatch.setenv("FAIRBOOK_DATA", str(tmp_path / "data"))
    assert fd.load("cifar10", "test").source.startswith(str(tmp_path / "data"))


def test_cifar_fingerprint_follows_the_files(tmp_path):
    root = make_cifar10(tmp_path)
    files = fs.source_files("cifar10", root)
    assert len(files) == 7 and all(f.is_file() for f in files)
    before = fd.fingerprint("cifar10", root)
    assert fd.fingerprint("cifar10", root) == before
    _dump(root / "cifar-10-batches-py" / "test_batch",
          {b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 20})
    assert fd.fingerprint("cifar10", root) != before


# ----------------------------------------------------------------------------------- CelebA

def make_celeba(root, n=12, count=None, skip_images=()):
    """``n`` images; partition 0/1/2 cycling; Smiling = i % 2, Male = i // 2 % 2."""
    d = root / "celeba"
    (d / "img_align_celeba").mkdir(parents=True)
    lines = [str(n if count is None else count), " ".join(CELEBA_ATTRS) + " "]
    part = []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        vals = ["-1"] * 40
        vals[CELEBA_ATTRS.index("Smiling")] = " 1" if i % 2 else "-1"
        vals[CELEBA_ATTRS.index("Male")] = " 1" if i // 2 % 2 else "-1"
        lines.append(f"{name} " + " ".join(vals))
        part.append(f"{name} {i % 3}")
        if i not in skip_images:
            _jpg(d / "img_align_celeba" / name, seed=i)
    (d / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (d / "list_eval_partition.txt").write_text("\n".join(part) + "\n")
    return root


def test_celeba_splits_targets_groups_and_items(tmp_path):
    root = make_celeba(tmp_path)
    train = fd.load("celeba", "train", root=root, image_size=16)
    assert isinstance(train, torch.utils.data.Dataset) and isinstance(train, fs.ImageTable)
    assert len(train) == 4 and train.split == "train" and not train.semi_synthetic
    i = np.array([0, 3, 6, 9])  # partition 0
    assert train.targets.dtype == np.int64 and train.targets.tolist() == (i % 2).tolist()
    assert train.groups["Male"].tolist() == (i // 2 % 2).tolist()
    assert train.classes == ["not Smiling", "Smiling"] and train.group_names["Male"] == ("not Male", "Male")
    x, t, k = train[1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert (t, k) == (1, 1)
    assert [len(fd.load("celeba", s, root=root)) for s in ("val", "test", "all")] == [4, 4, 12]
    sub = train.subset([2, 3])
    assert len(sub) == 2 and sub.targets.tolist() == [0, 1] and sub.groups["Male"].tolist() == [1, 0]
    other = fd.load("celeba", "test", root=root / "celeba", target="Young", sensitive=["Male", "Bald"])
    assert set(other.groups) == {"Male", "Bald"} and other.targets.sum() == 0


def test_celeba_with_a_dataloader_and_transform(tmp_path):
    root = make_celeba(tmp_path)
    table = fd.load("celeba", "all", root=root, image_size=8)
    xb, yb, ib = next(iter(torch.utils.data.DataLoader(table, batch_size=5, shuffle=False)))
    assert xb.shape == (5, 3, 8, 8) and yb.dtype == torch.int64 and ib.tolist() == [0, 1, 2, 3, 4]
    flip = fd.load("celeba", "all", root=root, transform=lambda im: im.resize((4, 6)))
    assert flip[0][0].shape == (3, 6, 4)
    native = fd.load("celeba", "all", root=root, image_size=None)
    assert native[0][0].shape == (3, 10, 12)


def test_celeba_option_errors(tmp_path):
    root = make_celeba(tmp_path)
    with pytest.raises(ValueError, match="target='Smile'.*Smiling"):
        fd.load("celeba", root=root, target="Smile")
    with pytest.raises(ValueError, match="sensitive='Gender'.*a CelebA attribute: 5_o_Clock"):
        fd.load("celeba", root=root, sensitive="Gender")
    with pytest.raises(ValueError, match="sensitive='Smiling'.*other than the target"):
        fd.load("celeba", root=root, sensitive="Smiling")
    with pytest.raises(ValueError, match="image_size=0"):
        fd.load("celeba", root=root, image_size=0)
    with pytest.raises(ValueError, match="unknown option.*val_fraction"):
        fd.load("celeba", root=root, val_fraction=0.1)


def test_celeba_corrupt_files(tmp_path):
    short = make_celeba(tmp_path / "a", count=13)
    with pytest.raises(CorruptData, match="list_attr_celeba.txt: header says 13 images but 12 rows"):
        fd.load("celeba", root=short)
    missing = make_celeba(tmp_path / "b", skip_images=(3, 5))
    with pytest.raises(CorruptData, match="1 listed image.*000004.jpg"):
        fd.load("celeba", "train", root=missing)
    assert len(fd.load("celeba", "val", root=missing)) == 4  # 000006.jpg is in test
    with pytest.raises(CorruptData, match="2 listed image.*000004.jpg, 000006.jpg"):
        fd.load("celeba", "all", root=missing)
    bad = make_celeba(tmp_path / "c")
    f = bad / "celeba" / "list_attr_celeba.txt"
    f.write_text(f.read_text().replace("000002.jpg -1", "000002.jpg 0", 1))
    with pytest.raises(CorruptData, match="must be -1 or 1"):
        fd.load("celeba", root=bad)
    ragged = make_celeba(tmp_path / "d")
    f = ragged / "celeba" / "list_attr_celeba.txt"
    lines = f.read_text().splitlines()
    lines[-1] = lines[-1].rsplit(" ", 1)[0]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptData, match="40 values"):
        fd.load("celeba", root=ragged)
    (ragged / "celeba" / "img_align_celeba" / "000001.jpg").write_bytes(b"not a jpeg")
    (ragged / "celeba" / "list_attr_celeba.txt").write_text(
        "\n".join(lines[:-1] + [lines[-1] + " -1"]) + "\n")
    table = fd.load("celeba", root=ragged)
    with pytest.raises(CorruptData, match="000001.jpg: cannot read image"):
        table[0]


def test_celeba_fingerprint_uses_annotations_and_listing(tmp_path):
    root = make_celeba(tmp_path)
    files = fs.source_files("celeba", root)
    assert [f.name for f in files] == ["list_attr_celeba.txt", "list_eval_partition.txt",
                                       "celeba-images.manifest"]
    assert str(files[2]).startswith(str(tmp_path / "xdg-cache" / "fairbook" / "manifests"))
    assert "000012.jpg\t" in files[2].read_text()
    fp = fd.fingerprint("celeba", root)
    assert fd.fingerprint("celeba", root) == fp
    _jpg(root / "celeba" / "img_align_celeba" / "000013.jpg")
    fp2 = fd.fingerprint("celeba", root)
    assert fp2 != fp
    p = root / "celeba" / "list_eval_partition.txt"
    p.write_text(p.read_text().replace("000001.jpg 0", "000001.jpg 1"))
    assert fd.fingerprint("celeba", root) != fp2


# ---------------------------------------------------------------------------------- UTKFace

UTK_FILES = ["1_0_0_20161219140623097.jpg.chip.jpg", "25_1_1_20170116163712345.jpg.chip.jpg",
             "35_0_2_20170104201234567.jpg.chip.jpg", "72_1_3_20170109142408075.jpg.chip.jpg",
             "9_0_4_20170103200814791.jpg.chip.jpg", "45_1_0_20170117170304123.jpg"]
UTK_BAD = ["61_1_20170109150557335.jpg.chip.jpg", "39_1_20170116174525125.jpg.chip.jpg",
           "53__0_20170116184028385.jpg.chip.jpg"]


def make_utkface(root, names):
    for k, n in enumerate(names):
        _jpg(root / "UTKFace" / n, seed=k)
    return root


def test_utkface_labels_groups_and_skips(tmp_path):
    files = UTK_FILES + [f"{20 + i}_{i % 2}_{i % 5}_2017010{i}.jpg.chip.jpg" for i in range(4)]
    root = make_utkface(tmp_path, files + UTK_BAD)
    all_ = fd.load("utkface", "all", root=root, image_size=8)
    assert len(all_) == 10 and all_.skipped == 3
    names = [os.path.basename(p) for p in all_.paths]
    order = [files.index(n) for n in names]
    ages = np.array([int(files[i].split("_")[0]) for i in order])
    assert all_.targets.tolist() == [int(files[i].split("_")[1]) for i in order]
    assert all_.classes == ["Male", "Female"]
    race = np.array([int(files[i].split("_")[2]) for i in order])
    assert all_.groups["race"].tolist() == (race != 0).astype(int).tolist()
    assert all_.group_names["race"] == ("White", "non-White")
    binned = fd.load("utkface", "all", root=root, target="age_bin", sensitive="gender")
    assert binned.targets.tolist() == fs.age_bin(ages).tolist()
    assert binned.classes[-1] == "70+" and set(binned.groups) == {"gender"}
    assert fs.age_bin([0, 2, 3, 9, 10, 19, 69, 70, 116]).tolist() == [0, 0, 1, 1, 2, 2, 7, 8, 8]
    assert fd.load("utkface", "all", root=root, sensitive="race5").groups["race5"].max() == 4
    assert all_[0][0].shape == (3, 8, 8)


def test_utkface_seeded_60_20_20_split(tmp_path):
    root = make_utkface(tmp_path, [f"{20 + i}_{i % 2}_{i % 5}_2017{i:04d}.jpg.chip.jpg" for i in range(20)])
    parts = [set(fd.load("utkface", s, root=root, seed=1).paths) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [12, 4, 4]
    assert set.union(*parts) == set(fd.load("utkface", "all", root=root).paths)
    assert sum(len(p) for p in parts) == 20
    same = set(fd.load("utkface", "val", root=root, seed=1, target="age_bin").paths)
    assert same == parts[1]  # the split does not depend on the task
    assert set(fd.load("utkface", "val", root=root, seed=2).paths) != parts[1]


def test_utkface_errors(tmp_path):
    root = make_utkface(tmp_path / "bad", UTK_BAD)
    with pytest.raises(CorruptData, match="none of the 3 .jpg files"):
        fd.load("utkface", root=root)
    good = make_utkface(tmp_path / "good", UTK_FILES)
    with pytest.raises(ValueError, match="target='age'.*gender, age_bin"):
        fd.load("utkface", root=good, target="age")
    with pytest.raises(ValueError, match="sensitive='gender'.*different from target"):
        fd.load("utkface", root=good, sensitive="gender")
    empty = tmp_path / "empty" / "UTKFace"
    empty.mkdir(parents=True)
    with pytest.raises(DataNotFound, match=r"empty: missing UTKFace/\*\.jpg images"):
        fd.load("utkface", root=empty.parent)


def test_utkface_fingerprint(tmp_path):
    root = make_utkface(tmp_path, UTK_FILES)
    fp = fd.fingerprint("utkface", root)
    (root / "UTKFace" / UTK_FILES[0]).rename(root / "UTKFace" / ("2" + UTK_FILES[0]))
    assert fd.fingerprint("utkface", root) != fp


# --------------------------------------------------------------------------------- FairFace

FF_RACES = ["White", "Black", "East Asian", "Indian"]


def make_fairface(root, n_train=16, n_val=8):
    root.mkdir(parents=True, exist_ok=True)
    ages = ["0-2", "20-29", "more than 70", "3-9"]
    for split, n in (("train", n_train), ("val", n_val)):
        rows = ["file,age,gender,race,service_test"]
        for i in range(n):
            rows.append(f"{split}/{i + 1}.jpg,{ages[i % 4]},{'Male' if i % 2 else 'Female'},"
                        f"{FF_RACES[i // 2 % 4]},{'True' if i % 3 else 'False'}")
            _jpg(root / split / f"{i + 1}.jpg", seed=i, size=(9, 9))
        (root / f"fairface_label_{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def test_fairface_mime_groups_and_splits(tmp_path):
    root = make_fairface(tmp_path / "ff")
    train = fd.load("fairface", "train", root=root, image_size=8)
    # rows i with race index i // 2 % 4 in (White, Black): i % 8 in 0..3 -> 8 of 16
    assert len(train) == 8 and train.group_names == {"race": ("White", "Black")}
    assert train.groups["race"].tolist() == [0, 0, 1, 1] * 2
    assert train.targets.tolist() == [1, 0] * 4 and train.classes == ["Male", "Female"]
    test = fd.load("fairface", "test", root=root)
    assert len(test) == 4 and all("/val/" in p for p in test.paths)
    every = fd.load("fairface", "all", root=root, groups=None, target="age")
    assert len(every) == 24 and every.group_names["race"][2] == "Latino_Hispanic"
    assert every.groups["race"].max() == 5 and every.classes[-1] == "70+"
    assert sorted(set(every.targets.tolist())) == [0, 1, 3, 8]
    swapped = fd.load("fairface", "train", root=root, groups=("Black", "White"))
    assert swapped.groups["race"].tolist() == [1, 1, 0, 0] * 2
    x, t, k = next(iter(torch.utils.data.DataLoader(train, batch_size=8)))
    assert x.shape == (8, 3, 8, 8) and t.tolist() == train.targets.tolist()


def test_fairface_val_fraction(tmp_path):
    root = make_fairface(tmp_path, n_train=40)
    tr = fd.load("fairface", "train", root=root, seed=0, val_fraction=0.25, groups=None)
    va = fd.load("fairface", "val", root=root, seed=0, val_fraction=0.25, groups=None)
    assert len(tr) == 30 and len(va) == 10 and not set(tr.paths) & set(va.paths)
    mime = fd.load("fairface", "val", root=root, seed=0, val_fraction=0.25)
    assert set(mime.paths) <= set(va.paths)  # the split is made before selecting races
    with pytest.raises(ValueError, match="val_fraction > 0"):
        fd.load("fairface", "val", root=root)


def test_fairface_errors(tmp_path):
    root = make_fairface(tmp_path / "ff")
    with pytest.raises(ValueError, match=r"groups=\('White', 'Asian'\).*East Asian"):
        fd.load("fairface", root=root, groups=("White", "Asian"))
    with pytest.raises(ValueError, match="groups='White'"):
        fd.load("fairface", root=root, groups="White")
    with pytest.raises(ValueError, match="target='race'.*gender, age"):
        fd.load("fairface", root=root, target="race")
    with pytest.raises(ValueError, match="sensitive='gender'.*race"):
        fd.load("fairface", root=root, sensitive="gender")
    (root / "val" / "2.jpg").unlink()
    with pytest.raises(CorruptData, match="val/2.jpg"):
        fd.load("fairface", "test", root=root)
    csv = root / "fairface_label_train.csv"
    csv.write_text(csv.read_text().replace("Female", "Woman", 1))
    with pytest.raises(CorruptData, match="unknown gender.*Woman"):
        fd.load("fairface", root=root)
    csv.write_text("name,age\n1.jpg,3-9\n")
    with pytest.raises(CorruptData, match="missing column.*file, gender, race"):
        fd.load("fairface", root=root)
    (root / "val").rename(root / "v")
    with pytest.raises(DataNotFound, match=f"{root}: missing val/"):
        fd.load("fairface", root=root)


def test_fairface_fingerprint(tmp_path):
    root = make_fairface(tmp_path)
    files = fs.source_files("fairface", root)
    assert "train/1.jpg\t" in files[-1].read_text() and "val/8.jpg\t" in files[-1].read_text()
    fp = fd.fingerprint("fairface", root)
    (root / "train" / "3.jpg").unlink()
    assert fd.fingerprint("fairface", root) != fp


def test_registry_entries():
    for name in ("cifar10", "cifar100", "celeba", "utkface", "fairface"):
        e = fd.entry(name)
        assert e.kind == "full-scale image" and e.loader.startswith("fullscale:")
        assert f"$FAIRBOOK_DATA/{name}" in e.fix and "root=" in e.fix
    with pytest.raises(ValueError, match="not a full-scale dataset"):
        fs.source_files("adult", None)
