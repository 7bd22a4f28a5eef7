"""Quality of the generator next to simple baselines, by self-reenactment on held-out videos (paper
sec. 4): T source frames from the first half of a video drive-rendered with the landmarks of frames
from its second half, and compared with those real frames.

Methods: copy the source frame (no motion at all), a piecewise-affine warp of the source shot closest
in pose from its landmarks to the driving ones (``generator.warp``), the model feed-forward (FF) and
fine-tuned (FT). Metrics: SSIM, PSNR,
CSIM (cosine of dlib's 128-d face-recognition descriptors, offline) and LMD (mean distance of the
landmarks found on the output to the driving landmarks, over the inter-ocular distance). FID is not
computed: it needs Inception weights, which cannot be had offline.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from generator.driving import interocular
from generator.files import write_bytes_atomic

METHODS = ("copy", "warp", "FF", "FT")
METRICS = ("SSIM", "PSNR", "CSIM", "LMD")


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    """What to evaluate."""

    shots: tuple[int, ...] = (1, 8, 32)  # T
    eval_frames: int = 8  # driving frames per video (from its second half)
    finetune_steps: int = 40  # for FT; 0 leaves FT out
    seed: int = 0


class FaceMetrics:
    """SSIM, PSNR, CSIM and LMD of generated face crops against real ones (dlib models, offline)."""

    def __init__(self):
        import dlib

        from generator.faces import dlib_model_path

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
                "PSNR": float(peak_signal_noise_ratio(real, fake, data_range=255)),
                "CSIM": csim, "LMD": lmd}


def warp_baseline(source: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Warp one source so its landmarks land on ``dst_pts`` (``generator.warp``: borders pinned)."""
    from generator.warp import warp_face

    return warp_face(source, src_pts, dst_pts).image


def warp_frames(frames: np.ndarray, points: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """The warp baseline for T shots (T, S, S, 3): per driving frame, the shot closest in pose,
    warped to it (so T = 8 has more to choose from than T = 1)."""
    from generator.warp import warp_shots

    return np.stack([warp_shots(frames, points, d).image for d in driving])


def evaluate_video(model, video: str | Path, config: QualityConfig, metrics: FaceMetrics,
                   perceptual=None) -> dict:
    """All methods x T on one video; returns per-method means and one example row for the grid."""
    import torch

    from generator.finetune import FinetuneConfig, finetune
    from generator.inference import init_person
    from generator.sources import Shots, load_shots

    size = model.cfg.image_size
    n = 2 * max(max(config.shots), config.eval_frames)
    shots = load_shots([video], size, per_video=n)
    half = len(shots) // 2
    if half < 1 or len(shots) - half < 1:
        raise ValueError(f"{video}: too few frames with a face to split into source and driver")
    drive = np.linspace(half, len(shots) - 1, min(config.eval_frames, len(shots) - half)).round()
    drive = drive.astype(int)
    real, driving = shots.frames[drive], shots.points[drive]
    real_desc = [metrics.descriptor(r, d) for r, d in zip(real, driving)]  # once, for every method
    results, example = {}, None
    for t in config.shots:
        pick = np.linspace(0, half - 1, min(t, half)).round().astype(int)
        src = Shots(shots.frames[pick], shots.points[pick], shots.origins, shots.source_sha256)
        outputs = {
            "copy": np.repeat(src.frames[:1], len(drive), axis=0),
            "warp": warp_frames(src.frames, src.points, driving),
        }
        x, y = src.tensors()
        outputs["FF"] = init_person(model, x, y, src.points).prepare_for_inference().render(driving)
        if config.finetune_steps:
            torch.manual_seed(config.seed)
            ft = finetune(model, src, FinetuneConfig(steps=config.finetune_steps, seed=config.seed),
                          perceptual)
            outputs["FT"] = ft.person.prepare_for_inference().render(driving)
        for method, frames in outputs.items():
            rows = [metrics.score(f, r, d, rd)
                    for f, r, d, rd in zip(frames, real, driving, real_desc)]
            results[f"{method}@T={len(pick)}"] = {
                "method": method, "T": int(len(pick)),
                **{m: float(np.mean([r[m] for r in rows])) for m in METRICS},
                "motion": float(np.abs(frames.astype(float) - frames[:1]).mean())}
        k = len(drive) // 2
        example = {"source": src.frames[0], "driver": driving[k], "real": real[k],
                   **{m: f[k] for m, f in outputs.items()}}
    return {"video": str(video), "frames": len(shots), "results": results, "example": example}


def run_quality(videos: list[str | Path], checkpoint: str | Path, out_dir: str | Path,
                config: QualityConfig = QualityConfig(), perceptual=None,
                progress: bool = False) -> dict:
    """Evaluate every video, write quality.json, quality.md and grid.png into ``out_dir``.

    Resumable: each finished video is kept in ``out_dir/per_video`` (metrics + grid example) and
    reused by a rerun with the same checkpoint, video file and settings; anything else is redone.
    """
    from tqdm import tqdm

    from generator.files import sha256_file
    from generator.model import load_meta_model
    from generator.prepare import collect_inputs

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
        table.append({"method": rows[0]["method"], "T": rows[0]["T"], "videos": len(rows),
                      **{m: float(np.mean([r[m] for r in rows])) for m in (*METRICS, "motion")}})
    summary = {"checkpoint": str(checkpoint), "checkpoint_sha256": ck_sha, "preset": meta.get("preset"),
               "checkpoint_step": meta.get("step"), "config": dataclasses.asdict(config),
               "videos": [r["video"] for r in per_video], "failed": failed, "table": table,
               "per_video": [{"video": r["video"], "results": r["results"]} for r in per_video],
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
           "results": result["results"]}
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
    return {"video": doc["video"], "frames": doc["frames"], "results": doc["results"],
            "example": example}


def markdown_table(summary: dict) -> str:
    """The table as markdown (higher is better except LMD)."""
    lines = [f"# Self-reenactment quality ({len(summary['videos'])} videos, checkpoint step "
             f"{summary['checkpoint_step']})", "",
             "| method | T | SSIM | PSNR | CSIM | LMD (lower is better) |", "|---|---|---|---|---|---|"]
    for r in summary["table"]:
        lines.append(f"| {r['method']} | {r['T']} | {r['SSIM']:.3f} | {r['PSNR']:.2f} | "
                     f"{r['CSIM']:.3f} | {r['LMD']:.3f} |")
    lines += ["", f"FID: {summary['fid']}."]
    if summary["failed"]:
        lines += ["", "Not evaluated: " + "; ".join(f"{f['video']} ({f['error']})"
                                                     for f in summary["failed"])]
    return "\n".join(lines) + "\n"


def _write_grid(path: Path, examples: list[dict]) -> None:
    """One row per video: source | driver landmarks | each method | real."""
    from generator.landmarks import landmark_image
    from generator.video_io import write_image

    rows = []
    for ex in examples:
        size = ex["real"].shape[0]
        cells = [ex["source"], landmark_image(ex["driver"], size)]
        cells += [ex[m] for m in METHODS if m in ex] + [ex["real"]]
        rows.append(np.hstack(cells))
    write_image(path, np.vstack(rows))
