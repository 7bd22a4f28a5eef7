"""Whole-video landmark extraction: every frame accounted for, files that round-trip."""

from __future__ import annotations

import json

import numpy as np

from generator.faces.extract import extract_landmarks, load_landmarks_npz
from generator.faces.tracking import TrackerConfig
from generator.io.samples import astronaut_frames
from generator.io.video import probe, write_video


def test_frames_without_a_face_are_kept_with_reasons(tmp_path, dlib_backend):
    frames = astronaut_frames(12, 256)
    frames[5] = np.zeros_like(frames[5])
    frames[6] = np.full_like(frames[6], 128)
    clip = tmp_path / "gap.mp4"
    write_video(clip, frames, fps=25, crf=10)
    track = extract_landmarks(clip, dlib_backend, TrackerConfig(detect_every=4),
                              overlay_path=tmp_path / "gap.overlay.mp4")
    assert list(track.indices) == list(range(12))
    assert [m["index"] for m in track.missing()] == [5, 6]
    assert all(m["reason"] == "no face detected" for m in track.missing())
    assert np.isnan(track.points[5]).all() and np.isfinite(track.points[4]).all()
    overlay_info = probe(tmp_path / "gap.overlay.mp4")
    assert overlay_info.frame_count == 12 and overlay_info.width == 256


def test_saved_files_round_trip(tmp_path, dlib_backend, astronaut_clip):
    track = extract_landmarks(astronaut_clip, dlib_backend, max_frames=10)
    npz, js = tmp_path / "a.npz", tmp_path / "a.json"
    track.save(npz, js)
    back = load_landmarks_npz(npz)
    assert np.array_equal(back["points"], track.points)
    assert np.array_equal(back["indices"], np.arange(10))
    assert back["meta"]["frames_with_face"] == 10
    doc = json.loads(js.read_text())
    assert len(doc["frames_detail"]) == 10
    first = doc["frames_detail"][0]
    assert first["status"] == "ok" and len(first["points"]) == 68
    assert np.allclose(first["points"], track.points[0], atol=0.01)


def test_image_input_gives_png_overlay(tmp_path, dlib_backend):
    from generator.io.samples import write_astronaut_image

    img = write_astronaut_image(tmp_path / "astro.png")
    track = extract_landmarks(img, dlib_backend, overlay_path=tmp_path / "astro.overlay.png")
    assert track.info.kind == "image" and track.ok.tolist() == [True]
    assert probe(tmp_path / "astro.overlay.png").width == 512


def test_tiny_huge_and_grayscale_images(tmp_path, dlib_backend, astronaut):
    import cv2

    from generator.io.video import write_image

    tiny = tmp_path / "tiny.png"
    write_image(tiny, np.zeros((1, 1, 3), np.uint8))
    t = extract_landmarks(tiny, dlib_backend)
    assert t.missing() == [{"index": 0, "reason": "image too small to hold a face (1x1 px)"}]
    huge = tmp_path / "huge.jpg"
    canvas = np.full((8000, 8000, 3), 60, np.uint8)
    canvas[3000:4024, 3000:4024] = cv2.resize(astronaut, (1024, 1024))
    write_image(huge, canvas)
    t = extract_landmarks(huge, dlib_backend)
    assert t.ok.tolist() == [True]
    assert 3000 < t.points[0][:, 0].min() and t.points[0][:, 0].max() < 4024
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))
    assert extract_landmarks(gray, dlib_backend).ok.tolist() == [True]
