"""Cost of the packaged perceptual loss (``generator.training.perceptual``): ``sfumato bench perceptual``.

Per feature network (EfficientNet-Lite0, Lite2) and image size: milliseconds of one forward +
backward of the loss on a batch (x_hat requires grad; x is the no-grad target), and the peak memory
it adds. Per model preset: seconds of one meta-training step (batch 1, the preset's K) with no
content network and with each feature loss, and the loss's own forward + backward inside that step
over the step's time (its share).
Every figure comes from its own spawned process, so peak-memory readings do not mix.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import resource

import torch

from benchmarks.speed.timing import best_of

ARCHS = ("tf_efficientnet_lite0", "tf_efficientnet_lite2")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_loss(arch: str, size: int, batch: int = 4, repeats: int = 3, threads: int = 2) -> dict:
    """Forward + backward ms of the feature loss on (batch, 3, size, size), and peak memory added."""
    from generator.training.perceptual import FeatureContentLoss

    torch.set_num_threads(threads)
    loss = FeatureContentLoss.from_package(arch)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    x_hat = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1).requires_grad_(True)
    before = _rss_mb()

    def step():
        x_hat.grad = None
        loss(x_hat, x).backward()

    seconds = best_of(step, repeats)
    with torch.no_grad():
        forward = best_of(lambda: loss(x_hat, x), repeats)
    return {"arch": arch, "size": size, "batch": batch, "threads": threads,
            "forward_backward_ms": round(1000 * seconds, 1), "forward_ms": round(1000 * forward, 1),
            "peak_rss_added_mb": round(_rss_mb() - before, 1)}


def measure_train_step(preset: str, content: str, repeats: int = 2, threads: int = 2,
                       k: int | None = None) -> dict:
    """Seconds of one meta-training step of ``preset`` with content loss ``content`` (or "none"),
    and, for a feature loss, the seconds of that loss's own forward + backward inside the step (one
    frame at the preset's size, as the step computes it)."""
    from benchmarks.speed.model import random_episode
    from generator.model.config import get_preset
    from generator.model.talking_head import TalkingHeadModel
    from generator.training.distributed import DistInfo
    from generator.training.losses import build_content_loss
    from generator.training.meta_train import MetaTrainer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    p = get_preset(preset)
    train = dataclasses.replace(p.train, k=k or p.train.k,
                                losses=dataclasses.replace(p.train.losses, content=content))
    model = TalkingHeadModel(p.model).train()
    s = p.model.image_size
    ep = random_episode(s, train.k, torch.device("cpu"), p.model.texture)
    trainer = MetaTrainer(model, train, DistInfo(device=torch.device("cpu")), None)
    trainer.step(ep)  # allocations of the networks' own passes, before the reading
    before = _rss_mb()
    trainer.perceptual = build_content_loss(train.losses)
    seconds = best_of(lambda: trainer.step(ep), repeats)
    out = {"preset": preset, "image_size": s, "k": train.k, "content": content, "threads": threads,
           "train_step_s": round(seconds, 3), "peak_rss_added_mb": round(_rss_mb() - before, 1)}
    if trainer.perceptual is not None:
        x = ep.target[0]
        x_hat = (x + 0.1).clamp(-1, 1).requires_grad_(True)

        def loss_only():
            x_hat.grad = None
            trainer.perceptual(x_hat, x).backward()

        loss_s = best_of(loss_only, repeats + 2)
        out["loss_in_step_s"] = round(loss_s, 4)
        out["share_of_step"] = round(loss_s / seconds, 3)
    return out


def _spawned(fn, *args, **kwargs):
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def run_perceptual_benchmark(sizes: tuple[int, ...] = (128, 256), batch: int = 4,
                             presets: tuple[str, ...] = ("small", "paper"), repeats: int = 3,
                             threads: int = 2) -> dict:
    """Every figure of the module docstring, each in its own process."""
    losses = [_spawned(measure_loss, a, s, batch, repeats, threads) for a in ARCHS for s in sizes]
    steps = []
    for preset in presets:
        # The share is the loss's own time over the whole step's: the difference of two whole
        # steps is within their noise at 128 px (measured: 0.79 s without, 0.75 s with).
        steps += [_spawned(measure_train_step, preset, c, max(1, repeats - 1), threads)
                  for c in ("none", "lite0", "lite2")]
    return {"loss": losses, "train_step": steps}
