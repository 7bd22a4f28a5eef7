"""D calibration: after meta-training, train D alone so its realism score r separates real frames
from G's (``sfumato calibrate``). Not in the paper.

Adversarial training leaves D only as sharp as G needs it to be; the realism score that benchmarks,
the detector and scans reuse must separate real from generated frames on faces D never saw. So E,
G and P are frozen, and D learns the hinge loss (eq. 6) on real targets against G's renderings of
them, both through the same random degradations (a downscale and back, a JPEG re-encode), with both
identity paths trained: identity-agnostic (w_0) and the person's w' = w_0 + e_hat (sec. 3.3), the
two ways r is computed at use. Resumable: a rerun continues from ``out``'s state.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from generator.checkpoint import load_checkpoint, save_checkpoint
from generator.data import EpisodeSampler, load_corpus
from generator.errors import ConfigMismatchError, SfumatoError
from generator.files import sha256_file, write_bytes_atomic
from generator.losses import hinge_d_loss
from generator.model import TalkingHeadModel, load_meta_model, set_requires_grad, to_uint8


@dataclasses.dataclass(frozen=True)
class CalibrateConfig:
    """How D is calibrated."""

    steps: int = 2000
    batch_size: int = 4  # episodes per step: 4 real and 4 generated frames
    lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    resize: float = 0.5  # probability of a downscale to 40-100% and back
    jpeg: float = 0.5  # probability of a JPEG re-encode at quality 30-95
    agnostic_weight: float = 1.0  # weight of the w_0-only hinge beside the w' one
    # Start D's trunk afresh (W kept): for a D that adversarial training left constant (its features
    # no longer depend on the frame, so further training has no gradient to follow).
    fresh: bool = False
    # With ``fresh``: D's down blocks start from E's trained ones (same architecture, both read frame
    # + landmark image), so D begins with face features instead of noise; its last block stays new.
    trunk_from_e: bool = False
    # "pairwise": logistic loss on every real-fake pair of the batch, softplus(r_fake - r_real), an
    # AUC surrogate that ignores where both scores sit; "hinge": eq. (6). With hinge a fresh D's
    # common offset swung by +-5 within steps and drowned the real-fake gap (measured: L_D back at
    # 2.0 after 40 steps even for a black 32 px box); pairwise learnt that box within 40 steps.
    loss: str = "pairwise"
    # Share of fakes rendered from the source shot farthest in pose from the target: use-time fakes
    # often come from one shot far from the driving frame, training episodes rarely do.
    hard_shot: float = 0.5
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("pairwise", "hinge"):
            raise SfumatoError(f"calibration loss must be pairwise or hinge, got {self.loss!r}")


def degrade(frames: torch.Tensor, rng: np.random.Generator, config: CalibrateConfig) -> torch.Tensor:
    """The same random degradations for any frames (B, 3, S, S) in [-1, 1], drawn per frame."""
    out = []
    for img in to_uint8(frames):
        s = img.shape[0]
        if rng.random() < config.resize:
            k = max(8, int(round(s * rng.uniform(0.4, 1.0))))
            img = cv2.resize(cv2.resize(img, (k, k), interpolation=cv2.INTER_AREA), (s, s),
                             interpolation=cv2.INTER_LINEAR)
        if rng.random() < config.jpeg:
            quality = int(rng.integers(30, 96))
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        out.append(torch.from_numpy(np.ascontiguousarray(img)))
    x = torch.stack(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.to(frames.device)


def pairwise_loss(r_real: torch.Tensor, r_fake: torch.Tensor) -> torch.Tensor:
    """mean over all (real, fake) pairs of softplus(r_fake - r_real): low when every real outscores
    every fake (a smooth 1 - AUC)."""
    return F.softplus(r_fake[None, :] - r_real[:, None]).mean()


def calibration_step(model: TalkingHeadModel, opt: torch.optim.Optimizer, ep, rng: np.random.Generator,
                     config: CalibrateConfig) -> dict:
    """One D update on an episode batch (E, G frozen): hinge with w' and with w_0 alone."""
    xs, ys = ep.sources
    xt, yt = ep.target
    with torch.no_grad():
        e_hat = model.E(xs, ys)
        x_hat = model.G(yt, e_hat=e_hat, texture=ep.texture)
    real, fake = degrade(xt, rng, config), degrade(x_hat, rng, config)
    n = len(real)
    x, y = torch.cat([real, fake]), torch.cat([yt, yt])
    w = (model.D.w_0[None] + e_hat).repeat(2, 1)
    r_person = model.D(x, y, w=w).r
    r_agnostic = model.D(x, y).r
    d_loss = pairwise_loss if config.loss == "pairwise" else hinge_d_loss
    loss = (d_loss(r_person[:n], r_person[n:])
            + config.agnostic_weight * d_loss(r_agnostic[:n], r_agnostic[n:]))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    gap = float((r_agnostic[:n] - r_agnostic[n:]).mean().detach())
    return {"L_D": float(loss.detach()), "r_gap_agnostic": gap,
            "r_gap_person": float((r_person[:n] - r_person[n:]).mean().detach())}


def calibrate(checkpoint: str | Path, corpus: str | Path, out: str | Path,
              config: CalibrateConfig = CalibrateConfig(), device: str = "cpu",
              progress: bool = False) -> dict:
    """Calibrate D of ``checkpoint`` on ``corpus``; writes ``out`` (a meta checkpoint with the new D)."""
    from tqdm import tqdm

    out = Path(out)
    stamp = {"checkpoint_sha256": sha256_file(checkpoint), "corpus": str(Path(corpus).resolve()),
             "config": json.loads(json.dumps(dataclasses.asdict(config)))}
    state_path = out.with_suffix(".state.json")
    model, meta = load_meta_model(out if out.is_file() else checkpoint, device)
    step = 0
    if out.is_file():
        done = json.loads(state_path.read_text()) if state_path.is_file() else {}
        if {k: v for k, v in done.get("stamp", {}).items() if k != "config"} != \
                {k: v for k, v in stamp.items() if k != "config"}:
            raise ConfigMismatchError(f"{out} was calibrated from another checkpoint or corpus: choose "
                                      "another output file")
        step = int(done.get("step", 0))
    videos = load_corpus(corpus)
    if len(videos) != model.cfg.num_videos:
        raise SfumatoError(f"{corpus} has {len(videos)} videos; the checkpoint was trained on "
                           f"{model.cfg.num_videos}: calibrate on its training corpus")
    sampler = EpisodeSampler(videos, model.cfg.image_size, int(meta["train"]["k"]),
                             texture=model.cfg.texture, hard_shot=config.hard_shot)
    if config.fresh and not step:
        from generator.discriminator import Discriminator

        fresh = Discriminator(model.cfg).to(device)
        with torch.no_grad():
            fresh.W.copy_(model.D.W)
        if config.trunk_from_e:
            fresh.blocks[:len(model.E.blocks)].load_state_dict(model.E.blocks.state_dict())
        model.D = fresh
    set_requires_grad(model.E, False)
    set_requires_grad(model.G, False)
    model.E.eval()
    model.G.eval()
    model.D.train()
    opt = torch.optim.Adam([p for n, p in model.D.named_parameters() if n != "W"], lr=config.lr,
                           betas=config.betas)
    if step:
        load_checkpoint(out, kind="meta").load_optimizer("D", opt)
    history, t0 = [], time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="calibrate D", disable=not progress)
    while step < config.steps:
        ep = sampler.sample(config.batch_size, config.seed + 7919, step).to(device)
        rng = np.random.default_rng([config.seed, step])
        history.append(calibration_step(model, opt, ep, rng, config))
        step += 1
        bar.update(1)
        bar.set_postfix(gap=f"{history[-1]['r_gap_agnostic']:.2f}", refresh=False)
        if step % config.checkpoint_every == 0 or step == config.steps:
            calibrated = {**stamp, "step": step}
            keep = {k: v for k, v in meta.items() if k not in ("optimizers", "format", "kind")}
            save_checkpoint(out, "meta", {"E": model.E, "G": model.G, "D": model.D},
                            {**keep, "calibrated_D": calibrated}, optimizers={"D": opt})
            write_bytes_atomic(state_path, json.dumps({"stamp": stamp, "step": step}).encode())
    bar.close()
    tail = history[-50:]
    return {"out": str(out), "step": step, "seconds": round(time.perf_counter() - t0, 1),
            **{k: float(np.mean([h[k] for h in tail])) if tail else None
               for k in ("L_D", "r_gap_agnostic", "r_gap_person")}}
