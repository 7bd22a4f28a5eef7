"""A video as a row of time windows (4 s by default) that cover the whole file, each read as a few
short *bursts* of consecutive frames with the followed face's landmarks.

Why bursts: clip dynamics (is the background's sensor noise new in every frame? does the background
move when the head does?) need neighbouring frames, while a window's story (blinks, head turns) needs
frames spread over it. A few bursts give both for a small decode. Windows are read one at a time from
one open file, so memory stays flat on a long video; a file with more windows than
``WindowConfig.max_windows`` is scored on that many windows spread evenly over it (said in the result).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import cv2
import numpy as np

from generator.errors import BadInputError
from generator.faces.tracking import TrackerConfig, track_faces
from generator.io.video import MediaReader


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """How to cut a video into windows and bursts."""

    seconds: float = 4.0  # window length
    bursts: int = 4  # bursts of consecutive frames per window, spread evenly over it
    burst_frames: int = 5  # consecutive frames per burst
    max_side: int = 512  # frames are downscaled to at most this side before measuring (speed)
    max_windows: int = 150  # more windows than this (a 10-minute file): this many, spread evenly

    def __post_init__(self):
        if self.seconds <= 0 or self.bursts < 1 or self.burst_frames < 2 or self.max_windows < 1:
            raise BadInputError("windows need seconds > 0, bursts >= 1, burst_frames >= 2, max_windows >= 1")
        if self.max_side < 64:
            raise BadInputError(f"max_side must be at least 64 px, got {self.max_side}")


@dataclasses.dataclass
class Window:
    """One window's bursts: frames (downscaled), the face's landmarks in those frames' pixels."""

    index: int  # window number along the file
    start: float  # seconds
    end: float
    frame_indices: np.ndarray  # (N,) frame index in the file, bursts one after another
    burst: np.ndarray  # (N,) which burst each frame belongs to
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB at most max_side on the long side
    points: np.ndarray  # (N, 68, 2) landmarks in these frames' pixels, NaN where no face
    scale: float  # frame pixels here per pixel of the file

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: the face was found in the frame."""
        return np.isfinite(self.points[:, 0, 0])

    @property
    def face_size(self) -> float:
        """Median side of the landmark box over the frames with the face, in these frames' pixels
        (NaN: no face)."""
        sizes = [float(max(p.max(axis=0) - p.min(axis=0))) for p in self.points[self.found]]
        return float(np.median(sizes)) if sizes else float("nan")


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Where the windows lie: ``(start, end)`` frame ranges, and whether they cover every frame."""

    ranges: list[tuple[int, int]]
    fps: float
    complete: bool  # False: more windows than max_windows, so they are spread with gaps between


def plan_windows(frame_count: int, fps: float, config: WindowConfig = WindowConfig()) -> WindowPlan:
    """Windows of ``config.seconds`` tiling ``frame_count`` frames (the last one absorbs a short rest)."""
    if frame_count <= 0:
        return WindowPlan([], fps, True)
    fps = fps if fps and fps > 0 else 25.0
    length = max(int(round(config.seconds * fps)), config.burst_frames)
    n = max(1, frame_count // length)  # a rest shorter than a window joins the last window
    starts = [k * length for k in range(n)]
    ranges = [(s, (starts[k + 1] if k + 1 < n else frame_count)) for k, s in enumerate(starts)]
    if n <= config.max_windows:
        return WindowPlan(ranges, fps, True)
    keep = np.unique(np.linspace(0, n - 1, config.max_windows).round().astype(int))
    return WindowPlan([ranges[k] for k in keep], fps, False)


def burst_indices(start: int, end: int, config: WindowConfig = WindowConfig()) -> list[list[int]]:
    """The bursts of one window ``[start, end)``: ``config.bursts`` runs of consecutive frame indices
    spread evenly over it (fewer, shorter runs in a window too short for them)."""
    span = end - start
    b = config.burst_frames
    if span <= 0:
        return []
    if span <= b:
        return [list(range(start, end))]
    count = min(config.bursts, max(1, span // b))
    firsts = np.linspace(start, end - b, count).round().astype(int)
    return [list(range(int(f), int(f) + b)) for f in sorted(set(firsts.tolist()))]


def iter_windows(path: str | os.PathLike | MediaReader, backend,
                 config: WindowConfig = WindowConfig(), face_index: int = 0) -> Iterator[Window]:
    """Read ``path``'s windows one at a time (see the module docstring). A still image is one window
    of one frame; ``face_index`` picks the face to follow (0: the largest)."""
    opened = path if isinstance(path, MediaReader) else MediaReader(path)
    try:
        info = opened.info
        plan = window_plan_of(info, config)
        for k, (s, e) in enumerate(plan.ranges):
            runs = [[0]] if info.kind != "video" else burst_indices(s, e, config)
            window = _read_window(opened, backend, k, s, e, plan.fps, runs, config, face_index)
            if window is None:
                return  # nothing decodes from here on (a truncated file): the windows so far stand
            yield window
    finally:
        if opened is not path:
            opened.close()


def window_plan_of(info, config: WindowConfig = WindowConfig()) -> WindowPlan:
    """The plan ``iter_windows`` follows for a file with this ``MediaInfo``."""
    if info.kind != "video":
        return WindowPlan([(0, 1)], 0.0, True)
    return plan_windows(info.frame_count, info.fps, config)


def _read_window(reader: MediaReader, backend, k: int, s: int, e: int, fps: float, runs: list[list[int]],
                 config: WindowConfig, face_index: int) -> Window | None:
    flat = [i for run in runs for i in run]
    # The first frame of every burst is detected; the rest are tracked from their neighbour.
    tracker = TrackerConfig(detect_every=config.burst_frames, face_index=face_index)
    track = track_faces(reader, backend, tracker, indices=flat, keep_frames=True)[0]
    got = [(j, f) for j, f in enumerate(track.frames) if f is not None]
    if not got:
        return None
    keep = np.asarray([j for j, _ in got])
    h, w = got[0][1].shape[:2]
    scale = min(1.0, config.max_side / max(h, w))
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    frames = np.stack([f if scale == 1.0 else cv2.resize(f, size, interpolation=cv2.INTER_AREA)
                       for _, f in got])
    burst_of = np.concatenate([np.full(len(run), r) for r, run in enumerate(runs)])
    start_s = s / fps if fps else 0.0
    end_s = e / fps if fps else 0.0
    return Window(k, round(start_s, 3), round(end_s, 3), track.indices[keep], burst_of[keep], frames,
                  (track.points[keep] * scale).astype(np.float32), scale)


def windows_cover(plan: WindowPlan, frame_count: int) -> bool:
    """True when the plan's windows cover frames 0 .. frame_count - 1 without gap or overlap."""
    if not plan.ranges:
        return frame_count == 0
    ends = [e for _, e in plan.ranges]
    starts = [s for s, _ in plan.ranges]
    return starts[0] == 0 and ends[-1] == frame_count and all(a == b for a, b in zip(ends[:-1], starts[1:]))


__all__ = ["Window", "WindowConfig", "WindowPlan", "burst_indices", "iter_windows", "plan_windows",
           "window_plan_of", "windows_cover"]
