"""Training fakes for the clip-dynamics stream, made from real clips alone (no other tool's samples).

Each kind imitates one trace that generators share and cameras do not (``../shared/design/
detection.md``), on the real clip's own pixels and motion, so what differs from the real clip is the
trace and nothing else (as self-blended images do for frame artefacts):

- ``still_rigid``: the clip's first frame moved rigidly (a similarity transform) with the head, as a
  whole picture: no new sensor noise, background moving exactly with the head;
- ``still_face``: the first frame's face region moved with the head over the frozen first frame
  (feathered), as one-image animation pasted back into its still picture does;
- ``duplicated``: every other frame repeated (a low frame-rate render raised to the clip's rate);
- ``interpolated``: every other frame replaced by the mean of its neighbours (frame interpolation);
- ``sfumato``: sfumato's own generator animating the first frame with the clip's motion, pasted back
  into that still frame (``generator.generate``, feed-forward, unsigned so provenance cannot tell).

The fakes are written as H.264 (CRF 23, as the shared clips were re-encoded) and carry the real
clip's identity: identity-grouped folds keep them beside their real clip.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from generator.errors import BadInputError
from generator.faces.tracking import TrackerConfig, track_video
from generator.io.encode import write_image, write_video
from generator.io.files import sha256_file

KINDS = ("still_rigid", "still_face", "duplicated", "interpolated", "sfumato")
CHEAP_KINDS = KINDS[:4]


@dataclasses.dataclass(frozen=True)
class ClipFake:
    """One made fake: where it is, what kind, and the real clip it came from."""

    path: str
    kind: str
    source: str
    source_sha256: str
    frames: int


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32))
    return m if m is not None else np.eye(2, 3, dtype=np.float64)


def still_rigid(first: np.ndarray, points: np.ndarray) -> list[np.ndarray]:
    """The first frame moved as a whole with the head (landmarks ``points``, NaN where lost)."""
    h, w = first.shape[:2]
    out, m = [], np.eye(2, 3)
    for p in points:
        if np.isfinite(p).all():
            m = _similarity(points[0], p)
        out.append(cv2.warpAffine(first, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return out


def still_face(first: np.ndarray, points: np.ndarray) -> list[np.ndarray]:
    """The first frame's head moved with the landmarks, pasted over the frozen first frame."""
    h, w = first.shape[:2]
    p0 = points[0]
    lo, hi = p0.min(axis=0), p0.max(axis=0)
    s = float(max(hi - lo))
    mask = np.zeros((h, w), np.float32)
    centre = tuple(int(v) for v in (lo + hi) / 2 - [0, 0.15 * s])
    cv2.ellipse(mask, centre, (int(0.75 * s), int(0.95 * s)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, 0.08 * s))[..., None]
    out, m = [], np.eye(2, 3)
    for p in points:
        if np.isfinite(p).all():
            m = _similarity(p0, p)
        face = cv2.warpAffine(first, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        alpha = cv2.warpAffine(mask, m, (w, h))[..., None]
        out.append((alpha * face + (1 - alpha) * first).round().astype(np.uint8))
    return out


def duplicated(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Every odd frame replaced by the one before it."""
    return [frames[i - (i % 2)] for i in range(len(frames))]


def interpolated(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Every odd frame replaced by the mean of its neighbours."""
    out = list(frames)
    for i in range(1, len(frames) - 1, 2):
        out[i] = ((frames[i - 1].astype(np.uint16) + frames[i + 1]) // 2).astype(np.uint8)
    return out


def make_clip_fakes(clip: str | os.PathLike, out_dir: str | os.PathLike, kinds: tuple[str, ...] = KINDS,
                    seconds: float = 4.0, backend=None, crf: int = 23) -> list[ClipFake]:
    """Make each kind of fake from the first ``seconds`` of ``clip`` into ``out_dir`` (files already
    there are kept: the job resumes)."""
    from generator.faces.backends import create_backend

    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise BadInputError(f"unknown clip-fake kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    clip, out_dir = Path(clip), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = backend or create_backend("dlib")
    digest = sha256_file(clip)
    targets = {k: out_dir / f"{clip.stem}__{k}.mp4" for k in kinds}
    todo = [k for k in kinds if not targets[k].is_file()]
    made = []
    if todo:
        from generator.io.video import probe

        fps = probe(clip).fps or 25.0
        n = max(2, int(round(seconds * fps)))
        track = track_video(clip, backend, TrackerConfig(detect_every=8), limit=n, keep_frames=True)
        frames = [f for f in track.frames[:n] if f is not None]
        points = track.points[:len(frames)]
        if len(frames) < 2 or not np.isfinite(points[0]).all():
            raise BadInputError(f"{clip}: no face in its first frame, or fewer than 2 frames")
        for kind in todo:
            if kind == "sfumato":
                _sfumato_still(clip, frames[0], len(frames), targets[kind], backend, crf)
                continue
            made_frames = {"still_rigid": lambda: still_rigid(frames[0], points),
                           "still_face": lambda: still_face(frames[0], points),
                           "duplicated": lambda: duplicated(frames),
                           "interpolated": lambda: interpolated(frames)}[kind]()
            write_video(targets[kind], made_frames, fps, crf=crf)
    from generator.io.video import probe

    for kind in kinds:
        made.append(ClipFake(str(targets[kind]), kind, str(clip), digest, probe(targets[kind]).frame_count))
    return made


def _sfumato_still(clip: Path, first: np.ndarray, frames: int, target: Path, backend, crf: int) -> None:
    from generator.inference import GenerateConfig
    from generator.inference.generate import generate
    from generator.provenance import SigningOptions

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "first.png"
        write_image(source, first)
        generate(target, [source], clip, config=GenerateConfig(end=frames, paste="source", crf=crf,
                                                                audio=False),
                 signing=SigningOptions(enabled=False), backend=backend)


@dataclasses.dataclass(frozen=True)
class ClipFakeRun:
    """What ``make_all_clip_fakes`` did."""

    clips: int
    made: int
    failed: int
    log: str


def make_all_clip_fakes(data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                        kinds: tuple[str, ...] = KINDS,
                        seconds: float = 4.0, progress: bool = False) -> ClipFakeRun:
    """``make_clip_fakes`` for every real clip of ``data_dir/index.csv`` into ``out_dir/files``, logged
    (one JSON line per fake, with the real clip's identity) to ``out_dir/made.jsonl``; resumable."""
    import csv
    import json

    from tqdm import tqdm

    from generator.faces.backends import create_backend

    index = Path(data_dir) / "index.csv"
    if not index.is_file():
        raise BadInputError(f"{index} not found: point at the folder that holds index.csv (../shared/data)")
    with index.open(newline="") as f:
        reals = [r for r in csv.DictReader(f) if r["label"] == "real"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "made.jsonl"
    backend = create_backend("dlib")
    made = failed = 0
    with log_path.open("a") as log:
        for r in tqdm(reals, desc="clip fakes", unit="clip", disable=not progress):
            try:
                fakes = make_clip_fakes(Path(data_dir) / r["path"], out / "files", kinds, seconds, backend)
            except BadInputError as exc:  # one unusable clip must not stop the run; it is logged
                log.write(json.dumps({"source": r["path"], "error": str(exc)}) + "\n")
                failed += 1
                continue
            for m in fakes:
                log.write(json.dumps({**dataclasses.asdict(m), "identity": r["identity"]}) + "\n")
            made += len(fakes)
    return ClipFakeRun(len(reals), made, failed, str(log_path))
