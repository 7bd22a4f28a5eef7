"""Where the detector looks: Grad-CAM (Selvaraju et al., ICCV 2017) of the fake logit.

The gradient of the logit with respect to the backbone's last feature map, averaged over space,
weights that map's channels; their weighted sum, rectified and upsampled to the crop, is the map.
It is normalised to sum to 1, a distribution over the crop's pixels, so maps of different frames
and detectors compare. Works for any timm backbone (``forward_features`` / ``forward_head``).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from detector.model import Detector


def gradcam(model: Detector, crops: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (N, S, S) float32, each summing to 1, for uint8 crops (N, S, S, 3)."""
    model.eval()
    dev = next(model.parameters()).device
    x = model.to_input(torch.from_numpy(np.ascontiguousarray(crops)).to(dev))
    with torch.enable_grad():
        feats = model.net.forward_features(x).detach().requires_grad_(True)  # (N, C, h, w)
        logit = model.net.forward_head(feats).squeeze(1)
        (grad,) = torch.autograd.grad(logit.sum(), feats)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feats).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=crops.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    total = cam.sum(dim=(1, 2), keepdim=True)
    # no positive evidence anywhere: a flat map (every pixel equally (un)involved)
    flat = torch.full_like(cam, 1.0 / (cam.shape[1] * cam.shape[2]))
    cam = torch.where(total > 0, cam / total.clamp_min(1e-12), flat)
    return cam.float().cpu().numpy()


def overlay(crop: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The crop (S, S, 3) uint8 with a heat map drawn over it (jet colours, hottest = red)."""
    scaled = heat / max(float(heat.max()), 1e-12)
    colour = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return cv2.addWeighted(crop, 1 - alpha, colour, alpha, 0)
