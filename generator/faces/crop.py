"""Square face crops around the 68 landmarks, with the exact transform and its inverse.

One function serves both crop conventions of the project (architecture.md): the paper's training
crop (a square about 1.5-1.8x the landmark box so hair and chin fit, 256 px) and the detector crop of
the detection protocol (1.3x margin, eye line levelled). The transform is a 2x3 similarity matrix, so
landmarks move into crop coordinates and generated crops can be pasted back into the full frame.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from generator.faces.landmarks import check_landmarks

TRAINING_MARGIN = 1.6  # paper.md: "enlarged (about 1.5-1.8x) so hair and chin fit"
DETECTOR_MARGIN = 1.3  # detection.md: DeepfakeBench's crop


@dataclasses.dataclass(frozen=True)
class CropParams:
    """How to cut a face crop: output side, margin around the landmark box, alignment, shift."""

    size: int = 256  # output side in pixels
    margin: float = TRAINING_MARGIN  # crop side = margin x the longer side of the landmark box
    align: bool = False  # rotate so the eye line is horizontal
    shift_y: float = 0.1  # move the centre up by this fraction of the box height (forehead, hair)

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"crop size must be at least 8 px, got {self.size}")
        if self.margin <= 0:
            raise ValueError(f"crop margin must be positive, got {self.margin}")

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)


TRAINING_CROP = CropParams()
DETECTOR_CROP = CropParams(size=256, margin=DETECTOR_MARGIN, align=True, shift_y=0.0)


@dataclasses.dataclass(frozen=True)
class CropTransform:
    """A similarity transform from frame pixels to crop pixels (``matrix`` is 2x3)."""

    matrix: np.ndarray
    size: int

    @property
    def inverse(self) -> np.ndarray:
        """The 2x3 matrix from crop pixels back to frame pixels."""
        return cv2.invertAffineTransform(self.matrix)

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return float(np.hypot(*self.matrix[0, :2]))

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) frame coordinates into crop coordinates."""
        return _affine(self.matrix, points)

    def invert_points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) crop coordinates back into frame coordinates."""
        return _affine(self.inverse, points)

    def apply_image(self, frame: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """Cut the crop out of ``frame``; parts outside the frame are black."""
        # INTER_AREA is not supported by warpAffine; pre-shrink with it when downscaling a lot,
        # which avoids aliasing on large frames.
        src, m = frame, self.matrix
        if interpolation == cv2.INTER_AREA:
            factor = int(1.0 / max(self.scale, 1e-6))
            if factor >= 2:
                src = cv2.resize(frame, (frame.shape[1] // factor, frame.shape[0] // factor),
                                 interpolation=cv2.INTER_AREA)
                sx, sy = frame.shape[1] / src.shape[1], frame.shape[0] / src.shape[0]
                m = m @ np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], dtype=np.float64)
            interpolation = cv2.INTER_LINEAR
        return cv2.warpAffine(src, m, (self.size, self.size), flags=interpolation,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))

    def paste(self, crop: np.ndarray, frame: np.ndarray, feather: int = 8,
              mask: np.ndarray | None = None) -> np.ndarray:
        """Paste a (generated) crop back into a copy of ``frame`` with a feathered edge.

        ``mask`` (S, S) float in [0, 1] limits the paste (e.g. ``face_mask``); default: the square.
        """
        h, w = frame.shape[:2]
        back = cv2.warpAffine(crop, self.inverse, (w, h), flags=cv2.INTER_LINEAR)
        f = max(1, feather)
        if mask is None:
            mask = np.zeros((self.size, self.size), np.float32)
            mask[f:-f, f:-f] = 1.0
            mask = cv2.GaussianBlur(mask, (0, 0), f / 2)
        alpha = cv2.warpAffine(mask, self.inverse, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        return (alpha * back + (1 - alpha) * frame).round().astype(np.uint8)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {"matrix": self.matrix.round(6).tolist(), "size": self.size}

    @classmethod
    def from_dict(cls, d: dict) -> CropTransform:
        """Inverse of ``to_dict``."""
        return cls(np.asarray(d["matrix"], dtype=np.float64), int(d["size"]))


def _affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def eye_angle(points: np.ndarray) -> float:
    """Angle in radians of the line from the right eye's centre to the left eye's (image x axis = 0)."""
    pts = check_landmarks(points)
    right, left = pts[36:42].mean(0), pts[42:48].mean(0)
    return float(np.arctan2(left[1] - right[1], left[0] - right[0]))


def crop_transform(points: np.ndarray, params: CropParams = TRAINING_CROP) -> CropTransform:
    """The transform that cuts a ``params.size`` square around the landmarks (see ``CropParams``)."""
    pts = check_landmarks(points).astype(np.float64)
    theta = eye_angle(pts) if params.align else 0.0
    c, s = np.cos(-theta), np.sin(-theta)
    rot = np.array([[c, -s], [s, c]])
    # Measure the box in the levelled frame so the crop fits the face, not its tilted bounding box.
    levelled = pts @ rot.T
    lo, hi = levelled.min(0), levelled.max(0)
    side = max(float((hi - lo).max()) * params.margin, 1.0)
    centre = (lo + hi) / 2 - np.array([0.0, params.shift_y * (hi - lo)[1]])
    k = params.size / side
    matrix = np.zeros((2, 3))
    matrix[:, :2] = k * rot
    matrix[:, 2] = params.size / 2 - k * centre
    return CropTransform(matrix, params.size)


def crop_face(frame: np.ndarray, points: np.ndarray, params: CropParams = TRAINING_CROP
              ) -> tuple[np.ndarray, np.ndarray, CropTransform]:
    """Cut the face crop; return (crop RGB, landmarks in crop coordinates, transform)."""
    t = crop_transform(points, params)
    return t.apply_image(frame), t.apply_points(points), t


def face_mask(points: np.ndarray, size: int, grow: float = 0.08, feather: float = 0.04) -> np.ndarray:
    """A soft (size, size) float mask of the face: the convex hull of one or more landmark sets
    (..., 68, 2) in crop pixels, grown by ``grow`` and feathered by ``feather`` (fractions of size).

    Blending only the face keeps the real background and hair, as face-swap benchmarks do.
    """
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts.round().astype(np.int32)), 1)
    k = max(1, round(grow * size))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.5, feather * size))


def box_from_points(points: np.ndarray) -> np.ndarray:
    """The (x0, y0, x1, y1) bounding box of a point set."""
    pts = np.asarray(points, dtype=np.float32)
    return np.concatenate([pts.min(0), pts.max(0)])
