"""68-point landmarks rasterised into the paper's landmark image y_i(t), plus previews for people.

The landmark image is the generator's and discriminator's conditioning input (paper sec. 3.1): the
iBUG/300-W 68 points drawn as coloured polylines on black, the same size as the frame.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

N_LANDMARKS = 68


@dataclasses.dataclass(frozen=True)
class Part:
    """One polyline of the face: point indices, RGB colour, closed or open."""

    name: str
    indices: tuple[int, ...]
    color: tuple[int, int, int]
    closed: bool = False


def _r(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


WHITE, RED, GREEN, BLUE = (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)
MAGENTA, CYAN, YELLOW = (255, 0, 255), (0, 255, 255), (255, 255, 0)

# The palette of the authors' code (paper.md): jaw white; brows red/green; nose blue; eyes
# magenta/cyan (closed); lips yellow (outer and inner, closed).
PARTS: tuple[Part, ...] = (
    Part("jaw", _r(0, 16), WHITE),
    Part("right_brow", _r(17, 21), RED),
    Part("left_brow", _r(22, 26), GREEN),
    Part("nose_bridge", _r(27, 30), BLUE),
    Part("nose_tip", (30, 33), BLUE),
    Part("nostrils", _r(31, 35), BLUE),
    Part("right_eye", _r(36, 41), MAGENTA, closed=True),
    Part("left_eye", _r(42, 47), CYAN, closed=True),
    Part("outer_lips", _r(48, 59), YELLOW, closed=True),
    Part("inner_lips", _r(60, 67), YELLOW, closed=True),
)
PALETTE = frozenset(p.color for p in PARTS)


def line_width(size: int) -> int:
    """Line thickness for a landmark image of side ``size``: 2 px at 256, scaled, at least 1."""
    return max(1, int(round(2 * size / 256)))


def check_landmarks(points: np.ndarray) -> np.ndarray:
    """Return ``points`` as float32 (68, 2), or raise ValueError on a wrong shape or non-finite values."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.shape != (N_LANDMARKS, 2):
        raise ValueError(f"expected landmarks of shape (68, 2), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return pts


def draw_landmarks(canvas: np.ndarray, points: np.ndarray, thickness: int | None = None,
                   antialias: bool = False) -> np.ndarray:
    """Draw the 68-point polylines onto an RGB uint8 ``canvas`` in place and return it."""
    pts = check_landmarks(points)
    t = thickness or line_width(max(canvas.shape[:2]))
    # Sub-pixel precision: cv2 takes fixed-point coordinates with `shift` fractional bits.
    shift = 4
    fixed = np.round(pts * (1 << shift)).astype(np.int32)
    line_type = cv2.LINE_AA if antialias else cv2.LINE_8
    for part in PARTS:
        poly = fixed[list(part.indices)].reshape(-1, 1, 2)
        cv2.polylines(canvas, [poly], part.closed, part.color, t, line_type, shift)
    return canvas


def landmark_image(points: np.ndarray, size: int | tuple[int, int] = 256,
                   thickness: int | None = None, antialias: bool = False) -> np.ndarray:
    """Rasterise landmarks (in pixel coordinates of the target image) to an RGB uint8 image y."""
    h, w = (size, size) if isinstance(size, int) else size
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    return draw_landmarks(canvas, points, thickness or line_width(max(h, w)), antialias)


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """Map an RGB uint8 (H, W, 3) image to float32 (3, H, W) in [-1, 1], the networks' input range."""
    return (np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5) - 1.0


def landmark_tensor(points: np.ndarray, size: int = 256):
    """The landmark image as a torch float tensor (3, size, size) in [-1, 1]."""
    import torch  # the face pipeline itself does not need torch

    return torch.from_numpy(to_unit_range(landmark_image(points, size)))


def overlay(frame: np.ndarray, points: np.ndarray | None, box: np.ndarray | None = None,
            label: str | None = None) -> np.ndarray:
    """A preview for people: the frame with landmarks, the face box and a status label drawn on it."""
    out = np.ascontiguousarray(frame).copy()
    size = max(out.shape[:2])
    if box is not None:
        x0, y0, x1, y1 = np.round(np.asarray(box)).astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 200, 0), max(1, size // 400), cv2.LINE_AA)
    if points is not None:
        draw_landmarks(out, points, max(1, size // 300), antialias=True)
        r = max(1, size // 250)
        for x, y in np.round(points).astype(int):
            cv2.circle(out, (int(x), int(y)), r, (255, 255, 255), -1, cv2.LINE_AA)
    if label:
        scale = max(0.4, size / 900)
        org = (max(4, size // 100), max(14, int(22 * scale)))
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    max(2, int(3 * scale)), cv2.LINE_AA)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0),
                    max(1, int(scale)), cv2.LINE_AA)
    return out
