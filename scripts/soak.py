"""Load and soak: N concurrent live streams for T seconds, then a clean stop.

Each stream is a real `facetrack run CLIP --realtime --loop --publish` process (a file
paced as a live camera), drained by a subscriber here. Every few seconds the script
samples each process's resident memory, open files and threads; at the end it sends
SIGINT and checks each process exits cleanly (130) having flushed its outputs.

    python scripts/soak.py --streams 4 --seconds 120      # load: 4 streams on 2 cores
    python scripts/soak.py --streams 1 --seconds 1800     # soak: 30 minutes

Prints a JSON report: per stream frames received, frames the source dropped,
memory/files/threads after warm-up and at the end, and the exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.tracker.core.schema import FrameResult

DEFAULT_CLIP = Path(os.environ.get("FACETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media")) \
    / "videos" / "SadTalker_ref" / "WDA_KatieHill_000.mp4"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Counter(threading.Thread):
    """Counts the frames a stream publishes and remembers the source's drop count."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.frames = 0
        self.dropped = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        with Subscriber(self.endpoint, topics=("frame",)) as subscriber:
            while not self.stop_event.is_set():
                message = subscriber.recv(timeout=0.2)
                if isinstance(message, FrameResult):
                    self.frames += 1
                    self.dropped = message.dropped_frames


def _default_sigint() -> None:
    """In the child: SIGINT stops it as Ctrl-C does, even when this script was started in the background
    (a shell's `&` ignores SIGINT, and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sample(process: psutil.Process) -> dict[str, float]:
    with process.oneshot():
        return {"rss_mb": process.memory_info().rss / 2**20, "open_files": process.num_fds(),
                "threads": process.num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the first memory sample")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    streams = []
    for i in range(args.streams):
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        counter = _Counter(endpoint)
        counter.start()
        proc = subprocess.Popen(
            [sys.executable, "-m", "facetrack.tracker.cli", "run", str(args.clip), "--realtime", "--loop", "--quiet",
             "--model", args.model, "--stream-id", f"s{i}", "--publish", endpoint],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=_default_sigint,
        )
        streams.append({"endpoint": endpoint, "counter": counter, "proc": proc, "samples": []})
    started = time.monotonic()
    next_sample = started + min(args.warmup, args.seconds / 3)
    while time.monotonic() - started < args.seconds:
        time.sleep(1.0)
        if any(s["proc"].poll() is not None for s in streams):
            break
        if time.monotonic() >= next_sample:
            for s in streams:
                s["samples"].append(_sample(psutil.Process(s["proc"].pid)))
            next_sample = time.monotonic() + args.every
    elapsed = time.monotonic() - started
    report_streams = []
    for s in streams:
        crashed_early = s["proc"].poll() is not None
        if not crashed_early:
            s["proc"].send_signal(signal.SIGINT)
        try:
            _, stderr = s["proc"].communicate(timeout=30)
        except subprocess.TimeoutExpired:
            s["proc"].kill()
            _, stderr = s["proc"].communicate()
        time.sleep(0.3)
        s["counter"].stop_event.set()
        s["counter"].join(timeout=5)
        first, last = (s["samples"][0], s["samples"][-1]) if s["samples"] else ({}, {})
        report_streams.append({
            "frames_received": s["counter"].frames,
            "frames_dropped_by_source": s["counter"].dropped,
            "fps_received": round(s["counter"].frames / elapsed, 1),
            "first_sample": first, "last_sample": last,
            "rss_mb_samples": [round(x["rss_mb"], 1) for x in s["samples"]],
            "rss_growth_mb": round(max(x["rss_mb"] for x in s["samples"]) - first["rss_mb"], 1) if first else None,
            "open_files_growth": (last["open_files"] - first["open_files"]) if first else None,
            "threads_growth": (last["threads"] - first["threads"]) if first else None,
            "exit_code": s["proc"].returncode,
            "clean_exit": s["proc"].returncode == 130 and not crashed_early,
            "stderr_tail": stderr.strip().splitlines()[-1:] if stderr else [],
        })
    report = {"streams": args.streams, "seconds": round(elapsed, 1), "clip": str(args.clip), "model": args.model,
              "cpu_count": os.cpu_count(), "per_stream": report_streams}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text)
    raise SystemExit(0 if all(s["clean_exit"] for s in report_streams) else 1)


if __name__ == "__main__":
    main()
