"""The protocol end to end on a tiny data folder (index.csv of real and fake clips), and scan with the
bundle it fits: windows over the whole file, a stacked verdict naming its window, every stream shown."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from detector.scan import BUNDLED_DETECTOR


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, astronaut_clip):
    from detector.data.clipfakes import duplicated
    from generator.io.encode import write_video
    from generator.io.video import MediaReader

    root = tmp_path_factory.mktemp("data")
    with MediaReader(astronaut_clip) as r:
        base = [f for _, f in r.frames()]
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):  # six "people": the same face under other light and noise, a real camera's
        gain = 0.8 + 0.08 * i
        frames = [np.clip(f * gain + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8) for f in base]
        write_video(root / f"real_{i}.mp4", frames, 25, crf=18)
        rows.append([f"real_{i}.mp4", "real", f"id{i}", "real", "", ""])
        if i < 4:  # fakes of two methods: frames repeated, and one frozen frame
            write_video(root / f"dup_{i}.mp4", duplicated(frames), 25, crf=18)
            rows.append([f"dup_{i}.mp4", "fake", f"id{i}", "dup", "one-image-animation", ""])
            write_video(root / f"still_{i}.mp4", [frames[0]] * len(frames), 25, crf=18)
            rows.append([f"still_{i}.mp4", "fake", f"id{i}", "still", "nerf-avatar", ""])
    with (root / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "identity", "method", "family", "pair"])
        w.writerows(rows)
    return root


@pytest.mark.slow
def test_protocol_writes_its_tables_and_a_bundle_scan_uses(data_dir, tmp_path):
    if not BUNDLED_DETECTOR.is_file():
        pytest.skip("the bundled detector is not installed")
    from detector.evidence.stack import StreamBundle
    from detector.protocol import VARIANTS, LomoConfig, run_protocol
    from detector.scan import ScanConfig, Scanner
    from generator.io.files import sha256_file

    out = tmp_path / "lomo"
    res = run_protocol(data_dir, out, fit=tmp_path / "bundle.json", config=LomoConfig(folds=3, bootstrap=20))
    # without made fakes, the variants whose streams fit on them alone are skipped
    assert set(res.results) == {k for k, (_, on) in VARIANTS.items() if on == "all"}
    assert res.chosen in res.results and res.clips == 14
    for name in ("lomo.json", "lomo.md", "roc_by_family.png", "fpr_by_bucket.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 100
    doc = json.loads((out / "lomo.json").read_text())
    assert [m["name"] for m in doc[res.chosen]["methods"]] == ["dup", "still"]
    assert "| dup | one-image-animation | 4 |" in (out / "lomo.md").read_text()
    bundle = StreamBundle.load(tmp_path / "bundle.json")
    assert bundle.fitted_on["detector_sha256"] == sha256_file(BUNDLED_DETECTOR)
    assert bundle.calibration.real_videos == 6 and bundle.fitted_on["lomo"]["variant"] == res.chosen

    scanner = Scanner(config=ScanConfig(frames=4, streams=str(tmp_path / "bundle.json")))
    r = scanner.scan(data_dir / "still_0.mp4")
    assert r.verdict.method == "stacked" and r.models.streams["streams"] == list(bundle.stack.streams)
    assert r.coverage.complete and r.coverage.windows == len(r.windows) == 1
    assert r.verdict.window == {"index": 0, "start": 0.0, "end": r.windows[0].end}
    assert r.verdict.buckets["length"] == "short"
    assert [e.stream for e in r.evidence][-1] == "provenance"
    assert all(e.explanation for e in r.evidence)
    d = r.to_dict()
    assert d["windows"][0]["streams"][0]["stream"] == bundle.stack.streams[0]
    assert round(d["verdict"]["probability_fake"], 5) == max(w["probability_fake"] for w in d["windows"])
    assert set(d["stage_seconds"]) >= {"provenance", "decode_and_faces", "windows_and_streams"}
    off = Scanner(config=ScanConfig(frames=4, streams="off")).scan(data_dir / "still_0.mp4")
    assert off.verdict.method != "stacked" and off.windows == [] and "windows" in off.to_dict()


def test_a_bundle_for_another_classifier_is_refused(tmp_path):
    from detector.evidence.calibration import calibrate
    from detector.evidence.fusion import FusionModel
    from detector.evidence.stack import Stack, StreamBundle
    from detector.stacked import resolve_bundle
    from generator.errors import BadInputError

    stack = Stack(["frames"], {}, FusionModel(["frames:logit"], [0.0], [1.0], [1.0], 0.0))
    StreamBundle(stack, calibrate([0.1, 0.2]), [], {"detector_sha256": "a" * 64}).save(tmp_path / "b.json")
    with pytest.raises(BadInputError, match="refit it"):
        resolve_bundle(str(tmp_path / "b.json"), "b" * 64)
    assert resolve_bundle("off", "a" * 64) == (None, None)
    bundle, path = resolve_bundle(str(tmp_path / "b.json"), "a" * 64)
    assert bundle.stack.streams == ["frames"] and path == str(tmp_path / "b.json")
    with pytest.raises(BadInputError, match="not found"):
        resolve_bundle(str(tmp_path / "none.json"), "a" * 64)
