"""`ZmqPublisher`: the sink that streams results over a ZeroMQ PUB socket.

PUB never waits for subscribers: above the high-water mark it drops messages for the
slow subscriber, so a stalled client can never stall tracking. Metadata is re-sent
periodically so a client that joins late learns the layout (see docs/protocol.md).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import zmq
from pydantic import BaseModel, ConfigDict, Field

from facetrack.adapters.codec import encode_message
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import FrameResult, StreamMetadata

if TYPE_CHECKING:  # loaded with CURVE keys only (its authenticator thread's modules are not small)
    from facetrack.adapters.curve import CurveServer

log = logging.getLogger("facetrack.zmq")

FRAME_TOPIC = b"frame"
META_TOPIC = b"meta"
_TCP = re.compile(r"^tcp://(?:(?P<iface>[^:;\[\]]+|\[[^\]]+\]):)?(?P<port>\d+|\*)$")


class PublisherConfig(BaseModel):
    """Where and how results are published."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(
        default="tcp://127.0.0.1:5557",
        description="ZeroMQ endpoint to bind. Loopback by default; any other address is reachable from the network.",
    )
    encoding: Literal["msgpack", "json"] = Field(default="msgpack", description="Payload encoding.")
    sndhwm: int = Field(
        default=1000, ge=1, description="Messages queued per subscriber before PUB drops new ones for it."
    )
    metadata_interval_s: float = Field(
        default=2.0, gt=0, description="Re-publish the metadata this often (checked on each write) for late joiners."
    )
    linger_ms: int = Field(default=200, ge=0, description="How long close() may wait to flush queued messages.")
    wait_subscribers: int = Field(
        default=0, ge=0, description="start() waits until this many clients subscribe to the frames (file runs)."
    )
    wait_timeout_s: float = Field(default=10.0, gt=0, description="Longest start() waits for those subscribers.")
    curve_keys: Path | None = Field(
        default=None,
        description="CURVE key folder (see facetrack.adapters.curve): encrypt, and admit only authorised clients.",
    )


def topic(kind: bytes, stream_id: str) -> bytes:
    """`b"frame.<stream_id>"` / `b"meta.<stream_id>"`; clients subscribe by prefix."""
    return kind + b"." + stream_id.encode()


def _is_loopback(endpoint: str) -> bool:
    """ipc:// and inproc:// are local; tcp:// is loopback only on 127.0.0.0/8, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    match = _TCP.match(endpoint)
    if match is None:
        return False
    host = (match.group("iface") or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


LIVE_QUEUE_SECONDS = 1.0
"""How much of a live stream a subscriber's queue at the publisher holds: an animation client that stalls
gets about the last second, not the last minute, when it resumes."""


def live_sndhwm(fps: float | None, seconds: float = LIVE_QUEUE_SECONDS) -> int:
    """SNDHWM for `seconds` of a live stream at `fps` (30 when unknown), plus the metadata messages.

    ZeroMQ's CONFLATE (keep only the newest) cannot carry multipart messages ([topic, payload]),
    so the queue is bounded by count instead.
    """
    return max(2, math.ceil((fps or 30.0) * seconds)) + 1


def is_ipv6(endpoint: str) -> bool:
    """A tcp:// endpoint with a bracketed IPv6 address: ZeroMQ sockets need their IPV6 option for it."""
    match = _TCP.match(endpoint)
    return match is not None and (match.group("iface") or "").startswith("[")


def _suggest(endpoint: str) -> str:
    match = _TCP.match(endpoint)
    if match is None or match.group("port") == "*":
        return "tcp://127.0.0.1:5558"
    host = match.group("iface") or "127.0.0.1"
    return f"tcp://{host}:{int(match.group('port')) + 1}"


def _metadata_key(metadata: StreamMetadata) -> StreamMetadata:
    """The layout part of the metadata: running counters do not make it a 'change'."""
    return metadata.model_copy(update={"frames_published": 0, "dropped_frames": 0})


class ZmqPublisher:
    """A `Sink` that publishes every result as `[b"frame.<stream_id>", payload]`.

    The socket binds at construction, so a busy endpoint fails before tracking starts.
    `write()` never blocks: sends are non-blocking and PUB drops above `sndhwm`.
    With `wait_subscribers`, the socket is an XPUB that sees subscriptions arrive, and
    `start()` waits for them, so clients that connect first miss no frame of a file.

    Example::

        publisher = ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:5557"))
        tracker.run("clip.mp4", sinks=[publisher])  # the pipeline closes its sinks at the end
    """

    stage = "publish"

    def __init__(self, config: PublisherConfig | None = None, context: zmq.Context | None = None) -> None:
        self.config = config or PublisherConfig()
        self.frames_published = 0
        self._metadata: StreamMetadata | None = None
        self._last_metadata_at = 0.0
        self._dropped = 0
        endpoint = self.config.endpoint
        if not _is_loopback(endpoint) and self.config.curve_keys is None:
            log.warning("publishing on %s: results are reachable from the network, not only this machine "
                        "(unencrypted; use curve_keys / --curve-keys to admit only your clients)", endpoint)
        # A CURVE publisher owns its context (its authenticator is per context); otherwise sockets
        # belong to the shared context, and close() closes ours without terminating the context.
        self._own_context = zmq.Context() if self.config.curve_keys is not None else None
        context = self._own_context or context or zmq.Context.instance()
        self._curve: CurveServer | None = None
        if self.config.curve_keys is not None:
            from facetrack.adapters.curve import CurveServer

            self._curve = CurveServer(self.config.curve_keys, context)
        self._socket = context.socket(zmq.XPUB if self.config.wait_subscribers else zmq.PUB)
        if self._curve is not None:
            self._curve.secure(self._socket)
        if self.config.wait_subscribers:
            self._socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # one message per subscriber, not per new topic
        self._socket.setsockopt(zmq.SNDHWM, self.config.sndhwm)
        self._socket.setsockopt(zmq.LINGER, self.config.linger_ms)
        self._socket.setsockopt(zmq.IPV6, int(is_ipv6(endpoint)))
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close(linger=0)
            self._release_security()
            if exc.errno == zmq.EADDRINUSE:
                raise SinkError(
                    f"ZeroMQ endpoint {endpoint} is already in use (another tracker or program is bound to it); "
                    f"choose another port, e.g. {_suggest(endpoint)}"
                ) from None
            raise SinkError(f"cannot bind ZeroMQ endpoint {endpoint}: {exc.strerror}") from None
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        """The bound endpoint, with the actual port when the config asked for `tcp://host:*`."""

    @property
    def closed(self) -> bool:
        return self._socket.closed

    def start(self, metadata: StreamMetadata) -> None:
        """Publish the stream's metadata now; again only if it changed since the last start()."""
        self._check_open()
        if self._metadata is not None and _metadata_key(self._metadata) == _metadata_key(metadata):
            return
        first = self._metadata is None
        self._metadata = metadata
        if first and self.config.wait_subscribers:
            self._wait_for_subscribers(topic(FRAME_TOPIC, metadata.stream_id))
        self.publish_metadata()

    def _wait_for_subscribers(self, frame_topic: bytes) -> None:
        """Count XPUB subscription messages whose prefix covers the frame topic, up to the timeout."""
        deadline = time.monotonic() + self.config.wait_timeout_s
        subscribers = 0
        while subscribers < self.config.wait_subscribers:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._socket.poll(int(remaining * 1000), zmq.POLLIN):
                log.warning(
                    "%d of %d subscribers connected to %s within %.0f s; publishing anyway",
                    subscribers, self.config.wait_subscribers, self.endpoint, self.config.wait_timeout_s,
                )
                return
            message = self._socket.recv()
            if message[:1] == b"\x01" and frame_topic.startswith(message[1:]):
                subscribers += 1

    def publish_metadata(self) -> None:
        """Send the metadata now, with the current frame and drop counters."""
        self._check_open()
        if self._metadata is None:
            raise SinkError("ZmqPublisher.publish_metadata() before start(): no stream metadata yet")
        metadata = self._metadata.model_copy(
            update={"frames_published": self.frames_published, "dropped_frames": self._dropped}
        )
        self._send(topic(META_TOPIC, metadata.stream_id), encode_message(metadata, self.config.encoding))
        self._last_metadata_at = time.monotonic()

    def write(self, result: FrameResult) -> None:
        """Publish one result (stamping `publish_time`); re-sends the metadata when it is due."""
        self._check_open()
        if self._metadata is None:
            raise SinkError("ZmqPublisher.write() before start(): the stream metadata must be published first")
        self._dropped = result.dropped_frames
        if time.monotonic() - self._last_metadata_at >= self.config.metadata_interval_s:
            self.publish_metadata()
        result.publish_time = time.time()
        self._send(topic(FRAME_TOPIC, result.stream_id), encode_message(result, self.config.encoding))
        self.frames_published += 1

    def close(self) -> None:
        """Close the socket (waiting at most `linger_ms` for queued messages); idempotent."""
        if not self._socket.closed:
            self._socket.close(linger=self.config.linger_ms)
            self._release_security()

    def _release_security(self) -> None:
        if self._curve is not None:
            self._curve.stop()
        if self._own_context is not None:
            self._own_context.term()

    def _send(self, topic_bytes: bytes, payload: bytes) -> None:
        try:
            self._socket.send_multipart([topic_bytes, payload], flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            raise SinkError(f"publishing on {self.endpoint} failed: {exc.strerror}") from None

    def _check_open(self) -> None:
        if self._socket.closed:
            raise SinkError(f"ZmqPublisher on {self.endpoint} is closed")
