"""Benchmark dataset commands, ``sfumato dataset build | merge | perturb | export | import | round``.

Each parses its options and calls one library function in ``benchmarks/``. The same commands answer
under their old ``sfumato bench ...`` names, marked deprecated (``DATASET_COMMANDS``, ``deprecated_alias``).
"""

from __future__ import annotations

import copy
import os
import shlex
import sys
from typing import TYPE_CHECKING

import click

from cli.context import Settings, emit_json, pass_settings

if TYPE_CHECKING:  # the dataset modules import torch: keep `dataset --help` light
    from benchmarks.datasets.build import DatasetResult


def _csv(kind, name: str, text: str) -> tuple:
    try:
        values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated values, got {text!r}", param_hint=name) from None
    if not values:
        raise click.BadParameter("give at least one value", param_hint=name)
    return values


def _splits(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(v) for v in text.replace(",", "/").split("/")]
    except ValueError:
        parts = []
    if len(parts) != 3 or sum(parts) <= 0 or min(parts) < 0:
        raise click.BadParameter(f"expected three shares like 72/14/14, got {text!r}", param_hint="--splits")
    total = sum(parts)
    return tuple(p / total for p in parts)


def _checkpoint(checkpoint):
    if checkpoint is None:
        from generator.inference.generate import BUNDLED_MODEL

        return BUNDLED_MODEL
    return checkpoint


@click.command("build")
@click.argument("corpus", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Meta-trained generator (default: the bundled model).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--splits", default="72/14/14", show_default=True, help="train/val/test identity shares.")
@click.option("--methods", default="self,cross", show_default=True, help="Reenactment kinds.")
@click.option("--shots", default="1,8,32", show_default=True, help="Values of T.")
@click.option("--modes", default="FF,FT", show_default=True, help="Feed-forward and/or fine-tuned.")
@click.option("--fakes-per-real", type=click.IntRange(min=0), default=4, show_default=True,
              help="Fakes per real clip, round-robin over methods x T x modes (0: all of them).")
@click.option("--clips-per-identity", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--clip-frames", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--compressions", default="c0,c23,c40", show_default=True,
              help="FaceForensics++ levels: H.264 CRF 0 / 23 / 40.")
@click.option("--finetune-steps", type=click.IntRange(min=1), default=40, show_default=True,
              help="Steps of the FT mode.")
@click.option("--max-side", type=click.IntRange(min=64), default=512, show_default=True,
              help="Frames larger than this are scaled down.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split-seed", type=int, help="Seed of the identity split when it should differ from --seed "
              "(adversarial rounds keep one split while drawing new fakes).")
@click.option("--candidates", type=click.IntRange(min=1), default=1, show_default=True,
              help="Hard examples: candidates rendered per planned fake; the best that passes is kept.")
@click.option("--min-realism", type=float,
              help="Keep a fake only if its mean realism score r is at least this.")
@click.option("--realism-quantile", type=click.FloatRange(0, 1),
              help="... at least this quantile of the real clips' mean r (e.g. 0.5: as real as the median "
                   "real clip, to D).")
@click.option("--hard-for", type=click.Path(exists=True, dir_okay=False),
              help="A trained detector: among passing candidates keep the one it scores most real.")
@click.option("--shard", help="Make only shard i of n (i/n); under torchrun taken from RANK/WORLD_SIZE.")
@click.option("--keys-dir", type=click.Path(file_okay=False), envvar="SFUMATO_KEYS_DIR",
              help="Signing keys (default ~/.config/sfumato/keys, made on first use).")
@click.option("--cert", type=click.Path(dir_okay=False), help="Your own signing chain (PEM).")
@click.option("--key", type=click.Path(dir_okay=False), help="Its private key (PEM).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Render, fine-tune and score here (torchrun: each rank its local GPU).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_settings
def build(settings: Settings, corpus, checkpoint, out, splits, methods, shots, modes, fakes_per_real,
          clips_per_identity, clip_frames, compressions, finetune_steps, max_side, seed, split_seed,
          candidates, min_realism, realism_quantile, hard_for, shard, keys_dir, cert, key, device, as_json):
    """Build a real/fake benchmark dataset from a prepared CORPUS (see `sfumato prepare`).

    Identity-disjoint splits; real clips and self/cross-reenacted fakes of the same people, every
    clip at c0/c23/c40, fakes C2PA-signed with manifest-free copies, per-frame realism scores,
    metadata.jsonl/csv and a dataset card. Rerun the same command to resume a killed build.

    Hard examples: with --candidates K, --min-realism / --realism-quantile and --hard-for, each fake
    is the best of K candidates that passes; the card records what was tried and dropped.
    """
    from benchmarks.datasets.build import build_dataset
    from benchmarks.datasets.plan import BuildConfig, parse_shard
    from generator.io.files import sha256_file
    from generator.provenance import SigningOptions

    cfg = BuildConfig(splits=_splits(splits), methods=_csv(str, "--methods", methods),
                      shots=_csv(int, "--shots", shots), modes=_csv(str, "--modes", modes),
                      fakes_per_real=fakes_per_real, clips_per_identity=clips_per_identity,
                      clip_frames=clip_frames, compressions=_csv(str, "--compressions", compressions),
                      finetune_steps=finetune_steps, max_side=max_side, seed=seed, split_seed=split_seed,
                      candidates=candidates, min_realism=min_realism, realism_quantile=realism_quantile,
                      hard_for_sha256=sha256_file(hard_for) if hard_for else None)
    command = "sfumato " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    summary = build_dataset(corpus, _checkpoint(checkpoint), out, cfg, shard=parse_shard(shard),
                            signing=SigningOptions(keys_dir=keys_dir, cert=cert, key=key), command=command,
                            progress=settings.progress and not as_json, device=device, hard_for=hard_for)
    if as_json:
        emit_json(summary.to_dict())
        return
    click.echo(f"{summary.made} clip(s) made, {summary.reused} kept from an earlier run, "
               f"{summary.skipped_now} skipped"
               + (f", {summary.filtered_now} dropped by the filter" if summary.filtered_now else "")
               + f", in {summary.seconds:.0f} s")
    _report_dataset(summary.dataset, out)
    if summary.dataset is None and summary.shard:
        i, n = summary.shard
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            click.echo(f"rank {i} of {n} done; rank 0 writes the metadata once every rank is")
        else:
            click.echo(f"shard {i}/{n} done; when every shard is, run "
                       f"`sfumato dataset merge {out} [OTHER_SHARD_FOLDERS...]`")


def _report_dataset(ds: DatasetResult | None, out) -> None:
    if ds is None:
        return
    click.echo(f"dataset {out}: {ds.clips} clips, {ds.rows} files; card {ds.card}")
    for s in ds.skipped_identities:
        click.echo(f"  skipped identity {s['identity']}: {s['reason']}", err=True)
    for s in ds.skipped_clips:
        click.echo(f"  skipped clip {s['clip_id']}: {s['reason']}", err=True)
    auc = ", ".join(f"{k} {v}" for k, v in ds.realism_auc.items() if v is not None)
    if auc:
        click.echo(f"realism score alone, clip AUC: {auc}")
    f = ds.filter
    if f:
        click.echo(f"hard examples: {f['kept_fakes']} of {f['planned_fakes']} fakes kept; "
                   f"{f['candidates_passed']} of {f['candidates_tried']} candidates passed"
                   + (f" r >= {f['threshold']}" if f["threshold"] is not None else "")
                   + f"; {f['extra_generation_share']:.0%} of candidate rendering not kept")


@click.command("merge")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.argument("shards", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def merge(out, shards, as_json):
    """Finish a sharded build: bring SHARDS' clips into OUT (same build only) and write the metadata
    and card. With no SHARDS, every shard wrote into OUT itself."""
    from benchmarks.datasets.build import merge_shards

    ds = merge_shards(out, list(shards))
    if as_json:
        emit_json(ds.to_dict())
    else:
        _report_dataset(ds, out)


@click.command("perturb")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--type", "code", required=True,
              type=click.Choice(["CS", "CC", "BW", "GNC", "GB", "PX", "VC", "JPEG", "RS", "mix"],
                                case_sensitive=False),
              help="DeeperForensics-1.0 perturbation (PX = its 'JPEG', pixelation), a true JPEG "
                   "re-encode, a resize, or a random mix.")
@click.option("--level", type=click.IntRange(1, 5), default=3, show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=2, show_default=True,
              help="Perturbations per clip in mix mode.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--from", "source", default="c0", show_default=True, help="Compression level to start from.")
@click.option("--crf", type=click.IntRange(0, 51), default=23, show_default=True,
              help="Encode the perturbed clips at this CRF (VC uses its level's).")
@click.option("-o", "--out", type=click.Path(file_okay=False),
              help="Output dataset (default DATASET/perturbed/TYPE_LEVEL).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="The dataset's generator, to score the perturbed clips' realism (else left empty).")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def perturb(settings: Settings, dataset, code, level, count, seed, source, crf, out, checkpoint, as_json):
    """Perturbed copy of a dataset (real and fake alike), recorded in its metadata."""
    from benchmarks.datasets.perturb import perturb_dataset

    rescore = None
    if checkpoint:
        from benchmarks.datasets.build import dataset_rescorer

        rescore = dataset_rescorer(dataset, checkpoint)
    summary = perturb_dataset(dataset, out, code.upper() if code.lower() != "mix" else "mix", level,
                              count=count, seed=seed, source_compression=source, crf=crf, rescore=rescore,
                              progress=settings.progress and not as_json)
    if as_json:
        emit_json(summary)
        return
    click.echo(f"{summary.get('out', out)}: " + ", ".join(
        f"{k} {v}" for k, v in summary.get("counts", {}).items() if isinstance(v, int)))
    for f in summary.get("failed", []):
        click.echo(f"  failed {f.get('clip_id', f)}: {f.get('error', f.get('reason', ''))}", err=True)


@click.command("export")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["deepfakebench", "ffpp", "csv"]))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False))
@click.option("--frames", type=click.IntRange(min=1), default=32, show_default=True,
              help="Evenly spaced frames per video (deepfakebench).")
@click.option("--size", type=click.IntRange(min=8), default=256, show_default=True,
              help="Face crop side (deepfakebench; 1.3x margin, aligned).")
@click.option("--compression", "compressions", multiple=True, help="Only these levels (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def export(settings: Settings, dataset, fmt, out, frames, size, compressions, as_json):
    """Write a dataset in a layout other tools read: DeepfakeBench frame folders + JSON index,
    a FaceForensics++-like tree, or one flat CSV."""
    from benchmarks.datasets.export import export_dataset

    summary = export_dataset(dataset, out, fmt, frames=frames, size=size,
                             compressions=tuple(compressions) or None,
                             progress=settings.progress and not as_json)
    if as_json:
        emit_json(summary)
        return
    click.echo(f"exported {dataset} as {fmt} into {out} (summary: {out}/export.json)")
    for f in summary.get("failures", []):
        click.echo(f"  failed {f.get('id', '?')}: {f.get('reason') or f.get('error', '')}", err=True)


@click.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]),
              help="Split of files whose path names none (default test).")
@click.option("--compression", help="Compression of files whose path names none (c0, c23, c40).")
@click.option("--method", help="Method name of fakes whose path names none (default: from a "
              "fake_<method>_*.mp4 file name, else fake).")
@click.option("--label", type=click.Choice(["real", "fake"]),
              help="Label of files whose path has no real/fake folder (e.g. --label fake for a flat folder "
                   "of other generators' clips, such as shared/data/fakes_dev).")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def import_(settings: Settings, folder, out, split, compression, method, label, as_json):
    """Read a folder of labelled real/fake videos (real/ fake/, or FaceForensics++'s original_sequences/
    manipulated_sequences) into sfumato's metadata format, files left in place."""
    from benchmarks.datasets.importer import import_folder

    summary = import_folder(folder, out, split=split, compression=compression, method=method, label=label,
                            progress=settings.progress and not as_json)
    if as_json:
        emit_json(summary)
        return
    click.echo(f"imported {folder} into {out}: " + ", ".join(
        f"{k} {v}" for k, v in summary.get("counts", {}).items() if isinstance(v, int)))
    for s in summary.get("skipped", []):
        click.echo(f"  skipped {s.get('path', s)}: {s.get('reason', '')}", err=True)


@click.command("build-speed")
@click.argument("corpus", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Generator (default: the bundled model).")
@click.option("--identities", type=click.IntRange(min=3), default=6, show_default=True)
@click.option("--clip-frames", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--candidates", type=click.IntRange(min=2),
              help="Also measure hard examples: K candidates per fake against a realism bar.")
@click.option("--realism-quantile", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="The bar with --candidates: this quantile of the real clips' mean r.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def build_speed(settings: Settings, corpus, checkpoint, identities, clip_frames, candidates, realism_quantile,
                as_json):
    """Clips per minute of `dataset build` per compression level, and where the time goes; with
    --candidates, what the realism filter accepts and costs next to the same build without it."""
    from benchmarks.datasets.plan import BuildConfig
    from benchmarks.speed.build import run_build_speed, run_filter_cost

    cfg = BuildConfig(splits=(0.34, 0.33, 0.33), clip_frames=clip_frames)
    if candidates:
        r = run_filter_cost(corpus, _checkpoint(checkpoint), identities, cfg, candidates, realism_quantile,
                            progress=settings.progress and not as_json)
        if as_json:
            emit_json(r)
            return
        click.echo(f"plain: {r['plain']['made']} clips in {r['plain']['seconds']:.0f} s; hard ({candidates} "
                   f"candidates, r >= {r['threshold']}): {r['hard']['made']} clips in "
                   f"{r['hard']['seconds']:.0f} s "
                   f"(x{r['wall_time_ratio']})")
        click.echo(f"acceptance rate {r['acceptance_rate']:.1%}, fakes kept {r['kept_share']:.1%}, "
                   f"{r['extra_generation_share']:.1%} of candidate rendering not kept")
        return
    r = run_build_speed(corpus, _checkpoint(checkpoint), identities, cfg,
                        progress=settings.progress and not as_json)
    if as_json:
        emit_json(r)
        return
    click.echo(f"{r['clips']} clips of {clip_frames} frames in {r['seconds']:.0f} s: "
               f"{r['clips_per_minute_all_levels']} clips/min with every level")
    click.echo("per level alone: " + ", ".join(f"{k} {v} clips/min"
                                                for k, v in r["clips_per_minute_per_level"].items()))
    click.echo("time: " + ", ".join(f"{k} {v}%" for k, v in r["share_percent"].items()))


@click.command("round")
@click.argument("corpus", type=click.Path(exists=True, file_okay=False))
@click.option("--generator", type=click.Path(exists=True, dir_okay=False),
              help="G_0: meta-trained generator (default: the bundled model).")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False),
              help="D_0: a detector made for that generator (default: the bundled detector).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Round folder.")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Adversarial rounds after round 0.")
@click.option("--splits", default="72/14/14", show_default=True, help="train/val/test identity shares.")
@click.option("--shots", default="1,8,32", show_default=True, help="Values of T.")
@click.option("--modes", default="FF,FT", show_default=True)
@click.option("--fakes-per-real", type=click.IntRange(min=0), default=4, show_default=True)
@click.option("--clip-frames", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--compressions", default="c0,c23,c40", show_default=True, help="Must include c23 and c40.")
@click.option("--finetune-steps", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--max-side", type=click.IntRange(min=64), default=512, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--adv-steps", type=click.IntRange(min=1), default=200, show_default=True,
              help="Steps of G against the frozen detector per round.")
@click.option("--detector-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="lambda_DET: the detector loss against the paper's L_CNT + L_ADV.")
@click.option("--detector-epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Epochs fine-tuning the previous detector on the union of rounds.")
@click.option("--detector-lr", type=click.FloatRange(min=0, min_open=True), default=5e-6, show_default=True,
              help="Its learning rate (fine-tuning: far below the recipe's 2e-4).")
@click.option("--hard", "hard_candidates", type=click.IntRange(min=1), default=1, show_default=True,
              help="K > 1: each round's fakes are the best of K candidates for the previous detector.")
@click.option("--robust-backbone", help="Also train a detector of this timm backbone on round 0 only and "
              "evaluate it on every round (does the hardness transfer?).")
@click.option("--eval-frames", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--quality-videos", type=click.IntRange(min=0), default=4, show_default=True,
              help="Held-out videos for CSIM/SSIM before and after each round's fine-tuning (0: skip).")
@click.option("--keys-dir", type=click.Path(file_okay=False), envvar="SFUMATO_KEYS_DIR")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_settings
def round_(settings: Settings, corpus, generator, detector, out, rounds, splits, shots, modes, fakes_per_real,
           clip_frames, compressions, finetune_steps, max_side, seed, adv_steps, detector_weight,
           detector_epochs, detector_lr, hard_candidates, robust_backbone, eval_frames, quality_videos,
           keys_dir, device, as_json):
    """Adversarial rounds: G fine-tuned against the last detector, a new dataset, the detector
    fine-tuned on the union; every detector evaluated on every round's test split.

    Writes OUT/round<n>/ (generator, dataset, detector, evaluation), OUT/table.{json,md,png} and
    OUT/rounds.json (settings, commands, hashes, wall times). Rerun the same command to resume.
    """
    from benchmarks.adversarial.against_detector import AdversarialConfig
    from benchmarks.adversarial.rounds import RoundConfig, run_rounds
    from benchmarks.datasets.plan import BuildConfig
    from detector.scan import BUNDLED_DETECTOR
    from generator.provenance import SigningOptions

    build_cfg = BuildConfig(splits=_splits(splits), shots=_csv(int, "--shots", shots),
                            modes=_csv(str, "--modes", modes), fakes_per_real=fakes_per_real,
                            clip_frames=clip_frames, compressions=_csv(str, "--compressions", compressions),
                            finetune_steps=finetune_steps, max_side=max_side, seed=seed)
    cfg = RoundConfig(rounds=rounds, build=build_cfg,
                      adversarial=AdversarialConfig(steps=adv_steps, detector_weight=detector_weight,
                                                    seed=seed),
                      detector_epochs=detector_epochs, detector_lr=detector_lr,
                      hard_candidates=hard_candidates,
                      robust_backbone=robust_backbone, eval_frames=eval_frames, quality_videos=quality_videos)
    command = "sfumato " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    summary = run_rounds(corpus, _checkpoint(generator), detector or BUNDLED_DETECTOR, out, cfg,
                         signing=SigningOptions(keys_dir=keys_dir), command=command,
                         progress=settings.progress and not as_json, device=device)
    if summary is None:  # a torchrun rank other than 0
        click.echo(f"rank {os.environ.get('RANK')} done; rank 0 writes the table")
        return
    if as_json:
        emit_json(summary)
        return
    from benchmarks.adversarial.table import table_markdown

    click.echo(table_markdown(summary["table"]))
    click.echo(f"round table: {out}/table.md, {out}/table.png; per round: "
               + ", ".join(f"round {k} {v:.0f} s" for k, v in summary["round_seconds_this_run"].items()))


@click.group("dataset")
def dataset():
    """Benchmark datasets: build, merge, perturb, export, import, and generator-vs-detector rounds."""


DATASET_COMMANDS = (build, merge, perturb, export, import_, round_)
for _command in DATASET_COMMANDS:
    dataset.add_command(_command)


def deprecated_alias(command: click.Command, group: str = "dataset") -> click.Command:
    """A copy of ``command`` for its old place, which still works but says where it moved."""
    alias = copy.copy(command)
    alias.deprecated = f"Use `sfumato {group} {command.name}`."
    return alias
