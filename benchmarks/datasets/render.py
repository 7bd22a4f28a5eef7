"""The frames of one planned clip: tracked segments, persons from corpus shots, G's rendering pasted
into the target's frames, and r (the discriminator's realism score) per frame.

``ClipMaker`` caches tracks and persons across the clips of one target identity; ``make_clip``
(``benchmarks.datasets.clips``) encodes, signs and records what it renders.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.datasets.plan import BuildConfig, ClipPlan, Segment, derived_seed
from generator.errors import BadInputError, SfumatoError

if TYPE_CHECKING:  # the corpus package imports torch: keep `dataset --help` light
    from generator.corpus.reader import Corpus

class ClipMaker:
    """Tracks, persons and the discriminator, cached across the clips of one target identity."""

    def __init__(self, corpus: Corpus, checkpoint: Path, checkpoint_sha: str,
                 config: BuildConfig, signing=None, device: str = "cpu"):
        from generator.faces.backends import create_backend
        from generator.model.talking_head import load_meta_model

        self.corpus, self.config = corpus, config
        self.videos = {v.dir: v for v in corpus}
        self.checkpoint_sha, self.signing = checkpoint_sha, signing
        self.model, self.meta = load_meta_model(checkpoint, device)
        self.size = self.model.cfg.image_size
        self.scorer = FileRealismScorer(self.model)
        self.backend = create_backend("dlib")
        self._tracks: dict[tuple, tuple] = {}
        self._persons: dict[tuple, object] = {}
        self.seconds: dict[str, float] = defaultdict(float)

    # segments ---------------------------------------------------------------------------------
    def segment(self, seg: Segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames (N, H, W, 3), smoothed landmarks (N, 68, 2), face found (N,)) of a segment."""
        key = (seg.video, seg.start)
        if key not in self._tracks:
            if len(self._tracks) > 8:
                self._tracks.clear()
            t = time.perf_counter()
            self._tracks[key] = self._read_segment(seg)
            self.seconds["track"] += time.perf_counter() - t
        return self._tracks[key]

    def _read_segment(self, seg: Segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        from generator.faces.motion import fill_missing, smooth_track
        from generator.faces.tracking import TrackerConfig, track_video

        n = self.config.clip_frames
        video = self.videos[seg.video]
        face_track = track_video(video.source_path, self.backend, TrackerConfig(), start=seg.start,
                                 end=seg.start + n, keep_frames=True)
        frames, points = face_track.frames, list(face_track.points)
        if len(frames) < n:
            raise SkipClip(f"{video.source_path}: only {len(frames)} of frames {seg.start}.."
                           f"{seg.start + n - 1} decode")
        raw = np.stack(points)
        found = np.isfinite(raw).all(axis=(1, 2))
        if found.mean() < self.config.min_face_share:
            raise SkipClip(f"{video.source_path} frames {seg.start}..{seg.start + n - 1}: a face in "
                           f"only {int(found.sum())} of {n} frames (min share "
                           f"{self.config.min_face_share:g})")
        track = smooth_track(fill_missing(raw)[0])
        h, w = frames[0].shape[:2]
        k = min(1.0, self.config.max_side / max(h, w))
        nh, nw = int(h * k) // 2 * 2, int(w * k) // 2 * 2  # yuv420p needs even sides
        if k < 1.0:
            frames = [cv2.resize(f, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)[:nh, :nw]
                      for f in frames]
            track = track * k
        else:
            frames = [f[:nh, :nw] for f in frames]
        return np.stack(frames), track.astype(np.float32), found

    # persons ----------------------------------------------------------------------------------
    def person(self, identity: str, shots: int, mode: str, exclude: Segment, shot_seed: int | None = None):
        """The target identity as a Person from T corpus shots (outside the clip's frames first);
        ``shot_seed`` draws another set of shots (a hard-example candidate) instead of the even spread."""
        key = (identity, shots, mode, exclude, shot_seed)
        if key not in self._persons:
            if len(self._persons) > 16:
                self._persons.clear()
            t = time.perf_counter()
            self._persons[key] = self._make_person(identity, shots, mode, exclude, shot_seed)
            self.seconds["person"] += time.perf_counter() - t
        return self._persons[key]

    def shots(self, identity: str, shots: int, exclude: Segment, shot_seed: int | None = None):
        """T corpus crops of ``identity`` (model size), avoiding ``exclude``'s frames: evenly spread,
        or drawn at random with ``shot_seed``."""
        import cv2

        from generator.faces.shots import Shots
        from generator.io.video import read_image

        outside, inside = [], []
        for v in self.corpus.of(identity):
            for k, i in enumerate(v.frame_indices):
                in_clip = v.dir == exclude.video and 0 <= i - exclude.start < self.config.clip_frames
                (inside if in_clip else outside).append((v, int(i), v.points[k]))
        pool = outside if len(outside) >= shots else outside + inside
        if shot_seed is None:
            chosen = np.linspace(0, len(pool) - 1, min(shots, len(pool))).round().astype(int)
        else:
            chosen = np.sort(np.random.default_rng(shot_seed).choice(len(pool), min(shots, len(pool)),
                                                                      replace=False))
        pick = [pool[i] for i in chosen]
        frames, points, origins = [], [], []
        for v, i, p in pick:
            img = read_image(v.frame_path(i))
            k = self.size / img.shape[0]
            frames.append(cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA))
            points.append(p * k)
            origins.append({"video": v.dir, "frame": i})
        return Shots(np.stack(frames), np.stack(points).astype(np.float32), origins, {})

    def _make_person(self, identity: str, shots: int, mode: str, exclude: Segment,
                     shot_seed: int | None = None):
        import torch

        from generator.training.finetune import FinetuneConfig, make_person

        shot_set = self.shots(identity, shots, exclude, shot_seed)
        if mode == "FF":
            return make_person(self.model, shot_set)
        seed = derived_seed(self.config.seed, f"person:{identity}:{shots}:{exclude.video}:{exclude.start}"
                            + (f":{shot_seed}" if shot_seed is not None else ""))
        torch.manual_seed(seed)
        cfg = FinetuneConfig(steps=self.config.finetune_steps, seed=seed)
        return make_person(self.model, shot_set, cfg)

    # rendering --------------------------------------------------------------------------------
    def render(self, clip: ClipPlan, shot_seed: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(frames, crop matrices (N, 2, 3), crop landmarks (N, 68, 2), face found (N,)) of a clip."""
        frames, matrices, local, found, _ = self.render_full(clip, shot_seed)
        return frames, matrices, local, found

    def render_full(self, clip: ClipPlan, shot_seed: int | None = None):
        """``render`` plus the landmarks the face shows in frame pixels (N, 68, 2)."""
        import dataclasses as dc

        from generator.faces.crop import TRAINING_CROP, crop_transform, face_mask
        from generator.faces.motion import transfer_expression

        frames, track, found = self.segment(clip.target)
        params = dc.replace(TRAINING_CROP, size=self.size)
        transforms = [crop_transform(p, params) for p in track]
        matrices = np.stack([t.matrix for t in transforms])
        target_local = np.stack([t.apply_points(p) for t, p in zip(transforms, track)]).astype(np.float32)
        if clip.label == "real":
            return frames, matrices, target_local, found, track
        if clip.method == "self":
            wanted = track
        else:
            _, drv_track, drv_found = self.segment(clip.driver)
            wanted = transfer_expression(track, drv_track)
            found = found & drv_found
        local = np.stack([t.apply_points(p) for t, p in zip(transforms, wanted)]).astype(np.float32)
        person = self.person(clip.source_identity, clip.shots, clip.mode, clip.target, shot_seed)
        t0 = time.perf_counter()
        crops = person.render(local)
        self.seconds["render"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        out = np.stack([t.paste(c, f, mask=face_mask(np.stack([a, b]), self.size))
                        for t, c, f, a, b in zip(transforms, crops, frames, local, target_local)])
        self.seconds["paste"] += time.perf_counter() - t0
        return out, matrices, local, found, wanted

    def realism(self, path: Path, matrices: np.ndarray, points: np.ndarray, found: np.ndarray) -> np.ndarray:
        """r per frame of an encoded file (see ``FileRealismScorer``)."""
        t0 = time.perf_counter()
        r = self.scorer(path, matrices, points, found)
        self.seconds["realism"] += time.perf_counter() - t0
        return r


class FileRealismScorer:
    """r per frame of a clip file from the generator's discriminator, identity-agnostic (w_0, eq. 3),
    on the face crops and landmarks the clip was made with (its ``track.npz``)."""

    def __init__(self, model):
        from generator.inference.person import realism_discriminator

        self.size = model.cfg.image_size
        self.D = realism_discriminator(model)

    def __call__(self, path: Path, matrices: np.ndarray, points: np.ndarray, found: np.ndarray,
                 frame_size: tuple[int, int] | None = None) -> np.ndarray:
        """r per frame (NaN where no face was found); ``frame_size`` (h, w) the track was made at,
        when the file was resized since."""
        from generator.faces.crop import CropTransform
        from generator.io.video import MediaReader

        with MediaReader(path) as reader:
            scale = np.eye(3)
            if frame_size is not None and (reader.info.height, reader.info.width) != tuple(frame_size):
                scale = np.diag([frame_size[1] / reader.info.width, frame_size[0] / reader.info.height, 1.0])
            crops = [CropTransform(np.vstack([m, [0, 0, 1]])[:2] @ scale, self.size).apply_image(f)
                     for m, (_, f) in zip(matrices, reader.frames())]
        if not crops:
            raise BadInputError(f"{path}: no frames to score")
        return self._score(np.stack(crops), points, found)

    def frames(self, frames: np.ndarray, matrices: np.ndarray, points: np.ndarray,
               found: np.ndarray) -> np.ndarray:
        """r per frame of frames in memory (a candidate before it is encoded)."""
        from generator.faces.crop import CropTransform

        crops = np.stack([CropTransform(m, self.size).apply_image(f) for m, f in zip(matrices, frames)])
        return self._score(crops, points, found)

    def _score(self, crops: np.ndarray, points: np.ndarray, found: np.ndarray) -> np.ndarray:
        from generator.inference.person import realism_score

        r = realism_score(self.D, crops, points[:len(crops)]).astype(np.float64)
        r[~np.asarray(found[:len(r)], bool)] = np.nan
        return r


class SkipClip(SfumatoError):
    """A clip that cannot be made from this corpus (no face, too short); recorded, not fatal."""
