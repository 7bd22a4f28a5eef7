"""Self-blended fakes and label-blind degradations (issue 16, items 2 and 3)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.data.degrade import (
    DegradeConfig,
    apply_degradation,
    h264_roundtrip,
    jpeg_roundtrip,
    sample_degradation,
)
from detector.data.sbi import SBIConfig, blend_mask, self_blend
from generator.errors import BadInputError


@pytest.fixture(scope="module")
def face():
    """The astronaut's detector crop (256 px) and its landmarks in crop pixels."""
    from generator.faces.backends import create_backend
    from generator.faces.crop import DETECTOR_CROP, crop_face
    from generator.io.samples import astronaut_image

    img = astronaut_image()
    backend = create_backend("dlib")
    points = backend.landmarks(img, backend.detect(img)[0].box)
    crop, crop_points, _ = crop_face(img, points, DETECTOR_CROP)
    return crop, crop_points


def test_self_blended_fake_differs_from_its_source_only_inside_the_mask(face):
    crop, points = face
    rng = np.random.default_rng(0)
    changed_inside = []
    for _ in range(12):
        fake, mask = self_blend(crop, points, rng)
        assert fake.shape == crop.shape and fake.dtype == np.uint8 and mask.shape == crop.shape[:2]
        assert 0 <= mask.min() and mask.max() <= 1
        outside = mask == 0
        assert outside.mean() > 0.1  # the background and hair stay real (the 1.3x crop is tight)
        assert np.array_equal(fake[outside], crop[outside])
        diff = np.abs(fake.astype(int) - crop).max(axis=2)
        changed_inside.append((diff[mask > 0.5] > 0).mean() if (mask > 0.5).any() else 0.0)
    assert np.mean(changed_inside) > 0.5  # and the face itself is changed


def test_the_mask_covers_the_face_not_the_corners(face):
    crop, points = face
    s = crop.shape[0]
    rng = np.random.default_rng(1)
    for _ in range(8):
        mask = blend_mask(points, s, rng, SBIConfig())
        centre = np.round(points[30]).astype(int)  # the nose tip
        assert mask[centre[1], centre[0]] >= 0.2  # the smallest blend ratio is 0.25
        assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0


def test_self_blend_refuses_bad_input(face):
    crop, points = face
    rng = np.random.default_rng(0)
    with pytest.raises(BadInputError, match="68 landmarks"):
        self_blend(crop, np.full((68, 2), np.nan), rng)
    with pytest.raises(BadInputError, match="square RGB"):
        self_blend(crop[:, :100], points, rng)


def test_degradations_are_drawn_the_same_way_whatever_the_label():
    # The training loop draws one parameter set per crop from one stream; the label never enters.
    # Split that stream by a label pattern and the two halves have the same distribution.
    rng = np.random.default_rng(0)
    labels = np.random.default_rng(1).integers(0, 2, 4000)
    draws = [sample_degradation(rng) for _ in labels]
    for key in ("face_px", "jpeg", "crf", "blur", "noise"):
        used = [np.mean([d[key] is not None for d, y in zip(draws, labels) if y == lab]) for lab in (0, 1)]
        assert abs(used[0] - used[1]) < 0.05, (key, used)
        values = [np.array([d[key] for d, y in zip(draws, labels) if y == lab and d[key] is not None])
                  for lab in (0, 1)]
        spread = values[0].std() + 1e-6
        assert abs(values[0].mean() - values[1].mean()) < 0.15 * spread, key
    cfg = DegradeConfig()
    faces = [d["face_px"] for d in draws if d["face_px"]]
    assert min(faces) >= cfg.face_px[0] and max(faces) <= cfg.face_px[1]
    assert {d["crf"] for d in draws if d["crf"] is not None} <= set(range(18, 41))


def test_degradations_keep_the_crop_size_and_cost_detail(face):
    crop, _ = face
    p = {"face_px": 96, "jpeg": None, "crf": 38, "blur": 1.0, "noise": 3.0, "noise_seed": 0}
    out = apply_degradation(crop, p)
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert np.array_equal(out, apply_degradation(crop, p))  # the parameters fix the result
    assert np.abs(out.astype(int) - crop).mean() > 2
    none = {"face_px": None, "jpeg": None, "crf": None, "blur": None, "noise": None, "noise_seed": 0}
    assert np.array_equal(apply_degradation(crop, none), crop)
    # stronger compression loses more
    err = [np.abs(jpeg_roundtrip(crop, q).astype(int) - crop).mean() for q in (95, 30)]
    assert err[0] < err[1]
    err = [np.abs(h264_roundtrip(crop, c).astype(int) - crop).mean() for c in (18, 40)]
    assert err[0] < err[1]
    odd = h264_roundtrip(crop[:101, :99], 23)
    assert odd.shape == (101, 99, 3)


def test_degrade_config_is_checked():
    with pytest.raises(BadInputError):
        DegradeConfig(resize=1.5)
    with pytest.raises(BadInputError):
        DegradeConfig(crf=(40, 18))


def _frames(face, n=40):
    from detector.data.frames import FrameSet

    crop, points = face
    labels = np.arange(n) % 2
    return FrameSet(np.repeat(crop[None], n, 0), labels, [f"v{k}" for k in range(n)], [],
                    np.repeat(points[None], n, 0).astype(np.float32))


def test_training_samples_degrade_both_labels_alike(face, monkeypatch):
    import detector.data.degrade as degrade
    from detector.data.frames import training_sample
    from detector.train import DetectTrainConfig

    seen = {0: [], 1: []}
    real_apply = degrade.apply_degradation

    def spy(crop, params):
        seen[spy.label].append(params)
        return real_apply(crop, params)

    monkeypatch.setattr(degrade, "apply_degradation", spy)
    frames = _frames(face, 400)
    cfg = DetectTrainConfig(degrade=True, flip=0, blur=0, jpeg=0)
    rng = np.random.default_rng(0)
    for i in range(len(frames.crops)):
        spy.label = int(frames.labels[i])
        _, label = training_sample(frames, i, rng, cfg)
        assert label == frames.labels[i]  # no SBI: labels pass through
    assert len(seen[0]) == len(seen[1]) == 200  # every crop of either label is degraded
    for key in ("face_px", "crf", "jpeg"):
        rates = [np.mean([p[key] is not None for p in seen[lab]]) for lab in (0, 1)]
        assert abs(rates[0] - rates[1]) < 0.12, (key, rates)


def test_training_samples_self_blend_real_crops_only(face):
    from detector.data.frames import training_sample
    from detector.train import DetectTrainConfig

    frames = _frames(face, 200)
    cfg = DetectTrainConfig(sbi=0.5, flip=0, blur=0, jpeg=0)
    rng = np.random.default_rng(0)
    turned, fakes_kept = 0, 0
    for i in range(len(frames.crops)):
        x, label = training_sample(frames, i, rng, cfg)
        if frames.labels[i] == 0 and label == 1:
            turned += 1
            assert not np.array_equal(x, frames.crops[i])
        if frames.labels[i] == 1:
            fakes_kept += label == 1 and np.array_equal(x, frames.crops[i])
        if frames.labels[i] == 0 and label == 0:
            assert np.array_equal(x, frames.crops[i])
    assert 30 <= turned <= 70  # half of the 100 real crops
    assert fakes_kept == 100
    with pytest.raises(BadInputError, match="sbi"):
        DetectTrainConfig(sbi=1.5)
