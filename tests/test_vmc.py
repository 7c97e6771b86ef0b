"""VMC sender against a real python-osc UDP server on loopback."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pythonosc", reason="python-osc is not installed (pip install python-osc)")

from pythonosc.dispatcher import Dispatcher  # noqa: E402
from pythonosc.osc_server import BlockingOSCUDPServer  # noqa: E402

from facetrack.adapters.udp import parse_host_port  # noqa: E402
from facetrack.adapters.vmc import (  # noqa: E402
    VmcConfig,
    VmcSender,
    unity_position,
    unity_rotation,
)
from facetrack.tracker.core.errors import SinkError  # noqa: E402
from facetrack.tracker.core.schema import (  # noqa: E402
    ARKIT_BLENDSHAPES,
    FaceResult,
    FrameResult,
    HeadPose,
    SourceInfo,
    StreamMetadata,
)


def _quat_yaw_pitch_roll(yaw: float, pitch: float, roll: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of Ry(yaw) Rx(pitch) Rz(roll), degrees (schema.py's convention)."""
    def axis(i: int, deg: float) -> np.ndarray:
        q = np.zeros(4)
        q[i] = math.sin(math.radians(deg) / 2)
        q[3] = math.cos(math.radians(deg) / 2)
        return q

    def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ax, ay, az, aw = a
        bx, by, bz, bw = b
        return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                         aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])

    return tuple(mul(mul(axis(1, yaw), axis(0, pitch)), axis(2, roll)).tolist())  # type: ignore[return-value]


def _rotate(q: tuple[float, float, float, float], v: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    m = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return m @ v


def _face(track_id: int, blendshapes: np.ndarray | None, yaw: float = 0.0,
          translation: tuple[float, float, float] = (0.0, 0.0, -60.0)) -> FaceResult:
    return FaceResult(
        track_id=track_id, bbox=(0, 0, 10, 10), score=0.9, landmarks=np.zeros((478, 3), np.float32),
        pose=HeadPose(rotation=_quat_yaw_pitch_roll(yaw, 0, 0), yaw=yaw, pitch=0, roll=0, translation=translation),
        blendshapes=blendshapes,
    )


def _frame(index: int, faces: list[FaceResult]) -> FrameResult:
    return FrameResult(stream_id="t", frame_index=index, pts=index / 25, capture_time=time.time(),
                       width=640, height=480, faces=faces)


def _metadata() -> StreamMetadata:
    return StreamMetadata(stream_id="t", source=SourceInfo(uri="x", live=False, width=640, height=480),
                          started_at=time.time())


class _Receiver:
    """A real OSC server; records (address, args) in arrival order, one handle per datagram."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple]] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.append((address, args)))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.server.timeout = 0.5
        self.port = self.server.server_address[1]

    def receive(self, datagrams: int) -> list[tuple[str, tuple]]:
        deadline = time.monotonic() + 3.0
        self.messages.clear()
        handled = 0
        while handled < datagrams and time.monotonic() < deadline:
            before = len(self.messages)
            self.server.handle_request()
            handled += len(self.messages) > before
        return list(self.messages)

    def close(self) -> None:
        self.server.server_close()


@pytest.fixture()
def receiver():
    r = _Receiver()
    yield r
    r.close()


def test_bundle_carries_all_blendshapes_then_apply_then_head(receiver: _Receiver) -> None:
    weights = np.linspace(0, 1, 52, dtype=np.float32)
    sender = VmcSender(VmcConfig(port=receiver.port))
    sender.start(_metadata())
    sender.write(_frame(0, [_face(3, weights, yaw=20.0, translation=(5.0, -2.0, -55.0))]))
    messages = receiver.receive(1)
    sender.close()

    addresses = [a for a, _ in messages]
    assert addresses[:2] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
    vals = [args for a, args in messages if a == "/VMC/Ext/Blend/Val"]
    assert [name for name, _ in vals] == list(ARKIT_BLENDSHAPES)
    np.testing.assert_array_equal(np.array([v for _, v in vals], np.float32), weights)
    apply_at = addresses.index("/VMC/Ext/Blend/Apply")
    assert apply_at == max(i for i, a in enumerate(addresses) if a == "/VMC/Ext/Blend/Val") + 1
    assert addresses[-1] == "/VMC/Ext/Bone/Pos"
    name, *values = messages[-1][1]
    assert name == "Head"
    np.testing.assert_allclose(values[:3], (0, 0, 0))  # rest offset; no translation by default
    expected = unity_rotation(_quat_yaw_pitch_roll(20.0, 0, 0))
    np.testing.assert_allclose(values[3:], expected, atol=1e-6)
    assert sender.datagrams_sent == 1 and sender.send_errors == 0


def test_head_turning_to_subjects_left_turns_avatar_to_its_left() -> None:
    """Unity: x = avatar's right, z = its forward; a +yaw (toward the subject's left) must face -x."""
    q = unity_rotation(_quat_yaw_pitch_roll(30.0, 0, 0))
    forward = _rotate(q, np.array([0.0, 0.0, 1.0]))
    assert forward[0] == pytest.approx(-math.sin(math.radians(30)), abs=1e-9)
    down = _rotate(unity_rotation(_quat_yaw_pitch_roll(0, 25.0, 0)), np.array([0.0, 0.0, 1.0]))
    assert down[1] < 0  # +pitch tilts the face down, in Unity too
    # +roll tilts the head toward the subject's right shoulder: the avatar's up leans to its right (+x).
    up = _rotate(unity_rotation(_quat_yaw_pitch_roll(0, 0, 15.0)), np.array([0.0, 1.0, 0.0]))
    assert up[0] > 0
    assert unity_position((10.0, 5.0, -60.0)) == pytest.approx((-0.1, 0.05, -0.6))


def test_no_blendshapes_sends_head_only_and_no_face_sends_nothing(receiver: _Receiver) -> None:
    sender = VmcSender(VmcConfig(port=receiver.port))
    sender.write(_frame(0, [_face(1, None)]))
    addresses = [a for a, _ in receiver.receive(1)]
    assert addresses == ["/VMC/Ext/OK", "/VMC/Ext/T", "/VMC/Ext/Bone/Pos"]
    sender.write(_frame(1, []))
    assert sender.datagrams_sent == 1
    sender.close()
    with pytest.raises(SinkError):
        sender.write(_frame(2, []))


def test_track_selection_name_map_and_translation(receiver: _Receiver) -> None:
    config = VmcConfig(port=receiver.port, track_id=7, name_map={"jawOpen": "JawOpen"},
                       head_position=(0.0, 0.1, 0.0), head_translation=True)
    sender = VmcSender(config)
    a = np.zeros(52, np.float32)
    b = np.full(52, 0.5, np.float32)
    sender.write(_frame(0, [_face(2, a), _face(7, b, translation=(0.0, 0.0, -60.0))]))
    sender.write(_frame(1, [_face(7, b, translation=(10.0, 0.0, -60.0))]))
    sender.write(_frame(2, [_face(2, a)]))  # track 7 absent: nothing sent
    messages = receiver.receive(2)
    sender.close()
    vals = [args for a, args in messages if a == "/VMC/Ext/Blend/Val"]
    assert len(vals) == 104 and all(v == 0.5 for _, v in vals)
    assert ("JawOpen", 0.5) in vals and not any(n == "jawOpen" for n, _ in vals)
    heads = [args for a, args in messages if a == "/VMC/Ext/Bone/Pos"]
    np.testing.assert_allclose(heads[0][1:4], (0.0, 0.1, 0.0), atol=1e-6)
    np.testing.assert_allclose(heads[1][1:4], (-0.1, 0.1, 0.0), atol=1e-6)  # moved 10 cm to the subject's left
    assert sender.datagrams_sent == 2


def test_start_rejects_a_foreign_blendshape_layout() -> None:
    sender = VmcSender(VmcConfig(port=9))
    metadata = _metadata()
    metadata.blendshape_names = ["a", "b"]
    with pytest.raises(SinkError, match="52 ARKit"):
        sender.start(metadata)
    sender.close()


def test_sending_without_a_receiver_never_raises() -> None:
    receiver = _Receiver()
    port = receiver.port
    receiver.close()  # nothing listens on the port any more
    sender = VmcSender(VmcConfig(port=port))
    for i in range(5):
        sender.write(_frame(i, [_face(1, np.zeros(52, np.float32))]))
    sender.close()


def test_example_monitor_prints_what_a_receiver_gets() -> None:
    probe = _Receiver()  # find a free port, then hand it to the example
    port = probe.port
    probe.close()
    example = Path(__file__).resolve().parents[1] / "examples" / "vmc_session.py"
    monitor = subprocess.Popen([sys.executable, str(example), "--monitor", str(port), "--seconds", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert monitor.stdout is not None and "listening" in monitor.stdout.readline()
        sender = VmcSender(VmcConfig(port=port))
        weights = np.zeros(52, np.float32)
        weights[17] = 0.8
        for i in range(3):
            sender.write(_frame(i, [_face(1, weights, yaw=10.0)]))
        sender.close()
        out, err = monitor.communicate(timeout=15)
    finally:
        if monitor.poll() is None:
            monitor.kill()
    assert monitor.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("Head")]
    assert len(lines) == 3 and all("52 blendshapes, top jawOpen=0.80" in line for line in lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ("127.0.0.1", 39539)),
        ("", ("127.0.0.1", 39539)),
        ("127.0.0.2:9000", ("127.0.0.2", 9000)),
        ("localhost", ("localhost", 39539)),
        ("9000", ("127.0.0.1", 9000)),
        (":9000", ("127.0.0.1", 9000)),
        ("[::1]:9000", ("::1", 9000)),
        ("::1", ("::1", 39539)),
    ],
)
def test_parse_host_port(text: str | None, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 39539) == expected


@pytest.mark.parametrize("text", ["host:0", "host:70000", "host:abc"])
def test_parse_host_port_rejects_bad_ports(text: str) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_host_port(text, 39539)
