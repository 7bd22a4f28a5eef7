"""The bundled model (MODEL_CARD.md): small enough to ship, loads, and the default `generate` runs on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from generator.inference.generate import BUNDLED_MODEL
from generator.io.video import MediaReader, probe
from generator.model.checkpoint import load_checkpoint

HELD_OUT = ("sadtalker_WDA_KatieHill_000", "spectre_M026_level_3_disgusted_018", "lia_vox_driving2",
            "latentsync_demo1_video_crop", "hyperlips_video3_crop", "skyreels_driving_4")  # MODEL_CARD.md


def test_bundled_model_is_shipped_small_and_documented():
    assert BUNDLED_MODEL.is_file(), f"{BUNDLED_MODEL} is missing from the package"
    assert BUNDLED_MODEL.stat().st_size <= 40 * 2**20
    ck = load_checkpoint(BUNDLED_MODEL, kind="meta", preset="texture128")
    assert ck.meta["step"] > 0 and ck.meta["export"]["dtype"] == "fp16"
    assert not any(k.startswith("opt.") for k in ck.tensors)
    trained_on = {identity for identity, _video_id in ck.meta["corpus_videos"]}
    assert len(trained_on) == 56 and not trained_on & set(HELD_OUT)  # evaluation identities unseen


def test_bundled_embedder_is_alive():
    """Different faces give different identity embeddings (a dead E gives 0 for all)."""
    from generator.io.samples import astronaut_frames
    from generator.model.talking_head import load_meta_model

    model, _ = load_meta_model(BUNDLED_MODEL)
    s = model.cfg.image_size
    frame = torch.from_numpy(astronaut_frames(1, s)[0]).permute(2, 0, 1).float() / 127.5 - 1
    y = torch.zeros_like(frame)
    with torch.no_grad():
        e_a = model.E(frame[None, None], y[None, None])
        e_b = model.E(frame.flip(0)[None, None], y[None, None])  # colours swapped: another "person"
    assert e_a.abs().mean() > 1e-3 and (e_a - e_b).abs().mean() > 1e-4


def test_default_generate_on_the_bundled_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["-q", "generate", "--seconds", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    out = tmp_path / "sfumato-output" / "generated.mp4"
    assert (doc["frames"], doc["driver"], doc["manifest"]) == (25, "builtin", "Trusted")
    info = probe(out)
    assert (info.frame_count, info.width, info.height) == (25, 128, 128)
    with MediaReader(out) as reader:
        frames = np.stack([f for _, f in reader.frames()])
    assert frames.std() > 10  # a picture, not a flat field
    assert np.abs(np.diff(frames.astype(float), axis=0)).mean() > 0.1  # the face moves


def test_default_generate_keeps_the_astronaut_herself(tmp_path, monkeypatch):
    """dlib's same-person check (distance < 0.6) on the output of `sfumato generate` with no options."""
    from benchmarks.quality.identity import identity_distances
    from generator.io.samples import write_astronaut_image

    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["-q", "generate", "--seconds", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "sfumato-output" / "generated.mp4"
    d = identity_distances(out, write_astronaut_image(tmp_path / "astronaut.png"), frames=8)
    assert d["within_0.6"] >= 0.9 and d["mean"] <= 0.45, d


@pytest.mark.parametrize("flag", ["--checkpoint", "--person"])
def test_a_missing_bundled_model_names_the_alternatives(tmp_path, monkeypatch, flag):
    import generator.inference.generate

    monkeypatch.setattr(generator.inference.generate, "BUNDLED_MODEL", tmp_path / "absent.safetensors")
    result = CliRunner().invoke(cli, ["generate", "-o", str(tmp_path / "x.mp4")])
    assert result.exit_code == 1 and flag in result.stderr and "missing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bundled_realism_score_tells_a_held_out_clip_from_its_renders(tmp_path):
    """MODEL_CARD.md's realism table, on one of its held-out videos: r (w_0) ranks real above fake."""
    from benchmarks.quality.realism import RealismConfig, run_realism
    from tests.conftest import shared_file

    video = shared_file("videos", "lia_vox_driving2.mp4")
    meta = load_checkpoint(BUNDLED_MODEL, kind="meta").meta
    assert meta["model"]["d_trunk"] == "lite0" and meta["calibrated_D"]["step"] == 500
    summary = run_realism([video], None, tmp_path, RealismConfig(eval_frames=12, levels=("c0", "c23")))
    assert summary["auc"]["c0"]["agnostic"] >= 0.85, summary["auc"]
    assert summary["auc"]["c23"]["agnostic"] >= 0.7, summary["auc"]
