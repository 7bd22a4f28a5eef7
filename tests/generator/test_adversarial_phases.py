"""The G/D game in named phases (generator.training.adversarial) and the one way to make a Person."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from generator.faces.shots import load_shots
from generator.io.samples import write_astronaut_image
from generator.model.config import ModelConfig, get_preset
from generator.model.discriminator import Discriminator
from generator.model.talking_head import load_meta_model
from generator.training.adversarial import PHASES, d_phase, doubled, frozen, g_phase
from generator.training.finetune import FinetuneConfig, finetune, make_person
from generator.training.losses import hinge_d_loss
from generator.training.meta_train import train


def _d() -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(ModelConfig(image_size=64, base_channels=4, max_channels=16, res_blocks=1,
                                     num_videos=3))


def _batch(n: int = 2):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(n, 3, 64, 64, generator=g) * 2 - 1, torch.rand(n, 3, 64, 64, generator=g) * 2 - 1,
            torch.rand(n, 3, 64, 64, generator=g) * 2 - 1)


def test_g_phase_sends_gradients_to_the_fakes_only():
    D = _d()
    x, y, fake = _batch()
    x_hat = fake.clone().requires_grad_(True)
    with frozen(D):
        g = g_phase(D, x_hat, x, y, {"video": torch.tensor([0, 2])}, fm_weight=10.0)
    g.l_adv.backward()
    assert PHASES == ("G", "D")
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.parameters())  # D only passed gradients through
    assert all(p.requires_grad for p in D.parameters())  # and is trainable again afterwards
    assert not g.r_real.requires_grad and g.r_fake.shape == (2,)
    assert torch.isclose(g.l_adv, -g.r_fake.mean() + g.l_fm)  # eq. (4)


def test_d_phase_is_the_hinge_loss_of_one_pass_over_real_and_fake():
    D = _d().eval()  # (in train mode every pass also steps spectral norm's power iteration)
    x, y, fake = _batch()
    video = torch.tensor([1, 0])
    d = d_phase(D, x, fake.requires_grad_(True), y, {"video": video})
    with torch.no_grad():
        r_real, r_fake = D(x, y, video).r, D(fake, y, video).r
    assert torch.allclose(d.r_real, r_real, atol=1e-5) and torch.allclose(d.r_fake, r_fake, atol=1e-5)
    assert torch.isclose(d.l_dsc, hinge_d_loss(r_real, r_fake), atol=1e-5)
    d.l_dsc.backward()
    assert fake.grad is None  # G's frames are detached in D's phase
    assert D.W.grad is not None


def test_condition_doubling_keeps_a_shared_identity_vector():
    w = torch.zeros(8)
    assert doubled({"w": w}, 3)["w"] is w
    assert doubled({"w": torch.zeros(3, 8)}, 3)["w"].shape == (6, 8)
    assert doubled({"video": torch.tensor([0, 1, 2])}, 3)["video"].tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="2 rows for 3 frames"):
        doubled({"video": torch.tensor([0, 1])}, 3)


@pytest.fixture(scope="module")
def model_and_shots(tiny_corpus, tmp_path_factory):
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=2)
    ck = train(tiny_corpus, tmp_path_factory.mktemp("run"), "test_tiny", cfg).checkpoint
    model, _ = load_meta_model(ck)
    png = write_astronaut_image(tmp_path_factory.mktemp("src") / "astronaut.png")
    return model, load_shots([png], model.cfg.image_size)


def test_make_person_is_feed_forward_without_steps_and_fine_tuned_with_them(model_and_shots):
    model, shots = model_and_shots
    ff = make_person(model, shots)
    zero = make_person(model, shots, FinetuneConfig(steps=0))
    assert torch.equal(ff.psi, zero.psi) and torch.equal(ff.w, zero.w)
    torch.manual_seed(0)
    ft = make_person(model, shots, FinetuneConfig(steps=2, seed=0))
    torch.manual_seed(0)
    ref = finetune(model, shots, FinetuneConfig(steps=2, seed=0)).person
    assert torch.allclose(ft.psi, ref.psi) and not torch.allclose(ft.psi, ff.psi)
    a, b = ff.render(shots.points), ft.render(shots.points)  # both ready to render (baked)
    assert a.shape == b.shape == (1, 64, 64, 3)
