"""The generate benchmark times every stage of one run, in the precision it resolved."""

from __future__ import annotations

import pytest

from benchmarks.speed.generate import run_generate_benchmark
from generator.io.samples import write_astronaut_clip


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_generate_benchmark_reports_stages_and_precision(tmp_path, precision):
    import torch

    from generator.inference.person import resolve_precision

    clip = write_astronaut_clip(tmp_path / "drive.mp4", n_frames=12, size=192)
    [row] = run_generate_benchmark(clip, ("test_tiny",), frames=12, threads=1, precision=precision)
    assert row["preset"] == "test_tiny" and row["frames"] == 12
    assert row["precision"] == resolve_precision(precision, torch.device("cpu"))
    assert set(row["stage_seconds"]) == {"person", "driver_landmarks", "render_G", "compose_encode",
                                         "sign"}
    assert sum(row["share_percent"].values()) == pytest.approx(100, abs=0.5)
    assert row["face_models_seconds"] > 0
    # reading dlib's models is outside the end-to-end figure and only lowers the one that adds it
    assert 0 < row["fps_with_face_models"] < row["fps_end_to_end"] < row["fps_after_person"]
