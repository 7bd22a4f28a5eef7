"""Scan with a stream bundle on awkward inputs: long files (windows spread, said so), a GIF with a
palette, a rotated phone video, a still picture, a tight face crop with no background."""

from __future__ import annotations

import numpy as np
import pytest

from detector.scan import BUNDLED_DETECTOR


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory):
    if not BUNDLED_DETECTOR.is_file():
        pytest.skip("the bundled detector is not installed")
    from detector.protocol.lomo import LomoConfig, fit_bundle
    from generator.io.files import sha256_file
    from tests.detector.test_protocol import _rows

    bundle = fit_bundle(_rows(aids=4), LomoConfig(bootstrap=0))
    bundle.fitted_on["detector_sha256"] = sha256_file(BUNDLED_DETECTOR)
    path = tmp_path_factory.mktemp("bundle") / "streams.json"
    bundle.save(path)
    return path


@pytest.fixture(scope="module")
def frames(astronaut_clip):
    from generator.io.video import MediaReader

    with MediaReader(astronaut_clip) as r:
        return [f for _, f in r.frames()]


def _scanner(bundle_file, **kw):
    from detector.scan import ScanConfig, Scanner

    return Scanner(config=ScanConfig(frames=4, streams=str(bundle_file), **kw))


def test_windows_cover_a_file_and_spread_over_a_long_one(bundle_file, frames, tmp_path):
    from generator.io.encode import write_video

    clip = tmp_path / "twelve.mp4"
    write_video(clip, [frames[i % len(frames)] for i in range(300)], 25)  # 12 s
    r = _scanner(bundle_file, window_seconds=2.0).scan(clip)
    starts, ends = [w.start for w in r.windows], [w.end for w in r.windows]
    assert len(r.windows) == 6 and r.coverage.complete and starts[0] == 0 and ends[-1] == 12.0
    assert starts[1:] == ends[:-1]  # no gap, no overlap
    assert r.verdict.window["index"] in range(6)
    spread = _scanner(bundle_file, window_seconds=2.0, max_windows=3).scan(clip)
    assert [w.index for w in spread.windows] == [0, 1, 2] and not spread.coverage.complete
    assert [w.start for w in spread.windows] == [0.0, 4.0, 10.0]  # first, middle and last stretch
    assert any("spread evenly" in n for n in spread.notes)


def test_gif_rotated_video_and_still_give_a_verdict(bundle_file, frames, astronaut, tmp_path):
    from PIL import Image

    from generator.io.encode import write_image
    from tests.conftest import encode

    gif = tmp_path / "palette.gif"
    pics = [Image.fromarray(f).quantize(64) for f in frames[:20]]  # 64-colour palette frames
    pics[0].save(gif, save_all=True, append_images=pics[1:], duration=100, loop=0)
    scanner = _scanner(bundle_file)
    g = scanner.scan(gif)
    assert g.verdict.label in ("fake", "real", "unsure") and g.windows and g.windows[0].face_found > 0
    rotated = encode(tmp_path / "phone.mp4", frames[:30], rotation=90)
    r = scanner.scan(rotated)
    assert r.media.rotation in (90, 270) and r.windows[0].face_found > 0
    still = tmp_path / "still.png"
    write_image(still, astronaut)
    s = scanner.scan(still)
    assert len(s.windows) == 1 and s.windows[0].frames == [0] and s.verdict.window["index"] == 0
    assert any("still image" in n for n in s.notes)
    dyn = next(e for e in s.evidence if e.stream == "dynamics")
    assert "no neighbouring frames" in dyn.explanation


def test_a_tight_face_crop_says_no_background(bundle_file, frames, tmp_path):
    from generator.io.encode import write_video
    from tests.conftest import ASTRONAUT_FACE

    x0, y0, x1, y1 = (int(v) for v in ASTRONAUT_FACE)
    pad = 10
    crops = [np.ascontiguousarray(f[y0 - pad:y1 + pad, x0 - pad:x1 + pad]) for f in frames]
    clip = tmp_path / "tight.mp4"
    write_video(clip, [c[: c.shape[0] // 2 * 2, : c.shape[1] // 2 * 2] for c in crops], 25)
    r = _scanner(bundle_file).scan(clip)
    dyn = next(s for s in r.windows[0].scores if s.stream == "dynamics")
    if r.windows[0].face_found < 2:
        pytest.skip("dlib found no face in the tight crop")
    assert "no background visible" in dyn.explanation
    assert np.isnan(dyn.features["bg_frozen_share"]) and np.isfinite(dyn.features["landmark_jitter"])
