"""Cost of provenance: C2PA sign and verify times, and signing as a share of generating a clip.

Target (issue 5): signing < 2% of the time to generate one clip.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.speed.timing import best_of
from generator.io.video import write_image, write_video
from generator.provenance import GenerationInfo, SigningIdentity, init_keys, sign_file, verify_file


def _mp4_of_about(path: Path, megabytes: float = 1.0) -> Path:
    """An H.264 clip of roughly ``megabytes`` (noisy frames keep the bitrate up)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(12)]
    n = 12
    while True:
        write_video(path, (frames[k % 12] for k in range(n)), fps=25, crf=30)
        size = path.stat().st_size / 1e6
        if size >= megabytes * 0.9:
            return path
        n = int(n * megabytes / max(size, 1e-3)) + 1


def run_provenance_benchmark(repeats: int = 5, clip_frames: int = 100, preset: str = "small",
                             threads: int = 2) -> dict:
    """Sign/verify milliseconds for a ~1 MB mp4 and a 256 px png, and the share of a generated clip."""
    from generator.inference.person import Person
    from generator.model.config import get_preset
    from generator.model.talking_head import TalkingHeadModel

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        init_keys(tmp / "keys")
        me = SigningIdentity.from_keys_dir(tmp / "keys")
        gen = GenerationInfo(preset=preset, seed=0, driver_kind="builtin")
        mp4 = _mp4_of_about(tmp / "clip.mp4")
        png = tmp / "face.png"
        write_image(png, np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8))
        out = {"mp4_bytes": mp4.stat().st_size, "png_bytes": png.stat().st_size}
        trust = [tmp / "keys" / "ca.pem"]
        for name, src in (("mp4", mp4), ("png", png)):
            dst = tmp / f"signed_{src.name}"
            out[f"sign_{name}_ms"] = 1000 * best_of(lambda s=src, d=dst: sign_file(s, me, d, gen), repeats)
            state = verify_file(dst, trust, use_local_ca=False).state
            out[f"verify_{name}_ms"] = 1000 * best_of(
                lambda d=dst: verify_file(d, trust, use_local_ca=False), repeats)
            out[f"verify_{name}_state"] = state

        # One generated clip: render clip_frames frames from a person, encode them, sign the mp4.
        cfg = get_preset(preset).model
        model = TalkingHeadModel(cfg)
        person = Person(model.G, torch.zeros(1, model.G.n_adain), model.D,
                        torch.zeros(cfg.embed_dim), {}).prepare_for_inference()
        pts = np.tile(np.linspace(0.3, 0.7, 68)[:, None] * cfg.image_size, (1, 2))[None]
        track = np.repeat(pts, clip_frames, axis=0).astype(np.float32)
        clip = tmp / "generated.mp4"
        start = time.perf_counter()
        write_video(clip, person.render(track), fps=25)
        generate_s = time.perf_counter() - start
        sign_s = best_of(lambda: sign_file(clip, me, tmp / "generated_signed.mp4", gen), repeats)
        out.update({"clip_frames": clip_frames, "clip_preset": preset,
                    "generate_clip_s": generate_s, "sign_clip_ms": 1000 * sign_s,
                    "sign_share_percent": 100 * sign_s / (generate_s + sign_s)})
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}
