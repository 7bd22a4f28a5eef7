"""Corpus preparation: layout, records, bad inputs listed, resume after a kill, identities."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from generator.corpus.prepare import (
    PrepareConfig,
    assign_identities,
    collect_inputs,
    prepare_corpus,
    read_corpus,
)
from generator.errors import BadInputError, ConfigMismatchError
from generator.faces.crop import CropParams
from generator.io.samples import write_astronaut_clip, write_astronaut_image
from generator.io.video import read_image
from tests.conftest import SHARED_VIDEO, shared_file

SMALL = PrepareConfig(frames_per_video=6, crop=CropParams(size=128))


class Interrupt(Exception):
    """Stands in for a kill in the middle of a run."""


def test_prepare_shared_clip_layout_and_record(tmp_path):
    clip = shared_file("videos", SHARED_VIDEO.name)
    summary = prepare_corpus([clip], tmp_path / "corpus", PrepareConfig(frames_per_video=8))
    assert summary.count("done") == 1 and not summary.failed
    (record,) = read_corpus(tmp_path / "corpus")
    assert record["identity"] == "eamm_happy" and record["identity_rule"] == "auto:file"
    assert len(record["frames_kept"]) == 8 and record["frames_skipped"] == []
    assert record["fps"] == 25.0 and record["frame_count"] == 141
    assert len(record["source_sha256"]) == 64 and record["backend"]["backend"] == "dlib"
    vdir = tmp_path / "corpus" / record["identity"] / record["video_id"]
    crops = sorted((vdir / "frames").iterdir())
    assert len(crops) == 8 and read_image(crops[0]).shape == (256, 256, 3)
    lm_images = sorted((vdir / "landmark_images").iterdir())
    assert [p.name for p in lm_images] == [p.name for p in crops]
    with np.load(vdir / "landmarks.npz", allow_pickle=False) as z:
        assert z["points"].shape == (8, 68, 2) and z["crop_matrices"].shape == (8, 2, 3)
        assert list(z["frame_indices"]) == record["frames_kept"]
        pts = z["points"]
    assert pts.min() > 0 and pts.max() < 256  # the face fits in the crop
    index = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert index["identities"] == ["eamm_happy"] and index["videos"][0]["frames"] == 8


def test_mixed_folder_good_done_bad_listed(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_astronaut_clip(src / "good.mp4", n_frames=20, size=256)
    write_astronaut_image(src / "portrait.png")
    (src / "empty.mp4").write_bytes(b"")
    (src / "text.mp4").write_text("not a video\n" * 10)
    from generator.io.video import write_image

    write_image(src / "noface.png", np.full((200, 200, 3), 90, np.uint8))
    (src / "readme.txt").write_text("ignored")
    summary = prepare_corpus([src], tmp_path / "out", SMALL)
    status = {o.path.split("/")[-1]: (o.status, o.reason) for o in summary.outcomes}
    assert status["good.mp4"][0] == "done" and status["portrait.png"][0] == "done"
    assert status["empty.mp4"] == ("failed", "empty file (0 bytes)")
    assert "not a video or image" in status["text.mp4"][1]
    assert status["noface.png"][0] == "failed" and "no face detected" in status["noface.png"][1]
    assert summary.ignored == [str(src / "readme.txt")]
    assert len(read_corpus(tmp_path / "out")) == 2
    saved = json.loads((tmp_path / "out" / "prepare_summary.json").read_text())
    assert saved["failed"] == 3 and saved["done"] == 2


def test_resume_after_interruption_finishes_the_rest(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        write_astronaut_clip(src / f"clip{k}.mp4", n_frames=12 + k, size=256)
    out = tmp_path / "out"
    seen = []

    def kill_after_first(outcome):
        seen.append(outcome)
        raise Interrupt

    with pytest.raises(Interrupt):
        prepare_corpus([src], out, SMALL, on_outcome=kill_after_first)
    # A half-written video from the killed worker: must be cleaned, never counted.
    (out / ".tmp" / "clip1-deadbeef-1").mkdir(parents=True)
    (out / ".tmp" / "clip1-deadbeef-1" / "record.json").write_text("{")
    first = read_corpus(out)
    assert len(first) == 1
    before = {p: p.read_bytes() for p in (out / first[0]["identity"]).rglob("*") if p.is_file()}

    summary = prepare_corpus([src], out, SMALL)
    assert [o.status for o in summary.outcomes] == ["exists", "done", "done"]
    assert len(read_corpus(out)) == 3
    assert not (out / ".tmp").exists()
    after = {p: p.read_bytes() for p in (out / first[0]["identity"]).rglob("*") if p.is_file()}
    assert after == before  # finished videos are left exactly as they were


def test_other_settings_on_the_same_folder_are_refused(tmp_path):
    write_astronaut_image(tmp_path / "a.png")
    prepare_corpus([tmp_path / "a.png"], tmp_path / "out", SMALL)
    other = PrepareConfig(frames_per_video=6, crop=CropParams(size=64))
    with pytest.raises(ConfigMismatchError, match="size"):
        prepare_corpus([tmp_path / "a.png"], tmp_path / "out", other)


def test_parallel_workers_match_serial(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        write_astronaut_clip(src / f"c{k}.mp4", n_frames=10, size=256)
    prepare_corpus([src], tmp_path / "serial", SMALL)
    summary = prepare_corpus([src], tmp_path / "parallel", SMALL, workers=2)
    assert summary.count("done") == 2
    for rec_s, rec_p in zip(read_corpus(tmp_path / "serial"), read_corpus(tmp_path / "parallel")):
        a = np.load(tmp_path / "serial" / rec_s["identity"] / rec_s["video_id"] / "landmarks.npz")
        b = np.load(tmp_path / "parallel" / rec_p["identity"] / rec_p["video_id"] / "landmarks.npz")
        assert np.array_equal(a["points"], b["points"])


def test_identity_rules(tmp_path):
    people = tmp_path / "people"
    for person, clip in [("alice", "x/1.mp4"), ("alice", "2.mp4"), ("bob", "1.mp4")]:
        p = people / person / clip
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"0")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "carol.mp4").write_bytes(b"0")
    files, _ = collect_inputs([people, flat])
    jobs = {j.path.replace(str(tmp_path) + "/", ""): (j.identity, j.identity_rule)
            for j in assign_identities(files)}
    assert jobs["people/alice/x/1.mp4"] == ("alice", "auto:subfolder")
    assert jobs["people/bob/1.mp4"] == ("bob", "auto:subfolder")
    assert jobs["flat/carol.mp4"] == ("carol", "auto:file")
    folder = {j.identity for j in assign_identities(files, "folder")}
    assert folder == {"x", "alice", "bob", "flat"}
    csv_path = tmp_path / "ids.csv"
    csv_path.write_text("file,identity\n1.mp4,zed\n2.mp4,zed\ncarol.mp4,Carol Q\n")
    from generator.corpus.prepare import read_identity_csv

    table = read_identity_csv(csv_path)
    assert {j.identity for j in assign_identities(files, table=table)} == {"zed", "Carol_Q"}
    csv_path.write_text("name,who\na,b\n")
    with pytest.raises(BadInputError, match="needs columns"):
        read_identity_csv(csv_path)


def test_unwritable_output_and_empty_input(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    write_astronaut_image(tmp_path / "a.png")
    with pytest.raises(BadInputError, match="cannot create output folder"):
        prepare_corpus([tmp_path / "a.png"], a_file / "out", SMALL)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no video or image files"):
        prepare_corpus([empty], tmp_path / "out", SMALL)
    shutil.rmtree(empty)
