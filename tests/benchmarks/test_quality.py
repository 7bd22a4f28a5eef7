"""The quality benchmark runs on a tiny case and its baselines behave as they must."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from benchmarks.quality import FaceMetrics, QualityConfig, run_quality, warp_baseline, warp_frames
from generator.config import get_preset
from generator.meta_train import train


@pytest.fixture(scope="module")
def checkpoint(tiny_corpus, tmp_path_factory):
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=2)
    return train(tiny_corpus, tmp_path_factory.mktemp("run"), "test_tiny", cfg).checkpoint


def test_quality_run_on_a_tiny_case(checkpoint, astronaut_clip, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    cfg = QualityConfig(shots=(1, 4), eval_frames=3, finetune_steps=2)
    summary = run_quality([astronaut_clip, bad], checkpoint, tmp_path / "q", cfg)
    assert [f["video"] for f in summary["failed"]] == [str(bad)]  # reported, not fatal
    table = {(r["method"], r["T"]): r for r in summary["table"]}
    assert set(table) == {(m, t) for m in ("copy", "warp", "FF", "FT") for t in (1, 4)}
    assert table[("copy", 1)]["motion"] == 0  # copying the source has no motion at all
    assert table[("warp", 1)]["motion"] > 0
    assert table[("warp", 1)]["LMD"] < table[("copy", 1)]["LMD"]  # warp follows the driver
    for r in summary["table"]:
        assert 0 <= r["SSIM"] <= 1 and r["PSNR"] > 0 and -1 <= r["CSIM"] <= 1 and r["LMD"] >= 0
    saved = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert saved["table"] == summary["table"]
    assert "| warp | 1 |" in (tmp_path / "q" / "quality.md").read_text()
    assert (tmp_path / "q" / "grid.png").stat().st_size > 1000


def test_warp_moves_landmarks_to_the_driver(astronaut):
    metrics = FaceMetrics()
    src_pts = metrics.landmarks(astronaut, np.array([[185, 85], [270, 175]], np.float32))
    dst = src_pts.copy()
    dst[48:68, 1] += 12  # mouth moved down
    warped = warp_baseline(astronaut, src_pts, dst)
    found = metrics.landmarks(warped, dst)
    assert np.abs(found[48:68, 1] - dst[48:68, 1]).mean() < np.abs(src_pts[48:68, 1]
                                                                   - dst[48:68, 1]).mean()


def test_quality_reuses_finished_videos_and_redoes_changed_ones(checkpoint, astronaut_clip, tmp_path,
                                                                monkeypatch):
    import benchmarks.quality as quality

    cfg = QualityConfig(shots=(1,), eval_frames=2, finetune_steps=0)
    first = run_quality([astronaut_clip], checkpoint, tmp_path / "q", cfg)
    assert first["reused_videos"] == 0 and len(first["checkpoint_sha256"]) == 64
    calls = []
    real = quality.evaluate_video
    monkeypatch.setattr(quality, "evaluate_video", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = run_quality([astronaut_clip], checkpoint, tmp_path / "q", cfg)  # e.g. after a kill
    assert calls == [] and again["reused_videos"] == 1 and again["table"] == first["table"]
    assert (tmp_path / "q" / "grid.png").is_file()
    other = run_quality([astronaut_clip], checkpoint, tmp_path / "q",
                        dataclasses.replace(cfg, eval_frames=3))  # new settings: evaluated anew
    assert calls == [1] and other["reused_videos"] == 0
    next((tmp_path / "q" / "per_video").glob("*.json")).write_text("{damaged")
    run_quality([astronaut_clip], checkpoint, tmp_path / "q", dataclasses.replace(cfg, eval_frames=3))
    assert calls == [1, 1]  # a damaged record is redone, not trusted


def test_the_warp_baseline_uses_the_shot_closest_in_pose():
    from generator.driving import mean_face

    rng = np.random.default_rng(0)
    p = mean_face(64)
    frames = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    shots = np.stack([p + 3.0, p, p - 2.0]).astype(np.float32)
    shots[0, 48:68, 1] += 4  # the first shot's mouth differs: another pose/expression
    driving = np.stack([p, p + 0.5])
    one = warp_frames(frames[:1], shots[:1], driving)
    three = warp_frames(frames, shots, driving)
    assert one.shape == three.shape == (2, 64, 64, 3)
    assert not np.array_equal(one, three)  # T = 3 picks shot 1, T = 1 has only shot 0
    assert np.array_equal(three[0], warp_baseline(frames[1], shots[1], driving[0]))
