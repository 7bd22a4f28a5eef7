"""One script for a GPU machine: the CUDA paths of sfumato, checked and timed in a few minutes.

    python -m benchmarks.speed.device_check --corpus CORPUS --out OUT [--device cuda] [--quick]

1. ``model``: `bench model` per preset on the device (fp32, fp16 and bf16 autocast, train steps).
2. ``finetune_generate``: fine-tuning steps, then end-to-end ``generate`` per precision and batch
   size, from a person made of the corpus's own crops (so no face-detector models are needed there).
3. ``train_cli``: ``sfumato train`` with fp16 autocast (bf16 off CUDA), then ``--resume``.
4. ``adversarial``: G against a frozen detector (``dataset round``'s fine-tuning step) per preset, with
   an EfficientNet-B0 detector at the preset's size: seconds per step, p_fake and L_CNT before/after.
Writes OUT/device.json, each run's stats.csv and last sample grid, and one generated mp4. Every
check runs on the CPU too (``--device cpu``), which is how the tests exercise this file.
"""

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import cv2
import numpy as np
import torch


def model_bench(a) -> list[dict]:
    """`bench model` figures per preset on the device."""
    from benchmarks.speed.model import run_model_benchmark

    return run_model_benchmark(a.presets, k=8, repeats=2 if a.quick else 5, threads=a.threads,
                               device=a.device, train_step=True)


def shots_from_corpus(corpus: str, size: int, t: int):
    """T shots (crops + landmarks at ``size``) from the first video of a prepared corpus."""
    from generator.corpus.episodes import load_corpus
    from generator.faces.shots import Shots

    v = load_corpus(corpus)[0]
    idx = np.linspace(0, len(v.frame_files) - 1, t).round().astype(int)
    frames = np.stack([cv2.cvtColor(cv2.resize(cv2.imread(str(v.directory / v.frame_files[i])),
                                               (size, size), interpolation=cv2.INTER_AREA),
                                    cv2.COLOR_BGR2RGB) for i in idx])
    points = (v.points[idx] * (size / v.crop_size)).astype(np.float32)
    return Shots(frames, points, [{"source": str(v.directory), "frame": int(i)} for i in idx], {})


def finetune_and_generate(a) -> list[dict]:
    """Fine-tuning step time and end-to-end generate speed per preset, precision and batch size."""
    with tempfile.TemporaryDirectory() as tmp:
        return [_finetune_and_generate_one(a, preset, Path(tmp)) for preset in a.presets]


def _finetune_and_generate_one(a, preset: str, tmp: Path) -> dict:
    from benchmarks.speed.model import random_checkpoint
    from generator.inference.generate import GenerateConfig, generate
    from generator.model.checkpoint import save_checkpoint
    from generator.model.talking_head import load_meta_model
    from generator.provenance import SigningOptions
    from generator.training.finetune import FinetuneConfig, finetune

    dev, out_dir = a.device, Path(a.out)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    model, _ = load_meta_model(random_checkpoint(preset, tmp / f"{preset}.safetensors"), dev)
    s = model.cfg.image_size
    shots = shots_from_corpus(a.corpus, s, 8)
    torch.manual_seed(0)
    finetune(model, shots, FinetuneConfig(steps=3))  # warm-up
    n = 5 if a.quick else 20
    sync()
    t = time.perf_counter()
    res = finetune(model, shots, FinetuneConfig(steps=n))
    sync()
    ft_step = (time.perf_counter() - t) / n
    p = res.person
    person = tmp / f"{preset}_person.safetensors"
    save_checkpoint(person, "person", {"G": p.G, "D": p.D},
                    {"preset": preset, "model": model.cfg.to_dict(), "shots": 8,
                     "source_points": np.round(shots.points, 2).tolist(), "sources": []},
                    tensors={"psi": p.psi, "w": p.w})
    nosign = SigningOptions(enabled=False)  # signing is timed by `bench provenance`, on the CPU
    row = {"preset": preset, "size": s, "finetune_step_s": round(ft_step, 4),
           "L_CNT_first_last": [res.history[0]["L_CNT"], res.history[-1]["L_CNT"]]}
    for precision in ("fp32", "fp16", "bf16") if dev == "cuda" else ("fp32", "bf16"):
        for batch in (8, 32):
            generate(tmp / "warm.mp4", person=person, signing=nosign, device=dev,
                     config=GenerateConfig(end=8, batch_size=batch, precision=precision))
            r = generate(tmp / f"{preset}_{precision}_{batch}.mp4", person=person, signing=nosign,
                         device=dev, config=GenerateConfig(seconds=4 if a.quick else 12,
                                                           batch_size=batch, precision=precision))
            st = r.stage_seconds
            per_frame = sum(v for k, v in st.items() if k != "person")
            row[f"{precision}_b{batch}"] = {
                "frames": r.frames, "fps_after_person": round(r.frames / per_frame, 1),
                "G_ms_per_frame": round(1000 * st["render_G"] / r.frames, 2),
                "non_G_share_percent": round(100 * (1 - st["render_G"] / per_frame), 1),
                "stage_seconds": st}
    if preset == a.presets[0]:
        (out_dir / f"{preset}_generated.mp4").write_bytes(
            (tmp / f"{preset}_{'fp16' if dev == 'cuda' else 'fp32'}_8.mp4").read_bytes())
    return row


def train_cli(a) -> list[dict]:
    """`sfumato train` with fp16 (CUDA) or bf16 autocast, then --resume; step times and losses."""
    rows = []
    for preset in a.presets:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(_train_cli_one(a, preset, Path(tmp) / f"run_{preset}"))
    return rows


def _train_cli_one(a, preset: str, run: Path) -> dict:
    dev, out_dir = a.device, Path(a.out)
    steps = 4 if a.quick else {"paper": 20}.get(preset, 60)
    amp = a.train_amp or ("fp16" if dev == "cuda" else "bf16")
    row: dict = {"preset": preset, "amp": amp, "batch_size": a.train_batch}
    for total, resume in ((steps, False), (steps + steps // 2, True)):
        cmd = [sys.executable, "-m", "cli", "-q", "train", a.corpus, "-o", str(run),
               "--preset", preset, "--steps", str(total), "--amp", amp, "--device", dev,
               "--content-loss", "none", "--pixel-loss", "10", "--checkpoint-every",
               str(max(2, steps // 2)), "--sample-every", str(steps), "--log-every", "2",
               "--batch-size", str(a.train_batch),
               "--json"] + (["--resume"] if resume else [])
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        print(p.stderr[-3000:], flush=True)
        summary = json.loads(p.stdout) if p.returncode == 0 else {"rc": p.returncode}
        row["resume" if resume else "first"] = {"wall_s": round(wall, 1), **summary}
    stats = (run / "stats.csv").read_text() if (run / "stats.csv").exists() else ""
    (out_dir / f"train_{preset}_{amp}_b{a.train_batch}_stats.csv").write_text(stats)
    secs = [float(line.split(",")[-1]) for line in stats.strip().splitlines()[2:]]
    row["median_step_s"] = float(np.median(secs)) if secs else None
    samples = sorted((run / "samples").glob("*.png"))
    if samples:
        (out_dir / f"train_{preset}_{amp}_b{a.train_batch}_sample.png").write_bytes(
            samples[-1].read_bytes())
    return row


def adversarial(a) -> list[dict]:
    """Detector-in-the-loop fine-tuning of G on the device: step time, detector score, content loss."""
    from benchmarks.adversarial.against_detector import AdversarialConfig, adversarial_finetune
    from benchmarks.speed.model import random_checkpoint
    from detector.model import Detector, save_detector
    from generator.model.config import get_preset

    rows = []
    for preset in a.presets:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            ck = random_checkpoint(preset, tmp / f"{preset}.safetensors")
            size = get_preset(preset).model.image_size
            torch.manual_seed(0)
            det = tmp / "detector.safetensors"
            backbone = "efficientnet_b0" if a.device == "cuda" else "test_efficientnet"
            save_detector(det, Detector(backbone, input_size=size),
                          {"backbone": backbone, "input_size": size, "init": {"init": "scratch"}})
            steps = 4 if a.quick else 30
            warm = AdversarialConfig(steps=2, batch_size=4, k=8 if not a.quick else 2)
            adversarial_finetune(ck, a.corpus, det, tmp / "warm.safetensors", warm, device=a.device)
            if a.device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            cfg = dataclasses.replace(warm, steps=steps)
            t = time.perf_counter()
            s = adversarial_finetune(ck, a.corpus, det, tmp / "g1.safetensors", cfg, device=a.device)
            wall = time.perf_counter() - t
            rows.append({"preset": preset, "size": size, "steps": steps, "batch": cfg.batch_size, "k": cfg.k,
                         "wall_s": round(wall, 2), "step_s": round(wall / steps, 4),
                         "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)
                         if a.device == "cuda" else None,
                         "before": s["before"], "after": s["after"]})
    return rows


CHECKS = {"model": model_bench, "finetune_generate": finetune_and_generate, "train_cli": train_cli,
          "adversarial": adversarial}


def main(argv: list[str] | None = None) -> dict:
    """Run the checks; write OUT/device.json after each (a later failure keeps earlier figures)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="a corpus folder made by 'sfumato prepare'")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--presets", default="paper,small", type=lambda v: v.split(","))
    ap.add_argument("--only", default=",".join(CHECKS), type=lambda v: v.split(","))
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--train-batch", type=int, default=1, help="episodes per train step")
    ap.add_argument("--train-amp", choices=["none", "bf16", "fp16"],
                    help="train_cli autocast (default: fp16 on CUDA, bf16 on the CPU)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps (a smoke run)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"torch": torch.__version__, "device": a.device,
                     "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else None}
    for name in a.only:
        t = time.perf_counter()
        try:
            results[name] = CHECKS[name](a)
        except Exception as exc:  # keep going: one failure must not hide the other figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"== {name}: {time.perf_counter() - t:.1f} s {json.dumps(results[name])[:3000]}",
              flush=True)
        (out / "device.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
