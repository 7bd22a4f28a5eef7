"""Turn talking-head videos into a meta-training corpus: per video, sampled frames as aligned face
crops, their 68 landmarks, rasterised landmark images and a JSON record of how it was made.

Layout of the output folder::

    OUT/prepare_config.json          settings every video here was made with (checked on resume)
    OUT/corpus.json                  index of the finished videos
    OUT/prepare_summary.json         the last run: done, already there, failed (with reasons)
    OUT/<identity>/<video_id>/record.json, landmarks.npz, frames/NNNNNN.png,
                                     landmark_images/NNNNNN.png

Each video is built in ``OUT/.tmp/`` and renamed into place when complete, so a killed run never
leaves a half-written video, and a rerun with the same arguments skips the finished ones.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import dataclasses
import io
import json
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from generator import __version__
from generator.errors import BadInputError, ConfigMismatchError, SfumatoError
from generator.faces.backends import FaceBackend, create_backend
from generator.faces.crop import TRAINING_CROP, CropParams, crop_face
from generator.faces.landmarks import landmark_image
from generator.faces.tracking import NO_FACE, NOT_DECODED, TrackerConfig, track_video
from generator.io.files import sha256_file, write_bytes_atomic
from generator.io.video import evenly_spaced_indices, is_media_path, write_image

RECORD = "record.json"
CONFIG_FILE = "prepare_config.json"
INDEX_FILE = "corpus.json"
SUMMARY_FILE = "prepare_summary.json"
TMP_DIR = ".tmp"


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """Settings of a corpus; the ones that shape its content are stamped into the output folder."""

    frames_per_video: int = 32  # evenly spaced frames sampled from each video
    crop: CropParams = TRAINING_CROP
    backend: str = "dlib"  # landmark backend: dlib or fan
    detector: str = "hog"  # dlib face detector: hog or cnn
    detect_max_side: int = 480
    fan_weights: str | None = None
    face_index: int = 0  # which face when several: 0 = largest
    image_format: str = "png"  # png (lossless) or jpg
    landmark_images: bool = True  # also store the rasterised landmark images
    min_frames: int = 2  # fewer frames with a face than this and the video fails (K + 1 >= 2)
    identity_from: str = "auto"  # auto, folder, stem (see identity_of; a CSV overrides it)

    def __post_init__(self):
        if self.frames_per_video < 1:
            raise BadInputError(f"frames per video must be >= 1, got {self.frames_per_video}")
        if self.image_format not in ("png", "jpg"):
            raise BadInputError(f"image format must be png or jpg, got {self.image_format!r}")
        if self.identity_from not in ("auto", "folder", "stem"):
            raise BadInputError(f"identity rule must be auto, folder or stem, not {self.identity_from!r}")

    def stamp(self) -> dict:
        """The settings that determine the corpus content (paths and speed knobs excluded)."""
        d = dataclasses.asdict(self)
        d.pop("fan_weights")
        return d


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """One input to prepare: its path and the identity it belongs to."""

    path: str
    identity: str
    identity_rule: str


@dataclasses.dataclass
class VideoOutcome:
    """What happened to one input: done, already there (skipped) or failed (with the reason)."""

    path: str
    identity: str
    status: str  # "done", "exists", "failed"
    video_id: str = ""
    frames_kept: int = 0
    frames_skipped: int = 0
    reason: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class PrepareSummary:
    """The result of ``prepare_corpus``: one outcome per input plus totals."""

    out_dir: str
    outcomes: list[VideoOutcome]
    ignored: list[str]
    seconds: float

    def count(self, status: str) -> int:
        """Number of inputs with this status."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[VideoOutcome]:
        """The inputs that could not be prepared."""
        return [o for o in self.outcomes if o.status == "failed"]

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "out_dir": self.out_dir, "sfumato_version": __version__,
            "videos": len(self.outcomes), "done": self.count("done"),
            "already_done": self.count("exists"), "failed": self.count("failed"),
            "frames_kept": sum(o.frames_kept for o in self.outcomes),
            "seconds": round(self.seconds, 2), "ignored_files": self.ignored,
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes],
        }


# -- inputs and identities ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FoundFile:
    """A media file to process and the folder argument it was found under (None if named directly)."""

    path: Path
    root: Path | None = None


def collect_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[FoundFile], list[str]]:
    """Expand folders (recursively) into media files; return (files, ignored non-media files).

    Files named explicitly are kept whatever their extension (a bad one fails later, listed);
    inside folders only video/image extensions count, and hidden files are skipped.
    """
    found: dict[Path, FoundFile] = {}
    ignored: list[str] = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            found.setdefault(p, FoundFile(p))
            continue
        for child in sorted(p.rglob("*")):
            if not child.is_file() or any(s.startswith(".") for s in child.relative_to(p).parts):
                continue
            if is_media_path(child):
                found.setdefault(child, FoundFile(child, p))
            else:
                ignored.append(str(child))
    return list(found.values()), ignored


def read_identity_csv(path: str | os.PathLike) -> dict[str, str]:
    """Read a CSV with columns ``path`` (or ``file``/``video``) and ``identity``."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BadInputError(f"cannot read identity CSV {path}: {exc.strerror}") from exc
    if not rows:
        raise BadInputError(f"identity CSV {path} has no rows")
    key = next((k for k in ("path", "file", "video") if k in rows[0]), None)
    if key is None or "identity" not in rows[0]:
        raise BadInputError(f"identity CSV {path} needs columns 'path' (or 'file') and 'identity', "
                            f"found {list(rows[0])}")
    return {r[key].strip(): r["identity"].strip() for r in rows if r.get(key)}


def identity_of(found: FoundFile, rule: str = "auto") -> tuple[str, str]:
    """(identity, rule used) of one file.

    ``folder``: the name of the folder holding the file. ``stem``: the file name (one person per
    file). ``auto``: a file inside a sub-folder of a folder argument belongs to that sub-folder's
    person (``people/alice/clip1.mp4`` is alice, also for VoxCeleb's ``id/video/clip.mp4``); a
    file named directly, or lying flat in the folder argument, is its own person.
    """
    p = found.path
    if rule == "folder":
        return slug(p.resolve().parent.name), "folder"
    if rule == "stem" or found.root is None or p.parent == found.root:
        return slug(p.stem), "stem" if rule == "stem" else "auto:file"
    return slug(p.relative_to(found.root).parts[0]), "auto:subfolder"


def assign_identities(files: Sequence[FoundFile], rule: str = "auto",
                      table: dict[str, str] | None = None) -> list[VideoJob]:
    """Give each file an identity: from a CSV table (path, file name or stem), else by ``rule``."""
    jobs = []
    for f in files:
        if table is not None:
            ident = next((table[k] for k in (str(f.path), f.path.name, f.path.stem) if k in table),
                         None)
            if ident is None:
                raise BadInputError(f"{f.path}: not listed in the identity CSV")
            jobs.append(VideoJob(str(f.path), slug(ident), "csv"))
        else:
            jobs.append(VideoJob(str(f.path), *identity_of(f, rule)))
    return jobs


def slug(text: str) -> str:
    """A file-system-safe name (letters, digits, dot, dash, underscore)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return s or "unnamed"


# -- one video ---------------------------------------------------------------------------------
def video_dir(out_dir: Path, identity: str, video_id: str) -> Path:
    """Where a finished video lives in the corpus."""
    return out_dir / identity / video_id


def prepare_video(job: VideoJob, out_dir: str | os.PathLike, config: PrepareConfig,
                  backend: FaceBackend) -> VideoOutcome:
    """Prepare one video (or image) into ``out_dir``; never raises for bad input, reports it."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    outcome = VideoOutcome(job.path, job.identity, "failed")
    try:
        digest = sha256_file(job.path) if Path(job.path).is_file() else ""
        outcome.video_id = f"{slug(Path(job.path).stem)}-{digest[:8]}"
        final = video_dir(out_dir, job.identity, outcome.video_id)
        record = _read_record(final / RECORD)
        if record is not None:
            outcome.status = "exists"
            outcome.frames_kept = len(record["frames_kept"])
            outcome.frames_skipped = len(record["frames_skipped"])
            return outcome
        if final.exists():  # damaged from outside (finished videos are renamed in whole): redo it
            shutil.rmtree(final)
        tmp = out_dir / TMP_DIR / f"{outcome.video_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            record = _build_video(job, digest, outcome.video_id, tmp, config, backend)
            outcome.frames_kept = len(record["frames_kept"])
            outcome.frames_skipped = len(record["frames_skipped"])
            if outcome.frames_kept < min(config.min_frames, record["frames_sampled"]):
                reasons = sorted({f["reason"] for f in record["frames_skipped"]})
                raise BadInputError(f"only {outcome.frames_kept} of {record['frames_sampled']} "
                                    f"sampled frames have a face ({'; '.join(reasons)})")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        outcome.status = "done"
    except SfumatoError as exc:
        outcome.reason = str(exc).replace(f"{job.path}: ", "")
    except OSError as exc:
        outcome.reason = f"{exc.strerror or exc} ({exc.filename or job.path})"
    finally:
        outcome.seconds = round(time.perf_counter() - start, 3)
    return outcome


def _build_video(job: VideoJob, digest: str, video_id: str, tmp: Path, config: PrepareConfig,
                 backend: FaceBackend) -> dict:
    ext = config.image_format
    (tmp / "frames").mkdir(parents=True)
    if config.landmark_images:
        (tmp / "landmark_images").mkdir()
    # Sampled frames are far apart, so detect on every one; the tracker still keeps to one person.
    track = track_video(job.path, backend, TrackerConfig(detect_every=1, face_index=config.face_index),
                        sample=config.frames_per_video, keep_frames=True)
    info, truncated, warning = track.info, track.truncated, track.warning
    missing = track.missing()  # unreadable frames first, then faceless ones, as records always listed them
    skipped = [{"index": m["index"], "reason": "frame not decodable (file truncated?)"}
               for m in missing if m["status"] == NOT_DECODED]
    skipped += [{"index": m["index"], "reason": m["reason"]} for m in missing if m["status"] == NO_FACE]
    kept, pts_frame, pts_crop, matrices = [], [], [], []
    for j in np.flatnonzero(track.found):
        idx, frame, points = int(track.indices[j]), track.frames[j], track.points[j]
        crop, local, transform = crop_face(frame, points, config.crop)
        name = f"{idx:06d}.{ext}"
        write_image(tmp / "frames" / name, crop)
        if config.landmark_images:
            write_image(tmp / "landmark_images" / f"{idx:06d}.png", landmark_image(local, config.crop.size))
        kept.append(idx)
        pts_frame.append(points)
        pts_crop.append(local)
        matrices.append(transform.matrix)
    buf = io.BytesIO()
    np.savez_compressed(
        buf, frame_indices=np.asarray(kept, np.int64),
        points=np.asarray(pts_crop, np.float32).reshape(-1, 68, 2),
        points_frame=np.asarray(pts_frame, np.float32).reshape(-1, 68, 2),
        crop_matrices=np.asarray(matrices, np.float64).reshape(-1, 2, 3))
    write_bytes_atomic(tmp / "landmarks.npz", buf.getvalue())
    record = {
        "video_id": video_id, "identity": job.identity, "identity_rule": job.identity_rule,
        "source_path": str(Path(job.path).resolve()), "source_sha256": digest,
        "media": info.to_dict(), "fps": info.fps, "frame_count": info.frame_count,
        "frames_sampled": len(_wanted(info.frame_count, config)),
        "frames_kept": kept, "frames_skipped": sorted(skipped, key=lambda s: s["index"]),
        "truncated": truncated, "warning": warning,
        "backend": backend.describe(), "crop": config.crop.to_dict(),
        "files": {"frames": f"frames/{{index:06d}}.{ext}",
                  "landmark_images": "landmark_images/{index:06d}.png"
                  if config.landmark_images else None, "landmarks": "landmarks.npz"},
        "sfumato_version": __version__,
    }
    write_bytes_atomic(tmp / RECORD, json.dumps(record, indent=1).encode())
    return record


def _wanted(frame_count: int, config: PrepareConfig) -> list[int]:
    return evenly_spaced_indices(frame_count, config.frames_per_video)


# -- the corpus --------------------------------------------------------------------------------
_WORKER_BACKEND: FaceBackend | None = None  # one per worker process, built by its initializer


def _backend_for(config: PrepareConfig) -> FaceBackend:
    kwargs = {"detector": config.detector, "detect_max_side": config.detect_max_side}
    if config.backend == "fan":
        kwargs["weights"] = config.fan_weights
    return create_backend(config.backend, **kwargs)


def _worker_init(config: PrepareConfig) -> None:
    global _WORKER_BACKEND
    _WORKER_BACKEND = _backend_for(config)


def _worker_run(job: VideoJob, out_dir: str, config: PrepareConfig) -> VideoOutcome:
    return prepare_video(job, out_dir, config, _WORKER_BACKEND)


def check_config_stamp(out_dir: Path, config: PrepareConfig) -> None:
    """Stamp ``out_dir`` with the settings, or refuse if it was made with different ones."""
    path = out_dir / CONFIG_FILE
    stamp = config.stamp()
    if path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in stamp.items() if old.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ConfigMismatchError(f"{out_dir} was prepared with other settings ({shown}); "
                                      "use another --out folder or the same settings")
    else:
        write_bytes_atomic(path, json.dumps(stamp, indent=1).encode())


def _read_record(path: Path) -> dict | None:
    """A video's record, or None when it is absent or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "frames_kept" in record else None


def read_corpus(out_dir: str | os.PathLike) -> list[dict]:
    """The records of every finished video in a corpus folder, sorted by identity and id."""
    out = Path(out_dir)
    paths = [p for p in out.glob(f"*/*/{RECORD}") if not p.parts[-3].startswith(".")]
    records = [r for r in map(_read_record, paths) if r is not None]
    return sorted(records, key=lambda r: (r["identity"], r["video_id"]))


def write_index(out_dir: Path) -> list[dict]:
    """Rewrite ``corpus.json`` from the finished videos' records and return them."""
    records = read_corpus(out_dir)
    index = {
        "sfumato_version": __version__,
        "identities": sorted({r["identity"] for r in records}),
        "videos": [{"identity": r["identity"], "video_id": r["video_id"],
                    "dir": f"{r['identity']}/{r['video_id']}", "frames": len(r["frames_kept"]),
                    "source_path": r["source_path"], "source_sha256": r["source_sha256"]}
                   for r in records],
    }
    write_bytes_atomic(out_dir / INDEX_FILE, json.dumps(index, indent=1).encode())
    return records


def prepare_corpus(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   config: PrepareConfig = PrepareConfig(), identities_csv: str | None = None,
                   workers: int = 1, progress: bool = False,
                   on_outcome: Callable[[VideoOutcome], None] | None = None) -> PrepareSummary:
    """Prepare every video/image in ``inputs`` (files or folders) into a corpus at ``out_dir``.

    Good inputs are done even when others are bad; bad ones are listed with the reason. Rerunning
    with the same arguments skips finished videos. ``workers`` > 1 uses that many processes.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    files, ignored = collect_inputs(inputs)
    if not files:
        raise BadInputError("no video or image files found in the inputs")
    table = read_identity_csv(identities_csv) if identities_csv else None
    jobs = assign_identities(files, config.identity_from, table)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"cannot create output folder {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise BadInputError(f"cannot write into output folder {out}: permission denied")
    check_config_stamp(out, config)
    # Leftovers of a killed run: never complete, always safe to remove.
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    outcomes: list[VideoOutcome] = []
    bar = tqdm(total=len(jobs), unit="video", disable=not progress, desc="prepare")

    def record(o: VideoOutcome) -> None:
        outcomes.append(o)
        bar.set_postfix_str(f"{Path(o.path).name}: {o.status}", refresh=False)
        bar.update(1)
        if on_outcome is not None:
            on_outcome(o)

    try:
        if workers <= 1 or len(jobs) == 1:
            backend = _backend_for(config)
            for job in jobs:
                record(prepare_video(job, out, config, backend))
        else:
            ctx = multiprocessing.get_context("spawn")  # no inherited threads or dlib state
            with cf.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx,
                                        initializer=_worker_init, initargs=(config,)) as pool:
                futures = [pool.submit(_worker_run, j, str(out), config) for j in jobs]
                try:
                    for fut in cf.as_completed(futures):
                        record(fut.result())
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
        write_index(out)
        with contextlib.suppress(OSError):
            (out / TMP_DIR).rmdir()  # only if empty: a crashed worker's folder stays for inspection
    order = {j.path: k for k, j in enumerate(jobs)}
    outcomes.sort(key=lambda o: order[o.path])
    summary = PrepareSummary(str(out), outcomes, ignored, time.perf_counter() - start)
    write_bytes_atomic(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=1).encode())
    return summary
