"""The embedder E(x_i(s), y_i(s)) -> e_hat_i(s) (paper sec. 3.1, eq. (1)).

Frame and landmark image are stacked into 6 channels, pass residual down blocks to 4x4 (with
self-attention at image_size/8), a ReLU and global sum pooling; e_hat_i is the mean over K frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generator.model.config import ModelConfig
from generator.model.layers import ResBlockDown, SelfAttention, assert_shape, sum_pool


def down_trunk(cfg: ModelConfig, c_in: int = 6, instance_norm: bool = False) -> nn.ModuleList:
    """Residual down blocks from image_size to 4x4 with attention at image_size/8 (E and D)."""
    blocks, c = [], c_in
    for k, res in enumerate(cfg.down_resolutions):
        c_out = cfg.channels_at(res)
        blocks.append(ResBlockDown(c, c_out, first=k == 0, instance_norm=instance_norm))
        if cfg.attention and res == cfg.image_size // 8:
            blocks.append(SelfAttention(c_out))
        c = c_out
    return nn.ModuleList(blocks)


class Embedder(nn.Module):
    """E: (frames, landmark images) -> per-frame embeddings; ``embed`` averages over K (eq. 1)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = down_trunk(cfg)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) frames and landmark images in [-1, 1] -> (B, embed_dim) embeddings;
        (B, K, 3, S, S) -> e_hat (B, embed_dim), their mean over K (eq. 1)."""
        if x.ndim == 5:
            return self.embed(x, y)
        s = self.cfg.image_size
        assert_shape(x, (None, 3, s, s))
        assert_shape(y, (None, 3, s, s))
        h = torch.cat([x, y], dim=1)
        for block in self.blocks:
            h = block(h)
        return sum_pool(F.relu(h))

    def embed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, K, 3, S, S) -> e_hat (B, embed_dim): the mean of the K frame embeddings (eq. 1)."""
        b, k = x.shape[:2]
        e = self.forward(x.flatten(0, 1), y.flatten(0, 1))  # all K frames in one batch
        return e.view(b, k, -1).mean(dim=1)
