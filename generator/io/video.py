"""Video and image I/O: decode to RGB uint8 frames, sample frames by seeking, encode H.264 mp4.

One module for every reader and writer of media in sfumato (prepare, generate, dataset build, scan);
the writers live in ``generator.io.encode`` and are re-exported here.
Decoding uses PyAV (FFmpeg's libraries in-process: no subprocess, exact seeking by timestamp);
still images use OpenCV, which applies EXIF orientation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import cv2
import numpy as np

from generator.errors import BadInputError, VideoReadError

# Re-exported (in __all__): the writers moved to generator.io.encode, and check_writable lives in
# generator.io.files, but callers across the packages import them from here.
from generator.io.encode import VideoWriter, copy_audio, write_image, write_video
from generator.io.files import check_writable

__all__ = [
    "IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS", "NO_PTS_FORMATS", "SEEK_MIN_SKIP", "VIDEO_EXTENSIONS",
    "MediaInfo", "MediaReader", "VideoWriter", "check_readable_file", "check_writable", "copy_audio",
    "evenly_spaced_indices", "is_image_path", "is_media_path", "probe", "read_image", "write_image",
    "write_video",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".gif"})
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS

# A seek flushes the decoder and restarts it at a keyframe; below this many skipped frames it is
# cheaper to keep decoding forward (measured: a seek costs about as much as decoding ~20 frames).
SEEK_MIN_SKIP = 24
# Containers whose packets carry no reliable presentation timestamps: decode in order, never seek.
NO_PTS_FORMATS = frozenset({"avi", "h264", "hevc", "mjpeg"})


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """What a media file holds: display size (after rotation), rate, length and stream facts."""

    path: str
    kind: str  # "video" or "image"
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    rotation: int = 0  # degrees counter-clockwise applied to decoded frames for display
    codec: str = ""
    has_audio: bool = False
    keyframe_count: int = 1
    bits_per_pixel: float = 0.0  # video stream bits / (frames x width x height): how hard it was compressed

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name says it is a still image."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_media_path(path: str | os.PathLike) -> bool:
    """True when the file name has a video or image extension sfumato reads."""
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def check_readable_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path, or raise a clear error if it is missing, a folder or empty."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():
        raise BadInputError(f"{p}: is a folder, expected a file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise BadInputError(f"{p}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise BadInputError(f"{p}: empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise BadInputError(f"{p}: permission denied")
    return p


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a still image as RGB uint8 (H, W, 3); grayscale and alpha are converted, EXIF respected."""
    p = check_readable_file(path)
    data = np.fromfile(p, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. more pixels than OpenCV's safety limit
        raise VideoReadError(f"{p}: cannot decode image ({exc.err or exc})") from exc
    if bgr is None:
        raise VideoReadError(f"{p}: not an image sfumato can decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, multiple of 90)."""
    k = (int(round(rotation / 90.0))) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


class MediaReader:
    """Reads a video or a still image as RGB uint8 frames; use as a context manager.

    ``frames()`` decodes in order; ``read_at(indices)`` and ``sample(n)`` seek to keyframes when that
    skips enough frames, and decode forward otherwise. A file that stops decoding part-way (a
    truncated download) yields what was readable; ``truncated`` and ``warning`` say so.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = check_readable_file(path)
        self.truncated = False
        self.warning: str | None = None
        self._cursor: tuple[Iterator[av.VideoFrame], int] | None = None  # read_at's decoder and position
        self._image: np.ndarray | None = None
        self._container = None
        if is_image_path(self.path):
            self._image = read_image(self.path)
            h, w = self._image.shape[:2]
            self.info = MediaInfo(str(self.path), "image", w, h, 0.0, 1, 0.0)
            return
        self._open_video()

    # -- opening -----------------------------------------------------------------------------
    def _open_video(self) -> None:
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            # A still image with an unusual extension is still an image.
            try:
                self._image = read_image(self.path)
            except VideoReadError:
                raise VideoReadError(_explain_unopenable(self.path, exc)) from exc
            h, w = self._image.shape[:2]
            self.info = MediaInfo(str(self.path), "image", w, h, 0.0, 1, 0.0)
            return
        c = self._container
        if not c.streams.video:
            kinds = ", ".join(sorted({s.type for s in c.streams})) or "no streams"
            c.close()
            raise VideoReadError(f"{self.path}: has no video stream ({kinds} only)")
        self._stream = c.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._index_packets()
        self._check_complete()
        if self._packet_count == 0:
            c.close()
            raise VideoReadError(f"{self.path}: video stream holds no frames (truncated or empty)")
        self._rotation = self._probe_rotation()
        s = self._stream
        w, h = (s.codec_context.width, s.codec_context.height)
        if self._rotation % 180:
            w, h = h, w
        fps = float(s.average_rate or s.guessed_rate or s.base_rate or 0) or 25.0
        count = self._packet_count
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif c.duration is not None:
            duration = c.duration / av.time_base
        else:
            duration = count / fps
        self.info = MediaInfo(
            path=str(self.path), kind="video", width=w, height=h, fps=round(fps, 6),
            frame_count=count, duration=round(duration, 6), rotation=self._rotation,
            codec=s.codec_context.name, has_audio=bool(c.streams.audio),
            keyframe_count=int(len(self._key_idx)) if self._key_idx is not None else 0,
            bits_per_pixel=round(8.0 * self._stream_bytes / max(count * w * h, 1), 6),
        )

    def _index_packets(self) -> None:
        """Demux (no decoding) to learn every frame's timestamp and where the keyframes are."""
        pts: list[int | None] = []
        keys: list[int] = []
        c, s = self._container, self._stream
        self._stream_bytes = 0
        try:
            for packet in c.demux(s):
                if packet.size == 0:
                    continue  # the flush packet at the end of the stream
                pts.append(packet.pts)
                self._stream_bytes += packet.size
                if packet.is_keyframe and packet.pts is not None:
                    keys.append(packet.pts)
        except av.error.FFmpegError as exc:
            self.truncated = True
            self.warning = f"stream ends early ({_ffmpeg_reason(exc)}); decoding what is readable"
        # AVI stores no presentation order: decoded timestamps come out shuffled when the stream
        # has B-frames, so count frames in decode order there and never seek.
        self._packet_count = len(pts)
        if None in pts or self._container.format.name in NO_PTS_FORMATS:
            self._pts = None
            self._key_idx = None
        else:
            self._pts = np.unique(np.asarray(pts, dtype=np.int64))
            self._key_idx = np.searchsorted(self._pts, np.unique(np.asarray(keys, dtype=np.int64)))
        c.seek(0)

    def _check_complete(self) -> None:
        """Flag a file whose header promises more frames than its data holds (a cut download)."""
        s, c = self._stream, self._container
        present = self._packet_count
        declared = int(s.frames or 0)
        if not declared and c.duration and s.average_rate:
            declared = int(round(c.duration / av.time_base * float(s.average_rate)))
        if present and declared > present + max(2, 0.05 * declared):
            self.truncated = True
            self.warning = (f"file is truncated: {present} of {declared} frames present; "
                            "decoding what is readable")

    def _probe_rotation(self) -> int:
        try:
            for frame in self._container.decode(self._stream):
                rotation = int(round(frame.rotation or 0))
                break
            else:
                rotation = 0
        except av.error.FFmpegError:
            rotation = 0
        self._container.seek(0)
        return rotation

    # -- decoding ----------------------------------------------------------------------------
    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return _rotate(frame.to_ndarray(format="rgb24"), self._rotation)

    def _frame_index(self, frame: av.VideoFrame, fallback: int) -> int:
        if self._pts is None or frame.pts is None:
            return fallback
        return int(np.searchsorted(self._pts, frame.pts))

    def _decode_from_here(self) -> Iterator[av.VideoFrame]:
        """Decode forward from the current position; a decode error ends the stream, flagged."""
        try:
            yield from self._container.decode(self._stream)
        except av.error.FFmpegError as exc:
            self.truncated = True
            self.warning = f"decoding stopped early ({_ffmpeg_reason(exc)}); kept the readable frames"

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_index, rgb)`` for every readable frame, in order."""
        if self._image is not None:
            yield 0, self._image
            return
        self._cursor = None  # the seek below ends any decoder read_at left running
        self._container.seek(0)
        for n, frame in enumerate(self._decode_from_here()):
            yield self._frame_index(frame, n), self._to_rgb(frame)

    def read_at(self, indices: Sequence[int], strategy: str = "auto") -> dict[int, np.ndarray]:
        """Decode the frames at ``indices`` (display order) and return ``{index: rgb}``.

        ``strategy``: ``"auto"`` seeks only when that skips at least ``SEEK_MIN_SKIP`` frames,
        ``"seek"`` seeks whenever a keyframe lies between, ``"sequential"`` never seeks.
        Indices past the readable end are missing from the result.
        """
        if strategy not in ("auto", "seek", "sequential"):
            raise ValueError(f"unknown strategy {strategy!r}; use auto, seek or sequential")
        wanted = sorted({int(i) for i in indices if 0 <= int(i) < max(self.info.frame_count, 1)})
        if self._image is not None:
            return {0: self._image} if 0 in wanted else {}
        out: dict[int, np.ndarray] = {}
        if not wanted:
            return out
        if self._pts is None or strategy == "sequential":
            for idx, rgb in self.frames():
                if idx in wanted:
                    out[idx] = rgb
                if idx >= wanted[-1]:
                    break
            return out
        min_skip = SEEK_MIN_SKIP if strategy == "auto" else 1
        # The decoder left by the previous call goes on forward from where it stopped, so reading a
        # file piece by piece (scan's windows) decodes it once instead of from a keyframe each time.
        decoder, pos = self._cursor or (None, -1)  # pos: index of the last decoded frame
        for target in wanted:
            key = int(self._key_idx[np.searchsorted(self._key_idx, target, side="right") - 1]) \
                if len(self._key_idx) else 0
            if decoder is None or target <= pos or key - pos > min_skip:
                self._container.seek(int(self._pts[key]), stream=self._stream, backward=True)
                decoder = self._decode_from_here()
                pos = -1
            for frame in decoder:
                idx = self._frame_index(frame, pos + 1)
                pos = idx
                if idx == target:
                    out[target] = self._to_rgb(frame)
                if idx >= target:
                    break
            else:
                decoder = None
                break  # stream ended (or truncated) before the target
        self._cursor = (decoder, pos) if decoder is not None else None
        return out

    def sample(self, n: int, strategy: str = "auto") -> tuple[list[int], list[np.ndarray]]:
        """Return ``n`` evenly spaced frames (np.linspace over the frame count, as DeepfakeBench)."""
        indices = evenly_spaced_indices(self.info.frame_count, n)
        got = self.read_at(indices, strategy=strategy)
        kept = [i for i in indices if i in got]
        return kept, [got[i] for i in kept]

    # -- context manager ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the file."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def evenly_spaced_indices(frame_count: int, n: int) -> list[int]:
    """``n`` evenly spaced frame indices over ``frame_count`` frames (all frames if n >= count)."""
    if frame_count <= 0 or n <= 0:
        return []
    if n >= frame_count:
        return list(range(frame_count))
    return sorted({int(i) for i in np.linspace(0, frame_count - 1, n).round()})


def probe(path: str | os.PathLike) -> MediaInfo:
    """Return a media file's facts (size, fps, frame count, rotation) or raise a clear error."""
    with MediaReader(path) as reader:
        return reader.info


def _explain_unopenable(path: Path, exc: Exception) -> str:
    """Say why FFmpeg could not open ``path``, naming the common case of an mp4 cut before its index."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[4:8] == b"ftyp":
        with open(path, "rb") as fh:
            has_index = b"moov" in fh.read()
        if not has_index:
            return (f"{path}: truncated mp4/mov: its index (the 'moov' box) is missing, so no frame "
                    "can be located; re-download or re-export the file")
    return f"{path}: not a video or image sfumato can decode ({_ffmpeg_reason(exc)})"


def _ffmpeg_reason(exc: Exception) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return str(msg).split(":")[0].strip() if msg else type(exc).__name__
