"""Benchmark commands: ``sfumato bench faces`` (and, as they land, quality and datasets)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from cli.main import Settings, emit_json, pass_settings


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
    from benchmarks.face_pipeline import run_face_benchmark, run_parallel_face_benchmark
    from generator.samples import write_astronaut_clip

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
