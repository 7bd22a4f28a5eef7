"""The bundled detector: loads with its fusion, is tied to the bundled generator, scans with no options."""

from __future__ import annotations

import pytest

from detector.scan import BUNDLED_DETECTOR


@pytest.fixture(scope="module")
def bundled():
    if not BUNDLED_DETECTOR.is_file():
        pytest.skip(f"{BUNDLED_DETECTOR} is not installed")
    from detector.train import load_detector

    return load_detector(BUNDLED_DETECTOR)


def test_bundled_detector_carries_its_fusion_and_generator_hash(bundled):
    from detector.evaluate import bundled_generator
    from generator.files import sha256_file

    model, meta = bundled
    assert meta["backbone"] == "efficientnet_b0" and meta["fusion"]["features"]
    want = meta["realism"]["checkpoint_sha256"]
    assert sha256_file(bundled_generator(want)) == want  # its generator ships beside the default one
    assert (BUNDLED_DETECTOR.parent / "MODEL_CARD.md").is_file()


def test_scan_with_no_options_uses_the_bundled_models(bundled, astronaut_clip):
    from detector.scan import ScanConfig, Scanner

    r = Scanner(config=ScanConfig(frames=4)).scan(astronaut_clip)
    assert r["models"]["method"] == "fused" and r["manifest"]["state"] == "Absent"
    assert r["verdict"]["label"] in ("fake", "real", "unsure") and len(r["faces"][0]["frames"]) == 4


def test_scan_of_a_clip_sfumato_generated(bundled, tmp_path, monkeypatch):
    from detector.scan import ScanConfig, Scanner, public
    from generator.generate import GenerateConfig, generate

    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))
    out = generate(tmp_path / "gen.mp4", config=GenerateConfig(seconds=1.0))["output"]
    r = public(Scanner(config=ScanConfig(frames=6, faces=2)).scan(out))
    assert r["manifest"]["state"] == "Trusted" and any("sfumato generated it" in n for n in r["notes"])
    assert len(r["faces"]) == 1  # one person in the picture: no second track
    assert r["verdict"]["track"] == 0 and r["faces"][0]["label"] == r["verdict"]["label"]
