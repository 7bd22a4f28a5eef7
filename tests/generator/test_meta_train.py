"""Meta-training: the loss falls on a tiny overfit, checkpoints round-trip, resume is exact,
NaNs are caught, bad checkpoints are refused with clear errors, and DDP ranks stay identical."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.corpus.episodes import EpisodeSampler, load_corpus
from generator.model.checkpoint import CheckpointError, load_checkpoint
from generator.model.config import LossConfig, get_preset
from generator.model.talking_head import TalkingHeadModel, load_meta_model
from generator.training.losses import random_perceptual_loss
from generator.training.meta_train import TrainingDivergedError, train

TINY = get_preset("test_tiny").train


def tiny(**kw):
    return dataclasses.replace(TINY, **kw)


def weights(model: TalkingHeadModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_episodes_are_deterministic_and_well_formed(tiny_corpus):
    videos = load_corpus(tiny_corpus)
    assert len(videos) == 2 and all(len(v.frame_files) == 8 for v in videos)
    sampler = EpisodeSampler(videos, 64, k=3)
    a, b = sampler.sample(2, seed=1, step=5), sampler.sample(2, seed=1, step=5)
    assert a.x.shape == (2, 4, 3, 64, 64) and a.y.shape == a.x.shape
    assert torch.equal(a.x, b.x) and torch.equal(a.video, b.video)
    assert not torch.equal(a.x, sampler.sample(2, seed=1, step=6).x)
    assert a.x.min() >= -1 and a.x.max() <= 1 and a.y.max() == 1  # landmark lines drawn


@pytest.fixture(scope="module")
def one_clip_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus cut down to its first video."""
    import shutil

    out = tmp_path_factory.mktemp("one_clip")
    first = load_corpus(tiny_corpus)[0]
    shutil.copytree(first.directory, out / first.identity / first.video_id)
    return out


def test_small_overfits_one_clip(one_clip_corpus, tmp_path):
    torch.manual_seed(0)
    steps = 40
    cfg = dataclasses.replace(get_preset("small").train, steps=steps, k=2, lr_g=5e-4, lr_d=5e-4,
                              checkpoint_every=steps, sample_every=steps, log_every=1)
    model_cfg = dataclasses.replace(get_preset("small").model, image_size=64)
    result = train(one_clip_corpus, tmp_path / "run", "small", cfg, model_cfg=model_cfg,
                   perceptual=random_perceptual_loss())
    rows = list(csv.DictReader((tmp_path / "run" / "stats.csv").open()))
    assert len(rows) == steps
    cnt = np.array([float(r["L_CNT"]) for r in rows])
    print("L_CNT first/last", cnt[:5].mean(), cnt[-5:].mean())
    assert cnt[-5:].mean() < 0.7 * cnt[:5].mean(), cnt
    g = np.array([float(r["L_G"]) for r in rows])
    assert g[-5:].mean() < 0.5 * g[:5].mean()
    assert result.step == steps and result.skipped_steps == 0
    assert (tmp_path / "run" / "samples" / f"step_{steps:07d}.png").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_checkpoint_round_trip_gives_identical_outputs(tiny_corpus, tmp_path):
    result = train(tiny_corpus, tmp_path / "run", "test_tiny", tiny(steps=3))
    model, meta = load_meta_model(result.checkpoint)
    again, _ = load_meta_model(result.checkpoint)
    assert meta["step"] == 3 and meta["preset"] == "test_tiny" and meta["model"]["num_videos"] == 2
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        e = model.E(y[:, None], y[:, None])
        assert torch.equal(model.G(y, e_hat=e), again.G(y, e_hat=again.E(y[:, None], y[:, None])))


def test_resume_gives_the_same_next_steps(tiny_corpus, tmp_path):
    straight = train(tiny_corpus, tmp_path / "a", "test_tiny", tiny(steps=4, checkpoint_every=2))
    train(tiny_corpus, tmp_path / "b", "test_tiny", tiny(steps=2, checkpoint_every=2))
    resumed = train(tiny_corpus, tmp_path / "b", "test_tiny", tiny(steps=4, checkpoint_every=2),
                    resume=True)
    assert resumed.step == 4
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a.tensors.keys() == b.tensors.keys()
    for k in a.tensors:
        assert torch.equal(a.tensors[k], b.tensors[k]), k
    rows = list(csv.DictReader((tmp_path / "b" / "stats.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


def test_existing_run_needs_resume_and_same_settings(tiny_corpus, tmp_path):
    from generator.errors import ConfigMismatchError, SfumatoError

    train(tiny_corpus, tmp_path / "run", "test_tiny", tiny(steps=1))
    with pytest.raises(SfumatoError, match="--resume"):
        train(tiny_corpus, tmp_path / "run", "test_tiny", tiny(steps=2))
    with pytest.raises(ConfigMismatchError, match="lr_g"):
        train(tiny_corpus, tmp_path / "run", "test_tiny", tiny(steps=2, lr_g=1.0), resume=True)
    with pytest.raises(SfumatoError, match="nothing to resume"):
        train(tiny_corpus, tmp_path / "new", "test_tiny", tiny(steps=2), resume=True)


class NaNLoss(torch.nn.Module):
    def forward(self, x_hat, x):
        return (x_hat * float("nan")).mean()


def test_non_finite_losses_are_skipped_then_stop_training(tiny_corpus, tmp_path):
    with pytest.raises(TrainingDivergedError, match="NaN or infinite for 3 steps"):
        train(tiny_corpus, tmp_path / "run", "test_tiny",
              tiny(steps=10, max_bad_steps=3, losses=LossConfig(content="vgg")), perceptual=NaNLoss())


def test_bf16_autocast_on_cpu_trains(tiny_corpus, tmp_path):
    result = train(tiny_corpus, tmp_path / "run", "test_tiny", tiny(steps=2, amp="bf16"))
    assert result.step == 2 and np.isfinite(result.last["L_G"])


def test_damaged_and_wrong_checkpoints_are_refused(tiny_corpus, tmp_path):
    good = train(tiny_corpus, tmp_path / "run", "test_tiny", tiny(steps=1)).checkpoint
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(CheckpointError, match="damaged or not a safetensors"):
        load_meta_model(junk)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="damaged"):
        load_meta_model(cut)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_meta_model(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a sfumato checkpoint"):
        load_meta_model(foreign)
    with pytest.raises(CheckpointError, match="made with preset 'test_tiny', not 'small'"):
        load_checkpoint(good, preset="small")
    with pytest.raises(CheckpointError, match="expected a person checkpoint"):
        load_checkpoint(good, kind="person")
    ck = load_checkpoint(good)
    wrong = TalkingHeadModel(dataclasses.replace(get_preset("test_tiny").model, num_videos=2,
                                                 max_channels=64))
    with pytest.raises(CheckpointError, match="do not fit this architecture"):
        ck.load_module("E", wrong.E)


@pytest.mark.slow
def test_two_process_gloo_ddp_keeps_ranks_identical(tiny_corpus, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(worker), str(tiny_corpus), str(tmp_path / "run"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert sums[0].keys() == sums[1].keys()
    for k in sums[0]:
        assert torch.equal(sums[0][k], sums[1][k]), k
    init = TalkingHeadModel(dataclasses.replace(get_preset("test_tiny").model, num_videos=2))
    changed = [k for k, v in init.state_dict().items() if not torch.equal(v, sums[0][k])]
    assert len(changed) > 10  # training moved the weights
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").meta["step"] == 3


def test_unwritable_run_folder_and_missing_corpus(tiny_corpus, tmp_path):
    from generator.errors import BadInputError, SfumatoError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SfumatoError, match="cannot create run folder"):
        train(tiny_corpus, blocker / "run", "test_tiny", tiny(steps=1))
    with pytest.raises(BadInputError, match="no such corpus folder"):
        train(tmp_path / "nope", tmp_path / "run", "test_tiny", tiny(steps=1))
    with pytest.raises(BadInputError, match="not a corpus"):
        train(tmp_path, tmp_path / "run2", "test_tiny", tiny(steps=1))


def test_export_keeps_the_networks_in_half_the_bytes(tiny_corpus, tmp_path):
    from generator.model.checkpoint import export_model

    result = train(tiny_corpus, tmp_path / "run", "test_tiny", tiny(steps=2))
    out = tmp_path / "release.safetensors"
    r = export_model(result.checkpoint, out, "fp16")
    ck = load_checkpoint(out, kind="meta")
    assert not any(k.startswith(("opt.", "rng")) for k in ck.tensors)  # optimiser/RNG state dropped
    assert {v.dtype for k, v in ck.tensors.items() if v.is_floating_point()} == {torch.float16}
    assert ck.meta["step"] == 2 and ck.meta["export"]["dtype"] == "fp16"
    assert r["bytes"] < result.checkpoint.stat().st_size / 4  # no Adam moments, half the bits
    full, _ = load_meta_model(result.checkpoint)
    half, _ = load_meta_model(out)
    assert next(half.parameters()).dtype == torch.float32  # loads back as fp32
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a = full.G(y[:, 0], e_hat=full.E(x, y))
        b = half.G(y[:, 0], e_hat=half.E(x, y))
    assert (a - b).abs().max() < 0.05  # fp16 rounding of the weights only
    with pytest.raises(CheckpointError, match="dtype must be one of"):
        export_model(result.checkpoint, tmp_path / "x.safetensors", "int8")
    with pytest.raises(CheckpointError, match="a person checkpoint, expected a meta"):
        person = tmp_path / "person.safetensors"
        from generator.model.checkpoint import save_checkpoint

        save_checkpoint(person, "person", {"G": full.G}, {})
        export_model(person, tmp_path / "y.safetensors")


def test_identity_columns_start_at_the_embedding_and_keep_the_embedder_alive(tiny_corpus, tmp_path):
    from generator.training.meta_train import init_identity_columns

    videos = load_corpus(tiny_corpus)
    cfg = dataclasses.replace(get_preset("small").model, image_size=64, num_videos=len(videos))
    torch.manual_seed(0)
    model = TalkingHeadModel(cfg)
    sampler = EpisodeSampler(videos, 64, k=2)
    init_identity_columns(model, sampler, frames=4)
    model.eval()
    with torch.no_grad():
        for i, v in enumerate(videos):
            idx = [int(round(j)) for j in np.linspace(0, len(v.frame_files) - 1, 4)]
            e = model.E(*(t[None] for t in sampler.episode(i, idx)))[0]
            assert torch.allclose(model.D.W[:, i], e, atol=1e-5)
    assert model.D.W.abs().mean() > 0.01  # a real embedding, not the random ~0 start
    # With the paper's match weight (80), a random W ~ 0 silences E's final ReLU within ~100 steps
    # on this preset; started at E's output, e_hat stays alive.
    steps = 60
    tcfg = dataclasses.replace(get_preset("small").train, steps=steps, k=2, lr_g=1e-4, lr_d=4e-4,
                               checkpoint_every=steps, sample_every=steps, log_every=10,
                               losses=LossConfig(content="none", pixel_weight=10.0, match_weight=80.0))
    train(tiny_corpus, tmp_path / "run", "small", tcfg, model_cfg=cfg)
    rows = list(csv.DictReader((tmp_path / "run" / "stats.csv").open()))
    e_hat = [float(r["e_hat"]) for r in rows]
    assert len(e_hat) == steps // 10 and min(e_hat) > 1e-3, e_hat
