"""The robustness perturbations: each level is stronger than the last, and perturbed datasets are
complete, reproducible, resumable and honest about clips they could not read."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.datasets.perturb import (
    MIX_CODES,
    PERTURBATIONS,
    mix_choice,
    parse_perturbation_label,
    perturb_dataset,
    perturb_frame,
    perturbation_label,
    resized_size,
)
from detector.data.schema import ClipRecord, read_metadata, write_metadata
from generator.errors import BadInputError, ConfigMismatchError
from generator.io.files import sha256_file
from generator.io.video import MediaReader, write_video


@pytest.fixture(scope="module")
def image(astronaut) -> np.ndarray:
    """scikit-image's astronaut photo at 256x256: a real image, so 'stronger' means what it does on faces."""
    return cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)


def _run(image: np.ndarray, code: str, seed: int = 0) -> list[np.ndarray]:
    """The image at levels 1..5, each from a generator with the same seed."""
    return [perturb_frame(image, code, lv, np.random.default_rng(seed)) for lv in range(1, 6)]


def _error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _strictly(values: list[float], increasing: bool = True) -> bool:
    d = np.diff(values)
    return bool(np.all(d > 0) if increasing else np.all(d < 0))


def _saturation(rgb: np.ndarray) -> float:
    return float(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].mean())


def test_table_has_five_levels_per_code():
    assert set(PERTURBATIONS) == {"CS", "CC", "BW", "GNC", "GB", "PX", "VC", "JPEG", "RS"}
    assert all(len(p.levels) == 5 and p.name and p.description for p in PERTURBATIONS.values())
    assert PERTURBATIONS["GB"].levels == (7, 9, 13, 17, 21)
    assert PERTURBATIONS["VC"].levels == (30, 32, 35, 38, 40)


def test_colour_saturation(image):
    rng = np.random.default_rng(0)
    grey = perturb_frame(image, "CS", 5, rng)
    assert grey.dtype == np.uint8 and grey.shape == image.shape
    spread = grey.astype(int).max(-1) - grey.astype(int).min(-1)
    assert spread.max() <= 1  # factor 0: R == G == B
    weak = perturb_frame(image, "CS", 1, rng)
    assert 0 < _saturation(weak) < 0.6 * _saturation(image)  # factor 0.4 keeps some colour
    assert _strictly([_saturation(f) for f in _run(image, "CS")], increasing=False)


@pytest.mark.parametrize("code", ["GNC", "BW", "PX", "JPEG"])
def test_error_grows_with_level(image, code):
    errors = [_error(f, image) for f in _run(image, code)]
    assert errors[0] > 0
    assert _strictly(errors), errors


def test_block_occlusion_covers_more_pixels(image):
    changed = [int((f != image).any(-1).sum()) for f in _run(image, "BW")]
    assert _strictly(changed), changed
    # Blocks are grey 8x8 at 256 px: 16 blocks cover at most 16 * 64 pixels.
    assert changed[0] <= 16 * 64
    first = _run(image, "BW")[0]
    assert np.all(first[(first != image).any(-1)] == 128)


def _covered_by_squares(mask: np.ndarray, side: int) -> np.ndarray:
    """Pixels of ``mask`` that lie in some side x side square wholly inside ``mask``."""
    kernel = np.ones((side, side), np.uint8)
    full = cv2.erode(mask, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.dilate(full, kernel, anchor=(side - 1, side - 1), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0)


@pytest.mark.parametrize("shape, side", [((256, 300), 8), ((512, 1024), 16), ((40, 64), 8)])
def test_block_side_scales_with_short_side(shape, side):
    frame = np.zeros((*shape, 3), np.uint8)
    mask = (perturb_frame(frame, "BW", 1, np.random.default_rng(1))[..., 0] == 128).astype(np.uint8)
    assert 0 < mask.sum() <= 16 * side * side
    assert np.array_equal(_covered_by_squares(mask, side), mask)  # made of side x side blocks
    assert not np.array_equal(_covered_by_squares(mask, side + 1), mask)  # and not of larger ones


def test_blur_removes_high_frequencies(image):
    sharp = [float(cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
             for f in _run(image, "GB")]
    assert _strictly(sharp, increasing=False), sharp


def test_contrast_shrinks_spread(image):
    stds = [float(f.astype(np.float64).std()) for f in _run(image, "CC")]
    assert stds[0] < image.std()
    assert _strictly(stds, increasing=False), stds
    # The grey mean stays where it was (within rounding).
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean()
    assert abs(cv2.cvtColor(_run(image, "CC")[4], cv2.COLOR_RGB2GRAY).mean() - grey) < 1.5


def test_noise_is_seeded(image):
    a = perturb_frame(image, "GNC", 3, np.random.default_rng(7))
    b = perturb_frame(image, "GNC", 3, np.random.default_rng(7))
    c = perturb_frame(image, "GNC", 3, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_pixelation_makes_blocks(image):
    out = perturb_frame(image, "PX", 1, np.random.default_rng(0))  # factor 2
    assert out.shape == image.shape
    assert np.array_equal(out[0::2], out[1::2]) and np.array_equal(out[:, 0::2], out[:, 1::2])


def test_resize_sizes_and_vc_unchanged(image):
    rng = np.random.default_rng(0)
    frame = image[:192]  # 192 x 256
    sizes = [perturb_frame(frame, "RS", lv, rng).shape for lv in range(1, 6)]
    assert sizes == [(172, 230, 3), (144, 192, 3), (116, 154, 3), (96, 128, 3), (76, 102, 3)]
    assert resized_size(3, 3, 0.4) == (2, 2)
    assert perturb_frame(np.zeros((3, 5, 3), np.uint8), "RS", 5, rng).shape == (2, 2, 3)
    assert np.array_equal(perturb_frame(image, "VC", 5, rng), image)


def test_bad_code_level_and_frame(image):
    rng = np.random.default_rng(0)
    valid = "CS, CC, BW, GNC, GB, PX, VC, JPEG, RS"
    with pytest.raises(BadInputError, match=f"unknown perturbation 'XX'.*{valid}"):
        perturb_frame(image, "XX", 1, rng)
    for level in (0, 6, 2.5, True):
        with pytest.raises(BadInputError, match="level must be an integer in 1..5"):
            perturb_frame(image, "GB", level, rng)
    with pytest.raises(BadInputError, match="uint8"):
        perturb_frame(image.astype(np.float32), "GB", 1, rng)
    assert np.array_equal(perturb_frame(image, "gb", 1, rng), perturb_frame(image, "GB", 1, rng))


def test_mix_choice_and_labels():
    a = mix_choice(3, "clip_007", 3)
    assert a == mix_choice(3, "clip_007", 3)  # deterministic, independent of anything else drawn
    assert len({c for c, _ in a}) == 3 and all(c in MIX_CODES and 1 <= lv <= 5 for c, lv in a)
    draws = {tuple(mix_choice(s, f"clip_{i}")) for s in range(3) for i in range(20)}
    assert len(draws) > 20  # varies with seed and clip
    order = list(PERTURBATIONS)
    assert all([order.index(c) for c, _ in d] == sorted(order.index(c) for c, _ in d) for d in draws)
    with pytest.raises(BadInputError, match="mix count"):
        mix_choice(0, "x", 0)
    assert perturbation_label([("GB", 3)]) == "GB:3"
    assert perturbation_label([("CS", 1), ("GB", 4)]) == "mix:CS:1+GB:4"
    assert parse_perturbation_label("mix:CS:1+GB:4") == [("CS", 1), ("GB", 4)]
    assert parse_perturbation_label("none") == []


# -- datasets ------------------------------------------------------------------------------------
def _frames(seed: int, n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    big = cv2.resize(base, (64, 64), interpolation=cv2.INTER_LINEAR)  # smooth colour, codec-friendly
    return [np.roll(big, i * 2, axis=1) for i in range(n)]


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Three clips at c0 (one missing its file) plus a c23 row and an already perturbed row."""
    root = tmp_path / "ds"
    rows = []
    for i, (label, split) in enumerate([("real", "train"), ("fake", "test"), ("fake", "train")]):
        cid = f"clip{i}"
        rel = f"videos/{cid}/c0.mp4"
        (root / "videos" / cid).mkdir(parents=True)
        if i < 2:  # clip2's file is missing
            write_video(root / rel, _frames(i), fps=25, crf=0)
        rows.append(ClipRecord(id=f"{cid}_c0", clip_id=cid, label=label, split=split,
                               method="real" if label == "real" else "self", source_identity=f"id{i}",
                               driver_identity=f"id{i}", compression="c0", crf=0, frames=8, fps=25.0,
                               width=64, height=64, realism_mean=1.0, manifest="Trusted",
                               path=rel, sha256="x", signed_path="signed.mp4", signed_sha256="y"))
    rows.append(ClipRecord(id="clip0_c23", clip_id="clip0", label="real", split="train", method="real",
                           source_identity="id0", driver_identity="id0", compression="c23", crf=23,
                           path="videos/clip0/c23.mp4"))
    rows.append(ClipRecord(id="clip0_c0_GB3", clip_id="clip0", label="real", split="train", method="real",
                           source_identity="id0", driver_identity="id0", perturbation="GB:3",
                           path="videos/clip0/c0.mp4"))
    write_metadata(root, rows)
    return root


def _decode(path: Path) -> list[np.ndarray]:
    with MediaReader(path) as r:
        return [f for _, f in r.frames()]


def test_perturb_dataset_grey(dataset):
    summary = perturb_dataset(dataset, code="CS", level=5, seed=1)
    out = dataset / "perturbed" / "CS_5"
    assert summary["counts"] == {"selected": 3, "done": 2, "made": 2, "reused": 0, "failed": 1}
    assert [f["id"] for f in summary["failed"]] == ["clip2_c0"]  # reported, not dropped
    assert "no such file" in summary["failed"][0]["error"]
    rows = read_metadata(out)
    assert [r.id for r in rows] == ["clip0_c23_CS5", "clip1_c23_CS5"]
    for r in rows:
        assert r.perturbation == "CS:5" and r.parent_id == f"{r.clip_id}_c0"
        assert r.compression == "c23" and r.crf == 23 and r.manifest == "Absent"
        assert r.signed_path is None and r.signed_sha256 is None and r.realism_mean is None
        assert not Path(r.path).is_absolute() and r.sha256 == sha256_file(r.resolve(out))
        frames = _decode(r.resolve(out))
        assert len(frames) == r.frames == 8 and (r.width, r.height) == (64, 64)
        assert all((f.astype(int).max(-1) - f.astype(int).min(-1)).max() <= 1 for f in frames)
    card = (out / "README.md").read_text()
    assert "| CS |" in card and "clip2_c0" in card and "no such file" in card
    saved = json.loads((out / "perturb.json").read_text())
    assert saved["status"] == "complete" and saved["arguments"]["parent"] == "../.."
    assert saved["per_split"] == {"test": {"fake": 1}, "train": {"real": 1}}

    before = (out / "metadata.jsonl").read_bytes()
    again = perturb_dataset(dataset, code="CS", level=5, seed=1)
    assert again["counts"]["reused"] == 2 and again["counts"]["made"] == 0
    assert (out / "metadata.jsonl").read_bytes() == before
    with pytest.raises(ConfigMismatchError, match="seed: 1 there, 2 now"):
        perturb_dataset(dataset, code="CS", level=5, seed=2)


def test_resume_redoes_only_unfinished_clips(dataset, tmp_path):
    out = tmp_path / "bw"
    perturb_dataset(dataset, out, code="BW", level=5, seed=3)
    before = (out / "metadata.jsonl").read_bytes()
    (out / "records" / "clip1.json").unlink()  # as if killed between its video and its record
    summary = perturb_dataset(dataset, out, code="BW", level=5, seed=3)
    assert (summary["counts"]["made"], summary["counts"]["reused"]) == (1, 1)
    assert (out / "metadata.jsonl").read_bytes() == before  # seeded blocks: the same file again


def test_vc_mix_and_rescore(dataset, tmp_path):
    summary = perturb_dataset(dataset, tmp_path / "vc", code="VC", level=2, crf=23)
    rows = read_metadata(tmp_path / "vc")
    assert summary["arguments"]["crf"] == 32
    assert {(r.id, r.crf, r.compression, r.perturbation) for r in rows} == {
        ("clip0_crf32_VC2", 32, "crf32", "VC:2"), ("clip1_crf32_VC2", 32, "crf32", "VC:2")}

    def rescore(file: Path, parent: ClipRecord) -> np.ndarray:
        assert file.is_file() and parent.compression == "c0"
        return np.array([0.5] * 7 + [np.nan])

    perturb_dataset(dataset, code="mix", count=2, seed=5, rescore=rescore)
    out = dataset / "perturbed" / "mix_2_seed5"
    for r in read_metadata(out):
        choices = mix_choice(5, r.clip_id, 2)
        assert r.perturbation == perturbation_label(choices) and r.perturbation.startswith("mix:")
        assert r.crf == (PERTURBATIONS["VC"].levels[choices[-1][1] - 1] if choices[-1][0] == "VC" else 23)
        assert r.realism_mean == 0.5 and r.realism == [0.5] * 7 + [None]


def test_bad_dataset_arguments(dataset):
    with pytest.raises(BadInputError, match="no unperturbed clips at compression 'c40'; available: c0, c23"):
        perturb_dataset(dataset, code="GB", level=1, source_compression="c40")
    with pytest.raises(BadInputError, match="unknown perturbation"):
        perturb_dataset(dataset, code="blur")
    with pytest.raises(BadInputError, match="must not be the parent dataset"):
        perturb_dataset(dataset, dataset, code="GB", level=1)
