"""Media out: H.264 mp4 encoding (in-process PyAV, or the bit-exact ffmpeg pipe), images, audio copy.

Every file appears atomically (a temporary beside it, renamed when complete). The readers are in
``generator.io.video``, which re-exports these for its callers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import av
import cv2
import numpy as np

from generator.errors import BadInputError, VideoWriteError
from generator.io.files import check_writable, temp_path_beside, write_bytes_atomic

__all__ = ["VideoWriter", "copy_audio", "write_image", "write_video"]


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
