"""E, G, D: the paper's sizes, shapes at every resolution, spectral norm everywhere, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from generator.errors import SfumatoError
from generator.model.config import ModelConfig, get_preset, list_presets
from generator.model.layers import AdaIN, adain
from generator.model.talking_head import TalkingHeadModel, bake_spectral_norm

PAPER_PARAMS = {"E": 15e6, "G": 38e6, "D": 20e6}


def narrow(size: int) -> ModelConfig:
    return ModelConfig(image_size=size, base_channels=4, max_channels=16, res_blocks=1,
                       num_videos=3)


def test_presets_registry():
    assert {"paper", "small", "test_tiny"} <= set(list_presets())
    with pytest.raises(SfumatoError, match="unknown preset 'nope'; choose from"):
        get_preset("nope")


def test_paper_parameter_counts_match_the_paper():
    counts = TalkingHeadModel(get_preset("paper").model).parameter_counts()
    for name, expected in PAPER_PARAMS.items():
        assert abs(counts[name] - expected) / expected < 0.15, (name, counts[name])


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_shapes_at_every_size(size):
    torch.manual_seed(0)
    m = TalkingHeadModel(narrow(size))
    x, y = torch.randn(2, 3, 3, size, size), torch.randn(2, 3, 3, size, size)
    e_hat = m.E(x, y)
    assert e_hat.shape == (2, 16)
    psi = m.G.project(e_hat)
    assert psi.shape == (2, m.G.n_adain)
    out = m.G(y[:, 0], psi)
    assert out.shape == (2, 3, size, size) and out.abs().max() <= 1
    d = m.D(out, y[:, 0], torch.tensor([0, 2]))
    assert d.r.shape == (2,) and d.v.shape == (2, 16)
    assert d.features[-1].shape[-1] == 4  # the extra block at 4x4
    assert m.D(out, y[:, 0]).r.shape == (2,)  # identity-agnostic (w_0 only)
    assert m.D(out, y[:, 0], w=torch.randn(16)).r.shape == (2,)  # a fine-tuned person's w'


def test_bad_sizes_are_refused():
    for size in (32, 100, 1024):
        with pytest.raises(SfumatoError, match="power of two"):
            ModelConfig(image_size=size)


def test_every_conv_and_linear_is_spectrally_normalised():
    m = TalkingHeadModel(get_preset("small").model)
    layers = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    assert len(layers) > 40
    for layer in layers:
        assert parametrize.is_parametrized(layer, "weight"), layer
        assert type(layer.parametrizations.weight[0]).__name__ == "_SpectralNorm"


def test_adain_parameter_count_equals_p_output_size():
    for name in list_presets():
        g = TalkingHeadModel(get_preset(name).model).G
        counted = sum(2 * mod.channels for mod in g.modules() if isinstance(mod, AdaIN))
        assert g.n_adain == counted == g.P.shape[0]
    assert TalkingHeadModel(get_preset("paper").model).G.n_adain == 13184


def test_fused_adain_matches_the_textbook_formula():
    x = torch.randn(3, 5, 8, 8) * 4 + 2
    scale, bias = torch.randn(3, 5), torch.randn(3, 5)
    ref = scale[..., None, None] * nn.functional.instance_norm(x) + bias[..., None, None]
    assert torch.allclose(adain(x, scale, bias), ref, atol=1e-4)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = TalkingHeadModel(narrow(64))
    for mod in m.modules():  # open the attention gates so their inner weights get gradients
        if hasattr(mod, "gamma"):
            nn.init.constant_(mod.gamma, 0.5)
    x, y = torch.randn(2, 3, 3, 64, 64), torch.randn(2, 3, 3, 64, 64)
    video = torch.tensor([0, 1])
    e_hat = m.E(x[:, :2], y[:, :2])
    x_hat = m.G(y[:, 2], e_hat=e_hat)
    d = m.D(x_hat, y[:, 2], video)
    (d.r.mean() + x_hat.abs().mean() + (m.D.W[:, video].t() - e_hat).abs().mean()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # W's unused column (video 2) is the only parameter with zero gradient.
    assert missing == [] or missing == ["D.W"] and m.D.W.grad[:, :2].abs().sum() > 0


def test_baked_spectral_norm_gives_the_same_output():
    torch.manual_seed(0)
    m = TalkingHeadModel(narrow(64)).eval()
    y, psi = torch.randn(1, 3, 64, 64), torch.randn(1, m.G.n_adain) * 0.1
    with torch.no_grad():
        before = m.G(y, psi)
        bake_spectral_norm(m.G)
        after = m.G(y, psi)
    assert not any(parametrize.is_parametrized(mod) for mod in m.G.modules())
    assert torch.allclose(before, after, atol=1e-5)


def test_fused_down_block_equals_the_textbook_order():
    from generator.model.layers import ResBlockDown

    torch.manual_seed(0)
    block = ResBlockDown(5, 7, instance_norm=True).eval()
    x = torch.randn(2, 5, 16, 16)
    with torch.no_grad():
        fused = block(x)
        block.fused = False
        textbook = block(x)
    assert fused.shape == (2, 7, 8, 8)
    assert torch.allclose(fused, textbook, atol=1e-5)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    m = TalkingHeadModel(narrow(64)).eval()
    y = torch.randn(2, 3, 64, 64)
    e = torch.randn(2, 16)
    with torch.no_grad():
        ref = m.G(y, e_hat=e)
        m.to(memory_format=torch.channels_last)
        assert (m.G(y, e_hat=e) - ref).abs().max() < 1e-4  # different conv kernels, same map


def test_baking_a_person_leaves_the_model_intact():
    from generator.inference.person import init_person

    torch.manual_seed(0)
    m = TalkingHeadModel(narrow(64)).eval()
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    init_person(m, x, y).prepare_for_inference()
    assert parametrize.is_parametrized(m.G.head_conv)  # the model keeps its spectral norms
    init_person(m, x, y).prepare_for_inference()  # and can make a second person
