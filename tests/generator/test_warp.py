"""The piecewise-affine face warp shared by the texture G, the builder and the quality baseline."""

from __future__ import annotations

import time

import numpy as np
import pytest

from generator.errors import BadInputError
from generator.faces.motion import mean_face
from generator.faces.warp import closest_shot, texture_tensor, triangulation, warp_face, warp_shots


def _coords(size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([xs, ys], -1)  # each pixel holds its own position


def _photo(size: int = 256) -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut()[40:240, 130:330], (size, size), interpolation=cv2.INTER_AREA)


def test_warping_a_crop_to_its_own_landmarks_returns_it():
    img, p = _photo(), mean_face(256)
    w = warp_face(img, p, p)
    assert w.image.dtype == np.uint8 and w.image.shape == img.shape
    assert np.abs(w.image.astype(int) - img).max() <= 1 and w.mask.mean() == 1.0


def test_warped_landmarks_land_on_the_targets():
    p = mean_face(256)
    rng = np.random.default_rng(0)
    q = p + rng.normal(0, 2.0, p.shape)
    q[60:68, 1] += np.array([0, 0, 0, 0, 6, 6, 6, 0])[:8]  # the lower inner lip drops: a mouth opens
    q = np.round(q).astype(np.float32)  # on pixel centres, where the map's value is exact
    w = warp_face(_coords(256), p, q)
    qi = q.astype(int)
    got = w.image[qi[:, 1], qi[:, 0]]  # the source position each target pixel was sampled from
    assert np.abs(got - p).max() < 0.05
    assert (w.mask[qi[:, 1], qi[:, 0]] == 1).all()
    inner = w.image[int(q[62, 1]) + 2, int(q[62, 0])]  # inside the opened mouth: stretched lip, no hole
    assert w.mask[int(q[62, 1]) + 2, int(q[62, 0])] == 1 and np.isfinite(inner).all()


def test_folded_triangles_are_masked_and_leave_no_holes():
    p = mean_face(256)
    q = p.copy()
    nose_x = p[30, 0]
    q[:8, 0] = 2 * nose_x - p[:8, 0]  # the left jaw thrown across the nose: triangles fold
    grey = np.full((256, 256, 3), 117, np.uint8)
    w = warp_face(grey, p, q)
    assert (w.image == 117).all()  # every pixel, masked or not, has the source's colour
    folded = w.mask == 0
    assert 0.01 < folded.mean() < 0.5
    ys, xs = np.nonzero(folded)
    assert xs.mean() > nose_x - 60  # masked pixels are where the jaw folded, not all over the crop
    coords = warp_face(_coords(256), p, q)
    assert np.isfinite(coords.image).all()


def test_the_warp_is_fast():
    img, p = _photo(), mean_face(256)
    q = p + np.random.default_rng(1).normal(0, 2.0, p.shape)
    warp_face(img, p, q)
    t = time.perf_counter()
    for _ in range(20):
        warp_face(img, p, q)
    ms = (time.perf_counter() - t) / 20 * 1000
    print(f"warp_face 256 px: {ms:.2f} ms")
    assert ms < 50  # a gross regression only; bench figures live in the closing note


def test_the_closest_shot_is_chosen_and_shots_change_the_result():
    img, p = _photo(), mean_face(256)
    centre = p.mean(0)
    turned = p.copy()
    turned[:, 0] = centre[0] + (p[:, 0] - centre[0]) * np.where(p[:, 0] < centre[0], 0.6, 1.2)
    shots_pts = np.stack([turned, p]).astype(np.float32)
    other = np.ascontiguousarray(img[:, ::-1])
    assert closest_shot(shots_pts, p) == 1
    both = warp_shots(np.stack([other, img]), shots_pts, p)
    alone = warp_shots(other[None], shots_pts[:1], p)
    assert np.array_equal(both.image, warp_face(img, p, p).image)
    assert not np.array_equal(both.image, alone.image)
    weighted = warp_shots(np.stack([other, img]), shots_pts, p, combine="weighted")
    assert weighted.image.shape == img.shape and weighted.mask.max() == 1.0


def test_texture_tensor_is_gs_input():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    p = mean_face(64)
    t = texture_tensor(x, np.stack([p, p]), p)
    assert tuple(t.shape) == (4, 64, 64) and float(t[3].min()) == 1.0
    assert np.allclose(t[:3].numpy(), x[0], atol=1e-4)
    assert len(triangulation(64)) > 100


def test_bad_inputs_are_clear():
    img, p = _photo(64), mean_face(64)
    with pytest.raises(BadInputError, match="68 landmarks"):
        warp_face(img, p[:60], p)
    bad = p.copy()
    bad[3, 0] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        warp_face(img, p, bad)
    with pytest.raises(BadInputError, match="square"):
        warp_face(img[:, :40], p, p)
    with pytest.raises(BadInputError, match="T shots"):
        warp_shots(img[None], np.stack([p, p]), p)
    with pytest.raises(BadInputError, match="closest or weighted"):
        warp_shots(img[None], p[None], p, combine="median")


def test_a_closed_mouth_target_masks_no_lip_line():
    p = mean_face(256)
    q = p.copy()
    q[[65, 66, 67]] = q[[63, 62, 61]]  # inner lips meet: the mouth triangles are flat, cover no pixel
    assert warp_face(_photo(), p, q).mask.min() == 1.0


def test_weighted_blend_rounds_integer_images():
    p = mean_face(64)
    shots = np.stack([np.full((64, 64, 3), 100, np.uint8), np.full((64, 64, 3), 103, np.uint8)])
    w = warp_shots(shots, np.stack([p, p]), p, combine="weighted")  # equal weights: 101.5 -> 102
    assert (w.image == 102).all()
