"""`Subscriber`: receive facetrack results in Python.

Example::

    from facetrack.adapters.zmq_subscriber import Subscriber
    from facetrack.tracker.core.schema import FrameResult

    with Subscriber("tcp://127.0.0.1:5557") as sub:
        for message in sub:  # FrameResult or StreamMetadata, waits as long as it takes
            if isinstance(message, FrameResult):
                for face in message.faces:
                    print(message.frame_index, face.track_id, face.pose.yaw)

Messages from the publisher are untrusted: a malformed one is skipped, logged and
counted in `malformed`, so a buggy or hostile publisher cannot crash the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType, TracebackType

import zmq

from facetrack.adapters.codec import MAX_MESSAGE_BYTES, Encoding, Message, decode_message, detect_encoding
from facetrack.adapters.curve import CurveClientKeys, secure_client
from facetrack.adapters.zmq_publisher import FRAME_TOPIC, META_TOPIC, is_ipv6, topic
from facetrack.tracker.core.errors import ProtocolError
from facetrack.tracker.core.schema import FrameResult, StreamMetadata

log = logging.getLogger("facetrack.zmq")

_WARN_EVERY_S = 5.0


class Subscriber:
    """A SUB socket connected to a facetrack publisher, decoding and validating each message.

    Args:
        endpoint: the publisher's endpoint (it binds; we connect). Connecting never fails:
            ZeroMQ reconnects in the background until the publisher is there.
        topics: topic prefix(es) to receive: `"frame"` (all streams' results), `"meta"`,
            `"frame.cam0"` (one stream; note it also matches `"frame.cam01"`), `""` (all).
        encoding: `"msgpack"` or `"json"` to accept only that, None to detect it per message.
        rcvhwm: messages queued here before ZeroMQ drops new ones; a client that reads
            slowly loses frames rather than slowing the tracker.
        max_message_bytes: larger messages make ZeroMQ drop the connection (it reconnects),
            so a hostile publisher cannot exhaust memory.
        context: the ZeroMQ context to use (default: the process-wide one, never terminated here).
        curve: this client's CURVE keys and the server's public key, for a publisher started
            with CURVE keys (`facetrack keys init`); without them such a publisher sends nothing.
        max_age: skip frames published (`publish_time`, else `capture_time`) more than this many
            seconds ago, counted in `stale`: a client that stalled resumes with the present, not
            with what queued up meanwhile (ZeroMQ and the kernel buffer many seconds of frames).
            Ages compare this machine's clock with the publisher's: on another machine keep the
            clocks in sync (NTP) or leave it None.
        newest_only: each `recv` takes everything already queued and returns the newest frame
            (metadata is returned when met, so layout changes are never lost); skipped frames are
            counted in `stale`.

    Late joiners: the publisher re-sends metadata every couple of seconds, so
    `latest_metadata` fills in shortly after connecting; frames can arrive before it.
    """

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5557",
        topics: Iterable[str | bytes] = ("frame", "meta"),
        encoding: Encoding | None = None,
        rcvhwm: int = 1000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        context: zmq.Context | None = None,
        curve: CurveClientKeys | None = None,
        max_age: float | None = None,
        newest_only: bool = False,
    ) -> None:
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age must be positive seconds, got {max_age}")
        self.endpoint = endpoint
        self.encoding = encoding
        self.max_age = max_age
        self.newest_only = newest_only
        self._stale = 0
        self._streams: dict[str, StreamMetadata] = {}
        self._latest_metadata: StreamMetadata | None = None
        self._malformed = 0
        self._received = 0
        self._warned_at = float("-inf")
        self._unwarned = 0
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.IPV6, int(is_ipv6(endpoint)))
        try:
            if curve is not None:
                secure_client(self._socket, curve)
            for prefix in (topics,) if isinstance(topics, (str, bytes)) else topics:
                self._socket.setsockopt(zmq.SUBSCRIBE, prefix.encode() if isinstance(prefix, str) else prefix)
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise ValueError(f"cannot connect to {endpoint!r}: {exc.strerror}") from None
        except BaseException:
            self._socket.close()
            raise

    @property
    def latest_metadata(self) -> StreamMetadata | None:
        """The last metadata message received from any stream (None until one arrives)."""
        return self._latest_metadata

    @property
    def streams(self) -> Mapping[str, StreamMetadata]:
        """The last metadata received per stream id."""
        return MappingProxyType(self._streams)

    @property
    def malformed(self) -> int:
        """Messages skipped because they were not valid facetrack messages."""
        return self._malformed

    @property
    def stale(self) -> int:
        """Frames skipped as older than `max_age`, or behind a newer one with `newest_only`."""
        return self._stale

    @property
    def received(self) -> int:
        """Valid messages returned so far (frames and metadata)."""
        return self._received

    def recv(self, timeout: float | None = None, *, strict: bool = False) -> Message | None:
        """The next valid message, or None if none arrives within `timeout` seconds.

        `timeout=None` waits indefinitely, `0` only polls. Malformed messages are skipped
        (logged, counted) and the wait goes on until the deadline; with `strict=True`
        they raise `ProtocolError` instead. Frames older than `max_age` are skipped, and with
        `newest_only` a frame with newer ones queued behind it is (both counted in `stale`).
        """
        if self._socket.closed:
            raise RuntimeError(f"Subscriber for {self.endpoint} is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            message = self._next(deadline, strict)
            if message is None:
                return None
            if isinstance(message, FrameResult):
                if self.newest_only:
                    message = self._newest(message, strict)
                if isinstance(message, FrameResult) and self._too_old(message):
                    self._stale += 1
                    continue
            self._received += 1
            if isinstance(message, StreamMetadata):
                self._streams[message.stream_id] = message
                self._latest_metadata = message
            return message

    def _next(self, deadline: float | None, strict: bool) -> Message | None:
        """The next valid message by `deadline` (None: wait forever); malformed ones are skipped or raise."""
        while True:
            wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._socket.poll(wait_ms, zmq.POLLIN):
                return None
            parts = self._socket.recv_multipart(zmq.NOBLOCK, copy=True)
            try:
                return self._decode(parts)
            except ProtocolError as exc:
                self._malformed += 1
                if strict:
                    raise
                self._warn(exc)

    def _newest(self, frame: FrameResult, strict: bool) -> Message:
        """`frame`, or a newer frame already queued behind it; metadata met on the way is returned instead."""
        while (queued := self._next(time.monotonic(), strict)) is not None:
            if isinstance(queued, StreamMetadata):
                self._stale += 1  # the frame before the metadata is dropped: the layout comes first
                return queued
            self._stale += 1
            frame = queued
        return frame

    def _too_old(self, frame: FrameResult) -> bool:
        if self.max_age is None:
            return False
        stamp = frame.publish_time if frame.publish_time is not None else frame.capture_time
        return time.time() - stamp > self.max_age

    def __iter__(self) -> Iterator[Message]:
        """Every valid message, waiting as long as it takes; stop with `break` or Ctrl-C."""
        while True:
            message = self.recv(None)
            if message is not None:
                yield message

    def close(self) -> None:
        """Disconnect; idempotent. Queued messages are discarded."""
        if not self._socket.closed:
            self._socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _decode(self, parts: list[bytes]) -> Message:
        if len(parts) != 2:
            raise ProtocolError(f"expected 2 message parts [topic, payload], got {len(parts)}")
        topic_bytes, payload = parts
        encoding = detect_encoding(payload)
        if self.encoding is not None and encoding != self.encoding:
            raise ProtocolError(f"expected a {self.encoding} payload, got {encoding} on topic {topic_bytes[:64]!r}")
        message = decode_message(payload, encoding)
        kind = FRAME_TOPIC if isinstance(message, FrameResult) else META_TOPIC
        if topic_bytes != topic(kind, message.stream_id):
            raise ProtocolError(
                f"topic {topic_bytes[:64]!r} does not match a {message.schema_id} message of stream "
                f"{message.stream_id!r}"
            )
        return message

    def _warn(self, exc: ProtocolError) -> None:
        """Log malformed messages at most every few seconds, so a flood cannot flood the log."""
        now = time.monotonic()
        if now - self._warned_at < _WARN_EVERY_S:
            self._unwarned += 1
            return
        also = f" ({self._unwarned} more since the last warning)" if self._unwarned else ""
        log.warning("skipped a malformed message from %s%s: %s", self.endpoint, also, exc)
        self._warned_at = now
        self._unwarned = 0
