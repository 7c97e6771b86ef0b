"""UDP sinks for animation clients: one datagram per frame for one chosen face.

Tracking must not stop because an avatar app is closed or the network is down: sends
never block, and send errors are counted and logged, never raised.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from abc import ABC, abstractmethod

from facetrack.adapters.pacing import FramePacer
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceResult, FrameResult, StreamMetadata

log = logging.getLogger("facetrack.udp")

DEFAULT_HOST = "127.0.0.1"
_WARN_EVERY_S = 5.0


def parse_host_port(text: str | None, default_port: int, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """`"HOST:PORT"`, `"HOST"`, `":PORT"`, `"PORT"` or None -> (host, port); `[::1]:9000` for IPv6."""
    if not text:
        return default_host, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif text.isdigit():
        host, port = "", text
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a host name, or a bare IPv6 address
        host, port = text, ""
    host = host or default_host
    if not port:
        return host, default_port
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port!r} in {text!r}: expected HOST:PORT with a port in 1..65535")
    return host, int(port)


def select_face(result: FrameResult, track_id: int | None) -> FaceResult | None:
    """The face to send: the given track, or the first face (None if absent)."""
    if track_id is None:
        return result.faces[0] if result.faces else None
    return next((face for face in result.faces if face.track_id == track_id), None)


def _local_address(family: socket.AddressFamily, address: tuple) -> str:
    """The local address the routing table picks for `address` (a UDP connect sends nothing)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
        return probe.getsockname()[0]


class UdpSender:
    """A non-blocking UDP socket: send errors are counted and logged (at most every 5 s), never raised."""

    def __init__(self, host: str, port: int, what: str) -> None:
        self.target = f"{host}:{port}"
        self.what = what
        try:
            family, kind, proto, _, self._address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self._socket = socket.socket(family, kind, proto)
        except OSError as exc:
            raise SinkError(f"cannot send {what} to {self.target}: {exc}") from None
        try:  # send from the interface that reaches the target (loopback for a loopback target), not from all
            self._socket.bind((_local_address(family, self._address), 0))
        except OSError as exc:
            self._socket.close()
            raise SinkError(f"cannot send {what} to {self.target}: no interface reaches it ({exc})") from None
        self._socket.setblocking(False)
        self._warned_at = -math.inf
        self.sent = 0
        self.errors = 0

    @property
    def closed(self) -> bool:
        return self._socket.fileno() < 0

    def send(self, datagram: bytes) -> None:
        if self.closed:
            raise SinkError(f"{self.what} sender to {self.target} is closed")
        try:
            self._socket.sendto(datagram, self._address)
        except OSError as exc:
            self.errors += 1
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                log.warning("%s send to %s failed (%d so far): %s", self.what, self.target, self.errors, exc)
                self._warned_at = now
            return
        self.sent += 1

    def close(self) -> None:
        self._socket.close()


class DatagramSink(ABC):
    """A `Sink` sending one datagram per frame for one face; subclasses build the datagram.

    UDP needs no receiver: with nothing listening the datagrams are lost, so the client
    app may start before or after tracking. A frame without the chosen face sends nothing.
    With `pace`, a stream whose metadata says it is not live (a file) is sent at its frame
    rate (`FramePacer`), which also paces the tracker feeding it.
    """

    what: str
    """How the client is named in messages (e.g. "VMC")."""

    def __init__(self, host: str, port: int, track_id: int | None, pace: bool = False) -> None:
        self._udp = UdpSender(host, port, self.what)
        self._track_id = track_id
        self._pace = pace
        self.pacer: FramePacer | None = None

    def start(self, metadata: StreamMetadata) -> None:
        """Check the stream carries the 52 ARKit blendshapes in facetrack's order (what we send)."""
        if list(metadata.blendshape_names) != list(ARKIT_BLENDSHAPES):
            raise SinkError(
                f"stream {metadata.stream_id!r} has blendshapes {metadata.blendshape_names[:3]}...; "
                f"the {self.what} sender needs the 52 ARKit ones in facetrack's order"
            )
        self.pacer = FramePacer() if self._pace and not metadata.source.live else None

    @abstractmethod
    def build_datagrams(self, face: FaceResult, result: FrameResult) -> list[bytes]:
        """The datagrams to send for this face in this frame, in order."""

    def datagrams_for(self, result: FrameResult) -> list[bytes]:
        """The datagrams for one frame (none when the chosen face is not in it)."""
        face = select_face(result, self._track_id)
        return [] if face is None else self.build_datagrams(face, result)

    def write(self, result: FrameResult) -> None:
        if self._udp.closed:
            raise SinkError(f"{self.what} sender to {self._udp.target} is closed")
        if self.pacer is not None:
            self.pacer.wait(result.pts)
        for datagram in self.datagrams_for(result):
            self._udp.send(datagram)

    @property
    def datagrams_sent(self) -> int:
        return self._udp.sent

    @property
    def send_errors(self) -> int:
        return self._udp.errors

    def close(self) -> None:
        """Release the socket; idempotent."""
        self._udp.close()
