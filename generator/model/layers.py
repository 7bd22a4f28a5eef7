"""Building blocks shared by E, G and D: spectrally normalised convolutions, BigGAN-style residual
blocks (down, same, up), self-attention (SAGAN) and AdaIN.

AdaIN is a pure function (``adain``) with thin modules around it, as in stylegan's modulated_conv2d.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

SQRT2 = math.sqrt(2.0)


# helpers -----------------------------------------------------------------------------------------
def sn_conv(c_in: int, c_out: int, kernel: int = 3, bias: bool = True) -> nn.Conv2d:
    """A 'same'-padded convolution with spectral normalisation (Miyato et al. 2018)."""
    return spectral_norm(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias))


def assert_shape(x: torch.Tensor, shape: tuple) -> None:
    """Check a tensor's shape, ``None`` matching any size (stylegan's misc.assert_shape)."""
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        raise ValueError(f"expected shape {shape}, got {tuple(x.shape)}")


# AdaIN -------------------------------------------------------------------------------------------
def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
          ) -> torch.Tensor:
    """Adaptive instance norm: scale * (x - mu(x)) / sigma(x) + bias, per sample and channel.

    ``scale`` and ``bias`` are (B, C). Fused into one multiply-add: x * a + b with
    a = scale / sigma and b = bias - mu * a, so the normalised tensor is never materialised.
    """
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
    a = scale[:, :, None, None] * torch.rsqrt(var + eps)
    return torch.addcmul(bias[:, :, None, None] - mean * a, x, a)


class AdaIN(nn.Module):
    """AdaIN whose parameters are taken from a slice of psi (set per forward call)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    @property
    def n_params(self) -> int:
        """Scale and bias per channel."""
        return 2 * self.channels

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        # psi_hat holds (1 + scale) offsets: P = 0 would start as plain instance norm, which keeps
        # early meta-training stable.
        gamma, beta = psi.split(self.channels, dim=1)
        return adain(x, 1.0 + gamma, beta)


# fused resampling convolutions -------------------------------------------------------------------
def conv3x3_avgpool(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """avg_pool2d(conv3x3(x), 2) computed as one stride-2 4x4 convolution (exactly the same map).

    The 4x4 kernel is the 3x3 one box-filtered over 2x2 shifts: 16 instead of 36 multiply-adds
    per output, and no full-resolution intermediate.
    """
    w = conv.weight
    w4 = (F.pad(w, (0, 1, 0, 1)) + F.pad(w, (1, 0, 0, 1)) + F.pad(w, (0, 1, 1, 0))
          + F.pad(w, (1, 0, 1, 0))) * 0.25
    return F.conv2d(x, w4, conv.bias, stride=2, padding=1)


def avgpool_conv1x1(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv1x1 then avg-pool equals avg-pool then conv1x1 (both linear): pool first, 4x cheaper."""
    return conv(F.avg_pool2d(x, 2))


# residual blocks ---------------------------------------------------------------------------------
class ResBlockDown(nn.Module):
    """BigGAN down block: [norm] ReLU conv3 [norm] ReLU conv3, avg-pool; skip conv1 + avg-pool."""

    def __init__(self, c_in: int, c_out: int, first: bool = False, instance_norm: bool = False):
        super().__init__()
        self.first = first  # no activation on the raw image
        self.fused = True  # fused conv+pool (same map); False = the textbook order, for benchmarks
        self.conv1, self.conv2 = sn_conv(c_in, c_out), sn_conv(c_out, c_out)
        self.skip = sn_conv(c_in, c_out, 1)
        self.norm1 = nn.InstanceNorm2d(c_in, affine=True) if instance_norm and not first else None
        self.norm2 = nn.InstanceNorm2d(c_out, affine=True) if instance_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.norm1 is not None:
            h = self.norm1(h)
        if not self.first:
            h = F.relu(h)
        h = self.conv1(h)
        if self.norm2 is not None:
            h = self.norm2(h)
        if not self.fused:
            h = F.avg_pool2d(self.conv2(F.relu(h)), 2)
            return (h + F.avg_pool2d(self.skip(x), 2)) / SQRT2
        h = conv3x3_avgpool(F.relu(h), self.conv2)
        return (h + avgpool_conv1x1(x, self.skip)) / SQRT2


class ResBlock(nn.Module):
    """Same-resolution residual block, optionally with AdaIN from psi (G's bottleneck) or none (D)."""

    def __init__(self, channels: int, adaptive: bool = False):
        super().__init__()
        self.conv1, self.conv2 = sn_conv(channels, channels), sn_conv(channels, channels)
        self.norm1 = AdaIN(channels) if adaptive else None
        self.norm2 = AdaIN(channels) if adaptive else None

    @property
    def adain_layers(self) -> list[AdaIN]:
        """The AdaIN layers, in the order their parameters are read from psi."""
        return [n for n in (self.norm1, self.norm2) if n is not None]

    def forward(self, x: torch.Tensor, psi: list[torch.Tensor] | None = None) -> torch.Tensor:
        h = x if self.norm1 is None else self.norm1(x, psi[0])
        h = self.conv1(F.relu(h))
        h = h if self.norm2 is None else self.norm2(h, psi[1])
        h = self.conv2(F.relu(h))
        return (x + h) / SQRT2


class ResBlockUp(nn.Module):
    """BigGAN up block with AdaIN: AdaIN ReLU up conv3 AdaIN ReLU conv3; skip up + conv1."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.norm2 = AdaIN(c_in), AdaIN(c_out)
        self.conv1, self.conv2 = sn_conv(c_in, c_out), sn_conv(c_out, c_out)
        self.skip = sn_conv(c_in, c_out, 1)

    @property
    def adain_layers(self) -> list[AdaIN]:
        """The AdaIN layers, in the order their parameters are read from psi."""
        return [self.norm1, self.norm2]

    def forward(self, x: torch.Tensor, psi: list[torch.Tensor]) -> torch.Tensor:
        h = F.relu(self.norm1(x, psi[0]))
        h = self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.conv2(F.relu(self.norm2(h, psi[1])))
        # conv1x1 before upsampling: same result as after, at a quarter of the cost.
        skip = F.interpolate(self.skip(x), scale_factor=2.0, mode="nearest")
        return (h + skip) / SQRT2


# attention ---------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019) with a learned gate gamma starting at 0."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 8)
        self.q, self.k = sn_conv(channels, inner, 1, bias=False), sn_conv(channels, inner, 1, bias=False)
        self.v = sn_conv(channels, max(1, channels // 2), 1, bias=False)
        self.out = sn_conv(max(1, channels // 2), channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        # SAGAN attends from every position to a 2x2-pooled key/value map: 4x fewer pairs.
        kv_in = F.max_pool2d(x, 2) if h * w > 256 else x
        k = self.k(kv_in).flatten(2).transpose(1, 2)
        v = self.v(kv_in).flatten(2).transpose(1, 2)
        attn = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)[:, 0]
        o = self.out(attn.transpose(1, 2).reshape(b, -1, h, w))
        return x + self.gamma * o


def sum_pool(x: torch.Tensor) -> torch.Tensor:
    """Global sum pooling over the spatial dimensions (paper: E and D end with it)."""
    return x.sum(dim=(2, 3))
