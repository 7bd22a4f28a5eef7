"""The landmark image y: the paper's palette, geometry, line width and value range."""

from __future__ import annotations

import numpy as np
import pytest

from generator.faces.landmarks import (
    PALETTE,
    PARTS,
    landmark_image,
    landmark_tensor,
    line_width,
    overlay,
    to_unit_range,
)


def mean_face(size: int = 256) -> np.ndarray:
    """A plausible frontal 68-point layout scaled into a ``size`` square (from the astronaut)."""
    from generator.faces.backends import create_backend
    from generator.io.samples import astronaut_image

    img = astronaut_image()
    backend = create_backend("dlib")
    pts = backend.landmarks(img, backend.detect(img)[0].box)
    lo, hi = pts.min(0), pts.max(0)
    return ((pts - lo) / (hi - lo).max() * 0.7 + 0.15) * size


@pytest.fixture(scope="module")
def face256():
    return mean_face(256)


def test_only_palette_colours_on_black(face256):
    img = landmark_image(face256, 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    colours = {tuple(int(v) for v in c) for c in img.reshape(-1, 3)}
    assert colours <= PALETTE | {(0, 0, 0)}
    assert colours - {(0, 0, 0)} == PALETTE  # every part drawn
    assert (img.sum(-1) == 0).mean() > 0.9  # thin lines on black


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.name)
def test_each_part_has_its_colour_at_its_points(face256, part):
    img = landmark_image(face256, 256)
    for i in part.indices:
        x, y = np.round(face256[i]).astype(int)
        patch = img[max(0, y - 1): y + 2, max(0, x - 1): x + 2].reshape(-1, 3)
        # Where parts share a point (nose tip 30, 33) either blue line may be on top.
        assert any(tuple(c) == part.color for c in patch), f"{part.name} point {i}"


def test_closed_parts_are_closed(face256):
    img = landmark_image(face256, 256)
    eye = [p for p in PARTS if p.name == "right_eye"][0]
    a, b = face256[eye.indices[-1]], face256[eye.indices[0]]
    mid = np.round((a + b) / 2).astype(int)
    assert tuple(img[mid[1], mid[0]]) == eye.color  # the segment last -> first is drawn


def test_line_width_scales_with_size(face256):
    assert (line_width(64), line_width(256), line_width(512)) == (1, 2, 4)
    ink = {s: (landmark_image(face256 * s / 256, s).sum(-1) > 0).sum() / s for s in (128, 256, 512)}
    # Ink per unit length grows with the line width.
    assert ink[128] < ink[256] < ink[512]


def test_tensor_range_and_layout(face256):
    t = landmark_tensor(face256, 256)
    assert tuple(t.shape) == (3, 256, 256)
    assert float(t.min()) == -1.0 and float(t.max()) == 1.0
    arr = to_unit_range(np.array([[[0, 255, 128]]], np.uint8))
    assert arr.shape == (3, 1, 1)
    assert np.allclose(arr.ravel(), [-1.0, 1.0, 128 / 127.5 - 1], atol=1e-6)


def test_bad_landmarks_are_refused():
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        landmark_image(np.zeros((5, 2)), 64)
    bad = np.zeros((68, 2))
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        landmark_image(bad, 64)


def test_overlay_keeps_frame_and_draws(face256):
    frame = np.full((256, 256, 3), 90, np.uint8)
    out = overlay(frame, face256, np.array([40, 40, 200, 220]), "frame 3")
    assert out.shape == frame.shape and (frame == 90).all()  # input untouched
    assert (out != 90).any(axis=-1).mean() > 0.02
