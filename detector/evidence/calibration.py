"""The verdict threshold, set on real validation clips for a stated false-positive rate.

A detector's 0.5 means nothing by itself: what an analyst needs to know is how often the verdict
"fake" falls on real footage like theirs. ``calibrate`` takes the (fused) probabilities of the real
videos of a validation split and places the threshold so that at most ``fpr`` of them score "fake";
the unsure band lies just below it, so the stated rate holds for the verdict "fake" itself. The
result is stored in the detector file (``meta["calibration"]``) and shown by ``scan``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from generator.errors import BadInputError

DEFAULT_FPR = 0.05
DEFAULT_BAND = 0.05


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Where the verdicts start, and on what they were set."""

    fpr: float  # the target rate of "fake" verdicts on real videos
    threshold: float  # scan's threshold: "fake" from threshold + unsure_band up
    unsure_band: float
    fake_from: float  # = threshold + unsure_band, the lowest probability called fake
    measured_fpr: float  # on the videos it was set on
    real_videos: int
    set_on: str = ""  # which data (dataset, split)

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


def calibrate(real_scores, fpr: float = DEFAULT_FPR, unsure_band: float = DEFAULT_BAND,
              set_on: str = "") -> Calibration:
    """The threshold at which at most ``fpr`` of ``real_scores`` (probabilities, one per real
    video) are called fake, with the unsure band below it."""
    scores = np.sort(np.asarray(real_scores, float))
    if not 0 < fpr < 1 or not 0 <= unsure_band < 0.5:
        raise BadInputError("the false-positive rate must lie in (0, 1) and the unsure band in [0, 0.5)")
    if len(scores) == 0 or not np.isfinite(scores).all():
        raise BadInputError("calibration needs the scores of at least one real video (finite)")
    allowed = int(np.floor(fpr * len(scores)))  # real videos that may score fake
    # the lowest probability above all but ``allowed`` real scores
    edge = scores[len(scores) - allowed - 1]
    fake_from = float(min(np.nextafter(edge, np.inf), 1.0))
    threshold = fake_from - min(unsure_band, fake_from)  # the band cannot reach below 0
    band = fake_from - threshold  # exactly what separates them in floating point
    measured = float(np.mean(scores >= fake_from))
    return Calibration(fpr, threshold, band, fake_from, measured, int(len(scores)), set_on)


def calibration_from(meta: dict) -> Calibration | None:
    """The calibration a detector file records, if any."""
    c = meta.get("calibration")
    return Calibration(**c) if c else None
