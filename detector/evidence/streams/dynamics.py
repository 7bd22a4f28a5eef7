"""Clip dynamics: the statistics of ``detector.evidence.dynamics`` and a logistic regression on them."""

from __future__ import annotations

import numpy as np

from detector.evidence.dynamics import FEATURES, DynamicsFacts, window_features
from detector.evidence.streams.base import Stream, WindowContext, register

# How each statistic reads when it pushes towards fake (higher value) or real; {v} is its value.
WORDS = {
    "bg_vs_head_motion": ("the background barely changed for how much the head moved",
                          "the background changed with the head's motion, as a camera's does"),
    "bg_frozen_share": ("the background was frozen while the head moved", "the background was not frozen"),
    "bg_noise_corr": ("the background's fine grain repeated from frame to frame instead of being new",
                      "the background's sensor noise was new in every frame"),
    "face_noise_corr": ("the face's fine texture moved with it like a warped picture",
                        "the face's fine texture renewed between frames as a camera's does"),
    "face_vs_bg_noise_corr": ("the face's grain repeated more than the background's",
                              "face and background renewed their grain alike"),
    "face_vs_bg_noise": ("the face's noise level differs from the rest of the picture",
                         "face and background carry similar noise"),
    "face_vs_bg_sharpness": ("the face's sharpness differs from the background's",
                             "face and background are similarly sharp"),
    "mouth_vs_face_sharpness": ("the mouth's sharpness differs from the rest of the face",
                                "the mouth is as sharp as the rest of the face"),
    "mouth_vs_face_change": ("the mouth changed unlike the rest of the face (a repainted mouth?)",
                             "the mouth changed in step with the face"),
    "seam_contrast": ("an edge runs along the face outline (a pasted face?)",
                      "no edge along the face outline"),
    "face_colour_flicker": ("the face's colour flickered against its surroundings",
                            "the face's colour stayed steady against its surroundings"),
    "landmark_jitter": ("the face shape jittered between neighbouring frames",
                        "the face moved smoothly between neighbouring frames"),
    "mouth_motion": ("the mouth moved unlike speech", "the mouth moved as in speech"),
    "mouth_vs_head_motion": ("mouth and head motion were out of proportion",
                             "mouth and head moved in proportion"),
    "duplicate_share": ("some frames repeat the one before", "no repeated frames"),
    "interpolation": ("frames look blended from their neighbours", "frames are not blends of neighbours"),
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
            said += [self._push(f, c) for f, c in self._contributions(features)[:2]]
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

    def _contributions(self, features: dict[str, float]) -> list[tuple[str, float]]:
        m = self.model
        out = []
        for f, mu, sd, c in zip(m.features, m.mean, m.scale, m.coef):
            v = features.get(f, np.nan)
            if np.isfinite(v):
                out.append((f, c * (v - mu) / sd))
        return sorted(out, key=lambda t: -abs(t[1]))

    @staticmethod
    def _push(feature: str, contribution: float) -> str:
        fake, real = WORDS.get(feature, (feature, feature))
        toward = "towards fake" if contribution > 0 else "towards real"
        return f"{fake if contribution > 0 else real} ({toward})"
