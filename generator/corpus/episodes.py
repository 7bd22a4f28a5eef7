"""Meta-learning episodes from a prepared corpus (paper sec. 3.2): one video i, K + 1 of its frames.

The first K frames (with their landmark images) feed the embedder, the last is the target t.
Frames are read from the corpus crops and resized to the model's size; landmark images are
rasterised at that size from the stored points, so one corpus serves every preset. For a texture
model each episode also carries the target's texture: the K frame closest in pose to t, warped
piecewise-affinely to t's landmarks (``generator.faces.warp``), and the warp's validity.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from generator.corpus.reader import Corpus, VideoEntry
from generator.errors import BadInputError
from generator.faces.landmarks import landmark_image, to_unit_range


@dataclasses.dataclass
class Episode:
    """A batch of episodes: x, y are (B, K + 1, 3, S, S) in [-1, 1]; video is (B,) W columns."""

    x: torch.Tensor
    y: torch.Tensor
    video: torch.Tensor
    frames: list[list[int]] | None = None  # the frame numbers of each episode (the target last)
    texture: torch.Tensor | None = None  # (B, 4, S, S): the sources warped to y(t), and validity

    def to(self, device: torch.device | str) -> Episode:
        """The same episodes on ``device``."""
        tex = None if self.texture is None else self.texture.to(device)
        return Episode(self.x.to(device), self.y.to(device), self.video.to(device), self.frames, tex)

    @property
    def sources(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The K frames and landmark images for E."""
        return self.x[:, :-1], self.y[:, :-1]

    @property
    def target(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The target frame and its landmark image."""
        return self.x[:, -1], self.y[:, -1]


def load_corpus(corpus_dir: str | Path) -> list[VideoEntry]:
    """Every finished video of a corpus folder made by ``sfumato prepare`` (see ``Corpus.open``)."""
    return list(Corpus.open(corpus_dir).videos)


class EpisodeSampler:
    """Draws episodes: a random video, K + 1 random frames of it (with replacement if it is short).

    Randomness comes from a generator seeded by (seed, rank, step), so a resumed or distributed run
    draws exactly the episodes an uninterrupted one would, with no sampler state to save.
    """

    def __init__(self, videos: list[VideoEntry], image_size: int, k: int, cache_frames: int = 4096,
                 texture: bool = False, hard_shot: float = 0.0):
        self.videos, self.image_size, self.k, self.texture = videos, image_size, k, texture
        self.hard_shot = hard_shot  # share of textures from the farthest shot (TrainConfig.hard_shot)
        self._load = lru_cache(maxsize=cache_frames)(self._load_uncached)

    def __len__(self) -> int:
        return len(self.videos)

    def _load_uncached(self, video: int, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = self.videos[video]
        path = v.directory / v.frame_files[frame]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BadInputError(f"{path}: missing or unreadable corpus frame")
        s = self.image_size
        rgb = cv2.cvtColor(cv2.resize(bgr, (s, s), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        pts = (v.points[frame] * (s / v.crop_size)).astype(np.float32)
        return to_unit_range(rgb), to_unit_range(landmark_image(pts, s)), pts

    def episode(self, video: int, frames: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y (K + 1, 3, S, S) for the given video and frame numbers."""
        pairs = [self._load(video, f) for f in frames]
        return (torch.from_numpy(np.stack([p[0] for p in pairs])),
                torch.from_numpy(np.stack([p[1] for p in pairs])))

    def target_texture(self, video: int, frames: list[int], hard: bool = False) -> torch.Tensor:
        """(4, S, S): the K sources' texture warped to the target's landmarks, and its validity.

        ``hard``: only the source farthest in pose from the target is warped.
        """
        from generator.faces.warp import pose_distance, texture_tensor

        loaded = [self._load(video, f) for f in frames]
        images = np.stack([p[0] for p in loaded[:-1]])  # (K, 3, S, S) in [-1, 1]
        points = np.stack([p[2] for p in loaded[:-1]])
        if hard:
            far = int(np.argmax([pose_distance(p, loaded[-1][2]) for p in points]))
            images, points = images[far:far + 1], points[far:far + 1]
        return texture_tensor(images, points, loaded[-1][2])

    def draw(self, rng: np.random.Generator) -> tuple[int, list[int]]:
        """A random video and K + 1 random frame numbers of it (with replacement if it is short)."""
        i = int(rng.integers(len(self.videos)))
        n = len(self.videos[i].frame_files)
        return i, rng.choice(n, self.k + 1, replace=n < self.k + 1).tolist()

    def sample(self, batch_size: int, seed: int, step: int, rank: int = 0) -> Episode:
        """``batch_size`` random episodes, determined by (seed, rank, step)."""
        rng = np.random.default_rng([seed, rank, step])
        xs, ys, vids, drawn, tex = [], [], [], [], []
        for _ in range(batch_size):
            i, frames = self.draw(rng)
            x, y = self.episode(i, frames)
            xs.append(x)
            ys.append(y)
            vids.append(i)
            drawn.append(frames)
            if self.texture:
                # drawn only when asked for, so runs without hard shots keep their episode stream
                hard = self.hard_shot > 0 and rng.random() < self.hard_shot
                tex.append(self.target_texture(i, frames, hard))
        return Episode(torch.stack(xs), torch.stack(ys), torch.tensor(vids), drawn,
                       torch.stack(tex) if tex else None)


def corpus_fingerprint(videos: list[VideoEntry]) -> str:
    """A short description of the corpus for checkpoint metadata (which video is which W column)."""
    return json.dumps([[v.identity, v.video_id] for v in videos])
