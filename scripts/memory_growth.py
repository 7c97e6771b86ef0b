"""Where a live run's memory grows: tracemalloc snapshots of a looped clip, diffed between two frames.

Runs the default pipeline in this process on CLIP played in a loop (as `facetrack run --loop`, not paced),
takes a tracemalloc snapshot and the resident size at frame FIRST and frame LAST, and prints the traced
and resident growth and the allocation sites that grew most, with their call stacks. Python objects that
pile up show here; growth in native code shows only in the resident size (compare runs with and
without a stage, e.g. `--no-eyes`, `--model none`). `--every N --no-trace` prints the resident size and
Python's allocated blocks every N frames instead, at full speed (tracemalloc's own bookkeeping grows).

    python scripts/memory_growth.py --first 300 --last 2300
    python scripts/memory_growth.py --last 6000 --every 500 --no-trace
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tracemalloc
from pathlib import Path

import psutil

from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import FrameResult
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources.config import SourceConfig
from facetrack.tracker.sources.frame_source import open_source
from facetrack.tracker.stages.eye_options import EyeOptions

DEFAULT_CLIP = Path(os.environ.get("FACETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media")) \
    / "videos" / "SadTalker_ref" / "WDA_KatieHill_000.mp4"


class _Snapshots:
    """A sink that snapshots memory at two frame counts."""

    stage = "snapshots"

    def __init__(self, at: tuple[int, int], every: int | None) -> None:
        self.at = at
        self.every = every
        self.frames = 0
        self.taken: dict[int, tuple[tracemalloc.Snapshot, float]] = {}
        self._process = psutil.Process()

    def start(self, _metadata: object) -> None:
        """Nothing to open."""

    def write(self, _result: FrameResult) -> None:
        self.frames += 1
        if self.every and self.frames % self.every == 0:
            gc.collect()
            print(f"frame {self.frames}: resident {self._process.memory_info().rss / 2**20:.1f} MB, "
                  f"{sys.getallocatedblocks()} allocated blocks", flush=True)
        if tracemalloc.is_tracing() and self.frames in self.at:
            self.taken[self.frames] = (tracemalloc.take_snapshot(), self._process.memory_info().rss / 2**20)

    def close(self) -> None:
        """Nothing to close."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--first", type=int, default=300, help="frame of the first snapshot (after warm-up)")
    parser.add_argument("--last", type=int, default=2300)
    parser.add_argument("--top", type=int, default=8, help="allocation sites to print")
    parser.add_argument("--model", default="builtin", help="face model; `none` for landmarks only")
    parser.add_argument("--no-eyes", action="store_true")
    parser.add_argument("--every", type=int, default=None, help="print the resident size every N frames")
    parser.add_argument("--no-trace", action="store_true", help="no tracemalloc snapshots (with --every)")
    args = parser.parse_args()

    config = TrackerConfig(source=SourceConfig(loop=True), max_frames=args.last,
                           model=None if args.model == "none" else args.model,
                           eyes=EyeOptions(enabled=not args.no_eyes))
    tracker = Tracker(config)
    probe = _Snapshots((args.first, args.last), args.every)
    if not args.no_trace:
        tracemalloc.start(25)
    tracker.run(open_source(str(args.clip), config.source), [probe])
    if args.no_trace:
        return
    (first, rss_first), (last, rss_last) = probe.taken[args.first], probe.taken[args.last]
    traced = [sum(s.size for s in snap.statistics("filename")) / 2**20 for snap in (first, last)]
    frames = args.last - args.first
    print(f"{frames} frames: resident {rss_first:.1f} -> {rss_last:.1f} MB, traced by Python {traced[0]:.2f} -> "
          f"{traced[1]:.2f} MB ({(traced[1] - traced[0]) * 2**20 / frames:.0f} bytes a frame; tracemalloc's own "
          "bookkeeping adds to the resident size)")
    for stat in last.compare_to(first, "traceback")[: args.top]:
        print(f"\n{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks, allocated at:")
        print("\n".join(stat.traceback.format(limit=8)))


if __name__ == "__main__":
    main()
