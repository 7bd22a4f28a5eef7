"""Clip dynamics: the statistics of ``detector.evidence.dynamics`` and a logistic regression on them."""

from __future__ import annotations

import numpy as np

from detector.evidence.dynamics import FEATURES, DynamicsFacts, window_features
from detector.evidence.streams.base import Stream, WindowContext, register

# How each statistic reads when it is above / below its usual value (the fitted model's mean).
WORDS = {
    "bg_vs_head_motion": ("the background changed a lot for the head's motion",
                          "the background barely changed for how much the head moved"),
    "bg_frozen_share": ("the background was frozen while the head moved",
                        "the background kept changing while the head moved"),
    "bg_noise_corr": ("the background's fine grain repeated from frame to frame",
                      "the background's fine grain was new in every frame"),
    "face_noise_corr": ("the face's fine texture moved with it like a warped picture",
                        "the face's fine texture renewed between frames"),
    "face_vs_bg_noise_corr": ("the face's grain repeated more than the background's",
                              "the face's grain renewed more than the background's"),
    "face_vs_bg_noise": ("the face is noisier than the background",
                         "the face is smoother than the background"),
    "face_vs_bg_sharpness": ("the face is sharper than the background",
                             "the face is softer than the background"),
    "mouth_vs_face_sharpness": ("the mouth is sharper than the rest of the face",
                                "the mouth is softer than the rest of the face"),
    "mouth_vs_face_change": ("the mouth changed more than the rest of the face",
                             "the mouth changed less than the rest of the face"),
    "seam_contrast": ("an edge runs along the face outline", "no edge runs along the face outline"),
    "face_colour_flicker": ("the face's colour flickered against its surroundings",
                            "the face's colour stayed steady against its surroundings"),
    "landmark_jitter": ("the face shape jittered between neighbouring frames",
                        "the face moved smoothly between neighbouring frames"),
    "mouth_motion": ("the mouth moved a lot", "the mouth barely moved"),
    "mouth_vs_head_motion": ("the mouth moved much more than the head",
                             "the mouth moved little for how much the head moved"),
    "duplicate_share": ("some frames repeat the one before", "no frame repeats the one before"),
    "interpolation": ("frames are not blends of their neighbours",
                      "frames look like blends of their neighbours"),
}


@register
class ClipDynamics(Stream):
    """Relative clip statistics (background against head, face against background, mouth against face)."""

    name = "dynamics"
    needs = frozenset({"frames", "points"})
    feature_names = FEATURES

    def measure(self, ctx: WindowContext) -> tuple[dict[str, float], DynamicsFacts]:
        return window_features(ctx.window)

    def explain(self, features: dict[str, float], facts: DynamicsFacts, logit: float | None) -> str:
        if facts.pairs == 0:
            return "no neighbouring frames with the face in this window: no clip dynamics measured"
        said = [self._measured(facts)]
        if self.model is not None:
            said += [self._push(f, z, c) for f, z, c in self._contributions(features)[:2]]
        return "; ".join(s for s in said if s)

    @staticmethod
    def _measured(facts: DynamicsFacts) -> str:
        if not facts.background_visible:
            return (f"no background visible around the {facts.face_px:.0f} px face (tight crop): "
                    "background cues not measured")
        return (f"over {facts.pairs} pairs of neighbouring frames the head moved a median "
                f"{facts.head_motion_px:.1f} px a frame and the background changed by "
                f"{facts.background_change:.2f} grey levels; the background was frozen in "
                f"{facts.frozen_background_pairs} of the {facts.moving_head_pairs} pairs where the head "
                "moved")

    def _contributions(self, features: dict[str, float]) -> list[tuple[str, float, float]]:
        """(feature, z-score, contribution to the log-odds), largest contribution first."""
        m = self.model
        out = []
        for f, mu, sd, c in zip(m.features, m.mean, m.scale, m.coef):
            v = features.get(f, np.nan)
            if np.isfinite(v):
                out.append((f, (v - mu) / sd, c * (v - mu) / sd))
        return sorted(out, key=lambda t: -abs(t[2]))

    @staticmethod
    def _push(feature: str, z: float, contribution: float) -> str:
        high, low = WORDS.get(feature, (f"{feature} high", f"{feature} low"))
        toward = "towards fake" if contribution > 0 else "towards real"
        return f"{high if z > 0 else low} ({toward})"
