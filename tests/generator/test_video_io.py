"""Video I/O: write/read round trips, seeking equals sequential decoding, rotation, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import BadInputError, VideoReadError, VideoWriteError
from generator.io.video import (
    MediaReader,
    evenly_spaced_indices,
    probe,
    read_image,
    write_image,
    write_video,
)
from tests.conftest import encode, numbered_frames, shared_file


def test_write_then_read_round_trip(tmp_path):
    frames = numbered_frames(30)
    path = tmp_path / "clip.mp4"
    assert write_video(path, frames, fps=30, crf=18) == 30
    info = probe(path)
    assert (info.kind, info.width, info.height, info.frame_count) == ("video", 96, 64, 30)
    assert info.fps == pytest.approx(30.0)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.codec == "h264"
    with MediaReader(path) as reader:
        decoded = [f for _, f in reader.frames()]
    assert len(decoded) == 30
    assert decoded[0].shape == (64, 96, 3) and decoded[0].dtype == np.uint8
    # CRF 18 is visually lossless: mean error of a few grey levels at most.
    err = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, decoded)])
    assert err < 6


def test_crf_controls_quality_and_size(tmp_path):
    frames = numbered_frames(20, 96, 128)
    sizes, errors = {}, {}
    for crf in (0, 23, 40):
        path = tmp_path / f"c{crf}.mp4"
        write_video(path, frames, fps=25, crf=crf)
        with MediaReader(path) as r:
            dec = [f for _, f in r.frames()]
        sizes[crf] = path.stat().st_size
        errors[crf] = np.mean([np.abs(a.astype(int) - b.astype(int)).mean()
                               for a, b in zip(frames, dec)])
    assert sizes[0] > sizes[23] > sizes[40]
    assert errors[0] < errors[23] < errors[40]


def test_odd_size_is_padded_to_even(tmp_path):
    frames = [np.full((33, 51, 3), 100, np.uint8)] * 3
    path = tmp_path / "odd.mp4"
    write_video(path, frames, fps=10)
    info = probe(path)
    assert (info.width, info.height) == (52, 34)


@pytest.mark.parametrize("strategy", ["auto", "seek", "sequential"])
def test_sampled_frames_equal_sequential_decode(tmp_path, strategy):
    # Many keyframes (GOP 10) so that seeking really happens, and B-frames (x264 default).
    path = encode(tmp_path / "gop.mp4", numbered_frames(120), gop=10)
    with MediaReader(path) as reader:
        assert reader.info.keyframe_count >= 10
        sequential = dict(reader.frames())
        indices, frames = reader.sample(16, strategy=strategy)
    assert indices == evenly_spaced_indices(120, 16)
    assert indices[0] == 0 and indices[-1] == 119
    for i, f in zip(indices, frames):
        assert np.array_equal(f, sequential[i]), f"frame {i} differs"


@pytest.mark.parametrize("ext,fmt,codec", [("mkv", "matroska", "libx264"), ("webm", "webm", "libvpx-vp9"),
                                           ("avi", "avi", "libx264"), ("mov", "mov", "libx264")])
def test_containers_read_and_sample(tmp_path, ext, fmt, codec):
    path = encode(tmp_path / f"clip.{ext}", numbered_frames(40), fmt=fmt, codec=codec, gop=8)
    with MediaReader(path) as reader:
        assert reader.info.frame_count == 40
        sequential = dict(reader.frames())
        indices, frames = reader.sample(7)
    assert len(sequential) == 40 and len(indices) == 7
    assert all(np.array_equal(f, sequential[i]) for i, f in zip(indices, frames))


def test_shared_clip_sampling_matches_sequential():
    path = shared_file("videos", "liveportrait_d12.mp4")
    with MediaReader(path) as reader:
        sequential = dict(reader.frames())
        indices, frames = reader.sample(32)
    assert len(indices) == 32
    assert all(np.array_equal(f, sequential[i]) for i, f in zip(indices, frames))


def test_rotation_metadata_is_applied(tmp_path):
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :8] = 255  # a white bar on the left edge
    path = encode(tmp_path / "rot.mp4", [frame] * 4, rotation=90)
    with MediaReader(path) as reader:
        assert reader.info.rotation == 90
        assert (reader.info.width, reader.info.height) == (32, 64)
        _, out = next(reader.frames())
    assert out.shape == (64, 32, 3)
    # 90 degrees counter-clockwise: the left edge becomes the bottom edge.
    assert out[-6:].mean() > 200 and out[:20].mean() < 30


def test_truncated_streamable_file_decodes_what_is_there(tmp_path):
    full = encode(tmp_path / "full.mkv", numbered_frames(100, 128, 128), fmt="matroska")
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.5)])
    with MediaReader(cut) as reader:
        frames = list(reader.frames())
        assert reader.truncated
        assert "truncated" in reader.warning
        indices, sampled = reader.sample(8)
    assert 20 < len(frames) < 100
    assert len(sampled) >= 6


def test_truncated_mp4_without_index_names_the_problem(tmp_path):
    full = tmp_path / "full.mp4"
    write_video(full, numbered_frames(50), fps=25)  # moov box written at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(VideoReadError, match="truncated mp4"):
        probe(cut)


def test_truncated_faststart_mp4_is_flagged(tmp_path):
    full = encode(tmp_path / "fs.mp4", numbered_frames(100, 128, 128),
                  options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    with MediaReader(cut) as reader:
        n = sum(1 for _ in reader.frames())
        assert reader.truncated
    assert 20 < n < 100


def test_bad_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty file"):
        probe(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoReadError, match="not a video or image"):
        probe(text)
    with pytest.raises(BadInputError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(BadInputError, match="is a folder"):
        probe(tmp_path)


def test_audio_only_file_is_refused(tmp_path):
    import av

    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 16000
        for _ in range(10):
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoReadError, match="no video stream"):
        probe(path)


def test_images_grayscale_tiny_and_huge(tmp_path):
    gray = tmp_path / "gray.png"
    import cv2

    cv2.imwrite(str(gray), np.full((40, 30), 77, np.uint8))
    img = read_image(gray)
    assert img.shape == (40, 30, 3) and (img == 77).all()
    tiny = tmp_path / "tiny.png"
    write_image(tiny, np.zeros((1, 1, 3), np.uint8))
    assert probe(tiny).width == 1
    huge = tmp_path / "huge.png"
    write_image(huge, np.zeros((8000, 8000, 3), np.uint8))
    with MediaReader(huge) as reader:
        assert (reader.info.kind, reader.info.width, reader.info.height) == ("image", 8000, 8000)
        assert reader.sample(5)[0] == [0]


def test_unwritable_output_is_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(VideoWriteError, match="does not exist"):
        write_video(tmp_path / "no" / "such" / "dir" / "x.mp4", numbered_frames(2), fps=25)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(VideoWriteError, match="not a folder"):
        write_video(a_file / "x.mp4", numbered_frames(2), fps=25)
    with pytest.raises(VideoWriteError, match="is a folder"):
        write_video(tmp_path, numbered_frames(2), fps=25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_output_in_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(VideoWriteError, match="permission denied"):
            write_video(locked / "x.mp4", numbered_frames(2), fps=25)
    finally:
        locked.chmod(0o700)


def test_failed_write_keeps_existing_file(tmp_path):
    path = tmp_path / "keep.mp4"
    write_video(path, numbered_frames(5), fps=25)
    before = path.read_bytes()

    def frames():
        yield from numbered_frames(3)
        raise RuntimeError("generator crashed mid-way")

    with pytest.raises(RuntimeError):
        write_video(path, frames(), fps=25)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_evenly_spaced_indices():
    assert evenly_spaced_indices(100, 5) == [0, 25, 50, 74, 99]
    assert evenly_spaced_indices(3, 10) == [0, 1, 2]
    assert evenly_spaced_indices(0, 4) == []


def test_reproducible_writer_gives_the_same_bytes_for_the_same_frames(tmp_path):
    from generator.io.files import sha256_file
    from generator.io.video import VideoWriter

    frames = numbered_frames(12, h=51, w=77)  # odd sizes are padded like the in-process writer's
    hashes = set()
    for k in range(3):
        with VideoWriter(tmp_path / f"{k}.mp4", fps=25, crf=23, reproducible=True) as w:
            for f in frames:
                w.write(f)
        hashes.add(sha256_file(tmp_path / f"{k}.mp4"))
    assert len(hashes) == 1
    with MediaReader(tmp_path / "0.mp4") as r:
        got = [f for _, f in r.frames()]
    assert len(got) == 12 and got[0].shape == (52, 78, 3)
    assert np.abs(got[5][:51, :77].astype(int) - frames[5]).mean() < 4


def test_reproducible_writer_errors_leave_nothing(tmp_path):
    from generator.io.video import VideoWriter

    with pytest.raises(VideoWriteError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", fps=25, reproducible=True):
            pass
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "broken.mp4", fps=25, reproducible=True) as w:
            w.write(numbered_frames(1)[0])
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_read_at_goes_on_forward_across_calls_and_seeks_back_when_asked(tmp_path):
    frames = numbered_frames(60, 64, 96)
    path = encode(tmp_path / "long_gop.mp4", frames, gop=60)  # one keyframe: every seek decodes from 0
    with MediaReader(path) as reader:
        everything = dict(reader.frames())
        first = reader.read_at([5, 6])
        assert reader._cursor[1] == 6  # the decoder stays where it stopped ...
        later = reader.read_at([30, 31])
        assert reader._cursor[1] == 31  # ... and went on from there, not from the keyframe
        back = reader.read_at([2, 6])  # behind the decoder: a seek, the same pixels
    for got in (first, later, back):
        for i, rgb in got.items():
            assert np.array_equal(rgb, everything[i])
    assert sorted(first) == [5, 6] and sorted(later) == [30, 31] and sorted(back) == [2, 6]
