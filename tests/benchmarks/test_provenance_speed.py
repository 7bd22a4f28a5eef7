"""The provenance benchmark measures real sign/verify round trips (targets go in the closing note)."""

from __future__ import annotations

from benchmarks.speed.provenance import run_provenance_benchmark


def test_provenance_benchmark_reports_trusted_round_trips():
    r = run_provenance_benchmark(repeats=1, clip_frames=5, preset="test_tiny")
    assert r["verify_mp4_state"] == r["verify_png_state"] == "Trusted"
    assert 0.8e6 < r["mp4_bytes"] < 2e6
    assert r["sign_mp4_ms"] > 0 and r["verify_png_ms"] > 0
    assert 0 < r["sign_share_percent"] < 100
