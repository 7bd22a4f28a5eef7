"""Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): fakes made from one real face crop.

A pseudo-source, a jittered copy of the crop (colour, contrast, sharpness, a small scale and shift),
is blended into the untouched crop, the pseudo-target, through a mask made from the face's landmarks
(convex hull of the whole face or of its inner parts, elastically deformed, blurred, scaled by a
random blend ratio). A detector trained on them learns blending boundaries and colour mismatch, the
traces most face manipulations share, instead of one generator's look (detection.md). Outside the
mask's support the sample is the real crop, pixel for pixel.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from generator.errors import BadInputError

# Landmark groups of the 68-point layout for the "parts" mask: brows + eyes + nose + mouth.
INNER = np.r_[17:68]
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # SBI's choice: full blends half of the time


@dataclasses.dataclass(frozen=True)
class SBIConfig:
    """How the pseudo-source and the mask vary (defaults after the SBI paper, sec. 3)."""

    # subtle on purpose (SBI: RGB shift +-20 levels, brightness and contrast +-10%): the fakes
    # worth learning from are the hard ones
    hue_shift: float = 4.0  # degrees
    sat_shift: float = 0.06  # fraction of the range
    value_shift: float = 0.06
    rgb_shift: float = 0.08
    contrast: tuple[float, float] = (0.9, 1.1)
    sharpen_or_blur: float = 0.5  # probability of a sharpness change (sharpen or blur, even odds)
    scale: tuple[float, float] = (0.95, 1.05)  # pseudo-source resized around the face centre
    shift: float = 0.03  # and moved by up to this fraction of the crop size
    parts_mask: float = 0.25  # probability of the inner-parts hull instead of the whole face
    elastic: float = 0.04  # elastic displacement of the mask, fraction of the crop size
    mask_blur: tuple[float, float] = (0.01, 0.05)  # Gaussian sigma, fraction of the crop size

    def __post_init__(self):
        if not (0 < self.scale[0] <= self.scale[1]) or self.shift < 0 or self.elastic < 0:
            raise BadInputError("SBI scale must be positive and increasing, shift and elastic >= 0")


def _jitter_colour(img: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue_shift, cfg.hue_shift) / 2) % 180
    hsv[..., 1] += rng.uniform(-cfg.sat_shift, cfg.sat_shift) * 255
    hsv[..., 2] += rng.uniform(-cfg.value_shift, cfg.value_shift) * 255
    out = cv2.cvtColor(np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2RGB)
    out = out.astype(np.float32) + rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, 3) * 255
    mean = out.mean()
    out = (out - mean) * rng.uniform(*cfg.contrast) + mean
    return np.clip(out, 0, 255).astype(np.uint8)


def _sharpness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    soft = cv2.GaussianBlur(img, (0, 0), 1.0)
    return cv2.addWeighted(img, 1.0 + rng.uniform(0.3, 1.0), soft, -rng.uniform(0.3, 1.0), 0)


def pseudo_source(crop: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                  cfg: SBIConfig = SBIConfig()) -> np.ndarray:
    """The crop with its colour, contrast and sharpness jittered, resized and moved a little."""
    out = _jitter_colour(crop, rng, cfg)
    if rng.random() < cfg.sharpen_or_blur:
        out = _sharpness(out, rng)
    s = crop.shape[0]
    centre = np.nanmean(points, axis=0)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, rng.uniform(*cfg.scale))
    m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * s
    return cv2.warpAffine(out, m, (crop.shape[1], s), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def blend_mask(points: np.ndarray, size: int, rng: np.random.Generator,
               cfg: SBIConfig = SBIConfig()) -> np.ndarray:
    """A (size, size) float mask in [0, 1]: a landmark hull, elastically deformed, blurred, scaled."""
    pts = points[INNER] if rng.random() < cfg.parts_mask else points
    hard = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(hard, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    if cfg.elastic > 0:
        # a smooth random displacement field: coarse noise upsampled (elastic deformation)
        grid = rng.uniform(-1, 1, (2, 5, 5)).astype(np.float32) * cfg.elastic * size
        dx, dy = (cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC) for g in grid)
        xs, ys = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
        hard = cv2.remap(hard, xs + dx, ys + dy, cv2.INTER_NEAREST, borderValue=0)
    sigma = rng.uniform(*cfg.mask_blur) * size
    mask = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma)
    mask = mask / max(float(mask.max()), 1e-6)
    mask[mask < 1e-3] = 0  # cut the Gaussian's tails: a bounded support, and the rest stays real
    return mask * float(rng.choice(BLEND_RATIOS))


def self_blend(crop: np.ndarray, points: np.ndarray, rng: np.random.Generator,
               cfg: SBIConfig = SBIConfig()) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended fake of a real face crop (S, S, 3) uint8 with its landmarks (68, 2) in crop
    pixels; returns (fake uint8, mask float32). Where the mask is 0 the fake equals the crop."""
    if crop.ndim != 3 or crop.shape[0] != crop.shape[1] or crop.shape[2] != 3:
        raise BadInputError(f"self_blend takes a square RGB crop, not shape {crop.shape}")
    points = np.asarray(points, np.float32)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise BadInputError("self_blend needs the crop's 68 landmarks (finite, in crop pixels)")
    source = pseudo_source(crop, points, rng, cfg)
    mask = blend_mask(points, crop.shape[0], rng, cfg)
    m = mask[..., None]
    fake = np.where(m > 0, np.round(m * source + (1 - m) * crop), crop)
    return fake.astype(np.uint8), mask.astype(np.float32)
