"""Speed and quality benchmarks: ``sfumato bench faces | model | provenance | quality | realism | generate |
scan | perceptual | build-speed``. The dataset commands moved to ``sfumato dataset`` (``cli/datasets.py``);
their old ``bench build`` etc. names still work, marked deprecated."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from cli.context import Settings, emit_json, pass_settings


@click.group()
def bench():
    """Measure speed and quality."""


@bench.command("faces")
@click.argument("videos", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", type=click.Choice(["dlib", "fan"]), default="dlib", show_default=True)
@click.option("--fan-weights", type=click.Path(), envvar="SFUMATO_FAN_WEIGHTS")
@click.option("--detect-every", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-frames", type=click.IntRange(min=1))
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per video; the fastest counts.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Process this many videos at once (one process each).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_settings
def faces(settings: Settings, videos, backend, fan_weights, detect_every, max_frames, repeats,
          workers, as_json):
    """Frames per second of detect + 68 landmarks + crop, with per-stage milliseconds.

    With no VIDEO it runs on the built-in astronaut sample clip.
    """
    from benchmarks.speed.faces import run_face_benchmark, run_parallel_face_benchmark
    from generator.io.samples import write_astronaut_clip

    kwargs = dict(backend=backend, detect_every=detect_every, max_frames=max_frames,
                  fan_weights=fan_weights, repeats=repeats)
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(videos) or [str(write_astronaut_clip(Path(tmp) / "astronaut.mp4"))]
        if workers > 1:
            jobs = paths * max(1, -(-workers // len(paths)))
            result = run_parallel_face_benchmark(jobs, workers=workers, **kwargs)
            rows = result["per_video"]
        else:
            rows = [run_face_benchmark(p, **kwargs) for p in paths]
            result = {"per_video": rows}
    if as_json:
        emit_json(result)
        return
    for r in rows:
        ms = r["ms_per_frame"]
        click.echo(f"{Path(r['video']).name} ({r['resolution']}, {r['frames']} frames, "
                   f"{r['backend']}, detect every {r['detect_every']}): {r['fps']} frames/s; "
                   f"ms/frame decode {ms['decode']}, detect {ms['detect']}, "
                   f"landmarks {ms['landmarks']}, crop {ms['crop']}; "
                   f"{r['ms_per_detection']} ms per detection")
    if workers > 1:
        click.echo(f"{workers} workers together: {result['fps']} frames/s "
                   f"({result['fps_including_startup']} including process start-up)")


@bench.command("model")
@click.option("--preset", "presets", multiple=True,
              help="Preset(s) to measure (default: all but the test_ ones).")
@click.option("--k", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--no-train-step", is_flag=True, help="Skip the (slow) training-step timing.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="On cuda, fp16 and bf16 autocast are measured; on the CPU, bf16.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def model(presets, k, repeats, threads, no_train_step, device, as_json):
    """Parameters, E/G milliseconds, train-step seconds and peak memory per preset, next to a
    straightforward re-implementation of the same networks."""
    from benchmarks.speed.model import run_model_benchmark
    from generator.model.config import get_preset, list_presets

    names = list(presets) or [n for n in list_presets() if not n.startswith("test_")]
    for n in names:
        get_preset(n)  # unknown names fail before any work
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError("--device cuda: no CUDA device is visible to PyTorch")
    rows = run_model_benchmark(names, k=k, repeats=repeats, threads=threads,
                               train_step=not no_train_step, device=device)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        c = r["parameters"]
        where = r["device"] if r["device"] != "cpu" else f"CPU, {r['threads']} threads"
        lows = [a for a in ("fp16", "bf16") if f"G_ms_per_frame_{a}" in r]
        click.echo(f"{r['preset']} ({r['image_size']} px, {where}): "
                   f"E {c['E'] / 1e6:.1f}M G {c['G'] / 1e6:.1f}M D {c['D'] / 1e6:.1f}M; "
                   f"E for K={r['k']}: {r['E_ms_for_K']:.1f} ms; G {r['G_ms_per_frame']:.1f} ms/frame "
                   f"({r['G_ms_per_frame_batch8']:.1f} in batches of 8; "
                   + "".join(f"{a} {r[f'G_ms_per_frame_{a}']:.1f} / {r[f'G_ms_per_frame_batch8_{a}']:.1f}; "
                             for a in lows)
                   + f"straightforward {r['naive_G_ms_per_frame']:.1f}, x{r['inference_speedup']:.1f})")
        if "train_step_s" in r:
            click.echo(f"  train step {r['train_step_s']:.3f} s"
                       + "".join(f", {r[f'train_step_{a}_s']:.3f} s with {a} autocast" for a in lows)
                       + f" (straightforward {r['naive_train_step_s']:.3f} s: x{r['train_speedup']:.1f}"
                       + "".join(f", x{r[f'train_speedup_{a}']:.1f}" for a in lows) + ")")
        mem = f"peak memory {r['peak_rss_mb']:.0f} MB"
        if "peak_gpu_mb" in r:
            mem += f", peak GPU memory {r['peak_gpu_mb']:.0f} MB"
        click.echo("  " + mem)


@bench.command("perceptual")
@click.option("--size", "sizes", multiple=True, type=click.IntRange(min=32),
              help="Image sizes (default 128 and 256).")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--preset", "presets", multiple=True,
              help="Presets whose meta-training step is timed (default small and paper).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def perceptual(sizes, batch, presets, repeats, threads, as_json):
    """Forward + backward ms and memory of the packaged perceptual loss (Lite0, Lite2), and its share of
    one meta-training step per preset."""
    from benchmarks.speed.perceptual import run_perceptual_benchmark
    from generator.model.config import get_preset

    for n in presets:
        get_preset(n)  # unknown names fail before any work
    r = run_perceptual_benchmark(tuple(sizes) or (128, 256), batch, tuple(presets) or ("small", "paper"),
                                 repeats, threads)
    if as_json:
        emit_json(r)
        return
    for row in r["loss"]:
        click.echo(f"{row['arch']} {row['size']} px x{row['batch']}: forward + backward "
                   f"{row['forward_backward_ms']:.1f} ms (forward {row['forward_ms']:.1f} ms), "
                   f"+{row['peak_rss_added_mb']:.0f} MB peak")
    for row in r["train_step"]:
        share = (f", the loss {1000 * row['loss_in_step_s']:.0f} ms = {100 * row['share_of_step']:.0f}% "
                 "of the step") if "share_of_step" in row else ""
        click.echo(f"{row['preset']} ({row['image_size']} px, K={row['k']}) step with content "
                   f"{row['content']}: {row['train_step_s']:.3f} s{share}, "
                   f"+{row['peak_rss_added_mb']:.0f} MB peak")


@bench.command("identity")
@click.argument("video", type=click.Path(exists=True, dir_okay=False))
@click.option("-s", "--source", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The source picture (or video: its first sampled frame) the output should show.")
@click.option("--frames", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def identity(video, source, frames, as_json):
    """dlib face-descriptor distance of VIDEO's sampled frames to the source's face (same person
    below 0.6)."""
    from benchmarks.quality.identity import identity_distances

    r = identity_distances(video, source, frames)
    if as_json:
        emit_json(r)
        return
    mean = "n/a" if r["mean"] is None else f"{r['mean']:.3f}"
    click.echo(f"{r['faces']} of {r['frames']} frames with a face: mean distance {mean}, "
               f"{100 * r['within_0.6']:.0f}% within 0.6 (dlib's same-person threshold)")


@bench.command("provenance")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True,
              help="Frames of the generated clip that signing is compared with.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def provenance(repeats, frames, as_json):
    """C2PA sign/verify time for a ~1 MB mp4 and a 256 px png; signing's share of one clip."""
    from benchmarks.speed.provenance import run_provenance_benchmark

    r = run_provenance_benchmark(repeats=repeats, clip_frames=frames)
    if as_json:
        emit_json(r)
        return
    click.echo(f"mp4 {r['mp4_bytes'] / 1e6:.2f} MB: sign {r['sign_mp4_ms']:.1f} ms, verify "
               f"{r['verify_mp4_ms']:.1f} ms ({r['verify_mp4_state']})")
    click.echo(f"png {r['png_bytes'] / 1e3:.0f} kB: sign {r['sign_png_ms']:.1f} ms, verify "
               f"{r['verify_png_ms']:.1f} ms ({r['verify_png_state']})")
    click.echo(f"generating a {r['clip_frames']}-frame {r['clip_preset']} clip: "
               f"{r['generate_clip_s']:.2f} s; signing it: {r['sign_clip_ms']:.1f} ms "
               f"= {r['sign_share_percent']:.2f}% of the total")


@bench.command("quality")
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Meta-trained checkpoint to evaluate (default: the bundled model).")
@click.option("-o", "--out", default="sfumato-output/quality", show_default=True,
              type=click.Path(file_okay=False), help="Folder for quality.json, quality.md, grid.png.")
@click.option("--shots", default="1,8,32", show_default=True, help="Values of T, comma-separated.")
@click.option("--frames", type=click.IntRange(min=1), default=8, show_default=True,
              help="Driving frames per video.")
@click.option("--finetune-steps", type=click.IntRange(min=0), default=40, show_default=True,
              help="Fine-tuning steps of the FT rows (0 leaves them out).")
@click.option("--temporal-frames", type=click.IntRange(min=0), default=8, show_default=True,
              help="Consecutive driving frames per video for the jitter columns (0 leaves them out).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@pass_settings
def quality(settings: Settings, videos, checkpoint, out, shots, frames, finetune_steps, temporal_frames,
            seed, as_json):
    """Self-reenactment quality on videos the model never saw: SSIM (whole and mouth), PSNR, CSIM,
    landmark error and frame-to-frame jitter, for copy-the-source, a piecewise-affine warp, and the
    model feed-forward and fine-tuned."""
    from benchmarks.quality.reenactment import QualityConfig, markdown_table, run_quality

    try:
        t_values = tuple(sorted({int(t) for t in shots.split(",")}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {shots!r}",
                                 param_hint="--shots") from None
    if not t_values or min(t_values) < 1:
        raise click.BadParameter("T values must be >= 1", param_hint="--shots")
    if temporal_frames == 1:
        raise click.BadParameter("use 0 (off) or at least 2 frames", param_hint="--temporal-frames")
    cfg = QualityConfig(shots=t_values, eval_frames=frames, finetune_steps=finetune_steps,
                        temporal_frames=temporal_frames, seed=seed)
    if checkpoint is None:
        from generator.inference.generate import BUNDLED_MODEL

        checkpoint = BUNDLED_MODEL
    summary = run_quality(list(videos), checkpoint, out, cfg,
                          progress=settings.progress and not as_json)
    if as_json:
        emit_json({k: v for k, v in summary.items() if k != "per_video"})
        return
    click.echo(markdown_table(summary), nl=False)
    if summary["reused_videos"]:
        click.echo(f"{summary['reused_videos']} video(s) reused from an earlier run in {out}/per_video")
    click.echo(f"written to {out}/quality.json, quality.md, grid.png")


@bench.command("realism")
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Meta-trained checkpoint whose D scores r (default: the bundled model).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder for realism.json, realism.md, realism.png.")
@click.option("--shots", type=click.IntRange(min=1), default=1, show_default=True,
              help="T source frames of the feed-forward person.")
@click.option("--frames", type=click.IntRange(min=1), default=16, show_default=True,
              help="Driving frames per video.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the AUCs and counts as JSON.")
@pass_settings
def realism(settings: Settings, videos, checkpoint, out, shots, frames, seed, as_json):
    """How well D's realism score r alone separates real frames from FF self-reenactments of videos
    the model never saw: frame ROC AUC (1.0 = perfect) at c0, c23 and c40, identity-agnostic and
    with the clip's own identity."""
    from benchmarks.quality.realism import RealismConfig, markdown_table, run_realism

    cfg = RealismConfig(shots=shots, eval_frames=frames, seed=seed)
    summary = run_realism(list(videos), checkpoint, out, cfg, progress=settings.progress and not as_json)
    if as_json:
        emit_json({k: v for k, v in summary.items() if k != "per_video"})
        return
    click.echo(markdown_table(summary), nl=False)
    click.echo(f"written to {out}/realism.json, realism.md, realism.png")


@bench.command("generate")
@click.argument("driver", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--preset", "presets", multiple=True, help="Preset(s) (default: small and paper).")
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True, help="As generate's (auto: bf16 where the CPU computes it natively).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def generate_speed(driver, presets, frames, threads, precision, as_json):
    """End-to-end generate frames/s per preset and the share of each stage (decode + landmarks,
    G, compose + encode, sign). With no DRIVER the built-in astronaut clip drives."""
    from benchmarks.speed.generate import run_generate_benchmark
    from generator.io.samples import write_astronaut_clip

    with tempfile.TemporaryDirectory() as tmp:
        drv = driver or str(write_astronaut_clip(Path(tmp) / "astronaut.mp4", n_frames=frames))
        rows = run_generate_benchmark(drv, tuple(presets) or ("small", "paper"), frames, threads,
                                      precision)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        shares = ", ".join(f"{k} {v}%" for k, v in r["share_percent"].items())
        click.echo(f"{r['preset']} ({r['size'][0]} px, {r['precision']}): {r['fps_after_person']} "
                   f"frames/s after the person is made ({r['fps_end_to_end']} end to end, "
                   f"{r['fps_with_face_models']} with reading dlib's models); {shares}; "
                   f"everything but G: {r['non_G_share_percent']}%")


@bench.command("scan")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False), help="Default: the bundled one.")
@click.option("--generator", type=click.Path(exists=True, dir_okay=False), help="Default: the bundled one.")
@click.option("--source", type=click.Path(exists=True, dir_okay=False),
              help="Video to make the 720p clip from (default: the astronaut sample).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--long-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Instead: scan a file this many minutes long after a warm-up, and report the time, "
                   "windows and how much peak memory grew (flat: close to 0).")
@click.option("--folder-files", type=click.IntRange(min=1),
              help="Instead: scan a folder of this many short clips in one warm process, and report the "
                   "time per file and how much peak memory grew after the first tenth.")
@click.option("--json", "as_json", is_flag=True)
def scan_speed(detector, generator, source, repeats, long_minutes, folder_files, as_json):
    """Seconds to scan a 10 s 720p clip (target 1.5 s on a 2-core CPU), per stage as the scan times them."""
    from benchmarks.speed.scan import run_folder_scan, run_long_scan, run_scan_speed

    if folder_files or long_minutes:
        if folder_files:
            r = run_folder_scan(folder_files, detector, source)
            line = (f"{r['files']} files in {r['seconds']} s ({r['seconds_per_file']} s each); peak memory "
                    f"{r['peak_rss_mib_after_first_tenth']} -> {r['peak_rss_mib_after_all']} MiB")
        else:
            r = run_long_scan(long_minutes, detector, source)
            line = (f"scan of a {r['clip']} file: {r['seconds']} s, {r['windows']} windows; peak memory "
                    f"{r['peak_rss_mib_after_warm_up']} -> {r['peak_rss_mib_after_long_scan']} MiB")
        if as_json:
            emit_json(r)
        else:
            click.echo(line)
        return
    r = run_scan_speed(detector, generator, source, repeats)
    if as_json:
        emit_json(r)
        return
    stages = ", ".join(f"{k} {v} s" for k, v in r["stage_seconds"].items())
    click.echo(f"scan of a {r['clip']} clip ({r['frames_sampled']} frames, {r['windows']} windows): "
               f"{r['seconds']} s ({stages})")


def _add_dataset_commands() -> None:
    from cli.datasets import DATASET_COMMANDS, build_speed, deprecated_alias

    bench.add_command(build_speed)
    for command in DATASET_COMMANDS:
        bench.add_command(deprecated_alias(command))


_add_dataset_commands()
