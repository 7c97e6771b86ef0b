"""`facetrack demo`: make the demo clip (tracker/viz/demo_clip.py) and track it as `facetrack run` would."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.console import Console

from facetrack.tracker.core.errors import FacetrackError

err = Console(stderr=True)


@click.command("demo")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"),
              show_default=True, help="Where the clip, the results and the overlay video go.")
@click.option("--no-render", is_flag=True, help="Skip the overlay video (faster).")
@click.pass_context
def demo_command(ctx: click.Context, out_dir: Path, no_render: bool) -> None:
    """Track a demo clip that every install can make: a public-domain portrait (NASA's Eileen Collins,
    shipped by scikit-image) with the head moving, two blinks and a wink. Writes the results and an
    overlay video and prints a summary; needs no webcam, GPU or download."""
    from facetrack.tracker.cli.run import run
    from facetrack.tracker.viz.demo_clip import PORTRAIT_CREDIT, make_demo_clip

    clip = out_dir / "astronaut.mp4"
    results = out_dir / "results.jsonl"
    overlay = None if no_render else out_dir / "overlay.mp4"
    err.print(f"Making the demo clip {clip} from {PORTRAIT_CREDIT}...", soft_wrap=True)
    try:
        make_demo_clip(clip)
    except FacetrackError as exc:
        raise click.ClickException(str(exc)) from None
    command = ["facetrack", "run", str(clip), "--out", str(results)]
    if overlay is not None:
        command += ["--render", str(overlay)]
    err.print(f"Tracking it: [bold]{shlex.join(command)}[/]", soft_wrap=True)
    ctx.invoke(run, source=str(clip), outputs=(results,), render=overlay)
