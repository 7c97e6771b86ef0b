"""The `facetrack` command line. `run`, `info`, `subscribe`, `bench` and `keys` live here; the
other commands (batch, engines, models, train, render, plot, doctor, preview) are mounted
from the packages that own them."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

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

err = Console(stderr=True)


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
@click.option("--focal-px", type=float, default=None, help="Camera focal length in pixels (default: image width).")
@click.option("--render", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the overlay video (mesh, head axes, eye state, blendshape bars) to FILE (.mp4, .mov).")
@click.option("--preview", is_flag=True,
              help="Watch the overlay live: a window, or http://127.0.0.1:8765/ where there is no display.")
@click.option("--preview-port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port of the web preview (127.0.0.1).")
@click.option("--quiet", is_flag=True, help="No progress display.")
def run(source: str, outputs: tuple[Path, ...], mesh_path: Path | None, mesh_format: str, endpoint: str | None,
        wire: str, vmc: str | None, livelink: str | None, curve_keys: Path | None, wait_subscribers: int,
        landmark_engine: str, regressor: Path | None, backend: str, max_faces: int, model: str, max_frames: int | None,
        calibrate_s: float | None, neutral_file: Path | None, save_neutral: Path | None, no_eyes: bool,
        no_filter: bool, eye_engine: Path | None, stream_id: str, realtime: bool, loop: bool,
        focal_px: float | None, render: Path | None, preview: bool, preview_port: int, quiet: bool) -> None:
    """Track SOURCE (a video file, webcam:N, a stream URL, an image, folder or glob)."""
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.adapters.mesh_sink import open_mesh_sink
    from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher
    from facetrack.tracker.config import TrackerConfig
    from facetrack.tracker.eye_stage import EyeOptions
    from facetrack.tracker.facemodel.neutral import CalibrationOptions
    from facetrack.tracker.filters import FilterConfig
    from facetrack.tracker.pipeline import Tracker
    from facetrack.tracker.progress import RunProgress
    from facetrack.tracker.sources import SourceConfig, open_source
    from facetrack.tracker.viz_cli import overlay_sinks

    try:
        config = TrackerConfig(
            max_faces=max_faces, max_frames=max_frames, stream_id=stream_id, focal_px=focal_px,
            backend=backend, model=None if model == "none" else model,
            source=SourceConfig(realtime=realtime, loop=loop),
            eyes=EyeOptions(enabled=not no_eyes, engine=eye_engine), filter=FilterConfig(enabled=not no_filter),
            mesh=mesh_path is not None, **_engine_fields(landmark_engine, regressor),
            calibration=CalibrationOptions(seconds=calibrate_s, neutral=neutral_file, save_neutral=save_neutral),
        )
    except ValidationError as exc:
        raise _usage_error(exc) from None
    if mesh_path is not None and config.model is None:
        raise click.UsageError("--mesh needs a face model (not --model none)")
    if not outputs and endpoint is None and vmc is None and livelink is None and render is None and not preview:
        err.print("[yellow]No --out, --publish, --vmc, --livelink, --render or --preview given: "
                  "results are discarded (see --help).")
    try:
        tracker = Tracker(config)  # loads the regress engine: a bad one fails before any output exists
    except FacetrackError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    progress = RunProgress(err, tracker, enabled=not quiet and err.is_terminal)
    sinks = []
    try:
        frames = open_source(source, config.source)  # before any output exists: a bad source leaves none
        try:
            for path in outputs:
                path.parent.mkdir(parents=True, exist_ok=True)
                sinks.append(open_file_sink(path))
            if mesh_path is not None:
                sinks.append(open_mesh_sink(mesh_path, mesh_format))
            if endpoint is not None:
                sinks.append(ZmqPublisher(PublisherConfig(endpoint=endpoint, encoding=wire, curve_keys=curve_keys,
                                                          wait_subscribers=wait_subscribers)))
            sinks.extend(_udp_sinks(vmc, livelink))
            frames, drawing = overlay_sinks(frames, render, preview, preview_port, focal_px)
            sinks.extend(drawing)
        except BaseException:
            frames.close()
            for sink in sinks:
                sink.close()
            raise
        with progress:
            tracker.run(frames, sinks, on_result=progress.on_result)
    except KeyboardInterrupt:
        err.print(f"[yellow]Interrupted after {progress.frames} frames; outputs flushed and closed.")
        sys.exit(EXIT_INTERRUPTED)
    except (SourceDecodeError, SourceLostError) as exc:
        err.print(f"[red]error:[/] {exc}\n{progress.frames} frames before the error were written.")
        sys.exit(EXIT_SOURCE_FAILED)
    except FacetrackError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    err.print(progress.summary(outputs, endpoint))


def _udp_sinks(vmc: str | None, livelink: str | None) -> list:
    """VMC and Live Link senders for the addresses given on the command line."""
    from facetrack.adapters.livelink import DEFAULT_PORT as LIVELINK_PORT
    from facetrack.adapters.livelink import LiveLinkConfig, LiveLinkSender
    from facetrack.adapters.udp import parse_host_port
    from facetrack.adapters.vmc import DEFAULT_PORT as VMC_PORT
    from facetrack.adapters.vmc import VmcConfig, VmcSender

    sinks = []
    for value, option, port, build in (
        (vmc, "--vmc", VMC_PORT, lambda h, p: VmcSender(VmcConfig(host=h, port=p))),
        (livelink, "--livelink", LIVELINK_PORT, lambda h, p: LiveLinkSender(LiveLinkConfig(host=h, port=p))),
    ):
        if value is None:
            continue
        try:
            host, port_number = parse_host_port(value, port)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
        sinks.append(build(host, port_number))
    return sinks


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
def subscribe(endpoint: str, count: int | None, out: Path | None, stream_id: str | None,
              timeout: float | None, curve_key: Path | None, server_key: Path | None) -> None:
    """Receive a facetrack stream from ENDPOINT and print or save it."""
    from facetrack.adapters.curve import CurveClientKeys
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.adapters.zmq_subscriber import Subscriber
    from facetrack.tracker.schema import FrameResult, StreamMetadata

    if (curve_key is None) != (server_key is None):
        raise click.UsageError("--curve-key and --server-key go together")
    curve = CurveClientKeys(curve_key, server_key) if curve_key is not None else None
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    topics = ("frame", "meta") if stream_id is None else (f"frame.{stream_id}", f"meta.{stream_id}")
    sink = open_file_sink(out) if out is not None else None
    received = 0
    started = False
    try:
        with Subscriber(endpoint, topics=topics, curve=curve) as subscriber:
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
    finally:
        if sink is not None:
            sink.close()
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
    from facetrack.tracker.facemodel.cli import models_group
    from facetrack.tracker.viz_cli import doctor_command, plot_command, preview_command, render_command
    from facetrack.training.cli import train_group

    app.add_command(batch_command, name="batch")
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
