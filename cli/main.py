"""The ``sfumato`` command: a click group whose commands parse options and call one library function.

Errors become one line on stderr and a non-zero exit (``--debug`` shows the traceback instead).
Heavy libraries are imported inside the commands so ``--help`` answers at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

import click

from generator import __version__

EXIT_ERROR = 1
EXIT_PARTIAL = 3  # some inputs failed, the rest were done
EXIT_INTERNAL = 70  # a bug: please report it


@dataclasses.dataclass
class Settings:
    """Options of the top-level group, handed to every command through click's context."""

    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose
    debug: bool = False

    @property
    def progress(self) -> bool:
        """Show progress bars (not when quiet, nor when stderr is not a terminal in CI logs)."""
        return self.verbosity >= 0


class SfumatoGroup(click.Group):
    """A click group that turns sfumato's errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        from generator.errors import SfumatoError

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("sfumato: interrupted", err=True)
            ctx.exit(130)
        except SfumatoError as exc:
            if _settings(ctx).debug:
                raise
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # an unexpected failure: still one line, but say it is a bug
            if _settings(ctx).debug:
                raise
            click.echo(f"Error: internal error: {type(exc).__name__}: {exc} "
                       "(run with --debug for the traceback and please report it)", err=True)
            ctx.exit(EXIT_INTERNAL)


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_object(Settings)
    return obj if obj is not None else Settings()


pass_settings = click.make_pass_decorator(Settings, ensure=True)


def per_file(items, fn, as_json: bool, report=None) -> tuple[list, list[dict]]:
    """Run ``fn`` on each item; sfumato errors are collected (and printed unless ``as_json``) so the
    other items still run. ``report(result)`` prints a success in human mode."""
    from generator.errors import SfumatoError

    results, failures = [], []
    for item in items:
        try:
            result = fn(item)
        except SfumatoError as exc:
            failures.append({"input": str(item), "error": str(exc)})
            if not as_json:
                click.echo(f"Error: {exc}", err=True)
            continue
        results.append(result)
        if report is not None and not as_json:
            report(result)
    return results, failures


def emit_json(data) -> None:
    """Print one JSON document to stdout (the ``--json`` output every reporting command has)."""
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(cls=SfumatoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="sfumato")
@click.option("-v", "--verbose", count=True, help="More detail (repeat for debug logs).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and results; no progress bars.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """sfumato: few-shot talking heads for deepfake research and defence.

    Face pipeline, benchmark data, detector and C2PA provenance around the model of
    Zakharov et al., "Few-Shot Adversarial Learning of Realistic Neural Talking Head Models"
    (ICCV 2019).
    """
    settings = Settings(verbosity=-1 if quiet else verbose, debug=debug)
    ctx.obj = settings
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from cli import bench, detect, faces, model, provenance

    for command in (faces.landmarks, faces.prepare, faces.info, model.train, model.calibrate, model.export,
                    model.finetune, model.generate, model.presets, provenance.keys, provenance.sign,
                    provenance.verify, bench.bench, detect.detect, detect.scan):
        cli.add_command(command)


_register()
