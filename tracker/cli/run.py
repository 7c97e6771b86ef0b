"""`facetrack run`: track a source into files, streams (ZeroMQ, VMC, Live Link), a render and a preview.

Every output is checked before any is opened, so a refused run leaves every file as it was."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from facetrack.tracker.cli.common import (
    DEFAULT_ENDPOINT,
    EXIT_INTERRUPTED,
    EXIT_SOURCE_FAILED,
    EXIT_USAGE,
    engine_fields,
    engine_options,
    err,
    fail,
    interrupt_on_signals,
    resolve_engine,
    usage_error,
)
from facetrack.tracker.core import interrupts
from facetrack.tracker.core.errors import FacetrackError, SourceDecodeError, SourceLostError

if TYPE_CHECKING:
    from facetrack.adapters.zmq_publisher import PublisherConfig
    from facetrack.tracker.core.schema import FrameResult
    from facetrack.tracker.sources.frame_source import FrameSource

# ---- --vmc / --livelink sending options: collected into one `clients` dict for _udp_sinks ----

_CLIENT_OPTIONS = (
    click.option("--no-pace", is_flag=True,
                 help="Send --vmc/--livelink as fast as a file is tracked (default: at the file's frame rate)."),
    click.option("--send-track", type=int, default=None, metavar="ID",
                 help="Track id that --vmc/--livelink send (default: the first face of each frame)."),
    click.option("--vmc-preset", type=click.Choice(["arkit", "vrm", "both"]), default="arkit", show_default=True,
                 help="VMC blendshapes: the 52 ARKit names, the 12 VRM 0.x presets mapped from them "
                      "(docs/adapters.md), or both."),
    click.option("--vmc-map", multiple=True, metavar="ARKIT=NAME|FILE.json",
                 help="Rename a VMC blendshape (ARKit or VRM preset name); repeatable, or a JSON file of them."),
    click.option("--vmc-no-translation", is_flag=True,
                 help="Send the VMC head rotation only, not its movement since the first frame."),
    click.option("--livelink-subject", default="facetrack", show_default=True, help="Live Link subject name."),
    click.option("--livelink-fps", type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
                 help="Live Link frame-time rate (default: a file's frame rate, else 60)."),
    click.option("--livelink-device-id", default=None,
                 help="Live Link device id (default: derived from this host and --stream-id, stable across runs)."),
)


def _client_options(command: Callable) -> Callable:
    """Adds the _CLIENT_OPTIONS to `command` and hands their values to it as one `clients` dict."""
    names = ("no_pace", "send_track", "vmc_preset", "vmc_map", "vmc_no_translation", "livelink_subject",
             "livelink_fps", "livelink_device_id")

    @functools.wraps(command)
    def wrapped(**kwargs: object) -> object:
        return command(clients={name: kwargs.pop(name) for name in names}, **kwargs)

    for option in reversed(_CLIENT_OPTIONS):
        wrapped = option(wrapped)
    return wrapped



@click.command()
@click.argument("source")
@click.option("--out", "outputs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write results to FILE (.jsonl, .csv, .parquet, .npz); repeatable.")
@click.option("--mesh", "mesh_path", type=click.Path(path_type=Path), default=None,
              help="Write the fitted dense mesh per face and frame: NAME.npz, or a folder of PLY/OBJ files.")
@click.option("--mesh-format", type=click.Choice(["ply", "obj"]), default="ply", show_default=True,
              help="File format when --mesh is a folder (needs facetrack[mesh]).")
@click.option("--publish", "endpoint", is_flag=False, flag_value=DEFAULT_ENDPOINT, default=None, metavar="[ENDPOINT]",
              help=f"Publish over ZeroMQ PUB (default endpoint {DEFAULT_ENDPOINT}).")
@click.option("--wire", type=click.Choice(["msgpack", "json"]), default="msgpack", show_default=True,
              help="Payload encoding on the wire.")
@click.option("--vmc", is_flag=False, flag_value="127.0.0.1:39539", default=None, metavar="[HOST:PORT]",
              help="Send to a VTuber app over the VMC protocol (OSC/UDP, default 127.0.0.1:39539).")
@click.option("--livelink", default=None, metavar="HOST:PORT",
              help="Send Live Link Face packets to Unreal (UDP; port defaults to 11111).")
@click.option("--curve-keys", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Encrypt the stream and admit only the clients authorised in this key folder "
                   "(`facetrack keys init`).")
@click.option("--wait-subscribers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Before tracking, wait up to 10 s for this many subscribers (so none misses a frame).")
@engine_options
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--model", default="builtin", show_default=True,
              help="Face model fitted per face (see `facetrack models list`); `none` for landmarks and rigid pose "
                   "only.")
@click.option("--mediapipe-weights", type=click.Choice(["off", "below-brows", "face"]), default="off",
              show_default=True,
              help="Take these ARKit weights from MediaPipe's blendshape network (trained on real faces) instead of "
                   "the project's head: below-brows (mouth, jaw, cheeks, nose) or face (all but eye*); about 2 ms "
                   "more per face.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option("--calibrate", "calibrate_s", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Hold a neutral face for the first SECONDS of each track: its rest face "
                                      "(default: found automatically from the calmest warm-up frames).")
@click.option("--neutral", "neutral_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Reuse a saved calibration (same actor): no warm-up.")
@click.option("--save-neutral", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the first calibrated track's calibration here at the end (reuse with --neutral).")
@click.option("--no-eyes", is_flag=True, help="Skip eye state, ELAM, lid/lip dynamics, gaze and blink events.")
@click.option("--no-filter", is_flag=True, help="No temporal smoothing of landmarks, pose and weights.")
@click.option("--eye-engine", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Eye-state engine (.onnx with its .json); default: the packaged one.")
@click.option("--stream-id", default="main", show_default=True, help="Names the stream in topics and results.")
@click.option("--realtime", is_flag=True, help="Pace a file at its frame rate and treat it as live.")
@click.option("--loop", is_flag=True, help="Replay a file forever (stop with Ctrl-C).")
@click.option("--rotate", type=click.Choice(["0", "90", "180", "270"]), default=None,
              help="Turn every picture this many degrees clockwise, instead of what the file's display matrix says "
                   "(phones' portrait clips carry one; 0 tracks the pictures as coded).")
@click.option("--recursive", is_flag=True, help="A folder SOURCE also takes the images in its subfolders.")
@click.option("--sequence", is_flag=True,
              help="Images (a folder, a glob) are the frames of one video, tracked from one to the next. Default: "
                   "every image is a photo of its own (no track, calibration or smoothing carried over).")
@click.option("--focal-px", type=float, default=None, help="Camera focal length in pixels (default: image width).")
@click.option("--render", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the overlay video (mesh, head axes, eye state, blendshape bars) to FILE (.mp4, .mov).")
@click.option("--preview", is_flag=True,
              help="Watch the overlay live: a window, or http://127.0.0.1:8765/ where there is no display.")
@click.option("--preview-port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port of the web preview (127.0.0.1).")
@click.option("--quiet", is_flag=True, help="No progress display.")
@_client_options
def run(source: str, outputs: tuple[Path, ...], mesh_path: Path | None, mesh_format: str, endpoint: str | None,
        wire: str, vmc: str | None, livelink: str | None, curve_keys: Path | None, wait_subscribers: int,
        landmark_engine: str, regressor: Path | None, backend: str, max_faces: int, model: str,
        mediapipe_weights: str, max_frames: int | None,
        calibrate_s: float | None, neutral_file: Path | None, save_neutral: Path | None, no_eyes: bool,
        no_filter: bool, eye_engine: Path | None, stream_id: str, realtime: bool, loop: bool,
        rotate: str | None, recursive: bool, sequence: bool, focal_px: float | None, render: Path | None,
        preview: bool, preview_port: int, quiet: bool, clients: dict) -> None:
    """Track SOURCE (a video file, webcam:N, a stream URL, an image, folder or glob)."""
    from facetrack.tracker.cli.progress import RunProgress
    from facetrack.tracker.cli.run_sinks import check_outputs, file_sinks, network_sinks
    from facetrack.tracker.config import TrackerConfig
    from facetrack.tracker.core.sinks import end_sinks
    from facetrack.tracker.facemodel.rest_face import RestFaceOptions
    from facetrack.tracker.pipeline import Tracker
    from facetrack.tracker.sources.config import SourceConfig
    from facetrack.tracker.sources.frame_source import open_source
    from facetrack.tracker.stages.eye_options import EyeOptions
    from facetrack.tracker.stages.filter import FilterConfig

    if not source.strip():
        raise click.UsageError("SOURCE is empty: give a video file, webcam:N, a URL, an image, folder or glob")
    needs_fit = (mesh_path is not None or model != "builtin" or neutral_file is not None or save_neutral is not None
                 or mediapipe_weights != "off")
    landmark_engine = resolve_engine(landmark_engine, backend, regressor, needs_fit)
    try:
        config = TrackerConfig(
            max_faces=max_faces, max_frames=max_frames, stream_id=stream_id, focal_px=focal_px,
            backend=backend, model=None if model == "none" else model,
            mediapipe_weights=mediapipe_weights.replace("-", "_"),
            source=SourceConfig(realtime=realtime, loop=loop, recursive=recursive, sequence=sequence,
                                rotate=None if rotate is None else int(rotate)),
            eyes=EyeOptions(enabled=not no_eyes, engine=eye_engine), filter=FilterConfig(enabled=not no_filter),
            mesh=mesh_path is not None, **engine_fields(landmark_engine, regressor),
            calibration=RestFaceOptions(seconds=calibrate_s, neutral=neutral_file, save_neutral=save_neutral),
        )
    except ValidationError as exc:
        raise usage_error(exc) from None
    if mesh_path is not None and config.model is None:
        raise click.UsageError("--mesh needs a face model (not --model none)")
    if not outputs and endpoint is None and vmc is None and livelink is None and render is None and not preview:
        err.print("[yellow]No --out, --publish, --vmc, --livelink, --render or --preview given: "
                  "results are discarded (see --help).")
    try:
        check_outputs(outputs, mesh_path, render)
        # the face model and the engines load here: a bad one fails before any output exists
        tracker = Tracker(config)
    except FacetrackError as exc:
        fail(exc, EXIT_USAGE)
    interrupt_on_signals()
    progress = RunProgress(err, tracker, enabled=not quiet and err.is_terminal)
    try:
        frames = open_source(source, config.source)  # before any output exists: a bad source leaves none
        sinks: list = []
        try:
            # endpoints and ports first (they create no file), then the files: a refusal opens none
            publish = _publisher_config(endpoint, wire, curve_keys, wait_subscribers, frames)
            sinks += network_sinks(publish, *_udp_configs(vmc, livelink, clients))
            if render is not None or preview:  # the drawing's modules (OpenCV drawing, HTTP server) only then
                from facetrack.tracker.cli.viz import overlay_sinks

                seconds = calibrate_s or 2.0  # the preview's calibrate key: a rest face from the next seconds
                frames, drawing = overlay_sinks(frames, render, preview, preview_port, focal_px,
                                                (lambda: tracker.recalibrate(seconds)) if tracker.calibrates else None)
                sinks += drawing
            sinks += file_sinks(outputs, mesh_path, mesh_format)
        except BaseException:
            frames.close()
            end_sinks(sinks, keep=False)
            raise
        with progress:
            tracker.run(frames, sinks, on_result=lambda result: _checked(progress.on_result, result))
    except KeyboardInterrupt:
        err.print(f"[yellow]Interrupted after {progress.frames} frames; "
                  + ("outputs flushed and closed." if progress.frames else "no output written."))
        sys.exit(EXIT_INTERRUPTED)
    except (SourceDecodeError, SourceLostError) as exc:
        fail(f"{exc} ({progress.frames} frames were tracked and written)", EXIT_SOURCE_FAILED)
    except FacetrackError as exc:
        fail(exc, EXIT_USAGE if progress.frames == 0 else EXIT_SOURCE_FAILED)
    err.print(progress.summary(outputs, endpoint, render))


def _checked(on_result: Callable[[FrameResult], None], result: FrameResult) -> None:
    """A signal whose KeyboardInterrupt native code swallowed still ends the run, at the next frame."""
    interrupts.raise_if_requested()
    on_result(result)


def _publisher_config(endpoint: str | None, wire: str, curve_keys: Path | None, wait_subscribers: int,
                      frames: FrameSource) -> PublisherConfig | None:
    """The ZeroMQ publisher's config for --publish (None without it: its module is not even loaded)."""
    if endpoint is None:
        return None
    from facetrack.adapters.zmq_publisher import PublisherConfig, live_sndhwm

    return PublisherConfig(
        endpoint=endpoint, encoding=wire, curve_keys=curve_keys, wait_subscribers=wait_subscribers,
        # a live stream's queue per subscriber holds about a second, not minutes of the past
        **({"sndhwm": live_sndhwm(frames.info.fps)} if frames.live else {}))


def _udp_configs(vmc: str | None, livelink: str | None, clients: dict) -> tuple:
    """The VMC and Live Link sender configs for the addresses and `_client_options` given on the command line."""
    if vmc is None and livelink is None:
        return None, None  # before the imports: a run without them does not load their modules
    from facetrack.adapters.livelink import DEFAULT_PORT as LIVELINK_PORT
    from facetrack.adapters.livelink import LiveLinkConfig
    from facetrack.adapters.vmc import DEFAULT_PORT as VMC_PORT
    from facetrack.adapters.vmc import VmcConfig, read_name_map

    common = {"track_id": clients["send_track"], "pace": not clients["no_pace"]}
    vmc_config = livelink_config = None
    try:
        if vmc is not None:
            host, port = _address(vmc, VMC_PORT, "--vmc")
            vmc_config = VmcConfig(
                host=host, port=port, preset=clients["vmc_preset"], name_map=read_name_map(clients["vmc_map"]),
                head_translation=not clients["vmc_no_translation"], **common)
        if livelink is not None:
            host, port = _address(livelink, LIVELINK_PORT, "--livelink")
            livelink_config = LiveLinkConfig(
                host=host, port=port, subject=clients["livelink_subject"], fps=clients["livelink_fps"],
                device_id=clients["livelink_device_id"], **common)
    except ValidationError as exc:
        raise usage_error(exc) from None
    except ValueError as exc:  # a name map that cannot be read, a name too long to send
        raise click.UsageError(str(exc)) from None
    return vmc_config, livelink_config


def _address(value: str, default_port: int, option: str) -> tuple[str, int]:
    from facetrack.adapters.udp import parse_host_port

    try:
        return parse_host_port(value, default_port)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


