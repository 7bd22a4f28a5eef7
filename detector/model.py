"""The learned detector: any timm image model (EfficientNet-Lite0 by default) with one logit, fake vs
real, on the detector's face crops. Starting points (``load_pretrained``): ``imagenet``, the ImageNet
weights that ship in a package for EfficientNet-Lite0/Lite2 (``generator.model.pretrained``); a local
weight file; or ``none`` (from scratch). Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from generator.errors import BadInputError, MissingWeightsError

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
MEAN = STD = (0.5, 0.5, 0.5)  # DeepfakeBench's normalisation: x in [0, 1] -> (x - 0.5) / 0.5
IMAGENET, SCRATCH = "imagenet", "none"  # the named starting points of load_pretrained


class Detector(nn.Module):
    """timm backbone -> one logit per image (positive = fake), with the normalisation it expects."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE, mean: tuple[float, ...] = MEAN,
                 std: tuple[float, ...] = STD, input_size: int = 256):
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            close = timm.list_models(f"*{backbone.split('_')[0]}*")[:8]
            raise BadInputError(f"unknown timm backbone {backbone!r}"
                                + (f"; similar names: {', '.join(close)}" if close else ""))
        self.backbone_name = backbone
        self.input_size = int(input_size)  # side of the face crops it was trained on, and must be fed
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.net = timm.create_model(backbone, pretrained=False, num_classes=1)

    def normalisation_from(self, meta: dict) -> Detector:
        """Take the mean/std a saved detector records (DeepfakeBench's 0.5 / 0.5 for detectors saved
        before they were recorded)."""
        self.mean = tuple(float(v) for v in meta.get("mean", MEAN))
        self.std = tuple(float(v) for v in meta.get("std", STD))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) normalised by ``normalise`` -> logits (N,)."""
        return self.net(x).squeeze(1)

    def normalise(self, x01: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> this backbone's input."""
        mean = x01.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x01.new_tensor(self.std).view(1, -1, 1, 1)
        return (x01 - mean) / std

    def to_input(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 crops (N, H, W, 3) -> normalised float input (N, 3, H, W)."""
        return self.normalise(crops.permute(0, 3, 1, 2).float() / 255.0)


def load_pretrained(model: Detector, pretrained: str | os.PathLike | None) -> dict:
    """Start the backbone from ``imagenet`` (packaged weights), a local file, or ``none``/None
    (scratch); returns what was done, for the checkpoint and the card.

    ImageNet weights also set the model's normalisation to theirs. The classifier is left at its
    initialisation (its shape differs). A .safetensors file is read as is; a .pth/.bin only with
    ``weights_only`` (no arbitrary code).
    """
    if pretrained is None or pretrained == SCRATCH:
        return {"init": "scratch"}
    if pretrained == IMAGENET:
        from generator.model.pretrained import PACKAGED, load_packaged, packaged_archs

        if model.backbone_name not in PACKAGED:
            raise BadInputError(
                f"no ImageNet weights ship for {model.backbone_name}: choose a backbone that has them "
                f"({', '.join(packaged_archs())}), give a local weight file (--pretrained PATH), or "
                "train from scratch (--pretrained none)")
        record = load_packaged(model.backbone_name, model.net, load_classifier=False)
        pre = PACKAGED[model.backbone_name].preprocess
        model.mean, model.std = pre.mean, pre.std
        return {**record, "mean": list(pre.mean), "std": list(pre.std)}
    p = Path(pretrained)
    if not p.is_file():
        raise MissingWeightsError(
            f"pretrained backbone weights {p} not found: give a local file of timm's "
            f"{model.backbone_name} weights (e.g. model.safetensors from its Hugging Face page), "
            f"--pretrained {IMAGENET} (packaged weights of {DEFAULT_BACKBONE} and "
            f"tf_efficientnet_lite2) or --pretrained {SCRATCH} (nothing is downloaded)")
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
    from generator.io.files import sha256_file

    return {"init": "pretrained", "file": str(p), "sha256": sha256_file(p), "tensors_loaded": len(fits),
            "tensors_total": len(own)}


@torch.inference_mode()
def predict(model: Detector, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Probability of fake per crop (uint8 crops (N, H, W, 3) at ``model.input_size``)."""
    model.eval()
    dev = next(model.parameters()).device
    out = [torch.sigmoid(model(model.to_input(torch.from_numpy(crops[k:k + batch_size]).to(dev))))
           .float().cpu() for k in range(0, len(crops), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def save_detector(path: str | os.PathLike, model: Detector, meta: dict, optimizer=None) -> None:
    """Write a detector file (safetensors): the backbone's weights, ``meta`` and, to resume, the optimiser.

    ``meta`` gains the model's backbone and input size where it does not name them.
    """
    from generator.model.checkpoint import save_checkpoint

    meta = dict(meta)
    meta.setdefault("backbone", model.backbone_name)
    meta.setdefault("input_size", model.input_size)
    save_checkpoint(Path(path), "detector", {"net": model.net}, meta,
                    optimizers={"adam": optimizer} if optimizer else None)


def load_detector(path: str | os.PathLike, device: str = "cpu") -> tuple[Detector, dict]:
    """A trained detector and its metadata (backbone, input size, training record)."""
    from generator.model.checkpoint import load_checkpoint

    ck = load_checkpoint(path, kind="detector")
    model = Detector(ck.meta["backbone"], input_size=int(ck.meta["input_size"])).normalisation_from(ck.meta)
    ck.load_module("net", model.net)
    return model.to(device).eval(), ck.meta
