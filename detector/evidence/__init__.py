"""From face crops to a verdict: per-video backbone and realism features, their fusion, the calibrated
threshold, and Grad-CAM heatmaps of where the detector looks."""

from detector.evidence.calibration import Calibration, calibrate, calibration_from
from detector.evidence.features import Evidence, evidence
from detector.evidence.fusion import FusionModel, fit_fusion
from detector.evidence.heatmap import gradcam
from detector.evidence.realism import RealismScorer

__all__ = [
    "Calibration", "Evidence", "FusionModel", "RealismScorer", "calibrate", "calibration_from", "evidence",
    "fit_fusion", "gradcam",
]
