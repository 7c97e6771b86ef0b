"""Publisher -> subscriber over real loopback sockets."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from synthetic import synthetic_metadata, synthetic_result

from facetrack.adapters.codec import encode_message
from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher, _is_loopback
from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.tracker.core.errors import ProtocolError, SinkError
from facetrack.tracker.core.schema import FrameResult, StreamMetadata
from facetrack.tracker.core.sinks import Sink


@contextmanager
def open_publisher(**config: Any) -> Iterator[ZmqPublisher]:
    """A publisher on a free loopback port."""
    pub = ZmqPublisher(PublisherConfig(**{"endpoint": "tcp://127.0.0.1:*", "linger_ms": 0, **config}))
    try:
        yield pub
    finally:
        pub.close()


@pytest.fixture()
def publisher() -> Iterator[ZmqPublisher]:
    with open_publisher(metadata_interval_s=0.2) as pub:
        yield pub


def wait_for_metadata(pub: ZmqPublisher, sub: Subscriber, timeout: float = 5.0) -> StreamMetadata:
    """The slow-joiner handshake: re-send metadata until the subscription is live.

    Then drain the extra copies still in flight, so the test sees only what it sends next.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish_metadata()
        message = sub.recv(timeout=0.05)
        if isinstance(message, StreamMetadata):
            while sub.recv(timeout=0.05) is not None:
                continue
            return message
    raise AssertionError("no metadata arrived")


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_every_frame_arrives(encoding: str) -> None:
    rng = np.random.default_rng(0)
    frames = [synthetic_result(rng, i, faces=i % 3) for i in range(300)]
    with open_publisher(encoding=encoding) as publisher, Subscriber(publisher.endpoint, rcvhwm=10_000) as sub:
        assert isinstance(publisher, Sink)
        publisher.start(synthetic_metadata())
        wait_for_metadata(publisher, sub)
        for frame in frames:
            publisher.write(frame)
        received = []
        while (message := sub.recv(timeout=2.0)) is not None:
            if isinstance(message, FrameResult):
                received.append(message)
            if len(received) == len(frames):
                break
        assert not isinstance(sub.recv(timeout=0.1), FrameResult)  # exactly N, no duplicates
    assert [r.frame_index for r in received] == list(range(len(frames)))
    assert publisher.frames_published == len(frames)
    assert sub.malformed == 0
    assert all(r.publish_time is not None and r.publish_time >= r.capture_time for r in received)
    np.testing.assert_array_equal(received[-1].faces[1].landmarks, frames[-1].faces[1].landmarks)
    assert sub.latest_metadata is not None and sub.streams["cam0"].stream_id == "cam0"


def test_topics_filter_by_stream(publisher: ZmqPublisher) -> None:
    rng = np.random.default_rng(1)
    with Subscriber(publisher.endpoint, topics=("frame.cam1", "meta")) as sub:
        publisher.start(synthetic_metadata("cam1"))
        wait_for_metadata(publisher, sub)
        publisher.write(synthetic_result(rng, 0, stream_id="cam0"))
        publisher.write(synthetic_result(rng, 1, stream_id="cam1"))
        message = sub.recv(timeout=2.0)
    assert isinstance(message, FrameResult) and message.stream_id == "cam1"


def test_late_subscriber_gets_metadata_within_interval(publisher: ZmqPublisher) -> None:
    rng = np.random.default_rng(2)
    frame = synthetic_result(rng, 0)
    publisher.start(synthetic_metadata())
    for _ in range(5):
        publisher.write(frame)
    with Subscriber(publisher.endpoint, topics=("meta",)) as sub:
        joined = time.monotonic()
        metadata = None
        while metadata is None and time.monotonic() - joined < 2.0:
            publisher.write(frame)
            metadata = sub.recv(timeout=0.01)
        waited = time.monotonic() - joined
    assert isinstance(metadata, StreamMetadata)
    assert waited < publisher.config.metadata_interval_s + 0.5  # slack for connecting on a busy CI machine
    assert metadata.frames_published >= 5


def test_restart_with_changed_metadata_republishes(publisher: ZmqPublisher) -> None:
    with Subscriber(publisher.endpoint, topics=("meta",)) as sub:
        metadata = synthetic_metadata()
        publisher.start(metadata)
        wait_for_metadata(publisher, sub)
        publisher.start(metadata)  # unchanged: nothing sent
        assert sub.recv(timeout=0.1) is None
        publisher.start(metadata.model_copy(update={"model_id": "ict-light"}))
        changed = sub.recv(timeout=2.0)
    assert isinstance(changed, StreamMetadata) and changed.model_id == "ict-light"


def test_stalled_subscriber_does_not_block_publisher() -> None:
    frame = synthetic_result(np.random.default_rng(3), 0, faces=2)
    with open_publisher(sndhwm=10) as pub, Subscriber(pub.endpoint, rcvhwm=10) as sub:
        pub.start(synthetic_metadata())
        wait_for_metadata(pub, sub)
        writer = threading.Thread(target=lambda: [pub.write(frame) for _ in range(5000)])  # never read
        writer.start()
        writer.join(timeout=60)  # a blocked write never returns; a loaded machine only takes longer
        assert not writer.is_alive(), "the publisher blocked on a subscriber that does not read"
    assert pub.frames_published == 5000


def test_endpoint_in_use(publisher: ZmqPublisher) -> None:
    with pytest.raises(SinkError, match=r"already in use.*another port"):
        ZmqPublisher(PublisherConfig(endpoint=publisher.endpoint))


def test_write_before_start_and_after_close(publisher: ZmqPublisher) -> None:
    frame = synthetic_result(np.random.default_rng(4), 0)
    with pytest.raises(SinkError, match="before start"):
        publisher.write(frame)
    publisher.close()
    publisher.close()
    assert publisher.closed
    with pytest.raises(SinkError, match="closed"):
        publisher.start(synthetic_metadata())


def test_loopback_detection() -> None:
    for endpoint in ("tcp://127.0.0.1:5557", "tcp://localhost:5557", "tcp://[::1]:5557", "ipc:///tmp/ft", "tcp://127.0.0.1:*"):
        assert _is_loopback(endpoint), endpoint
    for endpoint in ("tcp://*:5557", "tcp://0.0.0.0:5557", "tcp://192.168.1.4:5557", "tcp://eth0:5557"):
        assert not _is_loopback(endpoint), endpoint


def test_hostile_publisher_cannot_crash_subscriber(caplog: pytest.LogCaptureFixture) -> None:
    """A raw PUB socket sends garbage; iteration skips it and still yields the valid message."""
    socket = zmq.Context.instance().socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    valid = synthetic_result(np.random.default_rng(5), 0)
    metadata = synthetic_metadata()
    garbage = [
        [b"frame.cam0", b"\xc1\xc1"],
        [b"frame.cam0", msgpack.packb({"schema": "facetrack.frame/1", "faces": "x"})],
        [b"frame.cam0", b"{\"schema\": 3}"],
        [b"frame.cam0"],
        [b"frame.other", encode_message(valid)],  # topic does not match the payload's stream
        [b"meta.cam0", encode_message(valid)],  # a frame on the meta topic
    ]
    try:
        with Subscriber(f"tcp://127.0.0.1:{port}") as sub, caplog.at_level(logging.WARNING):
            deadline = time.monotonic() + 5.0
            while sub.recv(timeout=0.05) is None and time.monotonic() < deadline:
                socket.send_multipart([b"meta.cam0", encode_message(metadata)])
            for parts in garbage:
                socket.send_multipart(parts)
            socket.send_multipart([b"frame.cam0", encode_message(valid)])
            message = next(iter(sub))
            assert isinstance(message, FrameResult) and message.frame_index == 0
            assert sub.malformed == len(garbage)
            socket.send_multipart(garbage[0])
            with pytest.raises(ProtocolError):
                sub.recv(timeout=2.0, strict=True)
    finally:
        socket.close()
    assert "malformed" in caplog.text


def test_subscriber_encoding_is_enforced() -> None:
    with open_publisher(encoding="json") as publisher, Subscriber(publisher.endpoint, encoding="msgpack") as sub:
        publisher.start(synthetic_metadata())
        deadline = time.monotonic() + 5.0
        while sub.malformed == 0 and time.monotonic() < deadline:
            publisher.publish_metadata()
            assert sub.recv(timeout=0.05) is None
    assert sub.malformed > 0


def test_subscriber_arguments() -> None:
    with pytest.raises(ValueError, match="cannot connect"):
        Subscriber("not-an-endpoint")
    with open_publisher() as pub, Subscriber(pub.endpoint, topics="meta") as sub:  # one prefix, not 4 letters
        pub.start(synthetic_metadata())
        wait_for_metadata(pub, sub)
        pub.write(synthetic_result(np.random.default_rng(6), 0))
        assert not isinstance(sub.recv(timeout=0.2), FrameResult)
    sub.close()
    with pytest.raises(RuntimeError, match="closed"):
        sub.recv(timeout=0)


def test_wait_subscribers_delivers_from_the_first_message() -> None:
    rng = np.random.default_rng(1)
    with open_publisher(wait_subscribers=1, wait_timeout_s=10) as pub, Subscriber(pub.endpoint) as sub:
        pub.start(synthetic_metadata())  # returns once the subscription has arrived
        first = sub.recv(timeout=2.0)
        assert isinstance(first, StreamMetadata)  # the start-of-stream metadata is not lost
        pub.write(synthetic_result(rng, 0))
        frame = sub.recv(timeout=2.0)
        assert isinstance(frame, FrameResult) and frame.frame_index == 0


def test_wait_subscribers_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    with open_publisher(wait_subscribers=2, wait_timeout_s=0.3) as pub, Subscriber(pub.endpoint):
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="facetrack.zmq"):
            pub.start(synthetic_metadata())
        assert 0.25 <= time.monotonic() - started < 3.0
    assert "1 of 2 subscribers" in caplog.text


def test_subscriber_that_dies_does_not_disturb_the_publisher() -> None:
    rng = np.random.default_rng(3)
    frames = [synthetic_result(rng, i) for i in range(50)]
    with open_publisher(metadata_interval_s=0.1) as pub:
        pub.start(synthetic_metadata())
        dying = Subscriber(pub.endpoint)
        wait_for_metadata(pub, dying)
        for frame in frames[:10]:
            pub.write(frame)
        dying.close()  # gone mid-stream, without unsubscribing
        started = time.monotonic()
        for i in range(2000):
            pub.write(frames[i % len(frames)])
        assert time.monotonic() - started < 20.0  # about 0.1 s; a write that waited on the dead peer never ends
        with Subscriber(pub.endpoint) as newcomer:
            wait_for_metadata(pub, newcomer)
            pub.write(frames[0])
            assert isinstance(newcomer.recv(timeout=2.0), FrameResult)
