"""The GPU-machine check script runs end to end on the CPU (the way a GPU session will run it)."""

from __future__ import annotations

import json

from benchmarks.speed.device_check import main


def test_device_check_on_the_cpu(tiny_corpus, tmp_path):
    out = tmp_path / "out"
    r = main(["--corpus", str(tiny_corpus), "--out", str(out), "--device", "cpu", "--presets",
              "test_tiny", "--quick", "--threads", "1"])
    assert r["device"] == "cpu" and r["gpu"] is None
    assert not any(isinstance(v, dict) and "error" in v for v in r.values()), r
    (model,) = r["model"]
    assert model["G_ms_per_frame"] > 0 and "train_step_bf16_s" in model
    (gen,) = r["finetune_generate"]
    assert gen["finetune_step_s"] > 0 and set(gen) >= {"fp32_b8", "fp32_b32", "bf16_b8", "bf16_b32"}
    assert gen["fp32_b8"]["frames"] == 100 and gen["fp32_b8"]["fps_after_person"] > 0
    (tr,) = r["train_cli"]
    assert (tr["first"]["step"], tr["resume"]["step"]) == (4, 6) and tr["amp"] == "bf16"
    (adv,) = r["adversarial"]
    assert adv["steps"] == 4 and adv["step_s"] > 0 and set(adv["after"]) >= {"p_fake", "L_CNT"}
    assert json.loads((out / "device.json").read_text()) == json.loads(json.dumps(r))
    assert (out / "test_tiny_generated.mp4").stat().st_size > 1000
    assert (out / "train_test_tiny_bf16_b1_stats.csv").read_text().startswith("step,")
