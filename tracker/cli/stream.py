"""`facetrack info` and `facetrack subscribe`: what a source is, and what a published stream carries.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from facetrack.tracker.cli.common import (
    DEFAULT_ENDPOINT,
    EXIT_SOURCE_FAILED,
    EXIT_USAGE,
    err,
    fail,
    interrupt_on_signals,
)
from facetrack.tracker.core.errors import FacetrackError


@click.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(source: str, as_json: bool) -> None:
    """What SOURCE is: size, frame rate, codec, duration, live or not."""
    from facetrack.tracker.sources.frame_source import probe_source

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


@click.command()
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
    from facetrack.tracker.core.paths import check_output_file
    from facetrack.tracker.core.schema import FrameResult, StreamMetadata
    from facetrack.tracker.core.sinks import end_sinks

    if (curve_key is None) != (server_key is None):
        raise click.UsageError("--curve-key and --server-key go together")
    curve = CurveClientKeys(curve_key, server_key) if curve_key is not None else None
    interrupt_on_signals()
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
        fail(exc, EXIT_USAGE)
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
        fail(exc, EXIT_SOURCE_FAILED)
    finally:
        if sink is not None:
            end_sinks([sink], keep=received > 0)  # nothing received: an earlier file keeps its name
    err.print(f"{received} frames received")
