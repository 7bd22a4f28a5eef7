"""The face pipeline: detection and 68 landmarks, tracking, crops, the landmark image y, warps and motion."""

from generator.faces.backends import Detection, FaceBackend, create_backend
from generator.faces.crop import (
    DETECTOR_CROP,
    TRAINING_CROP,
    CropParams,
    CropTransform,
    crop_face,
    crop_transform,
)
from generator.faces.extract import LandmarkTrack, extract_landmarks, load_landmarks_npz
from generator.faces.landmarks import landmark_image
from generator.faces.motion import builtin_track, mean_face, smooth_track, transfer_motion
from generator.faces.shots import Shots, load_shots
from generator.faces.tracking import FaceTracker, TrackerConfig
from generator.faces.warp import warp_face

__all__ = [
    "DETECTOR_CROP", "TRAINING_CROP", "CropParams", "CropTransform", "Detection", "FaceBackend",
    "FaceTracker", "LandmarkTrack", "Shots", "TrackerConfig", "builtin_track", "create_backend", "crop_face",
    "crop_transform", "extract_landmarks", "landmark_image", "load_landmarks_npz", "load_shots", "mean_face",
    "smooth_track", "transfer_motion", "warp_face",
]
