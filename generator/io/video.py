"""Video and image I/O: decode to RGB uint8 frames, sample frames by seeking, encode H.264 mp4.

One module for every reader and writer of media in sfumato (prepare, generate, dataset build, scan).
Decoding uses PyAV (FFmpeg's libraries in-process: no subprocess, exact seeking by timestamp);
still images use OpenCV, which applies EXIF orientation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import av
import cv2
import numpy as np

from generator.errors import BadInputError, VideoReadError, VideoWriteError
from generator.io.files import check_writable, temp_path_beside, write_bytes_atomic

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
        pos = -1  # index of the last decoded frame
        decoder: Iterator[av.VideoFrame] | None = None
        for target in wanted:
            key = int(self._key_idx[np.searchsorted(self._key_idx, target, side="right") - 1]) \
                if len(self._key_idx) else 0
            if decoder is None or key - pos > min_skip:
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
                break  # stream ended (or truncated) before the target
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


# -- writing ---------------------------------------------------------------------------------
class VideoWriter:
    """Writes RGB uint8 frames to an H.264 mp4 (yuv420p) atomically; use as a context manager.

    Odd sizes are padded by one edge-replicated row/column, because yuv420p needs even sizes.
    The file appears at ``path`` only when the writer closes without error.
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 23, preset: str = "medium",
                 reproducible: bool = False):
        if not 0 <= crf <= 51:
            raise BadInputError(f"CRF must be in 0..51, got {crf}")
        if fps <= 0:
            raise BadInputError(f"fps must be positive, got {fps}")
        self.path = check_writable(path)
        self.fps, self.crf, self.preset = fps, crf, preset
        self.frame_count = 0
        self._tmp = temp_path_beside(self.path)
        # reproducible: the same frames give the same bytes. In-process libx264 (PyAV) does not: its
        # lossy encodes of identical frames differed from run to run here (mb-tree rate control),
        # while the ffmpeg binary of imageio-ffmpeg, fed raw frames on a pipe, is bit-exact. One
        # encoder thread: x264's output depends on its thread count (auto = the machine's cores),
        # and a torchrun rank once encoded a clip differently from the in-process build on CI.
        self._pipe = None
        self._container = None if reproducible else av.open(str(self._tmp), "w", format="mp4")
        self._stream = None
        self._size: tuple[int, int] | None = None

    def _open_stream(self, h: int, w: int) -> None:
        from fractions import Fraction

        rate = Fraction(self.fps).limit_denominator(1001)
        if self._container is None:
            self._open_pipe(h + (h % 2), w + (w % 2), rate)
            self._size = (h, w)
            return
        s = self._container.add_stream("libx264", rate=rate)
        s.width, s.height = w + (w % 2), h + (h % 2)
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(self.crf), "preset": self.preset}
        # PyAV asks libx264 for slice threads; frame threads encoded a 183-frame 512 px clip in
        # 0.87 s instead of 0.99 s here.
        s.thread_type = "FRAME"
        self._stream, self._size = s, (h, w)

    def _open_pipe(self, h: int, w: int, rate) -> None:
        import subprocess

        import imageio_ffmpeg

        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", f"{rate.numerator}/{rate.denominator}",
               "-i", "-", "-c:v", "libx264", "-crf", str(self.crf), "-preset", self.preset,
               "-threads", "1",
               "-pix_fmt", "yuv420p", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
               "-f", "mp4", str(self._tmp)]
        self._pipe = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame (H, W, 3); every frame must have the first frame's size."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise BadInputError(f"frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._size is None:
            self._open_stream(*frame.shape[:2])
        if frame.shape[:2] != self._size:
            raise BadInputError(f"frame size {frame.shape[:2]} differs from the first {self._size}")
        h, w = self._size
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._pipe is not None:
            try:
                self._pipe.stdin.write(np.ascontiguousarray(frame).tobytes())
            except BrokenPipeError:
                raise VideoWriteError(f"cannot write {self.path}: ffmpeg stopped "
                                      f"({self._pipe_error()})") from None
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        self.frame_count += 1

    def _pipe_error(self) -> str:
        self._pipe.wait()
        err = self._pipe.stderr.read().decode(errors="replace").strip()[-500:]
        return err or f"exit {self._pipe.returncode}"

    def close(self, ok: bool = True) -> None:
        """Flush and finish the file (``ok=False`` discards it)."""
        if self._container is None and self._pipe is None:
            if self._tmp.exists():  # a reproducible writer that never got a frame
                self._tmp.unlink()
                if ok:
                    raise VideoWriteError(f"cannot write {self.path}: no frames were given")
            return
        try:
            if self._pipe is not None:
                pipe, self._pipe = self._pipe, None
                pipe.stdin.close()
                if pipe.wait() != 0 and ok:
                    err = pipe.stderr.read().decode(errors="replace").strip()[-500:]
                    raise VideoWriteError(f"cannot write {self.path}: ffmpeg failed ({err})")
            else:
                if ok and self._stream is not None:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if ok and self.frame_count == 0:
                raise VideoWriteError(f"cannot write {self.path}: no frames were given")
            if ok:
                os.replace(self._tmp, self.path)
        finally:
            self._container = None
            if self._tmp.exists():
                self._tmp.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, crf: int = 23,
                preset: str = "medium", reproducible: bool = False) -> int:
    """Encode RGB uint8 frames to an H.264 mp4 at ``crf``; return the number of frames written."""
    with VideoWriter(path, fps=fps, crf=crf, preset=preset, reproducible=reproducible) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frame_count


def write_image(path: str | os.PathLike, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB uint8 image (png/jpg/...) atomically."""
    p = Path(path)
    ext = p.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise VideoWriteError(f"cannot encode {p} as {ext}")
    write_bytes_atomic(p, buf.tobytes())


def copy_audio(video: str | os.PathLike, audio_from: str | os.PathLike, start: float = 0.0,
               duration: float | None = None) -> bool:
    """Add ``audio_from``'s first audio track (from ``start`` s, for ``duration`` s) to ``video``,
    in place and atomically; packets are copied, not re-encoded. False if there is no audio track
    or it cannot go into an mp4 (the video is then left as it was)."""
    video = Path(video)
    with av.open(str(audio_from)) as src:
        if not src.streams.audio:
            return False
        a_in = src.streams.audio[0]
        tmp = temp_path_beside(video)
        try:
            with av.open(str(video)) as vid, av.open(str(tmp), "w", format="mp4") as dst:
                v_in = vid.streams.video[0]
                v_out = dst.add_stream_from_template(v_in)
                a_out = dst.add_stream_from_template(a_in)
                for packet in vid.demux(v_in):
                    if packet.dts is not None:
                        packet.stream = v_out
                        dst.mux(packet)
                offset = int(round(start / a_in.time_base)) if a_in.time_base else 0
                for packet in src.demux(a_in):
                    if packet.dts is None or packet.pts is None:
                        continue
                    t = float(packet.pts * a_in.time_base)
                    if t < start:
                        continue
                    if duration is not None and t >= start + duration:
                        break
                    packet.pts -= offset
                    packet.dts -= offset
                    packet.stream = a_out
                    dst.mux(packet)
            os.replace(tmp, video)
            return True
        except (av.error.FFmpegError, ValueError):
            return False  # e.g. a codec mp4 cannot hold; the silent video stays
        finally:
            if tmp.exists():
                tmp.unlink()
