"""One planned clip made into files: rendered (``ClipMaker``), encoded at each compression, the fakes
C2PA-signed beside a manifest-free copy, scored (r per frame) and described by its metadata rows.

Each clip is made in ``OUT/.tmp/<clip_id>`` and renamed into ``OUT/videos/<clip_id>``; the caller
then writes its record, so a killed build never leaves a half-written clip behind a record.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.datasets.hard import DetectorJudge, choose_candidate
from benchmarks.datasets.plan import ClipPlan
from benchmarks.datasets.render import ClipMaker, SkipClip
from detector.data.schema import COMPRESSIONS, ClipRecord, realism_list, realism_summary
from generator.errors import SfumatoError
from generator.io.files import sha256_file, write_bytes_atomic


def make_clip(maker: ClipMaker, clip: ClipPlan, out: Path, threshold: float | None = None,
              judge: DetectorJudge | None = None) -> dict:
    """Render, encode, sign and score one clip into ``out/videos/<clip_id>``; returns its record.

    With hard-example settings a fake is the best of its candidates (``choose_candidate``), or,
    when none passes, recorded as ``filtered`` with every candidate's scores.
    """
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
        _write_track(tmp / "track.npz", matrices, points, found, maker.size)
        rows = [_make_file(maker, clip, tmp, comp, frames, matrices, points, found)
                for comp in cfg.compressions]
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


def _write_track(path: Path, matrices: np.ndarray, points: np.ndarray, found: np.ndarray,
                 crop_size: int) -> None:
    """track.npz: the crops and landmarks the clip was made with, so derived files can be scored again."""
    buf = io.BytesIO()
    np.savez_compressed(buf, crop_matrices=matrices, points=points, face_found=found,
                        crop_size=np.int64(crop_size))
    write_bytes_atomic(path, buf.getvalue())


def _make_file(maker: ClipMaker, clip: ClipPlan, tmp: Path, comp: str, frames: np.ndarray,
               matrices: np.ndarray, points: np.ndarray, found: np.ndarray) -> dict:
    """One compression of a clip: encoded (and, for a fake, signed) into ``tmp``; returns its row."""
    from generator.io.video import VideoWriter

    cfg = maker.config
    video = maker.videos[clip.target.video]
    t0 = time.perf_counter()
    name = f"{comp}.mp4"
    with VideoWriter(tmp / name, fps=video.fps, crf=COMPRESSIONS[comp], preset=cfg.x264_preset,
                     reproducible=True) as w:
        for f in frames:
            w.write(f)
    maker.seconds[f"encode_{comp}"] += time.perf_counter() - t0
    signed = _sign_copy(maker, clip, tmp, comp) if clip.label == "fake" else {}
    r = maker.realism(tmp / name, matrices, points, found)
    h, w_ = frames.shape[1:3]
    return ClipRecord(
        id=f"{clip.clip_id}_{comp}", clip_id=clip.clip_id, label=clip.label, split=clip.split,
        method=clip.method, source_identity=clip.source_identity,
        driver_identity=clip.driver_identity, shots=clip.shots, mode=clip.mode,
        finetune_steps=(cfg.finetune_steps if clip.mode == "FT" else 0) if clip.label == "fake"
        else None, checkpoint_sha256=maker.checkpoint_sha if clip.label == "fake" else None,
        seed=clip.seed, compression=comp, crf=COMPRESSIONS[comp], frames=len(frames), fps=video.fps,
        width=int(w_), height=int(h), **realism_summary(r), realism=realism_list(r),
        manifest="Absent", path=f"videos/{clip.clip_id}/{name}", sha256=sha256_file(tmp / name),
        source_video=video.source_path, source_video_sha256=video.source_sha256,
        driver_video_sha256=maker.videos[clip.driver.video].source_sha256,
        start_frame=clip.target.start, end_frame=clip.target.start + cfg.clip_frames,
        driver_start_frame=clip.driver.start, **signed).to_dict()


def _sign_copy(maker: ClipMaker, clip: ClipPlan, tmp: Path, comp: str) -> dict:
    """``<comp>.signed.mp4``: a C2PA-signed copy of a fake's file, verified; returns its row fields."""
    from generator.provenance.manifest import GenerationInfo, sign_generated
    from generator.provenance.verify import verify_file

    cfg = maker.config
    video = maker.videos[clip.target.video]
    t0 = time.perf_counter()
    shutil.copyfile(tmp / f"{comp}.mp4", tmp / f"{comp}.signed.mp4")
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
    return {"signed_path": f"videos/{clip.clip_id}/{comp}.signed.mp4",
            "signed_sha256": sha256_file(tmp / f"{comp}.signed.mp4"),
            "signed_manifest": state}


def _signing_ca(signing) -> list[Path]:
    """The local CA of the keys that sign (so their manifests verify as Trusted, as with the default
    keys); a user's own chain (--cert) is checked against their trust list elsewhere."""
    from generator.provenance.keys import KeyPaths

    if signing is None or signing.cert or not signing.keys_dir:
        return []
    ca = KeyPaths(Path(signing.keys_dir)).ca_cert
    return [ca] if ca.is_file() else []


