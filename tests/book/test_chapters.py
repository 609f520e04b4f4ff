"""Every chapter executes with the smoke profile through the same runner as the book."""
import json

import nbformat
import pandas as pd
import pytest

from fairbook.claims import COLUMNS, VERDICTS

from fairbook.book import chapters, runner

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", chapters.available())
def test_chapter_runs_with_smoke_profile(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "runs"))
    run = runner.run(name, "smoke", log=lambda m: None)
    nb = nbformat.read(run.notebook, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    prov = json.loads((run.path / "provenance.json").read_text())
    assert prov["chapter"] == name and prov["profile"] == "smoke"
    assert prov["parameters"] == chapters.get(name).values("smoke")
    assert prov["results"] and prov["figures"]
    for fig in prov["figures"]:
        assert (run.path / "figures" / fig).stat().st_size > 1000
    claims = pd.read_csv(run.path / "results" / "claims.csv")
    assert list(claims.columns) == COLUMNS and len(claims) >= 1
    assert set(claims.verdict) <= set(VERDICTS) and claims.key.is_unique
    assert (claims.p_holm.dropna() >= claims.p.dropna().reindex(claims.p_holm.dropna().index) - 1e-12).all()
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images >= len([f for f in prov["figures"] if f.endswith(".png")])
    # every number repeats: a second run in a fresh process gives byte-identical result tables
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "again"))
    again = runner.run(name, "smoke", force=True, log=lambda m: None)
    tables = sorted(p.name for p in (run.path / "results").iterdir() if p.name != "_runinfo.json")
    assert tables == sorted(p.name for p in (again.path / "results").iterdir() if p.name != "_runinfo.json")
    differ = [t for t in tables if (run.path / "results" / t).read_bytes() != (again.path / "results" / t).read_bytes()]
    assert not differ, f"{name}: a second smoke run changed {differ}"


def test_mime_override_from_the_issue(tmp_path, monkeypatch):
    """`fairbook run mime --profile smoke -p trials 50` (the spine issue's example)."""
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "runs"))
    run = runner.run("mime", "smoke", {"trials": "50"}, log=lambda m: None)
    assert run.provenance["parameters"]["trials"] == 50
    import pandas as pd

    curves = pd.read_csv(run.path / "results" / "mime_curves.csv")
    assert curves.groupby(["setting", "beta"]).size().eq(50).all()


def test_mime_image_path_on_a_tiny_fairface(tmp_path, monkeypatch):
    """The paper profile's image path (FairFace, ResNet-34, AdamW recipe) on files in FairFace's format."""
    from test_data_fullscale import make_fairface

    root = make_fairface(tmp_path / "fairface", n_train=200, n_val=40)
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "runs"))
    run = runner.run("mime", "smoke", {"datasets": "fairface", "data_root": str(root),
                                       "n_train_fairface": "10", "img_epochs": "1", "img_batch": "8",
                                       "emp_betas": "0,1"},
                     log=lambda m: None)
    import pandas as pd

    sweeps = pd.read_csv(run.path / "results" / "real_sweeps.csv")
    assert set(sweeps.dataset) == {"fairface"} and len(sweeps) == 4 * 2
    groups = pd.read_csv(run.path / "results" / "real_groups.csv")
    assert set(groups[["majority", "minority"]].iloc[0]) == {"White", "Black"}
    assert list(run.provenance["data"]) == ["fairface"]
    assert len(pd.read_csv(run.path / "results" / "real_table1.csv")) == 1


def test_hbr_paper_path_on_a_tiny_cifar10(tmp_path, monkeypatch):
    """The paper profile's code path — CIFAR-10 from a data root, the CIFAR ResNet-18 with crop/flip and
    channel standardisation, an EDM-format pool found under the data root — on tiny files."""
    import numpy as np
    import pandas as pd
    from test_data_fullscale import make_cifar10

    root = make_cifar10(tmp_path / "data")
    (root / "edm").mkdir()
    rng = np.random.default_rng(0)
    np.savez(root / "edm" / "pool.npz", image=rng.integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8),
             label=np.repeat(np.arange(10), 200))
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "runs"))
    run = runner.run("hbr", "smoke", {
        "dataset": "cifar10", "data_root": str(root), "model": "resnet18", "epochs": "2", "batch_size": "32",
        "milestones": "1", "augment": "true", "normalize": "true", "n_aum_models": "1", "n_per_class": "0",
        "n_test": "0", "holdout_reserve": "0", "cs1_strategies": "random", "prune_rates": "0.5",
        "cs2_strategies": "hEDM",
        "pool": "edm/pool.npz", "pool_per_class": "0"}, log=lambda m: None)
    assert set(run.provenance["data"]) == {"cifar10", "pool"}
    tests = pd.read_csv(run.path / "results" / "cs2_ttests.csv")
    assert set(tests.strategy) == {"hEDM"} and len(pd.read_csv(run.path / "results" / "cs1_scores.csv")) == 2 * 2 * 2


def test_gcm_celeba_path_on_a_tiny_celeba(tmp_path, monkeypatch):
    """The paper profile's CelebA path of the GCM chapter — images read lazily from a data root,
    AlexNet, group-balanced batches drawn from the image files, epoch selection on validation ΔEO —
    on tiny files in CelebA's format (Wavy_Hair as the target, sex as the sensitive attribute)."""
    import pandas as pd
    from test_data_fullscale import CELEBA_ATTRS, make_celeba

    root = make_celeba(tmp_path / "data", n=48)
    attr = root / "celeba" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    smiling, wavy = CELEBA_ATTRS.index("Smiling") + 1, CELEBA_ATTRS.index("Wavy_Hair") + 1
    rows = [line.split() for line in lines[2:]]
    for r in rows:
        r[wavy] = r[smiling]  # Wavy_Hair = i % 2: every (sex, wavy) cell in every split
    attr.write_text("\n".join(lines[:2] + [" ".join(r) for r in rows]) + "\n")
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "runs"))
    run = runner.run("gcm", "smoke", {
        "image_dataset": "celeba", "data_root": str(root), "celeba_target": "Wavy_Hair",
        "image_model": "alexnet", "image_size": "64", "image_batch_size": "8", "image_epochs": "2",
        "image_steps_per_epoch": "2", "select": "val_delta_eo", "multiclass_dataset": "none",
        "image_gcm_lams": "0.1", "image_eor_lams": "1.0"},
        log=lambda m: None)
    assert "celeba" in run.provenance["data"]
    fig4 = pd.read_csv(run.path / "results" / "fig4_runs.csv")
    assert (fig4.dataset == "celeba").sum() == 2 + 1 + 1 + 2  # vanilla, oversampling, EOR, Adv, GCM T=0/2
    traces = pd.read_csv(run.path / "results" / "fig2_disparity_traces.csv")
    assert set(traces.dataset) == {"adult", "celeba"}
    sizes = pd.read_csv(run.path / "results" / "table1_subgroup_sizes.csv")
    assert set(sizes.dataset) == {"adult", "compas", "celeba"}


def test_aimfair_celeba_path_on_tiny_files(tmp_path, monkeypatch):
    """The paper profile's path of the AIM-Fair chapter — a biased CelebA subset read lazily from a
    data root, Stable Diffusion images from a generate_cells layout (built offline with the tiny
    pipeline), torchvision ResNet-18 — on tiny files."""
    import pandas as pd
    from test_data_fullscale import make_celeba

    from fairbook.generative import prompts as P
    from fairbook.generative import sd

    root = make_celeba(tmp_path / "data", n=96)  # 8 images per (Smiling, Male) cell and partition
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FAIRBOOK_PROGRESS", "0")
    pipe = sd.load_pipeline(sd.tiny_pipeline(tmp_path / "model", seed=0), device="cpu")
    cells = P.make_cells({"not smiling": 0, "smiling": 1}, {"female": 0, "male": 1})
    sd.generate_cells(pipe, P.contextual_prompts(cells, 2, P.TemplateExpander(seed=0)), 8, tmp_path / "sd",
                      seed=0, steps=1, height=16, width=16, batch_size=8)
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pt")  # a stand-in checkpoint
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "runs"))
    run = runner.run("aimfair", "smoke", {"weights": str(tmp_path / "resnet18.pt"),
        "dataset": "celeba", "data_root": str(root), "target": "Smiling", "protected": "Male",
        "sd_images": str(tmp_path / "sd"), "sd_plain_images": str(tmp_path / "sd"), "n_real": "16",
        "n_test": "0", "model": "resnet18", "image_size": "32", "batch_size": "8", "topk_sweep": "0.6",
        # k above half the tensors: two top-k sets always share a tensor (at 0.5 they can be disjoint
        # on tiny random data, and SFT then has nothing to train)
        "syn_bias_sweep": "1:9", "syn_amounts": "0.5"}, log=lambda m: None)
    assert "celeba" in run.provenance["data"]
    runs = pd.read_csv(run.path / "results" / "all_runs.csv")
    assert {"main", "table3", "table4", "table5", "table6", "table7", "top-k"} <= set(runs.table)
    t3 = pd.read_csv(run.path / "results" / "table3_strategies.csv")
    assert len(t3) == 7 and t3.acc.between(0, 100).all()
