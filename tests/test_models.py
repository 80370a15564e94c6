"""Tests of the model zoo: exact parameter counts, shapes, the registry round trip, freezing,
FastNet's whitening and SEResNet's stochastic depth. CPU only, small batches, no downloads."""
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision

from helpers.models import (
    DropPath, FastNet, SEResNet, TransferResNet18, build_model, count_parameters,
    init_whitening, model_names, model_spec, register_model,
)
from helpers.models import registry, transfer

ALL_NAMES = ["fastnet", "fiveconv", "fiveconv_bn", "mlp", "resnet18", "se_resnet",
             "simple_cnn", "transfer_resnet18"]

# Parameter counts for num_classes=10 (the first three are course specs).
PARAM_COUNTS = {
    "mlp": 563_082,
    "fiveconv": 529_742,
    "simple_cnn": 1_147_466,
    "fiveconv_bn": 530_238,
    "resnet18": 11_173_962,
    "se_resnet": 11_263_042,
    "fastnet": 1_972_792,
    "transfer_resnet18": 11_181_642,
}


def build(name, **kwargs):
    """build_model, never downloading weights."""
    if name == "transfer_resnet18":
        kwargs.setdefault("pretrained", False)
    return build_model(name, **kwargs)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def test_model_names_sorted_and_complete():
    assert model_names() == sorted(ALL_NAMES + ["layers"])  # "layers" has its own tests


@pytest.mark.parametrize("name", ALL_NAMES)
def test_parameter_counts(name):
    assert count_parameters(build(name)) == PARAM_COUNTS[name]


def test_count_parameters_trainable_only():
    model = build("transfer_resnet18", freeze="head")
    assert count_parameters(model, trainable_only=True) == 512 * 10 + 10
    fast = build("fastnet")
    frozen = 24 * 3 * 2 * 2 + 2 * (64 + 256 + 256)  # whitening filters and BN scales
    assert count_parameters(fast, trainable_only=True) == PARAM_COUNTS["fastnet"] - frozen


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_forward_backward(name, num_classes):
    kwargs = {"freeze": "none"} if name == "transfer_resnet18" else {}
    model = build(name, num_classes=num_classes, **kwargs).train()
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, num_classes, (4,))
    out = model(x)
    assert out.shape == (4, num_classes)
    loss = F.cross_entropy(out, y)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient for {pname}"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_spec_round_trip(name):
    model = build(name, num_classes=100).eval()
    spec = model_spec(model)
    assert spec["name"] == name and spec["kwargs"]["num_classes"] == 100
    rebuilt = build_model(spec["name"], **spec["kwargs"]).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_spec_survives_torch_save_weights_only(tmp_path):
    model = build("mlp", hidden=(16, 8), num_classes=3)
    torch.save({"spec": model_spec(model), "state_dict": model.state_dict()}, tmp_path / "c.pt")
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    rebuilt = build_model(ckpt["spec"]["name"], **ckpt["spec"]["kwargs"])
    rebuilt.load_state_dict(ckpt["state_dict"], strict=True)


def test_model_spec_errors_for_unregistered_model():
    with pytest.raises(ValueError, match="build_model"):
        model_spec(torch.nn.Linear(2, 2))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_model("resnet19")
    message = str(info.value)
    assert "resnet19" in message and "did you mean 'resnet18'" in message
    for name in ALL_NAMES:
        assert name in message


def test_bad_kwargs_say_what_is_accepted():
    with pytest.raises(TypeError) as info:
        build_model("mlp", num_clases=10)
    message = str(info.value)
    assert "num_clases" in message and "num_classes=10" in message and "hidden=" in message


def test_register_model_refuses_a_clash_but_allows_redefinition(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave no trace

    @register_model("test_tiny")
    class Tiny(torch.nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 32 * 32, num_classes)

    @register_model("test_tiny")  # the same class defined again, as when a notebook cell re-runs
    class Tiny(torch.nn.Module):  # noqa: F811
        def __init__(self, num_classes=10):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 32 * 32, num_classes)

    with pytest.raises(ValueError, match="already registered"):
        register_model("test_tiny")(torch.nn.Linear)
    assert isinstance(build_model("test_tiny"), Tiny)


@pytest.mark.parametrize("freeze, trainable", [
    ("head", {"fc"}),
    ("last_stage", {"layer4", "fc"}),
    ("none", {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}),
])
def test_transfer_freeze_modes(freeze, trainable):
    model = build("transfer_resnet18", freeze=freeze)
    assert model.pretrained_loaded is False
    tops = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert tops == trainable
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen.isdisjoint(trainable)


def test_transfer_bad_freeze_and_upsample():
    with pytest.raises(ValueError, match="freeze must be one of"):
        TransferResNet18(freeze="all", pretrained=False)
    model = TransferResNet18(num_classes=5, pretrained=False, upsample=64).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_transfer_warns_when_weights_cannot_be_downloaded(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", offline)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = TransferResNet18(pretrained=True)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "pretrained weights could not be downloaded (OSError: no network)" in messages[0]
    assert "continuing from random initialisation" in messages[0]
    assert model.pretrained_loaded is False
    assert transfer.FREEZE_MODES == ("head", "last_stage", "none")


def test_fastnet_whitening_freezes_and_whitens():
    model = FastNet(widths=(8, 16, 16))
    # Correlated channels, so whitening has something to undo.
    base = torch.randn(64, 1, 32, 32)
    images = torch.cat([base, base + 0.1 * torch.randn_like(base), torch.randn_like(base)], 1)
    init_whitening(model, images, eps=1e-8)
    assert not model.whiten.weight.requires_grad
    assert model.whiten.bias.requires_grad
    with torch.no_grad():
        out = model.whiten(images)[:, :12]  # the positive half of the filters
    feats = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    torch.testing.assert_close(feats.mean(0), torch.zeros(12, dtype=torch.double), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(torch.cov(feats.T), torch.eye(12, dtype=torch.double), atol=1e-3,
                               rtol=0)
    assert model(images[:4]).shape == (4, 10)
    # The frozen layer stays out of the optimizer's reach: no gradient flows into it.
    model(images[:4]).sum().backward()
    assert model.whiten.weight.grad is None


def test_fastnet_whitening_3x3_and_channels_last_bf16():
    model = FastNet(num_classes=100, widths=(8, 16, 16), whiten_kernel=3)
    images = torch.randn(16, 3, 32, 32)
    init_whitening(model, images)
    assert model.whiten.weight.shape == (54, 3, 3, 3)
    model = model.to(memory_format=torch.channels_last)
    x = images[:4].contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (4, 100)
    out.float().sum().backward()


def test_drop_path_only_in_train_mode():
    layer = DropPath(0.5)
    x = torch.ones(64, 4, 2, 2)
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    y = layer(x)
    kept = y.flatten(1).amax(1)
    assert set(kept.unique().tolist()) == {0.0, 2.0}  # whole samples dropped, the rest scaled
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_se_resnet_drop_path_rates_and_modes():
    model = SEResNet(depths=(1, 1, 1), widths=(8, 16, 32), reduction=4, drop_path=0.3)
    rates = [b.drop_path.p if isinstance(b.drop_path, DropPath) else 0.0
             for stage in model.stages for b in stage]
    assert rates == pytest.approx([0.0, 0.15, 0.3])
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
    # With no drop path, train mode is deterministic too.
    plain = SEResNet(depths=(1, 1, 1), widths=(8, 16, 32), reduction=4).train()
    with torch.no_grad():
        assert torch.equal(plain(x), plain(x))
