"""Detector-in-the-loop fine-tuning of the generator: the paper's losses plus one that fools a detector.

G (with P, the projection that turns a person's embedding into their AdaIN parameters psi, so the
per-person parameters move with it) is trained on episodes of a corpus (the train split's
identities) with

    L = L_CNT + L_ADV + lambda_DET * L_DET,        L_DET = -log(1 - p_fake) = softplus(logit)

where L_CNT and L_ADV are the paper's (eq. 4; the discriminator D frozen, with the person's
w' = w_0 + e_hat as in fine-tuning, sec. 3.3) and p_fake is a **frozen** detector's probability on
what a benchmark fake shows it: G's face blended over the real frame by the builder's face mask, cut
with the detector's aligned 1.3x crop (a differentiable resample of the training crop). E and D are
not trained, so e_hat and the realism score r keep their meaning; L_CNT and L_ADV keep identity and
realism while L_DET pushes the faces away from what the detector learnt to flag.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generator.errors import BadInputError, ConfigMismatchError
from generator.io.files import sha256_file, write_bytes_atomic


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
    """How long and how hard to push G against the detector."""

    steps: int = 200
    batch_size: int = 4  # episodes per step
    k: int = 8  # frames per episode for e_hat (eq. 1)
    lr_g: float = 5e-5  # the paper's G learning rate
    betas: tuple[float, float] = (0.0, 0.999)
    detector_weight: float = 1.0  # lambda_DET against L_CNT + L_ADV (weight 1 each, as in the paper)
    pixel_weight: float = 1.0  # L_CNT as pixel L1 (no VGG weights needed); VGG when a PerceptualLoss is given
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.k < 1 or self.detector_weight < 0:
            raise BadInputError("steps, batch size and k must be >= 1 and the detector weight >= 0")


def warp_affine(images: torch.Tensor, matrices: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable cv2.warpAffine: (B, C, S, S) images and (B, 2, 3) pixel maps src -> dst, to
    (B, C, size, size)."""
    b, _, h, w = images.shape
    full = torch.cat([matrices, matrices.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], dim=1)
    inv = torch.linalg.inv(full)[:, :2]  # dst pixel -> src pixel
    ys, xs = torch.meshgrid(torch.arange(size, dtype=images.dtype, device=images.device),
                            torch.arange(size, dtype=images.dtype, device=images.device), indexing="ij")
    dst = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)
    src = dst @ inv.to(images.dtype).transpose(1, 2)  # (B, size*size, 2) source pixel centres
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], dim=-1)
    return F.grid_sample(images, grid.reshape(b, size, size, 2), mode="bilinear", padding_mode="border",
                         align_corners=False)


def detector_view(x_hat: torch.Tensor, x: torch.Tensor, points: np.ndarray, size: int) -> torch.Tensor:
    """What the detector sees of a fake: G's face over the real frame (the builder's mask), in the
    detector's aligned 1.3x crop at ``size``. x_hat, x: (B, 3, S, S) in [-1, 1]; points (B, 68, 2)
    in crop pixels. The result is in [-1, 1] (``detector_loss`` normalises it for the detector)."""
    from generator.faces.crop import DETECTOR_CROP, crop_transform, face_mask

    s = x_hat.shape[-1]
    masks = torch.from_numpy(np.stack([face_mask(p[None], s) for p in points])).to(x_hat)[:, None]
    composite = masks * x_hat + (1 - masks) * x
    params = dataclasses.replace(DETECTOR_CROP, size=size)
    mats = torch.from_numpy(np.stack([crop_transform(p, params).matrix for p in points])).to(x_hat)
    return warp_affine(composite, mats, size)


def detector_loss(detector, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_DET = mean -log(1 - p_fake), p_fake per image) of a frozen detector on its input crops."""
    logits = detector(detector.normalise(view * 0.5 + 0.5))  # [-1, 1] -> the detector's own input
    return F.softplus(logits).mean(), torch.sigmoid(logits.detach())


class EpisodeSource:
    """Episodes (K frames for e_hat + a target frame, with its landmarks) from corpus videos."""

    def __init__(self, corpus: str | os.PathLike, image_size: int, k: int,
                 identities: list[str] | None = None, texture: bool = False):
        from generator.corpus.episodes import EpisodeSampler
        from generator.corpus.reader import Corpus

        videos = Corpus.open(corpus).select(identities)
        if not videos:
            raise BadInputError(f"{corpus}: no videos of the identities to fine-tune on")
        self.sampler = EpisodeSampler(videos, image_size, k, texture=texture)
        self.size = image_size

    def sample(self, batch: int, seed: int, step: int) -> tuple:
        """(sources x, y (B, K, 3, S, S), target x, y (B, 3, S, S), target landmarks (B, 68, 2),
        the target's texture (B, 4, S, S) for a texture model, else None)."""
        ep = self.sampler.sample(batch, seed, step)
        videos = [self.sampler.videos[int(i)] for i in ep.video]
        pts = [v.points[f[-1]] * (self.size / v.crop_size) for v, f in zip(videos, ep.frames)]
        return (*ep.sources, *ep.target, np.stack(pts).astype(np.float32), ep.texture)


def adversarial_step(model, detector, batch, config: AdversarialConfig, perceptual=None,
                     det_size: int = 128) -> tuple[torch.Tensor, dict]:
    """The generator's loss on one batch (L_CNT + L_ADV + lambda L_DET) and its parts as floats."""
    from generator.training.adversarial import g_phase
    from generator.training.losses import content_loss

    xs, ys, xt, yt, points, texture = batch
    with torch.no_grad():
        e_hat = model.E(xs, ys)  # eq. (1); E is frozen
    x_hat = model.G(yt, e_hat=e_hat, texture=texture)  # eq. (2): P e_hat -> psi inside G
    w = model.D.w_0.detach()[None] + e_hat  # w' = w_0 + e_hat (sec. 3.3)
    g = g_phase(model.D, x_hat, xt, yt, {"w": w})  # phase "G" (D is frozen for the whole run)
    l_cnt = content_loss(perceptual, x_hat, xt, config.pixel_weight)
    l_det, p_fake = detector_loss(detector, detector_view(x_hat, xt, points, det_size))
    loss = l_cnt + g.l_adv + config.detector_weight * l_det
    parts = {"L_G": loss, "L_CNT": l_cnt, "L_ADV": g.l_adv, "L_DET": l_det, "p_fake": p_fake.mean(),
             "r_fake": g.r_fake.mean()}
    return loss, {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def measure(model, detector, batches: list, config: AdversarialConfig, perceptual=None,
            det_size: int = 128) -> dict:
    """Mean L_CNT, p_fake, r and L_DET of the current G on fixed batches (before/after numbers)."""
    parts = [adversarial_step(model, detector, b, config, perceptual, det_size)[1] for b in batches]
    return {k: float(np.mean([p[k] for p in parts])) for k in ("L_CNT", "L_DET", "p_fake", "r_fake")}


def adversarial_finetune(checkpoint: str | os.PathLike, corpus: str | os.PathLike,
                         detector: str | os.PathLike, out: str | os.PathLike,
                         config: AdversarialConfig = AdversarialConfig(), identities: list[str] | None = None,
                         perceptual=None, device: str = "cpu", progress: bool = False,
                         stop_after: int | None = None) -> dict:
    """Fine-tune G of ``checkpoint`` against the frozen ``detector`` on ``corpus`` (only
    ``identities``, e.g. the train split); writes a meta checkpoint to ``out`` (E and D unchanged).

    Resumable: a state file beside ``out`` is saved every ``checkpoint_every`` steps (and when
    ``stop_after`` steps of this run are done) and picked up by a rerun with the same arguments.
    """
    from tqdm import tqdm

    from detector.model import load_detector
    from generator.model.checkpoint import save_checkpoint
    from generator.model.talking_head import load_meta_model, set_requires_grad

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, meta = load_meta_model(checkpoint, device)
    det, det_meta = load_detector(detector, device)
    det_size = int(det_meta["input_size"])
    set_requires_grad(det, False)
    set_requires_grad(model.E, False)
    set_requires_grad(model.D, False)
    model.G.train()
    stamp = {"checkpoint_sha256": sha256_file(checkpoint), "detector_sha256": sha256_file(detector),
             "config": dataclasses.asdict(config), "identities": sorted(identities) if identities else None,
             "perceptual": perceptual is not None}
    state_path = out.with_name(out.name + ".state.safetensors")
    g_params = list(model.G.parameters())  # includes P: the map to the per-person psi
    opt = torch.optim.Adam(g_params, lr=config.lr_g, betas=config.betas)
    step, history, before = _resume(state_path, stamp, model.G, opt)
    source = EpisodeSource(corpus, model.cfg.image_size, config.k, identities, model.cfg.texture)
    # fixed probe batches (their own seed) for before/after numbers
    probe = [source.sample(config.batch_size, config.seed + 10_007, k) for k in range(4)]
    probe = [tuple(t.to(device) if torch.is_tensor(t) else t for t in b) for b in probe]
    if before is None:
        before = measure(model, det, probe, config, perceptual, det_size)

    def save_state() -> None:
        save_checkpoint(state_path, "adversarial_state", {"G": model.G},
                        {"stamp": stamp, "step": step, "history": history, "before": before},
                        optimizers={"G": opt})

    bar = tqdm(total=config.steps, initial=step, desc="G vs detector", unit="step", disable=not progress)
    ran = 0
    while step < config.steps:
        if stop_after is not None and ran >= stop_after:
            save_state()
            bar.close()
            return {"out": str(out), "steps": step, "stopped": True, "before": before, "history": history}
        ran += 1
        batch = source.sample(config.batch_size, config.seed, step)
        batch = tuple(t.to(device) if torch.is_tensor(t) else t for t in batch)
        loss, parts = adversarial_step(model, det, batch, config, perceptual, det_size)
        if not np.isfinite(parts["L_G"]):
            raise BadInputError(f"the generator's loss became {parts['L_G']} at step {step + 1}: lower "
                                "--detector-weight or the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        history.append({"step": step, **{k: round(v, 5) for k, v in parts.items()}})
        bar.update(1)
        bar.set_postfix(p_fake=f"{parts['p_fake']:.3f}", L_CNT=f"{parts['L_CNT']:.3f}")
        if step % config.checkpoint_every == 0 and step < config.steps:
            save_state()
    bar.close()
    model.G.eval()
    after = measure(model, det, probe, config, perceptual, det_size)
    summary = _write_result(out, model, meta, stamp, step, before, after, history, t0)
    state_path.unlink(missing_ok=True)
    return summary


def _resume(state_path: Path, stamp: dict, G: torch.nn.Module, opt: torch.optim.Optimizer
            ) -> tuple[int, list, dict | None]:
    """(step, history, before) of an interrupted run with the same stamp (G and Adam restored), or a
    fresh start; ConfigMismatchError when the state file belongs to other settings."""
    from generator.model.checkpoint import load_checkpoint

    if not state_path.is_file():
        return 0, [], None
    ck = load_checkpoint(state_path, kind="adversarial_state")
    if ck.meta.get("stamp") != json.loads(json.dumps(stamp)):
        raise ConfigMismatchError(f"{state_path} belongs to another fine-tuning (other checkpoint, "
                                  "detector or settings): delete it or choose another output")
    ck.load_module("G", G)
    ck.load_optimizer("G", opt)
    return int(ck.meta["step"]), list(ck.meta["history"]), ck.meta.get("before")


def _write_result(out: Path, model, meta: dict, stamp: dict, step: int, before: dict, after: dict,
                  history: list, t0: float) -> dict:
    """Write the fine-tuned meta checkpoint (E, D unchanged) and its JSON summary; return the summary."""
    from generator.model.checkpoint import save_checkpoint

    info = {"base_checkpoint_sha256": stamp["checkpoint_sha256"], "detector_sha256": stamp["detector_sha256"],
            "adversarial": {**stamp, "steps": step, "before": before, "after": after}}
    save_checkpoint(out, "meta", {"E": model.E, "G": model.G, "D": model.D},
                    {k: v for k, v in meta.items() if k not in ("optimizers", "format", "kind")} | info)
    summary = {"out": str(out), "steps": step, "before": before, "after": after, "history": history,
               "seconds": round(time.perf_counter() - t0, 2), "config": stamp["config"]}
    write_bytes_atomic(out.with_suffix(".json"), json.dumps(summary, indent=1).encode())
    return summary

