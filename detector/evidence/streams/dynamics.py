"""Clip dynamics: the statistics of ``detector.evidence.dynamics`` and a logistic regression on them."""

from __future__ import annotations

import numpy as np

from detector.evidence.dynamics import FEATURES, DynamicsFacts, window_features
from detector.evidence.streams.base import Stream, WindowContext, register

# How each statistic reads when it is above / below its usual value (the fitted model's mean over
# the clips it was fitted on): comparisons with typical clips, not absolute claims.
WORDS = {
    "bg_vs_head_motion": ("the background changed more for the head's motion than usual",
                          "the background changed less for the head's motion than usual"),
    "bg_frozen_share": ("the background stayed frozen while the head moved more often than usual",
                        "the background stayed frozen while the head moved less often than usual"),
    "bg_noise_corr": ("the background's fine grain repeated between frames more than usual",
                      "the background's fine grain was renewed between frames more than usual"),
    "face_noise_corr": ("the face's fine texture moved with it like a warped picture, more than usual",
                        "the face's fine texture renewed between frames more than usual"),
    "face_vs_bg_noise_corr": ("the face's grain repeated more than the background's, more than usual",
                              "the face's grain renewed more than the background's, more than usual"),
    "face_vs_bg_noise": ("the face is noisier against the background than usual",
                         "the face is smoother against the background than usual"),
    "face_vs_bg_sharpness": ("the face is sharper against the background than usual",
                             "the face is softer against the background than usual"),
    "mouth_vs_face_sharpness": ("the mouth is sharper against the rest of the face than usual",
                                "the mouth is softer against the rest of the face than usual"),
    "mouth_vs_face_change": ("the mouth changed more against the rest of the face than usual",
                             "the mouth changed less against the rest of the face than usual"),
    "seam_contrast": ("the face outline carries a stronger edge than usual",
                      "the face outline carries a weaker edge than usual"),
    "face_colour_flicker": ("the face's colour flickered against its surroundings more than usual",
                            "the face's colour held steadier against its surroundings than usual"),
    "landmark_jitter": ("the face shape jittered between neighbouring frames more than usual",
                        "the face moved more smoothly between neighbouring frames than usual"),
    "mouth_motion": ("the mouth moved more than usual", "the mouth moved less than usual"),
    "mouth_vs_head_motion": ("the mouth moved more for the head's motion than usual",
                             "the mouth moved less for the head's motion than usual"),
    "duplicate_share": ("more frames repeat the one before than usual",
                        "fewer frames repeat the one before than usual"),
    "interpolation": ("frames look less like blends of their neighbours than usual",
                      "frames look more like blends of their neighbours than usual"),
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
