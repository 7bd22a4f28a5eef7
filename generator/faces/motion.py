"""Driving landmark tracks: a built-in scripted track, smoothing, and motion transfer.

The built-in track needs no media: a few seconds of speech-like mouth motion, blinks and small head
turns, scripted from a mean face. Transfer puts a driver's motion onto a source's own landmarks
(relative, the default, as first-order-model's "relative" mode) or the driver's shape itself
(absolute), so a source's face shape need not morph into the driver's.
"""

from __future__ import annotations

import numpy as np

from generator.faces.crop import CropParams, crop_transform
from generator.faces.landmarks import check_landmarks

# The median 68-point face of the 1,116 crops `sfumato prepare` made from ../shared/data/videos,
# each similarity-normalised (eye centres at (+-0.5, 0), inter-ocular distance 1), then mirror-
# symmetrised. Recompute with `mean_face_from_points`.
MEAN_FACE = np.array([
    (-1.123, 0.084), (-1.105, 0.390), (-1.060, 0.689), (-1.003, 0.987),
    (-0.907, 1.269), (-0.752, 1.516), (-0.540, 1.721), (-0.288, 1.875),
    (0.000, 1.925), (0.288, 1.875), (0.540, 1.721), (0.752, 1.516),
    (0.907, 1.269), (1.003, 0.987), (1.060, 0.689), (1.105, 0.390),
    (1.123, 0.084), (-0.925, -0.212), (-0.793, -0.344), (-0.595, -0.402),
    (-0.386, -0.383), (-0.192, -0.309), (0.192, -0.309), (0.386, -0.383),
    (0.595, -0.402), (0.793, -0.344), (0.925, -0.212), (0.000, -0.053),
    (0.000, 0.135), (0.000, 0.318), (0.000, 0.512), (-0.224, 0.664),
    (-0.115, 0.699), (0.000, 0.731), (0.115, 0.699), (0.224, 0.664),
    (-0.691, 0.008), (-0.570, -0.062), (-0.428, -0.064), (-0.301, 0.023),
    (-0.434, 0.046), (-0.575, 0.048), (0.301, 0.023), (0.428, -0.064),
    (0.570, -0.062), (0.691, 0.008), (0.575, 0.048), (0.434, 0.046),
    (-0.416, 1.129), (-0.273, 1.006), (-0.115, 0.947), (0.000, 0.972),
    (0.115, 0.947), (0.273, 1.006), (0.416, 1.129), (0.277, 1.293),
    (0.125, 1.362), (0.000, 1.375), (-0.125, 1.362), (-0.277, 1.293),
    (-0.343, 1.130), (-0.116, 1.061), (0.000, 1.068), (0.116, 1.061),
    (0.343, 1.130), (0.119, 1.201), (0.000, 1.213), (-0.119, 1.201),
], dtype=np.float32)

# Index pairs that swap under a left-right mirror (jaw, brows, nose, eyes, lips).
MIRROR = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
                  + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
                  + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])

# Rough depth of each point (nose forward, jaw sides back) for small pseudo-3D head turns.
_DEPTH = np.concatenate([
    0.45 * np.cos(np.linspace(-np.pi / 2, np.pi / 2, 17)) - 0.15,  # jaw: chin forward, ears back
    np.full(10, 0.30),  # brows
    np.linspace(0.45, 0.90, 4),  # nose bridge to tip
    np.array([0.55, 0.62, 0.70, 0.62, 0.55]),  # nostrils
    np.full(12, 0.25),  # eyes
    np.full(20, 0.50),  # lips
]).astype(np.float32)


def normalise(points: np.ndarray) -> np.ndarray:
    """Similarity-normalise a shape: eye centres at (-0.5, 0) and (0.5, 0)."""
    p = check_landmarks(points).astype(np.float64)
    right, left = p[36:42].mean(0), p[42:48].mean(0)
    d = left - right
    a = np.arctan2(d[1], d[0])
    rot = np.array([[np.cos(-a), -np.sin(-a)], [np.sin(-a), np.cos(-a)]])
    return ((p - (right + left) / 2) @ rot.T / np.hypot(*d)).astype(np.float32)


def mean_face_from_points(shapes: np.ndarray) -> np.ndarray:
    """The symmetric median face of (N, 68, 2) shapes, in MEAN_FACE's normalised units."""
    n = np.median(np.stack([normalise(s) for s in shapes]), axis=0)
    return ((n + n[MIRROR] * np.array([-1.0, 1.0])) / 2).astype(np.float32)


def interocular(points: np.ndarray) -> float:
    """Distance between the eye centres (the face's scale)."""
    return float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))


def mean_face(size: int = 256) -> np.ndarray:
    """MEAN_FACE placed in a ``size`` crop the way the training crops place faces."""
    return crop_transform(MEAN_FACE, CropParams(size=size)).apply_points(MEAN_FACE)


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, ...]) -> np.ndarray:
    """A smooth random signal in about [-1, 1]: a sum of sinusoids with random phases."""
    out = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs)
    return out / len(freqs)


def builtin_track(seconds: float = 4.0, fps: float = 25.0, seed: int = 0) -> np.ndarray:
    """A scripted talking track in MEAN_FACE's units: (N, 68, 2), N = seconds x fps.

    Speech-like mouth opening (syllables at ~4 Hz in phrases with pauses), blinks every ~3 s and
    small head turns (yaw/pitch up to ~8/4 degrees, roll ~3 degrees), all deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * fps)))
    t = np.arange(n) / fps
    syllable = np.clip(np.sin(2 * np.pi * 4.2 * t + rng.uniform(0, 6.28)), 0, None)
    phrase = (np.sin(2 * np.pi * 0.45 * t + rng.uniform(0, 6.28)) > -0.4).astype(float)
    loud = 0.6 + 0.4 * _smooth_noise(rng, t, (0.7, 1.3))
    mouth = syllable * phrase * loud  # 0 = closed, ~1 = wide open
    blink = np.zeros(n)
    start = rng.uniform(0.5, 1.5)
    while start < seconds:
        blink += np.exp(-0.5 * ((t - start) / 0.05) ** 2)  # ~150 ms from open to open
        start += rng.uniform(2.5, 4.0)
    blink = np.clip(blink, 0, 1)
    yaw = np.deg2rad(8) * _smooth_noise(rng, t, (0.21, 0.37))
    pitch = np.deg2rad(4) * _smooth_noise(rng, t, (0.29, 0.53))
    roll = np.deg2rad(3) * _smooth_noise(rng, t, (0.17, 0.41))
    track = np.empty((n, 68, 2), np.float32)
    for k in range(n):
        p = MEAN_FACE.astype(np.float64).copy()
        o = mouth[k]
        p[[55, 56, 57, 58, 59], 1] += 0.30 * o  # lower lip
        p[[65, 66, 67], 1] += 0.33 * o
        p[[61, 62, 63], 1] -= 0.04 * o  # upper inner lip
        p[[48, 60], 0] += 0.03 * o  # corners draw in a little
        p[[54, 64], 0] -= 0.03 * o
        jaw = np.exp(-0.5 * ((np.arange(17) - 8) / 3.0) ** 2)
        p[:17, 1] += 0.15 * o * jaw
        for up, low in ((37, 41), (38, 40), (43, 47), (44, 46)):
            p[up, 1] += 0.9 * blink[k] * (p[low, 1] - p[up, 1])
        z = _DEPTH
        x, y = p[:, 0], p[:, 1]
        x, z2 = x * np.cos(yaw[k]) + z * np.sin(yaw[k]), z * np.cos(yaw[k]) - x * np.sin(yaw[k])
        y = y * np.cos(pitch[k]) - z2 * np.sin(pitch[k])
        c, s = np.cos(roll[k]), np.sin(roll[k])
        track[k] = np.stack([c * x - s * y, s * x + c * y], axis=1)
    return track


def smooth_track(track: np.ndarray, window: int = 5) -> np.ndarray:
    """Remove landmark jitter over time (Savitzky-Golay, order 2); short tracks are left as is."""
    if window < 3 or len(track) < window:
        return track
    from scipy.signal import savgol_filter

    w = window if window % 2 else window + 1
    return savgol_filter(track, w, 2, axis=0).astype(np.float32)


def fill_missing(track: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Replace frames without landmarks (NaN) by the nearest earlier ones (or the first found); also
    return the indices replaced. ValueError if no frame has landmarks."""
    ok = np.isfinite(track).all(axis=(1, 2))
    if not ok.any():
        raise ValueError("no frame of the driver has a face")
    out = track.copy()
    first = int(np.argmax(ok))
    last = out[first]
    for k in range(len(out)):
        if ok[k]:
            last = out[k]
        else:
            out[k] = last
    return out, [int(k) for k in np.flatnonzero(~ok)]


def describe_gaps(frames: list[int], n: int) -> str:
    """'6 of 20 frames (6-11, 15)': how many of ``n`` frames are listed, as runs (the first few)."""
    runs: list[list[int]] = []
    for k in sorted(frames):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:6])
    more = f", ... ({len(runs) - 6} more runs)" if len(runs) > 6 else ""
    return f"{len(frames)} of {n} frame{'s' if n != 1 else ''} ({text}{more})"


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 similarity transform mapping points ``src`` onto ``dst`` (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, d]) @ vt
    scale = (sig * np.array([1.0, d])).sum() / a.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def transfer_motion(source: np.ndarray, driver: np.ndarray, mode: str = "relative") -> np.ndarray:
    """Landmarks (N, 68, 2) for the source, driven by a driver track (N, 68, 2), any units.

    relative: source + (driver_t - driver_0), scaled by the ratio of face sizes; keeps the source's
    face shape. absolute: the driver's shapes, mapped into the source's frame by the similarity that
    takes the driver's first frame onto the source.
    """
    src = check_landmarks(source).astype(np.float64)
    drv = np.asarray(driver, dtype=np.float64)
    if mode == "relative":
        scale = interocular(src) / max(interocular(drv[0]), 1e-6)
        return (src[None] + (drv - drv[0:1]) * scale).astype(np.float32)
    if mode == "absolute":
        m = similarity_transform(drv[0], src)
        return (drv @ m[:, :2].T + m[:, 2]).astype(np.float32)
    raise ValueError(f"unknown motion mode {mode!r}; use relative or absolute")


# Points that move with the head but hardly with expressions (jaw ends, nose, eyes): rigid fits use
# only these, so an opening mouth is not mistaken for head motion.
RIGID_POINTS = np.array([0, 1, 15, 16, *range(27, 48)])


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def transfer_expression(target: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """Face2Face-style reenactment: the target's head pose, the driver's expressions (N, 68, 2).

    Each driver frame is registered onto the driver's first frame (a similarity, so its head motion
    is removed); what is left, the expression change, is scaled and turned into the target's first
    frame, added to the target's first-frame shape, and carried into the pose the target has at
    that frame (the similarity from its first frame to frame t). Both tracks are in their own pixels.
    """
    tgt = np.asarray(target, np.float64)
    drv = np.asarray(driver, np.float64)
    if tgt.shape != drv.shape or tgt.ndim != 3 or tgt.shape[1:] != (68, 2):
        raise ValueError(f"target and driver must be (N, 68, 2) of one length, got {tgt.shape} and "
                         f"{drv.shape}")
    a0, b0 = tgt[0], drv[0]
    r = RIGID_POINTS
    turn = similarity_transform(b0[r], a0[r])[:, :2]  # driver's face frame -> target's (scale + rotation)
    out = np.empty_like(tgt)
    for t in range(len(tgt)):
        delta = _apply(similarity_transform(drv[t][r], b0[r]), drv[t]) - b0
        out[t] = _apply(similarity_transform(a0[r], tgt[t][r]), a0 + delta @ turn.T)
    return out.astype(np.float32)
