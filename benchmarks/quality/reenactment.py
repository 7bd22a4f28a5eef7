"""Quality of the generator next to simple baselines, by self-reenactment on held-out videos (paper
sec. 4): T source frames from the first half of a video drive-rendered with the landmarks of frames
from its second half, and compared with those real frames.

Methods: copy the source frame (no motion at all), a piecewise-affine warp of the source shot closest
in pose from its landmarks to the driving ones (``generator.faces.warp``), the model feed-forward (FF) and
fine-tuned (FT). Metrics: SSIM, SSIM_mouth (SSIM on the padded box of the driving mouth
landmarks 48-67, where a landmark warp is weakest), PSNR, CSIM (cosine of dlib's 128-d
face-recognition descriptors, offline) and LMD (mean distance of the landmarks found on the output to
the driving landmarks, over the inter-ocular distance). The eval frames are spread over the second
half, so a short run of consecutive frames from its start is rendered too, for jitter: "temporal" is
the mean absolute frame-to-frame change of the output (uint8 scale), "temporal_real" that of the real
frames and "temporal_ratio" their quotient (1 = moves as much as the real video; far above =
jitter). FID is not computed: it needs Inception weights, which cannot be had offline.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from generator.faces.motion import interocular
from generator.io.files import write_bytes_atomic

METHODS = ("copy", "warp", "FF", "FT")
METRICS = ("SSIM", "SSIM_mouth", "PSNR", "CSIM", "LMD")  # per eval frame, averaged
TEMPORAL = ("temporal", "temporal_real", "temporal_ratio")  # per consecutive run (None: not measured)
MOUTH = slice(48, 68)  # iBUG 68-point layout


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    """What to evaluate."""

    shots: tuple[int, ...] = (1, 8, 32)  # T
    eval_frames: int = 8  # driving frames per video (from its second half)
    finetune_steps: int = 40  # for FT; 0 leaves FT out
    temporal_frames: int = 8  # consecutive driving frames from the start of the second half; 0: none
    seed: int = 0

    def __post_init__(self):
        """Reject a run of consecutive frames too short to have a frame-to-frame change."""
        if self.temporal_frames == 1 or self.temporal_frames < 0:
            raise ValueError(f"temporal_frames must be 0 (off) or at least 2, got {self.temporal_frames}")


def mouth_box(points: np.ndarray, shape: tuple[int, ...], pad: float = 0.25, min_side: int = 7
              ) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the mouth landmarks 48-67, padded by ``pad`` of the box size on each side,
    clipped to the image of ``shape`` (h, w, ...) and at least ``min_side`` pixels (SSIM's window)."""
    h, w = shape[:2]
    mouth = np.asarray(points, np.float64)[MOUTH]
    lo, hi = mouth.min(0), mouth.max(0)
    lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
    box = []
    for a, b, limit in ((lo[0], hi[0], w), (lo[1], hi[1], h)):
        a, b = max(0, int(np.floor(a))), min(limit, int(np.ceil(b)))
        side = min(limit, max(b - a, min_side))
        a = int(np.clip((a + b - side) // 2, 0, limit - side))
        box.append((a, a + side))
    (x0, x1), (y0, y1) = box
    return x0, y0, x1, y1


def mouth_ssim(fake: np.ndarray, real: np.ndarray, points: np.ndarray) -> float:
    """SSIM of two frames on the padded mouth box of ``points`` (see ``mouth_box``)."""
    from skimage.metrics import structural_similarity

    x0, y0, x1, y1 = mouth_box(points, real.shape)
    a, b = fake[y0:y1, x0:x1], real[y0:y1, x0:x1]
    win = min(7, *a.shape[:2])
    return float(structural_similarity(a, b, channel_axis=2, data_range=255, win_size=win - 1 + win % 2))


def temporal_change(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive frames (N >= 2, uint8 scale), over pixels and pairs."""
    frames = np.asarray(frames)
    if len(frames) < 2:
        raise ValueError("a frame-to-frame change needs at least two frames")
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean())


def temporal_ratio(temporal: float | None, real: float | None) -> float | None:
    """temporal / temporal_real, None when either is missing or the real frames do not change."""
    if temporal is None or real is None or real <= 1e-9:
        return None
    return float(temporal / real)


def consecutive_crops(video: str | Path, start: int, n: int, size: int
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """Up to ``n`` consecutive frames of ``video`` from frame ``start`` with a face (the run stops at the
    first frame without one), cut with one crop (from the run's mean landmarks) so the crops show the
    real motion and the landmarks (N, 68, 2) in crop pixels keep their frame-to-frame noise, as a
    driver's do. None when fewer than two frames are found."""
    from generator.faces.backends import create_backend
    from generator.faces.crop import TRAINING_CROP, crop_transform
    from generator.faces.tracking import TrackerConfig, track_video

    track = track_video(video, create_backend("dlib"), TrackerConfig(detect_every=1),  # as load_shots
                        indices=range(start, start + n), keep_frames=True)
    run = len(track) if track.found.all() else int(np.argmin(track.found))  # up to the first miss
    images, points = track.frames[:run], list(track.points[:run])
    if len(images) < 2:
        return None
    t = crop_transform(np.mean(points, axis=0), dataclasses.replace(TRAINING_CROP, size=size))
    return (np.stack([t.apply_image(f) for f in images]),
            np.stack([t.apply_points(p) for p in points]).astype(np.float32))


class FaceMetrics:
    """SSIM, PSNR, CSIM and LMD of generated face crops against real ones (dlib models, offline)."""

    def __init__(self):
        import dlib

        from generator.faces.backends import dlib_model_path

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(dlib_model_path("shape_68")))
        self._rec = dlib.face_recognition_model_v1(str(dlib_model_path("recognition")))

    def _rect(self, points: np.ndarray):
        x0, y0 = points.min(0)
        x1, y1 = points.max(0)
        return self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))

    def landmarks(self, image: np.ndarray, near: np.ndarray) -> np.ndarray:
        """68 points found on ``image`` starting from the box of the landmarks ``near``."""
        shape = self._shape(image, self._rect(near))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    def descriptor(self, image: np.ndarray, near: np.ndarray) -> np.ndarray:
        """dlib's 128-d face descriptor of the face around ``near``."""
        shape = self._shape(image, self._rect(near))
        return np.asarray(self._rec.compute_face_descriptor(np.ascontiguousarray(image), shape))

    def score(self, fake: np.ndarray, real: np.ndarray, driving: np.ndarray,
              real_descriptor: np.ndarray | None = None) -> dict:
        """Metrics for one generated frame against the real one and its driving landmarks."""
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity

        a = self.descriptor(fake, driving)
        b = real_descriptor if real_descriptor is not None else self.descriptor(real, driving)
        csim = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))
        lmd = float(np.linalg.norm(self.landmarks(fake, driving) - driving, axis=1).mean()
                    / max(interocular(driving), 1e-6))
        return {"SSIM": float(structural_similarity(fake, real, channel_axis=2, data_range=255)),
                "SSIM_mouth": mouth_ssim(fake, real, driving),
                "PSNR": float(peak_signal_noise_ratio(real, fake, data_range=255)),
                "CSIM": csim, "LMD": lmd}


def warp_baseline(source: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Warp one source so its landmarks land on ``dst_pts`` (``generator.faces.warp``: borders pinned)."""
    from generator.faces.warp import warp_face

    return warp_face(source, src_pts, dst_pts).image


def warp_frames(frames: np.ndarray, points: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """The warp baseline for T shots (T, S, S, 3): per driving frame, the shot closest in pose,
    warped to it (so T = 8 has more to choose from than T = 1)."""
    from generator.faces.warp import warp_shots

    return np.stack([warp_shots(frames, points, d).image for d in driving])


def split_video(video: str | Path, size: int, max_shots: int, eval_frames: int):
    """Self-reenactment split of a video's face crops: (shots, half, driving indices); sources come
    from the first ``half`` crops, ``eval_frames`` evenly spaced driving crops from the rest."""
    from generator.faces.shots import load_shots

    shots = load_shots([video], size, per_video=2 * max(max_shots, eval_frames))
    half = len(shots) // 2
    if half < 1 or len(shots) - half < 1:
        raise ValueError(f"{video}: too few frames with a face to split into source and driver")
    drive = np.linspace(half, len(shots) - 1, min(eval_frames, len(shots) - half)).round().astype(int)
    return shots, half, drive


def source_shots(shots, half: int, t: int):
    """T shots evenly spaced over the first ``half`` crops (fewer if the half is shorter)."""
    from generator.faces.shots import Shots

    pick = np.linspace(0, half - 1, min(t, half)).round().astype(int)
    return Shots(shots.frames[pick], shots.points[pick], shots.origins, shots.source_sha256)


def evaluate_video(model, video: str | Path, config: QualityConfig, metrics: FaceMetrics,
                   perceptual=None) -> dict:
    """All methods x T on one video; returns per-method means and one example row for the grid.

    Each method renders the eval frames and then the run of consecutive frames (``temporal_frames``)
    in one go, so FF and FT use the very same person for both.
    """
    import torch

    from generator.training.finetune import FinetuneConfig, make_person

    size = model.cfg.image_size
    shots, half, drive = split_video(video, size, max(config.shots), config.eval_frames)
    real, driving = shots.frames[drive], shots.points[drive]
    real_desc = [metrics.descriptor(r, d) for r, d in zip(real, driving)]  # once, for every method
    run = consecutive_crops(video, shots.origins[half]["frame"], config.temporal_frames, size) \
        if config.temporal_frames else None
    temporal_real = None if run is None else temporal_change(run[0])
    targets = driving if run is None else np.concatenate([driving, run[1]])
    n_eval = len(drive)
    results, example = {}, None
    for t in config.shots:
        src = source_shots(shots, half, t)
        outputs = {
            "copy": np.repeat(src.frames[:1], len(targets), axis=0),
            "warp": warp_frames(src.frames, src.points, targets),
        }
        outputs["FF"] = make_person(model, src).render(targets)
        if config.finetune_steps:
            torch.manual_seed(config.seed)
            ft = make_person(model, src, FinetuneConfig(steps=config.finetune_steps, seed=config.seed),
                             perceptual)
            outputs["FT"] = ft.render(targets)
        for method, rendered in outputs.items():
            frames = rendered[:n_eval]
            rows = [metrics.score(f, r, d, rd)
                    for f, r, d, rd in zip(frames, real, driving, real_desc)]
            temporal = None if run is None else temporal_change(rendered[n_eval:])
            results[f"{method}@T={len(src)}"] = {
                "method": method, "T": int(len(src)),
                **{m: float(np.mean([r[m] for r in rows])) for m in METRICS},
                "motion": float(np.abs(frames.astype(float) - frames[:1]).mean()),
                "temporal": temporal, "temporal_real": temporal_real,
                "temporal_ratio": temporal_ratio(temporal, temporal_real)}
        k = len(drive) // 2
        example = {"source": src.frames[0], "source_points": src.points[0], "driver": driving[k],
                   "real": real[k], **{m: f[k] for m, f in outputs.items()}}
    return {"video": str(video), "frames": len(shots), "temporal_frames": 0 if run is None else len(run[0]),
            "results": results, "example": example}


def run_quality(videos: list[str | Path], checkpoint: str | Path, out_dir: str | Path,
                config: QualityConfig = QualityConfig(), perceptual=None,
                progress: bool = False) -> dict:
    """Evaluate every video, write quality.json, quality.md and grid.png into ``out_dir``.

    Resumable: each finished video is kept in ``out_dir/per_video`` (metrics + grid example) and
    reused by a rerun with the same checkpoint, video file and settings; anything else is redone.
    """
    from tqdm import tqdm

    from generator.corpus.prepare import collect_inputs
    from generator.io.files import sha256_file
    from generator.model.talking_head import load_meta_model

    model, meta = load_meta_model(checkpoint)
    files = [f.path for f in collect_inputs(videos)[0]]
    out = Path(out_dir)
    done_dir = out / "per_video"
    done_dir.mkdir(parents=True, exist_ok=True)
    ck_sha = sha256_file(checkpoint)
    metrics = None  # dlib models load only if a video needs evaluating
    per_video, failed, reused = [], [], 0
    for v in tqdm(files, desc="quality", unit="video", disable=not progress):
        try:
            key = {"checkpoint_sha256": ck_sha, "video_sha256": sha256_file(v),
                   "config": dataclasses.asdict(config), "perceptual": perceptual is not None}
            cached = _load_done(done_dir, v, key)
            if cached is not None:
                per_video.append(cached)
                reused += 1
                continue
            metrics = metrics or FaceMetrics()
            result = evaluate_video(model, v, config, metrics, perceptual)
            _save_done(done_dir, v, key, result)
            per_video.append(result)
        except Exception as exc:  # one bad video must not sink the evaluation; it is reported
            failed.append({"video": str(v), "error": f"{type(exc).__name__}: {exc}"})
    keys = sorted({k for r in per_video for k in r["results"]},
                  key=lambda k: (int(k.split("=")[1]), METHODS.index(k.split("@")[0])))
    table = []
    for key in keys:
        rows = [r["results"][key] for r in per_video if key in r["results"]]
        timed = [r for r in rows if r.get("temporal") is not None]  # videos with a consecutive run
        temporal = float(np.mean([r["temporal"] for r in timed])) if timed else None
        temporal_real = float(np.mean([r["temporal_real"] for r in timed])) if timed else None
        table.append({"method": rows[0]["method"], "T": rows[0]["T"], "videos": len(rows),
                      **{m: float(np.mean([r[m] for r in rows])) for m in (*METRICS, "motion")},
                      "temporal": temporal, "temporal_real": temporal_real,
                      "temporal_ratio": temporal_ratio(temporal, temporal_real)})  # of the means
    summary = {"checkpoint": str(checkpoint), "checkpoint_sha256": ck_sha, "preset": meta.get("preset"),
               "checkpoint_step": meta.get("step"), "config": dataclasses.asdict(config),
               "videos": [r["video"] for r in per_video], "failed": failed, "table": table,
               "per_video": [{"video": r["video"], "temporal_frames": r.get("temporal_frames", 0),
                              "results": r["results"]} for r in per_video],
               "reused_videos": reused,
               "fid": "not computed: Inception weights cannot be had offline"}
    write_bytes_atomic(out / "quality.json", json.dumps(summary, indent=1).encode())
    write_bytes_atomic(out / "quality.md", markdown_table(summary).encode())
    if per_video:
        _write_grid(out / "grid.png", [r["example"] for r in per_video])
    return summary


def _done_stem(video: str | Path) -> str:
    import hashlib

    p = Path(video)
    return f"{p.stem}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"


def _save_done(done_dir: Path, video: str | Path, key: dict, result: dict) -> None:
    """One finished video: its metrics (JSON) and its grid example (npz), each written atomically."""
    import io

    stem = _done_stem(video)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in result["example"].items()})
    write_bytes_atomic(done_dir / f"{stem}.npz", buf.getvalue())
    doc = {"key": key, "video": result["video"], "frames": result["frames"],
           "temporal_frames": result["temporal_frames"], "results": result["results"]}
    write_bytes_atomic(done_dir / f"{stem}.json", json.dumps(doc, indent=1).encode())


def _load_done(done_dir: Path, video: str | Path, key: dict) -> dict | None:
    """A finished video's result if it was made with the same checkpoint, video file and settings."""
    stem = _done_stem(video)
    try:
        doc = json.loads((done_dir / f"{stem}.json").read_text())
        if doc.get("key") != json.loads(json.dumps(key)):
            return None
        with np.load(done_dir / f"{stem}.npz", allow_pickle=False) as z:
            example = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None  # absent or damaged: evaluate again
    return {"video": doc["video"], "frames": doc["frames"], "temporal_frames": doc.get("temporal_frames", 0),
            "results": doc["results"], "example": example}


_COLUMNS = {"SSIM": ("SSIM", "{:.3f}"), "SSIM_mouth": ("SSIM mouth", "{:.3f}"), "PSNR": ("PSNR", "{:.2f}"),
            "CSIM": ("CSIM", "{:.3f}"), "LMD": ("LMD (lower is better)", "{:.3f}"),
            "temporal": ("temporal", "{:.2f}"), "temporal_real": ("temporal real", "{:.2f}"),
            "temporal_ratio": ("temporal ratio (1 = as real)", "{:.2f}")}  # header, format


def markdown_table(summary: dict) -> str:
    """The table as markdown (higher is better except LMD; temporal ratio: near 1 is best)."""
    cols = (*METRICS, *TEMPORAL)
    lines = [f"# Self-reenactment quality ({len(summary['videos'])} videos, checkpoint step "
             f"{summary['checkpoint_step']})", "",
             "| method | T | " + " | ".join(_COLUMNS[c][0] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for r in summary["table"]:
        cells = ["-" if r.get(c) is None else _COLUMNS[c][1].format(r[c]) for c in cols]
        lines.append(f"| {r['method']} | {r['T']} | " + " | ".join(cells) + " |")
    lines += ["", "SSIM mouth: on the padded box of the driving mouth landmarks. temporal: mean absolute "
              "frame-to-frame change (0-255) over a run of consecutive driving frames; temporal ratio: "
              "temporal / temporal real (far above 1 = jitter; '-' = not measured).",
              "", f"FID: {summary['fid']}."]
    if summary["failed"]:
        lines += ["", "Not evaluated: " + "; ".join(f"{f['video']} ({f['error']})"
                                                     for f in summary["failed"])]
    return "\n".join(lines) + "\n"


def _mouth_cell(image: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """The mouth box of ``points`` in ``image``, made square (inside the image) and resized to size x size
    (nearest when enlarging, so pixels stay visible; area when shrinking)."""
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = mouth_box(points, image.shape)
    side = min(max(x1 - x0, y1 - y0), h, w)
    x0 = int(np.clip((x0 + x1 - side) // 2, 0, w - side))
    y0 = int(np.clip((y0 + y1 - side) // 2, 0, h - side))
    patch = np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side])
    interp = cv2.INTER_NEAREST if side <= size else cv2.INTER_AREA
    return cv2.resize(patch, (size, size), interpolation=interp)


def _write_grid(path: Path, examples: list[dict]) -> None:
    """Two rows per video: source | driver landmarks | each method | real, and below them the mouth of
    each, enlarged (the source's own mouth; all others at the driving mouth box)."""
    from generator.faces.landmarks import landmark_image
    from generator.io.video import write_image

    rows = []
    for ex in examples:
        size = ex["real"].shape[0]
        driver = landmark_image(ex["driver"], size)
        shown = [ex[m] for m in METHODS if m in ex] + [ex["real"]]
        rows.append(np.hstack([ex["source"], driver, *shown]))
        source_pts = ex["source_points"] if "source_points" in ex else ex["driver"]
        mouths = [_mouth_cell(ex["source"], source_pts, size), _mouth_cell(driver, ex["driver"], size)]
        rows.append(np.hstack(mouths + [_mouth_cell(f, ex["driver"], size) for f in shown]))
    write_image(path, np.vstack(rows))
