"""Bad input to ``generate``: small, turned or covered source faces, driving landmarks that fold the
warp mesh, drivers with faceless frames. Each gives a clear message or a documented fallback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from generator.errors import BadInputError, NoFaceError
from generator.faces.shots import (
    MIN_FACE_PX,
    MIN_FACE_PX_HARD,
    PROFILE_YAW_DEG,
    estimate_yaw,
    frontal_first,
    load_shots,
)
from generator.faces.warp import folded_area, warp_face
from generator.inference.generate import (
    FOLD_WARN_AREA,
    GenerateConfig,
    GenerateResult,
    generate,
    resolve_person,
)
from generator.io.video import MediaReader, write_image, write_video
from generator.provenance import SigningOptions
from tests.conftest import shared_file

NO_SIGN = SigningOptions(enabled=False)  # signing is tested elsewhere; these runs only need frames
SHORT = GenerateConfig(seconds=0.2)  # 5 frames of the built-in track


def _read(path: str | Path, index: int = 0) -> np.ndarray:
    with MediaReader(path) as reader:
        return reader.read_at([index])[index]


def _frames(path: str | Path) -> np.ndarray:
    with MediaReader(path) as reader:
        return np.stack([f for _, f in reader.frames()])


def _warning(result: GenerateResult, pattern: str) -> re.Match:
    """The first of the result's warnings that matches ``pattern`` (fails the test if none)."""
    found = [m for m in (re.search(pattern, w) for w in result.warnings) if m]
    assert found, f"no warning matches {pattern!r}: {result.warnings}"
    return found[0]


def _black(frame: np.ndarray) -> float:
    """Share of (near-)black pixels: what a hole in the warp would leave."""
    return float((frame.max(-1) <= 8).mean())


def _flat_blocks(frame: np.ndarray, k: int = 8) -> float:
    """Share of k x k blocks with (nearly) one colour: a region nothing painted."""
    h, w = (s // k * k for s in frame.shape[:2])
    blocks = frame[:h, :w].reshape(h // k, k, w // k, k, -1).astype(np.float32)
    return float((blocks.std(axis=(1, 3)).max(-1) < 1.5).mean())


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """A frontal portrait whose face is ~155 px across (dlib's detector box)."""
    return _read(shared_file("portraits", "liveportrait_s12.jpg"))


@pytest.fixture(scope="module")
def astro(tmp_path_factory) -> Path:
    from generator.io.samples import write_astronaut_image

    return write_astronaut_image(tmp_path_factory.mktemp("astro") / "astronaut.png")


# 1. A source face under 64 px


def test_a_small_source_face_warns_that_the_output_will_be_soft(portrait, tmp_path, caplog):
    k = 40 / 155  # the detector box goes from ~155 px to ~40 px
    small = cv2.resize(portrait, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    write_image(tmp_path / "small.png", small)
    with caplog.at_level("WARNING"):
        r = generate(tmp_path / "out.mp4", [tmp_path / "small.png"], config=SHORT, signing=NO_SIGN)
    m = _warning(r, r"the face is only (\d+) px across, below the 64 px .* upscaled ([\d.]+)x .* soft")
    assert MIN_FACE_PX_HARD <= int(m[1]) < MIN_FACE_PX and float(m[2]) > 1.5
    assert m[0] in caplog.text  # logged as well as returned
    frames = _frames(r.output)
    assert len(frames) == 5 and frames.std() > 10  # the fallback renders real frames


def test_a_face_under_the_hard_floor_is_refused_with_its_size(tmp_path):
    from generator.faces.backends import Detection, FaceBackend
    from generator.faces.motion import mean_face

    class TinyFace(FaceBackend):
        """A backend that finds a 20 px face (dlib's HOG detector misses faces that small)."""

        name = "tiny"

        def __init__(self):
            self.points = mean_face(40) * 0.5 + 10  # the face's landmark box: ~20 px

        def detect(self, image):
            lo, hi = self.points.min(0), self.points.max(0)
            return [Detection(np.concatenate([lo, hi]).astype(np.float32), 1.0)]

        def landmarks(self, image, box):
            return self.points.copy()

    rng = np.random.default_rng(0)
    write_image(tmp_path / "tiny.png", rng.integers(60, 200, (48, 48, 3), dtype=np.uint8))
    with pytest.raises(BadInputError, match=rf"tiny.png: the face is only 1\d px across, under the "
                                            rf"{MIN_FACE_PX_HARD} px that reliable landmarks need"):
        load_shots([tmp_path / "tiny.png"], 128, backend=TinyFace())


def test_a_face_too_small_to_detect_names_the_picture_size(portrait, tmp_path):
    k = 20 / 155
    tiny = cv2.resize(portrait, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    write_image(tmp_path / "tiny.png", tiny)
    h, w = tiny.shape[:2]
    with pytest.raises(NoFaceError, match=rf"tiny.png: no face found \({w}x{h} px; .* at least 64 px"):
        generate(tmp_path / "out.mp4", [tmp_path / "tiny.png"], config=SHORT, signing=NO_SIGN)
    assert not (tmp_path / "out.mp4").exists()


# 2. A profile or half-occluded source


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Path:
    """A near-profile frame (the woman looks off to the side) as a picture."""
    path = tmp_path_factory.mktemp("profile") / "profile.png"
    write_image(path, _read(shared_file("videos", "magicportrait_driving.mp4"), 200))
    return path


def test_a_profile_source_warns_that_the_far_side_is_hidden(profile, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        r = generate(tmp_path / "out.mp4", [profile], config=SHORT, signing=NO_SIGN)
    m = _warning(r, r"the face is turned about (\d+) degrees \(a three-quarter or profile view\): its far "
                    r"side is hidden")
    assert int(m[1]) > PROFILE_YAW_DEG and m[0] in caplog.text
    assert not any("covered" in w for w in r.warnings)  # the far cheek's sliver is not a cover
    frames = _frames(r.output)
    assert len(frames) == 5 and frames.std() > 10


def test_the_most_frontal_shot_leads_when_several_are_given(profile, astro):
    shots = load_shots([profile, astro], 128)
    assert shots.origins[0]["source"] == str(profile)  # as given ...
    ordered = frontal_first(shots)
    assert ordered.origins[0]["source"] == str(astro)  # ... but the frontal shot moves first
    assert abs(estimate_yaw(ordered.points[0])) < 10 < PROFILE_YAW_DEG < abs(estimate_yaw(ordered.points[1]))
    p, source_points, _ = resolve_person(None, None, [profile, astro], GenerateConfig())
    assert np.allclose(source_points, ordered.points[0])  # relative motion moves the frontal face
    assert p.meta["sources"][0]["source"] == str(astro)  # and --paste source uses that picture
    assert any("turned about" in w for w in p.meta["warnings"])
    assert frontal_first(ordered).origins == ordered.origins  # a frontal first shot keeps the order


def test_a_person_file_also_leads_with_the_most_frontal_shot(profile, astro, tmp_path):
    from generator.inference.person import load_person
    from generator.training.finetune import FinetuneConfig, finetune_to_file

    out = tmp_path / "person.safetensors"
    finetune_to_file(None, [profile, astro], out, FinetuneConfig(steps=0))
    meta = load_person(out).meta
    assert meta["sources"][0]["source"] == str(astro)
    assert abs(estimate_yaw(np.asarray(meta["source_points"][0], np.float32))) < 10


def test_frontal_portraits_get_no_warning():
    names = ("liveportrait_s12.jpg", "liveportrait_s5.jpg", "sadtalker_people_0.png", "tpsmm_source.png")
    shots = load_shots([shared_file("portraits", n) for n in names], 128)
    assert shots.warnings == [] and len(shots) == len(names)


def test_a_covered_face_warns_and_a_half_hidden_one_is_a_clear_error(tmp_path):
    from generator.faces.backends import create_backend

    img = _read(shared_file("portraits", "sadtalker_people_0.png"))
    x0, y0, x1, y1 = create_backend("dlib").detect(img)[0].box.astype(int)
    masked = img.copy()
    masked[(y0 + y1) // 2:y1 + 20, x0 - 20:x1 + 20] = (90, 90, 200)  # a flat blue cover over the mouth
    write_image(tmp_path / "masked.png", masked)
    r = generate(tmp_path / "out.mp4", [tmp_path / "masked.png"], config=SHORT, signing=NO_SIGN)
    m = _warning(r, r"part of the face looks covered \(([a-z ,]+): flat or off-colour\)")
    assert "chin" in m[1]
    assert len(_frames(r.output)) == 5
    half = img.copy()
    half[y0:y1 + 20, (x0 + x1) // 2:x1 + 30] = 0  # one side of the face blacked out
    write_image(tmp_path / "half.png", half)
    with pytest.raises(NoFaceError, match="half.png: no face found .* half-hidden faces are usually not"):
        generate(tmp_path / "half.mp4", [tmp_path / "half.png"], config=SHORT, signing=NO_SIGN)


# 3. Driving landmarks that fold warp triangles


def _folded(points: np.ndarray) -> np.ndarray:
    """The source's landmarks, then three driving shapes whose points cross over."""
    p = np.asarray(points, np.float32)
    centre, width = p.mean(0), p[16, 0] - p[0, 0]
    nose = p.copy()
    nose[27:36, 0] = 2 * p[16, 0] - p[27:36, 0] + 0.08 * width  # the nose thrown past the jaw line
    lips = p.copy()
    lips[48:68] = lips[48:68][::-1]  # the mouth turned inside out
    outline = p.copy()
    outline[:, 0] = 2 * centre[0] - p[:, 0]  # everything but the eyes mirrored
    outline[36:48] = p[36:48]
    return np.stack([p, nose, lips, outline])


def _check_no_hole(person, source_points: np.ndarray) -> None:
    """Render the source's own landmarks and the folded ones; the folded ones leave no hole."""
    import torch

    from generator.inference.person import landmark_batch

    points = _folded(source_points)
    assert (folded_area(points[1:], person.image_size) > FOLD_WARN_AREA).all()
    y = landmark_batch(points, person.image_size)
    raw = person.render_tensor(y, texture=person.textures(points))
    assert torch.isfinite(raw).all()  # G's output itself, before the uint8 conversion
    frames = person.render(points)
    ref = frames[0]
    for f in frames[1:]:
        assert _black(f) <= _black(ref) + 0.03  # no black hole where the warp folded
        assert _flat_blocks(f) <= _flat_blocks(ref) + 0.05  # no unpainted constant region
        assert f.std() > 10


def test_folded_driving_landmarks_leave_no_hole_with_the_bundled_model(astro):
    person, source_points, _ = resolve_person(None, None, [astro], GenerateConfig())
    _check_no_hole(person, source_points)


def test_the_warp_masks_folds_and_a_texture_person_renders_them_without_a_hole(astro):
    """The texture path even when the bundled model is a pure G: a fresh test_texture person."""
    import torch

    from generator.inference.person import init_person
    from generator.model.config import get_preset
    from generator.model.talking_head import TalkingHeadModel

    shots = load_shots([astro], 64)
    torch.manual_seed(0)
    model = TalkingHeadModel(get_preset("test_texture").model)
    x, y = shots.tensors()
    person = init_person(model, x, y, shots.points).prepare_for_inference()
    points = _folded(shots.points[0])
    crop = shots.frames[0]
    for dst in points[1:]:
        w = warp_face(crop, shots.points[0], dst)
        assert 0.01 < (w.mask == 0).mean() < 0.6  # folded triangles are masked ...
        assert _black(w.image) <= 2 * _black(crop) + 0.02  # ... yet every pixel still has colour
    tex = person.textures(points)
    assert (tex[1:, 3] == 0).any() and torch.isfinite(tex).all()  # G is told where the warp is invalid
    _check_no_hole(person, shots.points[0])


def test_generate_counts_and_warns_about_folding_frames(tmp_path, caplog):
    from generator.faces.motion import mean_face

    base = mean_face(256)
    frames = _folded(base)[[0, 0, 1, 2, 3, 0]]  # normal, normal, three folded, normal
    doc = {"media": {"fps": 25.0}, "frames_detail": [{"points": f.tolist()} for f in frames]}
    (tmp_path / "folded.json").write_text(json.dumps(doc))
    with caplog.at_level("WARNING"):
        r = generate(tmp_path / "out.mp4", driver=tmp_path / "folded.json",
                     config=GenerateConfig(smooth=0), signing=NO_SIGN)
    assert r.driver_frames_folded == [2, 3, 4]
    m = _warning(r, r"driving landmarks cross over \(fold the face mesh\) in 3 of 6 frames \(2-4\)")
    assert m[0] in caplog.text
    out = _frames(r.output)
    assert len(out) == 6 and all(f.std() > 10 and _black(f) < _black(out[0]) + 0.03 for f in out)


# 4. A driver with faceless frames


@pytest.fixture(scope="module")
def gappy_driver(tmp_path_factory) -> Path:
    """16 frames of a real talking head with frames 5-9 blacked out (the camera covered)."""
    with MediaReader(shared_file("videos", "eamm_happy.mp4")) as reader:
        frames = [f for i, f in reader.frames() if i < 16]
    frames = [np.zeros_like(f) if 5 <= i <= 9 else f for i, f in enumerate(frames)]
    path = tmp_path_factory.mktemp("driver") / "gappy.mp4"
    write_video(path, frames, fps=25, crf=12)
    return path


def test_faceless_driver_frames_hold_the_last_landmarks_and_are_reported(gappy_driver, tmp_path, caplog):
    png = tmp_path / "png"
    with caplog.at_level("WARNING"):
        r = generate(tmp_path / "out.mp4", driver=gappy_driver, signing=NO_SIGN,
                     config=GenerateConfig(smooth=0, png_dir=str(png)))  # no smoothing: exact holds
    assert r.frames == 16 and r.driver_frames_without_face == [5, 6, 7, 8, 9]
    m = _warning(r, r"driver: 5 of 16 frames \(5-9\) had no face: they hold the last face's landmarks")
    assert m[0] in caplog.text
    frames = [cv2.imread(str(png / f"{k:06d}.png")) for k in range(16)]
    assert all(np.array_equal(frames[k], frames[4]) for k in range(5, 10))  # held: frame 4's face
    assert not np.array_equal(frames[10], frames[4])  # and moving again once the face is back
    # no black frame in the output (the astronaut's own dark suit is the baseline)
    assert all(f.std() > 10 and _black(f) <= _black(frames[0]) + 0.03 for f in frames)


def test_a_driver_without_any_face_is_a_clear_error(gappy_driver, tmp_path):
    with pytest.raises(NoFaceError, match=r"gappy.mp4: no face found in any frame of the driver "
                                          r"\(frames 5-9\)"):
        generate(tmp_path / "out.mp4", driver=gappy_driver, config=GenerateConfig(start=5, end=10),
                 signing=NO_SIGN)
    black = tmp_path / "black.mp4"
    write_video(black, [np.zeros((128, 128, 3), np.uint8)] * 4, fps=25)
    with pytest.raises(NoFaceError, match=r"black.mp4: no face found in any frame of the driver \(a "
                                          r"driver needs"):
        generate(tmp_path / "out2.mp4", driver=black, signing=NO_SIGN)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out2.mp4").exists()
