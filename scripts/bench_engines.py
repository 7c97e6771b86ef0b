"""Engine benchmarks: landmark paths per frame (speed and agreement with mediapipe's graph), batch throughput.

    # per-frame cost of each landmark path, and its distance to mediapipe's graph, on clips
    python scripts/bench_engines.py landmarks --repeats 3 --frames 150 CLIP [CLIP ...]
    # the tracker end to end (decode thread, landmarks, track ids, rigid pose; and all stages), with and without
    # the overlap of frame N+1's landmarks with the rest of frame N
    python scripts/bench_engines.py pipeline --repeats 5 CLIP [CLIP ...]
    # faces/s of landmarks (mesh + both irises, crops included) + eye state (+ a regressor) at batch 1, 8, 64, 256
    python scripts/bench_engines.py throughput --backend cpu --runtime litert --repeats 3 [--regressor regress.onnx]

These machines are shared: each figure is the median over `--repeats` runs with the
spread (min-max); check `uptime` first. Markdown goes to stdout, `--json FILE` keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from facetrack.engines.backends import select_backend
from facetrack.engines.base import LandmarkEngine
from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
from facetrack.engines.mesh_iris import EYE_A, EYE_B, FaceMeshIris
from facetrack.engines.throughput import ThroughputConfig, measure_throughput, render_throughput
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources.frame_source import probe_source
from facetrack.tracker.stages.eye_options import EyeOptions
from facetrack.tracker.stages.filter import FilterConfig

OUTER_CORNERS = (33, 263)
LIPS = np.array([0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
                 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415])
EYES = np.concatenate([EYE_A, EYE_B])
REGIONS = {"mesh": np.setdiff1d(np.arange(468), np.concatenate([EYES, LIPS])), "eyes": EYES, "lips": LIPS,
           "irises": np.arange(468, 478)}


def _frames(clip: str, limit: int) -> list[np.ndarray]:
    frames = []
    with av.open(clip) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == limit:
                break
    return frames


def _engines(backend: str) -> dict[str, Callable[[], LandmarkEngine]]:
    return {
        "mediapipe": MediapipeFaceMesh,
        "litert": lambda: FaceMeshIris(runtime="litert"),
        "onnx": lambda: FaceMeshIris(runtime="onnx", backend=backend),
    }


def _track(engine: LandmarkEngine, frames: list[np.ndarray]) -> tuple[list[float], list[np.ndarray | None]]:
    """Per-frame seconds of engine.process and the first face's landmarks (None where no face)."""
    seconds, points = [], []
    for image in frames:
        start = time.perf_counter()
        faces = engine.process(image)
        seconds.append(time.perf_counter() - start)
        points.append(faces[0].landmarks if faces else None)
    engine.close()
    return seconds, points


def _spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def landmarks(args: argparse.Namespace) -> dict:
    """Per-frame ms (median, p90, after the first frame) and distance to mediapipe's graph."""
    results: dict = {}
    print("| clip | size | engine | ms/frame median (min-max over repeats) | p90 ms | frames with a face | "
          "mean px | max px | mean / eye-corner distance | max / eye-corner distance | "
          + " | ".join(f"{name} mean / e-c d." for name in REGIONS) + " |")
    print("|" + "---|" * (10 + len(REGIONS)))
    for clip in args.clips:
        frames = _frames(clip, args.frames)
        size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
        reference: list[np.ndarray | None] = []
        for name, make in _engines(args.backend).items():
            medians, p90s, points = [], [], []
            for _ in range(args.repeats):
                seconds, points = _track(make(), frames)
                ms = np.asarray(seconds[1:]) * 1e3
                medians.append(float(np.median(ms)))
                p90s.append(float(np.percentile(ms, 90)))
            if name == "mediapipe":
                reference = points
            pairs = [(r, p) for r, p in zip(reference, points) if r is not None and p is not None]
            dist = np.array([np.linalg.norm(r[:, :2] - p[:, :2], axis=1) for r, p in pairs])
            corner = np.array([np.linalg.norm(r[OUTER_CORNERS[0], :2] - r[OUTER_CORNERS[1], :2]) for r, _ in pairs])
            norm = dist / corner[:, None]
            row = {"ms_median": medians, "ms_p90": p90s, "with_face": sum(p is not None for p in points),
                   "mean_px": float(dist.mean()), "max_px": float(dist.max()),
                   "mean_norm": float(norm.mean()), "max_norm": float(norm.max()),
                   "regions_mean_norm": {k: float(norm[:, idx].mean()) for k, idx in REGIONS.items()}}
            results[f"{Path(clip).name}:{size}:{name}"] = row
            regions = " | ".join(f"{v:.4f}" for v in row["regions_mean_norm"].values())
            print(f"| {Path(clip).name} | {size} | {name} | {_spread(medians)} | {_spread(p90s)} | "
                  f"{row['with_face']}/{len(frames)} | {row['mean_px']:.2f} | {row['max_px']:.2f} | "
                  f"{row['mean_norm']:.4f} | {row['max_norm']:.4f} | {regions} |", flush=True)
    return results


BARE = {"model": None, "eyes": EyeOptions(enabled=False), "filter": FilterConfig(enabled=False)}
"""Landmarks, track ids and rigid pose only."""
PEER_LIKE = {"model": None}
"""Landmarks, rigid pose, eye state (open/closed, ELAM, blink events) and the filter: what OpenSeeFace's
figures cover (68 points, pose, eye openness), at the quality compared with it (jitter, closed eyes)."""
VARIANTS = {
    "landmarks + pose, overlap": ("mediapipe", BARE, True),
    "landmarks + pose, no overlap": ("mediapipe", BARE, False),
    "landmarks + pose, litert": ("litert", BARE, False),
    "+ eye state + filter, overlap": ("mediapipe", PEER_LIKE, True),
    "+ eye state + filter, no overlap": ("mediapipe", PEER_LIKE, False),
    "full pipeline, overlap": ("mediapipe", {}, True),
    "full pipeline, no overlap": ("mediapipe", {}, False),
}
"""name: (landmark engine, TrackerConfig stage settings (empty: the defaults, model fit included), overlap)."""
ENGINE_ALONE = "mediapipe engine alone"
"""The graph on decoded frames in memory, one thread, nothing else running: the machine's speed at that moment."""
PEERS_MEDIAPIPE_MS = 3.1
"""The same measure when the peers (OpenSeeFace 7.2 / 9.4 ms) were timed on this machine (DESIGN.md): a run's
ratio to ENGINE_ALONE times this is its time at that machine speed, comparable with the peers' figures."""


def pipeline(args: argparse.Namespace) -> dict:
    """ms/frame of the tracker end to end: first result to last over frames - 1 (decoding on its own thread).

    Repeats go round all variants in turn, so a spell of load from elsewhere hits them alike. The shared
    machine's speed drifts by tens of percent over a day, so each repeat also times mediapipe's graph alone
    and every variant is reported as a ratio to it as well."""
    results: dict = {}
    for clip in args.clips:
        runs: dict[str, list[float]] = {name: [] for name in [*VARIANTS, ENGINE_ALONE]}
        frames = _frames(clip, 100)
        for _ in range(args.repeats):
            seconds, _points = _track(MediapipeFaceMesh(), frames)
            runs[ENGINE_ALONE].append(float(np.median(seconds[1:])) * 1e3)
            for name, (engine, stages, overlap) in VARIANTS.items():
                config = TrackerConfig(landmark_engine=engine, backend=args.backend, overlap=overlap, **stages)
                stamps = [time.perf_counter() for _result in Tracker(config).track(clip)]
                runs[name].append((stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1e3)
        results[Path(clip).name] = runs
    print("| clip | size | variant | ms/frame median (min-max over repeats) | vs no overlap | "
          f"/ {ENGINE_ALONE} | at the peers' machine speed, ms |")
    print("|---|---|---|---|---|---|---|")
    for clip in args.clips:
        info = probe_source(clip)
        runs = results[Path(clip).name]
        alone = runs[ENGINE_ALONE]
        for name, values in runs.items():
            base = runs.get(name.replace("overlap", "no overlap")) if name.endswith(", overlap") else None
            ratio = f"{statistics.median(a / b for a, b in zip(values, base)):.2f}" if base else "-"
            speed = statistics.median(a / b for a, b in zip(values, alone))
            print(f"| {Path(clip).name} | {info.width}x{info.height} | {name} | {_spread(values)} | {ratio} | "
                  f"{speed:.2f} | {speed * PEERS_MEDIAPIPE_MS:.2f} |")
    return results


def throughput(args: argparse.Namespace) -> dict:
    """Faces/s of landmarks (crops, mesh, both irises) + eye state (+ the regressor), batched: engines/throughput.py."""
    from rich.console import Console

    report = measure_throughput(ThroughputConfig(
        image=args.clip, landmark_runtime=args.runtime, backend=args.backend, repeats=args.repeats,
        budget_s=args.budget, regressor=args.regressor))
    Console().print(render_throughput(report))
    if report.backend not in ("cuda", "tensorrt"):
        print(f"\nGPU (TensorRT / ONNX Runtime CUDA): not measured: {select_backend('auto').reason}")
    return report.model_dump(mode="json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    lm = sub.add_parser("landmarks", help="per-frame cost and agreement with mediapipe's graph")
    lm.add_argument("clips", nargs="+")
    lm.add_argument("--frames", type=int, default=150)
    pl = sub.add_parser("pipeline", help="the tracker end to end per landmark engine")
    pl.add_argument("clips", nargs="+")
    tp = sub.add_parser("throughput", help="faces/s at batch sizes 1, 8, 64, 256")
    tp.add_argument("--clip", default=str(Path(__file__).resolve().parents[2] / "shared" / "media" / "videos"
                                          / "SadTalker_ref" / "WDA_KatieHill_000.mp4"))
    tp.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per figure")
    tp.add_argument("--runtime", default="onnx", choices=("litert", "onnx"), help="landmark runtime")
    tp.add_argument("--regressor", type=Path, default=None, help="a regress engine (.onnx) to include")
    for p in (lm, pl, tp):
        p.add_argument("--backend", default="cpu", choices=("auto", "cpu", "cuda", "tensorrt"))
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {"landmarks": landmarks, "pipeline": pipeline, "throughput": throughput}[args.command](args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
