"""The model benchmark reports every figure, per precision, for the device it ran on."""

from __future__ import annotations

import pytest
import torch

from benchmarks.speed.model import measure_preset


def test_measure_preset_on_the_cpu_reports_bf16_not_fp16():
    r = measure_preset("test_tiny", k=2, repeats=1, threads=1)
    assert r["device"] == "cpu" and r["image_size"] == 64
    for key in ("E_ms_for_K", "G_ms_per_frame", "G_ms_per_frame_batch8", "G_ms_per_frame_bf16",
                "naive_G_ms_per_frame", "train_step_s", "train_step_bf16_s", "naive_train_step_s"):
        assert r[key] > 0, key
    assert not any("fp16" in key for key in r)  # fp16 autocast is a GPU path
    assert r["train_speedup"] == pytest.approx(r["naive_train_step_s"] / r["train_step_s"], rel=0.01)
    assert "peak_gpu_mb" not in r


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_model_cuda_without_a_gpu_is_a_usage_error():
    from click.testing import CliRunner

    from cli.main import cli

    r = CliRunner().invoke(cli, ["bench", "model", "--preset", "test_tiny", "--device", "cuda"])
    assert r.exit_code == 2 and "no CUDA device" in r.output
