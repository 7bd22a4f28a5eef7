"""The face-pipeline benchmark reports real per-stage timings (targets live in the closing note)."""

from __future__ import annotations

from benchmarks.speed.faces import run_face_benchmark


def test_benchmark_reports_stages(astronaut_clip):
    r = run_face_benchmark(astronaut_clip, detect_every=8)
    assert r["frames"] == r["frames_with_face"] == 40
    assert 40 // 8 <= r["detector_runs"] <= 40 // 2
    assert r["fps"] > 0 and r["seconds"] > 0
    assert set(r["ms_per_frame"]) == {"decode", "detect", "landmarks", "crop"}
    assert all(v > 0 for v in r["ms_per_frame"].values())
    every = run_face_benchmark(astronaut_clip, detect_every=1, max_frames=10)
    assert every["detector_runs"] == every["frames"] == 10
