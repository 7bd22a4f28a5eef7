"""Degradations drawn the same way for real and fake crops, so that size and compression are no cue.

A detector trained on soft, small, compressed fakes beside sharp real frames learns "soft face =
fake" and then calls real interview clips fake (detection.md). Every training crop, whatever its
label, goes through one draw of the same distribution: the face shrunk to 96-256 px and back, then
JPEG (quality 30-95) or H.264 (CRF 18-40, through libx264 as the project's encoder uses it), blur,
noise. ``sample_degradation`` never sees the label.
"""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np

from generator.errors import BadInputError


@dataclasses.dataclass(frozen=True)
class DegradeConfig:
    """Probabilities and ranges of each degradation (applied in this order)."""

    resize: float = 0.5  # probability of shrinking the face to face_px and back
    face_px: tuple[int, int] = (96, 256)
    compress: float = 0.7  # probability of a compression; then H.264 with probability h264
    h264: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    crf: tuple[int, int] = (18, 40)
    blur: float = 0.2  # Gaussian blur, sigma in blur_sigma
    blur_sigma: tuple[float, float] = (0.4, 1.5)
    noise: float = 0.2  # Gaussian noise, std in noise_std grey levels
    noise_std: tuple[float, float] = (1.0, 6.0)

    def __post_init__(self):
        probs = (self.resize, self.compress, self.h264, self.blur, self.noise)
        if any(not 0 <= p <= 1 for p in probs):
            raise BadInputError("degradation probabilities must lie in [0, 1]")
        if not (16 <= self.face_px[0] <= self.face_px[1]) or not (1 <= self.jpeg_quality[0]
                                                                  <= self.jpeg_quality[1] <= 100):
            raise BadInputError("face_px must be >= 16 and jpeg_quality within 1-100, each increasing")
        if not 0 <= self.crf[0] <= self.crf[1] <= 51:
            raise BadInputError("crf must lie within 0-51, increasing")


def sample_degradation(rng: np.random.Generator, cfg: DegradeConfig = DegradeConfig()) -> dict:
    """One draw of degradation parameters (JSON-ready; None = that step is skipped)."""
    face = int(rng.integers(cfg.face_px[0], cfg.face_px[1] + 1)) if rng.random() < cfg.resize else None
    jpeg = crf = None
    if rng.random() < cfg.compress:
        if rng.random() < cfg.h264:
            crf = int(rng.integers(cfg.crf[0], cfg.crf[1] + 1))
        else:
            jpeg = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    blur = float(rng.uniform(*cfg.blur_sigma)) if rng.random() < cfg.blur else None
    noise = float(rng.uniform(*cfg.noise_std)) if rng.random() < cfg.noise else None
    return {"face_px": face, "jpeg": jpeg, "crf": crf, "blur": blur, "noise": noise,
            "noise_seed": int(rng.integers(2**31))}


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` (RGB uint8) encoded as JPEG at ``quality`` and decoded."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY,
                                                                          int(quality)])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise BadInputError(f"cannot JPEG-encode a {img.shape} frame at quality {quality}")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def h264_roundtrip(img: np.ndarray, crf: int) -> np.ndarray:
    """``img`` (RGB uint8) as one H.264 frame (libx264, yuv420p, CRF ``crf``) and decoded back."""
    import av

    h, w = img.shape[:2]
    pad = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # 4:2:0 needs even sides
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height = pad.shape[1], pad.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "stillimage"}
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pad), "rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, "r") as inp:
        frame = next(inp.decode(video=0)).to_ndarray(format="rgb24")
    return frame[:h, :w]


def apply_degradation(crop: np.ndarray, params: dict) -> np.ndarray:
    """``crop`` (S, S, 3) uint8 through the degradations ``params`` names, back at its own size."""
    s = crop.shape[0]
    out = crop
    if params.get("face_px") and params["face_px"] < s:
        small = params["face_px"]
        out = cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA)
    if params.get("jpeg"):
        out = jpeg_roundtrip(out, params["jpeg"])
    elif params.get("crf") is not None:
        out = h264_roundtrip(out, params["crf"])
    if out.shape[0] != s:
        out = cv2.resize(out, (s, s), interpolation=cv2.INTER_LINEAR)
    if params.get("blur"):
        out = cv2.GaussianBlur(out, (0, 0), params["blur"])
    if params.get("noise"):
        noise = np.random.default_rng(params["noise_seed"]).normal(0, params["noise"], out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)
