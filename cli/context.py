"""What every command shares: the top-level Settings, exit codes, JSON output and per-file error handling.

Kept apart from ``cli.main`` so a command module can be imported on its own (``import cli.model``)
without a circular import through the group that registers it.
"""

from __future__ import annotations

import dataclasses
import json

import click

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
