"""Detector commands: ``sfumato detect train | fuse | eval | robustness`` and ``sfumato scan``."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import Settings, emit_json, pass_settings


@click.group()
def detect():
    """Train and evaluate the deepfake detector on sfumato datasets."""


@detect.command("train")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--preset", type=click.Choice(["paper", "small"]), default="paper", show_default=True,
              help="paper: DeepfakeBench's recipe (256 px, 32 frames, 10 epochs); small: 128 px for a CPU.")
@click.option("--backbone", help="Any timm model name (default tf_efficientnet_lite0; "
              "tf_efficientnet_lite2 also has packaged ImageNet weights).")
@click.option("--pretrained", default="imagenet", show_default=True,
              help="Where the backbone starts: imagenet (the ImageNet weights that ship with sfumato, "
                   "for tf_efficientnet_lite0/lite2), none (from scratch), or a local weight file "
                   "(e.g. timm's model.safetensors).")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate (paper: 2e-4).")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]),
              help="constant (paper) or cosine decay to 0 over the run.")
@click.option("--frames", type=click.IntRange(min=1), help="Frames per training video (paper: 32).")
@click.option("--compressions", help="Training files' levels, comma-separated (default c23).")
@click.option("--generator", type=click.Path(exists=True, dir_okay=False),
              help="Generator checkpoint for the realism evidence (default: the bundled model).")
@click.option("--sbi", type=click.FloatRange(0, 1),
              help="Share of real training crops replaced by self-blended fakes of themselves "
                   "(Shiohara & Yamasaki 2022; default 0).")
@click.option("--degrade", is_flag=True, default=None,
              help="Degrade every training crop, real or fake alike (face 96-256 px, JPEG 30-95 or "
                   "H.264 CRF 18-40, blur, noise), so size and compression are no cue.")
@click.option("--balance/--no-balance", default=None,
              help="Draw real crops more often and weigh both classes equally in each batch's loss "
                   "(default on).")
@click.option("--select-fakes", type=click.Path(exists=True, file_okay=False),
              help="A dataset of other generators' fakes (sfumato dataset import --label fake) scored "
                   "against the val split's real videos each epoch; best = highest mean of that AUC and the "
                   "val AUC. Never trained on.")
@click.option("--no-fusion", is_flag=True, help="Skip fitting the fusion on the val split.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def train(settings: Settings, dataset, out, preset, backbone, pretrained, epochs, batch_size, lr,
          lr_schedule, frames, compressions, generator, sbi, degrade, balance, select_fakes, no_fusion,
          device, seed, as_json):
    """Train the detector on DATASET's train split (resumable: rerun to continue), then fit the fusion
    of its scores with the realism score on the val split into OUT/detector.safetensors."""
    import dataclasses
    from pathlib import Path

    from detector.evaluate import fit_detector_fusion
    from detector.train import PRESETS, train_detector

    cfg = PRESETS[preset]
    changes = {"seed": seed}
    for key, value in (("backbone", backbone), ("epochs", epochs), ("batch_size", batch_size),
                       ("lr", lr), ("lr_schedule", lr_schedule), ("frames", frames), ("sbi", sbi),
                       ("degrade", degrade), ("balance", balance)):
        if value is not None:
            changes[key] = value
    if compressions:
        changes["compressions"] = tuple(c.strip() for c in compressions.split(",") if c.strip())
    cfg = dataclasses.replace(cfg, **changes)
    show = settings.progress and not as_json
    summary = train_detector(dataset, out, cfg, pretrained, device, show, select_fakes=select_fakes)
    if not no_fusion and summary.finished:
        summary.fusion = fit_detector_fusion(dataset, Path(out) / "best.safetensors",
                                             Path(out) / "detector.safetensors", generator,
                                             frames=32, progress=show)  # the protocol's 32 frames
    if as_json:
        emit_json(summary.to_dict())
        return
    click.echo(f"{summary.global_step} steps, {summary.epochs_done} epochs; loss "
               f"{summary.first_loss:.3f} -> {summary.last_loss:.3f}; best val video AUC "
               f"{summary.best.get('video_auc')}" + (
                   f", generalisation AUC {summary.best['generalisation_auc']:.3f}"
                   if summary.best.get("generalisation_auc") is not None else ""))
    for split, items in summary.missing_faces.items():
        if items:
            click.echo(f"  {len(items)} {split} video(s) with frames without a face (see summary.json)",
                       err=True)
    if summary.fusion is not None:
        click.echo(f"detector with fusion: {summary.fusion.out}")


@detect.command("fuse")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--detector", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False))
@click.option("--generator", type=click.Path(exists=True, dir_okay=False))
@click.option("--split", default="val", show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--identity", type=click.Choice(["agnostic", "clip"]), default="agnostic", show_default=True,
              help="r with w_0 only, or with the identity estimated from the clip itself.")
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="False-positive rate the verdict threshold is set for, on the "
                                      "split's real videos.")
@pass_settings
def fuse(settings: Settings, dataset, detector, out, generator, split, frames, identity, fpr):
    """Fit the fusion (calibrated logistic regression) of a trained detector with the realism score,
    and calibrate the verdict threshold for a false-positive rate on the split's real videos."""
    from detector.evaluate import fit_detector_fusion

    r = fit_detector_fusion(dataset, detector, out, generator, split, frames, identity, settings.progress,
                            fpr)
    cal = r.calibration
    click.echo(f"fitted on {r.videos} videos ({r.fake} fake): {out}; fake from p >= "
               f"{cal.fake_from:.4f} ({cal.measured_fpr:.1%} of {cal.real_videos} real videos, "
               f"target {cal.fpr:.0%})")


@detect.command("eval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--detector", type=click.Path(exists=True, dir_okay=False),
              help="Detector file (default: the bundled one).")
@click.option("--split", default="test", show_default=True)
@click.option("-o", "--out", default="sfumato-output/eval", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--generator", type=click.Path(exists=True, dir_okay=False))
@click.option("--frames", type=click.IntRange(min=1))
@click.option("--no-perturbed", is_flag=True, help="Leave out DATASET/perturbed/*.")
@click.option("--other-fakes", type=click.Path(exists=True, file_okay=False),
              help="Also score other generators' fakes (a dataset from `sfumato dataset import --label "
                   "fake`, e.g. of ../shared/data/fakes_dev) against the split's real c23 videos.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def eval_(settings: Settings, dataset, detector, split, out, generator, frames, no_perturbed,
          other_fakes, as_json):
    """Frame/video AUC, EER, AP, accuracy per compression and perturbation, for the backbone alone, the
    realism score alone and fused; ROC curves as PNG; everything as JSON."""
    from detector.evaluate import evaluate, markdown
    from detector.scan import BUNDLED_DETECTOR

    result = evaluate(dataset, detector or BUNDLED_DETECTOR, out, split, generator, frames,
                      not no_perturbed, settings.progress and not as_json, other_fakes)
    if as_json:
        emit_json({k: v for k, v in result.to_dict().items() if k != "per_video"})
        return
    click.echo(markdown(result), nl=False)
    click.echo(f"{result.videos_per_minute} videos/min; written to {out}/eval.json, eval.md, roc.png")


@detect.command("robustness")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--detector", "detectors", multiple=True, metavar="NAME=FILE",
              help="A detector to compare, as NAME=FILE (repeatable; default: the bundled one).")
@click.option("--split", default="val", show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("-o", "--out", default="sfumato-output/robustness", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def robustness(settings: Settings, dataset, detectors, split, frames, out, as_json):
    """p(fake) of the split's real clips against face size and H.264 CRF, per detector
    (robustness.json and robustness.png): does a small or compressed real face look fake to it?"""
    import numpy as np

    from detector.robustness import run
    from detector.scan import BUNDLED_DETECTOR
    from generator.errors import BadInputError

    named = {}
    for item in detectors or (f"bundled={BUNDLED_DETECTOR}",):
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise BadInputError(f"--detector {item!r}: give NAME=FILE with an existing file")
        named[name] = path
    result = run(dataset, named, out, split, frames)
    if as_json:
        emit_json(result)
        return
    for name, d in result["detectors"].items():
        worst = max(((k, x, float(np.median(list(v.values())))) for k in ("size", "crf")
                     for x, v in d[k].items()), key=lambda t: t[2])
        click.echo(f"{name}: highest median p(fake) of real clips {worst[2]:.2f} at {worst[0]} {worst[1]}")
    click.echo(f"written to {out}/robustness.json and robustness.png")


@detect.command("lomo")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", default="sfumato-output/lomo", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--made-fakes", type=click.Path(exists=True, dir_okay=False),
              help="made.jsonl of `sfumato detect clip-fakes`: its sfumato fakes join as a method, the other "
                   "kinds as training-only fakes.")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False),
              help="Frame classifier for the frames stream (default: the bundled one).")
@click.option("--fit", type=click.Path(dir_okay=False),
              help="Also write the stream bundle scan loads (--streams FILE), fitted on every clip and "
                   "calibrated on every real identity out of fold.")
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Stated false-positive rate of the threshold.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Identity folds.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def lomo(settings: Settings, data_dir, out, made_fakes, detector, fit, fpr, folds, bootstrap, as_json):
    """Leave-one-method-out over DATA_DIR's fakes (index.csv, e.g. ../shared/data), identity-grouped out
    of fold: per method and family AUC with 95% intervals, false-positive rate per condition bucket,
    ROC and FPR plots (lomo.json, lomo.md, *.png). Model choices are fixed in code; this only measures."""
    from detector.protocol import LomoConfig, run_protocol

    res = run_protocol(data_dir, out, made_fakes, detector, fit,
                       LomoConfig(folds=folds, fpr=fpr, bootstrap=bootstrap),
                       settings.progress and not as_json)
    if as_json:
        emit_json(res.to_dict())
        return
    for name, r in res.results.items():
        click.echo(f"{name}: mean AUC {r.mean_auc:.3f} (lowest {r.min_auc:.3f}), real clips called fake "
                   f"{r.fpr_nested:.1%}, {r.fpr_nested_widened:.1%} with widened buckets (nested out of "
                   f"fold, {r.real_clips} clips)")
    click.echo(f"written to {out}/lomo.md, lomo.json, roc_by_family.png, fpr_by_bucket.png"
               + (f"; bundle {res.bundle}" if res.bundle else ""))


@detect.command("clip-fakes")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", default="sfumato-output/clip-fakes", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--kind", "kinds", multiple=True, help="Kinds to make (repeatable; default: all): still_rigid, "
              "still_face, duplicated, interpolated, sfumato.")
@click.option("--seconds", type=click.FloatRange(min=0.5), default=4.0, show_default=True)
@pass_settings
def clip_fakes(settings: Settings, data_dir, out, kinds, seconds):
    """Fakes made from DATA_DIR's real clips alone (index.csv) for the clip-dynamics stream: a still
    moved with the head, a still face over a frozen frame, repeated or blended frames, and sfumato's
    own animated still. Resumable; logs made.jsonl for `sfumato detect lomo --made-fakes`."""
    from detector.data.clipfakes import KINDS, make_all_clip_fakes

    res = make_all_clip_fakes(data_dir, out, tuple(kinds) or KINDS, seconds, settings.progress)
    click.echo(f"{res.made} fakes from {res.clips} real clips ({res.failed} clips failed); log {res.log}")


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--detector", type=click.Path(exists=True, dir_okay=False),
              help="Detector file (default: the bundled one).")
@click.option("--generator", type=click.Path(exists=True, dir_okay=False),
              help="Generator checkpoint the detector's realism evidence needs (default: bundled).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a self-contained HTML report.")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Folder results (default scan-results).")
@click.option("--frames", type=click.IntRange(min=1),
              help="Evenly spaced frames for the per-frame view (default: 32 when the frame classifier "
                   "alone decides, 8 when the windows' evidence streams do).")
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="Verdict threshold (default: the detector's, calibrated for a stated false-positive "
                   "rate on real validation clips; 0.5 for a detector without one).")
@click.option("--unsure-band", type=click.FloatRange(0, 0.5),
              help="Half-width of the unsure band (default: the detector's calibration, else 0.15).")
@click.option("--faces", type=click.IntRange(min=1), default=1, show_default=True,
              help="Face tracks to follow (largest first); the file's verdict is its most suspicious face's.")
@click.option("--unreliable", type=click.Choice(["unsure", "keep"]), default="unsure", show_default=True,
              help="A fake/real verdict on a face under 64 px, a face in under half the frames or a heavily "
                   "compressed video: report it as unsure (with the label it would have had) or keep it.")
@click.option("--streams", default="auto", show_default=True,
              help="Evidence streams per window, stacked: auto (the bundle shipped for the bundled "
                   "detector), "
                   "off (the frame classifier alone), or a bundle file from `sfumato detect lomo --fit`.")
@click.option("--window", "window_seconds", type=click.FloatRange(min=0.5), default=4.0, show_default=True,
              help="Window length in seconds: the whole file is scored window by window.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def scan(settings: Settings, paths, detector, generator, report, out, frames, threshold, unsure_band, faces,
         unreliable, streams, window_seconds, as_json):
    """Evidence about suspicious videos or pictures: per-frame fake probability and realism score, a
    calibrated verdict, the C2PA state. Exit status: 0 real, 20 fake, 21 unsure, 22 no face, 1 error."""
    from detector.scan import ScanConfig, ScanError, Scanner, exit_status, scan_paths

    scanner = Scanner(detector, generator, ScanConfig(frames, threshold, unsure_band, faces=faces,
                                                     unreliable=unreliable, streams=streams,
                                                     window_seconds=window_seconds))
    res = scan_paths(list(paths), scanner, report, out, settings.progress and not as_json)
    if as_json:
        emit_json(res.results[0].to_dict() if len(res.results) == 1 and len(paths) == 1 else res.to_dict())
    else:
        for r in res.results:
            if isinstance(r, ScanError):
                click.echo(f"{r.file}: error: {r.error}", err=True)
                continue
            v, face = r.verdict, r.verdict_face
            p = "-" if v.probability_fake is None else f"{v.probability_fake:.3f}"
            where = f", window {v.window['start']:g}-{v.window['end']:g} s" if v.window else ""
            click.echo(f"{r.file}: {v.label} (p(fake) {p}, {v.method}{where}); manifest "
                       f"{r.manifest.get('state')}; face in {sum(face.face_found)}/{len(face.frames)} frames")
            for e in r.evidence:
                ep = "-" if e.probability_fake is None else f"{e.probability_fake:.3f}"
                click.echo(f"  [{e.stream} {ep}] {e.explanation}")
            for note in r.notes:
                click.echo(f"  {note}")
        if report:
            click.echo(f"report: {report}")
    raise SystemExit(exit_status(res.results))
