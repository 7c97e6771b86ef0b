"""The `facetrack` command: one click group, the version, and every command mounted from its module.

A module per command group: run.py (`run`), stream.py (`info`, `subscribe`), bench.py, keys.py,
batch.py, demo.py, engines.py, models.py, train.py and viz.py (`render`, `plot`, `doctor`, `preview`).
A command's module is imported only when that command runs (or `--help` lists them all), so
`facetrack run` does not pay for batch, Ray, the benchmark or the training code.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module

import click

from facetrack.tracker.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_SOURCE_FAILED,
    EXIT_USAGE,
    err,
    fail,
    interrupt_on_signals,
    setup_logging,
)
from facetrack.tracker.core import interrupts

# command name -> (module under facetrack.tracker.cli, the click command's name in it)
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run"),
    "info": ("stream", "info"),
    "subscribe": ("stream", "subscribe"),
    "bench": ("bench", "bench"),
    "keys": ("keys", "keys"),
    "demo": ("demo", "demo_command"),
    "engines": ("engines", "engines_group"),
    "models": ("models", "models_group"),
    "train": ("train", "train_group"),
    "render": ("viz", "render_command"),
    "plot": ("viz", "plot_command"),
    "doctor": ("viz", "doctor_command"),
    "preview": ("viz", "preview_command"),
    "batch": ("batch", "batch_command"),
}


class _LazyGroup(click.Group):
    """A click group whose commands are imported from their modules when first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*_COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = _COMMANDS[cmd_name]
        return getattr(import_module(f"facetrack.tracker.cli.{module}"), attribute)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: the installed version is looked up only when asked (reading metadata costs every start)."""
    if not value or ctx.resilient_parsing:
        return
    from facetrack.tracker.core.versions import package_version

    click.echo(f"facetrack, version {package_version('facetrack') or 'unknown'}")
    ctx.exit()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
def app(verbose: int) -> None:
    """Real-time face tracking: landmarks, head pose, ARKit blendshapes and eye state, streamed to
    animation clients (ZeroMQ, VMC, Live Link) and written to files."""
    setup_logging(verbose)


def main() -> None:
    """The command, where every error ends as one line on stderr: a usage error (`error: ...; see
    facetrack run --help`) exits 2, an exception no command put in words exits 1 (-v: its traceback), and
    Ctrl-C or SIGTERM at any point (engines still loading included) exits 130."""
    interrupt_on_signals()
    try:
        code = app.main(prog_name="facetrack", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # `facetrack` or a group alone: its help, as click shows it
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
        fail(f"{exc.format_message().rstrip('.')}{where}", EXIT_USAGE)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except click.Abort:  # Ctrl-C where the command does not handle it itself
        _exit_interrupted()
    except Exception as exc:  # noqa: BLE001 - a failure no command put in words: still one line; -v shows where
        if interrupts.requested():  # the signal surfaced as another exception (a native module's import)
            _exit_interrupted()
        if logging.getLogger().isEnabledFor(logging.INFO):
            raise
        fail(f"{type(exc).__name__}: {exc} (`facetrack -v ...` shows where)", EXIT_SOURCE_FAILED)
    sys.exit(code if isinstance(code, int) else 0)


def _exit_interrupted() -> None:
    err.print("[yellow]Interrupted.")
    sys.exit(EXIT_INTERRUPTED)
