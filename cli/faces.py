"""Face-pipeline commands: ``landmarks``, ``prepare`` and ``info``."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from cli.context import EXIT_PARTIAL, Settings, emit_json, pass_settings, per_file

DEFAULT_LANDMARKS_OUT = "sfumato-output/landmarks"


def backend_options(fn):
    """Options shared by every command that finds faces."""
    @click.option("--backend", type=click.Choice(["dlib", "fan"]), default="dlib", show_default=True,
                  help="Landmark network: dlib's shape predictor (offline) or FAN (face-alignment).")
    @click.option("--fan-weights", type=click.Path(), envvar="SFUMATO_FAN_WEIGHTS",
                  help="FAN weight file (2DFAN4-11f355bf06.pth.tar) or its folder; "
                       "env SFUMATO_FAN_WEIGHTS.")
    @click.option("--detector", type=click.Choice(["hog", "cnn"]), default="hog", show_default=True,
                  help="dlib face detector: HOG (fast) or CNN (robust, slow on a CPU).")
    @click.option("--detect-max-side", type=click.IntRange(min=64), default=480, show_default=True,
                  help="Detect on a copy scaled to this long side (retries at full size).")
    @click.option("--face-index", type=click.IntRange(min=0), default=0, show_default=True,
                  help="Which face to follow when several: 0 = largest, 1 = next, ...")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def make_backend(backend: str, fan_weights: str | None, detector: str, detect_max_side: int):
    """Build the chosen landmark backend."""
    from generator.faces.backends import create_backend

    kwargs = {"detector": detector, "detect_max_side": detect_max_side}
    if backend == "fan":
        kwargs["weights"] = fan_weights
    return create_backend(backend, **kwargs)


@click.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("-o", "--out", type=click.Path(file_okay=False), default=DEFAULT_LANDMARKS_OUT,
              show_default=True, help="Folder for the landmark files and previews.")
@backend_options
@click.option("--detect-every", type=click.IntRange(min=1), default=8, show_default=True,
              help="Run the detector every N frames; track by landmarks in between.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--format", "formats", type=click.Choice(["npz", "json", "both"]), default="both",
              show_default=True, help="Landmark file format(s).")
@click.option("--no-overlay", is_flag=True, help="Do not write the overlay preview.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_settings
def landmarks(settings: Settings, inputs, out, backend, fan_weights, detector, detect_max_side,
              face_index, detect_every, max_frames, formats, no_overlay, as_json):
    """Find a face and its 68 landmarks in every frame of videos or images.

    Writes INPUT.landmarks.npz / .json (per frame: points, box, or the reason there is no face) and
    an overlay preview (mp4 for a video, png for an image) into --out. With no INPUT it runs on a
    built-in sample clip made from scikit-image's astronaut photo.
    """
    from generator.corpus.prepare import collect_inputs
    from generator.faces.extract import extract_landmarks
    from generator.faces.tracking import TrackerConfig
    from generator.io.samples import write_astronaut_clip
    from generator.io.video import check_writable

    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create output folder {out_dir}: {exc.strerror}") from None
    check_writable(out_dir / "probe")
    if inputs:
        files = [f.path for f in collect_inputs(inputs)[0]]
        if not files:
            raise click.ClickException("no video or image files found in the inputs")
    else:
        files = [write_astronaut_clip(out_dir / "astronaut.mp4")]
        if not as_json and settings.verbosity >= 0:
            click.echo(f"no input given: made the built-in sample clip {files[0]}", err=True)
    face_backend = make_backend(backend, fan_weights, detector, detect_max_side)
    tracker = TrackerConfig(detect_every=detect_every, face_index=face_index)
    def one(path):
        stem = out_dir / Path(path).stem
        ext = "mp4" if _is_video(path) else "png"
        overlay_path = None if no_overlay else Path(f"{stem}.overlay.{ext}")
        track = extract_landmarks(path, face_backend, tracker, max_frames, overlay_path,
                                  progress=settings.progress and not as_json)
        files_out = {}
        if formats in ("npz", "both"):
            files_out["npz"] = f"{stem}.landmarks.npz"
        if formats in ("json", "both"):
            files_out["json"] = f"{stem}.landmarks.json"
        track.save(files_out.get("npz"), files_out.get("json"))
        if overlay_path is not None:
            files_out["overlay"] = str(overlay_path)
        return {**track.summary(), "outputs": files_out}

    results, failures = per_file(files, one, as_json, _print_track)
    if as_json:
        emit_json({"results": results, "failed": failures})
    if failures:
        raise SystemExit(EXIT_PARTIAL if results else 1)


def _is_video(path) -> bool:
    from generator.io.video import is_image_path

    return not is_image_path(path)


def _print_track(summary: dict) -> None:
    n, ok = summary["frames"], summary["frames_with_face"]
    fps = summary["fps_processed"]
    click.echo(f"{summary['input']}: face in {ok}/{n} frames"
               + (f", {fps:.0f} frames/s" if fps else ""))
    if summary["warning"]:
        click.echo(f"  warning: {summary['warning']}", err=True)
    missing = summary["missing"]
    if missing:
        shown = ", ".join(f"{m['index']} ({m['reason']})" for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        click.echo(f"  frames without a face: {shown}{more}")
    for kind, path in summary["outputs"].items():
        click.echo(f"  {kind}: {path}")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Corpus folder (created; rerun with the same arguments to resume).")
@click.option("--frames", "frames_per_video", type=click.IntRange(min=1), default=32,
              show_default=True, help="Evenly spaced frames sampled per video.")
@click.option("--size", type=click.IntRange(min=8), default=256, show_default=True,
              help="Crop side in pixels.")
@click.option("--margin", type=click.FloatRange(min=0.5, max=4.0), default=1.6, show_default=True,
              help="Crop side as a multiple of the landmark box (paper: 1.5-1.8).")
@click.option("--align/--no-align", default=False, show_default=True,
              help="Rotate crops so the eye line is level.")
@backend_options
@click.option("--identities", type=click.Path(exists=True, dir_okay=False),
              help="CSV with columns path (or file) and identity.")
@click.option("--identity-from", type=click.Choice(["auto", "folder", "stem"]), default="auto",
              show_default=True, help="Identity of each video when no CSV: its folder's name, its "
              "file name, or auto (the sub-folder of a folder argument, e.g. people/alice/*.mp4, "
              "else the file name).")
@click.option("--image-format", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
@click.option("--no-landmark-images", is_flag=True, help="Do not store rasterised landmark images.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parallel worker processes.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_settings
def prepare(settings: Settings, inputs, out, frames_per_video, size, margin, align, backend,
            fan_weights, detector, detect_max_side, face_index, identities, identity_from,
            image_format, no_landmark_images, workers, as_json):
    """Build a meta-training corpus from talking-head videos (files or folders).

    For each video: evenly spaced frames as face crops, their 68 landmarks and landmark images, and a
    record.json (source hash, fps, frames kept and skipped with reasons, settings). Bad inputs are
    listed and the rest still done; a killed run resumes where it stopped.
    """
    from generator.corpus.prepare import PrepareConfig, prepare_corpus
    from generator.faces.crop import CropParams

    config = PrepareConfig(
        frames_per_video=frames_per_video, crop=CropParams(size=size, margin=margin, align=align),
        backend=backend, detector=detector, detect_max_side=detect_max_side,
        fan_weights=fan_weights, face_index=face_index, image_format=image_format,
        landmark_images=not no_landmark_images, identity_from=identity_from)
    if backend == "fan":  # fail before any work if the weights are missing
        from generator.faces.backends import fan_weights_path

        fan_weights_path(fan_weights)
    summary = prepare_corpus(inputs, out, config, identities_csv=identities, workers=workers,
                             progress=settings.progress and not as_json)
    if as_json:
        emit_json(summary.to_dict())
    else:
        _print_prepare(summary, settings)
    if summary.failed:
        raise SystemExit(EXIT_PARTIAL if len(summary.failed) < len(summary.outcomes) else 1)


def _print_prepare(summary, settings: Settings) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, soft_wrap=True)
    if settings.verbosity >= 0:
        table = Table(title=f"corpus {summary.out_dir}", show_lines=False)
        for col in ("input", "identity", "status", "kept", "skipped", "note"):
            table.add_column(col, overflow="fold")
        for o in summary.outcomes:
            style = {"done": "green", "exists": "cyan", "failed": "red"}[o.status]
            status = "already done" if o.status == "exists" else o.status
            table.add_row(Path(o.path).name, o.identity, f"[{style}]{status}[/]",
                          str(o.frames_kept), str(o.frames_skipped), o.reason)
        console.print(table)
    else:
        for o in summary.failed:
            click.echo(f"failed: {o.path}: {o.reason}", err=True)
    d = summary.to_dict()
    console.print(f"{d['done']} done, {d['already_done']} already done, {d['failed']} failed; "
                  f"{d['frames_kept']} frames in {d['seconds']:.1f} s -> {summary.out_dir}")
    if summary.ignored:
        console.print(f"ignored {len(summary.ignored)} files without a video/image extension")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info(inputs, as_json):
    """Show what a video or image holds: size, fps, frames, duration, rotation, audio."""
    from generator.io.video import MediaReader

    def one(path):
        with MediaReader(path) as reader:
            return {**reader.info.to_dict(), "truncated": reader.truncated,
                    "warning": reader.warning}

    def report(row):
        path = row["path"]
        extra = f", rotated {row['rotation']} deg" if row["rotation"] else ""
        audio = ", audio" if row["has_audio"] else ""
        if row["kind"] == "image":
            click.echo(f"{path}: image {row['width']}x{row['height']}")
        else:
            click.echo(f"{path}: {row['codec']} {row['width']}x{row['height']}, "
                       f"{row['fps']:g} fps, {row['frame_count']} frames, "
                       f"{row['duration']:.2f} s{extra}{audio}")
        if row["warning"]:
            click.echo(f"  warning: {row['warning']}", err=True)

    rows, failures = per_file(inputs, one, as_json, report)
    if as_json:
        emit_json({"results": rows, "failed": failures})
    if failures:
        raise SystemExit(EXIT_PARTIAL if rows else 1)
