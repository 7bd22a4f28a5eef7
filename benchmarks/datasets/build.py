"""``sfumato dataset build``: an adversarial real/fake benchmark dataset from a prepared corpus.

The plan (a pure function of the corpus, the checkpoint and the settings):

- identities split train / val / test (seeded, 72/14/14 by default, as FaceForensics++), never
  one identity in two splits;
- per identity, ``clips_per_identity`` segments of ``clip_frames`` frames of its videos: each is a
  **real** clip, and the target of ``fakes_per_real`` fakes drawn round-robin from the grid
  method (self / cross reenactment) x shots T x mode (FF / FT). A fake keeps the target's frames,
  background and head pose and replaces its face (a convex-hull mask, feathered) by G's rendering
  of the target identity making the driver's expressions: the target's own (self) or those of
  another identity of the same split (cross). Real and fake thus match in people, length and
  quality;
- every clip at c0 / c23 / c40 (H.264 CRF 0 / 23 / 40); every fake C2PA-signed, with a
  manifest-free copy beside it (``path``: what detectors read; the signed one is ``signed_path``);
- r, the discriminator's identity-agnostic realism score, per frame of every file.

Layout of ``OUT``::

    build.json                  settings, corpus and checkpoint hashes, the split, the whole plan
    videos/<clip_id>/c0.mp4 ... manifest-free files; fakes also c0.signed.mp4 ...; track.npz (crop
                                matrices + landmarks per frame, to score derived files again)
    records/<clip_id>.json      a finished (or skipped, with the reason) clip: its metadata rows
    metadata.jsonl / .csv, splits.json, realism_hist.png, README.md (the dataset card)

Each clip is made in ``OUT/.tmp`` and renamed into place, then its record is written: a killed build
rerun with the same arguments keeps every finished clip (its rows byte-identical) and makes the
rest. ``shard=(i, n)`` makes only the clips of every n-th target identity (torchrun: from RANK /
WORLD_SIZE); ``merge_shards`` (or rank 0 under torchrun) writes the metadata and card once all are in.
Everything is derived from the seed and the clip id, so shards, reruns and one-process runs agree.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detector.data.schema import COMPRESSIONS, ClipRecord, realism_list, realism_summary, write_metadata
from generator.errors import BadInputError, ConfigMismatchError, SfumatoError
from generator.io.files import link_or_copy, sha256_file, write_bytes_atomic

if TYPE_CHECKING:  # the corpus package imports torch: keep `dataset --help` light
    from generator.corpus.reader import Corpus, VideoEntry

BUILD_FILE = "build.json"
FORMAT = 1
METHODS = ("self", "cross")
MODES = ("FF", "FT")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What to build; every field shapes the dataset (and is part of its digest)."""

    splits: tuple[float, float, float] = (0.72, 0.14, 0.14)  # train / val / test identity shares
    methods: tuple[str, ...] = METHODS
    shots: tuple[int, ...] = (1, 8, 32)  # T
    modes: tuple[str, ...] = MODES
    fakes_per_real: int = 4  # fakes per real clip, round-robin over the grid; 0 = the whole grid
    clips_per_identity: int = 1
    clip_frames: int = 64
    compressions: tuple[str, ...] = ("c0", "c23", "c40")
    finetune_steps: int = 40  # FT mode
    max_side: int = 512  # frames larger than this are scaled down
    min_face_share: float = 0.9  # a segment needs a face in this share of its frames
    x264_preset: str = "medium"
    seed: int = 0
    # hard examples (issue 9): render ``candidates`` per planned fake and keep one that passes
    candidates: int = 1
    min_realism: float | None = None  # keep a fake only if its mean r is at least this
    realism_quantile: float | None = None  # ... at least this quantile of the real clips' mean r
    hard_for_sha256: str | None = None  # among those, keep the one this detector scores most real
    split_seed: int | None = None  # the identity split's seed when it differs from ``seed`` (rounds)

    def __post_init__(self):
        if len(self.splits) != 3 or min(self.splits) < 0 or not 0.999 < sum(self.splits) < 1.001:
            raise BadInputError(f"splits must be three shares summing to 1, got {self.splits}")
        if not self.methods or set(self.methods) - set(METHODS):
            raise BadInputError(f"methods must be among {', '.join(METHODS)}, got {self.methods}")
        if not self.modes or set(self.modes) - set(MODES):
            raise BadInputError(f"modes must be among {', '.join(MODES)}, got {self.modes}")
        if not self.shots or min(self.shots) < 1:
            raise BadInputError(f"shots T must be positive, got {self.shots}")
        if not self.compressions or set(self.compressions) - set(COMPRESSIONS):
            raise BadInputError(f"compressions must be among {', '.join(COMPRESSIONS)}, got "
                                f"{self.compressions}")
        if self.clip_frames < 2 or self.clips_per_identity < 1 or self.fakes_per_real < 0:
            raise BadInputError("clip_frames >= 2, clips_per_identity >= 1 and fakes_per_real >= 0")
        if self.candidates < 1:
            raise BadInputError(f"candidates must be >= 1, got {self.candidates}")
        if self.min_realism is not None and self.realism_quantile is not None:
            raise BadInputError("give a realism threshold (--min-realism) or a quantile "
                                "(--realism-quantile), not both")
        if self.realism_quantile is not None and not 0.0 <= self.realism_quantile <= 1.0:
            raise BadInputError(f"the realism quantile must be in 0..1, got {self.realism_quantile}")

    @property
    def filtering(self) -> bool:
        """Whether fakes are chosen among candidates or by a threshold (hard examples)."""
        return (self.candidates > 1 or self.min_realism is not None or self.realism_quantile is not None
                or self.hard_for_sha256 is not None)

    def to_doc(self) -> dict:
        """The settings as they enter the digest: fields added later are left out at their defaults,
        so datasets built before them keep their digest (and can still be resumed)."""
        d = dataclasses.asdict(self)
        for name in _LATER_FIELDS:
            if d[name] == _DEFAULTS[name]:
                del d[name]
        return d


_LATER_FIELDS = ("candidates", "min_realism", "realism_quantile", "hard_for_sha256", "split_seed")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(BuildConfig)}


@dataclasses.dataclass(frozen=True)
class Segment:
    """Frames [start, start + n) of one corpus video."""

    video: str  # corpus-relative folder: identity/video_id
    start: int


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """One clip to make."""

    clip_id: str
    label: str
    split: str
    method: str
    source_identity: str
    driver_identity: str
    target: Segment  # the real frames (and the background and pose of a fake)
    driver: Segment  # whose expressions (= target for real and self)
    shots: int | None
    mode: str | None
    seed: int

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClipPlan:
        """Inverse of ``to_dict``."""
        return cls(**{**d, "target": Segment(**d["target"]), "driver": Segment(**d["driver"])})


def derived_seed(seed: int, key: str) -> int:
    """A seed for one named thing, independent of order, shard and process."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "little") >> 1


# -- the plan ------------------------------------------------------------------------------------
def split_identities(identities: list[str], shares: tuple[float, float, float], seed: int,
                     min_per_split: int = 1) -> dict[str, str]:
    """identity -> train | val | test, seeded; every split with a non-zero share gets at least
    ``min_per_split`` identities, else a clear error."""
    ids = sorted(identities)
    n = len(ids)
    want = [min_per_split if s > 0 else 0 for s in shares]
    if n < sum(want):
        raise BadInputError(
            f"the corpus has {n} usable identities; splits {'/'.join(f'{s:g}' for s in shares)} need at "
            f"least {sum(want)} ({min_per_split} per split"
            + (", as cross-reenactment drives each face by another of its split" if min_per_split > 1 else "")
            + "): add identities, or change --splits / --methods")
    counts = [max(w, round(s * n)) for s, w in zip(shares[1:], want[1:])]
    counts = [n - sum(counts), *counts]
    while counts[0] < want[0]:  # rounding up the small splits starved train: take back from the largest
        k = 1 + int(np.argmax([c - w for c, w in zip(counts[1:], want[1:])]))
        counts[k] -= 1
        counts[0] += 1
    order = np.random.default_rng(seed).permutation(n)
    names = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
    return {ids[i]: names[k] for k, i in enumerate(order)}


def _segments(videos: list[VideoEntry], frames: int, wanted: int) -> list[Segment]:
    """``wanted`` segments spread over an identity's videos (fewer if they are short)."""
    candidates = []
    for v in videos:
        n = v.frame_count // frames
        if n:
            starts = np.linspace(0, v.frame_count - frames, n).round().astype(int)
            candidates += [Segment(v.dir, int(s)) for s in starts]
    if len(candidates) <= wanted:
        return candidates
    return [candidates[i] for i in np.linspace(0, len(candidates) - 1, wanted).round().astype(int)]


def make_plan(videos: Corpus | list[VideoEntry], config: BuildConfig
              ) -> tuple[list[ClipPlan], dict[str, str], list[dict]]:
    """(clips, identity -> split, skipped identities with reasons) for a corpus; deterministic."""
    from generator.corpus.prepare import slug

    by_id: dict[str, list[VideoEntry]] = defaultdict(list)
    for v in videos:
        by_id[v.identity].append(v)
    segments, skipped = {}, []
    for ident in sorted(by_id):
        segs = _segments(by_id[ident], config.clip_frames, config.clips_per_identity)
        if segs:
            segments[ident] = segs
        else:
            longest = max(v.frame_count for v in by_id[ident])
            skipped.append({"identity": ident, "reason": f"no video has {config.clip_frames} frames "
                                                         f"(longest: {longest})"})
    need = 2 if "cross" in config.methods else 1
    split = split_identities(list(segments), config.splits,
                             config.seed if config.split_seed is None else config.split_seed, need)
    grid = [(m, t, mode) for m in config.methods for t in config.shots for mode in config.modes]
    grid = [grid[i] for i in np.random.default_rng(config.seed).permutation(len(grid))]
    per_real = len(grid) if config.fakes_per_real == 0 else min(config.fakes_per_real, len(grid))
    clips, q = [], 0
    for ident in sorted(segments):
        peers = sorted(i for i in segments if split[i] == split[ident] and i != ident)
        for s, seg in enumerate(segments[ident]):
            name = f"{slug(ident)}_s{s}"
            clips.append(ClipPlan(f"real_{name}", "real", split[ident], "real", ident, ident, seg, seg,
                                  None, None, derived_seed(config.seed, f"real_{name}")))
            for j in range(per_real):
                method, t, mode = grid[(q * per_real + j) % len(grid)]
                if method == "self":
                    drv, dseg, cid = ident, seg, f"self_{slug(ident)}_T{t}_{mode}_s{s}"
                else:
                    drv = peers[derived_seed(config.seed, f"driver:{name}:{j}") % len(peers)]
                    dseg = segments[drv][s % len(segments[drv])]
                    cid = f"cross_{slug(ident)}_by_{slug(drv)}_T{t}_{mode}_s{s}"
                clips.append(ClipPlan(cid, "fake", split[ident], method, ident, drv, seg, dseg, t, mode,
                                      derived_seed(config.seed, cid)))
            q += 1
    ids = [c.clip_id for c in clips]
    if len(set(ids)) != len(ids):
        raise BadInputError("two identities give the same clip id after slugging; rename one")
    return clips, split, skipped


def in_shard(clip: ClipPlan, identities: list[str], shard: tuple[int, int]) -> bool:
    """Shards take whole target identities (their persons and tracks are made once per shard)."""
    i, n = shard
    return identities.index(clip.source_identity) % n == i


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' -> (i, n); None -> from torchrun's RANK / WORLD_SIZE when set, else None."""
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BadInputError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise BadInputError(f"--shard {text}: need 0 <= i < n")
    return i, n


# -- making one clip ---------------------------------------------------------------------------
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
        for vdir, v in sorted(self.videos.items()):
            if v.identity != identity:
                continue
            for k, i in enumerate(v.frame_indices):
                in_clip = vdir == exclude.video and 0 <= i - exclude.start < self.config.clip_frames
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


def dataset_rescorer(dataset: str | os.PathLike, checkpoint: str | os.PathLike
                     ) -> Callable[[Path, ClipRecord], np.ndarray]:
    """A ``rescore(file, parent_row)`` for derived files of a built dataset (e.g. perturbed copies):
    r per frame with the dataset's own checkpoint and each clip's stored crops and landmarks."""
    from generator.model.talking_head import load_meta_model

    doc = read_build(dataset)
    if sha256_file(checkpoint) != doc["checkpoint_sha256"]:
        raise ConfigMismatchError(f"{checkpoint} is not the checkpoint {dataset} was built with (sha256 "
                                  f"{doc['checkpoint_sha256'][:12]}...): its r would not be comparable")
    scorer = FileRealismScorer(load_meta_model(checkpoint)[0])

    def rescore(path: Path, row: ClipRecord) -> np.ndarray:
        with np.load(Path(dataset) / "videos" / row.clip_id / "track.npz") as z:
            return scorer(path, z["crop_matrices"], z["points"], z["face_found"], (row.height, row.width))

    return rescore


def _signing_ca(signing) -> list[Path]:
    """The local CA of the keys that sign (so their manifests verify as Trusted, as with the default
    keys); a user's own chain (--cert) is checked against their trust list elsewhere."""
    from generator.provenance.keys import KeyPaths

    if signing is None or signing.cert or not signing.keys_dir:
        return []
    ca = KeyPaths(Path(signing.keys_dir)).ca_cert
    return [ca] if ca.is_file() else []


class SkipClip(SfumatoError):
    """A clip that cannot be made from this corpus (no face, too short); recorded, not fatal."""


# -- hard examples ---------------------------------------------------------------------------
def candidate_plan(clip: ClipPlan, k: int, videos: dict[str, VideoEntry], clip_frames: int
                   ) -> tuple[ClipPlan, int | None]:
    """(plan, shot seed) of candidate ``k`` of a planned fake: 0 is the plan itself; the others draw
    their own T shots (and, in cross-reenactment, another stretch of the driver's video) from a seed of
    their own, so the clip keeps its id, identities, T and mode."""
    if k == 0:
        return clip, None
    seed = derived_seed(clip.seed, f"candidate:{k}")
    driver = clip.driver
    if clip.method == "cross":
        room = videos[driver.video].frame_count - clip_frames
        if room > 0:
            driver = Segment(driver.video, int(np.random.default_rng(seed).integers(0, room + 1)))
    return dataclasses.replace(clip, driver=driver, seed=seed), seed


class DetectorJudge:
    """``--hard-for``: a trained detector's mean fake probability over a clip's faces, in memory."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", frames: int = 16):
        from detector.model import load_detector

        self.model, self.meta = load_detector(path, device)
        self.size, self.frames = int(self.meta["input_size"]), frames
        self.path, self.sha256 = str(path), sha256_file(path)

    def __call__(self, frames: np.ndarray, points: np.ndarray, found: np.ndarray) -> float:
        """Mean p(fake) over up to ``frames`` evenly spaced frames with a face (points: frame pixels)."""
        from detector.model import predict
        from generator.faces.crop import DETECTOR_CROP, crop_face

        idx = np.flatnonzero(found)
        if not len(idx):
            return float("nan")
        idx = idx[np.linspace(0, len(idx) - 1, min(self.frames, len(idx))).round().astype(int)]
        params = dataclasses.replace(DETECTOR_CROP, size=self.size)
        crops = np.stack([crop_face(frames[i], points[i], params)[0] for i in idx])
        return float(predict(self.model, crops).mean())


def choose_candidate(maker: ClipMaker, clip: ClipPlan, threshold: float | None,
                     judge: DetectorJudge | None) -> tuple[tuple | None, dict]:
    """Render the candidates of one planned fake and keep the best that passes.

    Passing: mean r (on the rendered frames, before encoding) at least ``threshold``. Best: the
    lowest fake probability of ``judge`` when there is one, else the highest mean r. Returns
    ((chosen plan, (frames, matrices, landmarks, found)) or None when none passed, the record of
    every candidate tried)."""
    tried, best, best_key = [], None, -np.inf
    for k in range(maker.config.candidates):
        plan, shot_seed = candidate_plan(clip, k, maker.videos, maker.config.clip_frames)
        t0 = time.perf_counter()
        try:
            frames, matrices, local, found, full = maker.render_full(plan, shot_seed)
        except SkipClip as exc:
            tried.append({"candidate": k, "error": str(exc)})
            continue
        r = maker.scorer.frames(frames, matrices, local, found)
        r_mean = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
        p = judge(frames, full, found) if judge is not None else None
        passed = threshold is None or (np.isfinite(r_mean) and r_mean >= threshold)
        seconds = time.perf_counter() - t0
        maker.seconds["candidates"] += seconds
        tried.append({"candidate": k, "seed": plan.seed, "shot_seed": shot_seed,
                      "driver_start_frame": plan.driver.start,
                      # unrounded: candidates of one clip can differ in the 6th decimal
                      "realism_mean": r_mean if np.isfinite(r_mean) else None,
                      "fake_probability": None if p is None or not np.isfinite(p) else p,
                      "passed": bool(passed), "seconds": round(seconds, 3)})
        if passed:
            key = -p if p is not None and np.isfinite(p) else (r_mean if judge is None else -np.inf)
            if best is None or key > best_key:
                best, best_key = (plan, (frames, matrices, local, found), k), key
    selection = {"threshold": threshold, "judge_sha256": judge.sha256 if judge else None,
                 "chosen": best[2] if best else None, "candidates": tried}
    return (best[:2] if best else None), selection


def realism_threshold(maker: ClipMaker, clips: list[ClipPlan]) -> dict | None:
    """The r a fake must reach: --min-realism as given, or --realism-quantile of the real clips' mean
    r (on their frames as the builder reads them, before encoding, like the candidates)."""
    cfg = maker.config
    if cfg.min_realism is not None:
        return {"value": cfg.min_realism, "source": "--min-realism"}
    if cfg.realism_quantile is None:
        return None
    means = {}
    for c in clips:
        if c.label != "real":
            continue
        try:
            frames, matrices, local, found = maker.render(c)
        except SkipClip:
            continue
        r = maker.scorer.frames(frames, matrices, local, found)
        if np.isfinite(r).any():
            means[c.clip_id] = round(float(np.nanmean(r)), 5)
    if not means:
        raise BadInputError("--realism-quantile needs real clips with faces to take the quantile of")
    value = round(float(np.quantile(list(means.values()), cfg.realism_quantile)), 5)
    return {"value": value, "source": f"quantile {cfg.realism_quantile:g} of the mean r of {len(means)} "
                                      "real clips", "real_means": means}



def library_versions() -> dict:
    """Versions of sfumato and the libraries that shape a build's output, for its metadata."""
    import av
    import torch

    from generator import __version__

    out = {"sfumato": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "numpy": np.__version__, "av": av.__version__}
    try:
        from importlib.metadata import version

        out["c2pa-python"] = version("c2pa-python")
    except Exception:  # not installed as a distribution: leave it out
        pass
    return out


def make_clip(maker: ClipMaker, clip: ClipPlan, out: Path, threshold: float | None = None,
              judge: DetectorJudge | None = None) -> dict:
    """Render, encode, sign and score one clip into ``out/videos/<clip_id>``; returns its record.

    With hard-example settings a fake is the best of its candidates (``choose_candidate``), or,
    when none passes, recorded as ``filtered`` with every candidate's scores.
    """
    from generator.io.video import VideoWriter
    from generator.provenance.manifest import GenerationInfo, sign_generated
    from generator.provenance.verify import verify_file

    cfg = maker.config
    tmp = out / ".tmp" / clip.clip_id
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    final = out / "videos" / clip.clip_id
    try:
        selection = None
        if clip.label == "fake" and cfg.filtering:
            chosen, selection = choose_candidate(maker, clip, threshold, judge)
            if chosen is None:
                return {"clip_id": clip.clip_id, "status": "filtered", "selection": selection,
                        "reason": f"none of {cfg.candidates} candidate(s) passed (mean r >= {threshold})"}
            clip, (frames, matrices, points, found) = chosen
        else:
            frames, matrices, points, found = maker.render(clip)
        video = maker.videos[clip.target.video]
        fps = video.fps
        buf = io.BytesIO()
        np.savez_compressed(buf, crop_matrices=matrices, points=points, face_found=found,
                            crop_size=np.int64(maker.size))
        write_bytes_atomic(tmp / "track.npz", buf.getvalue())
        rows = []
        for comp in cfg.compressions:
            t0 = time.perf_counter()
            name = f"{comp}.mp4"
            with VideoWriter(tmp / name, fps=fps, crf=COMPRESSIONS[comp], preset=cfg.x264_preset,
                             reproducible=True) as w:
                for f in frames:
                    w.write(f)
            maker.seconds[f"encode_{comp}"] += time.perf_counter() - t0
            signed = {}
            if clip.label == "fake":
                t0 = time.perf_counter()
                shutil.copyfile(tmp / name, tmp / f"{comp}.signed.mp4")
                info = GenerationInfo(
                    preset=maker.meta.get("preset"), checkpoint_sha256=maker.checkpoint_sha,
                    shots=clip.shots, finetune_steps=cfg.finetune_steps if clip.mode == "FT" else 0,
                    seed=clip.seed, driver_kind="video", source_sha256=[video.source_sha256],
                    driver_sha256=maker.videos[clip.driver.video].source_sha256,
                    extra={"dataset_clip_id": clip.clip_id, "method": clip.method, "mode": clip.mode,
                           # named numbers, not a list: c2pa stores small-int lists as bytes
                           "compression": comp, "start_frame": clip.target.start,
                           "end_frame": clip.target.start + cfg.clip_frames})
                sign_generated(tmp / f"{comp}.signed.mp4", info, maker.signing)
                state = verify_file(tmp / f"{comp}.signed.mp4", trust=_signing_ca(maker.signing)).state
                maker.seconds[f"sign_{comp}"] += time.perf_counter() - t0
                signed = {"signed_path": f"videos/{clip.clip_id}/{comp}.signed.mp4",
                          "signed_sha256": sha256_file(tmp / f"{comp}.signed.mp4"),
                          "signed_manifest": state}
            r = maker.realism(tmp / name, matrices, points, found)
            h, w_ = frames.shape[1:3]
            rows.append(ClipRecord(
                id=f"{clip.clip_id}_{comp}", clip_id=clip.clip_id, label=clip.label, split=clip.split,
                method=clip.method, source_identity=clip.source_identity,
                driver_identity=clip.driver_identity, shots=clip.shots, mode=clip.mode,
                finetune_steps=(cfg.finetune_steps if clip.mode == "FT" else 0) if clip.label == "fake"
                else None, checkpoint_sha256=maker.checkpoint_sha if clip.label == "fake" else None,
                seed=clip.seed, compression=comp, crf=COMPRESSIONS[comp], frames=len(frames), fps=fps,
                width=int(w_), height=int(h), **realism_summary(r), realism=realism_list(r),
                manifest="Absent", path=f"videos/{clip.clip_id}/{name}", sha256=sha256_file(tmp / name),
                source_video=video.source_path, source_video_sha256=video.source_sha256,
                driver_video_sha256=maker.videos[clip.driver.video].source_sha256,
                start_frame=clip.target.start, end_frame=clip.target.start + cfg.clip_frames,
                driver_start_frame=clip.driver.start, **signed).to_dict())
        if final.exists():  # a clip folder without a record: left by a killed run
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        rec = {"clip_id": clip.clip_id, "status": "done", "rows": rows}
        return rec if selection is None else {**rec, "selection": selection}
    except SkipClip as exc:
        return {"clip_id": clip.clip_id, "status": "skipped", "reason": str(exc)}
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise SfumatoError(f"disk full while writing clip {clip.clip_id} in {out}: the finished clips "
                               "are kept; free some space and rerun the same command to finish") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the build -------------------------------------------------------------------------------
def _digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def build_document(corpus: str | os.PathLike, checkpoint: str | os.PathLike, config: BuildConfig,
                   videos: Corpus | None = None) -> dict:
    """Everything that determines the dataset: settings, input hashes, split and plan (+ digest).

    ``videos``: the opened ``Corpus``, when the caller has read it already.
    """
    from generator.corpus.reader import Corpus

    videos = videos if videos is not None else Corpus.open(corpus)
    clips, split, skipped = make_plan(videos, config)
    doc = {"format": FORMAT, "config": config.to_doc(),
           "corpus_videos": [{"dir": v.dir, "identity": v.identity, "frame_count": v.frame_count,
                              "source_sha256": v.source_sha256} for v in videos],
           "checkpoint_sha256": sha256_file(checkpoint), "splits": split, "skipped_identities": skipped,
           "plan": [c.to_dict() for c in clips]}
    return {**doc, "digest": _digest(doc)}


def read_build(out: str | os.PathLike) -> dict:
    """A dataset folder's build.json (clear error when absent)."""
    path = Path(out) / BUILD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise BadInputError(f"{out}: no readable {BUILD_FILE}: not a folder made by `sfumato dataset "
                            "build`") from None


def _read_record(out: Path, clip_id: str) -> dict | None:
    try:
        rec = json.loads((out / "records" / f"{clip_id}.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("status") in ("done", "skipped", "filtered") else None


def build_dataset(corpus: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
                  config: BuildConfig = BuildConfig(), shard: tuple[int, int] | None = None,
                  signing=None, command: str | None = None, progress: bool = False,
                  on_clip: Callable[[str], None] | None = None, device: str = "cpu",
                  hard_for: str | os.PathLike | None = None) -> dict:
    """Build (or finish) the dataset in ``out``; see the module docstring. Returns a summary.

    With ``shard`` only that shard's clips are made; the metadata and card are written by
    ``merge_shards`` (under torchrun, rank 0 waits for the others and writes them). ``device``
    "cuda" renders, fine-tunes and scores on the GPU (under torchrun: the rank's local GPU).
    ``hard_for``: the detector file whose sha256 is ``config.hard_for_sha256`` (the judge of
    candidates; see ``choose_candidate``).
    """
    from tqdm import tqdm

    from generator.provenance.manifest import SigningOptions

    t_start = time.perf_counter()
    out = Path(out)
    corpus, checkpoint = Path(corpus), Path(checkpoint)
    if not checkpoint.is_file():
        raise BadInputError(f"checkpoint {checkpoint} not found")
    if (hard_for is None) != (config.hard_for_sha256 is None):
        raise BadInputError("--hard-for needs the detector file and its sha256 in the settings together")
    if hard_for is not None and sha256_file(hard_for) != config.hard_for_sha256:
        raise ConfigMismatchError(f"{hard_for} is not the detector these settings name (sha256 "
                                  f"{config.hard_for_sha256[:12]}...)")
    from generator.corpus.reader import Corpus

    videos = Corpus.open(corpus)
    doc = build_document(corpus, checkpoint, config, videos)
    out.mkdir(parents=True, exist_ok=True)
    old = (out / BUILD_FILE).exists() and read_build(out)
    if old and old.get("digest") != doc["digest"]:
        raise ConfigMismatchError(
            f"{out} holds a dataset built with other settings, corpus or checkpoint "
            f"({_what_differs(old, doc)}): rerun with the original arguments to finish it, or choose "
            "a new --out")
    write_bytes_atomic(out / BUILD_FILE, json.dumps(
        {**doc, "corpus": str(corpus.resolve()), "checkpoint": str(checkpoint.resolve()),
         "command": command, "versions": library_versions()}, indent=1).encode())
    clips = [ClipPlan.from_dict(c) for c in doc["plan"]]
    identities = sorted(doc["splits"])
    mine = [c for c in clips if shard is None or in_shard(c, identities, shard)]
    todo = [c for c in mine if _read_record(out, c.clip_id) is None]
    maker = None
    done = skipped = filtered = 0
    if todo:
        if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        maker = ClipMaker(videos, checkpoint, doc["checkpoint_sha256"], config,
                          signing or SigningOptions(), device)
        (out / "records").mkdir(exist_ok=True)
        threshold = _threshold(out, doc, maker, clips) if config.filtering else None
        judge = DetectorJudge(hard_for, maker.model.D.w_0.device) if hard_for is not None else None
        for clip in tqdm(todo, desc="dataset build", unit="clip", disable=not progress):
            rec = make_clip(maker, clip, out, threshold, judge)
            write_bytes_atomic(out / "records" / f"{clip.clip_id}.json", json.dumps(rec, indent=1).encode())
            done += rec["status"] == "done"
            skipped += rec["status"] == "skipped"
            filtered += rec["status"] == "filtered"
            if on_clip is not None:
                on_clip(clip.clip_id)
    seconds = {k: round(v, 3) for k, v in (maker.seconds if maker else {}).items()}
    summary = {"out": str(out), "shard": list(shard) if shard else None, "clips_planned": len(clips),
               "clips_in_shard": len(mine), "made": done, "skipped_now": skipped, "filtered_now": filtered,
               "reused": len(mine) - len(todo), "seconds": round(time.perf_counter() - t_start, 3),
               "stage_seconds": seconds}
    name = "build_summary.json" if shard is None else f"build_summary.shard{shard[0]}of{shard[1]}.json"
    write_bytes_atomic(out / name, json.dumps(summary, indent=1).encode())
    if shard is None:
        summary["dataset"] = finish_dataset(out)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and shard[0] == 0:
        summary["dataset"] = finish_dataset(out, wait=True)
    return summary


FILTER_FILE = "filter.json"


def _threshold(out: Path, doc: dict, maker: ClipMaker, clips: list[ClipPlan]) -> float | None:
    """The build's realism threshold, worked out once and kept in filter.json, so resumed runs and
    every shard judge against the same number."""
    path = out / FILTER_FILE
    try:
        got = json.loads(path.read_text())
        if got.get("digest") == doc["digest"]:
            return (got.get("threshold") or {}).get("value")
    except (OSError, ValueError):
        pass
    t0 = time.perf_counter()
    threshold = realism_threshold(maker, clips)
    maker.seconds["threshold"] += time.perf_counter() - t0
    if threshold is not None or not path.exists():
        doc_out = {"digest": doc["digest"], "threshold": threshold}
        write_bytes_atomic(path, json.dumps(doc_out, indent=1).encode())
    return threshold["value"] if threshold else None


def _what_differs(old: dict, new: dict) -> str:
    parts = [k for k in ("config", "corpus_videos", "checkpoint_sha256") if old.get(k) != new.get(k)]
    return "different " + ", ".join(parts) if parts else "different plan"


def finish_dataset(out: str | os.PathLike, wait: bool = False, poll_seconds: float = 2.0) -> dict:
    """Write metadata.jsonl/.csv, splits.json and the card once every planned clip has a record.

    ``wait``: poll until the other shards' records are in (torchrun rank 0).
    """
    from benchmarks.datasets.card import write_card

    out = Path(out)
    doc = read_build(out)
    ids = [c["clip_id"] for c in doc["plan"]]
    while True:
        records = {i: _read_record(out, i) for i in ids}
        missing = [i for i, r in records.items() if r is None]
        if not missing or not wait:
            break
        time.sleep(poll_seconds)
    if missing:
        raise SfumatoError(f"{len(missing)} of {len(ids)} planned clips are not built yet in {out} "
                           f"(e.g. {', '.join(missing[:3])}): run the remaining shards, then merge")
    rows = [ClipRecord.from_dict(r) for rec in records.values() if rec["status"] == "done"
            for r in rec["rows"]]
    lost = [r.path for r in rows if not (out / r.path).is_file()]
    if lost:
        raise SfumatoError(f"{len(lost)} clip files recorded as built are missing from {out} (e.g. "
                           f"{lost[0]}): delete their records/ entries and rerun the build")
    skips = [{"clip_id": i, "reason": r["reason"]} for i, r in records.items() if r["status"] == "skipped"]
    dropped = [{"clip_id": i, "reason": r["reason"]} for i, r in records.items() if r["status"] == "filtered"]
    selections = {i: r["selection"] for i, r in records.items() if r.get("selection")}
    write_metadata(out, rows)
    splits = {"identities": doc["splits"],
              "counts": {s: sorted(i for i, v in doc["splits"].items() if v == s)
                         for s in ("train", "val", "test")},
              "skipped_identities": doc["skipped_identities"], "skipped_clips": skips,
              "filtered_clips": dropped}
    write_bytes_atomic(out / "splits.json", json.dumps(splits, indent=1).encode())
    threshold = None
    if selections:
        try:
            threshold = json.loads((out / FILTER_FILE).read_text()).get("threshold")
        except (OSError, ValueError):
            pass
    card = write_card(out, doc, rows, skips, selections, threshold)
    return {"rows": len(rows), "clips": len(ids) - len(skips) - len(dropped), "skipped_clips": skips,
            "filtered_clips": dropped, "skipped_identities": doc["skipped_identities"], **card}


def merge_shards(out: str | os.PathLike, shard_dirs: list[str | os.PathLike] = ()) -> dict:
    """Bring shards built into other folders into ``out`` (same build only), then finish it."""
    out = Path(out)
    mine = read_build(out)
    for d in map(Path, shard_dirs):
        if d.resolve() == out.resolve():
            continue
        other = read_build(d)
        if other.get("digest") != mine.get("digest"):
            raise ConfigMismatchError(f"stale shard: {d} was built with other settings, corpus or "
                                      f"checkpoint than {out} ({_what_differs(other, mine)})")
        if not (out / FILTER_FILE).exists() and (d / FILTER_FILE).is_file():
            write_bytes_atomic(out / FILTER_FILE, (d / FILTER_FILE).read_bytes())
        plan = {c["clip_id"] for c in mine["plan"]}
        for rec_path in sorted((d / "records").glob("*.json")):
            clip_id = rec_path.stem
            if clip_id not in plan:
                raise ConfigMismatchError(f"stale shard: {d} holds clip {clip_id}, which {out}'s plan "
                                          "does not have")
            if _read_record(out, clip_id) is not None or _read_record(d, clip_id) is None:
                continue
            if (d / "videos" / clip_id).is_dir():
                dst = out / "videos" / clip_id
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(d / "videos" / clip_id, out / ".tmp" / clip_id, dirs_exist_ok=True,
                                copy_function=link_or_copy)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(out / ".tmp" / clip_id, dst)
            (out / "records").mkdir(exist_ok=True)
            write_bytes_atomic(out / "records" / rec_path.name, rec_path.read_bytes())
    return finish_dataset(out)
