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


class _Server(BlockingOSCUDPServer):
    """python-osc's UDP server, also keeping each datagram's bytes (its size, and which messages it held)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.datagrams: list[bytes] = []

    def verify_request(self, request: object, client_address: object) -> bool:
        self.datagrams.append(request[0])  # type: ignore[index]
        return True


class _Receiver:
    """A real OSC server; records (address, args) in arrival order, and per message its datagram's index."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple]] = []
        self.datagram_of: list[int] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._on_message)
        self.server = _Server(("127.0.0.1", 0), dispatcher)
        self.server.timeout = 0.5
        self.port = self.server.server_address[1]

    def _on_message(self, address: str, *args: object) -> None:
        self.messages.append((address, args))
        self.datagram_of.append(len(self.server.datagrams) - 1)

    @property
    def datagrams(self) -> list[bytes]:
        return self.server.datagrams

    def receive(self, datagrams: int) -> list[tuple[str, tuple]]:
        deadline = time.monotonic() + 3.0
        self.messages.clear()
        self.datagram_of.clear()
        self.server.datagrams.clear()
        while len(self.server.datagrams) < datagrams and time.monotonic() < deadline:
            self.server.handle_request()
        return list(self.messages)

    def close(self) -> None:
        self.server.server_close()


@pytest.fixture()
def receiver():
    r = _Receiver()
    yield r
    r.close()


def test_frame_is_split_into_complete_bundles_under_the_mtu_with_apply_last(receiver: _Receiver) -> None:
    weights = np.linspace(0, 1, 52, dtype=np.float32)
    sender = VmcSender(VmcConfig(port=receiver.port, pace=False))
    sender.start(_metadata())
    for i in range(3):
        sender.write(_frame(i, [_face(3, weights, yaw=20.0, translation=(5.0, -2.0, -55.0))]))
    messages = receiver.receive(6)
    sender.close()

    sizes = [len(d) for d in receiver.datagrams]
    assert len(sizes) == 6 and max(sizes) < 1400, sizes  # 2 bundles a frame: 1,388 + 1,272 bytes
    assert all(d.startswith(b"#bundle\0") for d in receiver.datagrams)
    addresses = [a for a, _ in messages]
    applies = [i for i, a in enumerate(addresses) if a == "/VMC/Ext/Blend/Apply"]
    assert len(applies) == 3
    for frame_end, datagram in zip(applies, (1, 3, 5)):
        assert receiver.datagram_of[frame_end] == datagram  # Apply ends each frame's last bundle
        assert frame_end + 1 == len(addresses) or receiver.datagram_of[frame_end + 1] == datagram + 1
    frame = messages[: applies[0] + 1]
    assert [a for a, _ in frame[:3]] == ["/VMC/Ext/OK", "/VMC/Ext/T", "/VMC/Ext/Bone/Pos"]
    vals = [args for a, args in frame if a == "/VMC/Ext/Blend/Val"]
    assert [name for name, _ in vals] == list(ARKIT_BLENDSHAPES)
    np.testing.assert_array_equal(np.array([v for _, v in vals], np.float32), weights)
    name, *values = frame[2][1]
    assert name == "Head"
    np.testing.assert_allclose(values[:3], (0, 0, 0))  # the first frame is the translation's origin
    expected = unity_rotation(_quat_yaw_pitch_roll(20.0, 0, 0))
    np.testing.assert_allclose(values[3:], expected, atol=1e-6)
    assert sender.datagrams_sent == 6 and sender.send_errors == 0


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
    assert addresses == ["/VMC/Ext/OK", "/VMC/Ext/T", "/VMC/Ext/Bone/Pos"] and len(receiver.datagrams) == 1
    sender.write(_frame(1, []))
    assert sender.datagrams_sent == 1
    sender.close()
    with pytest.raises(SinkError):
        sender.write(_frame(2, []))


def test_track_selection_name_map_and_translation(receiver: _Receiver) -> None:
    config = VmcConfig(port=receiver.port, track_id=7, name_map={"jawOpen": "JawOpen"},
                       head_position=(0.0, 0.1, 0.0))
    sender = VmcSender(config)
    a = np.zeros(52, np.float32)
    b = np.full(52, 0.5, np.float32)
    sender.write(_frame(0, [_face(2, a), _face(7, b, translation=(0.0, 0.0, -60.0))]))
    sender.write(_frame(1, [_face(7, b, translation=(10.0, 0.0, -60.0))]))
    sender.write(_frame(2, [_face(2, a)]))  # track 7 absent: nothing sent
    messages = receiver.receive(4)
    sender.close()
    vals = [args for a, args in messages if a == "/VMC/Ext/Blend/Val"]
    assert len(vals) == 104 and all(v == 0.5 for _, v in vals)
    assert ("JawOpen", 0.5) in vals and not any(n == "jawOpen" for n, _ in vals)
    heads = [args for a, args in messages if a == "/VMC/Ext/Bone/Pos"]
    np.testing.assert_allclose(heads[0][1:4], (0.0, 0.1, 0.0), atol=1e-6)
    np.testing.assert_allclose(heads[1][1:4], (-0.1, 0.1, 0.0), atol=1e-6)  # moved 10 cm to the subject's left
    assert sender.datagrams_sent == 4


def test_head_translation_follows_the_head_and_can_be_turned_off(receiver: _Receiver) -> None:
    weights = np.zeros(52, np.float32)
    moves = [(0.0, 0.0, -60.0), (2.0, 3.0, -58.0), (4.0, -1.0, -61.0)]
    for translation_on in (True, False):
        sender = VmcSender(VmcConfig(port=receiver.port, head_translation=translation_on))
        for i, move in enumerate(moves):
            sender.write(_frame(i, [_face(1, weights, translation=move)]))
        heads = [args[1:4] for a, args in receiver.receive(6) if a == "/VMC/Ext/Bone/Pos"]
        sender.close()
        assert len(heads) == 3
        if translation_on:
            np.testing.assert_allclose(heads[0], (0, 0, 0))
            np.testing.assert_allclose(heads[1], (-0.02, 0.03, 0.02), atol=1e-6)
            np.testing.assert_allclose(heads[2], (-0.04, -0.01, -0.01), atol=1e-6)
        else:
            assert all(h == (0.0, 0.0, 0.0) for h in heads)
    sender = VmcSender(VmcConfig(port=receiver.port))
    sender.write(_frame(0, [_face(1, None, translation=moves[0])]))
    sender.calibrate()  # the next frame is the neutral
    sender.write(_frame(1, [_face(1, None, translation=moves[1])]))
    sender.write(_frame(2, [_face(1, None, translation=moves[2])]))
    heads = [args[1:4] for a, args in receiver.receive(3) if a == "/VMC/Ext/Bone/Pos"]
    sender.close()
    np.testing.assert_allclose(heads[2], (-0.02, -0.04, -0.03), atol=1e-6)


def test_vrm_presets_are_sent_by_name_with_mapped_values(receiver: _Receiver) -> None:
    weights = np.zeros(52, np.float32)
    index = {n: i for i, n in enumerate(ARKIT_BLENDSHAPES)}
    for name, value in {"eyeBlinkLeft": 0.9, "eyeBlinkRight": 0.6, "jawOpen": 0.5, "mouthSmileLeft": 0.8,
                        "mouthSmileRight": 0.6, "cheekSquintLeft": 0.3, "cheekSquintRight": 0.3,
                        "browDownLeft": 0.2, "browDownRight": 0.4}.items():
        weights[index[name]] = value
    sender = VmcSender(VmcConfig(port=receiver.port, preset="vrm", name_map={"Joy": "Happy"}))
    sender.write(_frame(0, [_face(1, weights)]))
    messages = receiver.receive(1)
    sender.close()
    assert len(receiver.datagrams) == 1 and len(receiver.datagrams[0]) < 1400
    vals = dict(args for a, args in messages if a == "/VMC/Ext/Blend/Val")
    assert list(vals) == ["Blink", "Blink_L", "Blink_R", "A", "I", "U", "E", "O", "Happy", "Angry", "Sorrow", "Fun"]
    expected = {"Blink": 0.6, "Blink_L": 0.3, "Blink_R": 0.0, "A": 0.5, "I": 0.0, "U": 0.0, "E": 0.0, "O": 0.0,
                "Happy": 0.3, "Angry": 0.3, "Sorrow": 0.0, "Fun": 0.4}
    for name, value in expected.items():
        assert vals[name] == pytest.approx(value, abs=1e-6), name
    assert [a for a, _ in messages][-1] == "/VMC/Ext/Blend/Apply"


def test_vrm_vowels_share_one_mouth() -> None:
    from facetrack.adapters.vrm_presets import VRM_PRESETS, vrm_presets

    w = np.zeros(52, np.float32)
    index = {n: i for i, n in enumerate(ARKIT_BLENDSHAPES)}
    w[index["jawOpen"]], w[index["mouthFunnel"]] = 1.0, 0.8
    w[index["mouthStretchLeft"]] = w[index["mouthStretchRight"]] = 0.6
    p = dict(zip(VRM_PRESETS, vrm_presets(w).tolist()))
    vowels = [p[v] for v in "AIUEO"]
    assert sum(vowels) == pytest.approx(1.0, abs=1e-6) and p["O"] == max(vowels)
    w[:] = 0
    w[index["mouthStretchLeft"]] = w[index["mouthStretchRight"]] = 0.7
    p = dict(zip(VRM_PRESETS, vrm_presets(w).tolist()))
    assert p["I"] == pytest.approx(0.7) and p["E"] == 0.0 and p["A"] == 0.0


def test_both_presets_fit_in_three_bundles_and_bad_names_are_refused(receiver: _Receiver) -> None:
    sender = VmcSender(VmcConfig(port=receiver.port, preset="both"))
    sender.write(_frame(0, [_face(1, np.zeros(52, np.float32))]))
    messages = receiver.receive(3)
    sender.close()
    assert [len(d) < 1400 for d in receiver.datagrams] == [True] * 3
    assert sum(a == "/VMC/Ext/Blend/Val" for a, _ in messages) == 64
    with pytest.raises(ValueError, match="neither ARKit"):
        VmcConfig(name_map={"jawopen": "x"})


def test_a_file_is_paced_at_its_frame_rate_unless_asked_not_to(receiver: _Receiver) -> None:
    weights = np.zeros(52, np.float32)
    for pace, live in ((True, False), (False, False), (True, True)):
        sender = VmcSender(VmcConfig(port=receiver.port, pace=pace))
        metadata = _metadata()
        metadata.source.live = live
        sender.start(metadata)
        began = time.monotonic()
        for i in range(11):  # pts 0 .. 0.4 s at 25 fps
            sender.write(_frame(i, [_face(1, weights)]))
        elapsed = time.monotonic() - began
        receiver.receive(22)
        sender.close()
        assert len(receiver.datagrams) == 22
        if pace and not live:
            assert 0.38 <= elapsed < 2.0, elapsed  # paced: at least the clip's 0.4 s (less only by timer slack)
        else:
            assert elapsed < 0.38, elapsed  # not paced: under the clip's 0.4 s however loaded the machine


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


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facetrack.tracker.cli", "run", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.media
def test_run_sends_a_file_paced_in_complete_small_bundles(short_face_clip: Path) -> None:
    """`facetrack run CLIP --vmc`: 40 frames at 25 fps arrive over about 1.6 s, never above 1,400 bytes."""
    import threading

    receiver = _Receiver()
    arrivals: list[float] = []
    stop = threading.Event()

    def listen() -> None:
        receiver.server.timeout = 0.2
        while not stop.is_set():
            before = len(receiver.datagrams)
            receiver.server.handle_request()
            arrivals.extend([time.monotonic()] * (len(receiver.datagrams) - before))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        done = _run_cli(str(short_face_clip), "--quiet", "--vmc", f"127.0.0.1:{receiver.port}", "--vmc-preset", "both",
                        "--vmc-map", "Joy=Happy", "--send-track", "0")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(5)
        receiver.close()
    assert done.returncode == 0, done.stderr
    addresses = [a for a, _ in receiver.messages]
    assert addresses.count("/VMC/Ext/Blend/Apply") == 40 and addresses[-1] == "/VMC/Ext/Blend/Apply"
    assert max(len(d) for d in receiver.datagrams) < 1400 and len(receiver.datagrams) == 120
    assert arrivals[-1] - arrivals[0] >= 1.4  # 39 frame intervals of 40 ms
    names = {args[0] for a, args in receiver.messages if a == "/VMC/Ext/Blend/Val"}
    assert {"Happy", "Blink", "jawOpen"} <= names and "Joy" not in names
    heads = np.array([args[1:4] for a, args in receiver.messages if a == "/VMC/Ext/Bone/Pos"])
    assert len(heads) == 40 and np.abs(heads[0]).max() == 0 and np.abs(heads).max() > 0.001  # the head moves


def test_run_refuses_an_unknown_name_in_the_map(blank_clip: Path) -> None:
    done = _run_cli(str(blank_clip), "--quiet", "--vmc", "127.0.0.1:9", "--vmc-map", "JawOpen=x")
    assert done.returncode == 2 and "neither ARKit blendshape nor VRM preset names" in done.stderr
