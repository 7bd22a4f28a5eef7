"""The quality benchmark runs on a tiny case and its baselines behave as they must."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from benchmarks.quality.reenactment import (
    FaceMetrics,
    QualityConfig,
    mouth_box,
    mouth_ssim,
    run_quality,
    temporal_change,
    temporal_ratio,
    warp_baseline,
    warp_frames,
)
from generator.io.video import read_image
from generator.model.config import get_preset
from generator.training.meta_train import train


@pytest.fixture(scope="module")
def checkpoint(tiny_corpus, tmp_path_factory):
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=2)
    return train(tiny_corpus, tmp_path_factory.mktemp("run"), "test_tiny", cfg).checkpoint


def test_quality_run_on_a_tiny_case(checkpoint, astronaut_clip, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    cfg = QualityConfig(shots=(1, 4), eval_frames=3, finetune_steps=2, temporal_frames=3)
    summary = run_quality([astronaut_clip, bad], checkpoint, tmp_path / "q", cfg)
    assert [f["video"] for f in summary["failed"]] == [str(bad)]  # reported, not fatal
    table = {(r["method"], r["T"]): r for r in summary["table"]}
    assert set(table) == {(m, t) for m in ("copy", "warp", "FF", "FT") for t in (1, 4)}
    assert table[("copy", 1)]["motion"] == 0  # copying the source has no motion at all
    assert table[("warp", 1)]["motion"] > 0
    assert table[("warp", 1)]["LMD"] < table[("copy", 1)]["LMD"]  # warp follows the driver
    for r in summary["table"]:
        assert 0 <= r["SSIM"] <= 1 and r["PSNR"] > 0 and -1 <= r["CSIM"] <= 1 and r["LMD"] >= 0
        assert -1 <= r["SSIM_mouth"] <= 1  # SSIM can go below 0 on a small box
        assert r["temporal_real"] > 0  # the sample clip's camera drifts
        assert r["temporal_ratio"] == pytest.approx(r["temporal"] / r["temporal_real"])
    assert table[("copy", 1)]["temporal"] == 0 and table[("copy", 4)]["temporal_ratio"] == 0
    assert table[("warp", 1)]["temporal"] > 0 and table[("FT", 4)]["temporal"] > 0
    assert summary["per_video"][0]["temporal_frames"] == 3
    saved = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert saved["table"] == summary["table"]
    md = (tmp_path / "q" / "quality.md").read_text()
    assert "| warp | 1 |" in md and "SSIM mouth" in md and "temporal ratio" in md
    grid = read_image(tmp_path / "q" / "grid.png")
    size = get_preset("test_tiny").model.image_size
    assert grid.shape[:2] == (2 * size, 7 * size)  # frames row + mouth row; source, driver, 4 methods, real
    assert grid[size:].std() > 0  # the mouth row holds pictures


def test_mouth_ssim_sees_a_corrupted_mouth_that_full_frame_ssim_barely_sees(astronaut):
    import cv2
    from skimage.metrics import structural_similarity

    from generator.faces.motion import mean_face

    image = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    points = mean_face(128)
    assert mouth_ssim(image, image, points) == pytest.approx(1.0)
    x0, y0, x1, y1 = mouth_box(points, image.shape)
    m = points[48:68]
    w, h = np.ptp(m[:, 0]), np.ptp(m[:, 1])
    assert x0 <= m[:, 0].min() - 0.2 * w and x1 >= m[:, 0].max() + 0.2 * w  # padded ~25% per side
    assert y0 <= m[:, 1].min() - 0.2 * h and y1 >= m[:, 1].max() + 0.2 * h
    bad = image.copy()
    bad[y0:y1, x0:x1] = np.random.default_rng(0).integers(0, 256, bad[y0:y1, x0:x1].shape)
    full = structural_similarity(bad, image, channel_axis=2, data_range=255)
    mouth = mouth_ssim(bad, image, points)
    assert mouth < 0.3 and full > 0.8 and 1 - full < (1 - mouth) / 3


def test_the_mouth_box_stays_inside_the_image():
    from generator.faces.motion import mean_face

    points = mean_face(64)
    points[48:68] += (0, 40)  # mouth pushed past the bottom edge
    x0, y0, x1, y1 = mouth_box(points, (64, 64, 3))
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 and min(x1 - x0, y1 - y0) >= 7
    assert 0 <= mouth_ssim(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), points) <= 1


def test_temporal_change_of_still_and_known_sequences():
    still = np.full((5, 8, 8, 3), 77, np.uint8)
    assert temporal_change(still) == 0
    levels = np.array([0, 10, 30, 30], np.uint8)  # changes 10, 20, 0
    seq = np.broadcast_to(levels[:, None, None, None], (4, 8, 8, 3)).copy()
    assert temporal_change(seq) == pytest.approx(10.0)
    half = seq.copy()
    half[:, :4] = 0  # only half the pixels change
    assert temporal_change(half) == pytest.approx(5.0)
    assert temporal_change(np.array([np.full((2, 2, 3), 200), np.full((2, 2, 3), 50)], np.uint8)) == 150
    with pytest.raises(ValueError):
        temporal_change(still[:1])
    assert temporal_ratio(6.0, 3.0) == 2.0 and temporal_ratio(1.0, 0.0) is None
    assert temporal_ratio(None, 3.0) is None
    with pytest.raises(ValueError):
        QualityConfig(temporal_frames=1)


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
    import benchmarks.quality.reenactment as quality

    cfg = QualityConfig(shots=(1,), eval_frames=2, finetune_steps=0, temporal_frames=0)
    first = run_quality([astronaut_clip], checkpoint, tmp_path / "q", cfg)
    assert first["reused_videos"] == 0 and len(first["checkpoint_sha256"]) == 64
    assert all(r[k] is None for r in first["table"] for k in ("temporal", "temporal_ratio"))  # off
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
    from generator.faces.motion import mean_face

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
