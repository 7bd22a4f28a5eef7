"""Source shots for few-shot use: pictures or video frames of a person, as the model's input (face
crops at the model's size with landmarks in crop pixels), cut with the same crop as the corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from generator.crop import TRAINING_CROP, crop_face
from generator.errors import BadInputError, NoFaceError
from generator.faces import FaceBackend, create_backend
from generator.files import sha256_file
from generator.landmarks import landmark_image, to_unit_range
from generator.tracking import OK, FaceTracker, TrackerConfig
from generator.video_io import MediaReader


@dataclasses.dataclass
class Shots:
    """T face crops (T, S, S, 3) uint8 with landmarks (T, 68, 2) in crop pixels, and where from."""

    frames: np.ndarray
    points: np.ndarray
    origins: list[dict]  # per shot: source path, frame index, crop matrix (frame -> crop pixels)
    source_sha256: dict[str, str]

    def __len__(self) -> int:
        return len(self.frames)

    def tensors(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """x, y (T, 3, S, S) in [-1, 1]: frames and their landmark images."""
        size = self.frames.shape[1]
        x = np.stack([to_unit_range(f) for f in self.frames])
        y = np.stack([to_unit_range(landmark_image(p, size)) for p in self.points])
        return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def load_shots(sources: list[str | Path], image_size: int, shots: int | None = None,
               backend: FaceBackend | None = None, per_video: int | None = None) -> Shots:
    """Find the face in each source (images: 1 shot; videos: evenly spaced frames) and crop it.

    ``shots`` caps the total T (spread evenly over the candidates); None keeps every image and
    ``per_video`` frames per video (default: ``shots``, else 32). A source without any face is an
    error naming it.
    """
    if not sources:
        raise BadInputError("no source pictures or videos given")
    backend = backend or create_backend("dlib")
    params = dataclasses.replace(TRAINING_CROP, size=image_size)
    per_video = per_video or shots or 32
    frames, points, origins, hashes = [], [], [], {}
    for src in sources:
        found = 0
        with MediaReader(src) as reader:
            indices, images = reader.sample(per_video)
            tracker = FaceTracker(backend, TrackerConfig(detect_every=1))
            for idx, image in zip(indices, images):
                face = tracker.step(image, idx)
                if face.status != OK:
                    continue
                crop, local, transform = crop_face(image, face.points, params)
                frames.append(crop)
                points.append(local)
                origins.append({"source": str(src), "frame": int(idx),
                                "crop_matrix": transform.matrix.round(6).tolist()})
                found += 1
        if not found:
            raise NoFaceError(f"{src}: no face found (a frontal, well-lit face works best)")
        hashes[str(src)] = sha256_file(src)
    if shots is not None and len(frames) > shots:
        keep = np.linspace(0, len(frames) - 1, shots).round().astype(int)
        frames, points = [frames[i] for i in keep], [points[i] for i in keep]
        origins = [origins[i] for i in keep]
    return Shots(np.stack(frames), np.stack(points).astype(np.float32), origins, hashes)
