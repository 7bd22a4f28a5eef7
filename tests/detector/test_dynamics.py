"""Clip dynamics on synthetic windows with a known answer, and the clip fakes that train them.

Each scene is a smooth background and a smooth elliptical "head" carrying a 68-point landmark
template that moves by a known step; sensor noise is either drawn afresh for every frame (a camera)
or frozen (one picture reused). Windows are built directly, so no face detector is involved; one
test goes through a lossless (CRF 0) encode to show the measures survive a real decode.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector.data.clipfakes import (
    CHEAP_KINDS,
    duplicated,
    interpolated,
    make_clip_fakes,
    still_face,
    still_rigid,
)
from detector.data.windows import Window
from detector.evidence.dynamics import FEATURES, window_features
from generator.errors import BadInputError
from generator.faces.motion import MEAN_FACE
from generator.io.encode import write_video
from generator.io.video import MediaReader
from tests.conftest import shared_file

H, W = 192, 320
FACE = 48.0  # face size (landmark box), pixels
SIGMA = 3.0  # sensor noise, grey levels
STEP = 2.0  # head motion per frame, pixels
# Two bursts of five consecutive frames, as iter_windows reads them.
INDICES = list(range(5)) + list(range(20, 25))
BURSTS = [0] * 5 + [1] * 5

BG_FEATURES = ("bg_vs_head_motion", "bg_frozen_share", "bg_noise_corr", "face_vs_bg_noise_corr",
               "face_vs_bg_noise", "face_vs_bg_sharpness")


def template(cx: float, cy: float, size: float = FACE) -> np.ndarray:
    """MEAN_FACE as a (68, 2) landmark set whose box is ``size`` px, centred on (cx, cy)."""
    m = MEAN_FACE - (MEAN_FACE.min(axis=0) + MEAN_FACE.max(axis=0)) / 2
    return (m / (m.max(axis=0) - m.min(axis=0)).max() * size + [cx, cy]).astype(np.float32)


def _smooth(rng, h: int, w: int, sigma: float, amp: float) -> np.ndarray:
    x = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    return x / x.std() * amp


def scene(n: int, background: str = "fresh", seed: int = 0, step: float = STEP,
          h: int = H, w: int = W, size: float = FACE, centre=(W / 2 - 20, 80.0)):
    """``n`` frames of a head moving right by ``step`` px a frame over a background that is
    ``"fresh"`` (new noise each frame), ``"frozen_noise"`` (one noise pattern) or ``"frozen"``
    (no noise); the head always has fresh noise. Returns (frames, landmarks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = 110 + _smooth(rng, h, w, 10, 30)
    head_tex = 150 + _smooth(rng, h, w, 10, 20)
    frozen_noise = rng.normal(0, SIGMA, (h, w))
    frames, points = [], []
    for k in range(n):
        dx = step * k
        cx, cy = centre[0] + dx, centre[1]
        img = bg.copy()
        if background == "fresh":
            img += rng.normal(0, SIGMA, (h, w))
        elif background == "frozen_noise":
            img += frozen_noise
        head = cv2.warpAffine(head_tex, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h),
                              borderMode=cv2.BORDER_REFLECT) + rng.normal(0, SIGMA, (h, w))
        inside = ((xx - cx) / (0.75 * size)) ** 2 + ((yy - cy) / (0.95 * size)) ** 2 < 1
        img = np.where(inside, head, img)
        grey = np.clip(img, 0, 255).round().astype(np.uint8)
        frames.append(np.repeat(grey[..., None], 3, axis=2))
        points.append(template(cx, cy, size))
    return frames, np.stack(points)


def window(frames, points, indices=INDICES, bursts=BURSTS) -> Window:
    """The window of ``indices`` (bursts ``bursts``) out of a whole clip's frames and landmarks."""
    return Window(0, 0.0, 1.0, np.asarray(indices), np.asarray(bursts),
                  np.stack([frames[i] for i in indices]),
                  np.stack([points[i] for i in indices]).astype(np.float32), 1.0)


def features(frames, points, **kw):
    return window_features(window(frames, points, **kw))


# -- (a) frozen background against a camera's ---------------------------------------------------------

def test_frozen_background_while_the_head_moves():
    frozen, facts_f = features(*scene(25, "frozen"))
    fresh, facts_r = features(*scene(25, "fresh"))
    assert frozen["bg_frozen_share"] == 1.0 and fresh["bg_frozen_share"] == 0.0
    # Background change per unit of head motion: ~nothing for the frozen plate; for the camera, the
    # noise's mean |difference| (~3.4 levels) against 2 px / 48 px x 255 (~10.6): log ~ -1.1.
    assert frozen["bg_vs_head_motion"] < -8
    expected = np.log(2 * SIGMA / np.sqrt(np.pi) / (STEP / FACE * 255))
    assert fresh["bg_vs_head_motion"] == pytest.approx(expected, abs=0.2)
    assert fresh["bg_vs_head_motion"] - frozen["bg_vs_head_motion"] > 5
    for facts in (facts_f, facts_r):
        assert facts.frames == 10 and facts.pairs == 8 and facts.background_visible
        assert facts.moving_head_pairs == 8
        assert facts.head_motion_px == pytest.approx(STEP, rel=1e-3)
        assert facts.face_px == pytest.approx(FACE, rel=1e-3)
    assert facts_f.frozen_background_pairs == 8 and facts_f.background_change == 0.0
    assert facts_r.frozen_background_pairs == 0 and facts_r.background_change > 2.5


def test_still_head_is_not_called_a_frozen_background():
    # Nothing moves and nothing changes: no pair has a moving head, so no share is claimed.
    feats, facts = features(*scene(25, "frozen", step=0.0))
    assert facts.moving_head_pairs == 0 and facts.frozen_background_pairs == 0
    assert np.isnan(feats["bg_frozen_share"])


def test_still_face_fake_has_a_frozen_background():
    frames, points = scene(25, "fresh", seed=3)
    feats, _ = features(still_face(frames[0], points), points)
    assert feats["bg_frozen_share"] == 1.0 and feats["bg_noise_corr"] > 0.99
    assert feats["bg_vs_head_motion"] < -8


# -- (b) face noise moving with the face --------------------------------------------------------------

def _rotated(p: np.ndarray, angle: float, shift) -> np.ndarray:
    c = p.mean(axis=0)
    r = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return ((p - c) @ r.T + c + shift).astype(np.float32)


def test_rigidly_moved_still_keeps_its_noise_while_a_camera_makes_new_noise():
    frames, points = scene(25, "fresh", seed=1)
    real, _ = features(frames, points)
    rigid, _ = features(still_rigid(frames[0], points), points)  # whole-pixel steps: exact copies
    assert rigid["face_noise_corr"] > 0.98
    assert abs(real["face_noise_corr"]) < 0.15
    assert abs(real["face_vs_bg_noise_corr"]) < 0.2
    # A sub-pixel move with a small turn blurs the copied noise a little, but it stays the same noise.
    turned = np.stack([_rotated(points[0], 0.01 * k, (1.3 * k, 0.4 * k)) for k in range(25)])
    sub, _ = features(still_rigid(frames[0], turned), turned)
    assert sub["face_noise_corr"] > 0.6
    assert sub["face_noise_corr"] - real["face_noise_corr"] > 0.5


# -- (c) background noise: one pattern or new every frame ---------------------------------------------

def test_background_noise_correlation():
    frozen, _ = features(*scene(25, "frozen_noise", seed=2))
    fresh, _ = features(*scene(25, "fresh", seed=2))
    assert frozen["bg_noise_corr"] > 0.99 and abs(fresh["bg_noise_corr"]) < 0.15
    # The head's noise is fresh in both: a frozen background against a live face.
    assert frozen["face_vs_bg_noise_corr"] < -0.8
    assert abs(frozen["face_vs_bg_noise"]) < 0.2  # same noise level on face and background


def test_noise_statistics_survive_a_lossless_encode(tmp_path):
    results = {}
    for kind in ("frozen_noise", "fresh"):
        frames, points = scene(25, kind, seed=4)
        path = tmp_path / f"{kind}.mp4"
        write_video(path, frames, 25.0, crf=0)
        with MediaReader(path) as reader:
            decoded = [f for _, f in reader.frames()]
        assert len(decoded) == 25 and decoded[0].shape == (H, W, 3)
        results[kind], _ = features(decoded, points)
    assert results["frozen_noise"]["bg_frozen_share"] == 1.0 and results["fresh"]["bg_frozen_share"] == 0.0
    assert results["frozen_noise"]["bg_noise_corr"] > 0.95 and abs(results["fresh"]["bg_noise_corr"]) < 0.2
    assert abs(results["fresh"]["face_noise_corr"]) < 0.2
    assert results["fresh"]["bg_vs_head_motion"] - results["frozen_noise"]["bg_vs_head_motion"] > 5


# -- (d) repeated and interpolated frames -------------------------------------------------------------

def test_duplicated_frames_and_interpolated_frames():
    frames, points = scene(25, "fresh", seed=5)
    real, _ = features(frames, points)
    dup, _ = features(duplicated(frames), duplicated(list(points)))
    mixed, _ = features(interpolated(frames), points)
    # Bursts start on even frames: pairs (0,1) and (2,3) repeat, (1,2) and (3,4) do not.
    assert dup["duplicate_share"] == pytest.approx(0.5)
    assert real["duplicate_share"] == 0.0 and mixed["duplicate_share"] == 0.0
    # A frame that is the mean of its neighbours sits at ~0; fresh noise at ~sqrt(1.5/2) ~ 0.87.
    assert mixed["interpolation"] < 0.2
    assert real["interpolation"] > 0.6
    assert real["interpolation"] - mixed["interpolation"] > 0.5
    # A repeated frame is exactly half way: |f - (f + g) / 2| = |g - f| / 2.
    assert dup["interpolation"] == pytest.approx(0.5, abs=0.02)


# -- (e), (f) regions that are not there --------------------------------------------------------------

def test_window_without_a_face_gives_nan_features():
    frames, points = scene(25, "fresh", seed=6)
    lost = np.full_like(points, np.nan)
    feats, facts = features(frames, lost)
    assert list(feats) == list(FEATURES)
    assert all(np.isnan(v) for v in feats.values())
    assert facts.frames == 10 and facts.pairs == 0 and not facts.background_visible
    # The face in only one frame of each burst: no pair to compare, still no error.
    lonely = lost.copy()
    lonely[[0, 20]] = points[[0, 20]]
    feats, facts = features(frames, lonely)
    assert facts.pairs == 0
    assert all(np.isnan(feats[k]) for k in ("bg_vs_head_motion", "face_noise_corr", "duplicate_share",
                                            "landmark_jitter", "mouth_motion"))
    # The face lost in one frame of a burst: only the pairs with the face on both sides count.
    gap = points.copy()
    gap[2] = np.nan
    _, facts = features(frames, gap)
    assert facts.pairs == 6


def test_tight_crop_has_no_background():
    frames, points = scene(12, "fresh", seed=7, h=128, w=128, size=100.0, centre=(60.0, 64.0))
    feats, facts = features(frames, points, indices=list(range(10)), bursts=[0] * 5 + [1] * 5)
    assert not facts.background_visible and np.isnan(facts.background_change)
    assert all(np.isnan(feats[k]) for k in BG_FEATURES)
    # What does not need the background is still measured.
    assert np.isfinite(feats["face_noise_corr"]) and abs(feats["face_noise_corr"]) < 0.2
    assert np.isfinite(feats["duplicate_share"]) and np.isfinite(feats["interpolation"])


def test_mouth_outside_the_frame_is_not_measured():
    # The face runs off the left edge: its mouth box lies wholly left of the frame (negative x).
    frames, points = scene(10, "fresh", seed=8, size=100.0, centre=(-32.0, 96.0), step=0.25)
    assert points[:, 48:68, 0].max() < -10 and points[:, :, 0].min(axis=1).max() < -70
    assert points[:, :, 0].max(axis=1).min() > 15
    feats, _ = features(frames, points, indices=list(range(10)), bursts=[0] * 5 + [1] * 5)
    assert np.isnan(feats["mouth_vs_face_sharpness"]) and np.isnan(feats["mouth_vs_face_change"])
    assert np.isfinite(feats["face_noise_corr"])


def test_features_are_deterministic():
    frames, points = scene(25, "fresh", seed=9)
    a, fa = features(frames, points)
    b, fb = features(frames, points)
    assert fa == fb
    np.testing.assert_array_equal([a[k] for k in FEATURES], [b[k] for k in FEATURES])


# -- clip fakes ---------------------------------------------------------------------------------------

def _noisy_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_duplicated_repeats_every_other_frame():
    frames = _noisy_frames(7)
    out = duplicated(frames)
    assert len(out) == 7
    for i, f in enumerate(out):
        assert f is frames[i - i % 2]


def test_interpolated_replaces_every_other_frame_by_its_neighbours_mean():
    for n in (6, 7):
        frames = _noisy_frames(n, seed=n)
        out = interpolated(frames)
        assert len(out) == n
        for i, f in enumerate(out):
            if i % 2 == 0 or i == n - 1:  # kept (a last odd frame has no right neighbour)
                assert f is frames[i]
            else:
                mean = (frames[i - 1].astype(int) + frames[i + 1]) // 2
                assert f.dtype == np.uint8 and np.array_equal(f, mean)


def test_still_rigid_moves_the_first_frame_with_the_landmarks():
    rng = np.random.default_rng(10)
    first = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    p0 = template(40, 32, 20)
    points = np.stack([p0, p0 + [3, 0], np.full_like(p0, np.nan), p0 + [0, 2]])
    out = still_rigid(first, points)
    assert len(out) == 4 and np.array_equal(out[0], first)
    np.testing.assert_array_equal(out[1][:, 3:], first[:, :-3])  # shifted right by 3 px
    np.testing.assert_array_equal(out[2], out[1])  # landmarks lost: hold the last move
    np.testing.assert_array_equal(out[3][2:], first[:-2])  # shifted down by 2 px


def test_still_face_moves_only_the_face_over_the_frozen_frame():
    frames, points = scene(6, "fresh", seed=11, step=3.0)
    out = still_face(frames[0], points)
    assert len(out) == 6 and np.array_equal(out[0], frames[0])
    lo, hi = points[-1].min(axis=0), points[-1].max(axis=0)
    far = np.ones((H, W), bool)
    far[:, int(lo[0] - 2 * FACE):int(hi[0] + 2 * FACE)] = False  # well away from the moving head
    for f in out:
        np.testing.assert_array_equal(f[far], frames[0][far])
    # Around the head the picture does change: the face moved.
    assert np.abs(out[-1].astype(int) - frames[0]).mean() > 0.5


def test_make_clip_fakes_refuses_unknown_kinds(tmp_path):
    with pytest.raises(BadInputError, match="unknown clip-fake kinds"):
        make_clip_fakes(tmp_path / "missing.mp4", tmp_path / "out", kinds=("still_rigid", "blurry"))


@pytest.mark.shared
def test_make_clip_fakes_from_a_shared_clip(tmp_path, dlib_backend):
    clip = shared_file("videos", "eamm_happy.mp4")
    made = make_clip_fakes(clip, tmp_path, kinds=CHEAP_KINDS, seconds=1.0, backend=dlib_backend)
    assert [m.kind for m in made] == list(CHEAP_KINDS)
    digests = {m.source_sha256 for m in made}
    assert len(digests) == 1 and len(digests.pop()) == 64
    for m in made:
        assert m.source == str(clip) and m.frames == 25
        assert m.path.endswith(f"eamm_happy__{m.kind}.mp4")
    stamps = {m.path: (tmp_path / m.path.split("/")[-1]).stat().st_mtime_ns for m in made}
    # Resuming keeps the files already made.
    again = make_clip_fakes(clip, tmp_path, kinds=CHEAP_KINDS, seconds=1.0, backend=dlib_backend)
    assert [m.path for m in again] == [m.path for m in made]
    assert {m.path: (tmp_path / m.path.split("/")[-1]).stat().st_mtime_ns for m in again} == stamps
