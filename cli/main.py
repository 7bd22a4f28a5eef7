"""The ``sfumato`` command: a click group whose commands parse options and call one library function.

Errors become one line on stderr and a non-zero exit (``--debug`` shows the traceback instead).
Heavy libraries are imported inside the commands so ``--help`` answers at once.
"""

from __future__ import annotations

import logging
import sys

import click

from cli.context import (
    EXIT_INTERNAL,
    EXIT_PARTIAL,
    Settings,
    SfumatoGroup,
    emit_json,
    pass_settings,
    per_file,
)
from generator import __version__

__all__ = ["cli", "EXIT_INTERNAL", "EXIT_PARTIAL", "Settings", "emit_json", "pass_settings", "per_file"]


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
    from cli import bench, datasets, detect, faces, model, provenance

    for command in (faces.landmarks, faces.prepare, faces.info, model.train, model.calibrate, model.export,
                    model.finetune, model.generate, model.presets, provenance.keys, provenance.sign,
                    provenance.verify, bench.bench, datasets.dataset, detect.detect, detect.scan):
        cli.add_command(command)


_register()
