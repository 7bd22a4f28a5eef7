"""The generator G(y_i(t), psi_hat_i) -> x_hat_i(t) with psi_hat_i = P e_hat_i (paper sec. 3.1, eq. (2)).

Image-to-image: down blocks with instance norm to image_size/16, AdaIN residual blocks, AdaIN up
blocks back to full size, and an AdaIN -> ReLU -> conv -> tanh head. Every AdaIN scale and bias
comes from psi_hat, one vector per person, computed once (``project``) and reused for every frame.

With ``ModelConfig.texture`` (sfumato's texture presets, not the paper's) G also reads the source
shot warped to the driving landmarks and that warp's validity v (``generator.faces.warp``), and returns
x_hat = m v warp + (1 - m v) G_rgb: a per-pixel blend mask m decides where the source's own pixels
are kept and where G paints (mouth interior, eyes, disocclusions, seams). m starts near 1, so a
fresh G returns the warp and learns what the warp gets wrong. ``ModelConfig.skips`` adds U-Net skips
from each down block to the up block of the same size, so G can paint detail at full resolution.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from generator.model.config import ModelConfig
from generator.model.layers import (
    SQRT2,
    AdaIN,
    ResBlock,
    ResBlockDown,
    ResBlockUp,
    SelfAttention,
    assert_shape,
    sn_conv,
)

MASK_LOGIT_INIT = 4.0  # m = sigmoid(4) = 0.98 at the start: the output is the warp, and m still learns
TEXTURE_CHANNELS = 4  # the warped source (RGB in [-1, 1]) and its validity v (in [0, 1])


@dataclasses.dataclass
class GeneratorOutput:
    """What a texture G makes of a frame: the blend and its two parts (for samples and losses)."""

    x_hat: torch.Tensor  # (B, 3, S, S) in [-1, 1]
    rgb: torch.Tensor  # (B, 3, S, S) G's own painting
    blend: torch.Tensor | None  # (B, 1, S, S) m * v, the weight of the warp; None for the paper's G


class Generator(nn.Module):
    """G with its projection matrix P (``self.P``, shape n_adain x embed_dim)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        s = cfg.image_size
        down, c = [], 3 + (TEXTURE_CHANNELS if cfg.texture else 0)
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
        self.head_conv = sn_conv(c, 4 if cfg.texture else 3)
        if cfg.texture:  # the mask logit starts at MASK_LOGIT_INIT everywhere: x_hat = the warp
            with torch.no_grad():
                self.head_conv.parametrizations.weight.original[3].zero_()
                self.head_conv.bias[3] = MASK_LOGIT_INIT
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
                e_hat: torch.Tensor | None = None, texture: torch.Tensor | None = None,
                parts: bool = False) -> torch.Tensor | GeneratorOutput:
        """Landmark images (B, 3, S, S) and psi_hat (B or 1, n_adain) -> frames in [-1, 1].

        Give ``e_hat`` instead of ``psi`` to project inside the call (so P trains under DDP). A
        texture G also needs ``texture`` (B, 4, S, S): the warped source and its validity.
        ``parts=True`` returns the ``GeneratorOutput`` (through DDP, which only calls forward).
        """
        out = self.forward_parts(y, psi, e_hat, texture)
        return out if parts else out.x_hat

    def forward_parts(self, y: torch.Tensor, psi: torch.Tensor | None = None,
                      e_hat: torch.Tensor | None = None,
                      texture: torch.Tensor | None = None) -> GeneratorOutput:
        """``forward`` with G's painting and the blend weight kept (for a texture G)."""
        if psi is None:
            if e_hat is None:
                raise ValueError("give psi (person parameters) or e_hat (an embedding)")
            psi = self.project(e_hat)
        s = self.cfg.image_size
        assert_shape(y, (None, 3, s, s))
        assert_shape(psi, (None, self.n_adain))
        if self.cfg.texture:
            if texture is None:
                raise ValueError("a texture G needs the warped source and its mask (texture=...)")
            assert_shape(texture, (y.shape[0], TEXTURE_CHANNELS, s, s))
            h = torch.cat([y, texture.to(y.dtype)], 1)
        else:
            h = y
        if psi.shape[0] != y.shape[0]:
            psi = psi.expand(y.shape[0], -1)  # one person, many frames
        parts = iter(self._split(psi))
        skips = {}
        for block in self.down:
            h = block(h)
            skips[h.shape[-1]] = h
        for block in self.res:
            h = block(h, [next(parts), next(parts)])
        for block in self.up:
            if isinstance(block, ResBlockUp):
                h = block(h, [next(parts), next(parts)])
                if self.cfg.skips and h.shape[-1] in skips:
                    h = (h + skips[h.shape[-1]]) / SQRT2
            else:
                h = block(h)
        h = self.head_conv(F.relu(self.head_norm(h, next(parts))))
        if not self.cfg.texture:
            x = torch.tanh(h)
            return GeneratorOutput(x, x, None)
        rgb = torch.tanh(h[:, :3])
        blend = torch.sigmoid(h[:, 3:]) * texture[:, 3:].to(h.dtype)  # m v
        x_hat = blend * texture[:, :3].to(h.dtype) + (1 - blend) * rgb
        return GeneratorOutput(x_hat, rgb, blend)
