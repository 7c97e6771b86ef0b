"""Network edges: IPv6 loopback publishing, UDP senders bound to the interface that reaches their target,
and a stalled subscriber that gets the present, not the past. Real sockets on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from facetrack.adapters.udp import UdpSender
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
