"""The projection discriminator D(x_i(t), y_i(t), i) -> realism score r (paper sec. 3.1, eq. (3)).

r = V(x, y)^T (W_i + w_0) + b: V is an embedder-like trunk on frame + landmark image with an extra
residual block at 4x4 and sum pooling; W has one column per training video. Every block's output is
returned for the feature-matching loss. Identity-agnostic use (w_0 only) and a fine-tuned identity
vector (w' = w_0 + e_hat_new, sec. 3.3) are supported.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from generator.config import ModelConfig
from generator.embedder import down_trunk
from generator.layers import ResBlock, assert_shape, sum_pool


@dataclasses.dataclass
class DOutput:
    """D's answer: realism scores (B,), V(x, y) (B, D) and every block's features."""

    r: torch.Tensor
    v: torch.Tensor
    features: list[torch.Tensor]


def zero_conv_biases(module: nn.Module) -> None:
    """Start every convolution bias at 0 (BigGAN's init).

    Spectral norm shrinks the signal about 3x per block while PyTorch's default biases
    (+-1/sqrt(fan_in)) do not shrink: with them the last block's features varied 0.0007 across
    frames on a 0.02 constant (measured, 128 px) and D learnt nothing (L_D stayed at 2).
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.zero_()


class Discriminator(nn.Module):
    """Projection discriminator with per-video embeddings W (embed_dim x num_videos), w_0 and b."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList([*down_trunk(cfg), ResBlock(cfg.embed_dim)])
        self.W = nn.Parameter(torch.randn(cfg.embed_dim, cfg.num_videos) * 0.02)
        self.w_0 = nn.Parameter(torch.zeros(cfg.embed_dim))
        self.b = nn.Parameter(torch.zeros(()))
        zero_conv_biases(self)


    def trunk(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """V(x, y) (B, embed_dim) and the block features."""
        s = self.cfg.image_size
        assert_shape(x, (None, 3, s, s))
        assert_shape(y, (None, 3, s, s))
        h = torch.cat([x, y], dim=1)
        feats = []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        return sum_pool(F.relu(h)), feats

    def identity_vector(self, video: torch.Tensor | None = None,
                        w: torch.Tensor | None = None) -> torch.Tensor:
        """W_i + w_0 for training videos ``video`` (B,), w' itself if given, else w_0 alone."""
        if w is not None:
            return w if w.ndim == 2 else w[None]
        if video is not None:
            return self.W[:, video].t() + self.w_0
        return self.w_0[None]

    def forward(self, x: torch.Tensor, y: torch.Tensor, video: torch.Tensor | None = None,
                w: torch.Tensor | None = None) -> DOutput:
        """r = V(x, y)^T (W_i + w_0) + b (eq. 3); ``w`` overrides W_i + w_0 (fine-tuned person)."""
        v, feats = self.trunk(x, y)
        r = (v * self.identity_vector(video, w)).sum(dim=1) + self.b
        return DOutput(r, v, feats)
