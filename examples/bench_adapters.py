"""Per-frame cost of the adapters and loopback latency publish -> client receipt.

    python examples/bench_adapters.py --frames 2000

Cost: the sink's write() for one face with 52 blendshapes (what the pipeline times under
the sink's stage). Latency: a receiver in its own process stamps each message on arrival
(after decoding it) against the sender's wall clock just before send: ZeroMQ with our
Python Subscriber and with the Node client, VMC with a python-osc server. The first 10%
of each series is dropped as warm-up. Capture ->
publish is the pipeline's part (`facetrack bench --realtime`); add it for end to end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from facetrack.adapters.livelink import LiveLinkConfig, LiveLinkSender
from facetrack.adapters.vmc import VmcConfig, VmcSender
from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher
from facetrack.tracker.core.schema import FaceResult, FrameResult, HeadPose, SourceInfo, StreamMetadata

ROOT = Path(__file__).resolve().parents[1]
METADATA = StreamMetadata(stream_id="bench", source=SourceInfo(uri="x", live=True, width=1280, height=720),
                          started_at=time.time())


def frame(i: int) -> FrameResult:
    rng = np.random.default_rng(i)
    face = FaceResult(track_id=1, bbox=(0, 0, 1, 1), score=1.0, landmarks=rng.random((478, 3), dtype=np.float32) * 700,
                      pose=HeadPose(rotation=(0.0, 0.0871557, 0.0, 0.9961947), yaw=10, pitch=0, roll=0,
                                    translation=(1, 2, -60)),
                      blendshapes=rng.random(52, dtype=np.float32))
    return FrameResult(stream_id="bench", frame_index=i, pts=i / 30, capture_time=time.time(), width=1280,
                       height=720, faces=[face])


def stats(ms: list[float]) -> str:
    """p50/p99 without the first 10% (warm-up: imports, first connections, lazy schema builds)."""
    a = np.asarray(ms[len(ms) // 10:])
    return f"p50 {np.percentile(a, 50):.3f} ms, p99 {np.percentile(a, 99):.3f} ms (n={a.size})"


def cost(sink, frames: list[FrameResult]) -> str:
    sink.start(METADATA)
    times = []
    for f in frames:
        t0 = time.perf_counter()
        sink.write(f)
        times.append((time.perf_counter() - t0) * 1e3)
    sink.close()
    return stats(times)


_PY_SUB = """
import sys, time, json
from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.tracker.core.schema import FrameResult
out = []
with Subscriber(sys.argv[1], topics=("frame",)) as sub:
    print("ready", flush=True)
    while len(out) < int(sys.argv[2]):
        m = sub.recv(timeout=10)
        if m is None: break
        if isinstance(m, FrameResult): out.append((time.time() - m.publish_time) * 1e3)
print(json.dumps(out))
"""

_OSC_SUB = """
import sys, time, json
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
got = []
d = Dispatcher()
d.map("/VMC/Ext/Blend/Apply", lambda *a: got.append(time.time()))  # a frame's last bundle arrived
s = BlockingOSCUDPServer(("127.0.0.1", int(sys.argv[1])), d)
s.timeout = 0.5
print("ready", flush=True)
last = time.time()
while len(got) < int(sys.argv[2]) and time.time() - last < 5:
    before = len(got)
    s.handle_request()
    if len(got) > before: last = time.time()
print(json.dumps(got))
"""


def zmq_latency(n: int, client: list[str]) -> list[float]:
    publisher = ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*", metadata_interval_s=0.5))
    publisher.start(METADATA)
    proc = subprocess.Popen([*client, publisher.endpoint, str(n)], stdout=subprocess.PIPE, text=True)
    i = 0
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # late joiner: publish until it has n frames
        publisher.write(frame(i))
        i += 1
        time.sleep(1 / 120)
    out, _ = proc.communicate(timeout=30)
    publisher.close()
    return json.loads(out.splitlines()[-1])


def vmc_latency(n: int) -> list[float]:
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, "-c", _OSC_SUB, str(port), str(n)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    sender = VmcSender(VmcConfig(port=port))
    sent = []
    for i in range(n):
        f = frame(i)
        sent.append(time.time())
        sender.write(f)
        time.sleep(1 / 120)
    out, _ = proc.communicate(timeout=30)
    sender.close()
    got = json.loads(out.splitlines()[-1])
    return [(r - s) * 1e3 for s, r in zip(sent, got)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000, help="Frames for the cost measurements.")
    parser.add_argument("--latency-frames", type=int, default=600, help="Messages per latency measurement.")
    args = parser.parse_args()
    frames = [frame(i) for i in range(args.frames)]
    print("per-frame cost of write(), one face with 52 blendshapes:")
    print("  vmc       ", cost(VmcSender(VmcConfig(port=9)), frames))
    print("  livelink  ", cost(LiveLinkSender(LiveLinkConfig(port=9)), frames))
    print("  zmq (pub) ", cost(ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*")), frames))
    n = args.latency_frames
    print("loopback latency, publish -> client receipt (decoded):")
    print("  zmq -> Python Subscriber ", stats(zmq_latency(n, [sys.executable, "-c", _PY_SUB])))
    node = ROOT / "adapters" / "clients" / "node"
    if shutil.which("node") and (node / "node_modules" / "zeromq").is_dir():
        print("  zmq -> Node client       ", stats(zmq_latency(n, ["node", str(node / "latency.mjs")])))
    print("  vmc -> python-osc server ", stats(vmc_latency(n)))


if __name__ == "__main__":
    main()
