"""Face detection and 68-point landmarks behind one small interface, with two backends.

``dlib`` (default): dlib's HOG detector (or its CNN detector) and 68-point shape predictor, from the
model files that the ``face-recognition-models`` package ships, so it runs offline.
``fan``: the Face Alignment Network of the ``face-alignment`` package, the landmark network the paper
used, on boxes from the same dlib detector. Its weights come from a local file (``--fan-weights`` or
``SFUMATO_FAN_WEIGHTS``) because the package would otherwise download them at run time.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from generator.errors import MissingWeightsError, SfumatoError
from generator.io.files import local_weights

FALLBACK_MAX_SIDE = 1280  # long side of the second, slower detection pass
FAN_WEIGHTS_ENV = "SFUMATO_FAN_WEIGHTS"
FAN_WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/" + FAN_WEIGHTS_FILE
DLIB_MODELS = {
    "shape_68": "shape_predictor_68_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
}


@dataclasses.dataclass(frozen=True)
class Detection:
    """A face box (x0, y0, x1, y1) in frame pixels with the detector's confidence."""

    box: np.ndarray
    score: float

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def dlib_model_path(name: str) -> Path:
    """Path of one of dlib's model files shipped by face-recognition-models (``DLIB_MODELS`` key)."""
    if name not in DLIB_MODELS:
        raise ValueError(f"unknown dlib model {name!r}; choose from {sorted(DLIB_MODELS)}")
    # Importing face_recognition_models fails on current setuptools (it imports pkg_resources),
    # so locate its data folder from the import system without executing it.
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "models" / DLIB_MODELS[name]
        if path.is_file():
            return path
    raise MissingWeightsError(
        f"dlib model file {DLIB_MODELS[name]} not found: install it with "
        "'pip install face-recognition-models'")


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 to grayscale uint8 (what dlib's HOG and shape predictor look at)."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class DlibDetector:
    """dlib face detection (HOG, or the CNN 'mmod' detector) on a downscaled copy of the frame.

    Detection runs with the frame's long side at most ``max_side`` pixels, for speed; when that
    finds nothing in a frame that was shrunk, it retries at full size with one upsampling, so small
    faces are still found.
    """

    def __init__(self, kind: str = "hog", max_side: int = 480):
        import dlib

        if kind not in ("hog", "cnn"):
            raise ValueError(f"unknown dlib detector {kind!r}; use hog or cnn")
        self.kind, self.max_side = kind, max_side
        if kind == "hog":
            self._hog = dlib.get_frontal_face_detector()
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(str(dlib_model_path("cnn")))

    def _run(self, image: np.ndarray, upsample: int) -> list[Detection]:
        if self.kind == "hog":
            rects, scores, _ = self._hog.run(to_gray(image), upsample, 0.0)
            pairs = zip(rects, scores)
        else:
            pairs = ((d.rect, d.confidence) for d in self._cnn(image, upsample))
        return [Detection(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), float(s))
                for r, s in pairs]

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an RGB uint8 frame; boxes in the frame's pixels, largest first."""
        h, w = image.shape[:2]
        if min(h, w) < 16:
            return []
        found = self._at_scale(image, min(1.0, self.max_side / max(h, w)), 0)
        if not found:
            # Second chance for small faces (HOG needs ~80 px): a larger copy (capped, so an
            # 8000 px photo stays tractable) with one upsampling pass.
            found = self._at_scale(image, min(1.0, FALLBACK_MAX_SIDE / max(h, w)), 1)
        return sorted(found, key=lambda d: -d.area)

    def _at_scale(self, image: np.ndarray, k: float, upsample: int) -> list[Detection]:
        h, w = image.shape[:2]
        small = image if k == 1.0 else cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))),
                                                  interpolation=cv2.INTER_AREA)
        return [Detection(d.box / k, d.score) for d in self._run(small, upsample)]


class FaceBackend:
    """The interface: ``detect(image)`` boxes, ``landmarks(image, box)`` 68 points, both in pixels."""

    name = "base"

    def __init__(self, detector: str = "hog", detect_max_side: int = 480):
        self.detector = DlibDetector(detector, detect_max_side)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Face boxes in an RGB uint8 frame, largest first."""
        return self.detector(image)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 (x, y) points (float32, frame pixels) for the face in ``box``."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What produced the landmarks, for metadata."""
        return {"backend": self.name, "detector": self.detector.kind,
                "detect_max_side": self.detector.max_side}


class DlibBackend(FaceBackend):
    """dlib's 68-point shape predictor (an ensemble of regression trees, ~2 ms a face)."""

    name = "dlib"

    def __init__(self, detector: str = "hog", detect_max_side: int = 480):
        import dlib

        super().__init__(detector, detect_max_side)
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_68")))

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 points from the shape predictor, started from ``box``."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor(to_gray(image), self._dlib.rectangle(x0, y0, x1, y1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def fan_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """Locate the FAN weight file from an argument or ``SFUMATO_FAN_WEIGHTS`` (a file or a folder)."""
    return local_weights(
        weights, FAN_WEIGHTS_ENV,
        missing=(f"the fan backend needs its weight file {FAN_WEIGHTS_FILE}: download it from "
                 f"{FAN_WEIGHTS_URL} and pass --fan-weights PATH or set {FAN_WEIGHTS_ENV} "
                 "(sfumato never downloads weights at run time)"),
        expected=f"{FAN_WEIGHTS_FILE} (from {FAN_WEIGHTS_URL})", file_name=FAN_WEIGHTS_FILE)


class FanBackend(FaceBackend):
    """The face-alignment package's 2D FAN (4 hourglasses), loaded from a local weight file."""

    name = "fan"

    def __init__(self, weights: str | os.PathLike | None = None, detector: str = "hog",
                 detect_max_side: int = 480, device: str = "cpu", flip_input: bool = False):
        self.weights = fan_weights_path(weights)
        super().__init__(detector, detect_max_side)
        self._fa = _load_fan(self.weights, device, flip_input)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 points from FAN's heatmaps for the face in ``box``."""
        # Boxes go in as face-alignment's own dlib detector passes them: plain floats, as is.
        out = self._fa.get_landmarks_from_image(image, detected_faces=[[float(v) for v in box]])
        if not out:
            raise SfumatoError("FAN returned no landmarks for a detected face")
        return np.asarray(out[0][:, :2], dtype=np.float32)

    def describe(self) -> dict:
        """What produced the landmarks, for metadata."""
        return {**super().describe(), "weights": self.weights.name}


def _load_fan(weights: Path, device: str, flip_input: bool):
    """Build face_alignment.FaceAlignment with its FAN read from ``weights`` instead of a URL."""
    import face_alignment
    import torch
    from face_alignment.models import FAN

    class _LocalFaceAlignment(face_alignment.FaceAlignment):
        def _load_native(self, network_name, network_size, device, dtype):
            net = FAN(network_size)
            try:
                state = torch.load(weights, map_location=device, weights_only=True)
                net.load_state_dict(state)
            except Exception as exc:  # a damaged or foreign file: say which, not a torch dump
                raise SfumatoError(f"{weights}: not a usable 2D-FAN weight file ({exc})") from exc
            return net.to(device, dtype=dtype).eval()

    # 'folder' is face-alignment's no-op detector: boxes come from our dlib detector, so the
    # package never fetches its own detector weights.
    return _LocalFaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                               flip_input=flip_input, face_detector="folder", compile=False)


BACKENDS: dict[str, Callable[..., FaceBackend]] = {"dlib": DlibBackend, "fan": FanBackend}


def create_backend(name: str = "dlib", **kwargs) -> FaceBackend:
    """Build a landmark backend by name (``dlib`` or ``fan``)."""
    if name not in BACKENDS:
        raise SfumatoError(f"unknown landmark backend {name!r}; choose from {sorted(BACKENDS)}")
    return BACKENDS[name](**kwargs)
