"""Few-shot fine-tuning (sec. 3.3), person files and inference from them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from generator.errors import NoFaceError, SfumatoError
from generator.faces.shots import load_shots
from generator.inference.person import init_person, load_person, person_from_sources, realism_score
from generator.io.samples import write_astronaut_image
from generator.model.checkpoint import CheckpointError
from generator.model.config import LossConfig, get_preset
from generator.model.talking_head import load_meta_model
from generator.training.finetune import ADV_WEIGHT, FinetuneConfig, adv_weight_for, finetune, finetune_to_file
from generator.training.losses import random_perceptual_loss
from generator.training.meta_train import train


@pytest.fixture(scope="module")
def meta_checkpoint(tiny_corpus, tmp_path_factory):
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=4)
    return train(tiny_corpus, tmp_path_factory.mktemp("run"), "test_tiny", cfg).checkpoint


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory):
    return write_astronaut_image(tmp_path_factory.mktemp("src") / "astronaut.png")


def test_one_shot_finetuning_lowers_the_content_loss(meta_checkpoint, astronaut_png):
    torch.manual_seed(0)
    model, _ = load_meta_model(meta_checkpoint)
    shots = load_shots([astronaut_png], model.cfg.image_size)
    assert len(shots) == 1 and shots.frames.shape == (1, 64, 64, 3)
    cfg = FinetuneConfig(steps=40, lr_g=1e-3, lr_d=1e-3, losses=LossConfig(content="vgg"))
    result = finetune(model, shots, cfg, perceptual=random_perceptual_loss())
    assert result.content_after < 0.8 * result.content_before
    assert len(result.history) == 40


def test_person_starts_from_the_papers_initialisation(meta_checkpoint, astronaut_png):
    model, _ = load_meta_model(meta_checkpoint)
    x, y = load_shots([astronaut_png], 64).tensors()
    person = init_person(model, x, y)
    with torch.no_grad():
        e_hat = model.E(x[None], y[None])
        assert torch.allclose(person.psi, model.G.project(e_hat))  # psi' = P e_hat_NEW
        assert torch.allclose(person.w, model.D.w_0 + e_hat[0])  # w' = w_0 + e_hat_NEW


def test_person_file_is_self_contained_and_renders(meta_checkpoint, astronaut_png, tmp_path):
    out = tmp_path / "astro.safetensors"
    summary = finetune_to_file(meta_checkpoint, [astronaut_png], out,
                               FinetuneConfig(steps=3, losses=LossConfig(content="none")))
    assert summary.mode == "fine-tuned" and summary.shots == 1
    person = load_person(out)
    assert person.meta["source_sha256"][str(astronaut_png)]
    assert len(person.meta["checkpoint_sha256"]) == 64
    driver = load_shots([astronaut_png], 64)
    frames = person.render(np.repeat(driver.points, 3, axis=0))
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[0], frames[2])  # same landmarks, same frame
    r = person.realism(frames, np.repeat(driver.points, 3, axis=0))
    assert r.shape == (3,) and np.isfinite(r).all()


def test_feed_forward_mode_and_realism_identities(meta_checkpoint, astronaut_png, tmp_path):
    out = tmp_path / "ff.safetensors"
    summary = finetune_to_file(meta_checkpoint, [astronaut_png], out, FinetuneConfig(steps=0))
    assert summary.mode == "feed-forward"  # no VGG weights needed without fine-tuning
    model, _ = load_meta_model(meta_checkpoint)
    shots = load_shots([astronaut_png], 64)
    agnostic = realism_score(model.D, shots.frames, shots.points)
    as_video0 = realism_score(model.D, shots.frames, shots.points, identity=0)
    assert agnostic.shape == as_video0.shape == (1,)
    assert not np.allclose(agnostic, as_video0)


def test_bad_sources_and_files(meta_checkpoint, tmp_path):
    from generator.io.video import write_image

    blank = tmp_path / "blank.png"
    write_image(blank, np.full((128, 128, 3), 80, np.uint8))
    with pytest.raises(NoFaceError, match="blank.png: no face found"):
        finetune_to_file(meta_checkpoint, [blank], tmp_path / "p.safetensors", FinetuneConfig(steps=0))
    with pytest.raises(CheckpointError, match="expected a person checkpoint"):
        load_person(meta_checkpoint)


def test_person_straight_from_checkpoint_and_sources(meta_checkpoint, astronaut_png):
    person = person_from_sources(meta_checkpoint, [astronaut_png])
    assert person.meta["mode"] == "feed-forward" and person.meta["shots"] == 1
    shots = load_shots([astronaut_png], 64)
    frames = person.render(shots.points)
    assert frames.shape == (1, 64, 64, 3)


def test_finetuning_with_the_default_feature_loss_lowers_it(meta_checkpoint, astronaut_png, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "lite0.safetensors"
    summary = finetune_to_file(meta_checkpoint, [astronaut_png], out,
                               FinetuneConfig(steps=30, lr_g=1e-3, lr_d=1e-3))
    assert summary.content_loss == "tf_efficientnet_lite0 features (LPIPS-style)"
    assert summary.content_after < 0.9 * summary.content_before
    assert load_person(out).meta["content_loss"] == summary.content_loss


def test_adversarial_weight_follows_the_discriminator_unless_given(meta_checkpoint):
    model, _ = load_meta_model(meta_checkpoint)
    assert model.cfg.d_trunk == "conv"
    assert adv_weight_for(model, FinetuneConfig()) == ADV_WEIGHT["conv"] == 1.0
    assert adv_weight_for(model, FinetuneConfig(adv_weight=0.25)) == 0.25
    lite = dataclasses.replace(model.cfg, d_trunk="lite0")
    model.cfg = lite
    assert adv_weight_for(model, FinetuneConfig()) == ADV_WEIGHT["lite0"] < 1.0
    with pytest.raises(SfumatoError, match="adversarial weight"):
        FinetuneConfig(adv_weight=-1.0)


@pytest.mark.slow
def test_finetune_with_no_options_uses_the_bundled_model_and_packaged_loss(astronaut_png, tmp_path):
    import json

    from click.testing import CliRunner

    from cli.main import cli
    from generator.inference.generate import BUNDLED_MODEL
    from generator.io.files import sha256_file

    out = tmp_path / "person.safetensors"
    result = CliRunner().invoke(cli, ["finetune", str(astronaut_png), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "fine-tuned" and summary["steps"] == 100 and out.is_file()
    assert summary["content_loss"] == "tf_efficientnet_lite0 features (LPIPS-style)"
    # Against the bundled Lite0 D, -r is down-weighted (ADV_WEIGHT); at weight 1 the content loss rose
    # 4x over these 100 steps, at 0.1 it fell by an order of magnitude.
    assert summary["content_after"] < 0.5 * summary["content_before"]
    person = load_person(out)
    assert person.meta["checkpoint_sha256"] == sha256_file(BUNDLED_MODEL)
    assert person.meta["finetune"]["adv_weight"] == ADV_WEIGHT["lite0"]
