"""Fixtures shared by the benchmark-dataset tests: a six-person corpus, a tiny checkpoint, signing keys,
and a tiny detector file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from generator.provenance.manifest import SigningOptions


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Six 'people' (the astronaut, tinted and mirrored differently), 18 frames each."""
    from generator.corpus.prepare import PrepareConfig, prepare_corpus
    from generator.faces.crop import CropParams
    from generator.io.samples import astronaut_frames
    from generator.io.video import write_video

    src = tmp_path_factory.mktemp("people")
    frames = astronaut_frames(18, 192)
    tints = [(1.0, 1.0, 1.0), (1.1, 0.9, 0.9), (0.9, 1.0, 1.1), (1.0, 1.1, 0.9), (0.85, 0.85, 1.0),
             (1.1, 1.05, 0.8)]
    for k, tint in enumerate(tints):
        clip = [np.clip(f * np.array(tint), 0, 255).astype(np.uint8) for f in frames]
        if k % 2:
            clip = [cv2.flip(f, 1) for f in clip]
        write_video(src / f"person{k}.mp4", clip, fps=25, crf=12)
    out = tmp_path_factory.mktemp("corpus")
    prepare_corpus([src], out, PrepareConfig(frames_per_video=6, crop=CropParams(size=64)))
    return out


@pytest.fixture(scope="session")
def checkpoint(tiny_checkpoint) -> Path:
    """The test_tiny meta checkpoint (one training step)."""
    return tiny_checkpoint


@pytest.fixture(scope="session")
def signing(tmp_path_factory) -> SigningOptions:
    return SigningOptions(keys_dir=str(tmp_path_factory.mktemp("keys")))


def write_tiny_detector(path: Path, input_size: int = 64, seed: int = 0, backbone: str = "test_efficientnet",
                        sharpness: float = 1.0) -> Path:
    """A randomly initialised detector file in the trained-detector format (timm's tiny test net);
    ``sharpness`` scales its classifier, so its scores spread out instead of all sitting near 0.5."""
    import torch

    from detector.model import Detector, save_detector

    torch.manual_seed(seed)
    model = Detector(backbone, input_size=input_size)
    with torch.no_grad():
        model.net.get_classifier().weight.mul_(sharpness)
    save_detector(path, model, {"backbone": backbone, "input_size": input_size, "init": {"init": "scratch"}})
    return path


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory) -> Path:
    return write_tiny_detector(tmp_path_factory.mktemp("det") / "detector.safetensors")


@pytest.fixture(scope="session")
def sharp_detector(tmp_path_factory) -> Path:
    """A random detector whose scores depend strongly on its input (a frozen judge G can move)."""
    return write_tiny_detector(tmp_path_factory.mktemp("det") / "sharp.safetensors", sharpness=30.0)
