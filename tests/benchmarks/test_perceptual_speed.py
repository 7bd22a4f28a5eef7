"""The perceptual-loss benchmark measures what it names."""

from __future__ import annotations

import pytest

from benchmarks.speed.perceptual import measure_loss, measure_train_step


def test_loss_and_train_step_figures_are_measured():
    r = measure_loss("tf_efficientnet_lite0", 64, batch=2, repeats=1, threads=1)
    assert r["forward_backward_ms"] > r["forward_ms"] > 0 and r["batch"] == 2
    assert r["peak_rss_added_mb"] >= 0
    none = measure_train_step("test_tiny", "none", repeats=1, threads=1)
    lite = measure_train_step("test_tiny", "lite0", repeats=1, threads=1)
    assert none["content"] == "none" and lite["content"] == "lite0" and lite["image_size"] == 64
    assert none["train_step_s"] > 0 and lite["train_step_s"] > 0 and "share_of_step" not in none
    assert 0 < lite["share_of_step"] <= 1
    assert lite["share_of_step"] == pytest.approx(lite["loss_in_step_s"] / lite["train_step_s"], abs=2e-3)
