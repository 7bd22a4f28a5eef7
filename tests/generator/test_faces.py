"""Face detection, 68 landmarks, both backends, and tracking through a clip."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import MissingWeightsError, SfumatoError
from generator.faces.backends import FAN_WEIGHTS_FILE, create_backend, dlib_model_path, fan_weights_path
from generator.faces.tracking import NO_FACE, OK, FaceTracker, TrackerConfig, iou
from generator.io.video import MediaReader
from tests.conftest import ASTRONAUT_FACE


def test_dlib_models_found_without_importing_the_package():
    for name in ("shape_68", "cnn", "recognition"):
        assert dlib_model_path(name).stat().st_size > 100_000
    with pytest.raises(ValueError, match="unknown dlib model"):
        dlib_model_path("nope")


def test_dlib_finds_the_astronaut_with_all_points_inside(dlib_backend, astronaut):
    faces = dlib_backend.detect(astronaut)
    assert len(faces) == 1
    assert iou(faces[0].box, np.array(ASTRONAUT_FACE)) > 0.4
    pts = dlib_backend.landmarks(astronaut, faces[0].box)
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    x0, y0, x1, y1 = ASTRONAUT_FACE
    assert ((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)).all()
    # Anatomy, not just a box: eyes above the nose tip above the mouth, right eye on the left.
    assert pts[36:42, 1].mean() < pts[33, 1] < pts[48:60, 1].mean()
    assert pts[36:42, 0].mean() < pts[42:48, 0].mean()


def test_cnn_detector_agrees_with_hog(astronaut):
    cnn = create_backend("dlib", detector="cnn", detect_max_side=256)
    faces = cnn.detect(astronaut)
    assert len(faces) == 1 and iou(faces[0].box, np.array(ASTRONAUT_FACE)) > 0.4


def test_small_face_in_large_frame_is_found(dlib_backend, astronaut):
    import cv2

    big = np.zeros((1400, 1400, 3), np.uint8)
    big[900:1220, 100:420] = cv2.resize(astronaut, (320, 320))  # face ~60 px wide
    faces = dlib_backend.detect(big)
    assert faces, "the full-size pass should find the small face"
    assert 100 <= faces[0].box[0] < faces[0].box[2] <= 420


def test_small_face_in_small_frame_is_found(dlib_backend, astronaut):
    import cv2

    small = cv2.resize(astronaut, (200, 200))  # face ~36 px wide: below HOG's 80 px window
    faces = dlib_backend.detect(small)
    assert faces and iou(faces[0].box * 512 / 200, np.array(ASTRONAUT_FACE)) > 0.3


def test_no_face_in_noise(dlib_backend):
    rng = np.random.default_rng(0)
    assert dlib_backend.detect(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)) == []
    assert dlib_backend.detect(np.zeros((1, 1, 3), np.uint8)) == []


def test_fan_without_weights_names_the_file(monkeypatch, tmp_path):
    monkeypatch.delenv("SFUMATO_FAN_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match=FAN_WEIGHTS_FILE):
        create_backend("fan")
    with pytest.raises(MissingWeightsError, match=str(tmp_path)):
        fan_weights_path(tmp_path)  # a folder without the file
    monkeypatch.setenv("SFUMATO_FAN_WEIGHTS", str(tmp_path / "x.pth.tar"))
    with pytest.raises(MissingWeightsError, match="not found"):
        fan_weights_path()


def test_fan_rejects_a_damaged_weight_file(tmp_path):
    bad = tmp_path / FAN_WEIGHTS_FILE
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(SfumatoError, match="not a usable 2D-FAN weight file"):
        create_backend("fan", weights=tmp_path)


@pytest.mark.slow
def test_fan_backend_runs_offline_from_a_local_file(tmp_path, astronaut):
    # Real FAN weights cannot be downloaded here; a randomly initialised FAN with the same
    # architecture proves the plumbing: local file -> face-alignment -> 68 points, no network.
    import torch
    from face_alignment.models import FAN

    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), tmp_path / FAN_WEIGHTS_FILE)
    fan = create_backend("fan", weights=tmp_path)
    assert fan.describe()["weights"] == FAN_WEIGHTS_FILE
    box = fan.detect(astronaut)[0].box
    pts = fan.landmarks(astronaut, box)
    assert pts.shape == (68, 2) and np.isfinite(pts).all()


def test_tracking_agrees_with_detecting_every_frame(dlib_backend, astronaut_clip):
    def run(every):
        tracker = FaceTracker(dlib_backend, TrackerConfig(detect_every=every))
        with MediaReader(astronaut_clip) as r:
            return [tracker.step(f, i) for i, f in r.frames()]

    tracked, detected = run(8), run(1)
    assert all(f.status == OK for f in tracked + detected)
    assert sum(f.source == "detect" for f in tracked) <= len(tracked) // 8 + 2
    err = np.mean([np.linalg.norm(a.points - b.points, axis=1).mean()
                   for a, b in zip(tracked, detected)])
    assert err < 2.0, f"tracking drifts {err:.2f} px from per-frame detection"


def two_faces(astronaut):
    import cv2

    canvas = np.zeros((400, 700, 3), np.uint8)
    canvas[:, :400] = cv2.resize(astronaut, (400, 400))  # larger face on the left
    canvas[100:356, 420:676] = cv2.resize(astronaut, (256, 256))
    return canvas


def test_several_faces_largest_or_chosen_index(dlib_backend, astronaut):
    img = two_faces(astronaut)
    faces = dlib_backend.detect(img)
    assert len(faces) >= 2 and all(a.area >= b.area for a, b in zip(faces, faces[1:]))
    assert faces[0].box[2] < 400 < faces[1].box[0]  # largest first
    first = FaceTracker(dlib_backend, TrackerConfig(face_index=0)).step(img, 0)
    second = FaceTracker(dlib_backend, TrackerConfig(face_index=1)).step(img, 0)
    assert first.points[:, 0].mean() < 400 < second.points[:, 0].mean()
    missing = FaceTracker(dlib_backend, TrackerConfig(face_index=9)).step(img, 0)
    assert missing.status == NO_FACE and f"only {len(faces)} face(s)" in missing.reason


def test_track_keeps_to_the_same_person(dlib_backend, astronaut):
    img = two_faces(astronaut)
    tracker = FaceTracker(dlib_backend, TrackerConfig(face_index=1, detect_every=2))
    xs = [tracker.step(img, i).points[:, 0].mean() for i in range(6)]
    assert all(x > 400 for x in xs)


def test_frames_without_face_get_a_reason(dlib_backend, astronaut):
    tracker = FaceTracker(dlib_backend, TrackerConfig(detect_every=4))
    blank = np.zeros_like(astronaut)
    results = [tracker.step(f, i) for i, f in enumerate([astronaut, blank, blank, astronaut])]
    assert [r.status for r in results] == [OK, NO_FACE, NO_FACE, OK]
    assert results[1].reason == "no face detected"
    tiny = tracker.step(np.zeros((1, 1, 3), np.uint8), 9)
    assert tiny.status == NO_FACE and "too small" in tiny.reason


def test_track_video_is_the_tracker_over_the_chosen_frames(dlib_backend, astronaut, tmp_path):
    from generator.faces.tracking import NOT_DECODED, track_video
    from generator.io.video import write_video

    blank = np.zeros_like(astronaut)
    write_video(tmp_path / "clip.mp4", [astronaut, astronaut, blank, astronaut, astronaut, astronaut], fps=25)
    cfg = TrackerConfig(detect_every=1)
    every = track_video(tmp_path / "clip.mp4", dlib_backend, cfg)
    with MediaReader(tmp_path / "clip.mp4") as r:  # the same as stepping a tracker frame by frame
        tracker = FaceTracker(dlib_backend, cfg)
        by_hand = [tracker.step(f, i) for i, f in r.frames()]
    assert every.status == [f.status for f in by_hand] == [OK, OK, NO_FACE, OK, OK, OK]
    np.testing.assert_array_equal(every.points[0], by_hand[0].points)
    assert np.isnan(every.points[2]).all() and np.isnan(every.boxes[2]).all()
    assert every.missing() == [{"index": 2, "status": NO_FACE, "reason": "no face detected"}]
    # a stream window, a sample, explicit indices (one past the end is recorded, not dropped)
    assert list(track_video(tmp_path / "clip.mp4", dlib_backend, cfg, start=1, end=4).indices) == [1, 2, 3]
    assert list(track_video(tmp_path / "clip.mp4", dlib_backend, cfg, limit=2).indices) == [0, 1]
    assert list(track_video(tmp_path / "clip.mp4", dlib_backend, cfg, sample=3).indices) == [0, 2, 5]
    kept = track_video(tmp_path / "clip.mp4", dlib_backend, cfg, indices=[4, 9], keep_frames=True)
    assert kept.status == [OK, NOT_DECODED] and kept.frames[1] is None
    assert kept.frames[0].shape == astronaut.shape
    assert list(kept.found) == [True, False] and list(kept.decoded) == [True, False]
