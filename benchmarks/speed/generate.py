"""End-to-end speed of ``generate`` per preset: frames per second and where the time goes.

Stages: person (load, detect the source face, E and P), driver landmarks (decode + detect + 68
points), render (G), compose + encode (resize, preview, H.264) and sign (C2PA). Weights are random
(the cost does not depend on them). Goal (issue 6): generation limited by G, the rest < 20%.

dlib's models are read once before the timed run (``face_models_seconds``), as ``sfumato generate``
reads them while torch imports and ``--batch`` once per folder; ``fps_with_face_models`` adds them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed.model import random_checkpoint
from generator.inference.generate import GenerateConfig, generate
from generator.provenance import SigningOptions


def run_generate_benchmark(driver: str | Path, presets: tuple[str, ...] = ("small", "paper"),
                           frames: int = 100, threads: int = 2, precision: str = "auto") -> list[dict]:
    """Generate ``frames`` frames driven by ``driver`` for each preset; stage seconds and shares."""
    from generator.faces.backends import create_backend

    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        signing = SigningOptions(keys_dir=str(tmp / "keys"))
        t = time.perf_counter()
        backend = create_backend("dlib")
        face_models = time.perf_counter() - t
        for name in presets:
            ck = random_checkpoint(name, tmp / f"{name}.safetensors")
            # warm-up (kernels, imports)
            generate(tmp / "warmup.mp4", driver=driver, checkpoint=ck, signing=signing,
                     config=GenerateConfig(end=4, precision=precision), backend=backend)
            r = generate(tmp / f"{name}.mp4", driver=driver, checkpoint=ck,
                         config=GenerateConfig(end=frames, precision=precision), signing=signing,
                         backend=backend)
            stages = r.stage_seconds
            per_frame = {k: v for k, v in stages.items() if k != "person"}
            total = sum(per_frame.values())
            rows.append({
                "preset": name, "size": r.size, "frames": r.frames,
                "precision": r.precision,
                "fps_end_to_end": round(r.frames / r.seconds, 2),
                "face_models_seconds": round(face_models, 3),
                "fps_with_face_models": round(r.frames / (r.seconds + face_models), 2),
                "fps_after_person": round(r.frames / total, 2),
                "stage_seconds": stages,
                "share_percent": {k: round(100 * v / total, 1) for k, v in per_frame.items()},
                "non_G_share_percent": round(100 * (1 - stages["render_G"] / total), 1),
            })
    return rows
