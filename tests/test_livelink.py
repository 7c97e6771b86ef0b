"""Live Link Face packets, decoded by an independent reader written from the documented layout."""

from __future__ import annotations

import math
import socket
import struct
import time

import numpy as np
import pytest

from facetrack.adapters.livelink import (
    CURVE_COUNT,
    LiveLinkConfig,
    LiveLinkSender,
    encode_packet,
    frame_rate,
    frame_time,
    stable_device_id,
)
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import (
    ARKIT_BLENDSHAPES,
    FaceResult,
    FrameResult,
    HeadPose,
    SourceInfo,
    StreamMetadata,
)


def _decode(packet: bytes) -> dict:
    """Unreal's reader (FNboSerializeFromBuffer, big-endian): version, device id, subject, frame time, curves."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from(fmt, packet, pos)
        pos += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal pos
        (length,) = take(">i")
        assert 0 <= length <= len(packet) - pos
        text = packet[pos:pos + length].decode("utf-8")
        pos += length
        return text

    (version,) = take(">B")
    device = string()
    subject = string()
    frame_number, sub_frame, numerator, denominator = take(">ifii")
    (count,) = take(">B")
    curves = take(f">{count}f")
    assert pos == len(packet), "trailing bytes"
    return {"version": version, "device": device, "subject": subject, "frame": frame_number, "sub": sub_frame,
            "rate": (numerator, denominator), "curves": list(curves)}


def _face(track_id: int, weights: np.ndarray | None, yaw: float = 0.0) -> FaceResult:
    return FaceResult(track_id=track_id, bbox=(0, 0, 1, 1), score=1.0, landmarks=np.zeros((478, 3), np.float32),
                      pose=HeadPose(rotation=(0, 0, 0, 1), yaw=yaw, pitch=-5.0, roll=2.5, translation=(0, 0, -60)),
                      blendshapes=weights)


def _frame(index: int, faces: list[FaceResult], pts: float | None) -> FrameResult:
    return FrameResult(stream_id="s", frame_index=index, pts=pts, capture_time=1_700_000_000.25, width=1, height=1,
                       faces=faces)


def test_packet_layout_matches_the_pylivelinkface_reference_bytes() -> None:
    """PyLiveLinkFace writes '<I' 6 then '$'+uuid: i.e. byte 6, big-endian length 36, 36 id bytes."""
    device = "0123456789ABCDEF0123456789ABCDEF0123"
    packet = encode_packet(device, "Sub", 100, 0.5, 60, [0.0] * CURVE_COUNT)
    assert packet[:5] == struct.pack("<I", 6) + b"$"
    assert packet[5:41] == device.encode()
    assert len(packet) == 1 + 4 + 36 + 4 + 3 + 16 + 1 + 4 * 61


def test_sender_packets_decode_to_our_values_over_real_udp() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    weights = np.linspace(0, 1, 52, dtype=np.float32)
    sender = LiveLinkSender(LiveLinkConfig(port=receiver.getsockname()[1], subject="Face1", fps=30, track_id=5))
    sender.start(StreamMetadata(stream_id="s", source=SourceInfo(uri="x", live=False, width=1, height=1),
                                started_at=time.time()))
    try:
        sender.write(_frame(0, [_face(1, None), _face(5, weights, yaw=30.0)], pts=2.51))
        sender.write(_frame(1, [_face(5, None, yaw=-10.0)], pts=None))  # live: time of day, head only
        sender.write(_frame(2, [_face(1, weights)], pts=3.0))  # track 5 absent: nothing sent
        packets = [receiver.recv(2048), receiver.recv(2048)]
        first, second = _decode(packets[0]), _decode(packets[1])
        receiver.settimeout(0.2)
        with pytest.raises(socket.timeout):
            receiver.recv(2048)
    finally:
        receiver.close()
        sender.close()
    assert first["version"] == 6 and first["subject"] == "Face1" and first["device"] == stable_device_id("s")
    assert first["rate"] == (30, 1) and first["frame"] == 75 and first["sub"] == pytest.approx(0.3, abs=1e-4)
    assert len(first["curves"]) == 61
    np.testing.assert_array_equal(np.array(first["curves"][:52], np.float32), weights)
    np.testing.assert_allclose(first["curves"][52:55], [math.radians(30), math.radians(-5), math.radians(2.5)],
                               rtol=1e-6)
    look = dict(zip(ARKIT_BLENDSHAPES, weights.tolist()))  # linspace: every eyeLook weight differs
    np.testing.assert_allclose(first["curves"][55:], [
        math.radians(30) * (look["eyeLookOutLeft"] - look["eyeLookInLeft"]),
        math.radians(20) * (look["eyeLookDownLeft"] - look["eyeLookUpLeft"]), 0.0,
        math.radians(30) * (look["eyeLookInRight"] - look["eyeLookOutRight"]),
        math.radians(20) * (look["eyeLookDownRight"] - look["eyeLookUpRight"]), 0.0], rtol=1e-5, atol=1e-7)
    assert len(packets[0]) == 1 + 4 + 36 + 4 + 5 + 16 + 1 + 4 * 61
    assert second["curves"][:52] == [0.0] * 52
    assert second["curves"][52] == pytest.approx(math.radians(-10))
    expected = frame_time(_frame(1, [], pts=None), 30)
    assert (second["frame"], second["sub"]) == (expected[0], pytest.approx(expected[1], abs=1e-4))
    assert sender.datagrams_sent == 2
    with pytest.raises(SinkError):
        sender.write(_frame(3, [], pts=1.0))


def test_rejects_wrong_curve_counts_and_long_names() -> None:
    with pytest.raises(ValueError, match="61"):
        encode_packet("d", "s", 0, 0.0, 60, [0.0] * 52)
    with pytest.raises(ValueError, match="255"):
        LiveLinkSender(LiveLinkConfig(subject="x" * 300))


def _eyes_looking(**weights: float) -> FaceResult:
    w = np.zeros(52, np.float32)
    for name, value in weights.items():
        w[ARKIT_BLENDSHAPES.index(name)] = value
    return _face(1, w)


def test_eye_curves_follow_the_gaze_with_the_head_yaw_sign() -> None:
    """Both eyes looking to the subject's left: + yaw, as a head turned to the subject's left."""
    sender = LiveLinkSender(LiveLinkConfig(port=9))
    to_left = _decode(sender.build_datagram(_eyes_looking(eyeLookOutLeft=0.5, eyeLookInRight=0.5),
                                            _frame(0, [], pts=0.0)))["curves"]
    down = _decode(sender.build_datagram(_eyes_looking(eyeLookDownLeft=1.0, eyeLookDownRight=1.0),
                                         _frame(0, [], pts=0.0)))["curves"]
    sender.close()
    assert to_left[55] == pytest.approx(math.radians(15)) and to_left[58] == pytest.approx(math.radians(15))
    assert down[56] == pytest.approx(math.radians(20)) and down[59] == pytest.approx(math.radians(20))
    assert to_left[56] == to_left[59] == down[55] == 0.0


def test_device_id_is_stable_across_runs_and_rate_follows_the_file() -> None:
    assert stable_device_id("main", "host-a") == stable_device_id("main", "host-a")
    assert len({stable_device_id("main", "host-a"), stable_device_id("cam2", "host-a"),
                stable_device_id("main", "host-b")}) == 3
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    packets = []
    for run in range(2):  # two "runs" of the tracker: the same source in Unreal
        sender = LiveLinkSender(LiveLinkConfig(port=receiver.getsockname()[1], pace=False))
        sender.start(StreamMetadata(stream_id="s", started_at=time.time(),
                                    source=SourceInfo(uri="x", live=False, width=1, height=1, fps=30000 / 1001)))
        sender.write(_frame(run, [_face(1, None)], pts=1.0))
        sender.close()
        packets.append(_decode(receiver.recv(2048)))
    receiver.close()
    assert packets[0]["device"] == packets[1]["device"] == stable_device_id("s")
    assert packets[0]["rate"] == (30000, 1001) and packets[0]["frame"] == 29
    assert frame_rate(25) == (25, 1) and frame_rate(29.97) == (30000, 1001) and frame_rate(12.5) == (25, 2)
