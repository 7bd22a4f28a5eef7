"""What ``sfumato scan`` returns: typed results whose ``to_dict()`` is scan's JSON (kept apart from the
scanner, so the report and other readers need not import it)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from detector.data.samples import FaceSamples
    from detector.evidence.calibration import Calibration
    from detector.evidence.clip import Coverage, StreamSummary, WindowEvidence
    from generator.io.video import MediaInfo

FAKE, REAL, UNSURE, NO_FACE = "fake", "real", "unsure", "no face"
EXIT_CODES = {REAL: 0, FAKE: 20, UNSURE: 21, NO_FACE: 22}


@dataclasses.dataclass(frozen=True)
class Caveat:
    """A reason for less confidence; ``undermines``: under it the detector's measured errors are too
    frequent for a fake or real verdict to stand (it becomes unsure unless ScanConfig says keep)."""

    kind: str  # small_face | sparse_face | compression | still | short | more_faces
    text: str
    undermines: bool = False


@dataclasses.dataclass(frozen=True)
class MissingFrame:
    """A sampled frame of a face track without that face, and why."""

    frame: int
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FaceTrack:
    """One followed face: its probability of fake and label, and its per-frame evidence.

    The per-frame lists hold the JSON view of ``Evidence`` (rounded, None where unknown): the report
    formats these very values, so the page and the JSON agree to the digit."""

    track: int
    probability_fake: float | None  # None: the face was found in no sampled frame
    label: str
    frames: list[int]
    face_found: list[bool]
    fake_probability: list[float | None]
    realism: list[float | None]
    features: dict[str, float | None]
    frames_without_face: list[MissingFrame]
    # in memory only (the HTML report's thumbnails and heatmaps), never in the JSON
    samples: FaceSamples | None = dataclasses.field(default=None, repr=False)
    heatmaps: dict[int, np.ndarray] | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready, in the documented key order (without the in-memory samples and heatmaps)."""
        return {"track": self.track, "probability_fake": self.probability_fake, "label": self.label,
                "frames": self.frames, "face_found": self.face_found,
                "fake_probability": self.fake_probability, "realism": self.realism,
                "features": self.features,
                "frames_without_face": [m.to_dict() for m in self.frames_without_face]}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The file's verdict: its most suspicious face's label after the caveats, and how it was reached."""

    label: str
    probability_fake: float | None
    threshold: float
    unsure_band: float
    method: str  # stacked (evidence streams, per window) | fused | backbone
    track: int  # the face the verdict is about
    calibration: Calibration | None  # None: the threshold is not calibrated for a false-positive rate
    reliability: str  # low | normal
    caveats: list[str]
    label_before_caveats: str
    # stacked verdicts: the most suspicious window (index, start and end in seconds) ...
    window: dict | None = None
    # ... and the clip's condition buckets (face size, bits per pixel, length) the threshold was checked in
    buckets: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready (the calibration as ``Calibration.to_dict`` gives it)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ModelVersions:
    """Which models gave the evidence."""

    detector: str
    detector_sha256: str
    backbone: str
    input_size: int
    realism: dict | None  # the realism scorer's checkpoint facts; None when the verdict does not read r
    method: str  # stacked | fused | backbone
    streams: dict | None = None  # the stream bundle (file, sha256, fused streams); None: not stacked

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ScanResult:
    """The evidence about one scanned file (see the module docstring)."""

    file: str
    sha256: str
    media: MediaInfo
    verdict: Verdict
    # the provenance check's own report (``Verification.to_dict()``), or {"state": "Unreadable",
    # "message": ...} when it failed: kept as that dict, which the provenance package defines
    manifest: dict
    notes: list[str]
    faces: list[FaceTrack]
    models: ModelVersions
    seconds: float
    # per window of the file (4 s by default), every evidence stream's score and explanation
    windows: list[WindowEvidence] = dataclasses.field(default_factory=list)
    coverage: Coverage | None = None
    evidence: list[StreamSummary] = dataclasses.field(default_factory=list)  # per stream, its top window
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def verdict_face(self) -> FaceTrack:
        """The face the verdict is about."""
        return self.faces[self.verdict.track]

    def to_dict(self) -> dict:
        """JSON-ready (what ``sfumato scan --json`` prints for one file)."""
        return {"file": self.file, "sha256": self.sha256, "media": self.media.to_dict(),
                "verdict": self.verdict.to_dict(), "manifest": self.manifest, "notes": self.notes,
                "faces": [f.to_dict() for f in self.faces], "models": self.models.to_dict(),
                "seconds": self.seconds, "evidence": [e.to_dict() for e in self.evidence],
                "windows": [w.to_dict() for w in self.windows],
                "coverage": dataclasses.asdict(self.coverage) if self.coverage else None,
                "stage_seconds": self.stage_seconds}


@dataclasses.dataclass(frozen=True)
class ScanError:
    """A file of a scan that gave no result, and why."""

    file: str
    error: str

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ScanSummary:
    """Counts over the files of one scan."""

    files: int
    verdicts: dict[str, int]  # per label of EXIT_CODES
    errors: int
    out: str | None = None  # the folder the results went to (folder scans)

    def to_dict(self) -> dict:
        """JSON-ready (``out`` only where results were written)."""
        out = {"files": self.files, "verdicts": self.verdicts, "errors": self.errors}
        if self.out is not None:
            out["out"] = self.out
        return out


@dataclasses.dataclass
class ScanRun:
    """What ``scan_paths`` found: per file a result or an error, and the summary."""

    results: list[ScanResult | ScanError]
    summary: ScanSummary

    def to_dict(self) -> dict:
        """JSON-ready (what ``sfumato scan --json`` prints for several files or a folder)."""
        return {"results": [r.to_dict() for r in self.results], "summary": self.summary.to_dict()}
