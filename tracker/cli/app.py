"""The `facetrack` command: one click group, the version, and every command mounted from its module.

A module per command group: run.py (`run`), stream.py (`info`, `subscribe`), bench.py, keys.py,
batch.py, demo.py, engines.py, models.py, train.py and viz.py (`render`, `plot`, `doctor`, `preview`).
"""

from __future__ import annotations

import click

from facetrack.tracker.cli.common import setup_logging
from facetrack.tracker.core.versions import package_version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(version=package_version("facetrack") or "unknown", prog_name="facetrack")
def app(verbose: int) -> None:
    """Real-time face tracking: landmarks, head pose, ARKit blendshapes and eye state, streamed to
    animation clients (ZeroMQ, VMC, Live Link) and written to files."""
    setup_logging(verbose)


def _mount_subcommands() -> None:
    from facetrack.tracker.cli.batch import batch_command
    from facetrack.tracker.cli.bench import bench
    from facetrack.tracker.cli.demo import demo_command
    from facetrack.tracker.cli.engines import engines_group
    from facetrack.tracker.cli.keys import keys
    from facetrack.tracker.cli.models import models_group
    from facetrack.tracker.cli.run import run
    from facetrack.tracker.cli.stream import info, subscribe
    from facetrack.tracker.cli.train import train_group
    from facetrack.tracker.cli.viz import doctor_command, plot_command, preview_command, render_command

    for command in (run, info, subscribe, bench, keys, demo_command, engines_group, models_group, train_group,
                    render_command, plot_command, doctor_command, preview_command):
        app.add_command(command)
    app.add_command(batch_command, name="batch")


_mount_subcommands()


def main() -> None:
    app(prog_name="facetrack")
