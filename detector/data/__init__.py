"""What the detector reads: the clip metadata schema, face samples of a video, and training-time data
(face crops of a split, self-blended fakes, degradations applied to both classes alike)."""

from detector.data.degrade import DegradeConfig, apply_degradation, sample_degradation
from detector.data.frames import FrameSet, load_frames, training_sample
from detector.data.samples import FaceSamples, cached_faces, sample_faces
from detector.data.sbi import SBIConfig, self_blend
from detector.data.schema import COMPRESSIONS, LABELS, SPLITS, ClipRecord, read_metadata, write_metadata

__all__ = [
    "COMPRESSIONS", "LABELS", "SPLITS", "ClipRecord", "DegradeConfig", "FaceSamples", "FrameSet", "SBIConfig",
    "apply_degradation", "cached_faces", "load_frames", "read_metadata", "sample_degradation", "sample_faces",
    "self_blend", "training_sample", "write_metadata",
]
