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
    from generator.generate import BUNDLED_MODEL

    model, meta = bundled
    assert meta["backbone"] == "tf_efficientnet_lite0" and meta["init"]["init"] == "imagenet"
    assert meta["fusion"]["features"] and meta["calibration"]["fpr"] == 0.05
    want = meta["realism"]["checkpoint_sha256"]
    assert bundled_generator(want) == BUNDLED_MODEL and sha256_file(BUNDLED_MODEL) == want
    assert meta["config"]["sbi"] > 0 and meta["config"]["degrade"] and meta["mix"]["self_blended"] > 0
    assert (BUNDLED_DETECTOR.parent / "MODEL_CARD.md").is_file()


def test_scan_with_no_options_uses_the_bundled_models(bundled, astronaut_clip):
    from detector.scan import ScanConfig, Scanner

    r = Scanner(config=ScanConfig(frames=4)).scan(astronaut_clip)
    assert r["models"]["method"] in ("fused", "backbone") and r["manifest"]["state"] == "Absent"
    assert r["verdict"]["calibration"] is not None  # the shipped threshold is calibrated
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


def test_bundled_detector_scores_a_generated_clip_above_a_real_one(bundled, tmp_path, monkeypatch):
    from detector.scan import ScanConfig, Scanner
    from generator.generate import GenerateConfig, generate
    from tests.conftest import shared_file

    real = shared_file("videos", "styletalk_reagan_clip1_first12s.mp4")  # test split: never trained on
    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))
    fake = generate(tmp_path / "gen.mp4", config=GenerateConfig(seconds=1.0))["output"]
    scanner = Scanner(config=ScanConfig(frames=8))
    p_fake, p_real = (scanner.scan(f)["verdict"]["probability_fake"] for f in (fake, real))
    assert p_fake > p_real
