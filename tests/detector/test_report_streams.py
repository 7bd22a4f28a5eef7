"""The HTML report's evidence streams: per stream its top window and explanation, the verdict's window and
condition buckets, a window timeline and a table of windows; a result without windows shows none of it."""

from __future__ import annotations

import html

import numpy as np

from detector.evidence.calibration import Calibration
from detector.evidence.clip import Coverage, StreamSummary, WindowEvidence
from detector.evidence.streams.base import StreamScore
from detector.results import FaceTrack, ModelVersions, ScanResult, Verdict
from generator.io.video import MediaInfo

EXPLAIN = {"frames": "the face crops look <swapped> in 6 of 8 frames",
           "dynamics": "the background & noise stay still while the mouth moves",
           "provenance": "no C2PA manifest: nothing declared \"generated\""}


def _logit(p: float | None) -> float | None:
    return None if p is None else float(np.log(p / (1 - p)))


def _window(k: int, fused: float, frames: float, dynamics: float | None) -> WindowEvidence:
    scores = [StreamScore("frames", _logit(frames), {"mean": frames}, EXPLAIN["frames"]),
              StreamScore("dynamics", _logit(dynamics), {"bg": 0.1}, EXPLAIN["dynamics"]),
              StreamScore("provenance", None, {}, EXPLAIN["provenance"])]
    return WindowEvidence(k, 4.0 * k, 4.0 * k + 4.0, list(range(100 * k, 100 * k + 12)), 10 - k, 120.0,
                          scores, fused)


def _result(windows: bool, complete: bool = True, calibrated: bool = True) -> ScanResult:
    info = MediaInfo("clip.mp4", "video", 640, 360, 25.0, 300, 12.0, bits_per_pixel=0.05)
    face = FaceTrack(0, 0.7, "fake", [0, 100, 200], [True, True, False], [0.6, 0.8, None],
                     [None, None, None], {}, [])
    cal = Calibration(0.05, 0.5, 0.05, 0.55, 0.04, 120, "lomo, val") if calibrated else None
    wins = [_window(0, 0.2, 0.3, 0.1), _window(1, 0.91, 0.88, None), _window(2, 0.4, 0.35, 0.6)]
    verdict = Verdict("fake", 0.91 if windows else 0.7, 0.5, 0.05, "stacked" if windows else "backbone", 0,
                      cal, "normal", [], "fake",
                      {"index": 1, "start": 4.0, "end": 8.0} if windows else None,
                      {"face": "medium", "bits": "low", "length": "short"} if windows else None)
    models = ModelVersions("det.safetensors", "abc", "resnet", 64, None, verdict.method,
                           {"file": "s.json", "sha256": "def", "streams": ["frames", "dynamics"]}
                           if windows else None)
    evidence = [StreamSummary("frames", 0.88, 1, EXPLAIN["frames"], True),
                StreamSummary("dynamics", 0.6, 2, EXPLAIN["dynamics"], True),
                StreamSummary("provenance", None, 0, EXPLAIN["provenance"], False)]
    return ScanResult("clip.mp4", "0" * 64, info, verdict, {"state": "NoManifest"}, ["a note"], [face],
                      models, 1.5, wins if windows else [], Coverage(3, 60.0, complete) if windows else None,
                      evidence if windows else [])


def _section(page: str) -> str:
    return page[page.index("<h2>Evidence</h2>"):page.index("<h2>Faces</h2>")]


def test_report_shows_each_streams_evidence_and_the_verdicts_window():
    from detector.report import html_report

    page = html_report(_result(True, complete=False))
    assert page.index("<h2>Evidence</h2>") < page.index("<h2>Faces</h2>")  # right after the verdict
    section = _section(page)
    for name, words in EXPLAIN.items():
        assert html.escape(words) in section and words not in section  # escaped
        assert f"<th>{name}<br>" in section
    assert "face-crop classifier" in section and "C2PA provenance" in section
    assert "clip dynamics (background, noise, mouth, frame repeats)" in section
    assert "Most suspicious stretch: 4.0-8.0 s" in section
    assert "<td>0.880</td><td>4.0-8.0 s</td><td>yes</td>" in section  # frames: top window, fused
    assert "<td>0.600</td><td>8.0-12.0 s</td><td>yes</td>" in section
    assert "<td>no score</td><td>0.0-4.0 s</td><td>no (shown only)</td>" in section
    for bucket in ("face size medium", "compression (bits per pixel) low", "length short"):
        assert bucket in section
    assert "false-positive rate of 5% on 120 real videos (lomo, val" in section
    assert section.count('<img src="data:image/png;base64,') == 1  # the window timeline
    assert "spread over a long file (60 s)" in section
    assert "<th>frames p(fake)</th><th>dynamics p(fake)</th><th>provenance p(fake)</th>" in section
    assert ("<td>0</td><td>0.0-4.0 s</td><td>12</td><td>10</td><td>0.200</td><td>0.300</td><td>0.100</td>"
            "<td>no score</td></tr>") in section
    assert ('title="the verdict\'s window"><td>1</td><td>4.0-8.0 s</td><td>12</td><td>9</td><td>0.910</td>'
            "<td>0.880</td><td>no score</td><td>no score</td></tr>") in section
    assert "<td>2</td><td>8.0-12.0 s</td><td>12</td><td>8</td><td>0.400</td>" in section


def test_report_of_complete_uncalibrated_windows():
    from detector.report import html_report

    section = _section(html_report(_result(True, complete=True, calibrated=False)))
    assert "long file" not in section
    assert "Calibration: none" in section


def test_report_without_windows_has_no_evidence_section():
    from detector.report import html_report

    page = html_report(_result(False))
    assert "<h2>Evidence</h2>" not in page and "<h2>Windows</h2>" not in page
    assert "most suspicious stretch" not in page.lower() and "<h2>Timeline</h2>" in page
    assert page.count("data:image/png;base64,") == 1  # the per-frame timeline only
    assert "<ul><li>a note</li></ul>\n<h2>Faces</h2>" in page  # nothing between the notes and the faces
