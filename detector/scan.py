"""``sfumato scan``: evidence about one suspicious video or picture (or a folder of them).

Per file: the followed face in evenly spaced frames, its fake probability from the learned detector and
its realism score r from the generator's discriminator, per frame; a verdict from the fused,
calibrated probability with the threshold and the "unsure" band used; frames without a face reported
as such; the C2PA state (Trusted / Valid / Invalid with codes / Absent) and sfumato's generation
assertion when present (a tampered manifest is itself evidence); the model versions. As JSON, and as a
self-contained HTML report (``detector.report``: thumbnails, heatmaps, a timeline, the manifest panel).

With a stream bundle (``detector.stacked``; the shipped one applies to the bundled detector) the whole
file is also read in windows, every evidence stream scores and explains each window, and the verdict
is the stacked probability of the most suspicious window, calibrated on every real identity, with the
unsure band widened in condition buckets where the stated rate was missed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detector.data.windows import WindowConfig
from detector.evidence.clip import Coverage, fuse_windows, measure_windows, summarise_streams
from detector.results import (  # noqa: F401  (scan's public names, as before the move)
    EXIT_CODES,
    FAKE,
    NO_FACE,
    REAL,
    UNSURE,
    Caveat,
    FaceTrack,
    MissingFrame,
    ModelVersions,
    ScanError,
    ScanResult,
    ScanRun,
    ScanSummary,
    Verdict,
)
from detector.stacked import StackedCall, resolve_bundle, stacked_call, stream_set
from generator.errors import BadInputError, MissingWeightsError, VideoReadError
from generator.io.files import sha256_file, write_bytes_atomic

if TYPE_CHECKING:
    from detector.data.samples import FaceSamples

BUNDLED_DETECTOR = Path(__file__).resolve().parent / "weights" / "sfumato_detector.safetensors"
DEEPFAKEBENCH_FRAMES, STACKED_FRAMES = 32, 8  # ScanConfig.frames when left None


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """How to scan."""

    # evenly spaced frames per video for the per-frame view (thumbnails, Grad-CAM, reliability);
    # None: 32 (DeepfakeBench's protocol) when they carry the verdict, 8 when a stream bundle's windows do
    frames: int | None = None
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
    # evidence streams per window, stacked (detector/stacked.py): "auto" the shipped bundle where it
    # was fitted on this detector's frame classifier, "off" the frame classifier alone, or a bundle file
    streams: str = "auto"
    window_seconds: float = 4.0  # windows along the whole file; the verdict names the most suspicious
    max_windows: int = 150  # a longer file (10 min at 4 s) is scored on this many windows spread over it

    def __post_init__(self):
        if self.unreliable not in ("unsure", "keep"):
            raise BadInputError(f"unreliable is unsure or keep, not {self.unreliable!r}")
        if self.window_seconds <= 0:
            raise BadInputError(f"window_seconds must be positive, not {self.window_seconds}")


LOW_FACE_PX = 64  # faces smaller than this (landmark box, frame pixels) are mostly upscaled pixels
# Compression this heavy makes the bundled detector call real faces fake (6 of 9 real test clips at c40).
# Bits per pixel is a rough cue (detailed content needs more bits at the same quantiser): the benchmark
# dataset's 62 real clips hold 0.005-0.026 (median 0.0125) at H.264 CRF 40 and 0.033-0.17 at CRF 23; the
# 85 downloaded clips of ../shared/data 0.028 and up. So only the harder half of c40 is flagged.
LOW_BITS_PER_PIXEL = 0.015


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


class _Stages:
    """Seconds per named stage of one scan (what ``bench scan`` reports)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}


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
        sha = sha256_file(path)
        self.bundle, bundle_path = resolve_bundle(config.streams, sha)
        self.streams = stream_set(self.bundle) if self.bundle else []
        bundle_info = None
        if self.bundle:
            bundle_info = {"file": bundle_path, "sha256": sha256_file(bundle_path),
                           "streams": self.bundle.stack.streams, "fitted_on": self.bundle.fitted_on}
        method = "stacked" if self.bundle else "fused" if uses_r else "backbone"
        self.frames = config.frames or (STACKED_FRAMES if self.bundle else DEEPFAKEBENCH_FRAMES)
        self.versions = ModelVersions(str(path), sha, self.meta["backbone"], self.meta["input_size"],
                                      self.realism.info if self.realism else None, method, bundle_info)

    def scan(self, path: str | os.PathLike) -> ScanResult:
        """The evidence about one file (see the module docstring)."""
        from detector.data.samples import sample_face_tracks
        from generator.io.video import probe
        from generator.provenance.verify import verify_file

        t0 = time.perf_counter()
        clock = _Stages()
        path = Path(path)
        info = probe(path)  # a clear error for missing, empty or undecodable files
        try:
            manifest = verify_file(path).to_dict()
        except Exception as exc:  # provenance must not stop the pixel evidence; say what happened
            manifest = {"state": "Unreadable", "message": str(exc)}
        clock.lap("provenance")
        from generator.faces.crop import DETECTOR_CROP

        crop = dataclasses.replace(DETECTOR_CROP, size=int(self.meta["input_size"]))
        tracks = []
        # All face tracks in one decode of the file (the detector runs once per frame for all of them).
        frames = self.frames if info.kind == "video" else 1
        per_face = sample_face_tracks(path, frames, self.backend, crop,
                                      self.realism.size if self.realism else None, faces=self.config.faces)
        clock.lap("decode_and_faces")
        for k, samples in enumerate(per_face):
            if k and not samples.found.any():
                break  # no k-th face anywhere: no more tracks
            tracks.append(self.face_track(k, samples))
        clock.lap("backbone_and_realism")
        windows, coverage, problem = self.windows(path, manifest)
        clock.lap("windows_and_streams")
        scored = [t for t in tracks if t.probability_fake is not None]
        # The file is as suspicious as its most suspicious face.
        top = max(scored, key=lambda t: t.probability_fake) if scored else tracks[0]
        call = stacked_call(windows, self.bundle, info) if self.bundle else None
        verdict_, notes = self.judge(top, reliability(top.samples, info, len(tracks)), manifest, call)
        if problem:
            notes.append(problem)
        if coverage is not None and not coverage.complete:
            notes.append(f"a long file: {coverage.windows} windows of {self.config.window_seconds:g} s "
                         f"spread evenly over its {coverage.seconds:.0f} s were scored, not every stretch")
        evidence_ = summarise_streams(windows, self.bundle.stack.streams) if windows else []
        clock.lap("fusion_and_verdict")
        return ScanResult(str(path), sha256_file(path), info, verdict_, manifest, notes, tracks,
                          self.versions, round(time.perf_counter() - t0, 3), windows, coverage, evidence_,
                          clock.rounded())

    def windows(self, path: Path, manifest: dict) -> tuple[list, Coverage | None, str | None]:
        """Every window of the file through the bundle's streams, fused (nothing without a bundle)."""
        if self.bundle is None:
            return [], None, None
        config = WindowConfig(seconds=self.config.window_seconds, max_windows=self.config.max_windows)
        try:
            windows, coverage = measure_windows(path, self.streams, self.backend, self.model, manifest,
                                                config)
        except (BadInputError, VideoReadError) as exc:  # the frame evidence above still stands
            return [], None, (f"the clip's windows could not be read ({exc}): verdict from the face "
                              "crops alone")
        fuse_windows(windows, self.bundle.stack)
        return windows, coverage, None

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

    def judge(self, top: FaceTrack, found: list[Caveat], manifest: dict, call: StackedCall | None = None
              ) -> tuple[Verdict, list[str]]:
        """The file's verdict from its most suspicious face (or, stacked, its most suspicious window)
        under the caveats, and the notes to show."""
        p, label = top.probability_fake, top.label
        threshold, band = self.config.threshold, self.config.unsure_band
        caveats = [c.text for c in found]
        notes = list(caveats)
        if call is not None:
            p = call.probability_fake
            if self.calibrated:  # explicit --threshold / --unsure-band win over the bundle's
                threshold, band = call.threshold, call.fake_from - call.threshold
            label = UNSURE if abs(p - threshold) < band else FAKE if p >= threshold else REAL
            for b in call.widened:
                notes.append(f"real clips with {b.condition} {b.bucket} were called fake "
                             f"{b.measured_fpr:.0%} of "
                             f"the time at the stated rate's threshold (out of fold, {b.real_clips} clips): "
                             f"here fake only from p {b.fake_from:.3f}, unsure below it")
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
        if call is not None and self.calibrated:
            cal = self.bundle.calibration
        if cal is None:
            notes.append("the threshold is not calibrated for a false-positive rate (this detector "
                         "records none, or --threshold / --unsure-band were given)")
        window = None if call is None else {"index": call.window.index, "start": call.window.start,
                                            "end": call.window.end}
        return Verdict(label, p, threshold, band, self.versions.method, top.track, cal,
                       "low" if caveats else "normal", caveats, raw_label, window,
                       None if call is None else call.buckets), notes


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
            result = scanner.scan(f.path)
            if report is None:  # the face crops serve only a report's thumbnails: memory stays flat
                for face in result.faces:
                    face.samples = None
            results.append(result)
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
