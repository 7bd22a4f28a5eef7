"""Dataset exports (DeepfakeBench, FaceForensics++ layout, CSV) and folder imports, on a tiny dataset
made here from the astronaut clip: a real clip at c0 and c23, a self fake whose second half has no
face, and a cross fake of pure noise (no face at all). Every clip file is named c0.mp4 / c23.mp4, so
keying videos by a bare file name would merge them."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.datasets.export import export_dataset
from benchmarks.datasets.importer import import_folder
from detector.data.schema import ClipRecord, read_metadata, write_metadata
from generator.errors import BadInputError, ConfigMismatchError
from generator.io.files import sha256_file
from generator.io.video import MediaReader, evenly_spaced_indices, read_image, write_video

N_FRAMES = 40  # the astronaut_clip fixture's length
FACE_UNTIL = 20  # the self fake shows the face in frames [0, 20), then a grey frame


def _frames(clip: Path) -> list[np.ndarray]:
    with MediaReader(clip) as reader:
        return [f for _, f in reader.frames()]


def _row(ds: Path, rel: str, clip_id: str, label: str, split: str, method: str, compression: str,
         **kw) -> ClipRecord:
    path = ds / rel
    with MediaReader(path) as reader:
        info = reader.info
    return ClipRecord(id=f"{clip_id}_{compression}", clip_id=clip_id, label=label, split=split,
                      method=method, source_identity=kw.pop("source", "astro"),
                      driver_identity=kw.pop("driver", "astro"), compression=compression,
                      crf={"c0": 0, "c23": 23}[compression], frames=info.frame_count, fps=info.fps,
                      width=info.width, height=info.height, path=rel, sha256=sha256_file(path), **kw)


@pytest.fixture(scope="module")
def dataset(astronaut_clip, tmp_path_factory) -> Path:
    ds = tmp_path_factory.mktemp("ds")
    frames = _frames(astronaut_clip)
    assert len(frames) == N_FRAMES
    for clip in ("r000", "s000", "x000"):
        (ds / "videos" / clip).mkdir(parents=True)
    shutil.copy(astronaut_clip, ds / "videos/r000/c0.mp4")
    write_video(ds / "videos/r000/c23.mp4", frames, fps=25, crf=23, preset="ultrafast")
    grey = np.full_like(frames[0], 128)
    write_video(ds / "videos/s000/c0.mp4", frames[:FACE_UNTIL] + [grey] * (N_FRAMES - FACE_UNTIL),
                fps=25, crf=0, preset="ultrafast")
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(N_FRAMES)]
    write_video(ds / "videos/x000/c0.mp4", noise, fps=25, crf=0, preset="ultrafast")
    rows = [
        _row(ds, "videos/r000/c0.mp4", "r000", "real", "train", "real", "c0"),
        _row(ds, "videos/r000/c23.mp4", "r000", "real", "train", "real", "c23"),
        _row(ds, "videos/s000/c0.mp4", "s000", "fake", "test", "self", "c0", shots=1, mode="FF"),
        _row(ds, "videos/x000/c0.mp4", "x000", "fake", "test", "cross", "c0", driver="bob", shots=1,
             mode="FF"),
    ]
    write_metadata(ds, rows)
    return ds


@pytest.fixture(scope="module")
def dfb(dataset, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dfb")
    return out, export_dataset(dataset, out, "deepfakebench")


def test_deepfakebench_export_has_32_crops_and_landmarks_per_video(dataset, dfb):
    out, summary = dfb
    assert summary["counts"]["built"] == 3 and summary["counts"]["failed"] == 1
    index = json.loads((out / "dataset_json/sfumato.json").read_text())
    assert list(index) == ["sfumato"]
    tree = index["sfumato"]
    assert set(tree) == {"sfumato_real", "sfumato_self"}  # the all-noise cross clip has no crops
    for label, splits in tree.items():
        assert set(splits) == {"train", "val", "test"}
        for videos in splits.values():
            for video in videos.values():
                assert video["label"] == label
    real = tree["sfumato_real"]["train"]
    assert set(real) == {"r000_c0", "r000_c23"}  # keyed by row id: c0 and c23 stay two videos
    assert tree["sfumato_self"]["test"].keys() == {"s000_c0"}
    for vid in ("r000_c0", "r000_c23"):
        paths = real[vid]["frames"]
        assert len(paths) == 32 and len(set(paths)) == 32
        assert all(not os.path.isabs(p) and (out / p).is_file() for p in paths)
        # DeepfakeBench derives a landmark path from a frame path this way.
        marks = [out / p.replace("frames", "landmarks").replace(".png", ".npy") for p in paths]
        for m in marks:
            lm = np.load(m)
            assert lm.shape == (68, 2) and lm.dtype == np.float32
            assert (lm > 0).all() and (lm < 256).all()  # crop pixels
        assert len(list((out / paths[0]).parent.iterdir())) == 32
        assert int(Path(paths[0]).stem) == 0 and int(Path(paths[-1]).stem) == N_FRAMES - 1
    assert read_image(out / real["r000_c0"]["frames"][5]).shape == (256, 256, 3)
    folders = {str(Path(v["frames"][0]).parent) for s in tree.values() for vs in s.values()
               for v in vs.values()}
    assert len(folders) == 3  # no two videos share a folder
    per_comp = {n: json.loads((out / f"dataset_json/{n}.json").read_text())[n]
                for n in ("sfumato_c0", "sfumato_c23")}
    assert set(per_comp["sfumato_c23"]["sfumato_real"]["train"]) == {"r000_c23"}
    assert set(per_comp["sfumato_c0"]["sfumato_real"]["train"]) == {"r000_c0"}
    assert json.loads((out / "label_dict.json").read_text()) == {
        "sfumato_cross": 1, "sfumato_real": 0, "sfumato_self": 1}
    readme = (out / "README.md").read_text()
    assert str(out) in readme and "sfumato_real: 0" in readme and "relative to the export root" in readme
    assert json.loads((out / "export.json").read_text())["counts"] == summary["counts"]


def test_frames_without_a_face_are_listed_not_dropped(dfb):
    out, summary = dfb
    sampled = evenly_spaced_indices(N_FRAMES, 32)
    with_face = [i for i in sampled if i < FACE_UNTIL]
    videos = {v["id"]: v for v in summary["videos"]}
    half = videos["s000_c0"]
    assert half["status"] == "done" and half["frames_written"] == len(with_face)
    assert [m["index"] for m in half["missing_frames"]] == [i for i in sampled if i >= FACE_UNTIL]
    assert all(m["reason"] for m in half["missing_frames"])
    listed = json.loads((out / "dataset_json/sfumato.json").read_text())["sfumato"]["sfumato_self"]
    assert [int(Path(p).stem) for p in listed["test"]["s000_c0"]["frames"]] == with_face
    assert videos["x000_c0"]["status"] == "failed"
    (failure,) = summary["failures"]
    assert failure["id"] == "x000_c0" and "no face" in failure["reason"]
    assert len(failure["missing_frames"]) == 32
    assert summary["counts"]["frames_missing"] == 32 - len(with_face)
    assert summary["counts"]["videos_with_missing_frames"] == 1


def test_deepfakebench_rerun_resumes(dataset, dfb, tmp_path):
    out = tmp_path / "dfb"
    shutil.copytree(dfb[0], out)
    frame = next((out / "sfumato/real/c0/frames/r000_c0").iterdir())
    before = frame.stat().st_mtime_ns
    again = export_dataset(dataset, out, "deepfakebench")
    assert again["counts"]["built"] == 0 and again["counts"]["existing"] == 3
    assert frame.stat().st_mtime_ns == before
    assert again["counts"]["frames_written"] == dfb[1]["counts"]["frames_written"]
    # A video whose run was killed before it finished (no record; a temp folder left) is redone alone.
    (out / ".sfumato_export/videos/r000_c23.json").unlink()
    (out / ".sfumato_export/tmp/r000_c23/frames").mkdir(parents=True)
    third = export_dataset(dataset, out, "deepfakebench")
    assert third["counts"]["built"] == 1 and third["counts"]["existing"] == 2
    assert not (out / ".sfumato_export/tmp").exists()
    assert len(list((out / "sfumato/real/c23/frames/r000_c23").iterdir())) == 32
    with pytest.raises(ConfigMismatchError, match="frames"):
        export_dataset(dataset, out, "deepfakebench", frames=16)


def test_ffpp_layout_links_files_and_writes_splits(dataset, tmp_path):
    out = tmp_path / "ffpp"
    summary = export_dataset(dataset, out, "ffpp")
    assert summary["counts"]["linked"] + summary["counts"]["copied"] == 4
    rows = {r.id: r for r in read_metadata(dataset)}
    expect = {
        "r000_c0": "original_sequences/sfumato/raw/videos/r000.mp4",
        "r000_c23": "original_sequences/sfumato/c23/videos/r000.mp4",
        "s000_c0": "manipulated_sequences/SfumatoSelf/raw/videos/astro_astro_s000.mp4",
        "x000_c0": "manipulated_sequences/SfumatoCross/raw/videos/astro_bob_x000.mp4",
    }
    for rid, rel in expect.items():
        assert sha256_file(out / rel) == rows[rid].sha256
    splits = {s: json.loads((out / f"splits/{s}.json").read_text()) for s in ("train", "val", "test")}
    assert splits["train"] == [["r000", "r000"]]
    assert splits["val"] == []
    assert sorted(splits["test"]) == [["astro", "astro_s000"], ["astro", "bob_x000"]]
    for pair in splits["test"]:  # FF++ readers name a fake <a>_<b>
        assert any(Path(p).stem == "_".join(pair) for p in expect.values())
    index = json.loads((out / "splits/index.json").read_text())
    assert {e["id"]: e["file"] for e in index} == expect
    assert "raw" in (out / "README.md").read_text()
    again = export_dataset(dataset, out, "ffpp")
    assert again["counts"]["existing"] == 4 and again["counts"]["linked"] == 0
    assert json.loads((out / "export.json").read_text())["format"] == "ffpp"


def test_csv_rows_match_metadata(dataset, tmp_path):
    summary = export_dataset(dataset, tmp_path / "csv", "csv")
    assert summary["counts"]["written"] == 4
    with open(tmp_path / "csv/index.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    rows = {r.id: r for r in read_metadata(dataset)}
    assert {x["id"] for x in lines} == set(rows)
    for x in lines:
        r = rows[x["id"]]
        assert Path(x["path"]).is_absolute() and Path(x["path"]) == (dataset / r.path).resolve()
        assert x["label"] == str(int(r.label == "fake")) and x["label_name"] == r.label
        assert (x["split"], x["method"], x["compression"], x["clip_id"], x["sha256"]) == (
            r.split, r.method, r.compression, r.clip_id, r.sha256)
        assert int(x["frames"]) == r.frames == N_FRAMES
    only = export_dataset(dataset, tmp_path / "c23", "csv", compressions=("c23",))
    assert only["counts"]["written"] == 1
    with pytest.raises(BadInputError, match="format"):
        export_dataset(dataset, tmp_path / "x", "tfrecord")
    with pytest.raises(BadInputError, match="compression"):
        export_dataset(dataset, tmp_path / "x", "csv", compressions=("c99",))
    with pytest.raises(BadInputError, match="other than the dataset"):
        export_dataset(dataset, dataset, "csv")


@pytest.fixture(scope="module")
def user_folder(astronaut_clip, tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("user")
    layout = [
        "train/real/000.mp4",
        "train/fake/Deepfakes/000_003.mp4",
        "train/fake/Face2Face/000_003.mp4",  # same name as above, another method
        "original_sequences/youtube/c23/videos/000.mp4",  # same stem as train/real/000.mp4
        "manipulated_sequences/Deepfakes/c40/videos/001_002.mp4",
        "manipulated_sequences/Deepfakes/masks/videos/001_002.mp4",  # a mask video: skipped
        "misc/holiday.mp4",  # neither real nor fake: skipped
    ]
    for rel in layout:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(astronaut_clip, src / rel)
    (src / "train/fake/broken.mp4").write_bytes(np.random.default_rng(1).bytes(4000))  # corrupt
    (src / "train/notes.txt").write_text("not a video")
    return src


def test_import_folder_labels_splits_skips_and_unique_ids(user_folder, tmp_path):
    out = tmp_path / "imported"
    summary = import_folder(user_folder, out, split="val")
    rows = {Path(r.path).relative_to(user_folder).as_posix(): r for r in read_metadata(out)}
    assert set(rows) == {"train/real/000.mp4", "train/fake/Deepfakes/000_003.mp4",
                         "train/fake/Face2Face/000_003.mp4",
                         "original_sequences/youtube/c23/videos/000.mp4",
                         "manipulated_sequences/Deepfakes/c40/videos/001_002.mp4"}
    assert len({r.id for r in rows.values()}) == 5  # same-named files never merge
    facts = {k: (r.label, r.split, r.method, r.compression) for k, r in rows.items()}
    assert facts == {
        "train/real/000.mp4": ("real", "train", "real", "unknown"),
        "train/fake/Deepfakes/000_003.mp4": ("fake", "train", "Deepfakes", "unknown"),
        "train/fake/Face2Face/000_003.mp4": ("fake", "train", "Face2Face", "unknown"),
        "original_sequences/youtube/c23/videos/000.mp4": ("real", "val", "real", "c23"),
        "manipulated_sequences/Deepfakes/c40/videos/001_002.mp4": ("fake", "val", "Deepfakes", "c40"),
    }
    swap, reenact = rows["train/fake/Deepfakes/000_003.mp4"], rows["train/fake/Face2Face/000_003.mp4"]
    assert (swap.source_identity, swap.driver_identity) == ("003", "000")  # source's face on 000
    assert (reenact.source_identity, reenact.driver_identity) == ("000", "003")  # 000 driven by 003
    for r in rows.values():
        assert Path(r.path).is_absolute() and r.sha256 == sha256_file(r.path)
        assert r.frames == N_FRAMES and r.width == 384 and r.fps == 25
        assert r.origin == "imported" and r.manifest == "Absent" and r.realism_mean is None
    assert rows["original_sequences/youtube/c23/videos/000.mp4"].crf == 23
    assert rows["train/real/000.mp4"].crf is None
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"manipulated_sequences/Deepfakes/masks/videos/001_002.mp4",
                            "misc/holiday.mp4", "train/fake/broken.mp4"}
    assert "mask" in skipped["manipulated_sequences/Deepfakes/masks/videos/001_002.mp4"]
    assert "no real/fake folder" in skipped["misc/holiday.mp4"]
    assert "broken.mp4" in skipped["train/fake/broken.mp4"]
    counts = json.loads((out / "import.json").read_text())["counts"]
    assert counts["imported"] == 5 and counts["skipped"] == 3 and counts["other_files"] == 1
    assert counts["by_label"] == {"fake": 3, "real": 2}
    assert counts["by_method"] == {"Deepfakes": 2, "Face2Face": 1, "real": 2}
    assert (out / "metadata.csv").is_file() and "Imported dataset" in (out / "README.md").read_text()
    # The imported dataset exports like a built one: the two 000_003 fakes stay two videos.
    exported = export_dataset(out, tmp_path / "csv", "csv")
    assert exported["counts"]["written"] == 5


def test_import_errors(tmp_path, user_folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no video files"):
        import_folder(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "bad/real").mkdir(parents=True)
    (tmp_path / "bad/real/a.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(BadInputError, match="none of its 1 video files"):
        import_folder(tmp_path / "bad", tmp_path / "out")
    with pytest.raises(BadInputError, match="split"):
        import_folder(user_folder, tmp_path / "out", split="holdout")
    with pytest.raises(BadInputError, match="no such folder"):
        import_folder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(BadInputError, match="other than the videos"):
        import_folder(user_folder, user_folder)
