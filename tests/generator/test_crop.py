"""Face crops: the transform, its inverse, alignment, and pasting back."""

from __future__ import annotations

import numpy as np
import pytest

from generator.faces.crop import (
    DETECTOR_CROP,
    TRAINING_CROP,
    CropParams,
    CropTransform,
    crop_face,
    crop_transform,
    eye_angle,
)


def synthetic_face(rng, angle_deg: float = 0.0, centre=(300.0, 220.0), scale=120.0) -> np.ndarray:
    base = rng.uniform(-0.5, 0.5, (68, 2))
    base[36:42] = [-0.25, -0.15] + rng.uniform(-0.03, 0.03, (6, 2))  # right eye
    base[42:48] = [0.25, -0.15] + rng.uniform(-0.03, 0.03, (6, 2))  # left eye
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (base @ rot.T) * scale + centre


@pytest.mark.parametrize("params", [TRAINING_CROP, DETECTOR_CROP, CropParams(size=64, margin=1.8)])
def test_points_round_trip(params):
    rng = np.random.default_rng(0)
    pts = synthetic_face(rng, angle_deg=17)
    t = crop_transform(pts, params)
    local = t.apply_points(pts)
    assert np.allclose(t.invert_points(local), pts, atol=1e-3)
    # The face fits inside the crop with the requested margin.
    assert local.min() >= 0 and local.max() <= params.size
    span = (local.max(0) - local.min(0)).max()
    assert span <= params.size / params.margin * (1.45 if params.align else 1.0) + 1e-3


def test_matrix_and_inverse_compose_to_identity():
    t = crop_transform(synthetic_face(np.random.default_rng(1), 30), DETECTOR_CROP)
    m = np.vstack([t.matrix, [0, 0, 1]])
    inv = np.vstack([t.inverse, [0, 0, 1]])
    assert np.allclose(m @ inv, np.eye(3), atol=1e-9)
    assert CropTransform.from_dict(t.to_dict()).matrix == pytest.approx(t.matrix, abs=1e-6)


def test_alignment_levels_the_eyes():
    pts = synthetic_face(np.random.default_rng(2), angle_deg=25)
    assert abs(np.rad2deg(eye_angle(pts))) > 15
    aligned = crop_transform(pts, DETECTOR_CROP).apply_points(pts)
    assert abs(np.rad2deg(eye_angle(aligned))) < 1e-3
    unaligned = crop_transform(pts, TRAINING_CROP).apply_points(pts)
    assert np.rad2deg(eye_angle(unaligned)) == pytest.approx(np.rad2deg(eye_angle(pts)), abs=1e-3)


def test_image_crop_puts_pixels_where_the_transform_says():
    rng = np.random.default_rng(3)
    frame = np.zeros((480, 640, 3), np.uint8)
    pts = synthetic_face(rng, angle_deg=10)
    marker = np.round(pts[30]).astype(int)
    frame[marker[1] - 2: marker[1] + 3, marker[0] - 2: marker[0] + 3] = 255
    crop, local, t = crop_face(frame, pts, CropParams(size=256, margin=1.5, align=True))
    assert crop.shape == (256, 256, 3)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert np.hypot(xs.mean() - local[30, 0], ys.mean() - local[30, 1]) < 1.5


def test_crop_outside_the_frame_is_black():
    pts = synthetic_face(np.random.default_rng(4), centre=(20.0, 20.0), scale=60.0)
    crop, _, _ = crop_face(np.full((100, 100, 3), 200, np.uint8), pts, TRAINING_CROP)
    assert (crop[:20, :20] == 0).all() and (crop > 0).any()


def test_paste_back_restores_the_face_region():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    pts = synthetic_face(rng, angle_deg=5, centre=(200, 150), scale=80)
    crop, _, t = crop_face(frame, pts, CropParams(size=256, margin=1.6))
    pasted = t.paste(np.zeros_like(crop), frame)
    c = np.round(pts.mean(0)).astype(int)
    assert pasted[c[1] - 10: c[1] + 10, c[0] - 10: c[0] + 10].max() == 0  # inside: the crop
    assert np.array_equal(pasted[:5, :5], frame[:5, :5])  # far outside: untouched


def test_bad_params_are_refused():
    with pytest.raises(ValueError):
        CropParams(size=4)
    with pytest.raises(ValueError):
        CropParams(margin=0)


def test_face_mask_covers_the_face_and_paste_keeps_the_background():
    from generator.faces.crop import crop_transform, face_mask
    from generator.faces.motion import mean_face

    pts = mean_face(128)
    mask = face_mask(pts, 128)
    assert mask.shape == (128, 128) and mask.max() <= 1.0 + 1e-6
    cx, cy = pts.mean(0).round().astype(int)
    assert mask[cy, cx] > 0.99 and mask[2, 2] < 0.01 and mask[125, 125] < 0.01
    frame = np.full((200, 200, 3), 50, np.uint8)
    t = crop_transform(pts + 36, CropParams(size=128))
    out = t.paste(np.full((128, 128, 3), 250, np.uint8), frame, mask=mask)
    centre = t.invert_points(np.array([[cx, cy]], np.float32))[0].round().astype(int)
    assert out[centre[1], centre[0]].min() > 240  # the face is pasted
    assert (out[:3, :3] == 50).all() and (out[-3:, -3:] == 50).all()  # the corners stay the frame's
