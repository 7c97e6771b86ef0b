"""Batch throughput: faces per second of landmarks + eye state (+ the regressor) at several batch sizes.

Batch mode (many clips, many faces) is limited by how many faces the networks get through
per second, not by one frame's latency. One real face region is cut from a frame and
repeated `batch` times; each stage is timed on its own (its crops included, since on a
GPU the host-side crops are what usually limits), so the report can name the slowest
stage. On a GPU the utilisation is sampled with `nvidia-smi` while the stages run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from rich.table import Table

from facetrack.engines.backends import BackendName, open_network, select_backend
from facetrack.engines.eye_state import DEFAULT_ENGINE as EYE_STATE
from facetrack.engines.mesh_iris import ROLL_POINTS, FaceMeshIris, points_roi, rect_affine
from facetrack.engines.network import Network
from facetrack.engines.onnx_runtime import EngineError
from facetrack.engines.preprocess import crop_batch

BATCHES: tuple[int, ...] = (1, 8, 64, 256)


class ThroughputConfig(BaseModel):
    """What to measure: the landmark runtime, the backend, batch sizes and how long to time each figure."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="A video or image whose first frame shows a face.")
    landmark_runtime: Literal["litert", "onnx"] = "onnx"
    backend: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    batches: tuple[PositiveInt, ...] = Field(BATCHES, min_length=1)
    repeats: int = Field(3, ge=1)
    budget_s: float = Field(1.0, gt=0, description="Timed calls per figure run for about this long (2 to 50 calls).")
    regressor: Path | None = Field(None, description="A `regress` engine (.onnx) to include; None leaves it out.")
    threads: int = Field(1, ge=1, description="Threads per network on the CPU.")


class BatchRow(BaseModel):
    """Median seconds per batch of each stage over the repeats, and faces/s of all stages together."""

    batch: int
    stage_s: dict[str, float]
    faces_per_s: list[float]

    @property
    def slowest(self) -> str:
        return max(self.stage_s, key=self.stage_s.__getitem__)


class ThroughputReport(BaseModel):
    landmark_runtime: str
    backend: str
    backend_reason: str
    threads: int
    stages: list[str]
    rows: list[BatchRow]
    gpu_utilisation: float | None = Field(None, description="Mean GPU utilisation (%) while timing; None on a CPU.")


def _timed(fn: Callable[[], object], budget_s: float) -> float:
    """Median seconds per call after one warm-up: calls until the budget is spent (at least 2, at most 50)."""
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - started < budget_s and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _first_frame(path: str) -> np.ndarray:
    import av

    try:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration) as exc:
        raise EngineError(f"{path}: no frame could be decoded ({exc}); pass a video or image with a face") from exc
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


class _GpuSampler:
    """`nvidia-smi` polling GPU utilisation every 100 ms in the background; absent on machines without it."""

    def __init__(self) -> None:
        exe = shutil.which("nvidia-smi")
        self._proc = None if exe is None else subprocess.Popen(
            [exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100", "-i", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def stop(self) -> float | None:
        if self._proc is None:
            return None
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=5)
        values = [float(v) for v in out.split() if v.replace(".", "", 1).isdigit()]
        return statistics.fmean(values) if values else None


class _Regress:
    """The regressor's crop (the face region scaled to its input) and inference, as the runtime runs them."""

    def __init__(self, path: Path, backend: BackendName, threads: int, max_batch: int, device: str) -> None:
        self.network: Network = open_network(path, backend, threads=threads, max_batch=max_batch)
        meta = self.network.metadata
        if meta.get("engine") != "regress":
            raise EngineError(f"{path} is not a regress engine (engine={meta.get('engine')!r})")
        self.size = int(meta["input_size"][0])
        norm = meta["normalisation"]
        self.lo = -float(norm["mean"]) / float(norm["std"])
        self.hi = (1 - float(norm["mean"])) / float(norm["std"])
        self.device = device

    def call(self, image: np.ndarray, rect: np.ndarray, batch: int) -> Callable[[], object]:
        """The timed call for `batch` copies of the face region `rect`."""
        return partial(self.run, image, np.stack([rect_affine(rect, self.size)] * batch))

    def run(self, image: np.ndarray, affines: np.ndarray) -> list[np.ndarray]:
        crops = crop_batch(image, affines, self.size, self.lo, self.hi, self.device)
        if self.device == "gpu" and self.network.backend != "tensorrt":
            crops = crops.get()
        return self.network.infer(crops.transpose(0, 3, 1, 2))


class _LandmarkRegress:
    """The landmark regressor's inference on a batch of feature rows (their preparation from the landmarks is
    the regress stage's, timed by `facetrack bench`: engines/ cannot run a tracker stage)."""

    def __init__(self, path: Path, backend: BackendName, threads: int, max_batch: int) -> None:
        from facetrack.engines.regress_landmarks import LandmarkRegressEngine

        self.engine = LandmarkRegressEngine(path, backend, threads=threads, max_batch=max_batch)
        self.network = self.engine.network
        self.rows = np.random.default_rng(0).standard_normal((max_batch, self.engine.features)).astype(np.float32)

    def call(self, image: np.ndarray, rect: np.ndarray, batch: int) -> Callable[[], object]:
        """The timed call for `batch` faces."""
        return partial(self.network.infer, self.rows[:batch])


def _regressor(path: Path, backend: BackendName, threads: int, max_batch: int,
               device: str) -> _Regress | _LandmarkRegress:
    """The crop regressor's or the landmark regressor's timed call, as the engine's sidecar says."""
    from facetrack.engines.regress_landmarks import is_landmark_engine

    if is_landmark_engine(path):
        return _LandmarkRegress(path, backend, threads, max_batch)
    return _Regress(path, backend, threads, max_batch, device)


def measure_throughput(config: ThroughputConfig) -> ThroughputReport:
    """Faces/s per batch size; each figure the median over `repeats` (faces/s: one value per repeat)."""
    choice = select_backend(config.backend)
    if config.landmark_runtime == "litert" and choice.name != "cpu":
        raise EngineError("the LiteRT landmark runtime runs on the CPU only; use landmark_runtime='onnx' on a GPU")
    device = "gpu" if choice.name in ("cuda", "tensorrt") else "cpu"
    image = _first_frame(config.image)
    most = max(config.batches)
    probe = FaceMeshIris(runtime="litert")
    faces = probe.process(image)
    if not faces:
        raise EngineError(f"{config.image}: no face in the first frame; pass a clip that starts with a face")
    rect = points_roi(faces[0].landmarks, *ROLL_POINTS, 1.5)
    engine = probe if config.landmark_runtime == "litert" else FaceMeshIris(
        runtime="onnx", backend=config.backend, threads=config.threads, max_faces=most, device=device)
    eye_state = open_network(EYE_STATE, config.backend, threads=config.threads, max_batch=2 * most)
    eye_w, eye_h = (int(v) for v in eye_state.metadata["input_size"])
    eye_crops = np.random.default_rng(0).random((2 * most, 1, eye_h, eye_w), dtype=np.float32)
    regress = None if config.regressor is None else _regressor(config.regressor, config.backend, config.threads,
                                                               most, device)
    stages = ["landmarks", "eye_state"] + (["regress"] if regress is not None else [])
    sampler = _GpuSampler() if device == "gpu" else None
    rows = []
    for batch in config.batches:
        rects = [rect] * batch
        calls: dict[str, Callable[[], object]] = {
            "landmarks": partial(engine.landmarks, image, rects),
            "eye_state": partial(eye_state.infer, eye_crops[: 2 * batch]),
        }
        if regress is not None:
            calls["regress"] = regress.call(image, rect, batch)
        runs = [{name: _timed(fn, config.budget_s) for name, fn in calls.items()} for _ in range(config.repeats)]
        rows.append(BatchRow(batch=batch, stage_s={s: statistics.median(r[s] for r in runs) for s in stages},
                             faces_per_s=[batch / sum(r.values()) for r in runs]))
    utilisation = sampler.stop() if sampler is not None else None
    for network in [eye_state] + ([regress.network] if regress is not None else []):
        network.close()
    return ThroughputReport(landmark_runtime=config.landmark_runtime, backend=choice.name,
                            backend_reason=choice.reason, threads=config.threads, stages=stages, rows=rows,
                            gpu_utilisation=utilisation)


def render_throughput(report: ThroughputReport) -> Table:
    """The report as a rich table: ms per batch per stage, faces/s (median and range), the slowest stage."""
    table = Table(title=f"Batch throughput: {report.landmark_runtime} landmarks on {report.backend} "
                        f"({report.backend_reason}); {report.threads} thread(s) per network")
    table.add_column("batch", justify="right")
    for stage in report.stages:
        table.add_column(f"{stage} ms/batch", justify="right")
    table.add_column("faces/s median (min-max)", justify="right")
    table.add_column("slowest stage")
    for row in report.rows:
        fps = row.faces_per_s
        table.add_row(str(row.batch), *(f"{row.stage_s[s] * 1e3:.2f}" for s in report.stages),
                      f"{statistics.median(fps):.0f} ({min(fps):.0f}-{max(fps):.0f})", row.slowest)
    if report.gpu_utilisation is not None:
        table.caption = f"GPU utilisation while timing: {report.gpu_utilisation:.0f}% (nvidia-smi, mean)"
    return table
