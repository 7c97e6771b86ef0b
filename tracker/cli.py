"""The `facetrack` command line. `run`, `info`, `subscribe`, `bench` and `keys` live here; the
other commands (batch, engines, models, train, render, plot, doctor, preview) are mounted
from the packages that own them."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler

from facetrack.tracker.errors import FacetrackError, SourceDecodeError, SourceLostError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5557"
EXIT_SOURCE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ENGINES = ("mediapipe", "litert", "onnx", "regress")
"""--engine: the landmark engines, and `regress` (mediapipe's landmarks + the regress engine's coefficients)."""

err = Console(stderr=True, soft_wrap=True)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)])


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _engine_options(command: Callable) -> Callable:
    """--engine, --regressor and --backend, shared by `run` and `bench`."""
    options = (
        click.option("--engine", "landmark_engine", type=click.Choice(ENGINES), default="mediapipe",
                     show_default=True,
                     help="Landmark engine (docs/engines.md); regress: mediapipe's landmarks, and blendshapes and "
                          "head rotation from the coefficient regressor instead of the model fit."),
        click.option("--regressor", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="The regress engine (.onnx with its .json) for --engine regress; default: regress.onnx "
                          "in the user data directory's engines/ folder."),
        click.option("--backend", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="auto",
                     show_default=True,
                     help="Where our networks run: auto = TensorRT, then ONNX Runtime CUDA, then the CPU."),
    )
    for option in reversed(options):
        command = option(command)
    return command


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


def _engine_fields(engine: str, regressor: Path | None) -> dict:
    """The config fields --engine and --regressor stand for."""
    if regressor is not None and engine != "regress":
        raise click.UsageError("--regressor goes with --engine regress")
    if engine == "regress":
        return {"landmark_engine": "mediapipe", "coefficients": "regress", "regressor": regressor}
    return {"landmark_engine": engine}


def _batch_sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: comma-separated positive batch sizes, e.g. 1,8,64,256")
    return sizes


def _usage_error(exc: ValidationError) -> click.UsageError:
    """Options that contradict each other, in the config's own words."""
    return click.UsageError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="facetrack")
def app(verbose: int) -> None:
    """Real-time face tracking: landmarks, head pose, ARKit blendshapes and eye state, streamed to
    animation clients (ZeroMQ, VMC, Live Link) and written to files."""
    _setup_logging(verbose)


@app.command()
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
@_engine_options
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--model", default="builtin", show_default=True,
              help="Face model fitted per face (see `facetrack models list`); `none` for landmarks and rigid pose "
                   "only.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
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
        landmark_engine: str, regressor: Path | None, backend: str, max_faces: int, model: str, max_frames: int | None,
        no_eyes: bool, no_filter: bool, eye_engine: Path | None, stream_id: str, realtime: bool, loop: bool,
        rotate: str | None, recursive: bool, focal_px: float | None, render: Path | None, preview: bool,
        preview_port: int, quiet: bool, clients: dict) -> None:
    """Track SOURCE (a video file, webcam:N, a stream URL, an image, folder or glob)."""
    from facetrack.adapters.zmq_publisher import PublisherConfig, live_sndhwm
    from facetrack.tracker.config import TrackerConfig
    from facetrack.tracker.eye_stage import EyeOptions
    from facetrack.tracker.filters import FilterConfig
    from facetrack.tracker.pipeline import Tracker
    from facetrack.tracker.progress import RunProgress
    from facetrack.tracker.run_sinks import check_outputs, file_sinks, network_sinks
    from facetrack.tracker.sinks import end_sinks
    from facetrack.tracker.sources import SourceConfig, open_source
    from facetrack.tracker.viz_cli import overlay_sinks

    if not source.strip():
        raise click.UsageError("SOURCE is empty: give a video file, webcam:N, a URL, an image, folder or glob")
    try:
        config = TrackerConfig(
            max_faces=max_faces, max_frames=max_frames, stream_id=stream_id, focal_px=focal_px,
            backend=backend, model=None if model == "none" else model,
            source=SourceConfig(realtime=realtime, loop=loop, recursive=recursive,
                                rotate=None if rotate is None else int(rotate)),
            eyes=EyeOptions(enabled=not no_eyes, engine=eye_engine), filter=FilterConfig(enabled=not no_filter),
            mesh=mesh_path is not None, **_engine_fields(landmark_engine, regressor),
        )
    except ValidationError as exc:
        raise _usage_error(exc) from None
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
        _fail(exc, EXIT_USAGE)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    progress = RunProgress(err, tracker, enabled=not quiet and err.is_terminal)
    try:
        frames = open_source(source, config.source)  # before any output exists: a bad source leaves none
        sinks: list = []
        try:
            # endpoints and ports first (they create no file), then the files: a refusal opens none
            publish = None if endpoint is None else PublisherConfig(
                endpoint=endpoint, encoding=wire, curve_keys=curve_keys, wait_subscribers=wait_subscribers,
                # a live stream's queue per subscriber holds about a second, not minutes of the past
                **({"sndhwm": live_sndhwm(frames.info.fps)} if frames.live else {}))
            sinks += network_sinks(publish, *_udp_configs(vmc, livelink, clients))
            frames, drawing = overlay_sinks(frames, render, preview, preview_port, focal_px)
            sinks += drawing
            sinks += file_sinks(outputs, mesh_path, mesh_format)
        except BaseException:
            frames.close()
            end_sinks(sinks, keep=False)
            raise
        with progress:
            tracker.run(frames, sinks, on_result=progress.on_result)
    except KeyboardInterrupt:
        err.print(f"[yellow]Interrupted after {progress.frames} frames; "
                  + ("outputs flushed and closed." if progress.frames else "no output written."))
        sys.exit(EXIT_INTERRUPTED)
    except (SourceDecodeError, SourceLostError) as exc:
        err.print(f"[red]error:[/] {exc}\n{progress.frames} frames were tracked and written.")
        sys.exit(EXIT_SOURCE_FAILED)
    except FacetrackError as exc:
        _fail(exc, EXIT_USAGE if progress.frames == 0 else EXIT_SOURCE_FAILED)
    err.print(progress.summary(outputs, endpoint, render))


def _fail(exc: BaseException, code: int) -> NoReturn:
    """One line on stderr (never wrapped, so it can be grepped and copied), then exit."""
    err.print(f"[red]error:[/] {exc}", highlight=False)
    sys.exit(code)


def _udp_configs(vmc: str | None, livelink: str | None, clients: dict) -> tuple:
    """The VMC and Live Link sender configs for the addresses and `_client_options` given on the command line."""
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
        raise _usage_error(exc) from None
    except ValueError as exc:  # a name map that cannot be read, a name too long to send
        raise click.UsageError(str(exc)) from None
    return vmc_config, livelink_config


def _address(value: str, default_port: int, option: str) -> tuple[str, int]:
    from facetrack.adapters.udp import parse_host_port

    try:
        return parse_host_port(value, default_port)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@app.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(source: str, as_json: bool) -> None:
    """What SOURCE is: size, frame rate, codec, duration, live or not."""
    from facetrack.tracker.sources import probe_source

    try:
        described = probe_source(source)
    except FacetrackError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    if as_json:
        click.echo(described.model_dump_json(indent=2))
    else:
        for key, value in described.model_dump().items():
            click.echo(f"{key:>10}: {value}")


@app.command()
@click.argument("endpoint", default=DEFAULT_ENDPOINT, required=False)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write received frames to FILE (.jsonl, .csv, .parquet, .npz).")
@click.option("--stream-id", default=None, help="Only this stream (default: all).")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds without a message.")
@click.option("--curve-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="This client's NAME.key_secret, for a publisher started with --curve-keys.")
@click.option("--server-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The publisher's server.key (public), with --curve-key.")
@click.option("--max-age", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Skip frames published more than this many seconds ago (a client that stalled resumes with the "
                   "present); compares this machine's clock with the publisher's.")
def subscribe(endpoint: str, count: int | None, out: Path | None, stream_id: str | None,
              timeout: float | None, curve_key: Path | None, server_key: Path | None, max_age: float | None) -> None:
    """Receive a facetrack stream from ENDPOINT and print or save it."""
    from facetrack.adapters.curve import CurveClientKeys
    from facetrack.adapters.file_sinks import SUPPORTED_EXTENSIONS, open_file_sink
    from facetrack.adapters.zmq_subscriber import Subscriber
    from facetrack.tracker.output_paths import check_output_file
    from facetrack.tracker.schema import FrameResult, StreamMetadata
    from facetrack.tracker.sinks import end_sinks

    if (curve_key is None) != (server_key is None):
        raise click.UsageError("--curve-key and --server-key go together")
    curve = CurveClientKeys(curve_key, server_key) if curve_key is not None else None
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    topics = ("frame", "meta") if stream_id is None else (f"frame.{stream_id}", f"meta.{stream_id}")
    sink = None
    received = 0
    started = False
    try:
        if out is not None:
            check_output_file(out, "--out", SUPPORTED_EXTENSIONS)
        # the keys and the endpoint are checked before --out is opened
        subscriber = Subscriber(endpoint, topics=topics, curve=curve, max_age=max_age)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            sink = open_file_sink(out)
    except (FacetrackError, ValueError) as exc:
        _fail(exc, EXIT_USAGE)
    try:
        with subscriber:
            while count is None or received < count:
                message = subscriber.recv(timeout=timeout)
                if message is None:
                    err.print(f"[yellow]No message for {timeout} s from {endpoint}; stopping.")
                    break
                if isinstance(message, StreamMetadata):
                    if sink is not None:
                        sink.start(message)
                        started = True
                    continue
                if not isinstance(message, FrameResult):
                    continue
                if sink is not None:
                    if not started:
                        continue
                    sink.write(message)
                else:
                    faces = ", ".join(
                        f"#{f.track_id} yaw {f.pose.yaw:+.1f} pitch {f.pose.pitch:+.1f}" for f in message.faces
                    )
                    click.echo(f"{message.stream_id} frame {message.frame_index} pts {message.pts} [{faces}]")
                received += 1
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted.")
    except FacetrackError as exc:
        _fail(exc, EXIT_SOURCE_FAILED)
    finally:
        if sink is not None:
            end_sinks([sink], keep=received > 0)  # nothing received: an earlier file keeps its name
    err.print(f"{received} frames received")


@app.command()
@click.argument("source")
@click.option("--max-frames", type=click.IntRange(min=1), default=None)
@_engine_options
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--model", default="builtin", show_default=True, help="Face model to fit; `none` for landmarks only.")
@click.option("--no-eyes", is_flag=True, help="Without the eye stages.")
@click.option("--no-filter", is_flag=True, help="Without the temporal filter.")
@click.option("--realtime", is_flag=True, help="Pace the file as a live source and report capture-to-publish latency.")
@click.option("--loop-seconds", type=float, default=None, help="Loop the file this long and report memory growth.")
@click.option("--throughput", is_flag=True,
              help="Batch mode instead: faces/s of landmarks + eye state (+ the regressor with --engine regress) "
                   "at --batches, on a face of SOURCE's first frame.")
@click.option("--batches", default="1,8,64,256", show_default=True, callback=_batch_sizes,
              help="Batch sizes for --throughput.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Repeats per --throughput figure (median and range reported).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON.")
def bench(source: str, max_frames: int | None, landmark_engine: str, regressor: Path | None, backend: str,
          max_faces: int, model: str, no_eyes: bool, no_filter: bool, realtime: bool, loop_seconds: float | None,
          throughput: bool, batches: tuple[int, ...], repeats: int, json_out: Path | None) -> None:
    """Per-stage timings (median, p90) and end-to-end fps on SOURCE; with --throughput, batch faces/s."""
    from facetrack.tracker.bench import BenchConfig, render_report, run_bench

    if throughput:
        _throughput(source, landmark_engine, regressor, backend, batches, repeats, json_out)
        return
    config = BenchConfig(source=source, max_frames=max_frames, max_faces=max_faces, realtime=realtime,
                         loop_seconds=loop_seconds, model=None if model == "none" else model,
                         eyes=not no_eyes, filter=not no_filter, backend=backend,
                         **_engine_fields(landmark_engine, regressor))
    try:
        report = run_bench(config)
    except ValidationError as exc:
        raise _usage_error(exc) from None
    except FacetrackError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    Console().print(render_report(report))
    if json_out is not None:
        json_out.write_text(json.dumps(report.model_dump(), indent=2))


def _throughput(source: str, engine: str, regressor: Path | None, backend: str, batches: tuple[int, ...], repeats: int,
                json_out: Path | None) -> None:
    """`bench --throughput`: the batched landmark runtime (mediapipe's graph cannot batch: LiteRT on the CPU,
    the ONNX conversions on a GPU) + eye state, + the regressor with --engine regress."""
    from facetrack.engines.backends import select_backend
    from facetrack.engines.regress import default_engine_path
    from facetrack.engines.throughput import ThroughputConfig, measure_throughput, render_throughput

    _engine_fields(engine, regressor)  # refuses --regressor without --engine regress
    try:
        choice = select_backend(backend)
        runtime = engine if engine in ("litert", "onnx") else "litert" if choice.name == "cpu" else "onnx"
        path = (regressor or default_engine_path()) if engine == "regress" else None
        report = measure_throughput(ThroughputConfig(image=source, landmark_runtime=runtime, backend=backend,
                                                     batches=batches, repeats=repeats, regressor=path))
    except FacetrackError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    Console().print(render_throughput(report))
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2))


@app.group()
def keys() -> None:
    """CURVE keys for an encrypted stream that only authorised clients can read."""


@keys.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--client", "clients", multiple=True, required=True, help="Name of a client to authorise; repeatable.")
def keys_init(folder: Path, clients: tuple[str, ...]) -> None:
    """Create FOLDER with the server's key pair and an authorised key pair per client."""
    from facetrack.adapters.curve import create_key_folder

    try:
        secrets = create_key_folder(folder, list(clients))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--client") from None
    click.echo(f"server keys in {folder} (keep server.key_secret private; clients need server.key)")
    for secret in secrets:
        click.echo(f"client key pair: {secret} (give it and {folder / 'server.key'} to that client)")


def _mount_subcommands() -> None:
    from facetrack.engines.cli import engines_group
    from facetrack.tracker.batch import batch_command
    from facetrack.tracker.demo_cli import demo_command
    from facetrack.tracker.facemodel.cli import models_group
    from facetrack.tracker.viz_cli import doctor_command, plot_command, preview_command, render_command
    from facetrack.training.cli import train_group

    app.add_command(batch_command, name="batch")
    app.add_command(demo_command)
    app.add_command(engines_group)
    app.add_command(models_group)
    app.add_command(train_group)
    for command in (render_command, plot_command, doctor_command, preview_command):
        app.add_command(command)


_mount_subcommands()


def main() -> None:
    app(prog_name="facetrack")


if __name__ == "__main__":
    main()
