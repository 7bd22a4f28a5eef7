"""Built-in sample media, made from a picture a dependency ships, so every command has a default input
without downloading anything: scikit-image's astronaut photo (Eileen Collins, NASA, public domain)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from generator.io.video import write_image, write_video

SAMPLE_FPS = 25.0


def astronaut_image() -> np.ndarray:
    """scikit-image's astronaut photo, RGB uint8 512x512 (one frontal face)."""
    import importlib.util

    # Read straight from scikit-image's data folder: importing skimage costs ~0.4 s of a cold start.
    spec = importlib.util.find_spec("skimage")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        image = cv2.imread(str(Path(folder) / "data" / "astronaut.png"), cv2.IMREAD_COLOR)
        if image is not None and image.shape == (512, 512, 3):
            return np.ascontiguousarray(image[:, :, ::-1])
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def astronaut_frames(n_frames: int = 50, size: int = 384) -> list[np.ndarray]:
    """A short 'hand-held camera' clip of the astronaut: the view drifts, zooms and tilts smoothly."""
    image = astronaut_image()
    centre = np.array([230.0, 200.0])  # below the face (~227, 125): face, hair and shoulders in view
    frames = []
    for t in np.linspace(0.0, 1.0, n_frames):
        angle = 6.0 * np.sin(2 * np.pi * t)  # degrees
        zoom = size / 360.0 * (1.0 + 0.08 * np.sin(4 * np.pi * t))
        shift = np.array([24.0 * np.sin(2 * np.pi * t), 12.0 * np.cos(2 * np.pi * t)])
        m = cv2.getRotationMatrix2D(tuple(centre + shift), angle, zoom)
        m[:, 2] += size / 2 - (centre + shift)
        frames.append(cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
    return frames


def write_astronaut_clip(path: str | Path, n_frames: int = 50, size: int = 384, crf: int = 18
                         ) -> Path:
    """Write the astronaut sample clip as an H.264 mp4 and return its path."""
    write_video(path, astronaut_frames(n_frames, size), fps=SAMPLE_FPS, crf=crf)
    return Path(path)


def write_astronaut_image(path: str | Path) -> Path:
    """Write the astronaut photo as an image file and return its path."""
    write_image(path, astronaut_image())
    return Path(path)
