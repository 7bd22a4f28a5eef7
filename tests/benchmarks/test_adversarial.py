"""Detector-in-the-loop fine-tuning of G: the differentiable detector crop matches OpenCV's, the
detector loss lowers a frozen detector's score while the content loss stays bounded, E and D stay
as they were, and a stopped run resumes to the same generator."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from benchmarks.adversarial.against_detector import (
    AdversarialConfig,
    adversarial_finetune,
    detector_view,
    warp_affine,
)

CFG = AdversarialConfig(steps=24, batch_size=4, k=2, lr_g=1e-3, detector_weight=20.0, checkpoint_every=4)


def test_warp_affine_matches_opencv():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((48, 48, 3)).astype(np.float32), (0, 0), 2)
    a = np.deg2rad(17)
    m = np.array([[0.8 * np.cos(a), -0.8 * np.sin(a), 9.0], [0.8 * np.sin(a), 0.8 * np.cos(a), -4.0]])
    want = cv2.warpAffine(img, m, (32, 32), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    got = warp_affine(torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(m)[None].float(), 32)
    got = got[0].permute(1, 2, 0).numpy()
    # exact bilinear sampling at inv(M) @ (x, y, 1), edges replicated
    inv = cv2.invertAffineTransform(m)
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float64)
    sx = np.clip(inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], 0, 47)
    sy = np.clip(inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2], 0, 47)
    x0, y0 = np.minimum(np.floor(sx).astype(int), 46), np.minimum(np.floor(sy).astype(int), 46)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    exact = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x0 + 1])
             + fy * ((1 - fx) * img[y0 + 1, x0] + fx * img[y0 + 1, x0 + 1]))
    assert np.abs(got - exact).max() < 1e-5
    # OpenCV rounds sample positions to 1/32 pixel (INTER_TAB_SIZE), so it agrees only to that grid
    assert np.abs(got - want).max() < 3e-3


def test_detector_view_of_a_real_frame_is_the_detectors_crop(tiny_corpus):
    from benchmarks.adversarial.against_detector import EpisodeSource
    from generator.faces.crop import DETECTOR_CROP, crop_face

    src = EpisodeSource(tiny_corpus, 64, 2)
    _, _, xt, _, pts, texture = src.sample(2, 0, 0)
    assert texture is None  # a pure G
    x_hat = torch.zeros_like(xt, requires_grad=True)
    view = detector_view(x_hat, xt, pts, 48)
    view.sum().backward()
    assert view.shape == (2, 3, 48, 48) and x_hat.grad.abs().sum() > 0  # the face reaches the detector
    real = detector_view(xt, xt, pts, 48)[0].permute(1, 2, 0).numpy()
    frame = ((xt[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.float32)
    want = crop_face(frame, pts[0], dataclasses.replace(DETECTOR_CROP, size=48))[0]
    inner = slice(4, -4)  # away from borders, where replicate padding and OpenCV's constant differ
    assert np.abs((real + 1) * 127.5 - want)[inner, inner].mean() < 2.0


def test_detector_loss_lowers_the_frozen_detectors_score_and_keeps_content(
        tiny_corpus, tiny_checkpoint, sharp_detector, tmp_path):
    from generator.io.files import sha256_file
    from generator.model.talking_head import load_meta_model

    torch.manual_seed(0)
    out = tmp_path / "g1.safetensors"
    tiny_detector = sharp_detector
    det_sha = sha256_file(tiny_detector)
    s = adversarial_finetune(tiny_checkpoint, tiny_corpus, tiny_detector, out, CFG)
    before, after = s["before"], s["after"]
    assert after["p_fake"] < before["p_fake"] - 0.05  # the detector is fooled more often
    assert after["L_DET"] < before["L_DET"]
    assert after["L_CNT"] < 1.5 * before["L_CNT"] + 0.05  # content kept within bounds
    assert sha256_file(tiny_detector) == det_sha  # frozen: its file untouched
    g0, _ = load_meta_model(tiny_checkpoint)
    g1, meta = load_meta_model(out)
    for name in ("E", "D"):  # only G moved
        before_sd, after_sd = getattr(g0, name).state_dict(), getattr(g1, name).state_dict()
        for (k, a), b in zip(before_sd.items(), after_sd.values()):
            assert torch.equal(a, b), f"{name}.{k} changed"
    assert any(not torch.equal(a, b) for a, b in zip(g0.G.state_dict().values(), g1.G.state_dict().values()))
    assert meta["base_checkpoint_sha256"] == sha256_file(tiny_checkpoint)
    assert meta["detector_sha256"] == det_sha and meta["adversarial"]["steps"] == CFG.steps
    assert out.with_suffix(".json").is_file() and not out.with_name(out.name + ".state.safetensors").exists()


def test_a_stopped_finetune_resumes_to_the_same_generator(tiny_corpus, tiny_checkpoint, tiny_detector,
                                                          tmp_path):
    from generator.errors import ConfigMismatchError
    from generator.model.talking_head import load_meta_model

    cfg = dataclasses.replace(CFG, steps=6, checkpoint_every=2)
    whole = adversarial_finetune(tiny_checkpoint, tiny_corpus, tiny_detector, tmp_path / "a.safetensors", cfg)
    part = adversarial_finetune(tiny_checkpoint, tiny_corpus, tiny_detector, tmp_path / "b.safetensors", cfg,
                                stop_after=3)
    assert part["stopped"] and part["steps"] == 3 and not (tmp_path / "b.safetensors").exists()
    with pytest.raises(ConfigMismatchError, match="another fine-tuning"):
        adversarial_finetune(tiny_checkpoint, tiny_corpus, tiny_detector, tmp_path / "b.safetensors",
                             dataclasses.replace(cfg, lr_g=1e-4))
    rest = adversarial_finetune(tiny_checkpoint, tiny_corpus, tiny_detector, tmp_path / "b.safetensors", cfg)
    assert rest["steps"] == 6 and rest["before"] == whole["before"]
    a, _ = load_meta_model(tmp_path / "a.safetensors")
    b, _ = load_meta_model(tmp_path / "b.safetensors")
    for (k, x), y in zip(a.G.state_dict().items(), b.G.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), k
