"""Repeat `facetrack bench` on several clips and print a Markdown table for BENCHMARKS.md.

Each clip is benchmarked `--repeats` times in one process (these machines are noisy:
report the median and the spread, compare in one run).

    python scripts/bench_pipeline.py --model none --no-eyes --no-filter --repeats 3 CLIP [CLIP ...]
    python scripts/bench_pipeline.py --realtime --model none CLIP      # capture-to-publish latency
"""

from __future__ import annotations

import argparse
import statistics

from facetrack.tracker.cli.bench import BenchConfig, BenchReport, run_bench

STAGES = ("decode", "landmarks", "eyes", "pose", "fit", "dynamics", "gaze", "filter", "events", "publish")


def _spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _row(clip: str, reports: list[BenchReport]) -> str:
    info = reports[0].source
    stages = {name: [r.stages[name] for r in reports] for name in reports[0].stages}
    cells = [f"{clip.split('/')[-1]}", f"{info.width}x{info.height}", str(reports[0].frames),
             _spread([r.end_to_end_fps for r in reports])]
    for name in STAGES:
        if name in stages:
            cells.append(f"{statistics.median(s.median_ms for s in stages[name]):.2f} / "
                         f"{statistics.median(s.p90_ms for s in stages[name]):.2f}")
        else:
            cells.append("-")
    for kind in ("latency", "client_latency"):
        if getattr(reports[0], kind) is not None:
            cells.append(_spread([getattr(r, kind).p50_ms for r in reports], 2) + " / " +
                         _spread([getattr(r, kind).p99_ms for r in reports], 2))
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--model", default="none", help="face model, or none")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--no-eyes", action="store_true")
    parser.add_argument("--no-filter", action="store_true")
    args = parser.parse_args()
    header = ["clip", "size", "frames", "end-to-end fps median (min-max)",
              *(f"{name} ms med / p90" for name in STAGES)]
    if args.realtime:
        header += ["capture->publish p50 / p99 ms", "capture->subscriber receipt p50 / p99 ms"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for clip in args.clips:
        model = None if args.model == "none" else args.model
        config = BenchConfig(source=clip, model=model, realtime=args.realtime, max_frames=args.max_frames,
                             eyes=not args.no_eyes, filter=not args.no_filter)
        reports = [run_bench(config) for _ in range(args.repeats)]
        print(_row(clip, reports), flush=True)


if __name__ == "__main__":
    main()
