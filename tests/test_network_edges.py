"""Network edges: IPv6 loopback publishing, UDP senders bound to the interface that reaches their target,
and a stalled subscriber that gets the present, not the past. Real sockets on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from synthetic import synthetic_metadata, synthetic_result

from facetrack.adapters.udp import UdpSender
from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher, live_sndhwm
from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.tracker.core.schema import FrameResult

CLI = [sys.executable, "-m", "facetrack.tracker.cli"]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def _free_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_publish_on_ipv6_loopback(blank_clip: Path) -> None:
    port = _free_port(socket.AF_INET6, "::1")
    endpoint = f"tcp://[::1]:{port}"
    received: list[FrameResult] = []

    def listen() -> None:
        with Subscriber(endpoint, topics="frame") as sub:
            while (message := sub.recv(timeout=20)) is not None:
                received.append(message)
                if len(received) == 30:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    done = subprocess.run([*CLI, "run", str(blank_clip), "--publish", endpoint, "--wait-subscribers", "1",
                           "--model", "none", "--no-eyes", "--quiet"], capture_output=True, text=True, timeout=120)
    listener.join(30)
    assert done.returncode == 0, done.stderr
    assert [r.frame_index for r in received] == list(range(30))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_udp_senders_send_from_the_interface_that_reaches_the_target(host: str) -> None:
    if host == "::1" and not _ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as receiver:
        receiver.bind((host if host != "localhost" else "127.0.0.1", 0))
        receiver.settimeout(5)
        sender = UdpSender(host, receiver.getsockname()[1], "VMC")
        try:
            local = sender._socket.getsockname()[0]
            assert local in ("127.0.0.1", "::1"), "bound to loopback, not every interface"
            sender.send(b"/VMC/Ext/OK")
            data, origin = receiver.recvfrom(64)
            assert data == b"/VMC/Ext/OK" and origin[0] == local
        finally:
            sender.close()


class _LivePublisher:
    """A live stream at `fps` on a real PUB socket with the live queue size, on its own thread."""

    def __init__(self, fps: float = 50.0) -> None:
        self.publisher = ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*", sndhwm=live_sndhwm(fps)))
        self.publisher.start(synthetic_metadata())
        self._fps = fps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        index = 0
        while not self._stop.wait(1.0 / self._fps):
            result = synthetic_result(rng, index, faces=1)
            result.capture_time = time.time()
            self.publisher.write(result)
            index += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.publisher.close()


def _first_frame_after_a_stall(subscriber: Subscriber, stall_s: float) -> FrameResult:
    deadline = time.monotonic() + 10
    frames = 0
    while frames < 5 and time.monotonic() < deadline:  # connected and reading
        frames += isinstance(subscriber.recv(timeout=1.0), FrameResult)
    assert frames == 5
    time.sleep(stall_s)  # the client stops reading; the stream goes on
    while not isinstance(message := subscriber.recv(timeout=5.0), FrameResult):
        assert message is not None
    return message


def test_live_publisher_queue_holds_about_a_second() -> None:
    assert live_sndhwm(30.0) == 31 and live_sndhwm(None) == 31 and live_sndhwm(240.0, seconds=0.5) == 121
    live = _LivePublisher(50.0)
    try:
        assert live.publisher._socket.getsockopt(zmq.SNDHWM) == 51
    finally:
        live.close()


@pytest.mark.parametrize("mode", ["max_age", "newest_only"])
def test_a_stalled_subscriber_resumes_with_the_present(mode: str) -> None:
    live = _LivePublisher(50.0)
    try:
        with Subscriber(live.publisher.endpoint, topics="frame") as plain:  # what a client got before: the past
            stale = _first_frame_after_a_stall(plain, 2.0)
            assert time.time() - stale.publish_time > 1.0
        options = {"max_age": 0.3} if mode == "max_age" else {"newest_only": True}
        with Subscriber(live.publisher.endpoint, topics="frame", **options) as fresh:
            first = _first_frame_after_a_stall(fresh, 2.0)
            age = time.time() - first.publish_time
            assert age < (0.3 if mode == "max_age" else 1.2), age
            assert fresh.stale > 10
    finally:
        live.close()
