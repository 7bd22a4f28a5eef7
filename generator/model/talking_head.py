"""The three networks together: E, G (with P) and D, built from one ModelConfig."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from generator.model.checkpoint import CheckpointError, load_checkpoint
from generator.model.config import ModelConfig
from generator.model.discriminator import Discriminator
from generator.model.embedder import Embedder
from generator.model.generator import Generator


class TalkingHeadModel(nn.Module):
    """E, G and D of Zakharov et al. 2019; saved and loaded as one unit."""

    def __init__(self, cfg: ModelConfig, with_d: bool = True):
        super().__init__()
        self.cfg = cfg
        self.E = Embedder(cfg)
        self.G = Generator(cfg)
        # Rendering needs only E and G; leaving D out spares a Lite0 D's timm import (~2 s cold).
        self.D = Discriminator(cfg) if with_d else None

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per network (G includes P)."""
        return {name: sum(p.numel() for p in getattr(self, name).parameters())
                for name in ("E", "G", "D") if getattr(self, name) is not None}


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Switch gradient tracking for every parameter of ``module`` (rosinality's requires_grad)."""
    for p in module.parameters():
        p.requires_grad_(flag)


def bake_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace spectrally normalised weights by their current normalised values, in place.

    At inference the weights no longer change, so computing W / sigma(W) on every call is waste.
    """
    from torch.nn.utils import parametrize

    for m in module.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return module


@torch.no_grad()
def to_uint8(x: torch.Tensor):
    """Frames in [-1, 1] (B, 3, S, S) -> numpy uint8 (B, S, S, 3)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def load_meta_model(path: str | Path, device: str = "cpu", with_d: bool = True
                    ) -> tuple[TalkingHeadModel, dict]:
    """Load E, G and D (``with_d=False``: E and G) from a meta-training checkpoint; returns (model
    in eval mode, metadata)."""
    ck = load_checkpoint(path, kind="meta")
    try:
        cfg = ModelConfig(**ck.meta["model"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata lacks a usable model config") from exc
    model = TalkingHeadModel(cfg, with_d)
    for name in ("E", "G", "D") if with_d else ("E", "G"):
        ck.load_module(name, getattr(model, name))
    return model.to(device).eval(), ck.meta
