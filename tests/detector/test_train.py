"""Detector training: face crops from a dataset, a loss that falls, resume, faceless videos reported."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from detector.metadata import ClipRecord, write_metadata
from detector.train import DetectTrainConfig, augment, load_detector, predict, train_detector

CFG = DetectTrainConfig(input_size=64, frames=4, batch_size=8, epochs=6, checkpoint_every=3, blur=0.0,
                        jpeg=0.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Real astronaut clips and 'fakes' with red and blue swapped (a cue a detector can learn)."""
    from generator.files import sha256_file
    from generator.samples import astronaut_frames
    from generator.video_io import write_video

    root = tmp_path_factory.mktemp("dds")
    frames = astronaut_frames(12, 160)
    rows = []
    for k in range(8):
        label = "fake" if k % 2 else "real"
        split = "val" if k >= 6 else "train"
        clip = [np.roll(f, 6 * k, axis=1) for f in frames[k % 3:]]
        if label == "fake":
            clip = [np.ascontiguousarray(f[..., ::-1]) for f in clip]
        rel = f"videos/v{k}/c23.mp4"
        (root / rel).parent.mkdir(parents=True)
        write_video(root / rel, clip, fps=25, crf=23, reproducible=True)
        rows.append(ClipRecord(id=f"v{k}_c23", clip_id=f"v{k}", label=label, split=split, method=label,
                               source_identity=f"p{k}", driver_identity=f"p{k}", compression="c23", crf=23,
                               frames=len(clip), fps=25.0, path=rel, sha256=sha256_file(root / rel)))
    grey = "videos/grey/c23.mp4"
    (root / grey).parent.mkdir(parents=True)
    write_video(root / grey, [np.full((160, 160, 3), 110, np.uint8)] * 8, fps=25, crf=23)
    rows.append(ClipRecord(id="grey_c23", clip_id="grey", label="fake", split="train", method="self",
                           source_identity="g", driver_identity="g", compression="c23", crf=23, frames=8,
                           fps=25.0, path=grey, sha256=sha256_file(root / grey)))
    write_metadata(root, rows)
    return root


def test_training_lowers_the_loss_and_reports_faceless_videos(dataset, tmp_path):
    import torch

    torch.manual_seed(0)
    summary = train_detector(dataset, tmp_path / "run", CFG)
    assert summary["finished"] and summary["epochs_done"] == 6 and summary["train_frames"] == 24
    assert summary["last_loss"] < 0.5 * summary["first_loss"]
    assert summary["best"]["video_auc"] == 1.0  # the held-out real and fake video are told apart
    assert [m["id"] for m in summary["missing_faces"]["train"]] == ["grey_c23"]
    assert summary["missing_faces"]["train"][0]["frames"] == "all"
    model, meta = load_detector(tmp_path / "run" / "best.safetensors")
    assert meta["backbone"] == "efficientnet_b0" and meta["init"] == {"init": "scratch"}
    assert (tmp_path / "run" / "stats.csv").read_text().count("\n") > 12
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_a_stopped_run_resumes_to_the_same_end(dataset, tmp_path):
    cfg = dataclasses.replace(CFG, epochs=2)
    first = train_detector(dataset, tmp_path / "run", cfg, max_steps=4)
    assert not first["finished"] and first["global_step"] == 4
    second = train_detector(dataset, tmp_path / "run", cfg)
    assert second["finished"] and second["global_step"] == 6 and second["steps_this_run"] == 2
    with pytest.raises(Exception, match="other settings"):
        train_detector(dataset, tmp_path / "run", dataclasses.replace(cfg, lr=1e-4))


def test_augment_and_predict_shapes():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    cfg = DetectTrainConfig(flip=1.0, blur=1.0, jpeg=1.0)
    out = augment(crop, rng, cfg)
    assert out.shape == crop.shape and out.dtype == np.uint8 and not np.array_equal(out, crop)
    from detector.backbone import Detector

    p = predict(Detector("efficientnet_b0"), np.stack([crop, out]))
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()


def test_unknown_backbone_and_missing_weights_are_clear():
    from detector.backbone import Detector, load_pretrained
    from generator.errors import BadInputError, MissingWeightsError

    with pytest.raises(BadInputError, match="unknown timm backbone"):
        Detector("efficientnet_b99")
    with pytest.raises(MissingWeightsError, match="nothing is downloaded"):
        load_pretrained(Detector(), "/nonexistent/model.safetensors")
