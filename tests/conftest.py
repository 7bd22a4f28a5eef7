"""Shared fixtures: the built-in astronaut sample, small synthetic videos, ../shared/data clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHARED_VIDEO = SHARED / "videos" / "eamm_happy.mp4"  # 256 px, 5.6 s, one frontal face

# Where the astronaut's face is in scikit-image's 512x512 photo (checked by eye): x0, y0, x1, y1.
ASTRONAUT_FACE = (165.0, 70.0, 290.0, 195.0)


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test cleanly when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} not available (../shared/data is absent)")
    return path


@pytest.fixture(scope="session")
def dlib_backend():
    from generator.faces.backends import create_backend

    return create_backend("dlib")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from generator.io.samples import astronaut_image

    return astronaut_image()


@pytest.fixture(scope="session")
def astronaut_clip(tmp_path_factory) -> Path:
    from generator.io.samples import write_astronaut_clip

    return write_astronaut_clip(tmp_path_factory.mktemp("sample") / "astronaut.mp4", n_frames=40)


def numbered_frames(n: int, h: int = 64, w: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Frames that differ clearly from each other (moving block + noise), for codec round trips."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 120, w, dtype=np.float32)[None, :, None]
    frames = []
    for i in range(n):
        f = (ramp + rng.integers(0, 6, (h, w, 3))).astype(np.uint8)
        x = (i * 5) % (w - 16)
        f[8:24, x:x + 16] = (255, 64 + (i * 7) % 190, 0)
        frames.append(f)
    return frames


def encode(path: Path, frames, fps: float = 25.0, gop: int | None = None, fmt: str | None = None,
           codec: str = "libx264", rotation: int | None = None, options: dict | None = None) -> Path:
    """Encode frames with PyAV directly (lets tests choose GOP size, container and rotation)."""
    import av

    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        s = c.add_stream(codec, rate=int(fps))
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
            s.options = {"keyint_min": str(gop), "sc_threshold": "0"} if codec == "libx264" else {}
        if rotation is not None:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A two-video corpus made with sfumato's own prepare from the built-in astronaut sample."""
    import cv2

    from generator.corpus.prepare import PrepareConfig, prepare_corpus
    from generator.faces.crop import CropParams
    from generator.io.samples import astronaut_frames
    from generator.io.video import write_video

    src = tmp_path_factory.mktemp("videos")
    frames = astronaut_frames(24, 256)
    write_video(src / "astro_a.mp4", frames, fps=25, crf=12)
    write_video(src / "astro_b.mp4", [cv2.flip(f, 1) for f in frames], fps=25, crf=12)
    out = tmp_path_factory.mktemp("corpus")
    prepare_corpus([src], out, PrepareConfig(frames_per_video=8, crop=CropParams(size=128)))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_corpus, tmp_path_factory) -> Path:
    """A test_tiny meta checkpoint after one training step (random-ish weights of the right shape)."""
    import dataclasses

    from generator.model.config import get_preset
    from generator.training.meta_train import train

    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=1)
    return train(tiny_corpus, tmp_path_factory.mktemp("tiny_run"), "test_tiny", cfg).checkpoint
