"""The loss terms (eqs. 4-6) and the content loss's local weight files."""

from __future__ import annotations

import pytest
import torch
import torchvision

from generator.errors import MissingWeightsError, SfumatoError
from generator.training.losses import (
    VGG19_FILE,
    PerceptualLoss,
    adversarial_loss,
    feature_matching_loss,
    hinge_d_loss,
    match_loss,
    random_perceptual_loss,
)


def test_hinge_loss_values():
    assert hinge_d_loss(torch.tensor([2.0]), torch.tensor([-2.0])) == 0  # confident and right
    assert hinge_d_loss(torch.tensor([0.0]), torch.tensor([0.0])) == 2
    assert hinge_d_loss(torch.tensor([-1.0]), torch.tensor([1.0])) == 4


def test_adversarial_feature_matching_and_match_terms():
    feats = [torch.ones(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)]
    shifted = [f + 0.5 for f in feats]
    assert feature_matching_loss(shifted, feats, weight=10.0) == pytest.approx(5.0)
    assert adversarial_loss(torch.tensor([3.0]), torch.tensor(1.0)) == pytest.approx(-2.0)
    w, e = torch.zeros(1, 4), torch.full((1, 4), 0.25)
    assert match_loss(w, e, weight=80.0) == pytest.approx(20.0)
    real = [torch.zeros(1, 2, requires_grad=True)]
    fake = [torch.ones(1, 2, requires_grad=True)]
    feature_matching_loss(fake, real).backward()
    assert real[0].grad is None and fake[0].grad is not None  # real features are targets


def test_content_loss_is_zero_for_identical_images_and_grows_with_difference():
    loss = random_perceptual_loss()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert loss(x, x) == 0
    near, far = loss(x + 0.05, x), loss(-x, x)
    assert 0 < near < far


def _features(arch: str) -> torch.nn.Sequential:
    """Just the convolutional part of a torchvision VGG (the classifier is 100M parameters)."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs[{"vgg19": "E", "vgg16": "D"}[arch]])


def _save_torchvision(path, arch):
    """A state dict with torchvision's key names (features.N.weight)."""
    if arch == "resnet18":
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
        return None
    net = _features(arch)
    torch.save({f"features.{k}": v for k, v in net.state_dict().items()}, path)
    return net


def test_weights_load_from_local_files_in_both_key_layouts(tmp_path):
    vgg19 = _save_torchvision(tmp_path / VGG19_FILE, "vgg19")
    face = _features("vgg16")
    # A typical VGG Face conversion names layers conv1_1 ... instead of features.N.
    names = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)]
    convs = [m for m in face if isinstance(m, torch.nn.Conv2d)]
    state = {}
    for name, conv in zip(names, convs):
        state[f"{name}.weight"], state[f"{name}.bias"] = conv.weight.data, conv.bias.data
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "vgg_face.safetensors"))
    loss = PerceptualLoss.from_files(tmp_path / VGG19_FILE, tmp_path / "vgg_face.safetensors")
    assert torch.equal(loss.vgg19[0].weight, vgg19[0].weight)
    assert torch.equal(loss.vggface[2].weight, convs[1].weight)
    assert not any(p.requires_grad for p in loss.parameters())


def test_missing_and_wrong_weight_files_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("SFUMATO_VGG19", raising=False)
    monkeypatch.delenv("SFUMATO_VGGFACE", raising=False)
    with pytest.raises(MissingWeightsError, match=VGG19_FILE):
        PerceptualLoss.from_files()
    with pytest.raises(MissingWeightsError, match="not found at"):
        PerceptualLoss.from_files(tmp_path / "nope.pth", tmp_path / "nope2.pth")
    _save_torchvision(tmp_path / "v19.pth", "vgg19")
    _save_torchvision(tmp_path / "resnet.pth", "resnet18")
    with pytest.raises(SfumatoError, match="does not look like VGG16"):
        PerceptualLoss.from_files(tmp_path / "v19.pth", tmp_path / "resnet.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(SfumatoError, match="not a readable weight file"):
        PerceptualLoss.from_files(tmp_path / "junk.pth", tmp_path / "v19.pth")


def test_pickled_code_is_never_executed(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(SfumatoError, match="not a readable weight file"):
        PerceptualLoss.from_files(path, path)
