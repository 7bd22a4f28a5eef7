"""``sfumato detect train``: the field's recipe (detection.md, DeepfakeBench) on a sfumato dataset.

Face crops of 32 evenly spaced frames per video (cached beside the dataset), Adam lr 2e-4 (constant,
or a cosine decay to 0), weight decay 5e-4, batch 32, 10 epochs, mean = std = 0.5, augmentation by
flip, Gaussian blur (kernel 3-7) and JPEG (quality 40-100); presets ``paper`` (that recipe, 256 px)
and ``small`` (128 px, fewer frames and epochs: trains on a CPU). Checkpoints are safetensors,
written atomically every ``checkpoint_every`` steps and at each epoch's end; a rerun with the same
arguments resumes where the last checkpoint left off. Validation (frame and video AUC) after every
epoch keeps ``best``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from detector.data.frames import FrameSet, load_frames, training_sample
from detector.data.schema import ClipRecord, read_metadata
from detector.model import (
    DEFAULT_BACKBONE,
    IMAGENET,
    Detector,
    load_pretrained,
    predict,
    save_detector,
)
from generator.errors import BadInputError, ConfigMismatchError
from generator.io.files import write_bytes_atomic

if TYPE_CHECKING:
    from detector.evaluate import FusionFit


@dataclasses.dataclass(frozen=True)
class DetectTrainConfig:
    """How to train (defaults: DeepfakeBench's recipe)."""

    backbone: str = DEFAULT_BACKBONE
    input_size: int = 256
    frames: int = 32  # evenly spaced frames per video
    batch_size: int = 32
    epochs: int = 10
    lr: float = 2e-4
    weight_decay: float = 5e-4
    compressions: tuple[str, ...] = ("c23",)  # the training files; eval covers every level
    flip: float = 0.5  # probability of each augmentation
    blur: float = 0.3
    jpeg: float = 0.3
    checkpoint_every: int = 200
    seed: int = 0
    # Self-Blended Images (detector/data/sbi.py): the share of real training crops replaced, each time
    # they are drawn, by a self-blended fake of themselves (label fake). 0 = off.
    sbi: float = 0.0
    # Label-blind degradations (detector/data/degrade.py) on every training crop: face size 96-256 px,
    # JPEG 30-95 or H.264 CRF 18-40, blur, noise, with DegradeConfig's probabilities.
    degrade: bool = False
    # Class balance: real crops are drawn more often (so that, after self-blending, about as many real
    # as fake samples are seen) and each batch's loss weighs both classes equally. Without it a
    # dataset of 3-4 fakes per real clip, plus self-blends, teaches the prior "fake".
    balance: bool = True
    # "constant" (DeepfakeBench's recipe) or "cosine": lr falls to 0 at the run's last step. Meant
    # against the late drift from blending cues to training identities; not shown to help yet
    # (62-identity dataset: held-out-generator AUC 0.65 cosine, 0.64-0.75 constant in two runs).
    lr_schedule: str = "constant"

    def __post_init__(self):
        if self.input_size < 32 or self.frames < 1 or self.batch_size < 1 or self.epochs < 1:
            raise BadInputError("input_size >= 32, frames >= 1, batch_size >= 1 and epochs >= 1")
        if not 0 <= self.sbi <= 1:
            raise BadInputError("the self-blended share (sbi) must lie in [0, 1]")
        if self.lr_schedule not in ("constant", "cosine"):
            raise BadInputError(f"lr_schedule is constant or cosine, not {self.lr_schedule!r}")
        if self.lr <= 0:
            raise BadInputError("the learning rate must be positive")


PRESETS = {
    "paper": DetectTrainConfig(),
    "small": DetectTrainConfig(input_size=128, frames=8, batch_size=16, epochs=3),
}


def epoch_order(labels: np.ndarray, config: DetectTrainConfig, seed: int) -> np.ndarray:
    """The crops one epoch draws, shuffled: each once, real ones repeated when ``config.balance``."""
    idx = np.arange(len(labels))
    real, fake = idx[labels == 0], idx[labels == 1]
    if config.balance and len(real) and len(fake):
        # (1 - sbi) k R real draws against F + sbi k R fake ones: equal when k R (1 - 2 sbi) = F
        k = max(1, round(len(fake) / (len(real) * max(1 - 2 * config.sbi, 0.25))))
        idx = np.concatenate([np.repeat(real, k), fake])
    return np.random.default_rng(seed).permutation(idx)


def sample_mix(labels: np.ndarray, config: DetectTrainConfig) -> dict:
    """Expected shares of one epoch's draws: real crops, self-blended fakes, the dataset's own fakes."""
    order = epoch_order(labels, config, 0)
    n_real = float((labels[order] == 0).sum())
    n = max(len(order), 1)
    return {"real": round(n_real * (1 - config.sbi) / n, 4),
            "self_blended": round(n_real * config.sbi / n, 4),
            "dataset_fakes": round(float((labels[order] == 1).sum()) / n, 4), "draws_per_epoch": len(order)}


def learning_rate(config: DetectTrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) out of ``total_steps``."""
    # A function of the step rather than a torch LR scheduler: a resumed run needs no scheduler state.
    if config.lr_schedule == "constant" or total_steps <= 1:
        return config.lr
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps - 1) / (total_steps - 1)))


def balanced_weights(y: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weights giving each class of the batch half the total (1 when one class only)."""
    n_fake = y.sum()
    n_real = len(y) - n_fake
    if n_fake == 0 or n_real == 0:
        return torch.ones_like(y)
    return torch.where(y > 0.5, len(y) / (2 * n_fake), len(y) / (2 * n_real))


@dataclasses.dataclass
class TrainingData:
    """The crops a run reads: the train and val splits, and the held-out fakes that select on."""

    train: FrameSet
    val: FrameSet
    held_out: FrameSet | None  # other generators' fakes (``select_fakes``), never trained on
    selection: dict  # how ``best`` is chosen, as recorded in the files


def run_stamp(dataset: Path, config: DetectTrainConfig, pretrained: str | None,
              init_from: str | os.PathLike | None, select_fakes: str | os.PathLike | None) -> dict:
    """What makes a run itself (settings and data hashes): a rerun resumes only with the same stamp."""
    return {"config": dataclasses.asdict(config), "pretrained": pretrained,
            **({"init_from": _sha(Path(init_from))} if init_from else {}),
            "dataset": str(dataset.resolve()),
            "metadata_sha256": _sha(dataset / "metadata.jsonl"),
            **({"select_fakes": {"dataset": str(Path(select_fakes).resolve()),
                                 "metadata_sha256": _sha(Path(select_fakes) / "metadata.jsonl")}}
               if select_fakes else {})}


def claim_run_folder(out: Path, stamp: dict) -> None:
    """Write ``config.json`` into a new run folder, or refuse one that holds a different run."""
    config_file = out / "config.json"
    if config_file.is_file():
        old = json.loads(config_file.read_text())
        if old != json.loads(json.dumps(stamp)):
            raise ConfigMismatchError(f"{out} holds a run with other settings or data: rerun with the same "
                                      "arguments to resume it, or choose a new --out")
    else:
        write_bytes_atomic(config_file, json.dumps(stamp, indent=1).encode())


def load_training_data(dataset: Path, rows: list[ClipRecord], config: DetectTrainConfig,
                       select_fakes: str | os.PathLike | None, progress: bool) -> TrainingData:
    """The train and val crops at the configured compressions, and the selection fakes if any."""
    pick = [r for r in rows if r.compression in config.compressions]
    train_rows = [r for r in pick if r.split == "train"]
    val_rows = [r for r in pick if r.split == "val"]
    if not train_rows or len({r.label for r in train_rows}) < 2:
        raise BadInputError(f"{dataset}: the train split at {', '.join(config.compressions)} needs real and "
                            "fake videos")
    train = load_frames(dataset, train_rows, config.frames, config.input_size, progress, "faces (train)")
    val = load_frames(dataset, val_rows, config.frames, config.input_size, progress, "faces (val)")
    if not len(train.crops):
        raise BadInputError(f"{dataset}: no face found in any training video")
    held_out, selection_info = None, {"metric": "val video AUC"}
    if select_fakes:
        fakes = [r for r in read_metadata(select_fakes) if r.label == "fake"]
        if not fakes:
            raise BadInputError(f"{select_fakes}: no fake videos to select the model on")
        held_out = load_frames(select_fakes, fakes, config.frames, config.input_size, progress,
                               "faces (selection fakes)")
        selection_info = {"metric": "mean of val video AUC and generalisation AUC (selection fakes "
                                    "against val real videos)", "dataset": str(select_fakes),
                          "fake_videos": len(fakes), "fake_frames": int(len(held_out.crops))}
    return TrainingData(train, val, held_out, selection_info)


def initial_model(config: DetectTrainConfig, pretrained: str | None,
                  init_from: str | os.PathLike | None) -> tuple[Detector, dict]:
    """A seeded detector at its starting weights (pretrained, or a trained detector), and where from."""
    from generator.model.checkpoint import load_checkpoint

    torch.manual_seed(config.seed)
    model = Detector(config.backbone, input_size=config.input_size)
    if init_from is None:
        return model, load_pretrained(model, pretrained)
    start = load_checkpoint(init_from, kind="detector")
    if start.meta.get("backbone") != config.backbone:
        raise BadInputError(f"{init_from} is a {start.meta.get('backbone')} detector; these settings "
                            f"train {config.backbone}")
    start.load_module("net", model.net)
    model.normalisation_from(start.meta)
    return model, {"init": "detector", "file": str(init_from), "sha256": _sha(Path(init_from))}


@dataclasses.dataclass
class TrainingRun:
    """One run in progress: the model, its optimiser, where it stands and what it writes.

    The position (epoch, step, best) is what every checkpoint records, so a rerun resumes from it."""

    config: DetectTrainConfig
    dataset: Path
    out: Path
    data: TrainingData
    model: Detector
    opt: torch.optim.Optimizer
    init: dict
    stamp: dict
    mix: dict
    device: str = "cpu"
    progress: bool = False
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: dict = dataclasses.field(default_factory=lambda: {"video_auc": None, "epoch": None})
    history: list[float] = dataclasses.field(default_factory=list)  # this run's losses, one per step

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch's draws."""
        return -(-self.mix["draws_per_epoch"] // self.config.batch_size)

    @property
    def last(self) -> Path:
        """The resumable checkpoint."""
        return self.out / "checkpoint.safetensors"

    def resume(self) -> None:
        """Continue from the run folder's checkpoint, if there is one."""
        from generator.model.checkpoint import load_checkpoint

        if not self.last.is_file():
            return
        ck = load_checkpoint(self.last, kind="detector")
        ck.load_module("net", self.model.net)
        ck.load_optimizer("adam", self.opt)
        self.epoch, self.step_in_epoch = ck.meta["epoch"], ck.meta["step_in_epoch"]
        self.global_step, self.best, self.init = ck.meta["global_step"], ck.meta["best"], ck.meta["init"]
        self.model.normalisation_from(ck.meta)

    def meta(self) -> dict:
        """What a checkpoint records beside the weights."""
        config, model = self.config, self.model
        return {"backbone": config.backbone, "input_size": config.input_size, "config": config,
                "mean": list(model.mean), "std": list(model.std),
                "init": self.init, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "best": self.best, "dataset": str(self.dataset),
                "metadata_sha256": self.stamp["metadata_sha256"],
                "missing_faces": {"train": len(self.data.train.missing), "val": len(self.data.val.missing)},
                "mix": self.mix, "selection": self.data.selection}

    def save(self, path: Path, with_optimizer: bool = True) -> None:
        """The model (and optimiser) at this point of the run."""
        save_detector(path, self.model, self.meta(), self.opt if with_optimizer else None)

    def train_epoch(self, log: RunLog, max_steps: int | None) -> bool:
        """The rest of the current epoch's steps; True when ``max_steps`` stopped it early."""
        from tqdm import tqdm

        config, train, model, opt = self.config, self.data.train, self.model, self.opt
        order = epoch_order(train.labels, config, config.seed + self.epoch)
        # seeded by the position, so a resumed epoch draws what the uninterrupted one would have
        rng = np.random.default_rng([config.seed, self.epoch, self.step_in_epoch])
        bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, unit="step",
                   disable=not self.progress, desc=f"epoch {self.epoch + 1}/{config.epochs}")
        model.train()
        try:
            while self.step_in_epoch < self.steps_per_epoch:
                k = self.step_in_epoch
                idx = order[k * config.batch_size:(k + 1) * config.batch_size]
                xs, ys = zip(*(training_sample(train, i, rng, config) for i in idx))
                x = np.stack(xs)
                y = torch.tensor(ys, dtype=torch.float32, device=self.device)
                logits = model(model.to_input(torch.from_numpy(x).to(self.device)))
                lr = learning_rate(config, self.global_step, self.steps_per_epoch * config.epochs)
                for group in opt.param_groups:
                    group["lr"] = lr
                weight = balanced_weights(y) if config.balance else None
                loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.step_in_epoch += 1
                self.global_step += 1
                value = loss.item()
                self.history.append(value)
                log.step(self.epoch, self.global_step, value)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
                if self.global_step % config.checkpoint_every == 0:
                    self.save(self.last)
                if max_steps is not None and len(self.history) >= max_steps:
                    return True
            return False
        finally:
            bar.close()

    def end_epoch(self, log: RunLog) -> None:
        """Validate, move to the next epoch, keep ``best.safetensors`` if this epoch scores highest."""
        from detector.metrics import detection_report

        val, held_out, model = self.data.val, self.data.held_out, self.model
        report = (detection_report(val.video_ids, val.labels, predict(model, val.crops))
                  if len(val.crops) else None)
        vauc = report["video"]["auc"] if report else None
        fauc = report["frame"]["auc"] if report else None
        gauc = generalisation_auc(model, val, held_out) if held_out is not None else None
        score = vauc if gauc is None or vauc is None else (vauc + gauc) / 2
        log.validation(self.epoch, self.global_step, fauc, vauc, gauc)
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        old = self.best.get("score", self.best["video_auc"])
        if old is None or (score is not None and score > old):
            self.best = {"video_auc": vauc, "frame_auc": fauc, "generalisation_auc": gauc, "score": score,
                         "epoch": self.epoch}
            self.save(self.out / "best.safetensors", with_optimizer=False)
        self.save(self.last)

    def summary(self, seconds: float) -> TrainSummary:
        """What the run did (``summary.json``)."""
        train, val, history = self.data.train, self.data.val, self.history
        return TrainSummary(
            str(self.out), self.epoch, self.global_step, len(history),
            # mean of this run's first and last 5 steps (single batches are noisy)
            float(np.mean(history[:5])) if history else None,
            float(np.mean(history[-5:])) if history else None,
            self.best, self.init, int(len(train.crops)), int(len(val.crops)), self.mix, self.data.selection,
            {"train": train.missing, "val": val.missing}, seconds, self.epoch >= self.config.epochs)


@dataclasses.dataclass
class TrainSummary:
    """What one ``train_detector`` call did (``summary.json``, and ``detect train --json``)."""

    out: str
    epochs_done: int
    global_step: int
    steps_this_run: int
    first_loss: float | None  # None: no step this run
    last_loss: float | None
    best: dict  # the selected epoch's val AUCs and score, as the checkpoints record it
    init: dict  # where the weights started
    train_frames: int
    val_frames: int
    mix: dict  # sample_mix
    selection: dict  # how best was chosen
    missing_faces: dict[str, list[dict]]  # per split, the videos with frames without a face
    seconds: float
    finished: bool
    # ``detect train`` fits the fusion after a finished run; not part of summary.json
    fusion: FusionFit | None = None

    def to_dict(self) -> dict:
        """JSON-ready (``fusion`` only once fitted)."""
        out = {"out": self.out, "epochs_done": self.epochs_done, "global_step": self.global_step,
               "steps_this_run": self.steps_this_run, "first_loss": self.first_loss,
               "last_loss": self.last_loss, "best": self.best, "init": self.init,
               "train_frames": self.train_frames, "val_frames": self.val_frames, "mix": self.mix,
               "selection": self.selection, "missing_faces": self.missing_faces, "seconds": self.seconds,
               "finished": self.finished}
        if self.fusion is not None:
            out["fusion"] = self.fusion.to_dict()
        return out


class RunLog:
    """The run's stats.csv (appended to on resume) and TensorBoard events."""

    def __init__(self, out: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tensorboard"))
        stats_path = out / "stats.csv"
        new_stats = not stats_path.is_file()
        self.stats = open(stats_path, "a", newline="", buffering=1)  # line-buffered: readable while training
        self.writer = csv.writer(self.stats)
        if new_stats:
            self.writer.writerow(["epoch", "step", "loss", "val_frame_auc", "val_video_auc", "seconds",
                                  "val_generalisation_auc"])
        self.t0 = time.perf_counter()  # the stats' seconds (and the summary's) count from here

    def seconds(self) -> float:
        """Seconds since the log was opened, as the stats write them."""
        return round(time.perf_counter() - self.t0, 2)

    def step(self, epoch: int, global_step: int, loss: float) -> None:
        """One training step's loss."""
        self.tb.add_scalar("loss/train", loss, global_step)
        self.writer.writerow([epoch, global_step, round(loss, 5), "", "", self.seconds(), ""])

    def validation(self, epoch: int, global_step: int, fauc: float | None, vauc: float | None,
                   gauc: float | None) -> None:
        """One epoch's validation AUCs."""
        self.tb.add_scalar("val/video_auc", vauc or 0.0, global_step)
        if gauc is not None:
            self.tb.add_scalar("val/generalisation_auc", gauc, global_step)
        self.writer.writerow([epoch, global_step, "", fauc, vauc, self.seconds(),
                              "" if gauc is None else gauc])

    def close(self) -> None:
        """Flush and close both."""
        self.stats.close()
        self.tb.close()


def train_detector(dataset: str | os.PathLike, out: str | os.PathLike,
                   config: DetectTrainConfig = DetectTrainConfig(), pretrained: str | None = IMAGENET,
                   device: str = "cpu", progress: bool = False, max_steps: int | None = None,
                   init_from: str | os.PathLike | None = None,
                   select_fakes: str | os.PathLike | None = None) -> TrainSummary:
    """Train on the dataset's train split, validate on val; see the module docstring.

    ``max_steps`` stops early (a run can be resumed from there with the same arguments).
    ``pretrained``: ``imagenet`` (the packaged weights of EfficientNet-Lite0/Lite2), a local weight
    file, or ``none``/None (scratch). ``init_from``: a trained detector file of the same backbone to
    fine-tune instead (adversarial rounds). ``select_fakes``: a dataset folder (e.g. other generators'
    clips read in with ``sfumato dataset import --label fake``) whose fakes, against the val split's
    real videos, measure generalisation each epoch; ``best`` is then the epoch with the highest mean
    of that AUC and the in-domain val AUC. Those fakes are never trained on.
    """
    dataset, out = Path(dataset), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in read_metadata(dataset) if r.perturbation == "none"]
    stamp = run_stamp(dataset, config, pretrained, init_from, select_fakes)
    claim_run_folder(out, stamp)
    data = load_training_data(dataset, rows, config, select_fakes, progress)
    model, init = initial_model(config, pretrained, init_from)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    mix = sample_mix(data.train.labels, config)
    run = TrainingRun(config, dataset, out, data, model, opt, init, stamp, mix, device, progress)
    run.resume()
    log = RunLog(out)
    stopped = False
    try:
        while run.epoch < config.epochs and not stopped:
            stopped = run.train_epoch(log, max_steps)
            if not stopped:
                run.end_epoch(log)
    finally:
        if stopped:
            run.save(run.last)
        log.close()
    summary = run.summary(log.seconds())
    write_bytes_atomic(out / "summary.json", json.dumps(summary.to_dict(), indent=1).encode())
    return summary


def generalisation_auc(model: Detector, val: FrameSet, fakes: FrameSet) -> float | None:
    """Video AUC of held-out fakes (other generators) against the val split's real videos."""
    from detector.metrics import detection_report

    real = val.labels == 0
    if not real.any() or not len(fakes.crops):
        return None
    ids = [i for i, r in zip(val.video_ids, real) if r] + [f"selection:{i}" for i in fakes.video_ids]
    labels = np.concatenate([np.zeros(int(real.sum()), np.int64), np.ones(len(fakes.crops), np.int64)])
    probs = np.concatenate([predict(model, val.crops[real]), predict(model, fakes.crops)])
    return detection_report(ids, labels, probs)["video"]["auc"]


def _sha(path: Path) -> str | None:
    from generator.io.files import sha256_file

    return sha256_file(path) if path.is_file() else None
