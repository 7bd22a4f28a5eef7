"""The learned detector: any timm image model (EfficientNet-B0 by default) with one logit, fake vs real,
on the detector's face crops; ImageNet weights only from a local file (nothing is downloaded).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from generator.errors import BadInputError, MissingWeightsError

DEFAULT_BACKBONE = "efficientnet_b0"
MEAN = STD = 0.5  # DeepfakeBench's normalisation: x in [0, 1] -> (x - 0.5) / 0.5


class Detector(nn.Module):
    """timm backbone -> one logit per image (positive = fake)."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE):
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            close = timm.list_models(f"*{backbone.split('_')[0]}*")[:8]
            raise BadInputError(f"unknown timm backbone {backbone!r}"
                                + (f"; similar names: {', '.join(close)}" if close else ""))
        self.backbone_name = backbone
        self.net = timm.create_model(backbone, pretrained=False, num_classes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) normalised with ``MEAN``/``STD`` -> logits (N,)."""
        return self.net(x).squeeze(1)


def to_input(crops: torch.Tensor) -> torch.Tensor:
    """uint8 crops (N, H, W, 3) -> normalised float input (N, 3, H, W)."""
    return (crops.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


def load_pretrained(model: Detector, path: str | os.PathLike | None) -> dict:
    """Load ImageNet (or other) weights for the backbone from a local file; returns what was done.

    The classifier is left at its initialisation (its shape differs). A .safetensors file is read
    as is; a .pth/.bin only with ``weights_only`` (no arbitrary code). None: trained from scratch.
    """
    if path is None:
        return {"init": "scratch"}
    p = Path(path)
    if not p.is_file():
        raise MissingWeightsError(
            f"pretrained backbone weights {p} not found: give a local file of timm's "
            f"{model.backbone_name} weights (e.g. model.safetensors from its Hugging Face page), or leave "
            "out --pretrained to train from scratch (nothing is downloaded)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(p, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.net.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fits) < 0.5 * len(own):
        raise BadInputError(f"{p}: only {len(fits)} of {len(own)} tensors fit {model.backbone_name}: "
                            "weights of another architecture?")
    model.net.load_state_dict(fits, strict=False)
    from generator.files import sha256_file

    return {"init": "pretrained", "file": str(p), "sha256": sha256_file(p), "tensors_loaded": len(fits),
            "tensors_total": len(own)}
