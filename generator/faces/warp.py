"""The piecewise-affine face warp: a source crop moved from its landmarks y(s) to driving ones y(t).

Control points are the 68 landmarks plus fixed anchors on the crop border (they map to themselves,
so the whole crop moves, the interior deforms and the border stays). One triangulation, a Delaunay
mesh of the mean face plus the anchors, is computed once per size and used for every pair, so
triangles correspond (the inner lips are mesh vertices: an opening mouth is filled with stretched
lip texture, never a hole). A warp rasterises the destination triangles into a triangle-id map,
maps every pixel through its triangle's affine dst -> src in one vectorised step and samples the
source once with ``cv2.remap``: about 1 ms per 256 px crop on one core.

Folded triangles (orientation flipped against the reference mesh in the source or the target, or
degenerate) still get colour from their own affine, so the image has no holes, but the validity mask
is 0 there, and 0 wherever no triangle lands. G (texture presets), the dataset builder and the quality
benchmark's warp baseline all call ``warp_face`` / ``warp_shots``.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import cv2
import numpy as np

from generator.errors import BadInputError

ANCHORS_PER_EDGE = 5  # corners included: 16 border anchors in all
SHIFT = 4  # sub-pixel bits for cv2.fillConvexPoly (1/16 px vertex precision)
MIN_AREA = 1e-3  # px^2: a destination triangle smaller than this is degenerate


# Per-point weights of the pose distance (sum 1): the outline and nose say where the head points, the
# mouth mostly what it says, which the warp follows anyway.
POSE_WEIGHTS = np.concatenate([np.full(17, 1.0), np.full(10, 0.5), np.full(9, 1.0), np.full(12, 0.5),
                               np.full(20, 0.25)])
POSE_WEIGHTS = POSE_WEIGHTS / POSE_WEIGHTS.sum()


@dataclasses.dataclass(frozen=True)
class Warped:
    """A warped crop (same shape and dtype as the source) and its validity mask (S, S) in [0, 1]."""

    image: np.ndarray
    mask: np.ndarray


@lru_cache(maxsize=8)
def border_anchors(size: int) -> np.ndarray:
    """Fixed control points on the crop border (pixel centres 0 ... size - 1), (16, 2), read-only."""
    t = np.linspace(0, size - 1, ANCHORS_PER_EDGE, dtype=np.float32)
    lo, hi = np.zeros_like(t), np.full_like(t, size - 1)
    pts = np.concatenate([np.stack([t, lo], 1), np.stack([t, hi], 1), np.stack([lo, t], 1),
                          np.stack([hi, t], 1)])
    pts = np.unique(pts, axis=0)
    pts.setflags(write=False)  # cached: shared by every call
    return pts


@lru_cache(maxsize=8)
def triangulation(size: int) -> np.ndarray:
    """The fixed mesh (M, 3) over 68 landmarks + border anchors, from the mean face at ``size``."""
    from scipy.spatial import Delaunay

    from generator.faces.motion import mean_face

    ref = np.concatenate([mean_face(size), border_anchors(size)])
    tri = Delaunay(ref).simplices.astype(np.int32)
    tri.setflags(write=False)
    return tri


@lru_cache(maxsize=8)
def _reference_sign(size: int) -> np.ndarray:
    from generator.faces.motion import mean_face

    ref = np.concatenate([mean_face(size), border_anchors(size)])
    return np.sign(_signed_areas(ref, triangulation(size)))


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def _signed_areas(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Signed area of every triangle (M,) for points (P, 2), or (N, M) for a batch (N, P, 2)."""
    a, b, c = points[..., tri[:, 0], :], points[..., tri[:, 1], :], points[..., tri[:, 2], :]
    return 0.5 * ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
                  - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))


def _gather(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """table[ids] as float32; cv2.LUT for uint8 ids is several times faster than numpy's gather."""
    if ids.dtype == np.uint8:
        lut = np.zeros(256, np.float32)
        lut[:len(table)] = table
        return cv2.LUT(ids, lut)
    return np.take(np.ascontiguousarray(table, np.float32), ids)


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise BadInputError(f"{name}: expected 68 landmarks (68, 2), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise BadInputError(f"{name}: landmarks hold NaN or infinite values")
    return p


def _check_image(image: np.ndarray) -> int:
    if image.ndim != 3 or image.shape[0] != image.shape[1]:
        raise BadInputError(f"expected a square (S, S, C) crop, got shape {image.shape}")
    return image.shape[0]


def warp_face(image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray) -> Warped:
    """Move ``image`` (S, S, C) from its landmarks ``src_points`` to ``dst_points`` (crop pixels)."""
    size = _check_image(image)
    anchors = border_anchors(size).astype(np.float64)
    src = np.concatenate([_check_points(src_points, "source landmarks"), anchors])
    dst = np.concatenate([_check_points(dst_points, "driving landmarks"), anchors])
    tri = triangulation(size)
    ref_sign = _reference_sign(size)
    area_dst, area_src = _signed_areas(dst, tri), _signed_areas(src, tri)
    # A closed mouth makes inner-lip triangles flat in the target: they cover no pixel, so they are
    # neither drawn nor allowed to mask the lip line they collapse onto.
    flat = np.abs(area_dst) <= MIN_AREA
    valid = (np.sign(area_dst) == ref_sign) & (np.sign(area_src) == ref_sign) & ~flat
    # Affine dst -> src per triangle: [x y 1] @ M = [x' y'] at its three corners. Row M (one past
    # the last triangle) is the identity, for pixels no triangle covers.
    n = len(tri)
    dst_h = np.concatenate([dst[tri], np.ones((n, 3, 1))], axis=2)  # (M, 3, 3)
    solvable = np.abs(np.linalg.det(dst_h)) > 1e-9
    mats = np.zeros((n + 1, 3, 2))
    mats[:, :2] = np.eye(2)  # degenerate triangles sample where they are (identity)
    mats[:n][solvable] = np.linalg.solve(dst_h[solvable], src[tri][solvable])
    coeffs = mats.reshape(n + 1, 6).astype(np.float32)  # a_x, a_y, b_x, b_y, c_x, c_y
    # Rasterise: folded triangles first, so valid ones drawn over them give the colour where both
    # land; but a fold means the mesh overlaps itself there (texture shown twice), so every pixel a
    # folded triangle touches is masked.
    # 84 control points give at most 163 triangles: ids fit uint8, so cv2.LUT can do the gathers.
    ids = np.full((size, size), n, np.uint8 if n < 255 else np.int32)
    corners = np.round(dst[tri] * (1 << SHIFT)).astype(np.int32)
    bad = np.flatnonzero(~valid & ~flat)
    for j in bad:
        cv2.fillConvexPoly(ids, corners[j], int(j), lineType=cv2.LINE_8, shift=SHIFT)
    for j in np.flatnonzero(valid):
        cv2.fillConvexPoly(ids, corners[j], int(j), lineType=cv2.LINE_8, shift=SHIFT)
    xs, ys = _pixel_grid(size)
    a_x, a_y, b_x, b_y, c_x, c_y = (_gather(coeffs[:, k], ids) for k in range(6))
    map_x = xs * a_x
    map_x += ys * b_x
    map_x += c_x
    map_y = xs * a_y
    map_y += ys * b_y
    map_y += c_y
    out = cv2.remap(np.ascontiguousarray(image), map_x, map_y, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2:  # cv2 drops a single channel
        out = out[..., None]
    mask = _gather(np.append(valid, False).astype(np.float32), ids)
    if len(bad):
        folded = np.zeros((size, size), np.uint8)
        for j in bad:
            cv2.fillConvexPoly(folded, corners[j], 1, lineType=cv2.LINE_8, shift=SHIFT)
        mask[folded > 0] = 0.0
    return Warped(out.astype(image.dtype, copy=False), mask)


def folded_area(points: np.ndarray, size: int) -> np.ndarray:
    """Share of the crop (N,) that folded mesh triangles cover, for landmarks (N, 68, 2) in crop pixels.

    A triangle is folded when its orientation is flipped against the reference mesh (points that
    crossed over: an extreme turn, a bad landmark fit, a synthetic track). ``warp_face`` masks what
    such triangles cover, so a texture G paints those pixels alone.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise BadInputError(f"expected landmarks (N, 68, 2), got shape {pts.shape}")
    tri, ref_sign = triangulation(size), _reference_sign(size)
    anchors = border_anchors(size).astype(np.float64)
    full = np.concatenate([pts, np.broadcast_to(anchors, (len(pts), *anchors.shape))], axis=1)
    area = _signed_areas(full, tri)  # (N, M)
    folded = (np.sign(area) != ref_sign) & (np.abs(area) > MIN_AREA)
    return np.minimum((np.abs(area) * folded).sum(1) / float(size * size), 1.0)


def pose_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far two landmark sets are in pose and expression, with position, scale and roll removed."""
    from generator.faces.motion import normalise

    return float(np.linalg.norm(normalise(a) - normalise(b), axis=1) @ POSE_WEIGHTS)


def closest_shot(src_points: np.ndarray, dst_points: np.ndarray) -> int:
    """Index of the shot (T, 68, 2) whose landmarks are closest in pose to ``dst_points``."""
    return int(np.argmin([pose_distance(p, dst_points) for p in src_points]))


def warp_shots(images: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray,
               combine: str = "closest", temperature: float = 0.02) -> Warped:
    """Warp T shots (T, S, S, C) to ``dst_points`` and combine them into one texture.

    ``closest``: only the shot closest in pose (``closest_shot``). ``weighted``: every shot, blended
    per pixel by softmax(-pose distance / temperature) times its validity.
    """
    images, src_points = np.asarray(images), np.asarray(src_points)
    if images.ndim != 4 or len(images) != len(src_points) or not len(images):
        raise BadInputError(f"expected T shots (T, S, S, C) with T landmark sets, got {images.shape} "
                            f"and {src_points.shape}")
    if combine == "closest":
        k = closest_shot(src_points, dst_points)
        return warp_face(images[k], src_points[k], dst_points)
    if combine != "weighted":
        raise BadInputError(f"combine must be closest or weighted, not {combine!r}")
    d = np.array([pose_distance(p, dst_points) for p in src_points])
    w = np.exp(-(d - d.min()) / temperature)
    warps = [warp_face(im, p, dst_points) for im, p in zip(images, src_points)]
    weights = np.stack([wk * wp.mask for wk, wp in zip(w, warps)])  # (T, S, S)
    total = weights.sum(0)
    safe = np.where(total > 0, total, 1.0)
    blend = sum(wt[..., None] * wp.image.astype(np.float32) for wt, wp in zip(weights, warps))
    blend = blend / safe[..., None]
    fallback = warps[int(np.argmin(d))].image.astype(np.float32)  # where no shot is valid
    image = np.where(total[..., None] > 0, blend, fallback)
    mask = np.max(np.stack([wp.mask for wp in warps]), axis=0)
    if np.issubdtype(images.dtype, np.integer):  # round, not truncate: no half-level darkening
        info = np.iinfo(images.dtype)
        image = np.clip(np.rint(image), info.min, info.max)
    return Warped(image.astype(images.dtype), mask)


def texture_array(images: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """G's texture input (4, S, S) float32 from shots (T, S, S, 3) in [-1, 1]: the closest shot
    warped to ``dst_points``, and its validity."""
    w = warp_shots(images, src_points, dst_points)
    return np.concatenate([w.image.transpose(2, 0, 1), w.mask[None]]).astype(np.float32)


def texture_tensor(images: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray):
    """``texture_array`` as a torch tensor, from shots in torch's layout (T, 3, S, S)."""
    import torch

    hwc = np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 2, 3, 1))
    return torch.from_numpy(texture_array(hwc, src_points, dst_points))
