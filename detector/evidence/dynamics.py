"""Clip dynamics: what a camera does from frame to frame and a generator does not.

Most talking-head tools render every frame from one still picture or over a fixed background plate;
lip-syncs and swaps repaint one region of a real frame. A camera makes new sensor noise in every frame,
shakes a little, and moves the background with the head when it is hand-held. Each statistic below is
measured on one window's bursts of consecutive frames (``detector.data.windows``) and is *relative*
(background against head, face against background, mouth against the rest of the face), because
absolute stillness or smoothness also describes a compressed real clip from a tripod
(``../shared/design/detection.md``: a naive frozen-background probe scored 0.56-0.58 overall).

``window_features`` returns named numbers (NaN where a region is not visible: a tight face crop has
no background); ``DynamicsFacts`` keeps the plain-language quantities the report states.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from detector.data.windows import Window

EPS = 1e-6
FROZEN_LEVEL = 0.35  # mean |grey difference| (0-255) under which a region did not change between frames
DUPLICATE_LEVEL = 0.1  # mean |grey difference| of a whole frame pair under which it is one picture twice
MOVING_HEAD = 0.004  # mean landmark step / face size over which the head moved between frames
MIN_REGION = 400  # pixels: a smaller background / face region is "not visible"

# The statistics, in the order models read them; each name says what is compared with what.
FEATURES = (
    "bg_vs_head_motion",  # log background change per unit of head motion (animated stills: low)
    "bg_frozen_share",  # share of frame pairs with a frozen background while the head moves
    "bg_noise_corr",  # temporal correlation of the background's high-pass residual (new noise: low)
    "face_noise_corr",  # same on the face after undoing the head's motion (a warped still: high)
    "face_vs_bg_noise_corr",  # the difference of the two above
    "face_vs_bg_noise",  # log noise level on the face against the background (repainted face: low)
    "face_vs_bg_sharpness",  # log Laplacian energy, face against background
    "mouth_vs_face_sharpness",  # log Laplacian energy, mouth box against the rest of the face
    "mouth_vs_face_change",  # log frame change, mouth box against the rest of the face (lip-syncs)
    "seam_contrast",  # log gradient on the face outline against just inside and outside it
    "face_colour_flicker",  # std of the face's colour against its surround over time (swaps)
    "landmark_jitter",  # second difference of the landmarks within bursts / face size
    "mouth_motion",  # mean change of the mouth opening per frame / face size
    "mouth_vs_head_motion",  # log mouth motion against head motion
    "duplicate_share",  # share of frame pairs that are (nearly) the same picture
    "interpolation",  # how well a frame is the average of its neighbours (interpolated frames: ~0)
)


@dataclasses.dataclass(frozen=True)
class DynamicsFacts:
    """Plain quantities of one window, for the report's sentences."""

    frames: int
    pairs: int
    background_visible: bool
    frozen_background_pairs: int  # pairs where the background did not change while the head moved
    moving_head_pairs: int
    head_motion_px: float  # median landmark step between neighbouring frames, pixels of the file
    background_change: float  # median mean |grey difference| of the background between neighbours
    face_px: float  # median face size (landmark box), pixels of the file


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _highpass(grey: np.ndarray) -> np.ndarray:
    return grey - cv2.GaussianBlur(grey, (0, 0), 1.0)


def _hull_mask(points: np.ndarray, shape: tuple[int, int], grow: float = 1.0) -> np.ndarray:
    centre = points.mean(axis=0)
    pts = (centre + (points - centre) * grow).astype(np.int32)
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1)
    return mask.astype(bool)


def _box_mask(points: np.ndarray, shape: tuple[int, int], grow: float) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    c, half = (lo + hi) / 2, (hi - lo) / 2 * grow + 1
    mask = np.zeros(shape, bool)
    x0, y0 = np.maximum((c - half).astype(int), 0)
    x1, y1 = np.maximum((c + half).astype(int) + 1, 0)  # a box wholly off the frame: empty, no wrap
    mask[y0:y1, x0:x1] = True
    return mask


def _person_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Head (with hair) and the body below it: everything that moves with the person."""
    h, w = shape
    lo, hi = points.min(axis=0), points.max(axis=0)
    s = float(max(hi - lo))
    cx, cy = (lo + hi) / 2
    mask = np.zeros(shape, bool)
    y0, y1 = int(max(cy - 1.3 * s, 0)), int(min(cy + 0.8 * s, h))
    x0, x1 = int(max(cx - 0.95 * s, 0)), int(min(cx + 0.95 * s, w))
    mask[y0:y1, x0:x1] = True
    bx0, bx1 = int(max(cx - 1.6 * s, 0)), int(min(cx + 1.6 * s, w))
    mask[int(max(cy + 0.5 * s, 0)):, bx0:bx1] = True  # shoulders and torso
    return mask


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > EPS else float("nan")


def _mad(x: np.ndarray) -> float:
    return float(np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def _lap_energy(grey: np.ndarray, mask: np.ndarray) -> float:
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    return float(np.mean(lap[mask] ** 2)) if mask.sum() >= 16 else float("nan")


def _log_ratio(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)):
        return float("nan")
    return float(np.log((a + EPS) / (b + EPS)))


def _nanmedian(values) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    return float(np.median(v)) if len(v) else float("nan")


def _pairs(window: Window) -> list[tuple[int, int]]:
    """Neighbouring frames of one burst, both with the face."""
    idx, found, burst = window.frame_indices, window.found, window.burst
    return [(j, j + 1) for j in range(len(idx) - 1)
            if burst[j] == burst[j + 1] and idx[j + 1] == idx[j] + 1 and found[j] and found[j + 1]]


def _align(frame: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``frame`` moved so its landmarks ``src`` land on ``dst`` (a similarity transform)."""
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32))
    if m is None:
        return frame
    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def window_features(window: Window) -> tuple[dict[str, float], DynamicsFacts]:
    """The named statistics of ``FEATURES`` for one window, and the facts the report states."""
    found = window.found
    shape = window.frames.shape[1:3]
    nan = float("nan")
    out = {k: nan for k in FEATURES}
    pts = window.points
    if found.sum() < 2:
        return out, DynamicsFacts(len(found), 0, False, 0, 0, nan, nan, nan)
    face_size = window.face_size
    person = np.zeros(shape, bool)
    for p in pts[found]:
        person |= _person_mask(p, shape)
    background = ~person
    bg_visible = int(background.sum()) >= MIN_REGION
    greys = [_grey(f) for f in window.frames]
    pairs = _pairs(window)
    rows = _pair_rows(window, greys, pairs, background if bg_visible else None, face_size)
    colour = [_colour_contrast(window.frames[j], p, shape) for j, p in enumerate(pts) if found[j]]
    med = {k: _nanmedian(v) for k, v in rows.items()}
    head, bg = np.asarray(rows["head"]), np.asarray(rows["bg_diff"])
    moving = head > MOVING_HEAD
    frozen = int(((bg < FROZEN_LEVEL) & moving[:len(bg)]).sum()) if bg_visible else 0
    if pairs:
        out["bg_vs_head_motion"] = _log_ratio(med["bg_diff"], med["head"] * 255.0)
        out["bg_frozen_share"] = frozen / max(int(moving.sum()), 1) if bg_visible and moving.any() else nan
        out["bg_noise_corr"] = med["bg_corr"]
        out["face_noise_corr"] = med["face_corr"]
        out["face_vs_bg_noise_corr"] = med["face_corr"] - med["bg_corr"]
        out["face_vs_bg_noise"] = _log_ratio(med["face_noise"], med["bg_noise"])
        out["face_vs_bg_sharpness"] = _log_ratio(med["face_sharp"], med["bg_sharp"])
        out["mouth_vs_face_sharpness"] = _log_ratio(med["mouth_sharp"], med["rest_sharp"])
        out["mouth_vs_face_change"] = _log_ratio(med["mouth_diff"], med["rest_diff"])
        out["seam_contrast"] = med["seam"]
        out["mouth_motion"] = float(np.mean(rows["mouth_step"]))
        out["mouth_vs_head_motion"] = _log_ratio(out["mouth_motion"], med["head"])
        out["duplicate_share"] = float(np.mean(np.asarray(rows["global_diff"]) < DUPLICATE_LEVEL))
    out["face_colour_flicker"] = float(np.std(colour)) if len(colour) >= 3 else nan
    out["landmark_jitter"] = _jitter(window, face_size)
    out["interpolation"] = _interpolation(window, greys)
    facts = DynamicsFacts(len(found), len(pairs), bg_visible, frozen, int(moving.sum()),
                          med["head"] * face_size / window.scale if pairs else nan, med["bg_diff"],
                          face_size / window.scale)
    return out, facts


def _pair_rows(window: Window, greys: list[np.ndarray], pairs: list[tuple[int, int]],
               background: np.ndarray | None, face_size: float) -> dict[str, list[float]]:
    """Per pair of neighbouring frames: change, noise, sharpness and motion of each region
    (``background`` None: not visible, no background rows)."""
    nan = float("nan")
    pts, shape = window.points, window.frames.shape[1:3]
    highs = [_highpass(g) for g in greys]
    rows: dict[str, list[float]] = {k: [] for k in (
        "bg_diff", "head", "bg_corr", "face_corr", "face_noise", "bg_noise", "face_sharp", "bg_sharp",
        "mouth_sharp", "rest_sharp", "mouth_diff", "rest_diff", "seam", "global_diff", "mouth_step")}
    for a, b in pairs:
        pa, pb = pts[a], pts[b]
        face = _hull_mask(pa, shape, 0.9)
        mouth = _box_mask(pa[48:68], shape, 1.3)
        rest = face & ~mouth
        diff = np.abs(greys[b] - greys[a])
        rows["global_diff"].append(float(diff.mean()))
        rows["head"].append(float(np.linalg.norm(pb - pa, axis=1).mean()) / max(face_size, EPS))
        rows["mouth_step"].append(abs(_mouth_gap(pb) - _mouth_gap(pa)) / max(face_size, EPS))
        if background is not None:
            rows["bg_diff"].append(float(diff[background].mean()))
            rows["bg_corr"].append(_corr(highs[a][background], highs[b][background]))
            rows["bg_noise"].append(_mad(highs[a][background]))
            rows["bg_sharp"].append(_lap_energy(greys[a], background))
        if face.sum() >= MIN_REGION // 4:
            aligned = _highpass(_align(greys[b], pb, pa))  # the head's motion undone: noise vs texture
            rows["face_corr"].append(_corr(highs[a][face], aligned[face]))
            rows["face_noise"].append(_mad(highs[a][face]))
            rows["face_sharp"].append(_lap_energy(greys[a], face))
            rows["mouth_sharp"].append(_lap_energy(greys[a], mouth & face))
            rows["rest_sharp"].append(_lap_energy(greys[a], rest))
            rows["mouth_diff"].append(float(diff[mouth].mean()) if mouth.any() else nan)
            rows["rest_diff"].append(float(diff[rest].mean()) if rest.any() else nan)
            rows["seam"].append(_seam_contrast(greys[a], pa, shape))
    return rows


def _mouth_gap(p: np.ndarray) -> float:
    return float(np.linalg.norm(p[62:65].mean(axis=0) - p[[66, 67, 65]].mean(axis=0)))


def _seam_contrast(grey: np.ndarray, p: np.ndarray, shape: tuple[int, int]) -> float:
    """Gradient on the face outline against rings just inside and outside it (a pasted face's edge)."""
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    mag = np.sqrt(gx * gx + gy * gy)
    inner, edge_in, edge_out, outer = (_hull_mask(p, shape, g) for g in (0.85, 0.95, 1.05, 1.15))
    seam = edge_out & ~edge_in
    ring = (outer & ~edge_out) | (inner & ~_hull_mask(p, shape, 0.75))
    if seam.sum() < 16 or ring.sum() < 16:
        return float("nan")
    return _log_ratio(float(mag[seam].mean()), float(mag[ring].mean()))


def _colour_contrast(frame: np.ndarray, p: np.ndarray, shape: tuple[int, int]) -> float:
    """Chroma of the face against the band around it (one number per frame)."""
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)
    face = _hull_mask(p, shape, 0.8)
    band = _hull_mask(p, shape, 1.3) & ~_hull_mask(p, shape, 1.05)
    if face.sum() < 16 or band.sum() < 16:
        return float("nan")
    return float(np.linalg.norm(lab[face][:, 1:].mean(axis=0) - lab[band][:, 1:].mean(axis=0)))


def _jitter(window: Window, face_size: float) -> float:
    p, idx, burst, found = window.points, window.frame_indices, window.burst, window.found
    steps = []
    for j in range(1, len(idx) - 1):
        same = burst[j - 1] == burst[j] == burst[j + 1] and idx[j + 1] - idx[j - 1] == 2
        if same and found[j - 1] and found[j] and found[j + 1]:
            steps.append(float(np.linalg.norm(p[j + 1] - 2 * p[j] + p[j - 1], axis=1).mean()))
    return float(np.median(steps)) / max(face_size, EPS) if steps else float("nan")


def _interpolation(window: Window, greys: list[np.ndarray]) -> float:
    """Median of |frame - mean of its neighbours| / |difference of the neighbours| within bursts."""
    idx, burst = window.frame_indices, window.burst
    ratios = []
    for j in range(1, len(idx) - 1):
        if burst[j - 1] == burst[j] == burst[j + 1] and idx[j + 1] - idx[j - 1] == 2:
            span = float(np.abs(greys[j + 1] - greys[j - 1]).mean())
            if span > 0.5:
                mid = float(np.abs(greys[j] - (greys[j + 1] + greys[j - 1]) / 2).mean())
                ratios.append(mid / span)
    return float(np.median(ratios)) if ratios else float("nan")


__all__ = ["FEATURES", "DynamicsFacts", "window_features"]
