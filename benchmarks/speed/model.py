"""Speed and memory of the model per preset, next to a straightforward re-implementation.

Measured per preset at its own size on the CPU or a CUDA device: parameter counts; G milliseconds
per frame once psi is known; E milliseconds for K = 8 frames; seconds per meta-training step (batch
1, K = 8, content networks in use), in fp32 and under bf16 (and, on CUDA, fp16) autocast; peak memory.
The "straightforward" figures run the same networks the way a
plain PyTorch port does: E and P re-run for every frame, spectral norm recomputed on every call, real
and fake through D and VGG in separate passes, D's weight gradients computed in the G step. Without
the real VGG weights, randomly initialised VGG19/VGGFace of the same shape stand in (same cost).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import resource
from pathlib import Path

import torch

from benchmarks.speed.timing import best_of
from generator.corpus.episodes import Episode
from generator.inference.person import autocast_dtype
from generator.model.config import get_preset
from generator.model.talking_head import TalkingHeadModel, bake_spectral_norm
from generator.training.distributed import DistInfo
from generator.training.losses import (
    adversarial_loss,
    feature_matching_loss,
    hinge_d_loss,
    match_loss,
    random_perceptual_loss,
)
from generator.training.meta_train import MetaTrainer


def random_checkpoint(preset: str, path: Path) -> Path:
    """A meta checkpoint of ``preset`` with random weights (for timing only)."""
    from generator.model.checkpoint import save_checkpoint
    from generator.model.talking_head import TalkingHeadModel

    p = get_preset(preset)
    model = TalkingHeadModel(p.model)
    meta = {"preset": preset, "model": p.model.to_dict(), "step": 0}
    return save_checkpoint(path, "meta", {"E": model.E, "G": model.G, "D": model.D}, meta)

def random_episode(size: int, k: int, device: torch.device, texture: bool = False) -> Episode:
    """A seeded random episode (K + 1 frames, landmarks, textures) of the given size, for timing."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, k + 1, 3, size, size, generator=g) * 2 - 1
    y = torch.rand(1, k + 1, 3, size, size, generator=g) * 2 - 1
    tex = None
    if texture:  # a warped source and a full validity mask: the same cost as a real one
        tex = torch.cat([x[:, 0], torch.ones(1, 1, size, size)], 1).to(device)
    return Episode(x.to(device), y.to(device), torch.zeros(1, dtype=torch.long, device=device),
                   texture=tex)


def straightforward(model: TalkingHeadModel) -> TalkingHeadModel:
    """The same networks run the textbook way: conv then pool, NCHW memory layout."""
    from generator.model.layers import ResBlockDown

    for m in model.modules():
        if isinstance(m, ResBlockDown):
            m.fused = False
    return model


def naive_train_step(model: TalkingHeadModel, perceptual, opt_g, opt_d, ep: Episode) -> None:
    """A plain port's step: separate passes, nothing detached or frozen, D steps recompute E and G."""
    xs, ys = ep.sources
    xt, yt = ep.target
    e_hat = model.E(xs, ys)
    x_hat = model.G(yt, e_hat=e_hat, texture=ep.texture)
    fake, real = model.D(x_hat, yt, ep.video), model.D(xt, yt, ep.video)
    loss = (perceptual(x_hat, xt) + adversarial_loss(fake.r, feature_matching_loss(
        fake.features, real.features)) + match_loss(model.D.W[:, ep.video].t(), e_hat))
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    for _ in range(2):
        x_hat = model.G(yt, e_hat=model.E(xs, ys), texture=ep.texture)
        d_loss = hinge_d_loss(model.D(xt, yt, ep.video).r, model.D(x_hat.detach(), yt, ep.video).r)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()


def measure_preset(name: str, k: int = 8, repeats: int = 3, threads: int = 2,
                   train_step: bool = True, device: str = "cpu") -> dict:
    """All figures for one preset (run it in a fresh process for a clean peak-memory reading).

    On ``cuda`` the low-precision figures are fp16 and bf16 autocast (the training step with fp16
    uses the gradient scaler); on the CPU bf16 only, as fp16 autocast is a GPU path.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
    sync = torch.cuda.synchronize if cuda else None
    low = ("fp16", "bf16") if cuda else ("bf16",)

    def timed(fn, n=repeats):
        return best_of(fn, n, sync=sync)

    preset = get_preset(name)
    cfg = preset.model
    s = cfg.image_size
    model = straightforward(TalkingHeadModel(cfg)).to(dev)
    ep = random_episode(s, k, dev, cfg.texture)
    tex, tex8 = ep.texture, None if ep.texture is None else ep.texture.expand(8, -1, -1, -1).contiguous()
    xs, ys = ep.sources
    yt = ep.target[1]
    out = {"preset": name, "image_size": s, "device": _device_name(dev), "threads": threads, "k": k,
           "parameters": model.parameter_counts()}

    with torch.no_grad():
        model.eval()
        naive_frame = timed(lambda: model.G(yt, e_hat=model.E(xs, ys), texture=tex))
        lean_e = TalkingHeadModel(cfg).E.to(dev).eval().to(memory_format=torch.channels_last)
        out["E_ms_for_K"] = 1000 * timed(lambda: lean_e(xs, ys))
    out["naive_G_ms_per_frame"] = 1000 * naive_frame

    G = bake_spectral_norm(TalkingHeadModel(cfg).G).to(dev).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        psi = G.project(torch.randn(1, cfg.embed_dim, device=dev))
        out["G_ms_per_frame"] = 1000 * timed(lambda: G(yt, psi=psi, texture=tex))
        y8 = yt.expand(8, -1, -1, -1).contiguous()
        out["G_ms_per_frame_batch8"] = 1000 * timed(lambda: G(y8, psi=psi, texture=tex8)) / 8
        for amp in low:
            with torch.autocast(dev.type, dtype=autocast_dtype(amp, dev)):
                out[f"G_ms_per_frame_{amp}"] = 1000 * timed(lambda: G(yt, psi=psi, texture=tex))
                out[f"G_ms_per_frame_batch8_{amp}"] = 1000 * timed(lambda: G(y8, psi=psi, texture=tex8)) / 8
    out["inference_speedup"] = out["naive_G_ms_per_frame"] / out["G_ms_per_frame"]

    if train_step:
        info = DistInfo(device=dev)
        train_cfg = dataclasses.replace(preset.train, k=k)
        perceptual = random_perceptual_loss().to(dev).to(memory_format=torch.channels_last)
        n = max(1, repeats - 1)
        for amp in ("none", *low):
            trainer = MetaTrainer(TalkingHeadModel(cfg).to(dev).train(),
                                  dataclasses.replace(train_cfg, amp=amp), info, perceptual)
            key = "train_step_s" if amp == "none" else f"train_step_{amp}_s"
            out[key] = timed(lambda t=trainer: t.step(ep), n)

        naive = straightforward(TalkingHeadModel(cfg)).to(dev).train()
        opt_g = torch.optim.Adam([*naive.E.parameters(), *naive.G.parameters()], lr=5e-5)
        opt_d = torch.optim.Adam(naive.D.parameters(), lr=2e-4)
        out["naive_train_step_s"] = timed(lambda: naive_train_step(naive, perceptual, opt_g, opt_d, ep), n)
        out["train_speedup"] = out["naive_train_step_s"] / out["train_step_s"]
        for amp in low:
            out[f"train_speedup_{amp}"] = out["naive_train_step_s"] / out[f"train_step_{amp}_s"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return {k2: round(v, 3) if isinstance(v, float) else v for k2, v in out.items()}


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def run_model_benchmark(presets: list[str], **kwargs) -> list[dict]:
    """Measure each preset in its own spawned process (clean peak memory, no shared caches)."""
    ctx = multiprocessing.get_context("spawn")
    results = []
    for name in presets:
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            results.append(pool.submit(measure_preset, name, **kwargs).result())
    return results
