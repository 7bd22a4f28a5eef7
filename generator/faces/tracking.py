"""Follow faces through a video: detect every few frames, track by landmarks in between.

``track_video`` / ``track_faces`` are what callers use: frames in, a typed ``FaceTrack`` out.

Detection is the expensive step (tens of ms a frame); the 68-point fit is cheap (~2 ms with dlib).
Between detections the face box is predicted from the previous frame's landmarks, using the offset
between landmark box and detector box measured at the last detection, so the shape predictor sees the
kind of box it was trained on. A landmark fit always returns 68 points, even on a blank frame, so each
tracked frame is also checked: the box must not jump or change size implausibly, and a small
landmark-aligned patch must still look like the previous frame's (normalised cross-correlation);
otherwise the detector runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from generator.faces.backends import Detection, FaceBackend
from generator.faces.crop import CropParams, box_from_points, crop_transform
from generator.io.video import MediaInfo, MediaReader, evenly_spaced_indices

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


NOT_DECODED = "not_decoded"


@dataclasses.dataclass
class FaceTrack:
    """One face followed through the visited frames of a media file: its landmarks, or why none.

    Every visited frame has an entry; a frame without the face has NaN points and box, a status
    (``NO_FACE``, or ``NOT_DECODED`` when it could not be read) and a reason. This is the one record
    of missing frames every caller reads (``missing``).
    """

    info: MediaInfo
    indices: np.ndarray  # (N,) frame indices, in visiting order
    points: np.ndarray  # (N, 68, 2) frame pixels, NaN where no face
    boxes: np.ndarray  # (N, 4) detector-style boxes, NaN where no face
    status: list[str]  # OK, NO_FACE or NOT_DECODED
    reasons: list[str]  # "" where found
    sources: list[str]  # "detect" / "track" where found, else ""
    faces_seen: np.ndarray  # (N,) faces the detector found on the frame (0 when it did not run)
    frames: list[np.ndarray | None] | None = None  # the decoded frames, with keep_frames=True
    truncated: bool = False
    warning: str | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: the face was found in the frame."""
        return np.asarray([s == OK for s in self.status], bool)

    @property
    def decoded(self) -> np.ndarray:
        """(N,) bool: the frame could be read."""
        return np.asarray([s != NOT_DECODED for s in self.status], bool)

    def missing(self) -> list[dict]:
        """The frames without the face: ``{"index", "status", "reason"}`` each."""
        return [{"index": int(i), "status": s, "reason": r}
                for i, s, r in zip(self.indices, self.status, self.reasons) if s != OK]


class _SharedDetections:
    """A backend that runs the detector once per frame for several trackers following different faces."""

    def __init__(self, backend: FaceBackend):
        self.backend, self._frame, self._faces = backend, None, None

    def detect(self, frame: np.ndarray) -> list[Detection]:
        if frame is not self._frame:
            self._frame, self._faces = frame, self.backend.detect(frame)
        return self._faces

    def __getattr__(self, name):  # landmarks, describe, ... go to the real backend
        return getattr(self.backend, name)


def track_faces(path: str | os.PathLike | MediaReader, backend: FaceBackend,
                config: TrackerConfig = TrackerConfig(), *,
                faces: int = 1, sample: int | None = None, indices: Sequence[int] | None = None,
                start: int = 0, end: int | None = None, limit: int | None = None, keep_frames: bool = False,
                on_frame: Callable[[np.ndarray, list[FrameFace]], None] | None = None) -> list[FaceTrack]:
    """Follow ``faces`` faces (``config.face_index`` and the next by size) through one decode of ``path``.

    Which frames: ``sample`` evenly spaced ones (as DeepfakeBench), or the given ``indices``, or else
    the consecutive frames ``start`` <= index < ``end`` (at most ``limit`` of them), decoded as a stream.
    ``on_frame(frame, faces)`` sees each decoded frame with its faces, for work that should not keep
    every frame in memory (an overlay video); ``keep_frames`` keeps them on the tracks instead.
    ``path`` may be a MediaReader the caller opened (to read ``info`` first); it is left open.
    """
    shared = _SharedDetections(backend) if faces > 1 else backend
    trackers = [FaceTracker(shared, dataclasses.replace(config, face_index=config.face_index + k))
                for k in range(faces)]
    rows: list[tuple[int, np.ndarray | None, list[FrameFace] | None]] = []
    opened = path if isinstance(path, MediaReader) else None
    with contextlib.nullcontext(opened) if opened is not None else MediaReader(path) as reader:
        info = reader.info
        if sample is not None or indices is not None:
            wanted = evenly_spaced_indices(info.frame_count, sample) if indices is None else list(indices)
            got = reader.read_at(wanted)
            stream = ((i, got.get(i)) for i in wanted)
        else:
            stream = ((i, f) for i, f in reader.frames() if i >= start)
        for n, (idx, frame) in enumerate(stream):
            if (end is not None and idx >= end) or (limit is not None and n >= limit):
                break
            found = None if frame is None else [t.step(frame, idx) for t in trackers]
            if found is not None and on_frame is not None:
                on_frame(frame, found)
            rows.append((idx, frame if keep_frames else None, found))
        truncated, warning = reader.truncated, reader.warning
    return [_track_from_rows(info, rows, k, keep_frames, truncated, warning) for k in range(faces)]


def track_video(path: str | os.PathLike | MediaReader, backend: FaceBackend,
                config: TrackerConfig = TrackerConfig(), **frames) -> FaceTrack:
    """Follow one face through ``path``: ``track_faces`` with ``faces=1`` (same frame options)."""
    return track_faces(path, backend, config, faces=1, **frames)[0]


def _track_from_rows(info: MediaInfo, rows: list, k: int, keep_frames: bool, truncated: bool,
                     warning: str | None) -> FaceTrack:
    n = len(rows)
    points = np.full((n, 68, 2), np.nan, np.float32)
    boxes = np.full((n, 4), np.nan, np.float32)
    status, reasons, sources, seen = [], [], [], np.zeros(n, np.int64)
    for j, (_, _, found) in enumerate(rows):
        if found is None:
            status.append(NOT_DECODED)
            reasons.append(warning or "frame could not be decoded")
            sources.append("")
            continue
        face = found[k]
        status.append(face.status)
        reasons.append("" if face.status == OK else (face.reason or "no face found"))
        sources.append(face.source)
        seen[j] = face.faces_seen
        if face.status == OK:
            points[j], boxes[j] = face.points, face.box
    return FaceTrack(info, np.asarray([r[0] for r in rows], np.int64), points, boxes, status, reasons,
                     sources, seen, [r[1] for r in rows] if keep_frames else None, truncated, warning)
