"""Model commands: ``train`` (meta-learning), ``finetune`` (few-shot person) and ``presets``."""

from __future__ import annotations

import dataclasses

import click

from cli.context import EXIT_PARTIAL, Settings, emit_json, pass_settings


def _preset_names() -> list[str]:
    from generator.model.config import list_presets

    return list_presets()


def content_options(fn):
    """Options choosing the content loss and its local weight files."""
    from generator.model.config import CONTENT_LOSSES

    fn = click.option("--vggface", type=click.Path(), envvar="SFUMATO_VGGFACE",
                      help="VGGFace (VGG16) weight file for --content-loss vgg; env SFUMATO_VGGFACE.")(fn)
    fn = click.option("--vgg19", type=click.Path(), envvar="SFUMATO_VGG19",
                      help="torchvision VGG19 weight file (vgg19-dcbb9e9d.pth) for --content-loss vgg; "
                           "env SFUMATO_VGG19.")(fn)
    fn = click.option("--content-loss", type=click.Choice(list(CONTENT_LOSSES)),
                      help="L_CNT. " + "; ".join(f"{k}: {v}" for k, v in CONTENT_LOSSES.items())
                           + ". Default: vgg when --vgg19/--vggface are given, else lite0.")(fn)
    return fn


@click.command()
@click.argument("corpus", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: config, stats.csv, TensorBoard, samples, checkpoint.")
@click.option("--preset", type=click.Choice(_preset_names()), default="small", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), help="Total steps (default: the preset's).")
@click.option("--k", type=click.IntRange(min=1), help="Frames per episode for E (paper: 8).")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--checkpoint-every", type=click.IntRange(min=1))
@click.option("--sample-every", type=click.IntRange(min=1))
@click.option("--log-every", type=click.IntRange(min=1))
@click.option("--lr-g", type=click.FloatRange(min=0, min_open=True),
              help="Learning rate of E, G and P (paper: 5e-5).")
@click.option("--lr-d", type=click.FloatRange(min=0, min_open=True),
              help="Learning rate of D (paper: 2e-4).")
@click.option("--pixel-loss", type=click.FloatRange(min=0),
              help="Weight of an extra L1 loss on pixels (not in the paper; default: the preset's, "
                   "0 for paper/small, 2 for the texture presets).")
@click.option("--match-loss", type=click.FloatRange(min=0),
              help="Weight of L_MCH (paper: 80; the authors' later code: 10).")
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]), default="none", show_default=True,
              help="Autocast: bf16 on CPU or CUDA, fp16 on CUDA.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Default: cuda if available.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--init-from", type=click.Path(dir_okay=False, exists=True),
              help="Start E and G from this meta checkpoint (same preset; fresh D and optimisers).")
@content_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_settings
def train(settings: Settings, corpus, out, preset, steps, k, batch_size, checkpoint_every,
          sample_every, log_every, lr_g, lr_d, pixel_loss, match_loss, amp, seed, device, resume,
          init_from, content_loss, vgg19, vggface, as_json):
    """Meta-train E, G and D on a corpus made by 'sfumato prepare'.

    Runs under torchrun too (one process per GPU, or gloo processes on a CPU):
    torchrun --nproc_per_node 2 -m cli train CORPUS -o RUN
    """
    from generator.model.config import get_preset
    from generator.training.losses import choose_content
    from generator.training.meta_train import train as run_training

    base = get_preset(preset).train
    overrides = {k2: v for k2, v in dict(steps=steps, k=k, batch_size=batch_size,
                                          checkpoint_every=checkpoint_every,
                                          sample_every=sample_every, log_every=log_every,
                                          lr_g=lr_g, lr_d=lr_d).items()
                 if v is not None}
    content_loss = choose_content(content_loss, vgg19, vggface, base.losses.content)
    losses = dataclasses.replace(base.losses, content=content_loss)
    if pixel_loss is not None:
        losses = dataclasses.replace(losses, pixel_weight=pixel_loss)
    if match_loss is not None:
        losses = dataclasses.replace(losses, match_weight=match_loss)
    cfg = dataclasses.replace(base, amp=amp, seed=seed, losses=losses, **overrides)
    if content_loss == "none" and settings.verbosity >= 0:
        click.echo("warning: --content-loss none: no perceptual loss (a CPU smoke run, not a "
                   "model to use)", err=True)
    result = run_training(corpus, out, preset=preset, train_cfg=cfg, resume=resume, vgg19=vgg19,
                          vggface=vggface, device=device, progress=settings.progress and not as_json,
                          init_from=init_from)
    if result.rank != 0:  # under torchrun only rank 0 reports
        return
    summary = {"run_dir": str(result.run_dir), "step": result.step, "seconds": round(result.seconds, 1),
               "skipped_steps": result.skipped_steps, "checkpoint": str(result.checkpoint),
               "last": result.last}
    if as_json:
        emit_json(summary)
    else:
        last = ", ".join(f"{k2} {v:.4g}" for k2, v in result.last.items() if k2 != "step")
        click.echo(f"trained to step {result.step} in {result.seconds:.0f} s -> {result.checkpoint}")
        if last:
            click.echo(f"  last step: {last}")


@click.command()
@click.argument("corpus", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Meta-trained checkpoint whose D is calibrated (E, G and P stay frozen).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (rerun with the same arguments to resume).")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fresh-d", is_flag=True,
              help="Start D's trunk afresh (W kept), for a D that adversarial training left constant.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--resize", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of a downscale to 40-100% and back, for real and fake alike.")
@click.option("--jpeg", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of a JPEG re-encode at quality 30-95, for real and fake alike.")
@click.option("--trunk-from-e", is_flag=True,
              help="With --fresh-d: start D's down blocks from E's trained ones (same architecture).")
@click.option("--d-trunk", type=click.Choice(["conv", "lite0"]), default=None,
              help="With --fresh-d: D's trunk; lite0 = the frozen ImageNet EfficientNet-Lite0 with a "
                   "learnt read-out (default: the checkpoint's).")
@click.option("--hard-shot", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of fakes rendered from the source shot farthest in pose from the target.")
@click.option("--loss", type=click.Choice(["pairwise", "paired", "hinge"]), default="pairwise",
              show_default=True,
              help="pairwise: softplus(r_fake - r_real) over all pairs of the batch (an AUC surrogate); "
                   "paired: each real frame against its own rendering only; hinge: the paper's eq. (6).")
@click.option("--pool", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Episodes rendered once (E and G are frozen) that every step draws its batch from; "
                   "0 renders each step's batch afresh.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_settings
def calibrate(settings: Settings, corpus, checkpoint, out, steps, batch_size, lr, seed, fresh_d,
              checkpoint_every, resize, jpeg, trunk_from_e, d_trunk,
              hard_shot, loss, pool, device, as_json):
    """Train D alone (E, G, P frozen) on real vs generated frames of the training corpus, through the
    same resize and JPEG degradations, so the realism score r separates them."""
    from generator.training.calibrate import CalibrateConfig
    from generator.training.calibrate import calibrate as run_calibrate

    cfg = CalibrateConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, fresh=fresh_d,
                          trunk_from_e=trunk_from_e, d_trunk=d_trunk or "", hard_shot=hard_shot,
                          loss=loss, pool=pool,
                          checkpoint_every=checkpoint_every, resize=resize, jpeg=jpeg)
    r = run_calibrate(checkpoint, corpus, out, cfg, device, settings.progress and not as_json)
    if as_json:
        emit_json(r)
    else:
        click.echo(f"calibrated D to step {r['step']} -> {r['out']} (last 50 steps: L_D {r['L_D']:.3f}, "
                   f"r real - fake {r['r_gap_agnostic']:.2f} agnostic, {r['r_gap_person']:.2f} with w')")


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Release file to write (.safetensors).")
@click.option("--dtype", type=click.Choice(["fp16", "bf16", "fp32"]), default="fp16", show_default=True,
              help="Storage type of the weights (they load as fp32).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(checkpoint, out, dtype, as_json):
    """Strip a training checkpoint to a release file: E, G and D weights and the training metadata,
    without optimiser state (a small preset: 153 MB -> 26 MB in fp16)."""
    from generator.model.checkpoint import export_model

    r = export_model(checkpoint, out, dtype)
    if as_json:
        emit_json(r)
        return
    click.echo(f"wrote {r['out']}: {r['preset']} step {r['step']}, {r['bytes'] / 1e6:.1f} MB "
               f"({r['dtype']}), sha256 {r['sha256'][:16]}...")


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint", type=click.Path(),
              help="Meta-training checkpoint (checkpoint.safetensors of a run; default: the bundled "
                   "model).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Person file to write (.safetensors).")
@click.option("--steps", type=click.IntRange(min=0), default=100, show_default=True,
              help="Fine-tuning steps; 0 = feed-forward (no fine-tuning).")
@click.option("--shots", type=click.IntRange(min=1), help="Use at most T shots (default: all).")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--adv-weight", type=click.FloatRange(min=0),
              help="Weight of -r in G's loss (default: 1 for a conv D, 0.01 for a calibrated Lite0 D, "
                   "whose r has a free scale).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@content_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_settings
def finetune(settings: Settings, sources, checkpoint, out, steps, shots, batch_size, seed, adv_weight,
             device, content_loss, vgg19, vggface, as_json):
    """Make a person from T pictures or video frames (T = 1: one photo or painting).

    Writes a self-contained person file: G with the person's AdaIN parameters, D with the
    person's identity vector, and how it was made (source hashes, checkpoint hash, seed).
    """
    from generator.model.config import LossConfig
    from generator.training.finetune import FinetuneConfig, finetune_to_file
    from generator.training.losses import choose_content

    content_loss = choose_content(content_loss, vgg19, vggface, LossConfig().content)
    cfg = FinetuneConfig(steps=steps, batch_size=batch_size, seed=seed,
                         losses=LossConfig(content=content_loss), adv_weight=adv_weight)
    result = finetune_to_file(checkpoint, list(sources), out, cfg, shots=shots, vgg19=vgg19,
                              vggface=vggface, device=device,
                              progress=settings.progress and not as_json)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(f"{result.mode} person from {result.shots} shot(s) -> {result.out} "
                   f"(content loss, {result.content_loss}: {result.content_before:.4g} -> "
                   f"{result.content_after:.4g})")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def presets(as_json):
    """List the model presets with their sizes and parameter counts."""
    from generator.model.config import get_preset, list_presets
    from generator.model.talking_head import TalkingHeadModel

    rows = []
    for name in list_presets():
        p = get_preset(name)
        counts = TalkingHeadModel(p.model).parameter_counts()
        rows.append({"name": name, "image_size": p.model.image_size, "description": p.description,
                     "parameters": counts, "k": p.train.k})
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        c = r["parameters"]
        click.echo(f"{r['name']:10s} {r['image_size']:4d} px  E {c['E'] / 1e6:5.1f}M  "
                   f"G {c['G'] / 1e6:5.1f}M  D {c['D'] / 1e6:5.1f}M  K={r['k']}  {r['description']}")


@click.command()
@click.option("-s", "--source", "sources", multiple=True, type=click.Path(),
              help="Source picture or video of the person (repeatable; default: the built-in "
                   "astronaut photo).")
@click.option("-d", "--driver", type=click.Path(),
              help="Driving video, or a landmark file from 'sfumato landmarks' (default: a "
                   "built-in talking track).")
@click.option("--checkpoint", type=click.Path(), help="Meta-trained checkpoint (default: the "
              "bundled model).")
@click.option("--person", type=click.Path(dir_okay=False), help="Person file from 'sfumato "
              "finetune' (instead of --checkpoint and --source).")
@click.option("--shots", type=click.IntRange(min=1), help="Use at most T source frames.")
@click.option("--finetune-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Few-shot fine-tuning steps before rendering (0 = feed-forward).")
@click.option("--motion", type=click.Choice(["relative", "absolute"]), default="relative",
              show_default=True, help="relative keeps the source's face shape; absolute copies the "
              "driver's.")
@click.option("--size", type=click.IntRange(min=16), help="Output side in pixels.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Output frame rate.")
@click.option("--start", type=click.IntRange(min=0), default=0, help="First driver frame.")
@click.option("--end", type=click.IntRange(min=1), help="One past the last driver frame.")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=4.0, show_default=True,
              help="Length of the built-in track.")
@click.option("--preview", is_flag=True, help="Write driver | landmarks | output side by side.")
@click.option("--no-audio", is_flag=True, help="Do not carry the driving video's audio over.")
@click.option("--paste", type=click.Choice(["none", "source", "driver"]), default="none",
              show_default=True, help="Paste the face back into the full source picture or the "
              "driving video's frames (--size then caps the long side).")
@click.option("--png-dir", type=click.Path(file_okay=False), help="Also export frames as PNG.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", type=click.Path(), default="sfumato-output/generated.mp4",
              show_default=True, help="Output mp4 (a folder in batch mode).")
@click.option("--batch", "batch_dir", type=click.Path(exists=True, file_okay=False),
              help="Batch mode: one video per picture in this folder, written into --out; a rerun "
                   "keeps outputs already signed for the same picture, model and settings.")
@click.option("--no-sign", is_flag=True, help="Do not C2PA-sign the output (a warning is logged).")
@click.option("--keys-dir", type=click.Path(file_okay=False), envvar="SFUMATO_KEYS_DIR",
              help="Signing keys (default ~/.config/sfumato/keys, made on first use).")
@click.option("--cert", type=click.Path(dir_okay=False), help="Your own signing chain (PEM).")
@click.option("--key", type=click.Path(dir_okay=False), help="Its private key (PEM).")
@click.option("--vgg19", type=click.Path(), envvar="SFUMATO_VGG19",
              help="VGG19 weights: --finetune-steps then fits the paper's VGG loss (else the packaged "
                   "Lite0 features).")
@click.option("--vggface", type=click.Path(), envvar="SFUMATO_VGGFACE",
              help="VGGFace weights for --finetune-steps.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
              show_default=True, help="Render under autocast (fp16 needs --device cuda); auto: bf16 "
                                      "on a CPU that computes it natively, else fp32.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_settings
def generate(settings: Settings, sources, driver, checkpoint, person, shots, finetune_steps, motion,
             size, fps, start, end, seconds, preview, no_audio, paste, png_dir, seed, out, batch_dir,
             no_sign, keys_dir, cert, key, vgg19, vggface, device, precision, as_json):
    """Make a signed talking-head video of a face from one or a few pictures.

    With no options: the bundled model animates scikit-image's astronaut with a built-in
    talking track. The driver's motion is transferred relative to its first frame onto the
    source's own landmarks, so the source keeps its face shape.
    """
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from generator.faces.backends import create_backend

    # dlib's models (~1 s to read, the GIL released) load while torch and the model import.
    loader = ThreadPoolExecutor(1)
    backend = loader.submit(create_backend, "dlib") if not person and not batch_dir else None
    loader.shutdown(wait=False)

    from generator.inference.generate import BatchFailure, GenerateConfig, SkippedOutput
    from generator.inference.generate import generate as run_generate
    from generator.provenance import SigningOptions

    if no_sign:
        click.echo("warning: --no-sign: the output will carry no C2PA manifest", err=True)
    cfg = GenerateConfig(motion=motion, shots=shots, finetune_steps=finetune_steps, seed=seed,
                         size=size, fps=fps, start=start, end=end, seconds=seconds, preview=preview,
                         png_dir=png_dir, audio=not no_audio, paste=paste, precision=precision)
    signing = SigningOptions(enabled=not no_sign, keys_dir=keys_dir, cert=cert, key=key)

    def report(r):
        if as_json:
            return
        if isinstance(r, BatchFailure):
            click.echo(f"Error: {r.error}", err=True)
        elif isinstance(r, SkippedOutput):
            click.echo(f"kept {r.output}: already made from this picture, model and settings")
        else:
            click.echo(f"wrote {r.output}: {r.frames} frames at {r.fps:g} fps "
                       f"({r.fps_achieved:.1f} frames/s achieved), driver {r.driver}, "
                       f"manifest {r.manifest}")
            if r.driver_frames_without_face:
                click.echo(f"  {len(r.driver_frames_without_face)} driver frame(s) without a "
                           "face held the previous landmarks", err=True)

    progress = settings.progress and not as_json
    failures = []
    if batch_dir:  # resumable: outputs already signed for this picture, model and settings are kept
        from generator.inference.generate import generate_batch

        if sources or person:
            raise click.UsageError("--batch takes its sources from the folder: leave out --source "
                                   "and --person")
        batch = generate_batch(batch_dir, out, driver, checkpoint, cfg, signing, device, progress,
                               vgg19, vggface, on_result=report)
        results, failures, summary = batch.results, batch.failures, batch.to_dict()
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        result = run_generate(out, list(sources), driver, checkpoint, person, cfg, signing, device,
                              progress, vgg19, vggface, backend.result if backend else None)
        report(result)
        results, summary = [result], result.to_dict()
    if as_json:
        emit_json(summary)
    if failures:
        raise SystemExit(EXIT_PARTIAL if results else 1)
