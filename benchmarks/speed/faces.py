"""Speed of the face pipeline: decode -> detect -> 68 landmarks -> crop (+ landmark image), per stage.

Target (issue 3): the dlib path with tracking at >= 60 frames/s on 2 cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from generator.faces.backends import FaceBackend, create_backend
from generator.faces.crop import TRAINING_CROP, crop_face
from generator.faces.landmarks import landmark_image
from generator.faces.tracking import OK, FaceTracker, TrackerConfig
from generator.io.video import MediaReader


class _TimedBackend(FaceBackend):
    """Wraps a backend and adds up the seconds spent in detection and in the landmark fit."""

    def __init__(self, inner: FaceBackend, totals: dict):
        self.inner, self.totals, self.name = inner, totals, inner.name
        self.detector = inner.detector

    def detect(self, image):
        t = time.perf_counter()
        out = self.inner.detect(image)
        self.totals["detect"] += time.perf_counter() - t
        self.totals["detect_calls"] += 1
        return out

    def landmarks(self, image, box):
        t = time.perf_counter()
        out = self.inner.landmarks(image, box)
        self.totals["landmarks"] += time.perf_counter() - t
        return out

    def describe(self) -> dict:
        return self.inner.describe()


def run_face_benchmark(video: str | Path, backend: str = "dlib", detect_every: int = 8,
                       max_frames: int | None = None, fan_weights: str | None = None,
                       repeats: int = 1) -> dict:
    """Process ``video`` end to end and return frames/s and milliseconds per frame for each stage."""
    kwargs = {"weights": fan_weights} if backend == "fan" else {}
    inner = create_backend(backend, **kwargs)
    best = None
    for _ in range(repeats):
        totals: dict = defaultdict(float)
        timed = _TimedBackend(inner, totals)
        # The tracker itself, not track_video: this times decode, detect, landmarks and crop apart.
        tracker = FaceTracker(timed, TrackerConfig(detect_every=detect_every))
        n = faces = 0
        start = time.perf_counter()
        with MediaReader(video) as reader:
            info = reader.info
            frames = reader.frames()
            while True:
                t = time.perf_counter()
                item = next(frames, None)
                totals["decode"] += time.perf_counter() - t
                if item is None or (max_frames and n >= max_frames):
                    break
                idx, frame = item
                face = tracker.step(frame, idx)
                n += 1
                if face.status == OK:
                    faces += 1
                    t = time.perf_counter()
                    _, local, _ = crop_face(frame, face.points, TRAINING_CROP)
                    landmark_image(local, TRAINING_CROP.size)
                    totals["crop"] += time.perf_counter() - t
        wall = time.perf_counter() - start
        if best is None or wall < best[0]:
            best = (wall, dict(totals), n, faces)
    wall, totals, n, faces = best
    stages = {k: round(1000 * totals.get(k, 0.0) / max(n, 1), 3)
              for k in ("decode", "detect", "landmarks", "crop")}
    return {
        "video": str(video), "backend": backend, "detect_every": detect_every,
        "resolution": f"{info.width}x{info.height}", "frames": n, "frames_with_face": faces,
        "detector_runs": int(totals.get("detect_calls", 0)), "seconds": round(wall, 3),
        "fps": round(n / wall, 1) if wall > 0 else None, "ms_per_frame": stages,
        "ms_per_detection": round(1000 * totals.get("detect", 0.0)
                                  / max(totals.get("detect_calls", 1), 1), 2),
    }


def run_parallel_face_benchmark(videos: list[str | Path], workers: int = 2, **kwargs) -> dict:
    """Run the benchmark on several videos at once in ``workers`` processes; total frames/s."""
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        results = list(pool.map(_bench_one, [(v, kwargs) for v in videos]))
    wall = time.perf_counter() - start
    frames = sum(r["frames"] for r in results)
    # Process start-up (imports, model loading) is excluded: it is paid once per worker.
    busy = max(sum(r["seconds"] for r in results) / workers, 1e-9)
    return {"workers": workers, "videos": len(videos), "frames": frames,
            "fps_including_startup": round(frames / wall, 1), "fps": round(frames / busy, 1),
            "per_video": results, "mean_single_fps": float(np.mean([r["fps"] for r in results]))}


def _bench_one(args):
    video, kwargs = args
    return run_face_benchmark(video, **kwargs)
