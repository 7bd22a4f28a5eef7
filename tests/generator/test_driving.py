"""Driving tracks: the built-in track moves like a talking head; motion transfer keeps the source's
face shape (relative) or copies the driver's (absolute); gaps and jitter are handled."""

from __future__ import annotations

import numpy as np
import pytest

from generator.faces.motion import (
    MEAN_FACE,
    MIRROR,
    builtin_track,
    fill_missing,
    interocular,
    mean_face,
    mean_face_from_points,
    smooth_track,
    transfer_motion,
)


def mouth_open(p):
    return np.linalg.norm(p[..., 66, :] - p[..., 62, :], axis=-1)


def eye_open(p):
    return np.linalg.norm(p[..., 37, :] - p[..., 41, :], axis=-1)


def jaw_ratio(p):
    """Face width at the jaw over the eye distance: a face-shape measure motion should not change."""
    return np.linalg.norm(p[..., 2, :] - p[..., 14, :], axis=-1) / np.linalg.norm(
        p[..., 42:48, :].mean(-2) - p[..., 36:42, :].mean(-2), axis=-1)


def test_mean_face_is_symmetric_and_normalised():
    assert MEAN_FACE.shape == (68, 2)
    assert np.allclose(MEAN_FACE[MIRROR] * [-1, 1], MEAN_FACE, atol=1e-3)
    assert interocular(MEAN_FACE) == pytest.approx(1.0, abs=0.02)
    placed = mean_face(256)
    assert placed.min() > 0 and placed.max() < 256
    assert np.allclose(mean_face_from_points(np.stack([placed, placed * 0.5 + 10])), MEAN_FACE,
                       atol=2e-3)


def test_builtin_track_talks_blinks_and_turns():
    track = builtin_track(seconds=6, fps=25, seed=1)
    assert track.shape == (150, 68, 2)
    assert np.array_equal(track, builtin_track(6, 25, 1))  # deterministic for a seed
    assert not np.array_equal(track, builtin_track(6, 25, 2))
    m = mouth_open(track)
    assert np.ptp(m) > 0.2 and (m < m.min() + 0.02).mean() > 0.2  # opens, and rests in pauses
    e = eye_open(track)
    assert e.min() < 0.3 * np.median(e)  # at least one blink
    nose_x = track[:, 30, 0] - track[:, 27:31, 0].mean(1)
    assert np.ptp(track[:, 30, 0]) > 0.05  # the head turns a little
    assert np.isfinite(track).all() and np.isfinite(nose_x).all()


def test_relative_motion_keeps_the_source_face_shape():
    rng = np.random.default_rng(0)
    source = mean_face(128).copy()
    source[:17, 0] = 64 + (source[:17, 0] - 64) * 1.3  # a wider face than the mean
    driver = builtin_track(3, 25, seed=4) * 40 + rng.normal(0, 0.01, (1, 68, 2))  # another scale
    out = transfer_motion(source, driver, "relative")
    assert np.allclose(out[0], source, atol=1e-4)  # frame 0 is the source itself
    assert np.allclose(jaw_ratio(out), jaw_ratio(source), rtol=0.06)
    assert not np.allclose(jaw_ratio(out), jaw_ratio(driver), rtol=0.06)
    # the motion is the driver's, rescaled to the source's face size
    scale = interocular(source) / interocular(driver[0])
    assert np.allclose(mouth_open(out) - mouth_open(out[0]),
                       (mouth_open(driver) - mouth_open(driver[0])) * scale, atol=0.5)


def test_absolute_motion_copies_the_driver_shape():
    source = mean_face(128)
    driver = builtin_track(2, 25, seed=2) * 30 + 5
    driver[:, :17, 0] *= 1.4
    out = transfer_motion(source, driver, "absolute")
    assert np.allclose(jaw_ratio(out), jaw_ratio(driver), rtol=1e-3)
    with pytest.raises(ValueError, match="relative or absolute"):
        transfer_motion(source, driver, "sideways")


def test_gaps_are_held_and_jitter_smoothed():
    track = builtin_track(2, 25, seed=0)
    gappy = track.copy()
    gappy[[0, 5, 6]] = np.nan
    filled, missing = fill_missing(gappy)
    assert missing == [0, 5, 6]
    assert np.array_equal(filled[5], track[4]) and np.array_equal(filled[0], track[1])
    with pytest.raises(ValueError, match="no frame"):
        fill_missing(np.full((3, 68, 2), np.nan))
    noisy = track + np.random.default_rng(0).normal(0, 0.02, track.shape)
    smooth = smooth_track(noisy, 7)
    assert np.abs(smooth - track).mean() < np.abs(noisy - track).mean()


def test_transfer_expression_keeps_target_pose_and_takes_driver_expression():
    from generator.faces.motion import mean_face, transfer_expression

    base = mean_face(128).astype(np.float64)
    n = 5
    target = np.repeat(base[None], n, axis=0)
    target += np.arange(n)[:, None, None] * np.array([6.0, 0.0])  # the target's head moves right
    driver = np.repeat(base[None] * 1.5 + 40, n, axis=0)  # another face size and place
    c, s = np.cos(0.2), np.sin(0.2)
    driver[3] = (driver[3] - driver[3].mean(0)) @ np.array([[c, -s], [s, c]]).T + driver[3].mean(0)
    driver[4, 48:68, 1] += 9.0  # the driver opens its mouth in the last frame (1.5x the target's size)
    out = transfer_expression(target, driver)
    assert out.shape == target.shape
    np.testing.assert_allclose(out[:4], target[:4], atol=1e-3)  # head turn of the driver: not copied
    mouth = out[4, 48:68, 1] - target[4, 48:68, 1]
    np.testing.assert_allclose(mouth, 6.0, atol=0.2)  # the mouth opens, scaled to the target's face
    np.testing.assert_allclose(out[4, :17], target[4, :17], atol=1.5)  # the jaw line barely moves
