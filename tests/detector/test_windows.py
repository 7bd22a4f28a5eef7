"""Time windows: plans tile the whole file, bursts are runs of consecutive frames inside a window, and
``iter_windows`` reads those frames (downscaled) with the followed face's landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from detector.data.windows import (
    WindowConfig,
    burst_indices,
    iter_windows,
    plan_windows,
    window_plan_of,
    windows_cover,
)
from detector.evidence.dynamics import FEATURES, window_features
from generator.errors import BadInputError
from generator.io.encode import write_video
from generator.io.video import MediaReader
from tests.conftest import shared_file


def _length(fps: float, config: WindowConfig = WindowConfig()) -> int:
    return max(int(round(config.seconds * fps)), config.burst_frames)


# -- plan_windows ------------------------------------------------------------------------------------

@pytest.mark.parametrize("frame_count,fps", [
    (1, 25.0), (7, 25.0), (99, 25.0), (100, 25.0), (101, 25.0), (199, 25.0), (250, 25.0), (300, 25.0),
    (1000, 30.0), (1234, 29.97), (4321, 59.94), (12, 0.5),
])
def test_plan_tiles_the_file_without_gap_or_overlap(frame_count, fps):
    plan = plan_windows(frame_count, fps)
    length = _length(fps)
    assert plan.complete and plan.fps == fps
    assert windows_cover(plan, frame_count)
    assert len(plan.ranges) == max(1, frame_count // length)
    for k, (s, e) in enumerate(plan.ranges):
        assert s == k * length
        if k + 1 < len(plan.ranges):
            assert e - s == length
    s, e = plan.ranges[-1]
    # The last window takes the rest: at least one window long (unless the file is shorter), < two.
    assert e == frame_count
    assert (e - s == frame_count) if frame_count < length else (length <= e - s < 2 * length)


def test_last_window_absorbs_a_short_rest():
    assert plan_windows(250, 25.0).ranges == [(0, 100), (100, 250)]
    assert plan_windows(299, 25.0).ranges == [(0, 100), (100, 299)]  # a rest of 99 frames joins
    assert plan_windows(300, 25.0).ranges == [(0, 100), (100, 200), (200, 300)]
    assert plan_windows(301, 25.0).ranges == [(0, 100), (100, 200), (200, 301)]
    cfg = WindowConfig(seconds=2.0)
    assert plan_windows(141, 25.0, cfg).ranges == [(0, 50), (50, 141)]


def test_file_shorter_than_one_window_is_one_window():
    for n in (1, 2, 5, 60, 99):
        plan = plan_windows(n, 25.0)
        assert plan.ranges == [(0, n)] and plan.complete and windows_cover(plan, n)


def test_empty_file_and_unknown_rate():
    empty = plan_windows(0, 25.0)
    assert empty.ranges == [] and empty.complete
    assert windows_cover(empty, 0) and not windows_cover(empty, 5)
    # An unknown rate (0 or None) is read as 25 fps.
    for fps in (0.0, None, -3.0):
        plan = plan_windows(250, fps)
        assert plan.fps == 25.0 and plan.ranges == [(0, 100), (100, 250)]


def test_window_is_never_shorter_than_a_burst():
    cfg = WindowConfig(seconds=0.04, burst_frames=5)  # 1 frame at 25 fps: raised to one burst
    plan = plan_windows(23, 25.0, cfg)
    assert plan.ranges == [(0, 5), (5, 10), (10, 15), (15, 23)]
    assert windows_cover(plan, 23)


def test_max_windows_spreads_windows_evenly_and_marks_incomplete():
    cfg = WindowConfig(seconds=1.0, max_windows=4)
    full = plan_windows(250, 25.0, WindowConfig(seconds=1.0))
    plan = plan_windows(250, 25.0, cfg)  # 10 windows of 25 frames, keep 4
    assert not plan.complete and not windows_cover(plan, 250)
    assert plan.ranges == [(0, 25), (75, 100), (150, 175), (225, 250)]
    assert set(plan.ranges) <= set(full.ranges)

    # The default cap: a long file keeps exactly max_windows windows, first and last included,
    # in order, evenly spaced (steps between kept windows differ by at most one window).
    n = 400
    long_plan = plan_windows(100 * n + 37, 25.0)
    kept = [s // 100 for s, _ in long_plan.ranges]
    assert len(kept) == WindowConfig().max_windows and not long_plan.complete
    assert kept[0] == 0 and kept[-1] == n - 1 and long_plan.ranges[-1][1] == 100 * n + 37
    steps = np.diff(kept)
    assert steps.min() >= 1 and steps.max() - steps.min() <= 1
    assert all(e - s == 100 for s, e in long_plan.ranges[:-1])

    # Exactly max_windows windows: nothing dropped.
    exact = plan_windows(100 * 150, 25.0)
    assert exact.complete and len(exact.ranges) == 150 and windows_cover(exact, 100 * 150)


def test_windows_cover_rejects_gaps_overlaps_and_short_plans():
    from detector.data.windows import WindowPlan

    assert windows_cover(WindowPlan([(0, 10), (10, 20)], 25.0, True), 20)
    assert not windows_cover(WindowPlan([(0, 10), (11, 20)], 25.0, True), 20)  # gap
    assert not windows_cover(WindowPlan([(0, 10), (9, 20)], 25.0, True), 20)  # overlap
    assert not windows_cover(WindowPlan([(1, 10), (10, 20)], 25.0, True), 20)  # misses frame 0
    assert not windows_cover(WindowPlan([(0, 10), (10, 19)], 25.0, True), 20)  # misses the last
    assert not windows_cover(WindowPlan([(0, 10), (10, 21)], 25.0, True), 20)  # past the end


@pytest.mark.parametrize("kwargs", [
    {"seconds": 0}, {"seconds": -1.0}, {"bursts": 0}, {"burst_frames": 1}, {"max_windows": 0},
    {"max_side": 32},
])
def test_bad_window_config_is_refused(kwargs):
    with pytest.raises(BadInputError):
        WindowConfig(**kwargs)


# -- burst_indices -----------------------------------------------------------------------------------

def test_bursts_of_a_default_window():
    runs = burst_indices(0, 100)
    assert runs == [list(range(0, 5)), list(range(32, 37)), list(range(63, 68)), list(range(95, 100))]
    assert burst_indices(200, 300) == [[i + 200 for i in r] for r in runs]


@pytest.mark.parametrize("cfg", [WindowConfig(), WindowConfig(bursts=2, burst_frames=3),
                                 WindowConfig(bursts=6, burst_frames=2), WindowConfig(bursts=1)])
def test_bursts_are_consecutive_runs_inside_the_window(cfg):
    b = cfg.burst_frames
    for start in (0, 7, 1000):
        for span in list(range(0, 40)) + [57, 99, 100, 101, 151, 240]:
            end = start + span
            runs = burst_indices(start, end, cfg)
            if span == 0:
                assert runs == []
                continue
            if span <= b:
                assert runs == [list(range(start, end))]
                continue
            assert len(runs) == min(cfg.bursts, span // b)
            flat = [i for r in runs for i in r]
            assert all(start <= i < end for i in flat)
            assert flat == sorted(set(flat))  # in order, no frame twice (runs do not overlap)
            for r in runs:
                assert len(r) == b and r == list(range(r[0], r[0] + b))
            assert runs[0][0] == start
            if len(runs) > 1:  # spread over the whole window, evenly
                assert runs[-1][-1] == end - 1
                gaps = np.diff([r[0] for r in runs])
                assert gaps.max() - gaps.min() <= 1


# -- iter_windows ------------------------------------------------------------------------------------

def _numbered_clip(path, n: int = 32, h: int = 96, w: int = 160, fps: float = 10.0):
    """A face-free clip whose frame i has mean level 30 + 6 i (to tell which frame was read)."""
    ramp = np.linspace(-20, 20, w, dtype=np.float32)[None, :, None]
    frames = [np.clip(30 + 6 * i + ramp + np.zeros((h, w, 3), np.float32), 0, 255).astype(np.uint8)
              for i in range(n)]
    write_video(path, frames, fps, crf=10)
    return path


def test_iter_windows_reads_the_planned_bursts_of_a_synthetic_clip(tmp_path, dlib_backend):
    path = _numbered_clip(tmp_path / "numbered.mp4")
    cfg = WindowConfig(seconds=1.0, bursts=2, burst_frames=3, max_side=64)
    with MediaReader(path) as reader:
        info = reader.info
        plan = window_plan_of(info, cfg)
        assert plan.ranges == [(0, 10), (10, 20), (20, 32)] and windows_cover(plan, info.frame_count)
        windows = list(iter_windows(reader, dlib_backend, cfg))
        # A reader the caller opened is left open.
        assert reader.read_at([5])[5].shape == (96, 160, 3)
    assert [w.index for w in windows] == [0, 1, 2]
    for w, (s, e) in zip(windows, plan.ranges):
        runs = burst_indices(s, e, cfg)
        assert w.frame_indices.tolist() == [i for r in runs for i in r]
        assert w.burst.tolist() == [k for k, r in enumerate(runs) for _ in r]
        assert (w.start, w.end) == (s / 10.0, e / 10.0)
        # Downscaled to max_side on the long side; the frames are the ones at those indices.
        assert w.scale == pytest.approx(0.4)
        assert w.frames.shape == (len(w.frame_indices), 38, 64, 3) and w.frames.dtype == np.uint8
        levels = w.frames.reshape(len(w.frames), -1).mean(axis=1)
        np.testing.assert_allclose(levels, 30 + 6 * w.frame_indices, atol=2.5)
        # No face in this clip: NaN landmarks everywhere, and the features say nothing.
        assert w.points.shape == (len(w.frame_indices), 68, 2) and not w.found.any()
        assert np.isnan(w.points).all()
        feats, facts = window_features(w)
        assert set(feats) == set(FEATURES) and all(np.isnan(v) for v in feats.values())
        assert facts.pairs == 0
    # The path form opens and closes the file itself; the same windows come out.
    again = list(iter_windows(str(path), dlib_backend, cfg))
    assert [w.frame_indices.tolist() for w in again] == [w.frame_indices.tolist() for w in windows]
    np.testing.assert_array_equal(again[1].frames, windows[1].frames)


@pytest.mark.shared
def test_iter_windows_on_a_shared_clip(dlib_backend):
    path = shared_file("videos", "eamm_happy.mp4")  # 256 px, 141 frames at 25 fps, one face
    cfg = WindowConfig(seconds=2.0, bursts=2, burst_frames=3, max_side=128)
    with MediaReader(path) as reader:
        info = reader.info
        plan = window_plan_of(info, cfg)
        windows = list(iter_windows(reader, dlib_backend, cfg))
    assert windows_cover(plan, info.frame_count) and len(windows) == len(plan.ranges) >= 2
    # The windows follow each other and cover the file's whole duration.
    assert windows[0].start == 0.0
    assert windows[-1].end == pytest.approx(info.frame_count / info.fps, abs=1e-3)
    assert windows[-1].end == pytest.approx(info.duration, abs=0.1)
    for a, b in zip(windows, windows[1:]):
        assert a.end == b.start
    for w, (s, e) in zip(windows, plan.ranges):
        assert len(w.frame_indices) == 2 * 3
        assert np.all((w.frame_indices >= s) & (w.frame_indices < e))
        assert np.all(w.frame_indices / info.fps >= w.start - 1e-6)
        assert np.all(w.frame_indices / info.fps < w.end + 1e-6)
        for k in range(2):  # each burst is a run of consecutive frames
            run = w.frame_indices[w.burst == k]
            assert len(run) == 3 and np.all(np.diff(run) == 1)
        assert w.scale == pytest.approx(0.5) and w.frames.shape[1:] == (128, 128, 3)
        # The face is found in every frame, and its landmarks are in the downscaled frame's pixels.
        assert w.found.all()
        assert np.all(w.points > -5) and np.all(w.points < 128 + 5)
        size = (w.points.max(axis=1) - w.points.min(axis=1)).max(axis=1)
        assert np.all(size > 30)  # a face filling much of a 128 px frame, not a speck


@pytest.mark.shared
def test_iter_windows_on_a_still_image_is_one_window_of_one_frame(dlib_backend):
    path = shared_file("portraits", "sadtalker_happy.png")  # 256 px portrait
    cfg = WindowConfig(max_side=128)
    windows = list(iter_windows(path, dlib_backend, cfg))
    assert len(windows) == 1
    w = windows[0]
    assert (w.index, w.start, w.end) == (0, 0.0, 0.0)
    assert w.frame_indices.tolist() == [0] and w.burst.tolist() == [0]
    assert w.frames.shape == (1, 128, 128, 3) and w.scale == pytest.approx(0.5)
    assert w.found.tolist() == [True]
    with MediaReader(path) as reader:
        plan = window_plan_of(reader.info, cfg)
    assert plan.ranges == [(0, 1)] and plan.complete
    # One frame has no dynamics: every statistic is NaN, nothing raises.
    feats, facts = window_features(w)
    assert all(np.isnan(v) for v in feats.values()) and facts.frames == 1 and facts.pairs == 0


def test_a_truncated_file_gives_the_windows_it_can_read(tmp_path, dlib_backend):
    from detector.evidence.clip import measure_windows
    from detector.evidence.streams import create_stream
    from tests.conftest import encode, numbered_frames

    full = encode(tmp_path / "full.mkv", numbered_frames(150, 128, 128), fmt="matroska")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.5)])
    windows, coverage = measure_windows(cut, [create_stream("dynamics")], dlib_backend,
                                        config=WindowConfig(seconds=1.0))
    assert 0 < coverage.windows == len(windows) < 6  # 150 frames would be 6 windows of 1 s
    assert all(w.frames for w in windows) and windows[-1].end <= 6.0
