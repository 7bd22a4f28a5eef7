"""The realism score r as evidence: the generator's own discriminator scores each face crop with its
landmarks (eq. 3), r = V(x, y)^T w + b, either identity-agnostically (w = w_0) or with the identity
few-shot-estimated from the clip itself (w = w_0 + E(clip frames), sec. 3.3), and per-clip statistics.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from detector.data.samples import FaceSamples
from generator.errors import ConfigMismatchError
from generator.io.files import sha256_file

IDENTITY_MODES = ("agnostic", "clip")
STATS = ("mean", "std", "min", "p10", "median", "max")


class RealismScorer:
    """D (spectral norms baked) and E of a meta-trained checkpoint, for r on detector samples."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu", shots: int = 8):
        from generator.inference.person import realism_discriminator
        from generator.io.files import sha256_file
        from generator.model.talking_head import load_meta_model

        model, meta = load_meta_model(checkpoint, device)
        self.size = model.cfg.image_size
        self.E = model.E.eval()
        self.D = realism_discriminator(model)
        self.shots, self.device = shots, device
        self.info = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                     "preset": meta.get("preset"), "step": meta.get("step"), "image_size": self.size}

    @torch.inference_mode()
    def identity(self, samples: FaceSamples) -> torch.Tensor | None:
        """w' = w_0 + e_hat from up to ``shots`` of the clip's own face crops (None: no face)."""
        from generator.inference.person import frame_batch, landmark_batch

        ok = np.flatnonzero(samples.found)
        if not len(ok):
            return None
        pick = ok[np.linspace(0, len(ok) - 1, min(self.shots, len(ok))).round().astype(int)]
        x = frame_batch(samples.realism_crops[pick]).to(self.device)
        y = landmark_batch(samples.realism_points[pick], self.size).to(self.device)
        return self.D.w_0 + self.E(x[None], y[None])[0]

    def scores(self, samples: FaceSamples, identity: str = "agnostic") -> np.ndarray:
        """r per sampled frame (NaN where no face was found)."""
        from generator.inference.person import realism_score

        if samples.realism_crops is None or samples.realism_crops.shape[1] != self.size:
            raise ValueError(f"samples need realism crops at {self.size} px (sample_faces(realism_size=...))")
        if identity not in IDENTITY_MODES:
            raise ValueError(f"identity must be one of {IDENTITY_MODES}, got {identity!r}")
        r = np.full(len(samples), np.nan)
        ok = np.flatnonzero(samples.found)
        if len(ok):
            w = self.identity(samples) if identity == "clip" else None
            r[ok] = realism_score(self.D, samples.realism_crops[ok], samples.realism_points[ok], identity=w)
        return r


def clip_statistics(r: np.ndarray) -> dict[str, float]:
    """mean / std / min / 10th percentile / median / max of per-frame r, ignoring frames without a face
    (NaN when there is none)."""
    v = np.asarray(r, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {k: float("nan") for k in STATS}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p10": float(np.percentile(v, 10)), "median": float(np.median(v)), "max": float(v.max())}


def bundled_generator(sha256: str | None = None) -> Path:
    """The packaged generator checkpoint with this file hash (the default model when None or unknown).

    A detector's realism evidence is tied to the D it was fitted with, so a detector fitted with an
    older packaged generator finds that file by hash if it is still in weights/.
    """
    from generator.inference.generate import BUNDLED_MODEL

    if sha256:
        for f in sorted(BUNDLED_MODEL.parent.glob("*.safetensors")):
            if sha256_file(f) == sha256:
                return f
    return BUNDLED_MODEL


def load_realism(meta: dict, generator: str | os.PathLike | None) -> RealismScorer:
    """The realism scorer a detector was fused with (its generator checkpoint, checked by hash)."""
    want = (meta.get("realism") or {}).get("checkpoint_sha256")
    if generator is None:
        generator = bundled_generator(want)
    if want and sha256_file(generator) != want:
        raise ConfigMismatchError(f"this detector's realism evidence comes from the generator with sha256 "
                                  f"{want[:12]}..., not {generator}: pass that checkpoint with --generator")
    return RealismScorer(generator)
