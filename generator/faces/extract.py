"""Landmarks for a whole video or image: every frame's 68 points (or why there are none), saved as
npz and JSON, with an overlay preview for people. The engine behind ``sfumato landmarks``."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from generator import __version__
from generator.faces.backends import FaceBackend, create_backend
from generator.faces.landmarks import overlay
from generator.faces.tracking import NO_FACE, OK, TrackerConfig, track_video
from generator.io.files import write_bytes_atomic
from generator.io.video import MediaInfo, MediaReader, VideoWriter, write_image


@dataclasses.dataclass
class LandmarkTrack:
    """Per-frame landmarks of the followed face; NaN rows where a frame has no face."""

    info: MediaInfo
    indices: np.ndarray  # (N,) frame indices
    points: np.ndarray  # (N, 68, 2) float32 frame pixels, NaN where no face
    boxes: np.ndarray  # (N, 4) float32 detector-style boxes, NaN where no face
    status: list[str]
    sources: list[str]
    reasons: list[str]
    backend: dict
    truncated: bool = False
    warning: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of frames with a face."""
        return np.array([s == OK for s in self.status], dtype=bool)

    def missing(self) -> list[dict]:
        """Frames with no face, each with its reason."""
        return [{"index": int(i), "reason": r}
                for i, s, r in zip(self.indices, self.status, self.reasons) if s == NO_FACE]

    def summary(self) -> dict:
        """A JSON-ready summary: counts, timing, the frames without a face and why."""
        n = len(self.indices)
        return {
            "input": self.info.path, "kind": self.info.kind, "frames": n,
            "frames_with_face": int(self.ok.sum()), "frames_without_face": int(n - self.ok.sum()),
            "missing": self.missing(), "truncated": self.truncated, "warning": self.warning,
            "fps_processed": round(n / self.seconds, 2) if self.seconds > 0 else None,
            "backend": self.backend, "media": self.info.to_dict(),
        }

    def to_json(self) -> dict:
        """Everything, per frame, as JSON-ready data."""
        frames = []
        for k, idx in enumerate(self.indices):
            row = {"index": int(idx), "status": self.status[k]}
            if self.info.fps:
                row["time"] = round(float(idx) / self.info.fps, 4)
            if self.status[k] == OK:
                row["source"] = self.sources[k]
                row["box"] = np.round(self.boxes[k], 2).tolist()
                row["points"] = np.round(self.points[k], 2).tolist()
            else:
                row["reason"] = self.reasons[k]
            frames.append(row)
        return {"sfumato_version": __version__, **self.summary(), "frames_detail": frames}

    def save(self, npz_path: str | Path | None = None, json_path: str | Path | None = None) -> None:
        """Write the npz (arrays) and/or JSON (per-frame records) atomically."""
        if npz_path is not None:
            import io

            buf = io.BytesIO()
            np.savez_compressed(buf, indices=self.indices, points=self.points, boxes=self.boxes,
                                status=np.array(self.status), reasons=np.array(self.reasons),
                                meta=np.array(json.dumps(self.summary())))
            write_bytes_atomic(npz_path, buf.getvalue())
        if json_path is not None:
            write_bytes_atomic(json_path, json.dumps(self.to_json(), indent=1).encode())


def load_landmarks_npz(path: str | Path) -> dict:
    """Read an npz written by ``LandmarkTrack.save`` (no pickles) into a dict of arrays + ``meta``."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def extract_landmarks(path: str | Path, backend: FaceBackend | None = None,
                      tracker: TrackerConfig = TrackerConfig(), max_frames: int | None = None,
                      overlay_path: str | Path | None = None, overlay_crf: int = 23,
                      progress: bool = False) -> LandmarkTrack:
    """Detect and follow one face through ``path`` (video or image); optionally write an overlay.

    The overlay is a png for an image and an H.264 mp4 for a video. Every frame is accounted for:
    frames without a face carry a reason instead of being dropped.
    """
    backend = backend or create_backend("dlib")
    start = time.perf_counter()
    with MediaReader(path) as reader:  # opened first: the overlay writer and the bar need fps and length
        info = reader.info
        total = min(info.frame_count, max_frames) if max_frames else info.frame_count
        writer = None
        if overlay_path is not None and info.kind == "video":
            writer = VideoWriter(overlay_path, fps=info.fps, crf=overlay_crf)
        bar = tqdm(total=total, unit="frame", disable=not progress, desc=Path(path).name, leave=False)

        def on_frame(frame: np.ndarray, faces: list) -> None:
            face = faces[0]
            if overlay_path is not None:  # streamed: a long video's frames are never all in memory
                label = f"{face.index}" if face.status == OK else f"{face.index}: {face.reason}"
                preview = overlay(frame, face.points, face.box, label)
                if writer is not None:
                    writer.write(preview)
                else:
                    write_image(overlay_path, preview)
            bar.update(1)

        try:
            track = track_video(reader, backend, tracker, limit=max_frames, on_frame=on_frame)
            bar.close()
        except BaseException:
            if writer is not None:
                writer.close(ok=False)
            raise
        if writer is not None:
            writer.close()
    return LandmarkTrack(
        info=track.info, indices=track.indices, points=track.points, boxes=track.boxes,
        status=track.status, sources=track.sources, reasons=track.reasons,
        backend={**backend.describe(), **dataclasses.asdict(tracker)},
        truncated=track.truncated, warning=track.warning, seconds=time.perf_counter() - start)
