"""The adversarial game between G and D, in two named phases (after stylegan3's loss phases).

Meta-learning (sec. 3.2), few-shot fine-tuning (sec. 3.3) and the generator-vs-detector step
(``benchmarks.adversarial``) all play it the same way:

- phase ``"G"``: D scores G's frames with its parameters frozen (gradients reach x_hat only), and the
  real frames, in a separate pass without a graph, give the feature-matching targets: L_ADV (eq. 4);
- phase ``"D"``: one pass over real and (detached) generated frames: the hinge loss L_DSC (eq. 6).

Each caller adds its own terms (L_CNT, L_MCH, L_DET), and owns its optimisers, autocast and DDP.
``condition`` says whose realism D measures: ``{"video": i}`` (meta-learning's W columns) or
``{"w": w'}`` (a person's identity vector, one (E,) for all or one (B, E) per frame).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from generator.model.talking_head import set_requires_grad
from generator.training.losses import adversarial_loss, feature_matching_loss, hinge_d_loss

PHASES = ("G", "D")


@dataclasses.dataclass
class GPhase:
    """G's side of the game: L_ADV (with L_FM inside) and the realism scores it saw."""

    l_adv: torch.Tensor  # -adv_weight r(x_hat) + L_FM (eq. 4)
    l_fm: torch.Tensor
    r_fake: torch.Tensor  # (B,) r of G's frames (with graph)
    r_real: torch.Tensor  # (B,) r of the real frames (no graph)


@dataclasses.dataclass
class DPhase:
    """D's side of the game: the hinge loss and both halves' scores."""

    l_dsc: torch.Tensor  # eq. (6)
    r_real: torch.Tensor
    r_fake: torch.Tensor


@contextlib.contextmanager
def frozen(module: nn.Module):
    """D's parameters take no gradient inside (G's phase: D only passes gradients through)."""
    set_requires_grad(module, False)
    try:
        yield module
    finally:
        set_requires_grad(module, True)


def g_phase(D: Callable, x_hat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, condition: dict,
            fm_weight: float = 10.0, adv_weight: float = 1.0) -> GPhase:
    """Phase "G": L_ADV = -adv_weight r(x_hat, y) + L_FM(x_hat, x) (eq. 4). Freeze D's parameters
    around it (``frozen``) so that only x_hat gets gradients."""
    with torch.no_grad():  # the real frames only supply targets: no graph, no backward through them
        real = D(x, y, **condition)
    fake = D(x_hat, y, **condition)
    l_fm = feature_matching_loss(fake.features, real.features, fm_weight)
    return GPhase(adversarial_loss(adv_weight * fake.r, l_fm), l_fm, fake.r, real.r)


def doubled(condition: dict, n: int) -> dict:
    """The condition for a pass over [real; fake]: per-frame entries repeated, shared ones kept."""
    out = {}
    for key, value in condition.items():
        per_frame = isinstance(value, torch.Tensor) and (key == "video" or value.dim() == 2)
        if per_frame and value.shape[0] != n:
            raise ValueError(f"condition {key!r} has {value.shape[0]} rows for {n} frames")
        out[key] = torch.cat([value, value]) if per_frame else value
    return out


def d_phase(D: Callable, x: torch.Tensor, x_hat: torch.Tensor, y: torch.Tensor, condition: dict
            ) -> DPhase:
    """Phase "D": the hinge loss (eq. 6) on real frames x against G's x_hat (detached), one pass."""
    n = x.shape[0]
    out = D(torch.cat([x, x_hat.detach()]), torch.cat([y, y]), **doubled(condition, n))
    return DPhase(hinge_d_loss(out.r[:n], out.r[n:]), out.r[:n], out.r[n:])
