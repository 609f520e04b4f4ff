"""AIM-Fair's generation path (§3.1, §4.3), end to end and offline: prompts -> tiny Stable
Diffusion pipeline built from configs -> saved layout -> read back."""
import json
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pandas as pd
import pytest

from fairbook.generative import prompts as P
from fairbook.generative import sd

PATTERN = re.compile(r"^Portrait face photo of an? (.+?) (\S+) with .+, head tilted .+\.$")
GEN = dict(steps=2, height=64, width=64, batch_size=2)


@pytest.fixture(scope="module")
def cells():
    return P.make_cells({"not smiling": 0, "smiling": 1}, {"female": 0, "male": 1})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models root holding the tiny pipeline where $FAIRBOOK_MODELS would hold SD 2.1."""
    root = tmp_path_factory.mktemp("models")
    sd.tiny_pipeline(root / sd.MODEL_DIRNAME, seed=0)
    return root


@pytest.fixture(scope="module")
def pipe(models):
    return sd.load_pipeline(models / sd.MODEL_DIRNAME, device="cpu")


@pytest.fixture(scope="module")
def prompts(cells):
    return P.contextual_prompts(cells, 3, P.TemplateExpander(seed=0))


# ------------------------------------------------------------------------------------ prompts
def test_plain_prompt_is_the_papers_example(cells):
    assert P.plain_prompt("smiling", "male") == "Portrait face photo of a smiling male."
    assert P.plain_prompt("attractive", "female") == "Portrait face photo of an attractive female."
    assert P.plain_prompt("smiling", "young", template="A photo of {a} {target} {protected} "
                          "person.") == "A photo of a smiling young person."
    plain = P.plain_prompts(cells)
    assert list(plain) == cells and all(len(v) == 1 for v in plain.values())
    assert plain[cells[0]] == ["Portrait face photo of a not smiling female."]


def test_make_cells_labels_and_names():
    cells = P.make_cells({"smiling": 1, "not smiling": 0}, ("female", "male"))
    assert [(c.y, c.a, c.target, c.protected) for c in cells] == [
        (0, 0, "not smiling", "female"), (0, 1, "not smiling", "male"),
        (1, 0, "smiling", "female"), (1, 1, "smiling", "male")]
    assert cells[1].name == "y0_a1_not-smiling_male"
    assert P.as_cell({"target": "smiling", "protected": "male", "y": 1, "a": 1}) == cells[3]
    assert P.as_cell(("smiling", "male", 1, 1)) == cells[3]
    with pytest.raises(ValueError, match="distinct"):
        P.make_cells({"smiling": 1, "grinning": 1}, ("female", "male"))
    with pytest.raises(ValueError, match="single string"):
        P.make_cells("smiling", ("female", "male"))
    with pytest.raises(ValueError, match="non-negative int"):
        P.Cell(y=-1, a=0, target="smiling", protected="male")


def test_instruction_has_the_six_parts_in_the_papers_order():
    text = P.instruction("Write prompts for face photos", 50, "smiling", "male")
    lines = text.splitlines()
    heads = ["Task:", "Number of prompts:", "Target attribute:", "Protected attribute:",
             "Other detailed descriptions:", "Prompt format:"]
    assert [line.split(":")[0] + ":" for line in lines] == heads
    assert lines[0] == "Task: Write prompts for face photos."
    assert "50" in lines[1] and "exactly 50 prompts" in lines[5]
    assert "smiling" in lines[2] and "male" in lines[3]
    for detail in ("face", "hair", "eyes", "head pose"):
        assert detail in lines[4]
    assert "Portrait face photo of a smiling male with <details>, head tilted <head pose>." in text
    no_pose = P.instruction(n_prompts=25, details=("face", "hair", "eyes"))
    assert "head tilted" not in no_pose and "with <details>." in no_pose
    custom = P.instruction(n_prompts=5, target="smiling", protected="young",
                           prompt_format="Close-up of {a} {target} {protected} person, <details>.")
    assert "Close-up of a smiling young person, <details>." in custom
    with pytest.raises(ValueError, match="n_prompts"):
        P.instruction(n_prompts=0)
    with pytest.raises(ValueError, match="details"):
        P.instruction(details=())


def test_template_expander_is_deterministic_distinct_and_follows_the_pattern():
    text = P.instruction(n_prompts=200, target="smiling", protected="male")
    a = P.TemplateExpander(seed=3)(text, 200)
    assert a == P.TemplateExpander(seed=3)(text, 200)
    assert a != P.TemplateExpander(seed=4)(text, 200)
    assert len(set(a)) == 200
    for p in a:
        m = PATTERN.match(p)
        assert m and m.groups() == ("smiling", "male"), p
        assert "hair" in p and "eyes" in p and "face and" in p
        assert "<" not in p and ">" not in p
    # no group words beyond the cell's own in the shipped vocabularies
    vocab = " ".join(w for v in P.VOCABULARIES.values() for w in v)
    for word in ("male", "female", "man", "woman", "young", "old", "smil", "beard", "grey hair"):
        assert not re.search(rf"\b{word}", vocab), word
    # scene details get their own slots
    text = P.instruction(n_prompts=5, details=("hair", "eyes", "head pose", "lighting",
                                                "background"))
    for p in P.TemplateExpander(0)(text, 5):
        assert re.match(r"^Portrait face photo of a smiling male with [^,]+ hair, [^,]+ eyes, "
                        r"head tilted [^,]+, [^,]+, [^,]+ background\.$", p), p


def test_template_expander_is_independent_of_cell_order(cells):
    gen = P.TemplateExpander(seed=7)
    forward = P.contextual_prompts(cells, 4, gen)
    backward = P.contextual_prompts(cells[::-1], 4, gen)
    assert forward == backward
    assert len({p for v in forward.values() for p in v}) == 16


def test_template_expander_errors():
    gen = P.TemplateExpander(0)
    with pytest.raises(ValueError, match="at most 10 distinct"):
        gen(P.instruction(n_prompts=11, details=("head pose",),
                          prompt_format="Photo of {a} {target} {protected}, head tilted "
                                        "<head pose>."), 11)
    with pytest.raises(ValueError, match="no vocabulary for .*tattoos"):
        gen(P.instruction(n_prompts=2, details=("hair", "tattoos")), 2)
    with pytest.raises(ValueError, match="reads only instructions written by"):
        gen("Write 5 prompts about smiling men.", 5)
    custom = P.TemplateExpander(0, vocabularies={"hat": ["a red cap", "a straw hat"]})
    out = custom(P.instruction(n_prompts=2, details=("hat",)), 2)
    assert sorted(p.split(" with ")[1] for p in out) == ["a red cap.", "a straw hat."]


def test_contextual_prompts_validates_a_user_llm(cells):
    def llm(answer):
        return lambda instruction, n: answer(instruction, n)

    def good(instruction, n):
        t = re.search(r"Target attribute: (.+?)\.", instruction).group(1)
        s = re.search(r"Protected attribute: (.+?)\.", instruction).group(1)
        return [f"A {t} {s} number {i}" for i in range(n)]

    out = P.contextual_prompts(cells, 2, good)
    assert out[cells[3]] == ["A smiling male number 0", "A smiling male number 1"]
    # a raw numbered answer string is split into prompts
    numbered = P.contextual_prompts(cells[3:], 2, lambda i, n: '1. "A smiling male, red hair"\n'
                                    '2) A smiling male, blue eyes\n')
    assert numbered[cells[3]] == ["A smiling male, red hair", "A smiling male, blue eyes"]

    cases = [
        (lambda i, n: good(i, n)[:-1], "asked for 3 prompts, the generator returned 2"),
        (lambda i, n: good(i, n)[:-1] + [""], "prompt 2 is not a non-empty string"),
        (lambda i, n: good(i, n)[:-1] + [None], "prompt 2 is not a non-empty string"),
        (lambda i, n: [good(i, n)[0]] * n, "duplicate prompts"),
        (lambda i, n: 42, "must return a list of strings"),
        (lambda i, n: [p.replace("male", "person") for p in good(i, n)],
         "y0_a0_not-smiling_female: prompt 0 does not mention the protected attribute 'female'"),
        (lambda i, n: [p + ", female" for p in good(i, n)],
         "y0_a1_not-smiling_male: prompt 0 mentions 'female', the protected value of another "
         "cell"),
        (lambda i, n: [p + ", not smiling" for p in good(i, n)],
         "y1_a0_smiling_female: prompt 0 mentions 'not smiling', the target value of another "
         "cell"),
    ]
    for answer, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            P.contextual_prompts(cells, 3, llm(answer))
    # "male" inside "female" does not count as mentioning male
    with pytest.raises(ValueError, match="does not mention the protected attribute 'male'"):
        P.contextual_prompts(cells[3:], 1, lambda i, n: ["A smiling female"])
    # the attribute check can be switched off (e.g. an LLM that writes "man" for "male")
    relaxed = P.contextual_prompts(cells[3:], 1, lambda i, n: ["A grinning man"],
                                   check_attributes=False)
    assert relaxed[cells[3]] == ["A grinning man"]
    with pytest.raises(ValueError, match="callable"):
        P.contextual_prompts(cells, 1, generator="gpt-4")


def test_save_and_load_prompts(tmp_path, prompts):
    path = P.save_prompts(tmp_path / "p" / "prompts.json", prompts, meta={"llm": "template"})
    assert P.load_prompts(path) == prompts
    loaded, meta = P.load_prompts(path, with_meta=True)
    assert meta == {"llm": "template"} and list(loaded) == list(prompts)
    (tmp_path / "bad.json").write_text(json.dumps({"cells": []}))
    with pytest.raises(ValueError, match="not a fairbook prompt file"):
        P.load_prompts(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        P.load_prompts(tmp_path / "missing.json")


# ------------------------------------------------------------------------- Stable Diffusion
def test_aimfair_settings():
    assert dict(sd.AIMFAIR_SETTINGS) == {"steps": 50, "guidance": 9.0, "height": 512,
                                         "width": 512}
    assert sd.AIMFAIR_PROMPTS_PER_CELL == 50 and sd.AIMFAIR_IMAGES_PER_CELL == 10_000


def test_load_pipeline_uses_ddim_from_the_models_config_and_no_safety_checker(pipe, models):
    from diffusers import DDIMScheduler
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.scheduler.config.steps_offset == 1
    saved = json.loads((models / sd.MODEL_DIRNAME / "scheduler" / "scheduler_config.json")
                       .read_text())
    assert saved["_class_name"] == "PNDMScheduler"  # what SD ships; DDIM is our choice
    assert pipe.safety_checker is None
    assert list((models / sd.MODEL_DIRNAME / "unet").glob("*.safetensors"))


def test_load_pipeline_from_fairbook_models(models, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_MODELS", str(models))
    assert sd.default_model_path() == models / "stable-diffusion-2-1"
    assert sd.load_pipeline(device="cpu").unet.config.sample_size == 8


def test_missing_model_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv("FAIRBOOK_MODELS", raising=False)
    with pytest.raises(FileNotFoundError) as e:
        sd.load_pipeline(tmp_path / "nowhere")
    msg = str(e.value)
    for part in ("stabilityai/stable-diffusion-2-1-base", "stabilityai/stable-diffusion-2-1",
                 "hf download", "--local-dir", "huggingface-cli download",
                 "$FAIRBOOK_MODELS/stable-diffusion-2-1", "model_index.json",
                 str(tmp_path / "nowhere")):
        assert part in msg, part
    with pytest.raises(FileNotFoundError, match="FAIRBOOK_MODELS is not set"):
        sd.load_pipeline()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no model_index.json"):
        sd.load_pipeline(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
    with pytest.raises(FileNotFoundError, match="diffusers could not load it"):
        sd.load_pipeline(broken)


def test_generate_and_load_end_to_end(pipe, prompts, cells, tmp_path):
    out = tmp_path / "synthetic"
    manifest = sd.generate_cells(pipe, prompts, 3, out, seed=0, **GEN)
    assert list(manifest.columns) == ["file", "cell", "target", "protected", "y", "a", "index",
                                      "prompt_index", "prompt", "seed"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [c.name for c in cells] + ["manifest.csv", "prompts.json"])
    for c in cells:
        assert sorted(p.name for p in (out / c.name).iterdir()) == [
            "00000.png", "00001.png", "00002.png"]
    # prompts cycle, seeds follow the documented rule
    for row in manifest.itertuples():
        cell = next(c for c in cells if c.name == row.cell)
        assert row.prompt == prompts[cell][row.index % 3]
        assert row.seed == sd.image_seed(0, cell.y, cell.a, row.index)
    assert manifest["seed"].nunique() == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    data = sd.load_cells(out)
    assert len(data) == 12 and data.X.shape == (12, 3, 64, 64) and data.X.dtype == np.float32
    assert 0.0 <= data.X.min() and data.X.max() <= 1.0 and data.X.std() > 0.01
    assert data.counts().to_dict() == {c.name: 3 for c in cells}
    assert pd.crosstab(data.y, data.a).values.tolist() == [[3, 3], [3, 3]]
    for c in cells:
        rows = (data.manifest["cell"] == c.name).to_numpy()
        assert set(data.y[rows]) == {c.y} and set(data.a[rows]) == {c.a}
    assert data.prompts == prompts and data.cells == cells
    assert data.settings["steps"] == 2 and data.settings["scheduler"] == "DDIMScheduler"
    assert data.settings["n_per_cell"] == {c.name: 3 for c in cells}
    ds = data.to_dataset()
    assert ds.classes == ["not smiling", "smiling"] and ds.group_names["a"] == ("female", "male")
    assert (ds.groups["a"] == data.a).all()

    lazy = sd.load_cells(out, images=False)
    assert lazy.X is None and all(p.is_file() for p in lazy.paths)
    small = sd.load_cells(out, image_size=32)
    assert small.X.shape == (12, 3, 32, 32)


def test_same_seed_same_images_different_seed_different(pipe, prompts, tmp_path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        sd.generate_cells(pipe, prompts, 2, tmp_path / name, seed=seed, **GEN)
        runs[name] = sd.load_cells(tmp_path / name).X
    assert np.array_equal(runs["a"], runs["b"])
    for f in (tmp_path / "a").rglob("*.png"):  # bitwise: the files themselves
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
    assert not np.array_equal(runs["a"], runs["c"])
    assert all(not np.array_equal(a, c) for a, c in zip(runs["a"], runs["c"]))


def test_per_cell_counts_and_seeds_independent_of_other_cells(pipe, prompts, cells, tmp_path):
    biased = {cells[0]: 1, cells[1]: 3, cells[2].name: 3, cells[3]: 1}  # a 1:3 biased set
    m = sd.generate_cells(pipe, prompts, biased, tmp_path / "biased", seed=0, **GEN)
    assert m.groupby("cell").size().to_dict() == {c.name: (1 if c in (cells[0], cells[3]) else 3)
                                                  for c in cells}
    sd.generate_cells(pipe, {cells[3]: prompts[cells[3]]}, 1, tmp_path / "one", seed=0, **GEN)
    a = sd.load_cells(tmp_path / "biased")
    b = sd.load_cells(tmp_path / "one")
    last = (a.manifest["cell"] == cells[3].name).to_numpy()
    assert np.array_equal(a.X[last], b.X)  # image 0 of a cell does not depend on other cells
    with pytest.raises(ValueError, match="missing"):
        sd.generate_cells(pipe, prompts, {cells[0]: 1}, tmp_path / "x", seed=0, **GEN)


def test_refuses_to_overwrite_a_complete_layout(pipe, prompts, tmp_path):
    out = tmp_path / "layout"
    sd.generate_cells(pipe, prompts, 1, out, seed=0, **GEN)
    before = sd.load_cells(out).X
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sd.generate_cells(pipe, prompts, 1, out, seed=1, **GEN)
    assert np.array_equal(sd.load_cells(out).X, before)
    sd.generate_cells(pipe, prompts, 2, out, seed=1, overwrite=True, **GEN)
    after = sd.load_cells(out)
    assert len(after) == 8 and not np.array_equal(after.X[::2], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]
    # a folder that is not a layout is never replaced; an empty one is fine
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a generated layout"):
        sd.generate_cells(pipe, prompts, 1, other, seed=0, overwrite=True, **GEN)
    assert (other / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    sd.generate_cells(pipe, prompts, 1, tmp_path / "empty", seed=0, negative_prompt="blurry",
                      **GEN)
    assert sd.is_complete_layout(tmp_path / "empty")
    assert sd.load_cells(tmp_path / "empty").settings["negative_prompt"] == "blurry"


class FailingPipe:
    """Delegates to the real pipeline and raises on call number ``fail_at``."""

    def __init__(self, pipe, fail_at):
        self.pipe, self.fail_at, self.calls = pipe, fail_at, 0

    def __call__(self, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated failure mid-generation")
        return self.pipe(**kwargs)


def test_failure_mid_generation_leaves_no_layout(pipe, prompts, tmp_path):
    out = tmp_path / "layout"
    failing = FailingPipe(pipe, fail_at=3)
    with pytest.raises(RuntimeError, match="simulated failure"):
        sd.generate_cells(failing, prompts, 3, out, seed=0, **GEN)
    assert failing.calls == 3  # images were written before the failure
    assert list(tmp_path.iterdir()) == []  # no layout, no temporary folder
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sd.load_cells(out)
    # a failed overwrite keeps the previous layout intact
    sd.generate_cells(pipe, prompts, 1, out, seed=0, **GEN)
    good = sd.load_cells(out)
    with pytest.raises(RuntimeError, match="simulated failure"):
        sd.generate_cells(FailingPipe(pipe, fail_at=2), prompts, 2, out, seed=1, overwrite=True,
                          **GEN)
    again = sd.load_cells(out)
    assert np.array_equal(again.X, good.X) and again.manifest.equals(good.manifest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]


def test_load_cells_reports_a_damaged_layout(pipe, prompts, cells, tmp_path):
    out = tmp_path / "layout"
    sd.generate_cells(pipe, prompts, 2, out, seed=0, **GEN)
    (out / cells[2].name / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 8 images .* missing, e\.g\. "
                       + re.escape(f"{cells[2].name}/00001.png")):
        sd.load_cells(out)
    (out / "manifest.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no complete generated layout"):
        sd.load_cells(out)


def test_generate_cells_rejects_bad_arguments(pipe, prompts, cells, tmp_path):
    bad = [
        (dict(n_per_cell=0), "at least 1"),
        (dict(seed=-1), "seed must be a non-negative int"),
        (dict(height=60), "multiples of 8"),
        (dict(batch_size=0), "batch_size must be a positive int"),
        (dict(prompts={cells[0]: []}), "non-empty list"),
        (dict(prompts={cells[0]: "Portrait face photo"}), "non-empty list"),
    ]
    for change, message in bad:
        kwargs = {**dict(prompts=prompts, n_per_cell=1, seed=0), **GEN, **change}
        with pytest.raises(ValueError, match=message):
            sd.generate_cells(pipe, out_dir=tmp_path / "x", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_tiny_pipeline_is_deterministic_and_keeps_global_rng(tmp_path):
    import torch
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sd.tiny_pipeline(tmp_path / "a", seed=0)
    assert torch.equal(torch.rand(3), expected)
    sd.tiny_pipeline(tmp_path / "b", seed=0)
    sd.tiny_pipeline(tmp_path / "c", seed=1)
    weights = {k: (tmp_path / k / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
               for k in "abc"}
    assert weights["a"] == weights["b"] != weights["c"]
    # the tiny tokenizer keeps words whole, so prompts fit CLIP's 77 tokens like the real one
    pipe = sd.load_pipeline(tmp_path / "a", device="cpu")
    text = P.TemplateExpander(0)(P.instruction(n_prompts=1, details=(
        "face", "hair", "eyes", "head pose", "lighting", "background")), 1)[0]
    ids = pipe.tokenizer(text).input_ids
    assert len(ids) < 77
    assert pipe.tokenizer.convert_ids_to_tokens(ids[1:4]) == ["portrait</w>", "face</w>",
                                                              "photo</w>"]
