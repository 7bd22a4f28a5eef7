"""``sfumato scan``: evidence about one suspicious video or picture (or a folder of them).

Per file: the followed face in evenly spaced frames, its fake probability from the learned detector and
its realism score r from the generator's discriminator, per frame; a verdict from the fused,
calibrated probability with the threshold and the "unsure" band used; frames without a face reported
as such; the C2PA state (Trusted / Valid / Invalid with codes / Absent) and sfumato's generation
assertion when present (a tampered manifest is itself evidence); the model versions. As JSON, and as a
self-contained HTML report (``detector.report``: thumbnails, heatmaps, a timeline, the manifest panel).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from generator.errors import BadInputError, MissingWeightsError
from generator.io.files import sha256_file, write_bytes_atomic

if TYPE_CHECKING:
    from detector.data.samples import FaceSamples
    from detector.evidence.calibration import Calibration
    from generator.io.video import MediaInfo

BUNDLED_DETECTOR = Path(__file__).resolve().parent / "weights" / "sfumato_detector.safetensors"
FAKE, REAL, UNSURE, NO_FACE = "fake", "real", "unsure", "no face"
EXIT_CODES = {REAL: 0, FAKE: 20, UNSURE: 21, NO_FACE: 22}


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """How to scan."""

    frames: int = 32  # evenly spaced frames per video
    # on the probability of fake; None: the detector's calibration (a stated false-positive rate on
    # real validation clips, detector/evidence/calibration.py), else 0.5 with a band of 0.15
    threshold: float | None = None
    unsure_band: float | None = None  # |p - threshold| below this: unsure
    thumbnails: int = 8  # face thumbnails in the HTML report
    heatmaps: int = 3  # Grad-CAM maps of the most suspicious frames in the HTML report
    faces: int = 1  # face tracks to follow: the largest, then the next largest, ...
    # "unsure": a fake/real verdict under a caveat that undermines it (tiny face, face in few frames,
    # heavy compression) is reported as unsure, with the label it would have had; "keep": left as is
    unreliable: str = "unsure"

    def __post_init__(self):
        if self.unreliable not in ("unsure", "keep"):
            raise BadInputError(f"unreliable is unsure or keep, not {self.unreliable!r}")


LOW_FACE_PX = 64  # faces smaller than this (landmark box, frame pixels) are mostly upscaled pixels
# Compression this heavy makes the bundled detector call real faces fake (6 of 9 real test clips at c40).
# Bits per pixel is a rough cue (detailed content needs more bits at the same quantiser): the benchmark
# dataset's 62 real clips hold 0.005-0.026 (median 0.0125) at H.264 CRF 40 and 0.033-0.17 at CRF 23; the
# 85 downloaded clips of ../shared/data 0.028 and up. So only the harder half of c40 is flagged.
LOW_BITS_PER_PIXEL = 0.015


@dataclasses.dataclass(frozen=True)
class Caveat:
    """A reason for less confidence; ``undermines``: under it the detector's measured errors are too
    frequent for a fake or real verdict to stand (it becomes unsure unless ScanConfig says keep)."""

    kind: str  # small_face | sparse_face | compression | still | short | more_faces
    text: str
    undermines: bool = False


def reliability(samples, info, tracks_followed: int) -> list[Caveat]:
    """Why a verdict deserves less confidence than usual (empty: nothing known against it)."""
    notes = []
    found = samples.found
    if found.any():
        pts = samples.points[found]
        size = float(np.median((pts.max(axis=1) - pts.min(axis=1)).max(axis=1)))
        if size < LOW_FACE_PX:
            notes.append(Caveat("small_face", f"face under {LOW_FACE_PX} px ({size:.0f} px across): low "
                                "confidence, the detector sees mostly interpolated pixels", True))
        if found.mean() < 0.5:
            notes.append(Caveat("sparse_face", f"a face in only {int(found.sum())} of {len(found)} sampled "
                                "frames: low confidence", True))
    if info.kind == "video" and 0 < info.bits_per_pixel < LOW_BITS_PER_PIXEL:
        # measured on the test split (bundled detector): of the 27 files under this bound 5 of 7 real
        # ones were called fake and 3 of 20 fakes real, so neither verdict means much there
        notes.append(Caveat("compression", f"heavily compressed video ({info.bits_per_pixel:.3f} bits per "
                            "pixel): low confidence, real faces this compressed are often called fake", True))
    if info.kind != "video":
        notes.append(Caveat("still", "a still image: one frame of evidence, no temporal cues (lower "
                            "confidence than a video)"))
    elif samples.frame_count and samples.frame_count < 8:
        notes.append(Caveat("short", f"a very short clip ({samples.frame_count} frames): few frames of "
                            "evidence"))
    faces_seen = int(samples.faces_seen.max()) if samples.faces_seen is not None else 0
    if faces_seen > tracks_followed:
        notes.append(Caveat("more_faces", f"{faces_seen} faces in the picture, {tracks_followed} followed "
                            f"(the largest first): scan with --faces {faces_seen} to score the others"))
    return notes


def verdict(p: float, config: ScanConfig) -> str:
    """fake / real / unsure for a calibrated probability of fake."""
    if abs(p - config.threshold) < config.unsure_band:
        return UNSURE
    return FAKE if p >= config.threshold else REAL


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
    method: str  # fused | backbone
    track: int  # the face the verdict is about
    calibration: Calibration | None  # None: the threshold is not calibrated for a false-positive rate
    reliability: str  # low | normal
    caveats: list[str]
    label_before_caveats: str

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
    method: str  # fused | backbone

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

    @property
    def verdict_face(self) -> FaceTrack:
        """The face the verdict is about."""
        return self.faces[self.verdict.track]

    def to_dict(self) -> dict:
        """JSON-ready (what ``sfumato scan --json`` prints for one file)."""
        return {"file": self.file, "sha256": self.sha256, "media": self.media.to_dict(),
                "verdict": self.verdict.to_dict(), "manifest": self.manifest, "notes": self.notes,
                "faces": [f.to_dict() for f in self.faces], "models": self.models.to_dict(),
                "seconds": self.seconds}


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


class Scanner:
    """The detector (with its fusion), the realism scorer and one dlib backend, loaded once."""

    def __init__(self, detector: str | os.PathLike | None = None, generator: str | os.PathLike | None = None,
                 config: ScanConfig = ScanConfig()):
        from detector.evidence.fusion import FusionModel
        from detector.evidence.realism import load_realism
        from detector.model import load_detector
        from generator.faces.backends import create_backend

        path = Path(detector) if detector else BUNDLED_DETECTOR
        if not path.is_file():
            raise MissingWeightsError(
                f"detector {path} not found: train one with `sfumato detect train DATASET` (and pass it with "
                "--detector), or reinstall sfumato for the bundled one")
        from detector.evidence.calibration import calibration_from

        self.path = path
        self.model, self.meta = load_detector(path)
        self.calibration = calibration_from(self.meta)
        cal = self.calibration
        if config.threshold is None:  # the explicit options win over the file's calibration
            config = dataclasses.replace(config, threshold=cal.threshold if cal else 0.5)
        if config.unsure_band is None:
            config = dataclasses.replace(config, unsure_band=cal.unsure_band if cal else 0.15)
        self.config = config
        self.calibrated = cal is not None and (config.threshold, config.unsure_band) == (
            cal.threshold, cal.unsure_band)
        self.fusion = FusionModel(**self.meta["fusion"]) if self.meta.get("fusion") else None
        # r is computed only when the verdict reads it (the fusion keeps it only where it helped)
        uses_r = self.fusion is not None and any(f.startswith("realism") for f in self.fusion.features)
        self.realism = load_realism(self.meta, generator) if uses_r else None
        self.backend = create_backend("dlib")
        self.versions = ModelVersions(str(path), sha256_file(path), self.meta["backbone"],
                                      self.meta["input_size"], self.realism.info if self.realism else None,
                                      "fused" if uses_r else "backbone")

    def scan(self, path: str | os.PathLike) -> ScanResult:
        """The evidence about one file (see the module docstring)."""
        from detector.data.samples import sample_face_tracks
        from generator.io.video import probe
        from generator.provenance.verify import verify_file

        t0 = time.perf_counter()
        path = Path(path)
        info = probe(path)  # a clear error for missing, empty or undecodable files
        try:
            manifest = verify_file(path).to_dict()
        except Exception as exc:  # provenance must not stop the pixel evidence; say what happened
            manifest = {"state": "Unreadable", "message": str(exc)}
        from generator.faces.crop import DETECTOR_CROP

        crop = dataclasses.replace(DETECTOR_CROP, size=int(self.meta["input_size"]))
        tracks = []
        # All face tracks in one decode of the file (the detector runs once per frame for all of them).
        frames = self.config.frames if info.kind == "video" else 1
        per_face = sample_face_tracks(path, frames, self.backend, crop,
                                      self.realism.size if self.realism else None, faces=self.config.faces)
        for k, samples in enumerate(per_face):
            if k and not samples.found.any():
                break  # no k-th face anywhere: no more tracks
            tracks.append(self.face_track(k, samples))
        scored = [t for t in tracks if t.probability_fake is not None]
        # The file is as suspicious as its most suspicious face.
        top = max(scored, key=lambda t: t.probability_fake) if scored else tracks[0]
        verdict_, notes = self.judge(top, reliability(top.samples, info, len(tracks)), manifest)
        return ScanResult(str(path), sha256_file(path), info, verdict_, manifest, notes, tracks,
                          self.versions, round(time.perf_counter() - t0, 3))

    def face_track(self, k: int, samples: FaceSamples) -> FaceTrack:
        """Track ``k``'s evidence, probability of fake and label (before the caveats)."""
        # looked up on the module at call time: the scan speed benchmark wraps it to time the stage
        from detector.evidence.features import evidence

        identity = (self.meta.get("realism") or {}).get("identity", "agnostic")
        ev = evidence(samples, self.model, self.realism, identity)
        p = None
        if ev.found.any():
            p = float(self.fusion.predict([ev.features])[0]) if self.fusion else float(np.nanmean(ev.probs))
        missing = [MissingFrame(int(i), r) for i, r, f in zip(ev.indices, samples.reasons, ev.found) if not f]
        view = ev.to_dict()
        return FaceTrack(k, p, NO_FACE if p is None else verdict(p, self.config), view["frames"],
                         view["face_found"], view["fake_probability"], view["realism"], view["features"],
                         missing, samples)

    def judge(self, top: FaceTrack, found: list[Caveat], manifest: dict) -> tuple[Verdict, list[str]]:
        """The file's verdict from its most suspicious face under the caveats, and the notes to show."""
        p, label = top.probability_fake, top.label
        caveats = [c.text for c in found]
        notes = list(caveats)
        raw_label = label
        if label in (FAKE, REAL) and self.config.unreliable == "unsure" and any(c.undermines for c in found):
            label = UNSURE
            notes.append(f"verdict unsure rather than {raw_label} (p(fake) {p:.3f}): under the caveats "
                         f"above this detector's {raw_label} calls are often wrong (--unreliable keep "
                         "reports them)")
        if manifest.get("state") == "Invalid":
            notes.append("the file carries a C2PA manifest that does not validate: it was altered after "
                         "signing (or the manifest was forged)")
        if (manifest.get("generation") or {}).get("generator") == "sfumato":
            notes.append("the file's valid manifest says sfumato generated it")
        cal = self.calibration if self.calibrated else None
        if cal is None:
            notes.append("the threshold is not calibrated for a false-positive rate (this detector "
                         "records none, or --threshold / --unsure-band were given)")
        return Verdict(label, p, self.config.threshold, self.config.unsure_band, self.versions.method,
                       top.track, cal, "low" if caveats else "normal", caveats, raw_label), notes


def explain(result: ScanResult, scanner: Scanner) -> ScanResult:
    """Add Grad-CAM maps of the verdict face's most suspicious frames (``FaceTrack.heatmaps``: frame
    position -> (S, S) map summing to 1) for the HTML report; in memory only, like the samples."""
    from detector.evidence.heatmap import gradcam

    face = result.verdict_face
    samples = face.samples
    if samples is None or not samples.found.any() or scanner.config.heatmaps < 1:
        return result
    probs = np.array([p if p is not None else -1.0 for p in face.fake_probability], float)
    order = [int(k) for k in np.argsort(-probs) if samples.found[k]][:scanner.config.heatmaps]
    maps = gradcam(scanner.model, samples.crops[order])
    face.heatmaps = dict(zip(order, maps))
    return result


def scan_paths(paths: list[str | os.PathLike], scanner: Scanner, report: str | os.PathLike | None = None,
               out_dir: str | os.PathLike | None = None, progress: bool = False) -> ScanRun:
    """Scan files and folders; per file a result or an error. Folders write results.jsonl/.csv and a
    summary into ``out_dir`` (default: the current folder's ``scan-results``)."""
    from tqdm import tqdm

    from detector.report import html_report, results_csv
    from generator.corpus.prepare import collect_inputs

    files, problems = collect_inputs(paths)
    if not files and not problems:
        raise BadInputError(f"nothing to scan in {', '.join(map(str, paths))} (no pictures or videos)")
    results: list[ScanResult | ScanError] = []
    for f in tqdm(files, desc="scan", unit="file", disable=not progress):
        try:
            results.append(scanner.scan(f.path))
        except Exception as exc:  # one bad file must not stop a folder scan; it is reported
            results.append(ScanError(str(f.path), f"{type(exc).__name__}: {exc}"))
    results += [ScanError(p, "not a picture or video") for p in problems]
    if report is not None:
        if len(results) != 1 or isinstance(results[0], ScanError):
            raise BadInputError("--report makes one HTML page for one scanned file")
        write_bytes_atomic(report, html_report(explain(results[0], scanner)).encode())
    labels = [r.verdict.label for r in results if isinstance(r, ScanResult)]
    summary = ScanSummary(len(results), {k: sum(label == k for label in labels) for k in EXIT_CODES},
                          sum(isinstance(r, ScanError) for r in results))
    folder = any(Path(p).is_dir() for p in paths)
    if folder:
        out = Path(out_dir or "scan-results")
        out.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(r.to_dict()) + "\n" for r in results)
        write_bytes_atomic(out / "results.jsonl", lines.encode())
        write_bytes_atomic(out / "results.csv", results_csv(results).encode())
        write_bytes_atomic(out / "summary.json", json.dumps(summary.to_dict(), indent=1).encode())
        summary.out = str(out)
    return ScanRun(results, summary)


def exit_status(results: list[ScanResult | ScanError]) -> int:
    """fake (20) over unsure (21) over no face (22) over real (0); errors only: 1."""
    labels = [r.verdict.label for r in results if isinstance(r, ScanResult)]
    if not labels:
        return 1
    for label in (FAKE, UNSURE, NO_FACE):
        if label in labels:
            return EXIT_CODES[label]
    return 0
