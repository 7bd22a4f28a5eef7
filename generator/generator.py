"""The generator G(y_i(t), psi_hat_i) -> x_hat_i(t) with psi_hat_i = P e_hat_i (paper sec. 3.1, eq. (2)).

Image-to-image: down blocks with instance norm to image_size/16, AdaIN residual blocks, AdaIN up
blocks back to full size, and an AdaIN -> ReLU -> conv -> tanh head. Every AdaIN scale and bias
comes from psi_hat, one vector per person, computed once (``project``) and reused for every frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generator.config import ModelConfig
from generator.layers import (
    AdaIN,
    ResBlock,
    ResBlockDown,
    ResBlockUp,
    SelfAttention,
    assert_shape,
    sn_conv,
)


class Generator(nn.Module):
    """G with its projection matrix P (``self.P``, shape n_adain x embed_dim)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        s = cfg.image_size
        down, c = [], 3
        res = s
        while res > cfg.bottleneck:  # 256 -> 16 for the paper
            res //= 2
            c_out = cfg.channels_at(res)
            down.append(ResBlockDown(c, c_out, first=not down, instance_norm=True))
            if cfg.attention and res == s // 8:
                down.append(SelfAttention(c_out))
            c = c_out
        self.down = nn.ModuleList(down)
        self.res = nn.ModuleList(ResBlock(c, adaptive=True) for _ in range(cfg.res_blocks))
        up = []
        while res < s:
            res *= 2
            c_out = cfg.channels_at(res)
            up.append(ResBlockUp(c, c_out))
            if cfg.attention and res == s // 4:
                up.append(SelfAttention(c_out))
            c = c_out
        self.up = nn.ModuleList(up)
        self.head_norm = AdaIN(c)
        self.head_conv = sn_conv(c, 3)
        self.adain_layers = [n for b in [*self.res, *self.up] if hasattr(b, "adain_layers")
                             for n in b.adain_layers] + [self.head_norm]
        # psi_hat = P e_hat (eq. 2); small init so training starts near plain instance norm.
        self.P = nn.Parameter(torch.randn(self.n_adain, cfg.embed_dim) * 0.02 / cfg.embed_dim ** 0.5)

    @property
    def n_adain(self) -> int:
        """Total number of AdaIN parameters, which is P's output size."""
        return sum(n.n_params for n in self.adain_layers)

    def project(self, e_hat: torch.Tensor) -> torch.Tensor:
        """psi_hat = P e_hat: (B, embed_dim) -> (B, n_adain)."""
        return F.linear(e_hat, self.P)

    def _split(self, psi: torch.Tensor) -> list[torch.Tensor]:
        return list(psi.split([n.n_params for n in self.adain_layers], dim=1))

    def forward(self, y: torch.Tensor, psi: torch.Tensor | None = None,
                e_hat: torch.Tensor | None = None) -> torch.Tensor:
        """Landmark images (B, 3, S, S) and psi_hat (B or 1, n_adain) -> frames in [-1, 1].

        Give ``e_hat`` instead of ``psi`` to project inside the call (so P trains under DDP).
        """
        if psi is None:
            if e_hat is None:
                raise ValueError("give psi (person parameters) or e_hat (an embedding)")
            psi = self.project(e_hat)
        s = self.cfg.image_size
        assert_shape(y, (None, 3, s, s))
        assert_shape(psi, (None, self.n_adain))
        if psi.shape[0] != y.shape[0]:
            psi = psi.expand(y.shape[0], -1)  # one person, many frames
        parts = iter(self._split(psi))
        h = y
        for block in self.down:
            h = block(h)
        for block in self.res:
            h = block(h, [next(parts), next(parts)])
        for block in self.up:
            h = block(h, [next(parts), next(parts)]) if isinstance(block, ResBlockUp) else block(h)
        h = F.relu(self.head_norm(h, next(parts)))
        return torch.tanh(self.head_conv(h))
