"""Face crops for training and evaluation: a split's crops (through the dataset's face cache) and
each crop as the training loop sees it (self-blended, degraded, augmented; detection.md)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from detector.data.samples import CACHE_DIR
from detector.data.schema import ClipRecord

if TYPE_CHECKING:
    from detector.train import DetectTrainConfig


@dataclasses.dataclass
class FrameSet:
    """Face crops of one split with their labels and the unique id of the video each came from."""

    crops: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) 1 = fake
    video_ids: list[str]
    missing: list[dict]  # videos with frames (or all frames) without a face, and why
    points: np.ndarray | None = None  # (N, 68, 2) landmarks in crop pixels (for self-blending)


def load_frames(dataset: str | os.PathLike, rows: list[ClipRecord], frames: int, size: int,
                progress: bool = False, desc: str = "faces") -> FrameSet:
    """Face crops of ``rows`` (through the dataset's cache); frames without a face are reported."""
    import dataclasses as dc

    from tqdm import tqdm

    from detector.data.samples import cached_faces, sample_key
    from generator.faces.backends import create_backend
    from generator.faces.crop import DETECTOR_CROP, crop_transform

    crop = dc.replace(DETECTOR_CROP, size=size)
    cache = Path(dataset) / CACHE_DIR
    backend = None
    crops, labels, ids, missing, points = [], [], [], [], []
    for row in tqdm(rows, desc=desc, unit="video", disable=not progress):
        key = sample_key(row, frames, size)
        if backend is None and not (cache / f"{key}.npz").is_file():
            backend = create_backend("dlib")
        try:
            got = cached_faces(row.resolve(dataset), cache, key, frames, backend, crop)
        except Exception as exc:  # an unreadable video is reported with the others, not fatal
            missing.append({"id": row.id, "frames": "all", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        if not got.found.all():
            lost = [int(i) for i in got.indices[~got.found]]
            missing.append({"id": row.id, "frames": lost if got.found.any() else "all",
                            "reason": sorted({r for r in got.reasons if r})})
        crops.append(got.crops[got.found])
        # the crop's own landmarks: the crop's transform depends on the frame landmarks alone
        points += [crop_transform(p, crop).apply_points(p) for p in got.points[got.found]]
        labels += [int(row.label == "fake")] * int(got.found.sum())
        ids += [row.id] * int(got.found.sum())
    arr = np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    pts = np.stack(points).astype(np.float32) if points else np.zeros((0, 68, 2), np.float32)
    return FrameSet(arr, np.asarray(labels, np.int64), ids, missing, pts)


def training_sample(frames: FrameSet, i: int, rng: np.random.Generator, config: DetectTrainConfig
                    ) -> tuple[np.ndarray, int]:
    """Crop ``i`` as the training loop sees it, and its label: self-blended (a real crop, with
    probability ``config.sbi``), then degraded (whatever the label), then the usual augmentation."""
    from detector.data.degrade import apply_degradation, sample_degradation

    crop, label = frames.crops[i], int(frames.labels[i])
    if config.sbi and label == 0 and frames.points is not None and rng.random() < config.sbi:
        from detector.data.sbi import self_blend

        crop, label = self_blend(crop, frames.points[i], rng)[0], 1
    if config.degrade:
        crop = apply_degradation(crop, sample_degradation(rng))  # drawn before the label is looked at
    return augment(crop, rng, config), label


def augment(crop: np.ndarray, rng: np.random.Generator, config: DetectTrainConfig) -> np.ndarray:
    """Flip, Gaussian blur (kernel 3-7) and JPEG (quality 40-100), each with its probability."""
    if rng.random() < config.flip:
        crop = crop[:, ::-1]
    if rng.random() < config.blur:
        k = int(rng.choice([3, 5, 7]))
        crop = cv2.GaussianBlur(crop, (k, k), 0)
    if rng.random() < config.jpeg:
        from detector.data.degrade import jpeg_roundtrip

        # as RGB, the way encoders see frames (cv2.imencode alone would treat it as BGR)
        crop = jpeg_roundtrip(np.ascontiguousarray(crop), int(rng.integers(40, 101)))
    return np.ascontiguousarray(crop)
