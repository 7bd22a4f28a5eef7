"""``sfumato detect robustness``: p(fake) of real clips as their face shrinks and their compression
grows, for one or more detectors side by side (before / after degradation-balanced training).

A detector that learnt "soft, small face = fake" calls real interview crops fake; this sweep shows
it. Each real clip's face crops (cut at 256 px from the c0 file) are shrunk to ``size`` px and
scaled back (a face that small in the frame), or sent through H.264 at ``crf`` as one frame, then
scored by the backbone (the fusion's r needs whole frames; the shortcut, if any, is the backbone's).
The clip's score is the mean over its frames, as in evaluation.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np

from generator.errors import BadInputError
from generator.io.files import write_bytes_atomic

SIZES = (48, 64, 96, 128, 192, 256)  # face side in pixels
CRFS = (0, 18, 23, 28, 33, 40, 45)  # H.264 constant rate factor
CUT = 256  # crops are cut at this side, then degraded, then resized to each detector's input


def real_crops(dataset: str | os.PathLike, split: str = "val", frames: int = 8) -> dict[str, np.ndarray]:
    """Face crops (``CUT`` px) of the split's real clips (least compressed file), by clip id."""
    from detector.data.samples import CACHE_DIR, cached_faces, sample_key
    from detector.evaluate import dataset_rows
    from generator.faces.backends import create_backend
    from generator.faces.crop import DETECTOR_CROP

    best: dict[str, tuple] = {}
    for f, r in dataset_rows(dataset, split, with_perturbed=False):
        # each clip's least compressed file (c0 in a built dataset)
        if r.label == "real" and (r.clip_id not in best or (r.crf or 0) < (best[r.clip_id][1].crf or 0)):
            best[r.clip_id] = (f, r)
    rows = [best[k] for k in sorted(best)]
    if not rows:
        raise BadInputError(f"{dataset}: no real clips in split {split!r}")
    backend, out = None, {}
    for folder, row in rows:
        key = sample_key(row, frames, CUT)
        if backend is None and not (folder / CACHE_DIR / f"{key}.npz").is_file():
            backend = create_backend("dlib")
        got = cached_faces(row.resolve(folder), folder / CACHE_DIR, key, frames, backend,
                           dataclasses.replace(DETECTOR_CROP, size=CUT))
        if got.found.any():
            out[row.clip_id] = got.crops[got.found]
    return out


def shrink(crops: np.ndarray, size: int) -> np.ndarray:
    """Crops as a face of ``size`` px would look: area-downscaled and scaled back up."""
    if size >= crops.shape[1]:
        return crops
    s = crops.shape[1]
    return np.stack([cv2.resize(cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA), (s, s),
                                interpolation=cv2.INTER_LINEAR) for c in crops])


def compress(crops: np.ndarray, crf: int) -> np.ndarray:
    """Crops through H.264 (libx264, yuv420p) at ``crf``."""
    from detector.data.degrade import h264_roundtrip

    return np.stack([h264_roundtrip(c, crf) for c in crops])


def sweep(dataset: str | os.PathLike, detectors: dict[str, str | os.PathLike], split: str = "val",
          sizes: tuple[int, ...] = SIZES, crfs: tuple[int, ...] = CRFS, frames: int = 8) -> dict:
    """Per detector, per face size and per CRF: every real clip's mean backbone p(fake)."""
    from detector.evidence.features import resize_crops
    from detector.model import load_detector, predict

    clips = real_crops(dataset, split, frames)
    variants = {("size", s): {c: shrink(x, s) for c, x in clips.items()} for s in sizes}
    variants.update({("crf", q): {c: compress(x, q) for c, x in clips.items()} for q in crfs})
    result = {"dataset": str(dataset), "split": split, "clips": sorted(clips), "frames": frames,
              "sizes": list(sizes), "crfs": list(crfs), "detectors": {}}
    for name, path in detectors.items():
        model, meta = load_detector(path)
        size = int(meta["input_size"])
        curves: dict[str, dict] = {"size": {}, "crf": {}}
        for (kind, value), by_clip in variants.items():
            p = {c: float(predict(model, resize_crops(x, size)).mean()) for c, x in by_clip.items()}
            curves[kind][str(value)] = p
        result["detectors"][name] = {"file": str(path), "input_size": size, **curves}
    return result


def plot(result: dict) -> bytes:
    """Two panels (face size, CRF): median p(fake) of the real clips per detector, with their range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, kind, label in ((axes[0], "size", "face size (px)"), (axes[1], "crf", "H.264 CRF")):
        xs = result["sizes"] if kind == "size" else result["crfs"]
        for name, d in result["detectors"].items():
            ys = np.array([[d[kind][str(x)][c] for c in result["clips"]] for x in xs])
            line, = ax.plot(xs, np.median(ys, axis=1), "o-", label=name)
            ax.fill_between(xs, ys.min(axis=1), ys.max(axis=1), alpha=0.15, color=line.get_color())
        ax.set_xlabel(label)
        ax.set_ylabel("p(fake) of real clips (median, range)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(f"real {result['split']} clips ({len(result['clips'])}) vs {label}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def run(dataset: str | os.PathLike, detectors: dict[str, str | os.PathLike], out: str | os.PathLike,
        split: str = "val", frames: int = 8) -> dict:
    """``sweep`` and write ``out``/robustness.json and robustness.png."""
    result = sweep(dataset, detectors, split, frames=frames)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "robustness.json", json.dumps(result, indent=1).encode())
    write_bytes_atomic(out / "robustness.png", plot(result))
    return result
