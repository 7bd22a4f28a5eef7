"""Frame artefacts: the face-crop classifier (``detector.model``) on the first frame of every burst."""

from __future__ import annotations

import dataclasses

import numpy as np

from detector.evidence.streams.base import Stream, WindowContext, register


@register
class FrameArtefacts(Stream):
    """The classifier's mean probability of fake over the window's face crops, as log-odds."""

    name = "frames"
    needs = frozenset({"frames", "points", "detector"})
    feature_names = ("frame_prob_mean", "frame_prob_max")
    learned = False  # the classifier is trained on its own (``sfumato detect train``)

    def measure(self, ctx: WindowContext) -> tuple[dict[str, float], object]:
        from detector.evidence.features import resize_crops
        from detector.model import predict
        from generator.faces.crop import DETECTOR_CROP, crop_face

        w, model = ctx.window, ctx.detector
        firsts = [j for j in range(len(w.burst)) if (j == 0 or w.burst[j] != w.burst[j - 1]) and w.found[j]]
        if model is None or not firsts:
            return {k: float("nan") for k in self.feature_names}, np.zeros(0)
        crop = dataclasses.replace(DETECTOR_CROP, size=int(model.input_size))
        crops = np.stack([crop_face(w.frames[j], w.points[j], crop)[0] for j in firsts])
        probs = predict(model, resize_crops(crops, model.input_size))
        return {"frame_prob_mean": float(probs.mean()), "frame_prob_max": float(probs.max())}, probs

    def score(self, features: dict[str, float]) -> float | None:
        p = features.get("frame_prob_mean", float("nan"))
        if not np.isfinite(p):
            return None
        p = float(np.clip(p, 1e-4, 1 - 1e-4))
        return float(np.log(p / (1 - p)))

    def explain(self, features: dict[str, float], facts: object, logit: float | None) -> str:
        probs = np.asarray(facts)
        if not len(probs):
            return "no face crop to classify in this window"
        return (f"the face-crop classifier scored {len(probs)} face crop{'s' if len(probs) > 1 else ''} "
                f"at p(fake) {probs.min():.2f}-{probs.max():.2f} (mean {probs.mean():.2f})")
