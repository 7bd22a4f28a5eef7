"""detect eval and scan end to end on a tiny case: the fusion fitted, metrics per compression, ROC PNG;
scan reports per-frame evidence, the verdict and the C2PA state (a tampered file shows Invalid), and
bad inputs give clear results."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from detector.data.schema import write_metadata
from detector.train import DetectTrainConfig, train_detector
from tests.conftest import shared_file
from tests.detector.conftest import add_clip, swap_fake

CFG = DetectTrainConfig(input_size=64, frames=4, batch_size=8, epochs=2, blur=0.0, jpeg=0.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Real astronaut clips and R/B-swapped 'fakes' in train/val/test, at c23 and c40."""
    from generator.io.samples import astronaut_frames

    root = tmp_path_factory.mktemp("sds")
    # 256 px: at 160 px, c40 (CRF 40) leaves too little of the face for dlib's detector in most clips
    frames = astronaut_frames(10, 256)
    rows = []
    for k in range(12):
        split = ("train", "train", "val", "test")[k // 2 % 4] if k < 8 else ("val", "test")[k // 2 % 2]
        clip = [np.roll(f, 8 * k, axis=1) for f in frames]
        add_clip(root, rows, f"v{k}", swap_fake(clip) if k % 2 else clip, "fake" if k % 2 else "real", split,
                 ("c23", "c40"))
    write_metadata(root, rows)
    return root


@pytest.fixture(scope="module")
def detector(dataset, tiny_checkpoint, tmp_path_factory) -> Path:
    from detector.evaluate import fit_detector_fusion

    run = tmp_path_factory.mktemp("det")
    import torch

    torch.manual_seed(0)
    train_detector(dataset, run, dataclasses.replace(CFG, compressions=("c23", "c40")))
    fit_detector_fusion(dataset, run / "best.safetensors", run / "detector.safetensors", tiny_checkpoint,
                        frames=4)
    return run / "detector.safetensors"


def test_eval_reports_every_method_per_compression(dataset, detector, tiny_checkpoint, tmp_path):
    from detector.evaluate import evaluate

    result = evaluate(dataset, detector, tmp_path / "ev", "test", tiny_checkpoint)
    assert result.videos == 8 and not result.failed  # 4 test clips x c23, c40
    m = result.metrics
    assert {"all", "compression=c23", "compression=c40", "perturbation=none"} <= set(m)
    assert set(m["all"]) == {"backbone", "realism", "fused"}
    assert m["compression=c23"]["backbone"]["video"]["n"] == 4
    found = sum(sum(v["face_found"]) for v in result.per_video)
    assert m["all"]["backbone"]["frame"]["n"] == found > 8 * 4 / 2  # frames with a face, each counted once
    saved = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(m))
    assert (tmp_path / "ev" / "roc.png").stat().st_size > 5000
    assert "| all | fused |" in (tmp_path / "ev" / "eval.md").read_text()


def test_eval_refuses_another_generator(dataset, detector, tmp_path):
    from generator.errors import ConfigMismatchError

    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not the generator")
    with pytest.raises(ConfigMismatchError, match="pass that checkpoint with --generator"):
        from detector.evaluate import evaluate

        evaluate(dataset, detector, tmp_path / "ev", "test", other)


@pytest.fixture()
def scanner(detector, tiny_checkpoint):
    from detector.scan import ScanConfig, Scanner

    return Scanner(detector, tiny_checkpoint, ScanConfig(frames=4))


def test_scan_of_a_signed_generated_clip_and_a_tampered_copy(scanner, dataset, tmp_path, monkeypatch):
    from detector.report import html_report
    from generator.provenance.manifest import GenerationInfo, SigningOptions, sign_generated

    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))
    clip = tmp_path / "generated.mp4"
    clip.write_bytes((dataset / "videos/v1/c23.mp4").read_bytes())
    sign_generated(clip, GenerationInfo(preset="small", seed=1), SigningOptions())
    r = scanner.scan(clip)
    assert r.manifest["state"] == "Trusted" and any("sfumato generated it" in n for n in r.notes)
    face = r.faces[0]
    assert len(face.frames) == 4 and all(face.face_found)
    assert all(0 <= p <= 1 for p in face.fake_probability) and all(x is not None for x in face.realism)
    assert r.verdict.label in ("fake", "real", "unsure") and 0 <= r.verdict.probability_fake <= 1
    assert r.models.method == "fused" and r.models.detector_sha256
    page = html_report(r)
    assert "<img" in page and "Trusted" in page and "data:image/png;base64" in page
    from generator.provenance import describe_keys

    mine = describe_keys(tmp_path / "keys")  # the panel names the signer by its certificates
    assert r.manifest["signer"]["cert_sha256"] == mine["signer"]["sha256"]
    assert mine["signer"]["sha256"] in page and mine["ca"]["sha256"] in page
    json.dumps(r.to_dict())  # JSON-ready
    from detector.scan import explain

    explain(r, scanner)
    maps = r.faces[0].heatmaps
    size = scanner.meta["input_size"]
    assert 1 <= len(maps) <= scanner.config.heatmaps
    probs = r.faces[0].fake_probability
    assert min(probs[k] for k in maps) == pytest.approx(sorted(probs)[-len(maps)])  # the top frames
    for hm in maps.values():
        assert hm.shape == (size, size) and hm.min() >= 0 and hm.sum() == pytest.approx(1.0, abs=1e-4)
    assert "Where the detector looks" in html_report(r)
    json.dumps(r.to_dict())  # the maps stay out of the JSON

    data = bytearray(clip.read_bytes())
    k = data.find(b"mdat") + 200  # flip pixels' bytes after signing
    data[k:k + 16] = bytes(16)
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    r2 = scanner.scan(tampered)
    assert r2.manifest["state"] == "Invalid" and r2.manifest["codes"]
    assert any("altered after signing" in n for n in r2.notes)


def test_scan_of_a_real_clip_from_shared(scanner):
    r = scanner.scan(shared_file("videos", "eamm_happy.mp4"))
    assert r.manifest["state"] == "Absent" and all(r.faces[0].face_found)
    assert r.verdict.label in ("fake", "real", "unsure")


def test_scan_bad_inputs(scanner, tmp_path):
    from detector.scan import exit_status, scan_paths
    from generator.io.video import write_video

    grey = tmp_path / "in" / "grey.mp4"
    grey.parent.mkdir()
    write_video(grey, [np.full((96, 96, 3), 128, np.uint8)] * 6, fps=25)
    (tmp_path / "in" / "corrupt.mp4").write_bytes(b"\x00" * 100)
    res = scan_paths([tmp_path / "in"], scanner, out_dir=tmp_path / "out")
    by = {Path(r.file).name: r for r in res.results}
    grey = by["grey.mp4"].verdict
    assert grey.label == "no face" and grey.probability_fake is None
    assert len(by["grey.mp4"].faces[0].frames_without_face) == 4
    assert "error" in by["corrupt.mp4"].to_dict()
    assert res.summary.errors == 1 and (tmp_path / "out" / "results.jsonl").is_file()
    assert (tmp_path / "out" / "results.csv").read_text().count("\n") == 3
    assert exit_status(res.results) == 22
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="nothing to scan"):
        scan_paths([tmp_path / "empty"], scanner)


def test_missing_detector_is_a_clear_error(tmp_path):
    from detector.scan import Scanner
    from generator.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="sfumato detect train"):
        Scanner(tmp_path / "none.safetensors")


def test_scan_speed_benchmark_times_the_stages(detector, tiny_checkpoint):
    from benchmarks.speed.scan import run_scan_speed

    r = run_scan_speed(detector, tiny_checkpoint, repeats=1, frames=4)
    st = r["stage_seconds"]
    assert r["seconds"] > 0 and st["decode_and_faces"] > 0 and st["backbone_and_realism"] > 0
    assert abs(sum(st.values()) - r["seconds"]) < 0.01 and r["verdict"]["label"] in ("fake", "real", "unsure")


def test_cli_detect_eval_and_scan(dataset, detector, tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    run = CliRunner().invoke
    r = run(cli, ["-q", "detect", "eval", str(dataset), "--detector", str(detector), "--generator",
                  str(tiny_checkpoint), "-o", str(tmp_path / "ev"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["videos"] == 8
    clip = dataset / "videos/v0/c23.mp4"
    r = run(cli, ["-q", "scan", str(clip), "--detector", str(detector), "--generator", str(tiny_checkpoint),
                  "--frames", "4", "--json", "--report", str(tmp_path / "r.html")])
    got = json.loads(r.output)
    assert r.exit_code == {"real": 0, "fake": 20, "unsure": 21}[got["verdict"]["label"]]
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")


def test_eval_on_an_imported_folder(dataset, detector, tiny_checkpoint, tmp_path):
    import shutil

    from benchmarks.datasets.importer import import_folder
    from detector.evaluate import evaluate

    for k in range(4):
        label = "fake" if k % 2 else "real"
        (tmp_path / "mine" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(dataset / f"videos/v{k}/c23.mp4", tmp_path / "mine" / label / f"clip{k}.mp4")
    import_folder(tmp_path / "mine", tmp_path / "imported")
    result = evaluate(tmp_path / "imported", detector, tmp_path / "ev", "test", tiny_checkpoint)
    assert result.videos == 4 and result.metrics["all"]["fused"]["video"]["n"] == 4
    assert {"compression=unknown"} <= set(result.metrics)


def test_scan_follows_several_faces(detector, tiny_checkpoint, tmp_path):
    from detector.scan import ScanConfig, Scanner
    from generator.io.samples import astronaut_frames
    from generator.io.video import write_video

    frames = astronaut_frames(6, 160)
    two = [np.hstack([f, np.ascontiguousarray(f[:, ::-1])]) for f in frames]  # two people side by side
    write_video(tmp_path / "two.mp4", two, fps=25)
    r = Scanner(detector, tiny_checkpoint, ScanConfig(frames=3, faces=3)).scan(tmp_path / "two.mp4").to_dict()
    assert [t["track"] for t in r["faces"]] == [0, 1]  # a third face is nowhere: no third track
    assert all(all(t["face_found"]) for t in r["faces"])
    top = max(r["faces"], key=lambda t: t["probability_fake"])
    assert r["verdict"]["track"] == top["track"]
    assert r["verdict"]["probability_fake"] == top["probability_fake"]
    # with the default single track, the verdict says that another face went unscored
    one = Scanner(detector, tiny_checkpoint, ScanConfig(frames=3)).scan(tmp_path / "two.mp4")
    assert one.verdict.reliability == "low"
    assert any("2 faces" in c and "--faces 2" in c for c in one.verdict.caveats)
    assert not any("faces in the picture" in c for c in r["verdict"]["caveats"])


def test_several_faces_are_followed_in_one_decode_with_one_detection_per_frame(tmp_path, monkeypatch):
    from generator.faces.backends import create_backend
    from generator.faces.tracking import TrackerConfig, track_faces, track_video
    from generator.io import video
    from generator.io.samples import astronaut_frames
    from generator.io.video import write_video

    frames = astronaut_frames(6, 160)
    write_video(tmp_path / "two.mp4", [np.hstack([f, np.ascontiguousarray(f[:, ::-1])]) for f in frames],
                fps=25)
    opened, detections = [], []
    real_init = video.MediaReader.__init__
    monkeypatch.setattr(video.MediaReader, "__init__",
                        lambda self, p: (opened.append(p), real_init(self, p))[1])
    backend = create_backend("dlib")
    real_detect = backend.detect
    monkeypatch.setattr(backend, "detect", lambda frame: (detections.append(1), real_detect(frame))[1])
    cfg = TrackerConfig(detect_every=1)
    both = track_faces(tmp_path / "two.mp4", backend, cfg, faces=2, sample=4)
    assert len(opened) == 1 and len(detections) == 4  # one decode; the detector once per sampled frame
    assert [t.found.all() for t in both] == [True, True]
    assert abs(both[0].points[:, :, 0].mean() - both[1].points[:, :, 0].mean()) > 100  # two people
    # each track is exactly what following that face on its own gives
    for k, t in enumerate(both):
        alone = track_video(tmp_path / "two.mp4", backend, TrackerConfig(detect_every=1, face_index=k),
                            sample=4)
        np.testing.assert_array_equal(alone.points, t.points)
        assert alone.status == t.status and list(alone.indices) == list(t.indices)


def test_scan_states_low_reliability_for_tiny_faces_and_stills(detector, tiny_checkpoint, tmp_path):
    import dataclasses

    import cv2

    from detector.scan import ScanConfig, Scanner
    from generator.io.samples import astronaut_frames, astronaut_image
    from generator.io.video import write_image, write_video

    scanner = Scanner(detector, tiny_checkpoint, ScanConfig(frames=3))
    small = [cv2.resize(f, (72, 72), interpolation=cv2.INTER_AREA) for f in astronaut_frames(6, 160)]
    tiny = [np.pad(cv2.resize(f, (144, 144)), ((40, 40), (40, 40), (0, 0))) for f in small]
    write_video(tmp_path / "tiny.mp4", tiny, fps=25)  # a face of ~50 px, upscaled: few real pixels
    r = scanner.scan(tmp_path / "tiny.mp4")
    assert any(r.faces[0].face_found)  # dlib still finds it
    assert r.verdict.reliability == "low"
    assert any("face under 64 px" in c for c in r.verdict.caveats), r.verdict.caveats
    # a face this small undermines the verdict: unsure, with what it would have been (threshold 0:
    # every face would be called fake)
    sure = ScanConfig(frames=3, threshold=0.0, unsure_band=0.0)
    demoted = Scanner(detector, tiny_checkpoint, sure).scan(tmp_path / "tiny.mp4")
    assert demoted.verdict.label == "unsure" and demoted.verdict.label_before_caveats == "fake"
    assert any("verdict unsure rather than fake" in n for n in demoted.notes)
    keep = dataclasses.replace(sure, unreliable="keep")
    kept = Scanner(detector, tiny_checkpoint, keep).scan(tmp_path / "tiny.mp4")
    assert kept.verdict.label == "fake" and kept.verdict.caveats == demoted.verdict.caveats
    assert kept.verdict.probability_fake == demoted.verdict.probability_fake
    write_image(tmp_path / "still.png", astronaut_image())
    still = scanner.scan(tmp_path / "still.png")
    assert still.verdict.label in ("fake", "real", "unsure")
    assert still.verdict.label == still.verdict.label_before_caveats  # a still is only a note
    assert any("still image" in c for c in still.verdict.caveats)
    assert any("still image" in n for n in still.notes)


def test_reliability_flags_heavily_compressed_video(tmp_path):
    from types import SimpleNamespace

    from detector.scan import LOW_BITS_PER_PIXEL, reliability
    from generator.io.samples import astronaut_frames
    from generator.io.video import MediaInfo, probe, write_video

    assert 0.01 < LOW_BITS_PER_PIXEL  # the 0.01 case below sits under the threshold
    frames = astronaut_frames(10, 192)
    bpp = {}
    for crf in (18, 40):
        write_video(tmp_path / f"crf{crf}.mp4", frames, fps=25, crf=crf)
        bpp[crf] = probe(tmp_path / f"crf{crf}.mp4").bits_per_pixel
    assert bpp[18] > 3 * bpp[40] > 0  # the stream's size per pixel falls with the quantiser

    no_face = SimpleNamespace(found=np.zeros(8, bool), points=None, frame_count=100, faces_seen=None)
    info = MediaInfo("x.mp4", "video", 640, 360, 25.0, 100, 4.0, bits_per_pixel=0.01)
    notes = reliability(no_face, info, 1)
    assert len(notes) == 1 and "heavily compressed video (0.010 bits per pixel)" in notes[0].text
    assert notes[0].kind == "compression" and notes[0].undermines
    info = MediaInfo("x.mp4", "video", 640, 360, 25.0, 100, 4.0, bits_per_pixel=0.05)
    assert reliability(no_face, info, 1) == []


def test_scan_uses_the_detectors_calibrated_threshold(detector, dataset, tiny_checkpoint):
    from detector.evidence.calibration import calibration_from
    from detector.model import load_detector
    from detector.report import html_report
    from detector.scan import ScanConfig, Scanner

    _, meta = load_detector(detector)
    cal = calibration_from(meta)
    assert cal is not None and cal.fpr == 0.05 and cal.measured_fpr <= cal.fpr and cal.real_videos >= 1
    assert "val" in cal.set_on
    scanner = Scanner(detector, tiny_checkpoint, ScanConfig(frames=4))
    assert (scanner.config.threshold, scanner.config.unsure_band) == (cal.threshold, cal.unsure_band)
    clip = dataset / "videos/v0/c23.mp4"
    r = scanner.scan(clip)
    assert r.verdict.calibration.fake_from == cal.fake_from
    assert "Calibrated for a false-positive rate of 5%" in html_report(r)
    manual = Scanner(detector, tiny_checkpoint, ScanConfig(frames=4, threshold=0.7)).scan(clip)
    assert manual.verdict.calibration is None and manual.verdict.threshold == 0.7
    assert any("not calibrated" in n for n in manual.notes)


def test_generalisation_scores_other_generators_fakes_against_real_test_clips(dataset, detector,
                                                                              tiny_checkpoint, tmp_path):
    import shutil

    from benchmarks.datasets.importer import import_folder
    from detector.evaluate import evaluate

    flat = tmp_path / "others"
    flat.mkdir()
    for k, name in ((1, "fake_alpha_one"), (3, "fake_alpha_two"), (5, "fake_beta_one")):
        shutil.copy(dataset / f"videos/v{k}/c23.mp4", flat / f"{name}.mp4")
    summary = import_folder(flat, tmp_path / "imported", label="fake", compression="c23")
    assert summary["counts"]["by_method"] == {"alpha": 2, "beta": 1}
    result = evaluate(dataset, detector, tmp_path / "ev", "test", tiny_checkpoint,
                      other_fakes=tmp_path / "imported")
    g = result.generalisation
    assert g["real_videos"] == 2 and g["fake_videos"] == 3  # the test split's real c23 clips (v6, v10)
    assert set(g["per_method"]) == {"alpha", "beta"} and g["per_method"]["alpha"]["fakes"] == 2
    assert 0 <= g["auc"] <= 1 and 0 <= g["false_positive_rate"] <= 1 and 0 <= g["caught"] <= 1
    assert len(g["clips"]) == 5 and all(c["called_fake"] == (c["probability_fake"] >= g["threshold"])
                                        for c in g["clips"])
    assert "## Other generators: 3 fakes" in (tmp_path / "ev" / "eval.md").read_text()


def test_robustness_sweep_scores_real_clips_per_face_size_and_crf(dataset, detector, tmp_path):
    from detector.robustness import compress, run, shrink

    crops = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    assert shrink(crops, 16).shape == crops.shape and not np.array_equal(shrink(crops, 16), crops)
    assert np.array_equal(shrink(crops, 64), crops)
    assert compress(crops, 40).shape == crops.shape
    result = run(dataset, {"a": detector, "b": detector}, tmp_path / "rb", split="val", frames=3)
    assert result["clips"] == ["v4", "v8"]  # the val split's real clips, each at its lowest CRF (c23)
    for name in ("a", "b"):
        d = result["detectors"][name]
        assert set(d["size"]) == {str(s) for s in result["sizes"]}
        assert set(d["crf"]) == {str(c) for c in result["crfs"]}
        assert all(0 <= p <= 1 for curve in (d["size"], d["crf"]) for v in curve.values() for p in v.values())
    assert result["detectors"]["a"]["size"] == result["detectors"]["b"]["size"]  # same file, same scores
    assert (tmp_path / "rb" / "robustness.png").stat().st_size > 5000


def test_scan_loads_no_training_or_evaluation_code():
    # A fresh interpreter: the analyst's path (load the bundled detector, scan) stands on its own.
    import subprocess
    import sys

    code = ("import sys; from detector.scan import Scanner; Scanner(); "
            "print(sorted(m for m in sys.modules if m in ('detector.train', 'detector.evaluate', "
            "'generator.training.meta_train', 'benchmarks')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
