"""The clip metadata schema of sfumato datasets: one row per clip file (a clip at one compression,
optionally perturbed), written as JSONL (complete, with per-frame realism scores) and CSV (flat).

Written by ``sfumato dataset build / perturb / import``; read by exports, detector training and eval.
Paths in a row are relative to the dataset folder (imported datasets may hold absolute ones).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np

from generator.errors import BadInputError
from generator.io.files import write_bytes_atomic

METADATA_JSONL = "metadata.jsonl"
METADATA_CSV = "metadata.csv"
LABELS = ("real", "fake")
SPLITS = ("train", "val", "test")
COMPRESSIONS = {"c0": 0, "c23": 23, "c40": 40}  # FaceForensics++ names -> H.264 CRF


@dataclasses.dataclass
class ClipRecord:
    """One clip file of a dataset and everything about how it was made."""

    id: str  # unique over the dataset: clip_id + compression (+ perturbation)
    clip_id: str  # the clip, shared by its compressions
    label: str  # real | fake
    split: str  # train | val | test
    method: str  # real | self | cross (sfumato), or an imported method name
    source_identity: str  # the person shown
    driver_identity: str  # whose motion drives it (= source for real and self)
    shots: int | None = None  # T, few-shot frames of the source identity (fakes)
    mode: str | None = None  # FF (feed-forward) | FT (fine-tuned) (fakes)
    finetune_steps: int | None = None
    checkpoint_sha256: str | None = None  # generator checkpoint (fakes)
    seed: int | None = None  # this clip's seed (derived from the build seed and clip id)
    compression: str = "c0"  # c0 | c23 | c40 | unknown
    crf: int | None = 0
    perturbation: str = "none"  # e.g. GB:3, JPEG:2, mix:CS1+GB4
    frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    realism_mean: float | None = None  # r summary over frames (identity-agnostic D, eq. 3)
    realism_std: float | None = None
    realism_min: float | None = None
    realism_median: float | None = None
    realism_max: float | None = None
    realism: list[float] | None = None  # r per frame (JSONL only; NaN frames without a face -> None)
    manifest: str = "Absent"  # C2PA state of ``path`` (manifest-free copy for fakes)
    signed_manifest: str | None = None  # C2PA state of ``signed_path`` (fakes)
    path: str = ""  # the clip file detectors read
    sha256: str = ""
    signed_path: str | None = None  # fakes: the C2PA-signed original
    signed_sha256: str | None = None
    source_video: str | None = None  # where the real frames came from
    source_video_sha256: str | None = None
    driver_video_sha256: str | None = None
    start_frame: int | None = None  # segment of the source video [start, end)
    end_frame: int | None = None
    driver_start_frame: int | None = None
    origin: str = "sfumato"  # sfumato | imported
    parent_id: str | None = None  # perturbed rows: the row they were made from

    def to_dict(self) -> dict:
        """JSON-ready dict in field order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClipRecord:
        """A record from a dict (unknown keys are an error, missing optional ones take defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise BadInputError(f"unknown metadata fields: {', '.join(sorted(unknown))}")
        return cls(**d)

    def resolve(self, dataset: str | os.PathLike, signed: bool = False) -> Path:
        """Absolute path of this clip's file (or its signed copy) in ``dataset``."""
        rel = self.signed_path if signed else self.path
        if not rel:
            raise BadInputError(f"{self.id}: no {'signed ' if signed else ''}file recorded")
        return Path(dataset) / rel


FIELDS = [f.name for f in dataclasses.fields(ClipRecord)]
CSV_FIELDS = [f for f in FIELDS if f != "realism"]


def realism_summary(r: np.ndarray) -> dict:
    """mean / std / min / median / max of per-frame r (NaN frames ignored; None when all are NaN)."""
    r = np.asarray(r, np.float64)
    ok = r[np.isfinite(r)]
    if not len(ok):
        return {k: None for k in ("realism_mean", "realism_std", "realism_min", "realism_median",
                                  "realism_max")}
    return {"realism_mean": round(float(ok.mean()), 5), "realism_std": round(float(ok.std()), 5),
            "realism_min": round(float(ok.min()), 5), "realism_median": round(float(np.median(ok)), 5),
            "realism_max": round(float(ok.max()), 5)}


def realism_list(r: np.ndarray) -> list[float | None]:
    """Per-frame r for JSON (5 decimals; frames without a face as None)."""
    return [round(float(v), 5) if np.isfinite(v) else None for v in np.asarray(r, np.float64)]


def jsonl_bytes(records: list[ClipRecord]) -> bytes:
    """Records as JSONL, one per line, in the given order (deterministic bytes)."""
    return "".join(json.dumps(r.to_dict(), sort_keys=False) + "\n" for r in records).encode()


def csv_bytes(records: list[ClipRecord]) -> bytes:
    """Records as CSV (no per-frame realism), deterministic bytes."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items()})
    return buf.getvalue().encode()


def write_metadata(dataset: str | os.PathLike, records: list[ClipRecord]) -> None:
    """Write metadata.jsonl and metadata.csv into ``dataset`` (sorted by id), atomically."""
    records = sorted(records, key=lambda r: r.id)
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise BadInputError(f"duplicate clip ids: {', '.join(dup[:5])}")
    write_bytes_atomic(Path(dataset) / METADATA_JSONL, jsonl_bytes(records))
    write_bytes_atomic(Path(dataset) / METADATA_CSV, csv_bytes(records))


def read_metadata(dataset: str | os.PathLike) -> list[ClipRecord]:
    """The rows of a dataset's metadata.jsonl; a clear error when it is missing or damaged."""
    path = Path(dataset) / METADATA_JSONL
    if not path.is_file():
        raise BadInputError(f"{dataset}: no {METADATA_JSONL} (not a sfumato dataset, or its build "
                            "has not finished: rerun `sfumato dataset build` or `dataset merge`)")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(ClipRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise BadInputError(f"{path}:{n}: not a metadata row ({exc})") from None
    return records
