"""CPU time per frame of each pipeline stage on the tracker's own thread, after the start-up frames.

Wall-clock stage timings (`facetrack bench`) grow with whatever else the machine runs; the CPU time of
the tracker's thread (`time.thread_time`) is what the stages themselves cost, so it is what to compare
between two versions of the code on a shared machine. The stages' entry points are wrapped (the
landmark engine's submit/collect included: the part of mediapipe's cost that runs on this thread);
the process CPU time per frame (every thread: mediapipe's graph, the decoder) is printed beside it.

    python scripts/stage_cpu.py CLIP [--skip 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import time

from facetrack.engines import mediapipe_mesh
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.stages import dynamics, eye_state, filter, fit, tracks

_STAGES = (
    (mediapipe_mesh.MediapipeFaceMesh, "submit", "landmarks (submit)"),
    (mediapipe_mesh.MediapipeFaceMesh, "collect", "landmarks (collect)"),
    (tracks.TrackAssigner, "assign", "tracks"),
    (eye_state.EyeStage, "measure", "eyes"),
    (fit.FitStage, "fit", "fit"),
    (fit.FitStage, "write", "fit (write)"),
    (dynamics.LipLidDynamics, "refine", "dynamics"),
    (eye_state.EyeStage, "reconcile", "events (reconcile)"),
    (eye_state.EyeStage, "gaze", "gaze"),
    (filter.FaceFilter, "apply", "filter"),
    (eye_state.EyeStage, "finish", "events (finish)"),
)


def _wrap(spent: collections.Counter, counting: list[bool]) -> None:
    for cls, name, label in _STAGES:
        method = getattr(cls, name)

        @functools.wraps(method)
        def timed(*args, _method=method, _label=label, **kwargs):
            start = time.thread_time()
            try:
                return _method(*args, **kwargs)
            finally:
                if counting[0]:
                    spent[_label] += time.thread_time() - start

        setattr(cls, name, timed)


def _once(clip: str, skip: int, spent: collections.Counter, counting: list[bool]) -> tuple[int, float, float]:
    """(frames counted, tracker-thread CPU s, process CPU s) of one run after its first `skip` frames."""
    counting[0] = False
    spent.clear()
    with Tracker(TrackerConfig()) as tracker:
        results = tracker.track(clip)
        for _ in range(skip):
            next(results)
        counting[0] = True
        thread0, process0 = time.thread_time(), time.process_time()
        frames = sum(1 for _ in results)
        return frames, time.thread_time() - thread0, time.process_time() - process0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip")
    parser.add_argument("--skip", type=int, default=10, help="start-up frames left out (the issue's 10)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spent: collections.Counter = collections.Counter()
    counting = [False]
    _wrap(spent, counting)
    per_stage: dict[str, list[float]] = collections.defaultdict(list)
    threads, processes = [], []
    for _ in range(args.repeats):
        frames, thread_s, process_s = _once(args.clip, args.skip, spent, counting)
        threads.append(thread_s / frames * 1e3)
        processes.append(process_s / frames * 1e3)
        for _cls, _name, label in _STAGES:
            per_stage[label].append(spent[label] / frames * 1e3)
        per_stage["other (the loop, results)"].append(threads[-1] - sum(spent.values()) / frames * 1e3)

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    print(f"{args.clip}: CPU ms per frame after the first {args.skip}, median (min-max) of {args.repeats} runs")
    print(f"  tracker thread  {spread(threads)}")
    print(f"  whole process   {spread(processes)}")
    for label, values in per_stage.items():
        print(f"    {label:26s} {spread(values)}")


if __name__ == "__main__":
    main()
