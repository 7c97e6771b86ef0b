"""`facetrack bench`: per-stage timings, end-to-end fps, live latency and memory growth on one source.

Stages: decode (a decode-only pass, the decoder's own thread delivering as fast as it
can), landmarks, pose and publish (a real ZeroMQ PUB socket on loopback with a
subscriber attached). End-to-end fps is frames over wall time of the full pipeline,
where decoding overlaps tracking on its own thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Literal

import click
import numpy as np
import psutil
from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.table import Table

from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher
from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.engines.backends import select_backend
from facetrack.tracker.cli.common import EXIT_USAGE, engine_fields, engine_options, err, resolve_engine, usage_error
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.errors import FacetrackError
from facetrack.tracker.core.schema import FrameResult, SourceInfo
from facetrack.tracker.core.timing import StageSummary, StageTimings
from facetrack.tracker.core.versions import package_version
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources.config import SourceConfig
from facetrack.tracker.sources.frame_source import open_source
from facetrack.tracker.stages.eye_options import EyeOptions
from facetrack.tracker.stages.filter import FilterConfig

STEADY_AFTER = 10
"""Frames of start-up: steady state is measured from this result on (issue 19's measure)."""


class BenchConfig(BaseModel):
    source: str
    max_frames: int | None = None
    max_faces: int = 1
    realtime: bool = False
    loop_seconds: float | None = None
    model: str | None = "builtin"
    mediapipe_weights: Literal["off", "below_brows", "face"] = "off"
    eyes: bool = True
    filter: bool = True
    landmark_engine: Literal["mediapipe", "litert", "onnx"] = "mediapipe"
    backend: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    coefficients: Literal["fit", "regress"] = "fit"
    regressor: Path | None = None


class LatencySummary(BaseModel):
    """From the frame leaving the decoder to a later point, milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


class MemorySummary(BaseModel):
    seconds: float
    rss_start_mb: float
    rss_end_mb: float
    rss_max_mb: float
    growth_mb: float


class BenchReport(BaseModel):
    source: SourceInfo
    landmark_engine: str
    coefficients: str = "fit"
    backend: str
    backend_reason: str
    model: str | None
    eyes: bool
    filter: bool
    frames: int
    frames_with_face: int
    stages: dict[str, StageSummary]
    decode_fps: float
    end_to_end_fps: float = Field(description="Frames after the first over the time from the first result to the last.")
    startup_s: float = Field(description="Opening the source and the engines until the first result (in this "
                                         "process, after its imports: scripts/bench_speed_ratio.py times a whole one).")
    steady_state_ms: float | None = Field(
        None, description=f"Per frame after the first {STEADY_AFTER} results: from the {STEADY_AFTER}th result to "
                          "the last, over the frames between (None for shorter sources).")
    latency: LatencySummary | None = Field(None, description="Capture to publish (handed to the socket).")
    client_latency: LatencySummary | None = Field(None, description="Capture to receipt by a loopback subscriber.")
    memory: MemorySummary | None = None
    cpu_count: int
    threads: int
    machine: str
    versions: dict[str, str]


def _free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def _decode_pass(source: str, max_frames: int | None) -> tuple[StageTimings, float]:
    timings = StageTimings()
    with open_source(source, SourceConfig()) as frames:
        start = last = time.perf_counter()
        count = 0
        for _frame in frames:
            now = time.perf_counter()
            timings.record("decode", now - last)
            last = now
            count += 1
            if max_frames is not None and count >= max_frames:
                break
    return timings, count / max(last - start, 1e-9)


class _Drain(threading.Thread):
    """A subscriber that reads everything, so publishing meets a real consumer; it times each receipt."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.received = 0
        self.latencies: deque[float] = deque(maxlen=1_000_000)
        self._stop_event = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with Subscriber(self.endpoint, topics=("frame", "meta")) as subscriber:
            self.ready.set()
            while not self._stop_event.is_set():
                message = subscriber.recv(timeout=0.1)
                if isinstance(message, FrameResult):
                    self.latencies.append(time.time() - message.capture_time)
                    self.received += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def run_bench(config: BenchConfig) -> BenchReport:
    decode_timings, decode_fps = _decode_pass(config.source, config.max_frames)
    tracker_config = TrackerConfig(
        max_faces=config.max_faces,
        model=config.model,
        mediapipe_weights=config.mediapipe_weights,
        landmark_engine=config.landmark_engine,
        backend=config.backend,
        coefficients=config.coefficients,
        regressor=config.regressor,
        eyes=EyeOptions(enabled=config.eyes),
        filter=FilterConfig(enabled=config.filter),
        max_frames=None if config.loop_seconds else config.max_frames,
        source=SourceConfig(realtime=config.realtime, loop=config.loop_seconds is not None),
    )
    tracker = Tracker(tracker_config)  # loads the regress engine: a bad one fails before the publisher starts
    endpoint = _free_endpoint()
    drain = _Drain(endpoint)
    publisher = ZmqPublisher(PublisherConfig(endpoint=endpoint))
    drain.start()
    drain.ready.wait(5)
    latencies: list[float] = []
    memory = _MemoryProbe(config.loop_seconds)
    counts = {"frames": 0, "with_face": 0}
    seen: dict[str, float] = {}  # perf_counter of the first and the last result
    deadline = time.monotonic() + config.loop_seconds if config.loop_seconds else None

    def on_result(result: FrameResult) -> None:
        seen["last"] = time.perf_counter()
        seen.setdefault("first", seen["last"])
        counts["frames"] += 1
        if counts["frames"] == STEADY_AFTER:
            seen["steady"] = seen["last"]
        counts["with_face"] += bool(result.faces)
        if result.publish_time is not None and len(latencies) < 1_000_000:
            latencies.append(result.publish_time - result.capture_time)
        memory.sample()
        if deadline is not None and time.monotonic() >= deadline:
            raise _Done

    start = time.perf_counter()
    with contextlib.suppress(_Done):
        tracker.run(config.source, [publisher], on_result=on_result)
    first, last = seen["first"], seen["last"]
    drain.stop()
    stages = {**decode_timings.summary(), **tracker.timings.summary()}
    selected = select_backend(config.backend)
    return BenchReport(
        source=tracker.metadata.source,
        landmark_engine=config.landmark_engine,
        coefficients=config.coefficients,
        backend=selected.name,
        backend_reason=selected.reason,
        model=config.model,
        eyes=config.eyes,
        filter=config.filter,
        frames=counts["frames"],
        frames_with_face=counts["with_face"],
        stages=stages,
        decode_fps=decode_fps,
        end_to_end_fps=(counts["frames"] - 1) / max(last - first, 1e-9),
        startup_s=first - start,
        steady_state_ms=((last - seen["steady"]) / (counts["frames"] - STEADY_AFTER) * 1e3
                         if counts["frames"] > STEADY_AFTER else None),
        latency=_latency(latencies) if config.realtime else None,
        client_latency=_latency(list(drain.latencies)) if config.realtime else None,
        memory=memory.summary(),
        cpu_count=os.cpu_count() or 1,
        threads=threading.active_count(),
        machine=f"{platform.machine()} {platform.processor() or platform.system()}",
        versions={name: package_version(name) or "not installed"
                  for name in ("mediapipe", "av", "pyzmq", "numpy", "onnxruntime", "ai-edge-litert")},
    )


class _Done(Exception):
    """Ends a looped benchmark run at its deadline."""


def _latency(seconds: list[float]) -> LatencySummary | None:
    if not seconds:
        return None
    ms = np.asarray(seconds) * 1e3
    return LatencySummary(
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)), max_ms=float(ms.max()),
    )


class _MemoryProbe:
    """Resident memory every few seconds of a looped run, after a warm-up."""

    def __init__(self, seconds: float | None, warmup: float = 20.0, every: float = 5.0) -> None:
        self._enabled = seconds is not None
        self._process = psutil.Process()
        self._start = time.monotonic()
        self._warmup = min(warmup, (seconds or 0) / 4)
        self._every = every
        self._next = self._start + self._warmup
        self._rss: list[float] = []

    def sample(self) -> None:
        now = time.monotonic()
        if self._enabled and now >= self._next:
            self._rss.append(self._process.memory_info().rss / 2**20)
            self._next = now + self._every

    def summary(self) -> MemorySummary | None:
        if len(self._rss) < 2:
            return None
        return MemorySummary(
            seconds=time.monotonic() - self._start, rss_start_mb=self._rss[0], rss_end_mb=self._rss[-1],
            rss_max_mb=max(self._rss), growth_mb=max(self._rss) - self._rss[0],
        )


def render_report(report: BenchReport) -> Table:
    info = report.source
    table = Table(title=f"{info.uri}  {info.width}x{info.height}  {report.frames} frames  "
                        f"({report.frames_with_face} with a face)  engine {report.landmark_engine}, "
                        f"coefficients {report.coefficients}, "
                        f"backend {report.backend}, model {report.model or 'none'}, "
                        f"eyes {'on' if report.eyes else 'off'}, filter {'on' if report.filter else 'off'}")
    for column in ("stage", "median ms", "p90 ms", "p99 ms", "frames"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for name, stage in report.stages.items():
        table.add_row(name, f"{stage.median_ms:.2f}", f"{stage.p90_ms:.2f}", f"{stage.p99_ms:.2f}", str(stage.frames))
    table.caption = (
        f"end-to-end {report.end_to_end_fps:.1f} fps (after {report.startup_s:.2f} s start-up), "
        + (f"steady state {report.steady_state_ms:.2f} ms/frame after {STEADY_AFTER} frames, "
           if report.steady_state_ms is not None else "")
        + f"decode alone {report.decode_fps:.1f} fps; {report.cpu_count} cpus, {report.threads} threads"
    )
    for label, latency in (("publish", report.latency), ("subscriber receipt", report.client_latency)):
        if latency:
            table.caption += (f"\ncapture->{label} latency p50 {latency.p50_ms:.2f} ms, "
                              f"p99 {latency.p99_ms:.2f} ms, max {latency.max_ms:.2f} ms")
    if report.memory:
        m = report.memory
        table.caption += (f"\nRSS over {m.seconds:.0f} s: {m.rss_start_mb:.1f} -> {m.rss_end_mb:.1f} MB "
                          f"(max growth {m.growth_mb:.1f} MB)")
    return table



def _batch_sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: comma-separated positive batch sizes, e.g. 1,8,64,256")
    return sizes

@click.command()
@click.argument("source")
@click.option("--max-frames", type=click.IntRange(min=1), default=None)
@engine_options
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--model", default="builtin", show_default=True, help="Face model to fit; `none` for landmarks only.")
@click.option("--mediapipe-weights", type=click.Choice(["off", "below-brows", "face"]), default="off",
              show_default=True, help="As `facetrack run --mediapipe-weights` (its cost shows in the fit stage).")
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
          max_faces: int, model: str, mediapipe_weights: str, no_eyes: bool, no_filter: bool, realtime: bool,
          loop_seconds: float | None,
          throughput: bool, batches: tuple[int, ...], repeats: int, json_out: Path | None) -> None:
    """Per-stage timings (median, p90) and end-to-end fps on SOURCE; with --throughput, batch faces/s."""
    from facetrack.tracker.cli.bench import BenchConfig, render_report, run_bench

    landmark_engine = resolve_engine(landmark_engine, backend, regressor,
                                     needs_fit=model != "builtin" or mediapipe_weights != "off")
    if throughput:
        _throughput(source, landmark_engine, regressor, backend, batches, repeats, json_out)
        return
    config = BenchConfig(source=source, max_frames=max_frames, max_faces=max_faces, realtime=realtime,
                         loop_seconds=loop_seconds, model=None if model == "none" else model,
                         mediapipe_weights=mediapipe_weights.replace("-", "_"),
                         eyes=not no_eyes, filter=not no_filter, backend=backend,
                         **engine_fields(landmark_engine, regressor))
    try:
        report = run_bench(config)
    except ValidationError as exc:
        raise usage_error(exc) from None
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
    from facetrack.engines.regress_landmarks import regress_engine_path
    from facetrack.engines.throughput import ThroughputConfig, measure_throughput, render_throughput

    engine_fields(engine, regressor)  # refuses --regressor without --engine regress
    try:
        choice = select_backend(backend)
        runtime = engine if engine in ("litert", "onnx") else "litert" if choice.name == "cpu" else "onnx"
        path = regress_engine_path(regressor) if engine == "regress" else None
        report = measure_throughput(ThroughputConfig(image=source, landmark_runtime=runtime, backend=backend,
                                                     batches=batches, repeats=repeats, regressor=path))
    except FacetrackError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(EXIT_USAGE)
    Console().print(render_throughput(report))
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2))
