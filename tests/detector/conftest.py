"""Helpers for the detector tests: tiny datasets in sfumato's metadata format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector.data.schema import ClipRecord


def add_clip(root: Path, rows: list[ClipRecord], clip_id: str, frames: list[np.ndarray], label: str,
             split: str, compressions: tuple[str, ...] = ("c23",)) -> None:
    """Encode ``frames`` as videos/<clip_id>/<compression>.mp4 (bit-reproducibly) and add their rows."""
    from detector.data.schema import COMPRESSIONS
    from generator.io.files import sha256_file
    from generator.io.video import write_video

    for comp in compressions:
        rel = f"videos/{clip_id}/{comp}.mp4"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, frames, fps=25, crf=COMPRESSIONS[comp], reproducible=True)
        rows.append(ClipRecord(id=f"{clip_id}_{comp}", clip_id=clip_id, label=label, split=split,
                               method="real" if label == "real" else "self", source_identity=clip_id,
                               driver_identity=clip_id, compression=comp, crf=COMPRESSIONS[comp],
                               frames=len(frames), fps=25.0, path=rel, sha256=sha256_file(root / rel)))


def swap_fake(frames: list[np.ndarray]) -> list[np.ndarray]:
    """'Fakes' with red and blue swapped: a cue a detector can learn in a few steps."""
    return [np.ascontiguousarray(f[..., ::-1]) for f in frames]
