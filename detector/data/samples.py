"""Face samples for detection: N evenly spaced frames of a video (np.linspace, as DeepfakeBench), the
followed face in each found with the shared face pipeline, cut twice from the same landmarks:

- the detector crop (DeepfakeBench's: aligned, 1.3x margin, 256 px), what the backbone sees;
- the generator's training crop at D's size with its landmarks in crop pixels, what the realism
  score r needs.

Frames without a face are kept in the result as such (``found`` False, with the reason), never
dropped silently.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from generator.errors import BadInputError
from generator.faces.crop import DETECTOR_CROP, TRAINING_CROP, CropParams, crop_face
from generator.io.files import write_bytes_atomic

CACHE_DIR = ".cache/detector"  # face samples cached inside a dataset folder, keyed by sample_key


@dataclasses.dataclass
class FaceSamples:
    """The sampled frames of one file and their faces (arrays are per sampled frame)."""

    indices: np.ndarray  # (N,) frame index in the file
    found: np.ndarray  # (N,) bool: a face was found
    crops: np.ndarray  # (N, S, S, 3) uint8 detector crops (black where no face)
    points: np.ndarray  # (N, 68, 2) landmarks in frame pixels (NaN where no face)
    realism_crops: np.ndarray | None = None  # (N, R, R, 3) training crops at D's size
    realism_points: np.ndarray | None = None  # (N, 68, 2) landmarks in those crops
    reasons: list[str] = dataclasses.field(default_factory=list)  # per frame, "" where found
    frame_count: int = 0
    faces_seen: np.ndarray | None = None  # (N,) faces the detector found in each sampled frame

    def __len__(self) -> int:
        return len(self.indices)

    def to_npz(self) -> bytes:
        """Compressed npz bytes (no pickled objects)."""
        buf = io.BytesIO()
        arrays = {"indices": self.indices, "found": self.found, "crops": self.crops, "points": self.points,
                  "reasons": np.array(self.reasons, dtype=str), "frame_count": np.int64(self.frame_count)}
        if self.realism_crops is not None:
            arrays.update(realism_crops=self.realism_crops, realism_points=self.realism_points)
        if self.faces_seen is not None:
            arrays["faces_seen"] = self.faces_seen
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> FaceSamples:
        """Read ``to_npz`` output (allow_pickle off)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(z["indices"], z["found"], z["crops"], z["points"],
                       z["realism_crops"] if "realism_crops" in z.files else None,
                       z["realism_points"] if "realism_points" in z.files else None,
                       [str(r) for r in z["reasons"]], int(z["frame_count"]),
                       z["faces_seen"] if "faces_seen" in z.files else None)


def sample_faces(path: str | os.PathLike, frames: int = 32, backend=None,
                 crop: CropParams = DETECTOR_CROP, realism_size: int | None = None,
                 face_index: int = 0) -> FaceSamples:
    """``frames`` evenly spaced frames of a video (or the one frame of an image) and their faces
    (``face_index``: 0 follows the largest face, 1 the second largest, ...)."""
    return sample_face_tracks(path, frames, backend, crop, realism_size, faces=1, face_index=face_index)[0]


def sample_face_tracks(path: str | os.PathLike, frames: int = 32, backend=None,
                       crop: CropParams = DETECTOR_CROP, realism_size: int | None = None, faces: int = 1,
                       face_index: int = 0) -> list[FaceSamples]:
    """``sample_faces`` for ``faces`` faces at once (largest first from ``face_index``), in one decode."""
    from generator.faces.backends import create_backend
    from generator.faces.tracking import TrackerConfig, track_faces

    backend = backend or create_backend("dlib")
    # Sampled frames are far apart: detect on every one.
    tracks = track_faces(path, backend, TrackerConfig(detect_every=1, face_index=face_index), faces=faces,
                         sample=frames, keep_frames=True)
    if not tracks[0].decoded.any():
        raise BadInputError(f"{path}: no decodable frames")
    return [_samples(t, crop, realism_size) for t in tracks]


def _samples(track, crop: CropParams, realism_size: int | None) -> FaceSamples:
    keep = np.flatnonzero(track.decoded)  # frames that could not be read are not samples
    rparams = dataclasses.replace(TRAINING_CROP, size=realism_size) if realism_size else None
    s, n = crop.size, len(keep)
    out = FaceSamples(track.indices[keep], np.zeros(n, bool), np.zeros((n, s, s, 3), np.uint8),
                      np.full((n, 68, 2), np.nan, np.float32), reasons=[""] * n,
                      frame_count=int(track.info.frame_count), faces_seen=track.faces_seen[keep].copy())
    if rparams is not None:
        out.realism_crops = np.zeros((n, realism_size, realism_size, 3), np.uint8)
        out.realism_points = np.full((n, 68, 2), np.nan, np.float32)
    found = track.found
    for k, j in enumerate(keep):
        if not found[j]:
            out.reasons[k] = track.reasons[j]
            continue
        image, points = track.frames[j], track.points[j]
        out.found[k] = True
        out.points[k] = points
        out.crops[k] = crop_face(image, points, crop)[0]
        if rparams is not None:
            rc, rp, _ = crop_face(image, points, rparams)
            out.realism_crops[k], out.realism_points[k] = rc, rp
    return out


def sample_key(record, frames: int, size: int, realism_size: int | None = None) -> str:
    """Cache key of a clip file's samples: its id, file hash, frame count and crop sizes."""
    return f"{record.id}-{(record.sha256 or 'nohash')[:16]}-f{frames}-s{size}-r{realism_size or 0}"


def cached_faces(path: str | os.PathLike, cache: str | os.PathLike, key: str, frames: int = 32,
                 backend=None, crop: CropParams = DETECTOR_CROP, realism_size: int | None = None
                 ) -> FaceSamples:
    """``sample_faces`` through a cache file ``cache/key.npz`` (written atomically; a damaged or
    differently made one is made again)."""
    target = Path(cache) / f"{key}.npz"
    if target.is_file():
        try:
            got = FaceSamples.from_npz(target)
            shape_ok = got.crops.shape[1] == crop.size and len(got) <= frames
            r_ok = realism_size is None or (got.realism_crops is not None
                                            and got.realism_crops.shape[1] == realism_size)
            if shape_ok and r_ok:
                return got
        except (OSError, ValueError, KeyError):
            pass  # damaged: make it again
    got = sample_faces(path, frames, backend, crop, realism_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, got.to_npz())
    return got
