"""`facetrack render`, `plot`, `doctor` and `preview`: one `click.Command` each, mounted by tracker/cli/app.py.

`overlay_sinks` gives `facetrack run` its `--render FILE` and `--preview` sinks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console

from facetrack.adapters.preview import DEFAULT_PORT
from facetrack.tracker.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, err, interrupt_on_signals
from facetrack.tracker.core.errors import FacetrackError
from facetrack.tracker.core.sinks import Sink
from facetrack.tracker.sources.frame_source import FrameSource
from facetrack.tracker.viz.overlay import OverlayStyle

EXIT_FAILED = 1


def _style(landmarks: str, no_axes: bool, no_panel: bool, focal_px: float | None) -> OverlayStyle:
    return OverlayStyle(landmarks=landmarks, axes=not no_axes, panel=not no_panel, focal_px=focal_px)


def overlay_sinks(frames: FrameSource, render: Path | None = None, preview: bool = False,
                  preview_port: int = DEFAULT_PORT, focal_px: float | None = None,
                  on_calibrate: Callable[[], None] | None = None) -> tuple[FrameSource, list[Sink]]:
    """The source to run (wrapped in a FrameTap when drawing) and the render/preview sinks to add.

    With neither option the source comes back unchanged and no sink is added. `on_calibrate`: what the
    preview's calibrate key and button call (none: they are not offered).
    """
    if render is None and not preview:
        return frames, []
    from facetrack.adapters.preview import PreviewSink
    from facetrack.adapters.render_sink import FrameTap, RenderSink

    tap = FrameTap(frames)
    style = OverlayStyle(focal_px=focal_px)
    sinks: list[Sink] = []
    if render is not None:
        sinks.append(RenderSink(render, tap, style))
    if preview:
        sink = PreviewSink(tap, port=preview_port, style=style, on_calibrate=on_calibrate)
        if sink.url is not None:
            err.print(f"Preview: [bold]{sink.url}[/] (no display here; open it in a browser)")
        sinks.append(sink)
    return tap, sinks


_landmarks_option = click.option("--landmarks", type=click.Choice(["mesh", "points", "none"]), default="mesh",
                                 show_default=True, help="The face mesh wireframe, the 478 points, or neither.")
_no_axes_option = click.option("--no-axes", is_flag=True, help="Without the head axes.")
_no_panel_option = click.option("--no-panel", is_flag=True, help="Without the pose, eye and blendshape panel.")
_focal_option = click.option("--focal-px", type=float, default=None,
                             help="The focal length the results were tracked with (default: image width).")


@click.command("render")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The overlay video (.mp4, .m4v, .mov; H.264).")
@_landmarks_option
@_no_axes_option
@_no_panel_option
@_focal_option
@click.option("--rotate", type=click.Choice(["0", "90", "180", "270"]), default=None,
              help="Turn SOURCE's pictures this many degrees clockwise, as `run --rotate` did (default: as its "
                   "display matrix says, as `run` does).")
def render_command(source: Path, results: Path, out: Path, landmarks: str, no_axes: bool, no_panel: bool,
                   focal_px: float | None, rotate: str | None) -> None:
    """Draw RESULTS (from `facetrack run --out`) over the video SOURCE, frame for frame, at SOURCE's timing."""
    import av

    from facetrack.adapters.file_sinks import read_results
    from facetrack.adapters.render_sink import render_video

    try:
        loaded = read_results(results)
        frames = render_video(source, loaded, out, _style(landmarks, no_axes, no_panel, focal_px),
                              None if rotate is None else int(rotate))
    except (FacetrackError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    except av.error.FFmpegError as exc:
        err.print(f"[red]error:[/] reading {source} or writing {out} failed: {exc}")
        sys.exit(EXIT_FAILED)
    err.print(f"Rendered {frames} frames ({len(loaded)} with results) to {out}.")


@click.command("plot")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The PNG to write.")
@click.option("--track", "track_id", type=int, default=None, help="Track id to plot (default: the longest seen).")
@click.option("--size", default="1200x800", show_default=True, help="Image size in pixels, WIDTHxHEIGHT.")
def plot_command(results: Path, out: Path, track_id: int | None, size: str) -> None:
    """Pose, eye and blendshape curves of RESULTS over time, with blinks and winks marked."""
    from facetrack.adapters.file_sinks import read_results
    from facetrack.tracker.viz.plot import plot_results

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{size!r}: write WIDTHxHEIGHT, e.g. 1200x800", param_hint="--size") from None
    if not (200 <= width <= 8000 and 200 <= height <= 8000):
        raise click.BadParameter(f"{size!r}: each side must be 200..8000 pixels", param_hint="--size")
    try:
        path = plot_results(read_results(results), out, track_id, title=results.stem, size_px=(width, height))
    except (FacetrackError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    err.print(f"Wrote {path} ({width}x{height}).")


@click.command("doctor")
@click.option("--camera", default="webcam:0", show_default=True, help="The camera to try to open.")
@click.option("--no-camera", is_flag=True, help="Do not touch the camera.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor_command(camera: str, no_camera: bool, as_json: bool) -> None:
    """What is installed and working, with a fix for each problem; exit code 1 if the basics fail."""
    from facetrack.tracker.cli.doctor import as_dicts, exit_code, run_checks

    checks = run_checks(None if no_camera else camera)
    code = exit_code(checks)
    if as_json:
        click.echo(json.dumps({"ok": code == 0, "checks": as_dicts(checks)}, indent=2))
        sys.exit(code)
    out = Console(highlight=False)
    marks = {"ok": "[green] ok [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}
    area = ""
    for check in checks:
        if check.area != area:
            area = check.area
            out.print(f"[bold]{area}[/]")
        out.print(f"  {marks[check.status]}  {check.name}: {check.detail}", soft_wrap=True)
        if check.fix:
            out.print(f"        fix: {check.fix}", soft_wrap=True)
    failed = [c.name for c in checks if c.status == "fail"]
    verdict = "[green]The basics work: facetrack can track." if not failed else (
        f"[red]Not working: {', '.join(failed)}. Apply the fixes above, then run facetrack doctor again.")
    out.print(verdict)
    sys.exit(code)


@click.command("preview")
@click.argument("source", default="webcam:0", required=False)
@click.option("--window/--web", "window", default=None,
              help="Force an OpenCV window or the web page (default: a window when a display exists).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port of the web preview on 127.0.0.1 (0: any free port).")
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--model", default="builtin", show_default=True, help="Face model; `none` for landmarks only.")
@click.option("--no-eyes", is_flag=True, help="Skip the eye stages.")
@click.option("--loop", is_flag=True, help="Replay a file forever.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@_landmarks_option
@_focal_option
def preview_command(source: str, window: bool | None, port: int, max_faces: int, model: str, no_eyes: bool,
                    loop: bool, max_frames: int | None, landmarks: str, focal_px: float | None) -> None:
    """Track SOURCE (default webcam:0) and watch the overlay live; a file plays at its own speed."""
    from facetrack.adapters.preview import PreviewSink
    from facetrack.adapters.render_sink import FrameTap
    from facetrack.tracker.config import TrackerConfig
    from facetrack.tracker.pipeline import Tracker
    from facetrack.tracker.sources.config import SourceConfig
    from facetrack.tracker.sources.frame_source import open_source
    from facetrack.tracker.stages.eye_options import EyeOptions

    config = TrackerConfig(max_faces=max_faces, max_frames=max_frames, focal_px=focal_px,
                           model=None if model == "none" else model, eyes=EyeOptions(enabled=not no_eyes),
                           source=SourceConfig(realtime=True, loop=loop))
    interrupt_on_signals()
    mode = "auto" if window is None else "window" if window else "web"
    try:
        tracker = Tracker(config)
        tap = FrameTap(open_source(source, config.source))
        try:
            sink = PreviewSink(tap, mode=mode, port=port, style=OverlayStyle(landmarks=landmarks, focal_px=focal_px),
                               on_calibrate=tracker.recalibrate if tracker.calibrates else None)
        except BaseException:
            tap.close()
            raise
        if sink.url is not None:
            err.print(f"Preview of {source}: open [bold]{sink.url}[/] in a browser; Ctrl-C stops.")
        frames = tracker.run(tap, [sink])
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or the window closed: 130, as `facetrack run` exits
        err.print("Preview stopped.")
        sys.exit(EXIT_INTERRUPTED)
    except (FacetrackError, OSError, RuntimeError) as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    err.print(f"Previewed {frames} frames.")
