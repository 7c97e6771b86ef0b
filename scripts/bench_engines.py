"""Engine benchmarks: landmark paths per frame (speed and agreement with mediapipe's graph), batch throughput.

    # per-frame cost of each landmark path, and its distance to mediapipe's graph, on clips
    python scripts/bench_engines.py landmarks --repeats 3 --frames 150 CLIP [CLIP ...]
    # the tracker end to end (decode thread, landmarks, track ids, rigid pose) per landmark engine
    python scripts/bench_engines.py pipeline --repeats 3 CLIP [CLIP ...]
    # faces/s of landmarks (mesh + both irises, crops included) + eye state at batch 1, 8, 64, 256
    python scripts/bench_engines.py throughput --backend cpu --repeats 3

These machines are shared: each figure is the median over `--repeats` runs with the
spread (min-max); check `uptime` first. Markdown goes to stdout, `--json FILE` keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from facetrack.engines.backends import open_network, select_backend
from facetrack.engines.base import LandmarkEngine
from facetrack.engines.eye_state import DEFAULT_ENGINE as EYE_STATE
from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
from facetrack.engines.mesh_iris import EYE_A, EYE_B, ROLL_POINTS, FaceMeshIris, points_roi
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.eye_stage import EyeOptions
from facetrack.tracker.filters import FilterConfig
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources import probe_source

BATCHES = (1, 8, 64, 256)
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


def pipeline(args: argparse.Namespace) -> dict:
    """ms/frame of the tracker end to end: first result to last over frames - 1 (decoding on its own thread)."""
    results: dict = {}
    print("| clip | size | landmark engine | ms/frame median (min-max over repeats) | frames |")
    print("|---|---|---|---|---|")
    for clip in args.clips:
        info = probe_source(clip)
        for engine in ("mediapipe", "litert"):
            runs = []
            for _ in range(args.repeats):
                config = TrackerConfig(landmark_engine=engine, backend=args.backend, model=None,
                                       eyes=EyeOptions(enabled=False), filter=FilterConfig(enabled=False))
                stamps = [time.perf_counter() for _result in Tracker(config).track(clip)]
                runs.append((stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1e3)
            results[f"{Path(clip).name}:{engine}"] = runs
            print(f"| {Path(clip).name} | {info.width}x{info.height} | {engine} | {_spread(runs)} | "
                  f"{len(stamps)} |", flush=True)
    return results


def _timed(fn, budget_s: float) -> float:
    """Seconds per call: one warm-up, then calls until `budget_s` is spent (at least 2, at most 50)."""
    fn()
    times = []
    started = time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - started < budget_s and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def throughput(args: argparse.Namespace) -> dict:
    """Faces/s of landmarks (crops, mesh, both irises) + eye state, batched, on one frame's face ROI."""
    choice = select_backend(args.backend)
    image = _frames(args.clip, 1)[0]
    probe = FaceMeshIris(runtime="litert")
    face = probe.process(image)[0]
    rect = points_roi(face.landmarks, *ROLL_POINTS, 1.5)
    eye_state = open_network(EYE_STATE, args.backend, max_batch=2 * max(BATCHES))
    crops = np.random.default_rng(0).random((2 * max(BATCHES), 1, 36, 48), dtype=np.float32)
    engines = {"litert": probe, "onnx": FaceMeshIris(runtime="onnx", backend=args.backend,
                                                     max_faces=max(BATCHES))}
    results: dict = {"backend": choice.name, "reason": choice.reason, "threads": 1}
    print(f"backend {choice.name} ({choice.reason}); one thread per network; {os.cpu_count()} cpus\n")
    print("| landmark runtime | batch | landmarks ms/batch | eye state ms/batch | faces/s median (min-max) |")
    print("|---|---|---|---|---|")
    for name, engine in engines.items():
        for batch in BATCHES:
            rects = [rect] * batch
            runs = []
            for _ in range(args.repeats):
                lm = _timed(lambda: engine.landmarks(image, rects), args.budget)
                eyes = _timed(lambda: eye_state.infer(crops[: 2 * batch]), args.budget)
                runs.append((lm, eyes))
            fps = [batch / (lm + eyes) for lm, eyes in runs]
            results[f"{name}:{batch}"] = {"landmarks_s": [r[0] for r in runs], "eye_state_s": [r[1] for r in runs],
                                          "faces_per_s": fps}
            print(f"| {name} | {batch} | {statistics.median(r[0] for r in runs) * 1e3:.2f} | "
                  f"{statistics.median(r[1] for r in runs) * 1e3:.2f} | {_spread(fps, 0)} |", flush=True)
    if choice.name not in ("cuda", "tensorrt"):
        print(f"\nGPU (TensorRT / ONNX Runtime CUDA): not measured: {select_backend('auto').reason}")
    return results


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
