"""The projection discriminator D(x_i(t), y_i(t), i) -> realism score r (paper sec. 3.1, eq. (3)).

r = V(x, y)^T (W_i + w_0) + b: V is an embedder-like trunk on frame + landmark image with an extra
residual block at 4x4 and sum pooling; W has one column per training video. Every block's output is
returned for the feature-matching loss. Identity-agnostic use (w_0 only) and a fine-tuned identity
vector (w' = w_0 + e_hat_new, sec. 3.3) are supported.

``ModelConfig.d_trunk = "lite0"`` (not in the paper) replaces the trunk by the frozen ImageNet
EfficientNet-Lite0 of the packaged wheel, as projected GANs do (Sauer et al., NeurIPS 2021): V is a
learnt linear map of the standardised mean and spread of each stage's channels. Measured on renders
of 6 held-out identities (texture128), a linear read-out of those statistics reached AUC 0.96 where
the conv trunk, trained from scratch, stood at 0.55 after 750 steps. This trunk sees the frame only,
not the landmark image.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from generator.model.config import ModelConfig
from generator.model.embedder import down_trunk
from generator.model.layers import ResBlock, assert_shape, sum_pool


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


class ImageNetTrunk(nn.Module):
    """Frozen EfficientNet-Lite0 (ImageNet) -> per-stage channel mean and std, standardised (B, F).

    The statistics' mean and spread (buffers) are set from real frames by ``standardise_on``; the
    network stays in eval mode (frozen batch norm) whatever mode D is in.
    """

    ARCH = "tf_efficientnet_lite0"
    STAGES = (1, 2, 3, 4, 6)  # strides 4, 8, 16, 16, 32 of the 7 block groups

    def __init__(self):
        super().__init__()
        from generator.model.pretrained import create_pretrained

        # the packaged weights (a checkpoint's copy then replaces them, the same values)
        self.net, pre = create_pretrained(self.ARCH, num_classes=0)
        self.net.requires_grad_(False)
        self.input_size = pre.input_size  # the resolution and normalisation its weights expect
        self.register_buffer("rgb_mean", torch.tensor(pre.mean).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor(pre.std).view(1, 3, 1, 1))
        dim = 2 * sum(self.net.blocks[k][-1].conv_pwl.out_channels for k in self.STAGES)
        self.register_buffer("stat_mean", torch.zeros(dim))
        self.register_buffer("stat_std", torch.ones(dim))
        self.dim = dim

    def train(self, mode: bool = True) -> ImageNetTrunk:
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Frames (B, 3, S, S) in [-1, 1] -> standardised statistics (B, F) and the stage features."""
        h = F.interpolate((x + 1) / 2, size=self.input_size, mode="bilinear", align_corners=False)
        h = self.net.bn1(self.net.conv_stem((h - self.rgb_mean) / self.rgb_std))
        feats, stats = [], []
        for k, block in enumerate(self.net.blocks):
            h = block(h)
            if k in self.STAGES:
                feats.append(h)
                stats += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]
        return (torch.cat(stats, dim=1) - self.stat_mean) / self.stat_std, feats

    @torch.no_grad()
    def standardise_on(self, x: torch.Tensor) -> None:
        """Set the statistics' mean and spread from frames ``x`` (real ones)."""
        self.stat_mean.zero_()
        self.stat_std.fill_(1.0)
        f, _ = self(x)
        self.stat_mean.copy_(f.mean(dim=0))
        self.stat_std.copy_(f.std(dim=0).clamp_min(1e-6))


class Discriminator(nn.Module):
    """Projection discriminator with per-video embeddings W (embed_dim x num_videos), w_0 and b."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.d_trunk == "lite0":
            self.features = ImageNetTrunk()
            self.head = nn.Linear(self.features.dim, cfg.embed_dim)
        else:
            self.blocks = nn.ModuleList([*down_trunk(cfg), ResBlock(cfg.embed_dim)])
            zero_conv_biases(self)
        self.W = nn.Parameter(torch.randn(cfg.embed_dim, cfg.num_videos) * 0.02)
        self.w_0 = nn.Parameter(torch.zeros(cfg.embed_dim))
        self.b = nn.Parameter(torch.zeros(()))

    def trunk(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """V(x, y) (B, embed_dim) and the block features."""
        s = self.cfg.image_size
        assert_shape(x, (None, 3, s, s))
        assert_shape(y, (None, 3, s, s))
        if self.cfg.d_trunk == "lite0":
            stats, feats = self.features(x)
            return self.head(stats), feats
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
