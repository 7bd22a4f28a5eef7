"""Does a generated video still show the source person? dlib's face-descriptor distance of sampled
output frames to the source picture (``sfumato bench identity``).

dlib's own same-person threshold is a descriptor distance of 0.6. For scale (measured here): a real
clip of one person scores about 0.34 against its own first frame, two different women 0.94.
"""

from __future__ import annotations

import os

import numpy as np

SAME_PERSON = 0.6  # dlib's threshold for its 128-d face descriptor


def identity_distances(video: str | os.PathLike, source: str | os.PathLike, frames: int = 16,
                       backend=None) -> dict:
    """Descriptor distance to ``source``'s face of ``frames`` evenly spaced frames of ``video``."""
    from benchmarks.quality.reenactment import FaceMetrics
    from generator.errors import NoFaceError
    from generator.faces.backends import create_backend
    from generator.io.video import MediaReader

    backend = backend or create_backend("dlib")
    metrics = FaceMetrics()

    def descriptor(image: np.ndarray) -> np.ndarray | None:
        faces = backend.detect(image)  # largest first
        return metrics.descriptor(image, faces[0].box.reshape(2, 2)) if faces else None

    with MediaReader(source) as reader:
        ref = descriptor(next(iter(reader.sample(1)[1])))
    if ref is None:
        raise NoFaceError(f"{source}: no face found")
    with MediaReader(video) as reader:
        indices, images = reader.sample(frames)
    dist, missing = [], []
    for i, image in zip(indices, images):
        d = descriptor(image)
        if d is None:
            missing.append(int(i))
        else:
            dist.append(float(np.linalg.norm(d - ref)))
    arr = np.asarray(dist)
    return {"video": str(video), "source": str(source), "frames": len(indices), "faces": len(dist),
            "no_face": missing, "distances": [round(d, 4) for d in dist],
            "mean": float(arr.mean()) if len(arr) else None,
            "within_0.6": float((arr < SAME_PERSON).mean()) if len(arr) else 0.0}
