"""``sfumato bench build``: an adversarial real/fake benchmark dataset from a prepared corpus.

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

import numpy as np

from detector.metadata import COMPRESSIONS, ClipRecord, realism_list, realism_summary, write_metadata
from generator.errors import BadInputError, ConfigMismatchError, SfumatoError
from generator.files import link_or_copy, sha256_file, write_bytes_atomic

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


def _segments(videos: list[dict], frames: int, wanted: int) -> list[Segment]:
    """``wanted`` segments spread over an identity's videos (fewer if they are short)."""
    candidates = []
    for v in videos:
        n = int(v["frame_count"]) // frames
        if n:
            starts = np.linspace(0, int(v["frame_count"]) - frames, n).round().astype(int)
            candidates += [Segment(v["dir"], int(s)) for s in starts]
    if len(candidates) <= wanted:
        return candidates
    return [candidates[i] for i in np.linspace(0, len(candidates) - 1, wanted).round().astype(int)]


def corpus_videos(corpus: str | os.PathLike) -> list[dict]:
    """The finished videos of a prepared corpus (identity, dir, frame count, fps, source)."""
    from generator.prepare import read_corpus

    records = read_corpus(corpus)
    if not records:
        raise BadInputError(f"{corpus}: no prepared videos (make a corpus with `sfumato prepare`)")
    return [{"identity": r["identity"], "video_id": r["video_id"],
             "dir": f"{r['identity']}/{r['video_id']}", "frame_count": int(r["frame_count"] or 0),
             "fps": float(r["fps"] or 25.0), "source_path": r["source_path"],
             "source_sha256": r["source_sha256"]} for r in records]


def make_plan(videos: list[dict], config: BuildConfig) -> tuple[list[ClipPlan], dict[str, str], list[dict]]:
    """(clips, identity -> split, skipped identities with reasons) for a corpus; deterministic."""
    from generator.prepare import slug

    by_id: dict[str, list[dict]] = defaultdict(list)
    for v in videos:
        by_id[v["identity"]].append(v)
    segments, skipped = {}, []
    for ident in sorted(by_id):
        segs = _segments(by_id[ident], config.clip_frames, config.clips_per_identity)
        if segs:
            segments[ident] = segs
        else:
            longest = max(v["frame_count"] for v in by_id[ident])
            skipped.append({"identity": ident, "reason": f"no video has {config.clip_frames} frames "
                                                         f"(longest: {longest})"})
    need = 2 if "cross" in config.methods else 1
    split = split_identities(list(segments), config.splits, config.seed, need)
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

    def __init__(self, corpus: Path, videos: dict[str, dict], checkpoint: Path, checkpoint_sha: str,
                 config: BuildConfig, signing=None, device: str = "cpu"):
        from generator.faces import create_backend
        from generator.model import load_meta_model

        self.corpus, self.videos, self.config = corpus, videos, config
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

        from generator.driving import fill_missing, smooth_track
        from generator.tracking import OK, FaceTracker, TrackerConfig
        from generator.video_io import MediaReader

        n = self.config.clip_frames
        video = self.videos[seg.video]
        tracker = FaceTracker(self.backend, TrackerConfig())
        frames, points = [], []
        with MediaReader(video["source_path"]) as reader:
            for idx, frame in reader.frames():
                if idx < seg.start:
                    continue
                if idx >= seg.start + n:
                    break
                face = tracker.step(frame, idx)
                frames.append(frame)
                points.append(face.points if face.status == OK else np.full((68, 2), np.nan, np.float32))
        if len(frames) < n:
            raise SkipClip(f"{video['source_path']}: only {len(frames)} of frames {seg.start}.."
                           f"{seg.start + n - 1} decode")
        raw = np.stack(points)
        found = np.isfinite(raw).all(axis=(1, 2))
        if found.mean() < self.config.min_face_share:
            raise SkipClip(f"{video['source_path']} frames {seg.start}..{seg.start + n - 1}: a face in "
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
    def person(self, identity: str, shots: int, mode: str, exclude: Segment):
        """The target identity as a Person from T corpus shots (outside the clip's frames first)."""
        key = (identity, shots, mode, exclude)
        if key not in self._persons:
            if len(self._persons) > 16:
                self._persons.clear()
            t = time.perf_counter()
            self._persons[key] = self._make_person(identity, shots, mode, exclude)
            self.seconds["person"] += time.perf_counter() - t
        return self._persons[key]

    def shots(self, identity: str, shots: int, exclude: Segment):
        """T evenly spread corpus crops of ``identity`` (model size), avoiding ``exclude``'s frames."""
        import cv2

        from generator.sources import Shots
        from generator.video_io import read_image

        outside, inside = [], []
        for vdir, v in sorted(self.videos.items()):
            if v["identity"] != identity:
                continue
            rec = json.loads((self.corpus / vdir / "record.json").read_text())
            with np.load(self.corpus / vdir / rec["files"]["landmarks"]) as z:
                pts, idx = z["points"], z["frame_indices"]
            for k, i in enumerate(idx):
                in_clip = vdir == exclude.video and 0 <= i - exclude.start < self.config.clip_frames
                (inside if in_clip else outside).append((vdir, int(i), pts[k], rec))
        pool = outside if len(outside) >= shots else outside + inside
        pick = [pool[i] for i in np.linspace(0, len(pool) - 1, min(shots, len(pool))).round().astype(int)]
        frames, points, origins = [], [], []
        for vdir, i, p, rec in pick:
            img = read_image(self.corpus / vdir / rec["files"]["frames"].format(index=i))
            k = self.size / img.shape[0]
            frames.append(cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA))
            points.append(p * k)
            origins.append({"video": vdir, "frame": i})
        return Shots(np.stack(frames), np.stack(points).astype(np.float32), origins, {})

    def _make_person(self, identity: str, shots: int, mode: str, exclude: Segment):
        import torch

        from generator.finetune import FinetuneConfig, finetune
        from generator.inference import init_person

        shot_set = self.shots(identity, shots, exclude)
        if mode == "FF":
            x, y = shot_set.tensors(self.model.D.w_0.device)
            return init_person(self.model, x, y).prepare_for_inference()
        seed = derived_seed(self.config.seed, f"person:{identity}:{shots}:{exclude.video}:{exclude.start}")
        torch.manual_seed(seed)
        cfg = FinetuneConfig(steps=self.config.finetune_steps, seed=seed)
        return finetune(self.model, shot_set, cfg).person.prepare_for_inference()

    # rendering --------------------------------------------------------------------------------
    def render(self, clip: ClipPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(frames, crop matrices (N, 2, 3), crop landmarks (N, 68, 2), face found (N,)) of a clip."""
        import dataclasses as dc

        from generator.crop import TRAINING_CROP, crop_transform, face_mask
        from generator.driving import transfer_expression

        frames, track, found = self.segment(clip.target)
        params = dc.replace(TRAINING_CROP, size=self.size)
        transforms = [crop_transform(p, params) for p in track]
        matrices = np.stack([t.matrix for t in transforms])
        target_local = np.stack([t.apply_points(p) for t, p in zip(transforms, track)]).astype(np.float32)
        if clip.label == "real":
            return frames, matrices, target_local, found
        if clip.method == "self":
            wanted = track
        else:
            _, drv_track, drv_found = self.segment(clip.driver)
            wanted = transfer_expression(track, drv_track)
            found = found & drv_found
        local = np.stack([t.apply_points(p) for t, p in zip(transforms, wanted)]).astype(np.float32)
        person = self.person(clip.source_identity, clip.shots, clip.mode, clip.target)
        t0 = time.perf_counter()
        crops = person.render(local)
        self.seconds["render"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        out = np.stack([t.paste(c, f, mask=face_mask(np.stack([a, b]), self.size))
                        for t, c, f, a, b in zip(transforms, crops, frames, local, target_local)])
        self.seconds["paste"] += time.perf_counter() - t0
        return out, matrices, local, found

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
        from generator.inference import realism_discriminator

        self.size = model.cfg.image_size
        self.D = realism_discriminator(model)

    def __call__(self, path: Path, matrices: np.ndarray, points: np.ndarray, found: np.ndarray,
                 frame_size: tuple[int, int] | None = None) -> np.ndarray:
        """r per frame (NaN where no face was found); ``frame_size`` (h, w) the track was made at,
        when the file was resized since."""
        from generator.crop import CropTransform
        from generator.inference import realism_score
        from generator.video_io import MediaReader

        with MediaReader(path) as reader:
            scale = np.eye(3)
            if frame_size is not None and (reader.info.height, reader.info.width) != tuple(frame_size):
                scale = np.diag([frame_size[1] / reader.info.width, frame_size[0] / reader.info.height, 1.0])
            crops = [CropTransform(np.vstack([m, [0, 0, 1]])[:2] @ scale, self.size).apply_image(f)
                     for m, (_, f) in zip(matrices, reader.frames())]
        if not crops:
            raise BadInputError(f"{path}: no frames to score")
        r = realism_score(self.D, np.stack(crops), points[:len(crops)]).astype(np.float64)
        r[~np.asarray(found[:len(r)], bool)] = np.nan
        return r


def dataset_rescorer(dataset: str | os.PathLike, checkpoint: str | os.PathLike
                     ) -> Callable[[Path, ClipRecord], np.ndarray]:
    """A ``rescore(file, parent_row)`` for derived files of a built dataset (e.g. perturbed copies):
    r per frame with the dataset's own checkpoint and each clip's stored crops and landmarks."""
    from generator.model import load_meta_model

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


def _versions() -> dict:
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


def make_clip(maker: ClipMaker, clip: ClipPlan, out: Path) -> dict:
    """Render, encode, sign and score one clip into ``out/videos/<clip_id>``; returns its record."""
    from generator.provenance.manifest import GenerationInfo, sign_generated
    from generator.provenance.verify import verify_file
    from generator.video_io import VideoWriter

    cfg = maker.config
    tmp = out / ".tmp" / clip.clip_id
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    final = out / "videos" / clip.clip_id
    try:
        frames, matrices, points, found = maker.render(clip)
        video = maker.videos[clip.target.video]
        fps = video["fps"]
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
                    seed=clip.seed, driver_kind="video", source_sha256=[video["source_sha256"]],
                    driver_sha256=maker.videos[clip.driver.video]["source_sha256"],
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
                source_video=video["source_path"], source_video_sha256=video["source_sha256"],
                driver_video_sha256=maker.videos[clip.driver.video]["source_sha256"],
                start_frame=clip.target.start, end_frame=clip.target.start + cfg.clip_frames,
                driver_start_frame=clip.driver.start, **signed).to_dict())
        if final.exists():  # a clip folder without a record: left by a killed run
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return {"clip_id": clip.clip_id, "status": "done", "rows": rows}
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
                   videos: list[dict] | None = None) -> dict:
    """Everything that determines the dataset: settings, input hashes, split and plan (+ digest).

    ``videos``: the corpus's ``corpus_videos``, when the caller has read them already.
    """
    videos = videos if videos is not None else corpus_videos(corpus)
    clips, split, skipped = make_plan(videos, config)
    doc = {"format": FORMAT, "config": dataclasses.asdict(config),
           "corpus_videos": [{k: v[k] for k in ("dir", "identity", "frame_count", "source_sha256")}
                             for v in videos],
           "checkpoint_sha256": sha256_file(checkpoint), "splits": split, "skipped_identities": skipped,
           "plan": [c.to_dict() for c in clips]}
    return {**doc, "digest": _digest(doc)}


def read_build(out: str | os.PathLike) -> dict:
    """A dataset folder's build.json (clear error when absent)."""
    path = Path(out) / BUILD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise BadInputError(f"{out}: no readable {BUILD_FILE}: not a folder made by `sfumato bench "
                            "build`") from None


def _read_record(out: Path, clip_id: str) -> dict | None:
    try:
        rec = json.loads((out / "records" / f"{clip_id}.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("status") in ("done", "skipped") else None


def build_dataset(corpus: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
                  config: BuildConfig = BuildConfig(), shard: tuple[int, int] | None = None,
                  signing=None, command: str | None = None, progress: bool = False,
                  on_clip: Callable[[str], None] | None = None, device: str = "cpu") -> dict:
    """Build (or finish) the dataset in ``out``; see the module docstring. Returns a summary.

    With ``shard`` only that shard's clips are made; the metadata and card are written by
    ``merge_shards`` (under torchrun, rank 0 waits for the others and writes them). ``device``
    "cuda" renders, fine-tunes and scores on the GPU (under torchrun: the rank's local GPU).
    """
    from tqdm import tqdm

    from generator.provenance.manifest import SigningOptions

    t_start = time.perf_counter()
    out = Path(out)
    corpus, checkpoint = Path(corpus), Path(checkpoint)
    if not checkpoint.is_file():
        raise BadInputError(f"checkpoint {checkpoint} not found")
    videos = corpus_videos(corpus)
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
         "command": command, "versions": _versions()}, indent=1).encode())
    clips = [ClipPlan.from_dict(c) for c in doc["plan"]]
    identities = sorted(doc["splits"])
    mine = [c for c in clips if shard is None or in_shard(c, identities, shard)]
    todo = [c for c in mine if _read_record(out, c.clip_id) is None]
    maker = None
    done = skipped = 0
    if todo:
        if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        maker = ClipMaker(corpus, {v["dir"]: v for v in videos}, checkpoint, doc["checkpoint_sha256"], config,
                          signing or SigningOptions(), device)
        (out / "records").mkdir(exist_ok=True)
        for clip in tqdm(todo, desc="bench build", unit="clip", disable=not progress):
            rec = make_clip(maker, clip, out)
            write_bytes_atomic(out / "records" / f"{clip.clip_id}.json", json.dumps(rec, indent=1).encode())
            done += rec["status"] == "done"
            skipped += rec["status"] == "skipped"
            if on_clip is not None:
                on_clip(clip.clip_id)
    seconds = {k: round(v, 3) for k, v in (maker.seconds if maker else {}).items()}
    summary = {"out": str(out), "shard": list(shard) if shard else None, "clips_planned": len(clips),
               "clips_in_shard": len(mine), "made": done, "skipped_now": skipped,
               "reused": len(mine) - len(todo), "seconds": round(time.perf_counter() - t_start, 3),
               "stage_seconds": seconds}
    name = "build_summary.json" if shard is None else f"build_summary.shard{shard[0]}of{shard[1]}.json"
    write_bytes_atomic(out / name, json.dumps(summary, indent=1).encode())
    if shard is None:
        summary["dataset"] = finish_dataset(out)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and shard[0] == 0:
        summary["dataset"] = finish_dataset(out, wait=True)
    return summary


def _what_differs(old: dict, new: dict) -> str:
    parts = [k for k in ("config", "corpus_videos", "checkpoint_sha256") if old.get(k) != new.get(k)]
    return "different " + ", ".join(parts) if parts else "different plan"


def finish_dataset(out: str | os.PathLike, wait: bool = False, poll_seconds: float = 2.0) -> dict:
    """Write metadata.jsonl/.csv, splits.json and the card once every planned clip has a record.

    ``wait``: poll until the other shards' records are in (torchrun rank 0).
    """
    from benchmarks.dataset_card import write_card

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
    write_metadata(out, rows)
    splits = {"identities": doc["splits"],
              "counts": {s: sorted(i for i, v in doc["splits"].items() if v == s)
                         for s in ("train", "val", "test")},
              "skipped_identities": doc["skipped_identities"], "skipped_clips": skips}
    write_bytes_atomic(out / "splits.json", json.dumps(splits, indent=1).encode())
    card = write_card(out, doc, rows, skips)
    return {"rows": len(rows), "clips": len(ids) - len(skips), "skipped_clips": skips,
            "skipped_identities": doc["skipped_identities"], **card}


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
