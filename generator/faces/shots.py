"""Source shots for few-shot use: pictures or video frames of a person, as the model's input (face
crops at the model's size with landmarks in crop pixels), cut with the same crop as the corpus.

Bad sources get a clear message rather than a silently poor result (``load_shots``):

- a face under ``MIN_FACE_PX`` (64 px across its landmark box) is upscaled to the model's crop with a
  warning that the output will be soft; under ``MIN_FACE_PX_HARD`` (24 px) dlib's 68 landmarks are not
  reliable and the source is refused (``BadInputError`` naming the size found and the minimum);
- a face turned more than ``PROFILE_YAW_DEG`` (30 degrees, estimated from the landmarks) gets a
  warning: its far side is hidden, and neither G nor the texture warp can show what the picture
  lacks; ``frontal_first`` puts the most frontal shot first when several are given;
- a face part of which looks covered by something flat or off-colour (a sheet, a bar, a mask) gets a
  warning; a face hidden by half or in full profile is usually not detected at all (``NoFaceError``).

Warnings are logged and kept in ``Shots.warnings``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from generator.errors import BadInputError, NoFaceError
from generator.faces.backends import FaceBackend, create_backend
from generator.faces.crop import TRAINING_CROP, box_from_points, crop_face, eye_angle
from generator.faces.landmarks import landmark_image, to_unit_range
from generator.faces.tracking import TrackerConfig, track_video
from generator.io.files import sha256_file

log = logging.getLogger(__name__)

MIN_FACE_PX = 64  # landmark box side below which the crop is upscaled enough to look soft
MIN_FACE_PX_HARD = 24  # below this dlib's 68-point fit is too coarse to drive anything with
PROFILE_YAW_DEG = 30.0  # turned further than this, much of the far half of the face is hidden
# Offset of the nose tip from the jaw's midline per unit tan(yaw), in half jaw widths: MEAN_FACE with
# the pseudo-3D depths of driving._DEPTH (nose tip 0.9 in front, jaw ends 0.15 behind, half width
# 1.123) gives (0.9 + 0.15) / 1.123. Real heads are deeper, so large turns read a little low.
_NOSE_LEVER = 0.935
# Skin regions (landmark polygons) checked for a cover: flat (mean |Laplacian| of grey under
# COVER_FLAT; real skin measured 1.9 or more on ../shared/data faces, upscaled 30 px faces included)
# or off-colour (Lab distance over COVER_COLOUR from the regions' median; real faces measured at most
# 13, side-lit ones included). Both are measured on crops resized to COVER_SIZE.
COVER_REGIONS = {"right cheek": (2, 3, 4, 48, 31, 40), "left cheek": (14, 13, 12, 54, 35, 47),
                 "nose": (27, 31, 32, 33, 34, 35), "chin": (6, 7, 8, 9, 10, 55, 56, 57, 58, 59)}
COVER_FLAT = 1.0
COVER_SIZE = 128
COVER_COLOUR = 30.0


@dataclasses.dataclass
class Shots:
    """T face crops (T, S, S, 3) uint8 with landmarks (T, 68, 2) in crop pixels, and where from."""

    frames: np.ndarray
    points: np.ndarray
    origins: list[dict]  # per shot: source path, frame index, crop matrix (frame -> crop pixels)
    source_sha256: dict[str, str]
    warnings: list[str] = dataclasses.field(default_factory=list)  # small, turned or covered faces

    def __len__(self) -> int:
        return len(self.frames)

    def tensors(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """x, y (T, 3, S, S) in [-1, 1]: frames and their landmark images."""
        size = self.frames.shape[1]
        x = np.stack([to_unit_range(f) for f in self.frames])
        y = np.stack([to_unit_range(landmark_image(p, size)) for p in self.points])
        return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def face_size(points: np.ndarray) -> float:
    """Longer side of the landmark box in the points' pixels: the face size the limits refer to."""
    box = box_from_points(points)
    return float(max(box[2] - box[0], box[3] - box[1]))


def estimate_yaw(points: np.ndarray) -> float:
    """Rough head yaw in degrees from 68 landmarks (0 frontal; positive: nose toward image right).

    The nose tip's offset from the jaw outline's midline, with roll removed, in half jaw widths,
    read through the mean face's depth (``_NOSE_LEVER``). A 2D estimate that reads large turns low
    (near-profile frames of ../shared/data read ~45, a three-quarter portrait ~37).
    """
    p = np.asarray(points, np.float64)
    a = eye_angle(p)
    c, s = np.cos(-a), np.sin(-a)
    x = p[:, 0] * c - p[:, 1] * s  # along the levelled eye line
    half = (x[16] - x[0]) / 2
    if half <= 1e-6:  # outline collapsed or mirrored: no frontal reading possible
        return 90.0 if x[30] >= x[8] else -90.0
    offset = (x[30] - (x[0] + x[16]) / 2) / half
    return float(np.degrees(np.arctan(offset / _NOSE_LEVER)))


def covered_regions(crop: np.ndarray, points: np.ndarray) -> list[str]:
    """Skin regions of a face crop (and its landmarks, crop pixels) that look covered.

    Catches flat or strongly off-colour covers (paper, a bar, a mask, an overlay), not a hand or
    hair, which look like skin or texture; see ``COVER_REGIONS`` for the measured thresholds.
    """
    k = COVER_SIZE / crop.shape[0]  # the thresholds were measured on crops of this size
    if k != 1:
        crop = cv2.resize(crop, (COVER_SIZE, COVER_SIZE), interpolation=cv2.INTER_AREA if k < 1 else
                          cv2.INTER_LINEAR)
        points = np.asarray(points, np.float32) * k
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab = (lab - np.array([0.0, 128.0, 128.0], np.float32)) * np.array([100 / 255, 1.0, 1.0], np.float32)
    detail = np.abs(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))
    yaw = estimate_yaw(points)
    # Turned away, the far cheek shrinks to a sliver of outline and background: not a cover.
    far = "right cheek" if yaw < -20 else "left cheek" if yaw > 20 else None
    names, colours, flat = [], [], []
    for name, idx in COVER_REGIONS.items():
        if name == far:
            continue
        poly = np.asarray(points, np.float32)[list(idx)]
        poly = poly.mean(0) + 0.8 * (poly - poly.mean(0))  # stay off the region's edges
        mask = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillPoly(mask, [poly.round().astype(np.int32)], 1)
        if not mask.any():
            continue
        names.append(name)
        colours.append(np.median(lab[mask > 0], axis=0))
        flat.append(float(detail[mask > 0].mean()) < COVER_FLAT)
    if not names:
        return []
    colours = np.stack(colours)
    # Lightness counts half: side lighting darkens a cheek without covering it.
    off = np.linalg.norm((colours - np.median(colours, 0)) * np.array([0.5, 1.0, 1.0]), axis=1)
    return [n for n, f, d in zip(names, flat, off) if f or d > COVER_COLOUR]


def frontal_first(shots: Shots) -> Shots:
    """The shots with the most frontal one first, if the first is turned beyond ``PROFILE_YAW_DEG``.

    The first shot's landmarks are the face shape that relative motion moves and the picture that
    ``--paste source`` uses, so a frontal one should lead; otherwise the order is kept.
    """
    if len(shots) < 2:
        return shots
    yaw = np.abs([estimate_yaw(p) for p in shots.points])
    best = int(np.argmin(yaw))
    if yaw[0] <= PROFILE_YAW_DEG or best == 0:
        return shots
    order = [best] + [i for i in range(len(shots)) if i != best]
    o = shots.origins
    log.info("source shot %d (%s, turned ~%.0f deg) leads instead of shot 0 (turned ~%.0f deg)", best,
             o[best].get("source"), yaw[best], yaw[0])
    return dataclasses.replace(shots, frames=shots.frames[order], points=shots.points[order],
                               origins=[o[i] for i in order])


def _source_warnings(src: str | Path, sizes: list[float], scales: list[float], yaws: list[float],
                     covers: list[list[str]], image_size: int) -> list[str]:
    """One message per problem of one source (its faces found: sizes, crop scales, yaws, covers)."""
    out, n = [], len(sizes)
    small = [i for i, v in enumerate(sizes) if v < MIN_FACE_PX and scales[i] > 1]  # upscaled: soft
    if small:
        i = min(small, key=lambda k: sizes[k])
        what = (f"only {sizes[i]:.0f} px across" if n == 1 else
                f"under {MIN_FACE_PX} px across in {len(small)} of {n} frames (down to {sizes[i]:.0f} px)")
        out.append(f"{src}: the face is {what}, below the {MIN_FACE_PX} px sfumato needs for a sharp "
                   f"result: it is upscaled {scales[i]:.1f}x to the model's {image_size} px crop, so "
                   "the output will be soft")
    turned = [i for i, v in enumerate(yaws) if abs(v) > PROFILE_YAW_DEG]
    if turned:
        i = max(turned, key=lambda k: abs(yaws[k]))
        what = (f"about {abs(yaws[i]):.0f} degrees" if n == 1 else
                f"over {PROFILE_YAW_DEG:.0f} degrees in {len(turned)} of {n} frames (up to "
                f"{abs(yaws[i]):.0f})")
        out.append(f"{src}: the face is turned {what} (a three-quarter or profile view): its far side is "
                   "hidden, and neither G nor the texture warp can show what the picture lacks, so that "
                   "side will be smeared or invented when the driver looks the other way; a frontal "
                   "picture works best")
    hidden = [i for i, c in enumerate(covers) if c]
    if hidden:
        parts = sorted({r for i in hidden for r in covers[i]})
        where = "" if n == 1 else f" in {len(hidden)} of {n} frames"
        out.append(f"{src}: part of the face looks covered ({', '.join(parts)}: flat or off-colour)"
                   f"{where}: the model copies or paints over the cover; an unobstructed face works best")
    return out


def load_shots(sources: list[str | Path], image_size: int, shots: int | None = None,
               backend: FaceBackend | None = None, per_video: int | None = None) -> Shots:
    """Find the face in each source (images: 1 shot; videos: evenly spaced frames) and crop it.

    ``shots`` caps the total T (spread evenly over the candidates); None keeps every image and
    ``per_video`` frames per video (default: ``shots``, else 32). A source without any face is an
    error naming it; so is one whose faces are all under ``MIN_FACE_PX_HARD``. Faces under
    ``MIN_FACE_PX``, turned beyond ``PROFILE_YAW_DEG`` or partly covered are kept with a warning
    (logged and in ``Shots.warnings``).
    """
    if not sources:
        raise BadInputError("no source pictures or videos given")
    backend = backend or create_backend("dlib")
    params = dataclasses.replace(TRAINING_CROP, size=image_size)
    per_video = per_video or shots or 32
    frames, points, origins, hashes, warnings = [], [], [], {}, []
    for src in sources:
        sizes, scales, yaws, covers, too_small = [], [], [], [], []
        track = track_video(src, backend, TrackerConfig(detect_every=1), sample=per_video, keep_frames=True)
        for j in np.flatnonzero(track.found):
            idx, image, face_points = int(track.indices[j]), track.frames[j], track.points[j]
            size = face_size(face_points)
            if size < MIN_FACE_PX_HARD:  # a 68-point fit on a few pixels is mostly guesswork
                too_small.append(size)
                continue
            crop, local, transform = crop_face(image, face_points, params)
            frames.append(crop)
            points.append(local)
            origins.append({"source": str(src), "frame": idx,
                            "crop_matrix": transform.matrix.round(6).tolist()})
            sizes.append(size)
            scales.append(transform.scale)
            yaws.append(estimate_yaw(local))
            covers.append(covered_regions(crop, local))
        decoded = [f for f in track.frames if f is not None]
        shape = decoded[0].shape if decoded else None
        if not sizes and too_small:
            raise BadInputError(
                f"{src}: the face is only {max(too_small):.0f} px across, under the {MIN_FACE_PX_HARD} px "
                f"that reliable landmarks need (and {MIN_FACE_PX} px or more gives a sharp result): "
                "use a larger picture of the face")
        if not sizes:
            dims = f"{shape[1]}x{shape[0]} px; " if shape is not None else ""
            raise NoFaceError(f"{src}: no face found ({dims}a frontal, unobstructed, well-lit face of at "
                              f"least {MIN_FACE_PX} px works best; profiles and half-hidden faces are "
                              "usually not detected)")
        for msg in _source_warnings(src, sizes, scales, yaws, covers, image_size):
            log.warning(msg)
            warnings.append(msg)
        hashes[str(src)] = sha256_file(src)
    if shots is not None and len(frames) > shots:
        keep = np.linspace(0, len(frames) - 1, shots).round().astype(int)
        frames, points = [frames[i] for i in keep], [points[i] for i in keep]
        origins = [origins[i] for i in keep]
    return Shots(np.stack(frames), np.stack(points).astype(np.float32), origins, hashes, warnings)
