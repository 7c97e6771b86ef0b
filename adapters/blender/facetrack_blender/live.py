"""Receive a facetrack stream inside Blender without blocking its UI (no bpy here).

`LiveReceiver.poll()` drains what ZeroMQ has queued without waiting and returns only
the newest face: a timer calls it every UI tick, so Blender never waits on the network
and never falls behind a faster stream.
"""

from __future__ import annotations

import logging

from .core import FRAME_SCHEMA, META_SCHEMA, FaceSample, TakeError, decode_payload, sample_from_frame

log = logging.getLogger("facetrack.blender")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class LiveReceiver:
    """A ZeroMQ SUB socket on a facetrack publisher (`facetrack run ... --publish`)."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5557", stream_id: str | None = None,
                 track_id: int | None = None) -> None:
        import zmq  # bundled with the extension (see blender_manifest.toml)

        self.endpoint = endpoint
        self.track_id = track_id
        self.frames = 0
        self.malformed = 0
        suffix = b"" if stream_id is None else b"." + stream_id.encode()
        self._zmq = zmq
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, 100)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"frame" + suffix)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"meta" + suffix)
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise ValueError(f"cannot connect to {endpoint!r}: {exc.strerror}") from None

    def poll(self, max_messages: int = 1000) -> FaceSample | None:
        """The newest face among the messages queued now (None if no new frame had one)."""
        latest: FaceSample | None = None
        for _ in range(max_messages):
            try:
                parts = self._socket.recv_multipart(self._zmq.NOBLOCK)
            except self._zmq.Again:
                break
            sample = self._handle(parts)
            if sample is not None:
                latest = sample
        return latest

    def _handle(self, parts: list[bytes]) -> FaceSample | None:
        if len(parts) != 2:
            self.malformed += 1
            return None
        try:
            message = decode_payload(parts[1])
            if message.get("schema") == META_SCHEMA:  # the layout is fixed: ARKit's 52, in order
                return None
            if message.get("schema") != FRAME_SCHEMA:
                raise TakeError(f"unknown schema {message.get('schema')!r}")
            sample = sample_from_frame(message, self.track_id)
        except TakeError as exc:
            self.malformed += 1
            if self.malformed == 1 or self.malformed % 1000 == 0:
                log.warning("skipped %d malformed message(s) from %s: %s", self.malformed, self.endpoint, exc)
            return None
        self.frames += 1
        return sample

    def close(self) -> None:
        """Disconnect; idempotent."""
        if not self._socket.closed:
            self._socket.close(linger=0)
