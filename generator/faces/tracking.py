"""Follow one face through a video: detect every few frames, track by landmarks in between.

Detection is the expensive step (tens of ms a frame); the 68-point fit is cheap (~2 ms with dlib).
Between detections the face box is predicted from the previous frame's landmarks, using the offset
between landmark box and detector box measured at the last detection, so the shape predictor sees the
kind of box it was trained on. A landmark fit always returns 68 points, even on a blank frame, so each
tracked frame is also checked: the box must not jump or change size implausibly, and a small
landmark-aligned patch must still look like the previous frame's (normalised cross-correlation);
otherwise the detector runs.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from generator.faces.backends import Detection, FaceBackend
from generator.faces.crop import CropParams, box_from_points, crop_transform

OK, NO_FACE = "ok", "no_face"


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """How often to detect and which face to follow."""

    detect_every: int = 8  # run the detector at least every N frames (1 = every frame)
    face_index: int = 0  # which face to follow when several: 0 = largest, 1 = second largest, ...
    min_iou: float = 0.3  # a detection continues the track if it overlaps it at least this much
    max_scale_change: float = 1.35  # tracked box growing/shrinking more than this per frame = lost
    max_missed_detections: int = 2  # detector runs in a row that may miss a still-tracked face
    min_patch_similarity: float = 0.5  # NCC of aligned face patches between frames, else re-detect

    def __post_init__(self):
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.face_index < 0:
            raise ValueError(f"face_index must be >= 0, got {self.face_index}")


@dataclasses.dataclass
class FrameFace:
    """The followed face in one frame, or why there is none."""

    index: int
    status: str  # "ok" or "no_face"
    points: np.ndarray | None = None  # (68, 2) frame pixels
    box: np.ndarray | None = None  # detector-style box (x0, y0, x1, y1)
    source: str = ""  # "detect" or "track"
    faces_seen: int = 0  # faces the detector found when it ran on this frame
    reason: str = ""


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


_PATCH = CropParams(size=24, margin=1.1, align=True, shift_y=0.0)


def face_patch(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 24x24 grey patch aligned to the landmarks, zero mean and unit variance (flat -> zeros)."""
    t = crop_transform(points, _PATCH)
    grey = cv2.warpAffine(frame, t.matrix, (t.size, t.size), flags=cv2.INTER_LINEAR
                          ).astype(np.float32).mean(-1)
    grey -= grey.mean()
    std = float(grey.std())
    return grey / std if std > 2.0 else np.zeros_like(grey)


class FaceTracker:
    """Feed frames in order with ``step``; each returns the followed face or the reason for none."""

    def __init__(self, backend: FaceBackend, config: TrackerConfig = TrackerConfig()):
        self.backend, self.config = backend, config
        self._points: np.ndarray | None = None  # last frame's landmarks
        self._patch: np.ndarray | None = None  # last frame's normalised face patch
        self._offset: np.ndarray | None = None  # detector box relative to landmark box
        self._since_detect = 0
        self._unconfirmed = 0  # detections in a row that missed the tracked face

    def reset(self) -> None:
        """Forget the followed face (e.g. after a seek to a distant frame)."""
        self._points, self._offset, self._patch = None, None, None
        self._since_detect = self._unconfirmed = 0

    def _select(self, faces: list[Detection]) -> Detection | None:
        if self._points is not None:  # continue the same person: best overlap with the track
            prev = self._predicted_box(self._points)
            best = max(faces, key=lambda d: iou(d.box, prev))
            return best if iou(best.box, prev) >= self.config.min_iou else None
        if self.config.face_index < len(faces):
            return faces[self.config.face_index]
        return None

    def _predicted_box(self, points: np.ndarray) -> np.ndarray:
        b = box_from_points(points)
        wh = np.tile(b[2:] - b[:2], 2)
        return b + self._offset * wh

    def _remember(self, frame: np.ndarray, points: np.ndarray, box: np.ndarray) -> None:
        b = box_from_points(points)
        wh = np.maximum(np.tile(b[2:] - b[:2], 2), 1e-3)
        self._offset = (box - b) / wh
        self._points = points
        self._patch = face_patch(frame, points)

    def _plausible(self, new: np.ndarray, old: np.ndarray) -> bool:
        a, b = box_from_points(new), box_from_points(old)
        ratio = max(1e-6, (a[2] - a[0]) * (a[3] - a[1])) / max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))
        limit = self.config.max_scale_change ** 2
        return 1 / limit < ratio < limit and iou(a, b) > 0.3

    def _track(self, frame: np.ndarray, index: int) -> FrameFace | None:
        box = self._predicted_box(self._points)
        points = self.backend.landmarks(frame, box)
        if not self._plausible(points, self._points):
            return None
        patch = face_patch(frame, points)
        if float((patch * self._patch).mean()) < self.config.min_patch_similarity:
            return None  # the content under the landmarks changed: a cut, an occlusion, no face
        self._points, self._patch = points, patch
        return FrameFace(index, OK, points, box, "track")

    def _detect(self, frame: np.ndarray, index: int) -> FrameFace:
        faces = self.backend.detect(frame)
        self._since_detect = 0
        chosen = self._select(faces) if faces else None
        if chosen is None and self._points is not None:
            # The detector missed the followed face (a turn, motion blur): keep tracking it for a
            # while, but not forever, since the shape predictor has no notion of "no face here".
            self._unconfirmed += 1
            if not faces and self._unconfirmed <= self.config.max_missed_detections:
                tracked = self._track(frame, index)
                if tracked is not None:
                    return tracked
            self.reset()  # lost: start over with the face of the requested index
            chosen = self._select(faces) if faces else None
        if chosen is None:
            self.reset()
            if min(frame.shape[:2]) < 16:
                reason = f"image too small to hold a face ({frame.shape[1]}x{frame.shape[0]} px)"
            elif not faces:
                reason = "no face detected"
            else:
                reason = (f"face index {self.config.face_index} requested but only "
                          f"{len(faces)} face(s) detected")
            return FrameFace(index, NO_FACE, faces_seen=len(faces), reason=reason)
        self._unconfirmed = 0
        points = self.backend.landmarks(frame, chosen.box)
        self._remember(frame, points, chosen.box)
        return FrameFace(index, OK, points, chosen.box, "detect", len(faces))

    def step(self, frame: np.ndarray, index: int) -> FrameFace:
        """Find the followed face in ``frame`` (the next frame of the video, or a fresh image)."""
        self._since_detect += 1
        if self._points is not None and self._since_detect < self.config.detect_every:
            tracked = self._track(frame, index)
            if tracked is not None:
                return tracked
        return self._detect(frame, index)
