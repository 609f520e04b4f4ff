"""Conditional DDPM (diffusers), its cache and sample pools, and the quality report."""
import time

import numpy as np
import pytest
import torch

from fairbook.generative import ddpm, quality

TINY = ddpm.DDPMConfig(channels=(8, 16), steps=3, batch_size=8, seed=0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def data(n=24, c=1, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, c, size, size), dtype=np.float32), rng.integers(0, 3, n)


def test_padding_to_a_multiple_of_four_and_back():
    X = torch.rand(2, 1, 28, 28)
    four_levels = ddpm.DDPMConfig(channels=(8, 8, 16, 16), patch=1)
    assert ddpm._multiple(four_levels) == 8 and ddpm._multiple(ddpm.DDPMConfig()) == 4
    assert ddpm._multiple(ddpm.DDPMConfig(channels=(8, 8, 16), patch=2)) == 8
    x = ddpm._to_model_space(X, 8)
    assert x.shape == (2, 1, 32, 32) and x[..., :2, :].eq(-1).all() and x[..., :, -2:].eq(-1).all()
    assert torch.allclose(x[..., 2:30, 2:30], X * 2 - 1)
    assert ddpm._to_model_space(X, 4).shape == (2, 1, 28, 28)  # 28 = 7 x 4: no padding needed
    unet = ddpm.build_unet(four_levels, (3, 28, 28), 4)
    assert unet.config.sample_size == 32 and unet.config.in_channels == 3
    assert unet.config.num_class_embeds == 5  # 4 conditions + the null condition of CFG
    # patch 2: a 3 x 28 x 28 image enters the UNet as 12 x 14 x 14
    folded = ddpm.build_unet(ddpm.DDPMConfig(channels=(8, 16), patch=2), (3, 28, 28), 4)
    assert folded.config.sample_size == 14 and folded.config.in_channels == 12
    assert folded.config.out_channels == 12


def test_fold_is_lossless_and_groups_pixel_blocks():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    f = ddpm._fold(x, 2)
    assert f.shape == (2, 12, 2, 2)
    # channel 0 of the folded image holds the top-left pixel of every 2x2 block of channel 0
    assert torch.equal(f[:, 0], x[:, 0, ::2, ::2]) and torch.equal(f[:, 3], x[:, 0, 1::2, 1::2])
    assert torch.equal(ddpm._unfold(f, 2), x) and ddpm._fold(x, 1) is x


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = ddpm.DDPMConfig(steps=110, warmup=10, lr_schedule="cosine")
    assert ddpm._lr_factor(cfg, 0) == pytest.approx(0.1) and ddpm._lr_factor(cfg, 9) == pytest.approx(1.0)
    assert ddpm._lr_factor(cfg, 10) == pytest.approx(1.0)
    assert ddpm._lr_factor(cfg, 60) == pytest.approx(0.5)  # half way through the cosine
    assert ddpm._lr_factor(cfg, 110) == pytest.approx(0.0, abs=1e-12)
    const = ddpm.DDPMConfig(steps=110, warmup=0, lr_schedule="constant")
    assert ddpm._lr_factor(const, 0) == ddpm._lr_factor(const, 100) == 1.0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_every_option_trains_and_samples(prediction_type):
    X, c = data(size=8)
    cfg = ddpm.DDPMConfig(channels=(8, 16), steps=3, batch_size=8, prediction_type=prediction_type,
                          snr_gamma=5.0, ema_decay=0.99, patch=2)
    m = ddpm.train_ddpm(X, c, 3, cfg)
    assert m.scheduler.config.prediction_type == prediction_type and all(np.isfinite(m.history))
    assert ddpm.sample(m, [0, 1], steps=2, guidance=2.0).shape == (2, 8, 8, 1)


def test_ema_weights_are_what_is_kept():
    """With EMA the returned UNet differs from the last optimiser state; without it, it does not."""
    X, c = data(size=8)
    base = dict(channels=(8, 16), steps=6, batch_size=8, seed=3)
    plain = ddpm.train_ddpm(X, c, 3, ddpm.DDPMConfig(**base, ema_decay=0.0))
    ema = ddpm.train_ddpm(X, c, 3, ddpm.DDPMConfig(**base, ema_decay=0.9))
    assert plain.history == ema.history  # same training trajectory ...
    diff = sum((a - b).abs().sum().item() for a, b in zip(plain.unet.parameters(), ema.unet.parameters()))
    assert diff > 0  # ... but the EMA model keeps averaged weights


def test_cell_condition():
    assert ddpm.cell_condition([0, 0, 1, 1], [0, 1, 0, 1]).tolist() == [0, 1, 2, 3]


def test_train_sample_shapes_range_and_determinism():
    X, c = data(size=7)  # 7 -> padded to 8 for the 2-level UNet, cropped back to 7
    m1 = ddpm.train_ddpm(X, c, 3, TINY)
    m2 = ddpm.train_ddpm(X, c, 3, TINY)
    assert len(m1.history) == TINY.steps and all(np.isfinite(m1.history))
    assert m1.history == m2.history
    imgs = ddpm.sample(m1, [0, 1, 2, 2], steps=2, seed=5)
    assert imgs.shape == (4, 7, 7, 1) and imgs.dtype == np.uint8
    again = ddpm.sample(m2, [0, 1, 2, 2], steps=2, seed=5)
    assert np.array_equal(imgs, again)
    assert not np.array_equal(imgs, ddpm.sample(m1, [0, 1, 2, 2], steps=2, seed=6))
    # an image depends on (seed, index, condition), not on the batch it is drawn in
    split = ddpm.sample(m1, [0, 1, 2, 2], steps=2, seed=5, batch_size=3)
    assert np.array_equal(imgs, split)
    guided = ddpm.sample(m1, [0, 1, 2, 2], steps=2, seed=5, guidance=3.0)
    assert guided.shape == imgs.shape and not np.array_equal(guided, imgs)


def test_training_reduces_the_denoising_loss():
    X, c = data(n=64, size=8)
    cfg = ddpm.DDPMConfig(channels=(8, 16), steps=60, batch_size=16, lr=3e-3, warmup=5, seed=1,
                          prediction_type="epsilon", snr_gamma=0)  # an unweighted loss, comparable over steps
    m = ddpm.train_ddpm(X, c, 3, cfg)
    assert np.mean(m.history[-15:]) < 0.8 * np.mean(m.history[:5])


def test_bad_inputs():
    X, c = data()
    with pytest.raises(ValueError, match=r"conditions must lie in \[0, 1\]"):
        ddpm.train_ddpm(X, c, 2, TINY)
    with pytest.raises(ValueError, match="one condition per image"):
        ddpm.train_ddpm(X, c[:-1], 3, TINY)
    with pytest.raises(ValueError, match="cond_dropout"):
        ddpm.DDPMConfig(cond_dropout=1.0)
    with pytest.raises(ValueError, match="beta_schedule"):
        ddpm.DDPMConfig(beta_schedule="cosine-ish")
    for bad in ({"patch": 0}, {"ema_decay": 1.0}, {"snr_gamma": -1}, {"prediction_type": "sample"},
                {"lr_schedule": "step"}, {"warmup": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ddpm.DDPMConfig(**bad)
    m = ddpm.train_ddpm(X, c, 3, TINY)
    with pytest.raises(ValueError, match="conditions must lie"):
        ddpm.sample(m, [3], steps=1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ddpm.sample(m, [0], steps=0)


def test_save_load_roundtrip_uses_safetensors(tmp_path):
    X, c = data(c=3)
    m = ddpm.train_ddpm(X, c, 3, TINY)
    path = m.save(tmp_path / "gen")
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    back = ddpm.ConditionalDDPM.load(path)
    assert back.config == TINY and back.n_conditions == 3 and back.image_shape == (3, 8, 8)
    assert np.array_equal(ddpm.sample(m, [0, 2], steps=2, seed=1), ddpm.sample(back, [0, 2], steps=2, seed=1))
    with pytest.raises(FileNotFoundError, match="no saved generator"):
        ddpm.ConditionalDDPM.load(tmp_path / "nothing")


def test_cache_hit_reuses_and_keys_on_data_config_and_seed(cache):
    X, c = data()
    logs = []
    first = ddpm.cached_generator("toy", "train", X, c, 3, TINY, log=logs.append)
    t = time.perf_counter()
    hit = ddpm.cached_generator("toy", "train", X, c, 3, TINY, log=logs.append)
    assert time.perf_counter() - t < 2.0
    assert "cache hit" in logs[-1] and len(list(cache.glob("generators/toy-*"))) == 1
    assert np.array_equal(ddpm.sample(first, [1], steps=2), ddpm.sample(hit, [1], steps=2))
    ddpm.cached_generator("toy", "train", X, c, 3, ddpm.DDPMConfig(**{**TINY.__dict__, "seed": 1}))
    X2 = X.copy()
    X2[0, 0, 0, 0] += 0.5
    ddpm.cached_generator("toy", "train", X2, c, 3, TINY)
    ddpm.cached_generator("toy", "val", X, c, 3, TINY)
    assert len(list(cache.glob("generators/toy-*"))) == 4
    assert not list(cache.glob("generators/.tmp-*"))


def test_pool_has_the_edm_keys(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    path = ddpm.write_pool(tmp_path / "pool.npz", imgs, [0, 1, 2, 3, 4], seeds=[9, 9, 9, 9, 9])
    with np.load(path) as z:
        assert set(z.files) == {"image", "label", "seed"}
    back, labels = ddpm.read_pool(path)
    assert np.array_equal(back, imgs) and labels.tolist() == [0, 1, 2, 3, 4]
    # a file in the EDM release's own format (only image and label) reads the same way
    np.savez(tmp_path / "edm.npz", image=imgs, label=np.arange(5))
    assert np.array_equal(ddpm.read_pool(tmp_path / "edm.npz")[0], imgs)
    np.savez(tmp_path / "bad.npz", x=imgs)
    with pytest.raises(ValueError, match="missing keys"):
        ddpm.read_pool(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="uint8"):
        ddpm.write_pool(tmp_path / "p.npz", imgs.astype(np.float32), np.arange(5))
    t = ddpm.pool_to_tensor(imgs)
    assert t.shape == (5, 3, 8, 8) and t.dtype == np.float32 and t.max() <= 1.0
    assert t[1, 2, 3, 4] == pytest.approx(imgs[1, 3, 4, 2] / 255)


def test_quality_report_against_a_hand_made_classifier():
    """A 'classifier' that reads the class off the mean brightness of the image."""
    class Bright(torch.nn.Module):
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([-10 * (m - 0.25).abs(), -10 * (m - 0.75).abs()], 1)

    imgs = np.concatenate([np.full((4, 4, 4, 1), 64, np.uint8), np.full((4, 4, 4, 1), 192, np.uint8)])
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    rep = quality.classifier_report(Bright(), ddpm.pool_to_tensor(imgs), labels, ["dark", "bright"])
    assert rep.condition.tolist() == ["dark", "bright", "all"]
    assert rep.n.tolist() == [4, 4, 8]
    assert rep.accuracy.tolist() == pytest.approx([0.75, 0.75, 0.75])
    spec = quality.hardness_spectrum(Bright(), ddpm.pool_to_tensor(imgs[:2]), [0, 0],
                                     ddpm.pool_to_tensor(imgs), labels)
    assert spec.groupby("source").size().to_dict() == {"generated": 8, "real": 2}
    assert spec.confidence.between(0, 1).all()
    fig = quality.sample_grid(imgs, labels, n_per_condition=3, names=["dark", "bright"])
    assert len(fig.axes) == 6


def test_make_pool_writes_every_condition_with_seeds(tmp_path):
    X, c = data()
    m = ddpm.train_ddpm(X, c, 3, TINY)
    path = ddpm.make_pool(m, 2, tmp_path / "pool.npz", steps=2, seed=7)
    with np.load(path) as z:
        assert z["label"].tolist() == [0, 0, 1, 1, 2, 2] and z["image"].shape == (6, 8, 8, 1)
        assert (z["seed"] == 7).all() and z["index"].tolist() == list(range(6))
        # the pool's images are exactly what sample() draws for those labels and seed
        assert np.array_equal(z["image"], ddpm.sample(m, z["label"], steps=2, seed=7))


def test_cached_pool_is_written_once_and_reused(cache):
    X, c = data()
    gen = ddpm.cached_generator("toy", "train", X, c, 3, TINY)
    logs = []
    imgs, labels = ddpm.cached_pool(gen, 2, steps=2, seed=4, conditions=[2, 0], log=logs.append)
    assert labels.tolist() == [2, 2, 0, 0] and "written" in logs[-1]
    again, _ = ddpm.cached_pool(gen, 2, steps=2, seed=4, conditions=[2, 0], log=logs.append)
    assert "cache hit" in logs[-1] and np.array_equal(imgs, again)
    assert np.array_equal(imgs, ddpm.sample(gen, labels, steps=2, seed=4))
    ddpm.cached_pool(gen, 2, steps=2, seed=5, conditions=[2, 0])
    assert len(list((gen.cache_path / "pools").glob("*.npz"))) == 2
    # a generator that is not cached samples without writing anything
    gen.cache_path = None
    assert np.array_equal(ddpm.cached_pool(gen, 2, steps=2, seed=4, conditions=[2, 0])[0], imgs)


def test_dpm_solver_and_bf16_sampling():
    X, c = data(size=8)
    m = ddpm.train_ddpm(X, c, 3, TINY)
    conds = [0, 1, 2, 2, 1]
    dpm = ddpm.sample(m, conds, steps=3, seed=5, sampler="dpm++", guidance=1.5)
    assert dpm.shape == (5, 8, 8, 1) and dpm.dtype == np.uint8
    # per image, not per batch, also for the multistep solver (a fresh scheduler per batch)
    assert np.array_equal(dpm, ddpm.sample(m, conds, steps=3, seed=5, sampler="dpm++", guidance=1.5, batch_size=2))
    assert not np.array_equal(dpm, ddpm.sample(m, conds, steps=3, seed=5, guidance=1.5))   # ddim differs
    # bf16 autocast: the same images up to the UNet's bf16 rounding
    fp32 = ddpm.sample(m, conds, steps=3, seed=5).astype(float)
    bf16 = ddpm.sample(m, conds, steps=3, seed=5, precision="bf16").astype(float)
    assert np.abs(fp32 - bf16).mean() < 6 and not np.array_equal(fp32, bf16)
    with pytest.raises(ValueError, match="sampler must be one of"):
        ddpm.sample(m, conds, sampler="euler")
    with pytest.raises(ValueError, match="precision one of"):
        ddpm.sample(m, conds, precision="fp16")


def test_cached_pool_keys_on_sampler_and_precision(cache):
    X, c = data()
    gen = ddpm.cached_generator("toy", "train", X, c, 3, TINY)
    a, _ = ddpm.cached_pool(gen, 2, steps=4, seed=4, conditions=[1])
    b, _ = ddpm.cached_pool(gen, 2, steps=4, seed=4, conditions=[1], sampler="dpm++")
    ddpm.cached_pool(gen, 2, steps=4, seed=4, conditions=[1], precision="bf16")
    assert len(list((gen.cache_path / "pools").glob("*.npz"))) == 3 and not np.array_equal(a, b)
    assert np.array_equal(b, ddpm.sample(gen, [1, 1], steps=4, seed=4, sampler="dpm++"))


def test_auto_precision_follows_the_device(monkeypatch):
    assert ddpm.resolve_precision("fp32") == "fp32" and ddpm.resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert ddpm.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert ddpm.resolve_precision("auto", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        ddpm.resolve_precision("half")
