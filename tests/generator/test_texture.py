"""The texture path: G refines the source warped to the driving landmarks (texture presets)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from generator.model.config import get_preset
from generator.model.talking_head import TalkingHeadModel


@pytest.fixture()
def model() -> TalkingHeadModel:
    torch.manual_seed(0)
    return TalkingHeadModel(get_preset("test_texture").model)


def _texture(b: int, s: int, valid: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.cat([torch.rand(b, 3, s, s, generator=g) * 2 - 1, torch.full((b, 1, s, s), valid)], 1)


def test_a_fresh_texture_g_returns_the_warp(model):
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    tex = _texture(2, 64)
    out = model.G.forward_parts(y, e_hat=torch.randn(2, model.cfg.embed_dim), texture=tex)
    assert (out.x_hat - tex[:, :3]).abs().max() < 0.04  # m = sigmoid(4): 2% of G's painting
    assert torch.allclose(out.blend, torch.full_like(out.blend, torch.sigmoid(torch.tensor(4.0)).item()))
    e_hat = torch.randn(2, model.cfg.embed_dim)
    invalid = model.G.forward_parts(y, e_hat=e_hat, texture=_texture(2, 64, 0.0))
    assert torch.equal(invalid.x_hat, invalid.rgb)  # where the warp is not valid, G paints alone
    with pytest.raises(ValueError, match="texture"):
        model.G(y, e_hat=torch.randn(2, model.cfg.embed_dim))


def test_gradients_reach_g_e_p_and_d(tiny_corpus, model):
    from generator.corpus.episodes import EpisodeSampler, load_corpus
    from generator.training.distributed import DistInfo
    from generator.training.meta_train import MetaTrainer

    train = dataclasses.replace(get_preset("test_texture").train, d_steps=1)
    sampler = EpisodeSampler(load_corpus(tiny_corpus), 64, train.k, texture=True)
    ep = sampler.sample(2, seed=0, step=0)
    assert ep.texture.shape == (2, 4, 64, 64) and ep.texture[:, 3].mean() > 0.9
    model = TalkingHeadModel(dataclasses.replace(model.cfg, num_videos=len(sampler)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = MetaTrainer(model, dataclasses.replace(train, losses=dataclasses.replace(
        train.losses, pixel_weight=1.0)), DistInfo(), None)
    stats = trainer.step(ep)
    assert stats is not None and np.isfinite(stats["L_G"])
    changed = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {"E", "G", "D"} <= changed
    assert not torch.equal(model.G.P, before["G.P"])  # psi = P e_hat trains through the texture G


def test_a_tiny_texture_model_overfits_a_clip_beyond_the_warp(tiny_corpus):
    """Trained on one clip's episodes, G does better than the warp it starts from on them."""
    from generator.corpus.episodes import EpisodeSampler, load_corpus
    from generator.training.distributed import DistInfo
    from generator.training.meta_train import MetaTrainer

    torch.manual_seed(0)
    p = get_preset("test_texture")
    videos = load_corpus(tiny_corpus)[:1]
    sampler = EpisodeSampler(videos, 64, 2, texture=True)
    model = TalkingHeadModel(dataclasses.replace(p.model, num_videos=1))
    train = dataclasses.replace(p.train, k=2, lr_g=1e-3, lr_d=1e-3, d_steps=1,
                                losses=dataclasses.replace(p.train.losses, pixel_weight=10.0))
    trainer = MetaTrainer(model, train, DistInfo(), None)
    probe = [sampler.sample(4, seed=99, step=k) for k in range(2)]

    def errors() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            fake = [(model.G(ep.target[1], e_hat=model.E(*ep.sources), texture=ep.texture) - ep.target[0])
                    .abs().mean() for ep in probe]
            warp = [(ep.texture[:, :3] - ep.target[0]).abs().mean() for ep in probe]
        model.train()
        return float(np.mean(fake)), float(np.mean(warp))

    start, warp_error = errors()
    for step in range(150):
        trainer.step(sampler.sample(4, seed=0, step=step))
    end, _ = errors()
    assert start == pytest.approx(warp_error, rel=0.1)  # it starts at the warp
    assert end < 0.9 * warp_error  # and learns what the warp gets wrong


def test_a_texture_person_renders_from_its_shots_and_round_trips(tmp_path, model, astronaut):
    from generator.inference.person import load_person
    from generator.io.samples import write_astronaut_image
    from generator.model.checkpoint import save_checkpoint
    from generator.model.talking_head import TalkingHeadModel as _M  # noqa: F401 (the checkpoint's model)
    from generator.training.finetune import FinetuneConfig, finetune_to_file

    ck = save_checkpoint(tmp_path / "meta.safetensors", "meta", {"E": model.E, "G": model.G, "D": model.D},
                         {"preset": "test_texture", "model": model.cfg.to_dict(), "step": 0})
    src = write_astronaut_image(tmp_path / "astronaut.png")
    out = tmp_path / "person.safetensors"
    finetune_to_file(ck, [src], out, FinetuneConfig(steps=2))
    person = load_person(out)
    assert person.shots_x.shape == (1, 3, 64, 64) and person.shots_points.shape == (1, 68, 2)
    pts = person.shots_points
    frames = person.render(np.repeat(pts, 2, axis=0))
    assert frames.shape == (2, 64, 64, 3)
    shot = ((person.shots_x[0].permute(1, 2, 0).numpy() + 1) * 127.5).round()
    assert np.abs(frames[0].astype(float) - shot).mean() < 12  # its own landmarks: close to the shot


def test_calibrating_d_separates_real_from_generated_and_resumes(tiny_corpus, tmp_path):
    from generator.model.talking_head import load_meta_model
    from generator.training.calibrate import CalibrateConfig, calibrate
    from generator.training.meta_train import train

    # the pure tiny G after 2 steps paints blobs: fakes D can learn to tell from the real frames
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=2)
    ck = train(tiny_corpus, tmp_path / "run", "test_tiny", cfg).checkpoint
    out = tmp_path / "calibrated.safetensors"
    c = CalibrateConfig(steps=30, batch_size=2, lr=1e-3, checkpoint_every=10, pool=32)
    first = calibrate(ck, tiny_corpus, out, dataclasses.replace(c, steps=10))
    pool_file = out.with_suffix(".pool.safetensors")
    made = pool_file.stat().st_mtime_ns
    second = calibrate(ck, tiny_corpus, out, c)
    assert pool_file.stat().st_mtime_ns == made  # the resumed run reused the rendered pool
    assert first["step"] == 10 and second["step"] == 30
    assert second["r_gap_agnostic"] > first["r_gap_agnostic"] and second["r_gap_agnostic"] > 0
    before, _ = load_meta_model(ck)
    after, meta = load_meta_model(out)
    assert meta["calibrated_D"]["step"] == 30
    for name in ("E", "G"):  # frozen
        assert all(torch.equal(a, b) for a, b in zip(getattr(before, name).state_dict().values(),
                                                    getattr(after, name).state_dict().values()))
    assert not torch.equal(before.D.w_0, after.D.w_0)


def test_fresh_calibration_starts_a_new_trunk_and_keeps_w(tiny_corpus, tmp_path):
    from generator.model.talking_head import load_meta_model
    from generator.training.calibrate import CalibrateConfig, calibrate
    from generator.training.meta_train import train

    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=2)
    ck = train(tiny_corpus, tmp_path / "run", "test_tiny", cfg).checkpoint
    out = tmp_path / "fresh.safetensors"
    calibrate(ck, tiny_corpus, out, CalibrateConfig(steps=2, batch_size=2, fresh=True, pool=8))
    before, _ = load_meta_model(ck)
    after, meta = load_meta_model(out)
    assert meta["calibrated_D"]["config"]["fresh"] is True
    assert torch.equal(before.D.W, after.D.W)  # identity columns kept (W is not trained here)
    first = before.D.blocks[0].conv1.parametrizations.weight.original
    assert not torch.allclose(first, after.D.blocks[0].conv1.parametrizations.weight.original, atol=1e-3)
    out_e = tmp_path / "from_e.safetensors"
    calibrate(ck, tiny_corpus, out_e, CalibrateConfig(steps=1, batch_size=2, lr=1e-9, fresh=True,
                                                      trunk_from_e=True, pool=8))
    from_e, _ = load_meta_model(out_e)
    e_w = before.E.blocks[0].conv1.parametrizations.weight.original
    assert torch.allclose(e_w, from_e.D.blocks[0].conv1.parametrizations.weight.original, atol=1e-5)


def test_discriminator_convolutions_start_without_bias():
    from generator.model.discriminator import Discriminator

    D = Discriminator(get_preset("test_tiny").model)
    biases = [m.bias for m in D.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    assert biases and all(float(b.detach().abs().max()) == 0.0 for b in biases)


def test_hard_shot_textures_warp_the_source_farthest_in_pose(tiny_corpus):
    from generator.corpus.episodes import EpisodeSampler, load_corpus
    from generator.faces.warp import pose_distance, texture_tensor

    sampler = EpisodeSampler(load_corpus(tiny_corpus), 64, 3, texture=True, hard_shot=1.0)
    ep = sampler.sample(1, seed=0, step=0)
    frames = ep.frames[0]
    loaded = [sampler._load(int(ep.video[0]), f) for f in frames]
    dist = [pose_distance(p[2], loaded[-1][2]) for p in loaded[:-1]]
    far = int(np.argmax(dist))
    expected = texture_tensor(loaded[far][0][None], loaded[far][2][None], loaded[-1][2])
    assert torch.equal(ep.texture[0], expected)
    easy = EpisodeSampler(load_corpus(tiny_corpus), 64, 3, texture=True).sample(1, seed=0, step=0)
    assert easy.frames == ep.frames  # the hard-shot coin is drawn after the frames: same episode
    with pytest.raises(Exception, match="hard_shot"):
        dataclasses.replace(get_preset("texture128").train, hard_shot=1.5)


def test_painting_loss_adds_l1_of_g_rgb_to_the_g_objective(tiny_corpus):
    from generator.corpus.episodes import EpisodeSampler, load_corpus
    from generator.training.distributed import init_distributed
    from generator.training.meta_train import MetaTrainer

    torch.manual_seed(0)
    videos = load_corpus(tiny_corpus)
    m = TalkingHeadModel(dataclasses.replace(get_preset("test_texture").model, num_videos=len(videos)))
    ep = EpisodeSampler(videos, 64, 2, texture=True).sample(1, seed=0, step=0)
    base = get_preset("test_texture").train
    losses = {}
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        mm = TalkingHeadModel(m.cfg)
        mm.load_state_dict(m.state_dict())
        cfg = dataclasses.replace(base, losses=dataclasses.replace(base.losses, rgb_weight=w))
        stats, _, _ = MetaTrainer(mm, cfg, init_distributed("cpu"), None).g_step(ep)
        losses[w] = stats
    parts = ("L_CNT", "L_ADV", "L_MCH")
    extra = losses[1.0]["L_G"] - sum(losses[1.0][k] for k in parts)
    assert abs(losses[0.0]["L_G"] - sum(losses[0.0][k] for k in parts)) < 1e-5
    with torch.no_grad():
        xs, ys = ep.sources
        rgb = m.G.forward_parts(ep.target[1], e_hat=m.E(xs, ys), texture=ep.texture).rgb
    assert extra == pytest.approx(float((rgb - ep.target[0]).abs().mean()), rel=1e-3)


def test_init_from_starts_e_and_g_from_another_run_and_refuses_another_model(tiny_corpus, tmp_path):
    from generator.errors import ConfigMismatchError
    from generator.model.talking_head import load_meta_model
    from generator.training.meta_train import train

    cfg = dataclasses.replace(get_preset("test_texture").train, steps=1)
    first = train(tiny_corpus, tmp_path / "a", "test_texture", cfg).checkpoint
    second = train(tiny_corpus, tmp_path / "b", "test_texture", cfg, init_from=first)
    a, _ = load_meta_model(first)
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["init_from"]["path"] == str(first.resolve())
    # one step later E has moved from the warm start, but far less than from a fresh init
    fresh = TalkingHeadModel(a.cfg)
    b = second.model
    wa = a.E.blocks[0].conv1.parametrizations.weight.original
    wb = b.E.blocks[0].conv1.parametrizations.weight.original
    wf = fresh.E.blocks[0].conv1.parametrizations.weight.original
    assert (wa - wb).abs().mean() < 0.2 * (wa - wf).abs().mean()
    with pytest.raises(ConfigMismatchError, match="architecture"):
        train(tiny_corpus, tmp_path / "c", "test_texture",
              model_cfg=dataclasses.replace(a.cfg, skips=False), train_cfg=cfg, init_from=first)


def test_pairwise_calibration_loss_ranks_reals_above_fakes_whatever_their_offset():
    from generator.training.calibrate import CalibrateConfig, pairwise_loss

    real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert pairwise_loss(real, fake) < pairwise_loss(fake, real)
    assert torch.isclose(pairwise_loss(real + 7, fake + 7), pairwise_loss(real, fake))  # offset-free
    r = torch.zeros(3, requires_grad=True)
    pairwise_loss(r, torch.zeros(3)).backward()
    assert (r.grad < 0).all()  # raising a real score lowers the loss
    with pytest.raises(Exception, match="pairwise, paired, hinge"):
        CalibrateConfig(loss="bce")
    with pytest.raises(Exception, match="at least one batch"):
        CalibrateConfig(pool=2, batch_size=4)


def test_calibrate_cli_passes_its_options_through(tiny_corpus, tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from cli.main import cli
    from generator.model.talking_head import load_meta_model

    out = tmp_path / "cal.safetensors"
    args = ["-q", "calibrate", str(tiny_corpus), "--checkpoint", str(tiny_checkpoint), "-o", str(out),
            "--steps", "2", "--batch-size", "2", "--fresh-d", "--trunk-from-e", "--resize", "0",
            "--jpeg", "0", "--loss", "paired", "--pool", "4", "--checkpoint-every", "1", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 2
    cfg = load_meta_model(out)[1]["calibrated_D"]["config"]
    got = (cfg["fresh"], cfg["trunk_from_e"], cfg["resize"], cfg["jpeg"], cfg["loss"], cfg["pool"])
    assert got == (True, True, 0.0, 0.0, "paired", 4)


def test_render_pool_is_reproducible_and_a_fresh_projection_gives_d_a_gradient(tiny_corpus, tiny_checkpoint):
    from generator.corpus.episodes import EpisodeSampler, load_corpus
    from generator.model.discriminator import Discriminator
    from generator.model.talking_head import load_meta_model
    from generator.training.calibrate import init_projection, render_pool

    model, meta = load_meta_model(tiny_checkpoint)
    sampler = EpisodeSampler(load_corpus(tiny_corpus), model.cfg.image_size, int(meta["train"]["k"]))
    a, b = render_pool(model, sampler, 6, seed=3, batch_size=4), render_pool(model, sampler, 6, 3, 4)
    assert len(a) == 6 and a.real.shape == a.fake.shape == a.y.shape
    assert torch.equal(a.fake, b.fake) and torch.equal(a.e_hat, b.e_hat)
    assert not torch.equal(a.real, a.fake)
    D = Discriminator(model.cfg)
    D(a.real, a.y).r.sum().backward()
    assert float(D.blocks[0].conv1.parametrizations.weight.original.grad.abs().max()) == 0.0  # w_0 = 0
    D.zero_grad()
    init_projection(D, a)
    r = D(a.real, a.y).r
    # (each training-mode pass also moves spectral norm's power iteration a little)
    assert abs(float(r.detach().std()) - 1.0) < 0.05 and abs(float(r.detach().mean())) < 0.5
    r.sum().backward()
    assert float(D.blocks[0].conv1.parametrizations.weight.original.grad.abs().max()) > 0


def test_an_imagenet_d_trunk_is_frozen_and_only_its_read_out_learns():
    from generator.model.discriminator import Discriminator
    from generator.training.calibrate import RenderBatch, init_projection

    cfg = dataclasses.replace(get_preset("test_tiny").model, d_trunk="lite0")
    D = Discriminator(cfg).train()
    assert not D.features.net.training  # frozen batch norm whatever D's mode
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    init_projection(D, RenderBatch(x, x, x, torch.zeros(4, cfg.embed_dim)))
    stats, _ = D.features(x)
    assert torch.allclose(stats.mean(dim=0), torch.zeros(()), atol=1e-4)  # standardised on the batch
    out = D(x, x)
    assert out.r.shape == (4,) and abs(float(out.r.detach().std()) - 1.0) < 1e-3
    out.r.sum().backward()
    assert all(p.grad is None for p in D.features.net.parameters())
    assert D.head.weight.grad.abs().max() > 0 and D.w_0.grad.abs().max() > 0
    with pytest.raises(Exception, match="d_trunk must be one of"):
        dataclasses.replace(cfg, d_trunk="vgg")


def test_calibrating_a_fresh_imagenet_d_saves_a_model_that_loads_with_it(tiny_corpus, tmp_path):
    from generator.model.talking_head import load_meta_model
    from generator.training.calibrate import CalibrateConfig, calibrate
    from generator.training.meta_train import train

    with pytest.raises(Exception, match="needs a fresh D"):
        CalibrateConfig(d_trunk="lite0")
    with pytest.raises(Exception, match="needs the conv trunk"):
        CalibrateConfig(d_trunk="lite0", fresh=True, trunk_from_e=True)
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=2)
    ck = train(tiny_corpus, tmp_path / "run", "test_tiny", cfg).checkpoint
    out = tmp_path / "lite0.safetensors"
    r = calibrate(ck, tiny_corpus, out, CalibrateConfig(steps=20, batch_size=4, lr=1e-3, fresh=True,
                                                        d_trunk="lite0", pool=16, checkpoint_every=20))
    assert r["step"] == 20 and r["r_gap_agnostic"] > 0  # tiny G's blobs are told from real frames
    model, meta = load_meta_model(out)
    assert meta["model"]["d_trunk"] == "lite0" and model.cfg.d_trunk == "lite0"
    before, _ = load_meta_model(ck)
    assert torch.equal(before.D.W, model.D.W)
    assert all(torch.equal(a, b) for a, b in zip(before.G.state_dict().values(),
                                                model.G.state_dict().values()))
    from generator.model.checkpoint import export_model

    export_model(out, tmp_path / "release.safetensors")  # the release keeps how D was made
    released, rmeta = load_meta_model(tmp_path / "release.safetensors")
    assert rmeta["calibrated_D"]["config"]["d_trunk"] == "lite0" and released.cfg.d_trunk == "lite0"
