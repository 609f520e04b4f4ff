"""Unit tests of fairbook.models: MLP / SmallCNN / ResNets, local weights, head() and penultimate()."""
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import alexnet as tv_alexnet, resnet18 as tv_resnet18, resnet34 as tv_resnet34
from torchvision.models.resnet import BasicBlock

from fairbook import models as M


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


# ----------------------------------------------------------------------------------------- MLP

@pytest.mark.parametrize("in_dim, widths, out_dim, expected", [
    # MIME Adult: 101*50+50 + 2*(50*50+50) + 50*2+2 = 5100 + 5100 + 102
    (101, (50, 50, 50), 2, 10_302),
    # GCM: 120*200+200 + 200*200+200 + 200*1+1 = 24200 + 40200 + 201
    (120, (200, 200), 1, 64_601),
    # benchmark: 784*256+256 + 256*256+256 + 256*10+10 = 200960 + 65792 + 2570
    (784, (256, 256), 10, 269_322),
    # no hidden layer: a single 3 -> 4 linear map
    (3, (), 4, 16),
])
def test_mlp_parameter_count_by_hand(in_dim, widths, out_dim, expected):
    model = M.MLP(in_dim, widths, out_dim)
    assert n_params(model) == expected
    dims = [in_dim, *widths, out_dim]
    assert linear_shapes(model) == list(zip(dims[:-1], dims[1:]))
    assert isinstance(model.head, nn.Linear) and model.head.out_features == out_dim


def test_mlp_output_shapes_and_flatten():
    assert M.MLP(101, (50, 50, 50), 2)(torch.randn(7, 101)).shape == (7, 2)
    assert M.MLP(120, [200, 200], 1)(torch.randn(5, 120)).shape == (5, 1)
    # images are flattened: (N, 1, 28, 28) -> 784 features
    assert M.MLP(784, (256, 256), 10)(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_mlp_relu_between_layers_and_dropout():
    plain = M.MLP(4, (8, 8), 2)
    assert sum(isinstance(m, nn.ReLU) for m in plain.modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    drop = M.MLP(4, (8, 8), 2, dropout=0.5)
    drops = [m for m in drop.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.5 for d in drops)
    assert n_params(drop) == n_params(plain)
    x = torch.randn(64, 4)
    drop.eval()
    assert torch.equal(drop(x), drop(x))            # eval: dropout off
    drop.train()
    torch.manual_seed(0)
    assert not torch.equal(drop(x), drop(x))        # train: random masks


@pytest.mark.parametrize("in_dim, widths, out_dim", [
    (0, (50,), 2), (10, (50,), 0), (10, (50, 0), 2), (-1, (), 2), (10, (-5,), 2),
])
def test_mlp_invalid_sizes_raise(in_dim, widths, out_dim):
    with pytest.raises(ValueError, match="layer sizes must be >= 1"):
        M.MLP(in_dim, widths, out_dim)


# ------------------------------------------------------------------------------------ SmallCNN

@pytest.mark.parametrize("channels, size", [(1, 28), (3, 28), (1, 32), (3, 32)])
def test_small_cnn_output_shapes(channels, size):
    model = M.SmallCNN(in_channels=channels, num_classes=10)
    assert model(torch.randn(4, channels, size, size)).shape == (4, 10)
    three = M.SmallCNN(in_channels=channels, num_classes=3)
    assert three(torch.randn(2, channels, size, size)).shape == (2, 3)


def test_small_cnn_parameter_count_by_hand():
    # conv (no bias) + BN (weight, bias) per block, then the head
    expected = (9 * 1 * 16 + 2 * 16) + (9 * 16 * 32 + 2 * 32) + (9 * 32 * 64 + 2 * 64) + (64 * 10 + 10)
    assert expected == 24_058
    assert n_params(M.SmallCNN(1, 10)) == expected
    assert n_params(M.SmallCNN(3, 10)) == expected + 9 * 2 * 16
    assert M.SmallCNN(1, 10, channels=(8, 8, 24)).head.in_features == 24


def test_small_cnn_rejects_wrong_channel_count():
    with pytest.raises(RuntimeError):
        M.SmallCNN(in_channels=1)(torch.randn(2, 3, 28, 28))


# ------------------------------------------------------------------------------ cifar_resnet18

def test_cifar_resnet18_stem_and_output():
    model = M.cifar_resnet18()
    conv1 = model.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.padding == (1, 1)
    assert conv1.in_channels == 3 and conv1.out_channels == 64 and conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    seen = {}
    h1 = model.maxpool.register_forward_hook(lambda m, i, o: seen.__setitem__("stem", o.shape))
    h4 = model.layer4.register_forward_hook(lambda m, i, o: seen.__setitem__("layer4", o.shape))
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    h1.remove(), h4.remove()
    assert out.shape == (2, 10)
    assert seen["stem"] == (2, 64, 32, 32)         # no down-sampling in the stem
    assert seen["layer4"] == (2, 512, 4, 4)        # 32 / 2**3


def test_cifar_resnet18_built_from_basic_blocks():
    model = M.cifar_resnet18(num_classes=100)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        layer = getattr(model, name)
        assert len(layer) == 2 and all(type(b) is BasicBlock for b in layer)
    assert model.fc.out_features == 100
    # the well-known CIFAR ResNet-18 size: torchvision's minus the 7x7 stem plus a 3x3 one
    assert n_params(M.cifar_resnet18(10)) == 11_173_962
    stem_change = -7 * 7 * 3 * 64 + 3 * 3 * 3 * 64
    assert n_params(M.cifar_resnet18(10)) == n_params(tv_resnet18(num_classes=10)) + stem_change


def test_narrow_cifar_resnet18_keeps_the_62_tensors_at_any_width():
    wide, narrow = M.cifar_resnet18(1), M.cifar_resnet18(1, width=8, stem_stride=2)
    assert [n for n, _ in narrow.named_parameters()] == [n for n, _ in wide.named_parameters()]
    assert len(list(narrow.parameters())) == 62
    # every conv/bn/fc shrinks by 8x in channels: conv weights ~ 64x fewer scalars
    shapes = {n: tuple(p.shape) for n, p in narrow.named_parameters()}
    assert shapes["conv1.weight"] == (8, 3, 3, 3) and shapes["layer4.1.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (16, 8, 1, 1) and shapes["fc.weight"] == (1, 64)
    assert narrow.conv1.stride == (2, 2)
    narrow.eval()
    with torch.no_grad():
        assert narrow(torch.randn(2, 3, 28, 28)).shape == (2, 1)
    assert all(type(b) is BasicBlock for name in ("layer1", "layer2", "layer3", "layer4")
               for b in getattr(narrow, name))
    with pytest.raises(ValueError, match="cifar_resnet18: width got 0"):
        M.cifar_resnet18(1, width=0)
    with pytest.raises(ValueError, match="cifar_resnet18: stem_stride got 3"):
        M.cifar_resnet18(1, stem_stride=3)


# -------------------------------------------------------------------------------------- resnet

@pytest.mark.parametrize("depth, builder, num_classes, expected", [
    (18, tv_resnet18, 2, 11_689_512 - 513 * 1000 + 513 * 2),
    (18, tv_resnet18, 7, 11_689_512 - 513 * 1000 + 513 * 7),
    (34, tv_resnet34, 2, 21_797_672 - 513 * 1000 + 513 * 2),
])
def test_resnet_parameter_counts_match_torchvision(depth, builder, num_classes, expected):
    model = M.resnet(depth, num_classes=num_classes)
    assert n_params(model) == n_params(builder(num_classes=num_classes)) == expected
    assert model.fc.out_features == num_classes
    assert model.conv1.kernel_size == (7, 7) and not isinstance(model.maxpool, nn.Identity)


def test_resnet_forward_shape():
    model = M.resnet(18, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 2)


def test_resnet_bad_depth_raises():
    with pytest.raises(ValueError, match="50"):
        M.resnet(50)


def _randomised(model: nn.Module, seed: int = 1) -> nn.Module:
    """Every entry of the state dict (buffers included) set to a recognisable non-default value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
            else:
                t.fill_(7)
    return model


def _assert_state_equal(a: dict, b: dict, skip: str | None = None):
    keys = [k for k in a if skip is None or not k.startswith(skip)]
    assert keys and set(keys) == {k for k in b if skip is None or not k.startswith(skip)}
    for k in keys:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def src18():
    torch.manual_seed(0)
    return _randomised(M.resnet(18, num_classes=2))


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_resnet_loads_local_weights(src18, tmp_path, fmt):
    path = tmp_path / f"w.{fmt}"
    state = src18.state_dict()
    if fmt == "pt":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    fresh = M.resnet(18, num_classes=2)
    assert not torch.equal(fresh.conv1.weight, src18.conv1.weight)     # the check below can fail
    for weights in (path, str(path)):
        loaded = M.resnet(18, num_classes=2, weights=weights)
        _assert_state_equal(loaded.state_dict(), state)
        assert loaded.bn1.num_batches_tracked.item() == 7


def test_resnet_head_of_other_size_is_dropped(tmp_path):
    torch.manual_seed(0)
    src = _randomised(M.resnet(18, num_classes=10))
    path = tmp_path / "w10.safetensors"
    save_file(src.state_dict(), str(path))
    torch.manual_seed(123)
    reference = tv_resnet18(weights=None, num_classes=2)       # what a fresh head looks like
    torch.manual_seed(123)
    loaded = M.resnet(18, num_classes=2, weights=path)
    assert loaded.fc.weight.shape == (2, 512)
    _assert_state_equal(loaded.state_dict(), src.state_dict(), skip="fc.")
    assert torch.equal(loaded.fc.weight, reference.fc.weight)
    assert torch.equal(loaded.fc.bias, reference.fc.bias)
    assert not torch.equal(loaded.fc.weight, src.fc.weight[:2])


def test_resnet_backbone_only_weights_keep_fresh_head(src18, tmp_path):
    path = tmp_path / "backbone.pt"
    torch.save({k: v for k, v in src18.state_dict().items() if not k.startswith("fc.")}, path)
    loaded = M.resnet(18, num_classes=2, weights=path)
    _assert_state_equal(loaded.state_dict(), src18.state_dict(), skip="fc.")
    assert not torch.equal(loaded.fc.weight, src18.fc.weight)


def test_resnet_wrong_weights_raise(src18, tmp_path):
    state = src18.state_dict()
    extra = tmp_path / "extra.pt"                               # unexpected keys
    torch.save({**state, "layer5.0.conv1.weight": torch.zeros(1)}, extra)
    with pytest.raises(ValueError, match="do not fit ResNet-18"):
        M.resnet(18, num_classes=2, weights=extra)
    partial = tmp_path / "partial.pt"                           # missing backbone keys
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")}, partial)
    with pytest.raises(ValueError, match="layer4"):
        M.resnet(18, num_classes=2, weights=partial)
    r18 = tmp_path / "r18.safetensors"                          # ResNet-18 weights into a ResNet-34
    save_file(state, str(r18))
    with pytest.raises(ValueError, match="do not fit ResNet-34"):
        M.resnet(34, num_classes=2, weights=r18)
    mlp = tmp_path / "mlp.pt"                                   # another model altogether
    torch.save(M.MLP(4, (3,), 2).state_dict(), mlp)
    with pytest.raises(ValueError):
        M.resnet(18, num_classes=2, weights=mlp)
    cifar = tmp_path / "cifar.pt"                               # same keys, 3x3 stem: shape mismatch
    torch.save(M.cifar_resnet18(num_classes=2).state_dict(), cifar)
    with pytest.raises(RuntimeError, match="size mismatch"):
        M.resnet(18, num_classes=2, weights=cifar)


def test_resnet_unreadable_weights_raise(tmp_path):
    junk_pt = tmp_path / "junk.pt"
    junk_pt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(Exception):
        M.resnet(18, weights=junk_pt)
    junk_st = tmp_path / "junk.safetensors"
    junk_st.write_bytes(b"\x00" * 64)
    with pytest.raises(Exception):
        M.resnet(18, weights=junk_st)
    pickled = tmp_path / "model.pt"                              # a whole pickled module is refused
    torch.save(M.MLP(2, (), 2), pickled)                         # by weights_only=True
    with pytest.raises(Exception, match="[Ww]eights only"):
        M.resnet(18, weights=pickled)


def test_resnet_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        M.resnet(18, weights=tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):
        M.resnet(18, weights=tmp_path)                           # a directory is not a file


# ------------------------------------------------------------------------------------- alexnet

def test_alexnet_shapes_params_head_and_local_weights(tmp_path):
    torch.manual_seed(0)
    model = M.alexnet().eval()                                    # GCM CelebA: one logit
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1)
    assert n_params(model) == n_params(tv_alexnet(weights=None, num_classes=1))
    # torchvision's 1000-class AlexNet has 61,100,840 parameters; the 1-logit head saves 4097 * 999
    assert n_params(model) == 61_100_840 - 4097 * 999
    assert M.head(model) is model.classifier[6]
    path = tmp_path / "a.safetensors"                             # 1000-class weights: head dropped
    save_file(_randomised(tv_alexnet(weights=None)).state_dict(), str(path))
    loaded = M.alexnet(num_classes=1, weights=path)
    _assert_state_equal(loaded.state_dict(), load_file(str(path)), skip="classifier.6.")
    with pytest.raises(ValueError, match="do not fit AlexNet"):
        M.alexnet(weights=_saved(M.resnet(18, num_classes=1), tmp_path / "r.pt"))


def _saved(model: nn.Module, path):
    torch.save(model.state_dict(), path)
    return path


# ----------------------------------------------------------------------- head and penultimate

def test_head_finds_final_linear_layer():
    mlp, cnn, res = M.MLP(3, (4,), 2), M.SmallCNN(), M.cifar_resnet18()
    assert M.head(mlp) is mlp.head
    assert M.head(cnn) is cnn.head
    assert M.head(res) is res.fc
    with pytest.raises(ValueError, match="Sequential"):
        M.head(nn.Sequential(nn.Linear(3, 2)))

    class NotLinearHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Identity()
            self.fc = nn.Linear(3, 2)

    m = NotLinearHead()
    assert M.head(m) is m.fc


def _check_penultimate(model, x, feat_dim, batch_size=4096):
    feats, logits = M.penultimate(model, x, batch_size=batch_size)
    assert feats.shape == (len(x), feat_dim) and logits.shape[0] == len(x)
    lin = M.head(model)
    torch.testing.assert_close(logits, feats @ lin.weight.T + lin.bias)
    return feats, logits


@pytest.mark.parametrize("training", [True, False])
def test_penultimate_mlp(training):
    torch.manual_seed(0)
    model = M.MLP(5, (7, 6), 3, dropout=0.5).train(training)
    x = torch.randn(20, 5)
    feats, logits = _check_penultimate(model, x, 6, batch_size=7)   # three chunks
    assert model.training is training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x))                 # eval mode: dropout off
        torch.testing.assert_close(feats, model.body(x))
    assert not model.head._forward_hooks                            # hook removed


def test_penultimate_small_cnn_uses_eval_mode_and_restores_it():
    torch.manual_seed(0)
    model = M.SmallCNN(1, 4)
    with torch.no_grad():                       # make running statistics differ from batch ones
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(0.3), m.running_var.fill_(2.0)
    x = torch.randn(6, 1, 28, 28)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    feats, logits = _check_penultimate(model, x, 64)
    assert model.training
    assert all(m.training for m in model.modules())
    _assert_state_equal(model.state_dict(), before)                  # BN statistics untouched
    with torch.no_grad():
        eval_logits = model.eval()(x)
        train_logits = model.train()(x)
    torch.testing.assert_close(logits, eval_logits)
    assert not torch.allclose(logits, train_logits)


def test_penultimate_resnet_features_are_fc_input():
    torch.manual_seed(0)
    model = M.cifar_resnet18(num_classes=10).eval()
    feats, logits = _check_penultimate(model, torch.randn(3, 3, 32, 32), 512)
    assert not model.training
    assert (feats >= 0).all()                   # after ReLU + average pooling


def test_penultimate_accepts_arrays_and_datasets():
    class Indexed(torch.utils.data.Dataset):
        def __init__(self, X):
            self.X = X

        def __len__(self):
            return len(self.X)

        def __getitem__(self, i):
            return self.X[i], 0, i

    torch.manual_seed(0)
    model = M.MLP(5, (6,), 3)
    x = torch.randn(11, 5)
    ref_feats, ref_logits = _check_penultimate(model, x, 6)
    for X in (x.numpy(), Indexed(x)):
        feats, logits = M.penultimate(model, X, batch_size=4)
        torch.testing.assert_close(feats, ref_feats)
        torch.testing.assert_close(logits, ref_logits)


def test_penultimate_cleans_up_after_an_error():
    model = M.MLP(5, (4,), 2).train()
    with pytest.raises(RuntimeError):
        M.penultimate(model, torch.randn(3, 6))                      # wrong input width
    assert model.training and not model.head._forward_hooks
