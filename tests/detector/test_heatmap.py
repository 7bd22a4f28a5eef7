"""Grad-CAM maps: the crop's size, a distribution (sums to 1), and they follow the evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.evidence.heatmap import gradcam, overlay
from detector.model import Detector


def test_gradcam_maps_have_the_crop_size_and_sum_to_one():
    torch.manual_seed(0)
    model = Detector("efficientnet_b0")
    crops = np.random.default_rng(0).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    maps = gradcam(model, crops)
    assert maps.shape == (2, 96, 96) and maps.dtype == np.float32
    assert (maps >= 0).all() and np.allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-4)
    assert not model.training and all(p.grad is None for p in model.parameters())  # nothing learnt
    shown = overlay(crops[0], maps[0])
    assert shown.shape == crops[0].shape and shown.dtype == np.uint8


def test_gradcam_points_at_what_raises_the_logit(monkeypatch):
    # A 'detector' whose features are the input's brightness and whose logit is their mean: on a
    # crop bright in its top-left quarter only, that quarter is what raises the logit.
    model = Detector("efficientnet_b0")
    monkeypatch.setattr(model.net, "forward_features", lambda x: x.mean(1, keepdim=True).repeat(1, 4, 1, 1))
    monkeypatch.setattr(model.net, "forward_head", lambda f: f.mean(dim=(1, 2, 3))[:, None])
    crops = np.zeros((1, 64, 64, 3), np.uint8)
    crops[0, :32, :32] = 255
    heat = gradcam(model, crops)[0]
    assert heat[:32, :32].sum() == pytest.approx(1.0, abs=0.02)
