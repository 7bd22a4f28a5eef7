"""D calibration: after meta-training, train D alone so its realism score r separates real frames
from G's (``sfumato calibrate``). Not in the paper.

Adversarial training leaves D only as sharp as G needs it to be; the realism score that benchmarks,
the detector and scans reuse must separate real from generated frames on faces D never saw. So E,
G and P are frozen, and D learns a ranking loss (pairwise by default, or eq. 6's hinge) on real
targets against G's renderings of them, both through the same random degradations (a downscale
and back, a JPEG re-encode), with both identity paths trained: identity-agnostic (w_0) and the
person's w' = w_0 + e_hat (sec. 3.3), the two ways r is computed at use. Resumable: a rerun
continues from ``out``'s state.

Because E and G are frozen, their renderings never change: a pool of ``pool`` episodes is rendered
once (deterministically from the seed, and cached beside the output for a resumed run) and every D
step draws its batch from it, so a step costs D's passes only.
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

from generator.corpus.episodes import EpisodeSampler, load_corpus
from generator.errors import ConfigMismatchError, SfumatoError
from generator.io.files import sha256_file, write_bytes_atomic
from generator.model.checkpoint import load_checkpoint, save_checkpoint
from generator.model.config import D_TRUNKS
from generator.model.talking_head import TalkingHeadModel, load_meta_model, set_requires_grad, to_uint8
from generator.training.losses import hinge_d_loss


@dataclasses.dataclass(frozen=True)
class CalibrateConfig:
    """How D is calibrated."""

    steps: int = 2000
    batch_size: int = 4  # episodes per step: 4 real and 4 generated frames
    lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    resize: float = 0.5  # probability of a downscale to 40-100% and back
    jpeg: float = 0.5  # probability of a JPEG re-encode at quality 30-95
    agnostic_weight: float = 1.0  # weight of the w_0-only loss beside the w' one
    # Start D's trunk afresh (W kept): for a D that adversarial training left constant (its features
    # no longer depend on the frame, so further training has no gradient to follow).
    fresh: bool = False
    # With ``fresh``: D's down blocks start from E's trained ones (same architecture, both read frame
    # + landmark image), so D begins with face features instead of noise; its last block stays new.
    trunk_from_e: bool = False
    # With ``fresh``: D's trunk kind ("conv" or "lite0", see ModelConfig.d_trunk); "" keeps the
    # checkpoint's. "lite0" starts from the packaged ImageNet weights and trains only the linear
    # read-out and the projection (measured: the conv trunk learns the cue from scratch very slowly).
    d_trunk: str = ""
    # "pairwise": logistic loss on every real-fake pair of the batch, softplus(r_fake - r_real), an
    # AUC surrogate that ignores where both scores sit; "hinge": eq. (6). With hinge a fresh D's
    # common offset swung by +-5 within steps and drowned the real-fake gap (measured: L_D back at
    # 2.0 after 40 steps even for a black 32 px box); pairwise learnt that box within 40 steps.
    loss: str = "pairwise"
    # Share of fakes rendered from the source shot farthest in pose from the target: use-time fakes
    # often come from one shot far from the driving frame, training episodes rarely do.
    hard_shot: float = 0.5
    # Episodes rendered once and drawn from at every step (0: render each step's batch afresh).
    pool: int = 1024
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise SfumatoError(f"calibration loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.d_trunk and self.d_trunk not in D_TRUNKS:
            raise SfumatoError(f"d_trunk must be one of {', '.join(D_TRUNKS)}, got {self.d_trunk!r}")
        if self.d_trunk and not self.fresh:
            raise SfumatoError("choosing D's trunk needs a fresh D (fresh=True / --fresh-d)")
        if self.trunk_from_e and self.d_trunk == "lite0":
            raise SfumatoError("trunk_from_e copies E's conv blocks: it needs the conv trunk")
        if self.pool and self.pool < self.batch_size:
            raise SfumatoError(f"the render pool ({self.pool}) must hold at least one batch "
                               f"({self.batch_size})")


# "paired": softplus(r_fake_i - r_real_i) of each real frame against its own rendering only (same
# person, same landmarks), so differences between faces do not enter the gradient.
LOSSES = ("pairwise", "paired", "hinge")


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


def paired_loss(r_real: torch.Tensor, r_fake: torch.Tensor) -> torch.Tensor:
    """mean of softplus(r_fake_i - r_real_i): each real frame against its own rendering only."""
    return F.softplus(r_fake - r_real).mean()


@dataclasses.dataclass
class RenderBatch:
    """Real target frames, G's renderings of them (both (B, 3, S, S) in [-1, 1]), their landmark
    images and the persons' e_hat (B, embed_dim)."""

    real: torch.Tensor
    fake: torch.Tensor
    y: torch.Tensor
    e_hat: torch.Tensor

    def __len__(self) -> int:
        return len(self.real)

    def take(self, index: torch.Tensor) -> RenderBatch:
        """The renders at ``index``."""
        return RenderBatch(self.real[index], self.fake[index], self.y[index], self.e_hat[index])


@torch.no_grad()
def render(model: TalkingHeadModel, ep) -> RenderBatch:
    """G's renderings of an episode batch's targets from its sources (E and G as they are)."""
    xs, ys = ep.sources
    xt, yt = ep.target
    e_hat = model.E(xs, ys)
    return RenderBatch(xt, model.G(yt, e_hat=e_hat, texture=ep.texture), yt, e_hat)


def render_pool(model: TalkingHeadModel, sampler: EpisodeSampler, size: int, seed: int,
                batch_size: int = 16, progress: bool = False) -> RenderBatch:
    """``size`` episodes rendered once, drawn as the sampler's stream for ``seed`` (reproducible)."""
    from tqdm import tqdm

    parts = []
    for k in tqdm(range(0, size, batch_size), desc="render pool", unit="batch", disable=not progress):
        ep = sampler.sample(min(batch_size, size - k), seed, k // batch_size)
        parts.append(render(model, ep.to(model.D.w_0.device)))
    # quantised to 8 bits, as a saved render (and the cached pool) holds them
    cat = {f.name: torch.cat([getattr(p, f.name) for p in parts])
           for f in dataclasses.fields(RenderBatch)}
    for name in ("real", "fake"):
        cat[name] = torch.from_numpy(to_uint8(cat[name])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return RenderBatch(**cat)


def cached_pool(path: Path, stamp: dict, make) -> RenderBatch:
    """The render pool stored beside the output (a resumed run skips the rendering), or ``make()``'s,
    stored there. The file is reused only for the same checkpoint, corpus, pool size, seed and
    hard-shot share; frames are kept as uint8."""
    from safetensors import safe_open
    from safetensors.torch import save

    c = stamp["config"]
    key = json.dumps({"checkpoint_sha256": stamp["checkpoint_sha256"], "corpus": stamp["corpus"],
                      **{k: c[k] for k in ("pool", "seed", "hard_shot")}}, sort_keys=True)
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("key") == key:
                t = {k: f.get_tensor(k) for k in f.keys()}
                return RenderBatch(*(t[k].float() / 127.5 - 1.0 for k in ("real", "fake", "y")),
                                   t["e_hat"])
    pool = make()
    u8 = {k: ((getattr(pool, k) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).contiguous()
          for k in ("real", "fake", "y")}
    write_bytes_atomic(path, save({**u8, "e_hat": pool.e_hat.contiguous()}, metadata={"key": key}))
    return pool


def init_projection(D, batch: RenderBatch) -> None:
    """A fresh D's w_0 drawn at random, scaled so r's spread over ``batch``'s real frames is 1.

    With w_0 = 0 (the default) the agnostic r is the constant b: D's trunk gets no gradient from it
    (dr/dV = w_0) and w_0 grows by only the learning rate per step; measured, the loss stayed at
    log 2 for hundreds of steps. b then centres r at 0.
    """
    if D.cfg.d_trunk == "lite0":
        D.features.standardise_on(batch.real)
    with torch.no_grad():
        D.w_0.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
        r = D(batch.real, batch.y).r
        spread = float(r.std())
        if spread > 0:
            D.w_0.mul_(1.0 / spread)
            D.b.sub_(r.mean() / spread)  # centred at 0, where the hinge's margins sit


def calibration_step(model: TalkingHeadModel, opt: torch.optim.Optimizer, batch: RenderBatch,
                     rng: np.random.Generator, config: CalibrateConfig) -> dict:
    """One D update on a batch of renders (E, G frozen): the loss with w' and with w_0 alone."""
    real, fake = degrade(batch.real, rng, config), degrade(batch.fake, rng, config)
    yt, e_hat = batch.y, batch.e_hat
    n = len(real)
    x, y = torch.cat([real, fake]), torch.cat([yt, yt])
    d_loss = {"pairwise": pairwise_loss, "paired": paired_loss, "hinge": hinge_d_loss}[config.loss]
    out = model.D(x, y)
    r_agnostic = out.r
    # the same trunk features V projected on w' = w_0 + e_hat (eq. 3): one trunk pass serves both
    r_person = (out.v * (model.D.w_0[None] + e_hat).repeat(2, 1)).sum(dim=1) + model.D.b
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
        from generator.model.discriminator import Discriminator

        model.cfg = dataclasses.replace(model.cfg, d_trunk=config.d_trunk or model.cfg.d_trunk)
        meta = {**meta, "model": model.cfg.to_dict()}
        fresh = Discriminator(model.cfg).to(device)
        with torch.no_grad():
            fresh.W.copy_(model.D.W)
        if config.trunk_from_e:
            fresh.blocks[:len(model.E.blocks)].load_state_dict(model.E.blocks.state_dict())
        model.D = fresh
    pool = None
    if config.pool:
        pool = cached_pool(out.with_suffix(".pool.safetensors"), stamp, lambda: render_pool(
            model, sampler, config.pool, config.seed + 7919, progress=progress))
    if config.fresh and not step:
        first = pool.take(torch.arange(min(16, len(pool)))) if pool is not None else \
            render(model, sampler.sample(16, config.seed + 7919, config.steps).to(device))
        init_projection(model.D, first)
    set_requires_grad(model.E, False)
    set_requires_grad(model.G, False)
    model.E.eval()
    model.G.eval()
    model.D.train()
    opt = torch.optim.Adam([p for n, p in model.D.named_parameters() if n != "W" and p.requires_grad],
                           lr=config.lr,
                           betas=config.betas)
    if step:
        load_checkpoint(out, kind="meta").load_optimizer("D", opt)
    history, t0 = [], time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="calibrate D", disable=not progress)
    while step < config.steps:
        rng = np.random.default_rng([config.seed, step])
        if pool is not None:
            batch = pool.take(torch.from_numpy(rng.choice(len(pool), config.batch_size, replace=False)))
        else:
            batch = render(model, sampler.sample(config.batch_size, config.seed + 7919, step).to(device))
        history.append(calibration_step(model, opt, batch, rng, config))
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
