"""Few-shot fine-tuning on a new face (paper sec. 3.3): ``sfumato finetune SOURCES...``.

From T shots (T = 1 allowed: one photo or painting): e_hat_NEW = mean E(x, y); psi' = P e_hat_NEW;
w' = w_0 + e_hat_NEW, b' = b. Then G (with psi' as a free parameter) and D (with w') are trained on
the T shots with L_CNT + L_ADV (no L_MCH). ``steps=0`` is the feed-forward variant ("FF").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from generator import __version__
from generator.errors import SfumatoError
from generator.faces.shots import Shots, frontal_first, load_shots
from generator.inference.person import Person, init_person
from generator.io.files import sha256_file
from generator.model.checkpoint import save_checkpoint
from generator.model.config import LossConfig
from generator.model.talking_head import TalkingHeadModel, load_meta_model
from generator.training.adversarial import d_phase, frozen, g_phase
from generator.training.losses import build_content_loss, content_loss, content_loss_name


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters (the meta-training optimiser settings, sec. 3.3)."""

    steps: int = 100  # 0 = feed-forward (no fine-tuning)
    batch_size: int = 4  # shots per step (all of them when T is smaller)
    lr_g: float = 5e-5
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    seed: int = 0
    losses: LossConfig = LossConfig()
    # Weight of -r in G's loss (eq. 4's L_ADV; FM keeps its own weight). None: by D's trunk, see
    # ``adv_weight_for``.
    adv_weight: float | None = None

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1:
            raise SfumatoError("steps must be >= 0 and batch size >= 1")
        if self.adv_weight is not None and self.adv_weight < 0:
            raise SfumatoError("the adversarial weight must be >= 0")


# A conv D trained with the hinge loss (eq. 6) keeps r near its margins (+-1), the scale eq. (4)
# assumes. A calibrated Lite0 D is trained with a ranking loss that leaves r's scale free: on a new
# face r sits tens of units from 0 and -r then outweighs the content term 40:1, so fine-tuning made
# G worse (astronaut, 100 steps: content 0.0072 -> 0.027 at weight 1; -> 0.0006 at 0.1). On the
# held-out faces 0.01 did best (bench quality, T = 8, SSIM: 0.743 at 0.1, 0.746 at 0.01 and 0; the
# warp 0.743): FM on the ImageNet features does most of the adversarial work. MODEL_CARD.md.
ADV_WEIGHT = {"conv": 1.0, "lite0": 0.01}


def adv_weight_for(model: TalkingHeadModel, config: FinetuneConfig) -> float:
    """The weight of -r in fine-tuning: the configured one, else the default for D's trunk."""
    return config.adv_weight if config.adv_weight is not None else ADV_WEIGHT[model.cfg.d_trunk]


@dataclasses.dataclass
class FinetuneResult:
    """The person and how fine-tuning went (content loss on the shots before and after)."""

    person: Person
    content_before: float
    content_after: float
    history: list[dict]


def fit_pixels(losses: LossConfig, perceptual: nn.Module | None) -> float:
    """The pixel L1 weight fine-tuning uses: the configured one, or 1 when there is no perceptual
    network (the shots' pixels are then the only content term left to fit)."""
    return losses.pixel_weight or (1.0 if perceptual is None else 0.0)


def finetune(model: TalkingHeadModel, shots: Shots, config: FinetuneConfig = FinetuneConfig(),
             perceptual: nn.Module | None = None, progress: bool = False) -> FinetuneResult:
    """Fine-tune G and D on the shots (or only initialise, when ``config.steps == 0``)."""
    from tqdm import tqdm

    dev = next(model.parameters()).device
    x, y = shots.tensors(dev)
    person = init_person(model, x, y, shots.points)
    # A texture G learns on shot i from the other shots warped to it (T = 1: from itself, where
    # only psi, D and the blend can adapt); fixed, so computed once.
    tex = person.textures(shots.points, exclude=list(range(len(x))))
    G, D = person.G.train(), person.D.train()
    psi = nn.Parameter(person.psi)
    w = nn.Parameter(person.w)
    L = config.losses
    pixel = fit_pixels(L, perceptual)
    adv = adv_weight_for(model, config)

    def content_now() -> float:
        with torch.no_grad():
            return float(content_loss(perceptual, G(y, psi=psi.expand(len(y), -1), texture=tex), x,
                                      pixel))

    before = content_now()
    history = []
    if config.steps:
        g_params = [p for name, p in G.named_parameters() if name != "P"] + [psi]
        opt_g = torch.optim.Adam(g_params, lr=config.lr_g, betas=config.betas)
        opt_d = torch.optim.Adam([p for n, p in D.named_parameters() if n not in ("W", "w_0")] + [w],
                                 lr=config.lr_d, betas=config.betas)
        rng = np.random.default_rng(config.seed)
        for step in tqdm(range(config.steps), disable=not progress, desc="fine-tune", unit="step"):
            idx = torch.as_tensor(rng.choice(len(x), min(config.batch_size, len(x)), replace=False),
                                  device=dev)
            xb, yb = x[idx], y[idx]
            tb = None if tex is None else tex[idx]
            # phase "G": L_CNT + L_ADV with the person's identity w' (no L_MCH in fine-tuning).
            with frozen(D):
                x_hat = G(yb, psi=psi.expand(len(yb), -1), texture=tb)
                g = g_phase(D, x_hat, xb, yb, {"w": w}, L.fm_weight, adv)
                l_cnt = content_loss(perceptual, x_hat, xb, pixel)
                loss_g = l_cnt + g.l_adv
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            # phase "D": hinge on the shots against the fresh generation.
            with torch.no_grad():
                x_hat = G(yb, psi=psi.expand(len(yb), -1), texture=tb)
            loss_d = d_phase(D, xb, x_hat, yb, {"w": w}).l_dsc
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            history.append({"step": step + 1, "L_G": loss_g.item(), "L_CNT": l_cnt.item(),
                            "L_D": loss_d.item()})
    person.psi, person.w = psi.detach(), w.detach()
    return FinetuneResult(person, before, content_now() if config.steps else before, history)


@dataclasses.dataclass(frozen=True)
class PersonFileResult:
    """What ``sfumato finetune`` reports: the person file and how fine-tuning went."""

    out: str
    preset: str | None
    mode: str  # "fine-tuned" or "feed-forward"
    shots: int
    seed: int
    content_before: float
    content_after: float
    content_loss: str  # the content loss's name (features used)
    steps: int

    def to_dict(self) -> dict:
        """JSON-ready, in the order ``--json`` prints."""
        return dataclasses.asdict(self)


def make_person(model: TalkingHeadModel, shots: Shots, config: FinetuneConfig | None = None,
                perceptual: nn.Module | None = None, progress: bool = False) -> Person:
    """The one way to make a Person from shots, ready to render: feed-forward (``config`` None or
    0 steps: psi', w' from E alone, sec. 3.3) or fine-tuned for ``config.steps``."""
    if config is None or config.steps == 0:
        x, y = shots.tensors(next(model.parameters()).device)
        return init_person(model, x, y, shots.points).prepare_for_inference()
    return finetune(model, shots, config, perceptual, progress).person.prepare_for_inference()


def finetune_to_file(checkpoint: str | Path | None, sources: list[str | Path], out: str | Path,
                     config: FinetuneConfig = FinetuneConfig(), shots: int | None = None,
                     vgg19: str | None = None, vggface: str | None = None,
                     perceptual: nn.Module | None = None, backend=None, device: str = "cpu",
                     progress: bool = False) -> PersonFileResult:
    """Load a meta checkpoint (None: the bundled model), fine-tune on the sources, write a
    self-contained person file."""
    from generator.inference.generate import resolve_checkpoint
    from generator.io.files import check_writable

    check_writable(out)
    checkpoint = resolve_checkpoint(checkpoint)
    model, meta = load_meta_model(checkpoint, device)
    torch.manual_seed(config.seed)
    if perceptual is None and config.steps:
        perceptual = build_content_loss(config.losses, vgg19, vggface)
    if perceptual is not None:
        perceptual = perceptual.to(device)
    # as generate does: the first shot gives the face shape the motion moves (see frontal_first)
    shot_set = frontal_first(load_shots(sources, model.cfg.image_size, shots, backend))
    result = finetune(model, shot_set, config, perceptual, progress)
    p = result.person
    person_meta = {
        "preset": meta.get("preset"), "model": model.cfg.to_dict(),
        "mode": "fine-tuned" if config.steps else "feed-forward", "shots": len(shot_set),
        "finetune": {**dataclasses.asdict(config), "adv_weight": adv_weight_for(model, config)},
        "seed": config.seed,
        "checkpoint_sha256": sha256_file(checkpoint), "checkpoint_step": meta.get("step"),
        "sources": shot_set.origins, "source_sha256": shot_set.source_sha256,
        "source_points": np.round(shot_set.points, 2).tolist(),  # for relative motion transfer
        "content_before": result.content_before, "content_after": result.content_after,
        "content_loss": content_loss_name(perceptual, fit_pixels(config.losses, perceptual)),
        "sfumato_version": __version__,
    }
    tensors = {"psi": p.psi, "w": p.w}
    if p.shots_x is not None:  # a texture model renders from its shots' own pixels
        tensors.update(shots_x=p.shots_x.float().cpu(), shots_points=torch.from_numpy(p.shots_points))
    save_checkpoint(out, "person", {"G": p.G, "D": p.D}, person_meta, tensors=tensors)
    return PersonFileResult(str(out), **{k: person_meta[k] for k in (
        "preset", "mode", "shots", "seed", "content_before", "content_after", "content_loss")},
        steps=config.steps)
