"""Meta-learning on a corpus of talking-head videos (paper sec. 3.2): ``sfumato train CORPUS``.

Each step draws episodes (one video, K + 1 frames), updates E, G and P once on
L_CNT + L_ADV + L_MCH, then D ``d_steps`` times on the hinge loss (plus the match term that pulls
W_i towards e_hat). A run folder holds config.json, stats.csv, TensorBoard logs, sample grids and
the latest checkpoint; ``resume=True`` continues exactly where the checkpoint left off. Under
torchrun every network is wrapped in DistributedDataParallel and each rank draws its own episodes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from generator import __version__
from generator.corpus.episodes import Episode, EpisodeSampler, corpus_fingerprint, load_corpus
from generator.errors import ConfigMismatchError, SfumatoError
from generator.io.files import write_bytes_atomic
from generator.model.checkpoint import load_checkpoint, save_checkpoint
from generator.model.config import LossConfig, ModelConfig, Preset, TrainConfig, get_preset
from generator.model.talking_head import TalkingHeadModel
from generator.training.adversarial import d_phase, frozen, g_phase
from generator.training.distributed import DistInfo, any_rank, barrier, init_distributed
from generator.training.losses import build_content_loss, content_loss, match_loss

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.safetensors"
STATS = "stats.csv"
STAT_FIELDS = ("step", "L_G", "L_CNT", "L_ADV", "L_FM", "L_MCH", "L_D", "r_real", "r_fake",
               "e_hat", "seconds")


class TrainingDivergedError(SfumatoError):
    """Losses stayed NaN or infinite for several steps in a row."""


@dataclasses.dataclass
class TrainResult:
    """Where a run stands when ``train`` returns."""

    run_dir: Path
    step: int
    last: dict
    seconds: float
    skipped_steps: int
    checkpoint: Path
    model: TalkingHeadModel  # the trained networks (this rank's copy under torchrun)
    rank: int = 0


class MetaTrainer:
    """One run's networks, optimisers and step functions; ``train`` drives it."""

    def __init__(self, model: TalkingHeadModel, train: TrainConfig, info: DistInfo,
                 perceptual: nn.Module | None):
        self.model, self.cfg, self.info = model, train, info
        self.perceptual = perceptual
        self.opt_g = torch.optim.Adam([*model.E.parameters(), *model.G.parameters()],
                                      lr=train.lr_g, betas=train.betas)
        self.opt_d = torch.optim.Adam(model.D.parameters(), lr=train.lr_d, betas=train.betas)
        # channels-last lets oneDNN/cuDNN pick their fastest convolutions (1.7x on this CPU).
        model.to(memory_format=torch.channels_last)
        self.E, self.G, self.D = model.E, model.G, model.D
        if info.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [info.device.index] if info.device.type == "cuda" else None
            self.E, self.G, self.D = (DDP(m, device_ids=ids) for m in (model.E, model.G, model.D))
        amp = train.amp
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        if amp == "fp16" and info.device.type != "cuda":
            raise SfumatoError("fp16 autocast needs a CUDA device; use --amp bf16 on a CPU")
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=amp == "fp16")

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.info.device.type, dtype=self.autocast_dtype)

    def _d_no_sync(self):
        return self.D.no_sync() if hasattr(self.D, "no_sync") else contextlib.nullcontext()

    def g_step(self, ep: Episode) -> tuple[dict, torch.Tensor | None, torch.Tensor | None]:
        """Update E, G, P on L_CNT + L_ADV + L_MCH; return the losses, e_hat and x_hat (detached)
        for the D steps (None, None when the step was skipped)."""
        L = self.cfg.losses
        xs, ys = ep.sources
        xt, yt = ep.target
        with frozen(self.model.D), self._autocast():  # phase "G": D only passes gradients through
            e_hat = self.E(xs, ys)  # eq. (1)
            out = self.G(yt, e_hat=e_hat, texture=ep.texture, parts=True)  # eq. (2); texture: + warp
            x_hat = out.x_hat
            with self._d_no_sync():
                adv = g_phase(self.D, x_hat, xt, yt, {"video": ep.video}, L.fm_weight)
            l_cnt = content_loss(self.perceptual, x_hat, xt, L.pixel_weight)
            w_i = self.model.D.W[:, ep.video].t().detach()
            l_mch = match_loss(w_i, e_hat.float(), L.match_weight)
            loss = l_cnt + adv.l_adv + l_mch
            if L.rgb_weight and out.blend is not None:  # G's own painting, trained everywhere
                loss = loss + L.rgb_weight * (out.rgb - xt).abs().mean()
        stats = {"L_G": loss, "L_CNT": l_cnt, "L_ADV": adv.l_adv, "L_FM": adv.l_fm, "L_MCH": l_mch,
                 "r_real": adv.r_real.mean(), "r_fake": adv.r_fake.mean(),
                 "e_hat": e_hat.detach().abs().mean()}  # 0 = a dead embedder (see init_identity_columns)
        stats = {k: float(v.detach()) for k, v in stats.items()}
        if any_rank(not math.isfinite(stats["L_G"]), self.info):
            self.opt_g.zero_grad(set_to_none=True)
            return stats, None, None
        self.opt_g.zero_grad(set_to_none=True)
        with self._d_no_sync():  # no gradient sync for D here: they are discarded
            self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        return stats, e_hat.detach(), x_hat.detach()

    def d_step(self, ep: Episode, e_hat: torch.Tensor, x_hat: torch.Tensor | None = None
               ) -> dict | None:
        """Update D on the hinge loss (eq. 6) and pull W_i towards e_hat (eq. 5, D's side).

        ``x_hat``: fakes to use; None generates them afresh with the current G.
        """
        L = self.cfg.losses
        xt, yt = ep.target
        if x_hat is None:
            with torch.no_grad(), self._autocast():
                x_hat = self.G(yt, e_hat=e_hat, texture=ep.texture)
        with self._autocast():
            d = d_phase(self.D, xt, x_hat, yt, {"video": ep.video})  # phase "D"
            w_i = self.model.D.W[:, ep.video].t()
            loss = d.l_dsc + match_loss(w_i, e_hat.float(), L.match_weight)
        if any_rank(not math.isfinite(float(loss.detach())), self.info):
            self.opt_d.zero_grad(set_to_none=True)
            return None
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        return {"L_D": float(d.l_dsc.detach())}

    def step(self, ep: Episode) -> dict | None:
        """One meta-learning step: a G update then ``d_steps`` D updates. None if skipped.

        The first D update reuses the G step's fakes; later ones draw fresh fakes from the updated G.
        """
        stats, e_hat, x_hat = self.g_step(ep)
        if e_hat is None:
            return None
        for k in range(self.cfg.d_steps):
            d = self.d_step(ep, e_hat, x_hat if k == 0 else None)
            if d is None:
                return None
            stats.update(d)
        return stats


# -- run folder -------------------------------------------------------------------------------
def _run_config(preset: Preset, model: ModelConfig, train: TrainConfig, corpus: str,
                fingerprint: str) -> dict:
    return {"preset": preset.name, "model": model.to_dict(), "train": train.to_dict(),
            "corpus": corpus, "corpus_videos": json.loads(fingerprint)}


def _check_resume(run_dir: Path, config: dict) -> None:
    saved = json.loads((run_dir / "config.json").read_text())
    keys = ("preset", "model", "corpus_videos")
    diff = [k for k in keys if saved.get(k) != config.get(k)]
    train = json.loads(json.dumps(config["train"]))  # tuples -> lists, as saved
    # Loss settings added after a run was started count as their defaults for it.
    saved_losses = {**json.loads(json.dumps(dataclasses.asdict(LossConfig()))),
                    **saved["train"].get("losses", {})}
    saved_train = {**saved["train"], "losses": saved_losses}
    train_diff = [k for k, v in train.items()
                  if k not in ("steps", "checkpoint_every", "sample_every", "log_every")
                  and saved_train.get(k) != v]
    if diff or train_diff:
        raise ConfigMismatchError(
            f"{run_dir} holds a run with other settings ({', '.join(diff + train_diff)}); "
            "resume with the same preset, corpus and hyper-parameters, or use a new --out")


def _trim_stats(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint (they will be redone after a resume)."""
    if not path.is_file():
        return
    rows = list(csv.DictReader(path.open()))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=STAT_FIELDS)
    writer.writeheader()
    writer.writerows(r for r in rows if int(r["step"]) <= step)
    write_bytes_atomic(path, buf.getvalue().encode())


def sample_grid(model: TalkingHeadModel, ep: Episode) -> np.ndarray:
    """Rows per episode: K sources | target landmarks | [warped source | G's painting | blend
    weight, for texture models] | generated | real, as one RGB uint8 image."""
    from torchvision.utils import make_grid

    from generator.model.talking_head import to_uint8

    was_training = model.training
    model.eval()  # in training mode spectral norm would advance its power iteration here
    try:
        with torch.no_grad():
            xs, ys = ep.sources
            xt, yt = ep.target
            out = model.G.forward_parts(yt, e_hat=model.E(xs, ys), texture=ep.texture)
    finally:
        model.train(was_training)
    x_hat = out.x_hat
    extra = []
    if ep.texture is not None:
        extra = [ep.texture[:, :3], out.rgb, out.blend.expand(-1, 3, -1, -1) * 2 - 1]
    rows = [torch.cat([xs[b], yt[b:b + 1], *[e[b:b + 1] for e in extra], x_hat[b:b + 1], xt[b:b + 1]])
            for b in range(xt.shape[0])]
    grid = make_grid(torch.cat(rows).float(), nrow=rows[0].shape[0], padding=2, pad_value=1.0)
    return to_uint8(grid[None])[0]


@torch.no_grad()
def init_identity_columns(model: TalkingHeadModel, sampler: EpisodeSampler, frames: int = 8,
                          progress: bool = False) -> None:
    """Start each W_i at E's embedding of video i (mean over ``frames`` evenly spaced frames).

    L_MCH (eq. 5) pulls e_hat towards W_i. From a random W near 0 it drives every unit of E's final
    ReLU negative within ~100 steps (measured on the small preset): e_hat is then 0 for every input,
    no gradient reaches E again, and G learns to ignore identity. Started at E's own output, the match
    term anchors E instead of silencing it.
    """
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    dev = model.D.W.device
    for i in tqdm(range(len(sampler)), desc="init W", unit="video", disable=not progress):
        n = len(sampler.videos[i].frame_files)
        idx = sorted({int(round(j)) for j in np.linspace(0, n - 1, min(frames, n))})
        x, y = sampler.episode(i, idx)
        model.D.W[:, i] = model.E(x[None].to(dev), y[None].to(dev))[0]
    model.train(was_training)


def save_run_checkpoint(path: Path, trainer: MetaTrainer, step: int, config: dict) -> Path:
    """Everything needed to resume (and to fine-tune from) this run at ``step``."""
    meta = {**config, "step": step, "grad_scaler": trainer.scaler.state_dict()}
    # Episodes come from (seed, rank, step) and need no state; torch's generator is saved too, for
    # anything random added later (augmentation, dropout).
    return save_checkpoint(path, "meta", {"E": trainer.model.E, "G": trainer.model.G,
                                          "D": trainer.model.D},
                           meta, optimizers={"G": trainer.opt_g, "D": trainer.opt_d},
                           tensors={"rng.torch": torch.get_rng_state()})


def train(corpus: str | Path, run_dir: str | Path, preset: str = "small",
          train_cfg: TrainConfig | None = None, model_cfg: ModelConfig | None = None,
          resume: bool = False, vgg19: str | None = None, vggface: str | None = None,
          perceptual: nn.Module | None = None, device: str | None = None,
          progress: bool = False, init_from: str | Path | None = None) -> TrainResult:
    """Meta-train (or resume) a model on a prepared corpus; see the module docstring.

    ``init_from``: start E and G from another run's checkpoint of the same architecture (a new
    run with fresh optimisers, D and W; for a changed recipe). Ignored on ``resume``.
    """
    start_time = time.perf_counter()
    info = init_distributed(device)
    p = get_preset(preset)
    tcfg = train_cfg or p.train
    videos = load_corpus(corpus)
    mcfg = dataclasses.replace(model_cfg or p.model, num_videos=len(videos))
    fingerprint = corpus_fingerprint(videos)
    config = _run_config(p, mcfg, tcfg, str(Path(corpus).resolve()), fingerprint)
    if init_from is not None and not resume:
        from generator.io.files import sha256_file

        config["init_from"] = {"path": str(Path(init_from).resolve()), "sha256": sha256_file(init_from)}
    run = Path(run_dir)
    ck_path = run / CHECKPOINT
    if ck_path.exists() and not resume:
        raise SfumatoError(f"{run} already holds a run: add --resume to continue it, or choose "
                           "another --out")
    if resume and not ck_path.exists():
        raise SfumatoError(f"nothing to resume in {run}: no {CHECKPOINT}")
    if info.is_main:
        try:
            run.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SfumatoError(f"cannot create run folder {run}: {exc.strerror}") from exc
    barrier(info)

    torch.manual_seed(tcfg.seed)  # identical initial weights on every rank
    model = TalkingHeadModel(mcfg).to(info.device)
    step = 0
    if resume:
        _check_resume(run, config)
        ck = load_checkpoint(ck_path, kind="meta", preset=p.name)
        for name in ("E", "G", "D"):
            ck.load_module(name, getattr(model, name))
        step = int(ck.meta["step"])
    if perceptual is None:
        perceptual = build_content_loss(tcfg.losses, vgg19, vggface)
    if perceptual is None:
        log.warning("content loss disabled (content='none'): a smoke-run choice; expect blurry, "
                    "identity-poor output")
    else:
        perceptual = perceptual.to(info.device)
    sampler = EpisodeSampler(videos, mcfg.image_size, tcfg.k, texture=mcfg.texture,
                             hard_shot=tcfg.hard_shot)
    if init_from is not None and not resume:
        _warm_start(model, init_from, mcfg)
    if not resume and info.is_main:  # under torchrun, DDP broadcasts rank 0's W when it wraps D
        init_identity_columns(model, sampler, max(tcfg.k, 8), progress)
    trainer = MetaTrainer(model, tcfg, info, perceptual)
    if resume:
        ck.load_optimizer("G", trainer.opt_g)
        ck.load_optimizer("D", trainer.opt_d)
        trainer.scaler.load_state_dict(ck.meta.get("grad_scaler") or {})
        if "rng.torch" in ck.tensors:
            torch.set_rng_state(ck.tensors["rng.torch"])
    writer, stats_file = None, run / STATS
    if info.is_main:
        write_bytes_atomic(run / "config.json", json.dumps(
            {**config, "sfumato_version": __version__}, indent=1, default=list).encode())
        if resume:
            _trim_stats(stats_file, step)
        writer = _tensorboard(run)
    return _loop(trainer, sampler, tcfg, info, run, step, config, writer, stats_file, progress,
                 start_time)


def _warm_start(model: TalkingHeadModel, path: str | Path, mcfg: ModelConfig) -> None:
    """Load E and G (with P) from a meta checkpoint of the same architecture; D starts afresh."""
    ck = load_checkpoint(path, kind="meta")
    theirs = {k: v for k, v in ck.meta.get("model", {}).items() if k != "num_videos"}
    ours = {k: v for k, v in mcfg.to_dict().items() if k != "num_videos"}
    if theirs != ours:
        diff = sorted(k for k in ours if theirs.get(k) != ours[k])
        raise ConfigMismatchError(f"{path}: another architecture ({', '.join(diff)} differ); "
                                  "--init-from needs a checkpoint of the same preset's model")
    for name in ("E", "G"):
        ck.load_module(name, getattr(model, name))


def _tensorboard(run: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; keep training if an install lacks it
        log.warning("tensorboard is not installed: logging to stats.csv only")
        return None
    return SummaryWriter(str(run / "tensorboard"))


def _loop(trainer: MetaTrainer, sampler: EpisodeSampler, tcfg: TrainConfig, info: DistInfo,
          run: Path, step: int, config: dict, writer, stats_file: Path, progress: bool,
          start_time: float) -> TrainResult:
    from tqdm import tqdm

    from generator.io.video import write_image

    bar = tqdm(total=tcfg.steps, initial=step, unit="step", desc="meta-train",
               disable=not (progress and info.is_main))
    bad_in_row = skipped = 0
    warned_dead = False
    last: dict = {}
    ck_path = run / CHECKPOINT
    new_file = not stats_file.exists()
    csv_fh = stats_file.open("a", newline="") if info.is_main else None
    csv_writer = csv.DictWriter(csv_fh, fieldnames=STAT_FIELDS) if csv_fh else None
    if csv_writer and new_file:
        csv_writer.writeheader()
    try:
        while step < tcfg.steps:
            t0 = time.perf_counter()
            ep = sampler.sample(tcfg.batch_size, tcfg.seed, step, info.rank).to(info.device)
            stats = trainer.step(ep)
            step += 1
            if stats is None:
                bad_in_row += 1
                skipped += 1
                log.warning("step %d skipped: non-finite loss", step)
                if bad_in_row >= tcfg.max_bad_steps:
                    raise TrainingDivergedError(
                        f"losses were NaN or infinite for {bad_in_row} steps in a row (at step "
                        f"{step}); resume from the last checkpoint with a lower learning rate or "
                        "without --amp")
                continue
            bad_in_row = 0
            stats["step"], stats["seconds"] = step, round(time.perf_counter() - t0, 4)
            last = stats
            bar.update(1)
            bar.set_postfix({k: f"{stats[k]:.3g}" for k in ("L_G", "L_D", "L_CNT", "r_real", "r_fake")
                             if k in stats}, refresh=False)
            if info.is_main and (step % tcfg.log_every == 0 or step == tcfg.steps):
                if stats["e_hat"] == 0.0 and not warned_dead:
                    warned_dead = True
                    log.warning("step %d: the embedder's output is all zeros (its final ReLU is "
                                "dead), so identity no longer reaches G; restart the run (W is "
                                "initialised from E) or lower --match-loss", step)
                csv_writer.writerow({k: stats.get(k, "") for k in STAT_FIELDS})
                csv_fh.flush()
                if writer is not None:
                    for k, v in stats.items():
                        if k not in ("step",):
                            writer.add_scalar(f"{'realism' if k.startswith('r_') else 'loss'}/{k}",
                                              v, step)
            if info.is_main and (step % tcfg.sample_every == 0 or step == tcfg.steps):
                (run / "samples").mkdir(exist_ok=True)
                write_image(run / "samples" / f"step_{step:07d}.png", sample_grid(trainer.model, ep))
            if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
                if info.is_main:
                    save_run_checkpoint(ck_path, trainer, step, config)
                barrier(info)
    finally:
        bar.close()
        if csv_fh:
            csv_fh.close()
        if writer is not None:
            writer.close()
    return TrainResult(run, step, last, time.perf_counter() - start_time, skipped, ck_path,
                       trainer.model, info.rank)
