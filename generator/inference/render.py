"""From a driver to frames: the driver read as a landmark track, the render loop, composed frames.

The driver is a video (faces tracked), a landmark file from ``sfumato landmarks`` or the built-in
track (``load_driver``). ``render_video`` runs G on batches of landmarks while a worker thread
composes and encodes the previous batch (``FrameSink``); a frame is the face crop, the crop pasted
back into the source picture or the driver's frame (``Paster``), or ``--preview``'s driver |
landmarks | output panels (``PreviewPanel``). ``generator.inference.generate`` is the job around it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from generator.errors import BadInputError, NoFaceError
from generator.faces.landmarks import landmark_image
from generator.faces.motion import builtin_track, fill_missing, transfer_motion
from generator.io.encode import VideoWriter, write_image
from generator.io.files import sha256_file
from generator.io.video import MediaReader

if TYPE_CHECKING:  # generate imports this module; the config is only named in annotations here
    from generator.inference.generate import GenerateConfig
    from generator.inference.person import Person

__all__ = [
    "Driver", "FrameSink", "Paster", "PreviewPanel", "RenderStats", "is_landmark_file", "load_driver",
    "render_video", "side_by_side",
]


@dataclasses.dataclass
class Driver:
    """A landmark track (N, 68, 2) to drive with, and where it came from."""

    track: np.ndarray
    kind: str  # builtin, video, landmarks
    fps: float
    sha256: str | None = None
    filled: list[int] = dataclasses.field(default_factory=list)  # frames without a face (held)
    raw: np.ndarray | None = None  # a video's tracked points before filling (NaN: no face)
    path: Path | None = None
    start: int = 0  # first driver frame used


def is_landmark_file(path: str | Path) -> bool:
    """A driver given as a landmark file from ``sfumato landmarks`` (npz/json), not a video."""
    return Path(path).suffix.lower() in (".npz", ".json")


def load_driver(driver: str | Path | None, config: GenerateConfig, backend=None) -> Driver:
    """Read the driver: a video (faces tracked), a landmark file from ``sfumato landmarks``, or None
    for the built-in track. Frames where the driver shows no face hold the last landmarks (leading
    ones the first found) and are listed in ``Driver.filled``; no face in any frame is a NoFaceError."""
    if driver is None:
        track = builtin_track(config.seconds, config.fps or 25.0, config.seed)
        return Driver(track[config.start:config.end], "builtin", config.fps or 25.0)
    path = Path(driver)
    if is_landmark_file(path):
        return _landmark_file_driver(path, config)
    from generator.faces.backends import create_backend
    from generator.faces.tracking import TrackerConfig, track_video

    track = track_video(path, backend or create_backend("dlib"), TrackerConfig(), start=config.start,
                        end=config.end)
    fps = track.info.fps or 25.0
    points = list(track.points)  # NaN where the driver shows no face
    if not points:
        raise BadInputError(f"{path}: no frames in the requested range")
    try:
        track, filled = fill_missing(np.stack(points))
    except ValueError:
        where = _range_text(config, len(points))
        raise NoFaceError(f"{path}: no face found in any frame of the driver{where} (a driver needs a "
                          "visible, roughly frontal face in at least one frame)") from None
    return Driver(track, "video", fps, sha256_file(path), filled, np.stack(points), path,
                  config.start)


def _range_text(config: GenerateConfig, n: int) -> str:
    """' (frames a-b)' when only part of the driver was read, else ''."""
    if config.start == 0 and config.end is None:
        return ""
    return f" (frames {config.start}-{config.start + n - 1})"


def _preview_crop(frame: np.ndarray, points, params) -> np.ndarray:
    from generator.faces.crop import crop_face

    if points is None:
        return cv2.resize(frame, (params.size, params.size), interpolation=cv2.INTER_AREA)
    return crop_face(frame, points, params)[0]


def _landmark_file_driver(path: Path, config: GenerateConfig) -> Driver:
    try:
        if path.suffix.lower() == ".npz":
            from generator.faces.extract import load_landmarks_npz

            data = load_landmarks_npz(path)
            points, fps = data["points"], data["meta"].get("media", {}).get("fps")
        else:
            doc = json.loads(path.read_text())
            points = np.stack([np.asarray(f.get("points", np.full((68, 2), np.nan)), np.float32)
                               for f in doc["frames_detail"]])
            fps = doc.get("media", {}).get("fps")
    except (OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"{path}: not a landmark file from 'sfumato landmarks' ({exc})") from exc
    try:
        track, filled = fill_missing(np.asarray(points, np.float32)[config.start:config.end])
    except ValueError:
        raise NoFaceError(f"{path}: the landmark file has no frame with a face") from None
    return Driver(track, "landmarks", float(fps or 25.0), sha256_file(path), filled)


@dataclasses.dataclass
class RenderStats:
    """What the render loop measured."""

    render_seconds: float  # in G
    encode_busy_seconds: float  # the sink's worker composing and encoding (overlaps G)
    frame_shape: list[int]  # [height, width] of the written frames
    started: float  # time.perf_counter() as the loop started


def render_video(out: Path, person: Person, points: np.ndarray, track: np.ndarray, fps: float,
                 size: int, config: GenerateConfig, precision: str, paster: Paster | None = None,
                 preview: PreviewPanel | None = None, progress: bool = False) -> RenderStats:
    """Render ``points`` (N, 68, 2 in crop pixels) with G into an H.264 ``out``; closes the panels.

    ``track`` is the driver's (smoothed) track, which ``paster`` fits the driver's frames with;
    frames are ``size`` pixels across unless pasted; ``config.png_dir`` also gets every frame.
    """
    from tqdm import tqdm

    s = person.image_size
    png_dir = Path(config.png_dir) if config.png_dir else None
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
    frame_shape = [size, size]

    def compose_and_write(k: int, batch: np.ndarray, frames: np.ndarray) -> None:
        for j, frame in enumerate(frames):
            if paster is not None:
                img = paster(frame, batch[j], track[k + j])
            elif size == s:
                img = frame
            else:
                img = cv2.resize(frame, (size, size), interpolation=cv2.INTER_CUBIC)
            if preview is not None:
                img = side_by_side(preview(k + j), batch[j] * (size / s), img)
            writer.write(img)
            frame_shape[:] = img.shape[:2]
            if png_dir is not None:
                write_image(png_dir / f"{k + j:06d}.png", img)

    t_render = 0.0
    t_frames = time.perf_counter()
    bar = tqdm(total=len(points), unit="frame", desc="generate", disable=not progress)
    try:
        with VideoWriter(out, fps=fps, crf=config.crf) as writer, \
                FrameSink(compose_and_write) as sink:
            for k in range(0, len(points), config.batch_size):
                batch = points[k:k + config.batch_size]
                t = time.perf_counter()
                frames = person.render(batch, config.batch_size, precision)
                t_render += time.perf_counter() - t
                sink.submit(k, batch, frames)  # encoded on the sink's thread while G renders on
                bar.update(len(frames))
            sink.drain()
    finally:
        bar.close()
        for panel in (paster, preview):
            if panel is not None:
                panel.close()
    return RenderStats(t_render, sink.busy, frame_shape, t_frames)


class FrameSink:
    """Runs ``fn(*args)`` for each submitted batch, in order, on one worker thread.

    Composing and H.264-encoding a batch then overlaps G rendering the next one: on a GPU the encoder,
    not G, was the bottleneck (60-70% of the time on an H200). At most ``max_pending`` batches wait,
    which bounds memory; a worker's exception is raised in the caller at the next submit or drain.
    """

    def __init__(self, fn: Callable[..., None], max_pending: int = 2):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.fn, self.max_pending = fn, max_pending
        self.busy = 0.0  # seconds the worker spent in fn
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sfumato-encode")
        self._pending = deque()

    def _run(self, *args) -> None:
        t = time.perf_counter()
        try:
            self.fn(*args)
        finally:
            self.busy += time.perf_counter() - t

    def submit(self, *args) -> None:
        """Queue one batch (blocks while ``max_pending`` are already waiting)."""
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._run, *args))

    def drain(self) -> None:
        """Wait for every queued batch; raise the first error."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc) -> None:
        # On an error, drop what has not started and let the running batch finish before the
        # writer (entered first, closed after this) discards its temporary file.
        self._pool.shutdown(wait=True, cancel_futures=True)


class Paster:
    """Puts generated face crops back into full frames: the source picture's, or the driver's."""

    def __init__(self, mode: str, person_meta: dict, shots_origin: dict | None, driver,
                 drv: Driver, config: GenerateConfig, crop_size: int):
        from generator.faces.crop import CropTransform

        self.mode, self.size, self.crop_size = mode, config.size, crop_size
        if mode == "source":
            origin = shots_origin or (person_meta.get("sources") or [None])[0]
            if not origin or "crop_matrix" not in origin:
                raise BadInputError("--paste source needs the source picture's crop (remake the "
                                    "person file with this version, or pass --source)")
            src = Path(origin["source"])
            if not src.is_file():
                raise BadInputError(f"--paste source: the source {src} is no longer there")
            with MediaReader(src) as reader:
                self.background = reader.read_at([origin["frame"]])[origin["frame"]]
            self.transform = CropTransform(np.asarray(origin["crop_matrix"]), crop_size)
        elif mode == "driver":
            if drv.kind != "video":
                raise BadInputError("--paste driver needs a driving video")
            self._reader = MediaReader(driver)
            self._frames = (f for i, f in self._reader.frames()
                            if i >= config.start and (config.end is None or i < config.end))

    def __call__(self, crop: np.ndarray, crop_points: np.ndarray, frame_points: np.ndarray
                 ) -> np.ndarray:
        """The full frame with ``crop`` (model size) pasted in."""
        from generator.faces.crop import CropTransform
        from generator.faces.motion import similarity_transform

        if self.mode == "source":
            out = self.transform.paste(crop, self.background)
        else:
            frame = next(self._frames)
            # crop pixels -> driver frame pixels, fitted on the landmarks, inverted for paste().
            m = similarity_transform(frame_points, crop_points)
            out = CropTransform(m, self.crop_size).paste(crop, frame)
        if self.size:
            h, w = out.shape[:2]
            k = self.size / max(h, w)
            out = cv2.resize(out, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        return out

    def close(self) -> None:
        """Release the driver file."""
        if self.mode == "driver":
            self._reader.close()


class PreviewPanel:
    """The left panel of ``--preview``, frame by frame: the driver's face crop, read again from the
    video in order (nothing kept in memory), or for landmark drivers the mean face they move."""

    def __init__(self, drv: Driver, size: int):
        self.drv, self.size = drv, size
        self._reader = MediaReader(drv.path) if drv.kind == "video" else None
        self._frames = (f for i, f in self._reader.frames() if i >= drv.start) if self._reader else None

    def __call__(self, k: int) -> np.ndarray:
        """Panel for output frame ``k`` (frames are asked for in order)."""
        from generator.faces.crop import DETECTOR_CROP
        from generator.faces.motion import mean_face

        if self._frames is None:
            pts = transfer_motion(mean_face(self.size), self.drv.track[k:k + 1], "absolute")[0]
            return landmark_image(pts, self.size)
        frame = next(self._frames)
        crop = _preview_crop(frame, None if np.isnan(self.drv.raw[k]).any() else self.drv.raw[k],
                             DETECTOR_CROP)
        return cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)

    def close(self) -> None:
        """Release the driver file."""
        if self._reader is not None:
            self._reader.close()


def side_by_side(left: np.ndarray, pts: np.ndarray, out: np.ndarray) -> np.ndarray:
    """driver | landmarks | output, each as large as the output; ``pts`` in output pixels."""
    return np.hstack([left, landmark_image(pts, out.shape[0]), out])
