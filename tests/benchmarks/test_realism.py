"""The realism benchmark: compression levels really encode, the AUC wiring is oriented right, and a run
on held-out clips writes sane figures, records a bad video and works from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.quality.realism import (
    IDENTITY_MODES,
    RealismConfig,
    auc_by_level,
    compress_frames,
    level_crf,
    run_realism,
    score_levels,
)
from tests.conftest import shared_file

LEVELS = ("c0", "c23", "c40")


def _faces(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Textured crops (gradient + noise + a moving blob) in the mid-grey range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = []
    for i in range(n):
        blob = 60 * np.exp(-((xx - 20 - 3 * i) ** 2 + (yy - 32) ** 2) / 80)
        f = 70 + 0.6 * xx + blob + rng.normal(0, 8, (size, size))
        out.append(np.repeat(f[..., None], 3, axis=2) * np.array([1.0, 0.9, 0.8]))
    return np.clip(out, 0, 255).astype(np.uint8)


class BrightnessScorer:
    """A planted D: r = mean brightness of the crop (shifted by a per-clip constant in clip mode)."""

    def scores(self, samples, identity: str = "agnostic") -> np.ndarray:
        r = samples.realism_crops.astype(np.float64).mean(axis=(1, 2, 3))
        return r - (r.mean() * 0.5 if identity == "clip" else 0.0)


def test_level_names():
    assert [level_crf(lv) for lv in LEVELS] == [None, 23, 40] and level_crf("crf30") == 30
    for bad in ("c52", "h264", "c-1"):
        with pytest.raises(ValueError):
            level_crf(bad)
    with pytest.raises(ValueError):
        RealismConfig(levels=("c0", "q9"))


def test_compression_levels_really_encode():
    frames = _faces(6)
    c0, c23, c40 = (compress_frames(frames, lv) for lv in LEVELS)
    assert np.array_equal(c0, frames) and c0 is not frames
    assert c23.shape == c40.shape == frames.shape and c23.dtype == np.uint8
    err23, err40 = (np.abs(c.astype(float) - frames).mean() for c in (c23, c40))
    assert 0 < err23 < err40  # the encode happened, and CRF 40 loses more than CRF 23


def test_planted_brightness_d_separates_perfectly_at_every_level():
    dark = _faces(8, seed=1)
    bright = np.clip(dark.astype(int) + 60, 0, 255).astype(np.uint8)
    points = np.zeros((8, 68, 2), np.float32)
    real, fake = score_levels(BrightnessScorer(), bright, dark, points, LEVELS)
    assert set(real) == set(LEVELS) and all(set(real[lv]) == set(IDENTITY_MODES) for lv in LEVELS)
    assert all(len(real[lv][m]) == 8 for lv in LEVELS for m in IDENTITY_MODES)
    assert not np.allclose(real["c0"]["agnostic"], real["c23"]["agnostic"])  # encoded pixels score anew
    auc = auc_by_level(real, fake)
    assert auc == {lv: {m: 1.0 for m in IDENTITY_MODES} for lv in LEVELS}  # real brighter = more real
    assert auc_by_level(fake, real)["c0"]["agnostic"] == 0.0  # swapped classes: the other extreme
    assert auc_by_level({"c0": {"agnostic": np.array([np.nan])}},
                        {"c0": {"agnostic": np.array([1.0])}}) == {"c0": {"agnostic": None}}


@pytest.fixture(scope="module")
def videos():
    return [shared_file("videos", "eamm_happy.mp4"), shared_file("videos", "eamm_contempt.mp4")]


def test_realism_run_on_held_out_clips(checkpoint, videos, tmp_path, monkeypatch):
    import benchmarks.quality.realism as realism
    from generator.io.files import sha256_file

    seen = []  # (level, input, output) of every compression the run applied
    real_compress = realism.compress_frames
    monkeypatch.setattr(realism, "compress_frames",
                        lambda f, lv: seen.append((lv, f, real_compress(f, lv))) or seen[-1][2])
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    cfg = RealismConfig(shots=1, eval_frames=4)
    summary = run_realism([*videos, bad], checkpoint, tmp_path / "r", cfg)
    assert [f["video"] for f in summary["failed"]] == [str(bad)] and summary["failed"][0]["error"]
    assert summary["videos"] == [str(v) for v in videos]
    saved = json.loads((tmp_path / "r" / "realism.json").read_text())
    assert saved["checkpoint_sha256"] == sha256_file(checkpoint) and saved["config"]["levels"] == list(LEVELS)
    for lv in LEVELS:
        for m in IDENTITY_MODES:
            assert 0.0 <= saved["auc"][lv][m] <= 1.0
            assert saved["counts"][lv][m] == {"real": 4 * len(videos), "fake": 4 * len(videos)}
    for v in saved["per_video"]:
        assert v["driving_frames"] == 4 and set(v["mean_r"]) == set(LEVELS)
        assert len(v["r_real"]["c23"]["clip"]) == len(v["r_fake"]["c40"]["agnostic"]) == 4
    assert sorted(lv for lv, _, _ in seen) == sorted(LEVELS * 2 * len(videos))  # real and fake alike
    for lv, before, after in seen:
        assert after.shape == before.shape == (4, 64, 64, 3)
        assert np.array_equal(after, before) == (lv == "c0")  # c23 / c40 frames differ: encoded
    assert set(saved["goal"]) == {"c0", "c23"}
    md = (tmp_path / "r" / "realism.md").read_text()
    assert "| c23 | agnostic |" in md and "bad.mp4" in md
    assert (tmp_path / "r" / "realism.png").stat().st_size > 1000


def test_cli_realism_json(checkpoint, videos, tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    r = CliRunner().invoke(cli, ["-q", "bench", "realism", str(videos[0]), "--checkpoint", str(checkpoint),
                                 "-o", str(tmp_path / "out"), "--frames", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["config"]["eval_frames"] == 2 and doc["config"]["shots"] == 1 and "per_video" not in doc
    assert doc["counts"]["c40"]["clip"] == {"real": 2, "fake": 2} and not doc["failed"]
    assert (tmp_path / "out" / "realism.json").is_file()
