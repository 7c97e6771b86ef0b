"""Drive a VTuber avatar (VSeeFace, Warudo, VNyan, EVMC4U, VMC4B) from a webcam or a video over VMC.

    python examples/vmc_session.py webcam:0                    # to 127.0.0.1:39539
    python examples/vmc_session.py clip.mp4 --realtime --vmc 127.0.0.1:39540

In the avatar app, enable its VMC protocol receiver on the same port (VSeeFace: Settings >
General settings > VMC protocol receiver; a VRM with ARKit "Perfect Sync" clips gets all
52 blendshapes). Without an avatar app, `--monitor PORT` prints what a receiver gets:

    python examples/vmc_session.py --monitor 39539             # terminal 1
    python examples/vmc_session.py webcam:0                    # terminal 2
"""

from __future__ import annotations

import argparse
import time

from facetrack.adapters.udp import parse_host_port
from facetrack.adapters.vmc import DEFAULT_PORT, VmcConfig, VmcSender


def track(source: str, target: str | None, realtime: bool, max_frames: int | None) -> None:
    from facetrack.tracker.config import TrackerConfig
    from facetrack.tracker.pipeline import Tracker
    from facetrack.tracker.sources.config import SourceConfig

    host, port = parse_host_port(target, DEFAULT_PORT)
    sender = VmcSender(VmcConfig(host=host, port=port))
    tracker = Tracker(TrackerConfig(max_frames=max_frames, source=SourceConfig(realtime=realtime)))
    frames = tracker.run(source, [sender])
    print(f"{frames} frames tracked, {sender.datagrams_sent} VMC bundles sent to {host}:{port}")
    summary = tracker.timings.summary().get("vmc")
    if summary is not None:
        print(f"VMC sink: median {summary.median_ms:.3f} ms, p99 {summary.p99_ms:.3f} ms per frame")


def monitor(port: int, seconds: float | None) -> None:
    """Print one line per frame received (at its Blend/Apply): head rotation and the strongest blendshape."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer

    values: dict[str, float] = {}
    head: list = ["-", *([0.0] * 7)]

    def on_blend(_address: str, name: str, value: float) -> None:
        values[name] = value

    def on_head(_address: str, *bone: str | float) -> None:
        head[:] = bone

    def on_apply(_address: str) -> None:
        top = max(values.items(), key=lambda kv: kv[1], default=("-", 0.0))
        name, *pose = head
        print(f"{name} p=({pose[0]:+.3f}, {pose[1]:+.3f}, {pose[2]:+.3f}) "
              f"q=({pose[3]:+.3f}, {pose[4]:+.3f}, {pose[5]:+.3f}, {pose[6]:+.3f})  "
              f"{len(values)} blendshapes, top {top[0]}={top[1]:.2f}", flush=True)
        values.clear()

    dispatcher = Dispatcher()
    dispatcher.map("/VMC/Ext/Blend/Val", on_blend)
    dispatcher.map("/VMC/Ext/Bone/Pos", on_head)
    dispatcher.map("/VMC/Ext/Blend/Apply", on_apply)
    server = BlockingOSCUDPServer(("127.0.0.1", port), dispatcher)
    server.timeout = 0.5
    deadline = None if seconds is None else time.monotonic() + seconds
    print(f"listening for VMC on 127.0.0.1:{port}")
    try:
        while deadline is None or time.monotonic() < deadline:
            server.handle_request()
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="webcam:N, a video file, an image folder...")
    parser.add_argument("--vmc", default=None, metavar="HOST:PORT",
                        help=f"Receiver (default 127.0.0.1:{DEFAULT_PORT}).")
    parser.add_argument("--realtime", action="store_true", help="Pace a file at its frame rate.")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--monitor", type=int, metavar="PORT", help="Print what a VMC receiver on PORT gets.")
    parser.add_argument("--seconds", type=float, default=None, help="Stop monitoring after this long.")
    args = parser.parse_args()
    if args.monitor is not None:
        monitor(args.monitor, args.seconds)
    elif args.source:
        track(args.source, args.vmc, args.realtime, args.max_frames)
    else:
        parser.error("give a SOURCE to track, or --monitor PORT")


if __name__ == "__main__":
    main()
