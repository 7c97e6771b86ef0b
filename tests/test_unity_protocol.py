"""The Unity package's plain C# (decoder, name matching, axes) compiled and run with Mono.

The payloads are what our Python codec produces; the C# runner prints what it decoded.
The MonoBehaviours need UnityEngine and NetMQ and are not compiled here.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

from facetrack.adapters.codec import encode_message
from facetrack.tracker.core.schema import FaceResult, FrameResult, HeadPose, SourceInfo, StreamMetadata

UNITY = Path(__file__).resolve().parents[1] / "adapters" / "unity"

pytestmark = pytest.mark.skipif(
    shutil.which("mcs") is None or shutil.which("mono") is None,
    reason="Mono is not installed (apt-get install mono-mcs)",
)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("unity") / "runner.exe"
    sources = sorted((UNITY / "Runtime" / "Protocol").glob("*.cs")) + [UNITY / "Tests~" / "ProtocolTestRunner.cs"]
    build = subprocess.run(["mcs", "-warnaserror", f"-out:{exe}", *map(str, sources)], capture_output=True, text=True,
                           timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    return exe


def _mono(runner: Path, *args: str) -> list[str]:
    done = subprocess.run(["mono", str(runner), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_csharp_self_tests_pass(runner: Path) -> None:
    lines = _mono(runner, "selftest")
    assert lines[-1] == "16 passed, 0 failed", lines


def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(",")], dtype=np.float64)


def test_csharp_decodes_our_msgpack_frames_and_metadata(runner: Path, tmp_path: Path) -> None:
    landmarks = (np.arange(478 * 3, dtype=np.float32).reshape(478, 3) * 0.37 - 11).astype(np.float32)
    weights = np.linspace(0, 1, 52, dtype=np.float32)
    rotation = (0.1, -0.2, 0.05, float(np.sqrt(1 - 0.01 - 0.04 - 0.0025)))
    frame = FrameResult(
        stream_id="cam0", frame_index=123456789012, pts=4.92, capture_time=time.time(), width=1280, height=720,
        faces=[
            FaceResult(track_id=3, bbox=(1, 2, 3, 4), score=0.5, landmarks=landmarks,
                       pose=HeadPose(rotation=rotation, yaw=12.5, pitch=-3.25, roll=1.0, translation=(1.5, -2, -61)),
                       blendshapes=weights),
            FaceResult(track_id=4, bbox=(1, 2, 3, 4), score=0.5, landmarks=landmarks[:10],
                       pose=HeadPose(rotation=(0, 0, 0, 1), yaw=0, pitch=0, roll=0, translation=(0, 0, -50))),
        ],
    )
    frame_path = tmp_path / "frame.msgpack"
    frame_path.write_bytes(encode_message(frame))
    no_pts = tmp_path / "nopts.msgpack"
    no_pts.write_bytes(encode_message(frame.model_copy(update={"pts": None, "faces": []})))
    meta_path = tmp_path / "meta.msgpack"
    meta = StreamMetadata(stream_id="cam0", source=SourceInfo(uri="x", live=True, width=1, height=1), started_at=1.0)
    meta_path.write_bytes(encode_message(meta))

    lines = _mono(runner, "decode", str(frame_path), str(no_pts), str(meta_path))
    assert lines[0] == "frame cam0 123456789012 4.92 1280x720 faces 2"
    head, pose, blend = lines[1].split(), lines[2].split(), lines[3].split()
    assert head[:4] == ["face", "3", "landmarks", "478"]
    np.testing.assert_array_equal(_floats(head[5]), landmarks[0])
    np.testing.assert_array_equal(_floats(head[7]), landmarks[-1])
    np.testing.assert_allclose(_floats(pose[1]), rotation, rtol=1e-6)
    np.testing.assert_allclose(_floats(pose[3]), (1.5, -2, -61))
    np.testing.assert_allclose(_floats(pose[5]), (12.5, -3.25, 1.0))
    np.testing.assert_array_equal(_floats(blend[1]).astype(np.float32), weights)
    assert lines[4].startswith("face 4 landmarks 10 ") and lines[6] == "blendshapes null"
    assert lines[7] == "frame cam0 123456789012 null 1280x720 faces 0"
    assert lines[8] == "meta cam0 52 eyeBlinkLeft 478"


def test_csharp_refuses_malformed_payloads_with_protocol_errors(runner: Path, tmp_path: Path) -> None:
    good = encode_message(FrameResult(stream_id="s", frame_index=0, pts=0.0, capture_time=0.0, width=1, height=1,
                                      faces=[FaceResult(track_id=1, bbox=(0, 0, 1, 1), score=1,
                                                        landmarks=np.zeros((478, 3), np.float32),
                                                        pose=HeadPose(rotation=(0, 0, 0, 1), yaw=0, pitch=0, roll=0,
                                                                      translation=(0, 0, -60)))]))
    data = msgpack.unpackb(good)
    data["faces"][0]["landmarks"]["dtype"] = "|O"
    wrong_dtype = msgpack.packb(data)
    data["faces"][0]["landmarks"] = {"dtype": "<f4", "shape": [478, 3], "data": b"\0" * 12}
    short_data = msgpack.packb(data)
    cases = {
        "truncated": good[:-7],
        "trailing": good + b"\x00",
        "dtype": wrong_dtype,
        "short": short_data,
        "schema": msgpack.packb({"schema": "other/1"}),
        "json": b'{"schema": "facetrack.frame/1"}',
    }
    paths = []
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        paths.append(str(tmp_path / name))
    lines = _mono(runner, "decode", *paths)
    assert len(lines) == len(cases)
    assert all(line.startswith("error ProtocolException ") for line in lines), lines


def test_csharp_arkit_names_are_the_schema_names_in_wire_order() -> None:
    """The C# copy of the 52 names must not drift from the protocol's (no compiler needed)."""
    import re

    from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES

    source = (UNITY / "Runtime" / "Protocol" / "BlendshapeNames.cs").read_text()
    block = source[source.index("ArKit ="):]
    block = block[: block.index("};")]
    assert tuple(re.findall(r'"([A-Za-z]+)"', block)) == ARKIT_BLENDSHAPES


def test_csharp_reads_the_curve_keys_that_keys_init_writes(runner: Path, tmp_path: Path) -> None:
    """`facetrack keys init KEYS --client unity`: the C# reader yields the same 32-byte keys as pyzmq."""
    import zmq.auth
    from click.testing import CliRunner
    from zmq.utils import z85

    from facetrack.tracker.cli.app import app

    keys = tmp_path / "keys"
    done = CliRunner().invoke(app, ["keys", "init", str(keys), "--client", "unity"])
    assert done.exit_code == 0, done.output
    secret_file, server_file = keys / "clients" / "unity.key_secret", keys / "server.key"
    lines = _mono(runner, "keys", str(secret_file), str(server_file))
    public, secret = zmq.auth.load_certificate(secret_file)
    server_public, _ = zmq.auth.load_certificate(server_file)
    assert lines == [f"client {z85.decode(public).hex()} {z85.decode(secret).hex()}",
                     f"server {z85.decode(server_public).hex()} nosecret"]
    (tmp_path / "bad").write_text('curve\n    public-key = "short"\n')
    assert _mono(runner, "keys", str(server_file), str(server_file))[0].startswith("error ProtocolException ")
    assert _mono(runner, "keys", str(tmp_path / "bad"), str(server_file))[0].startswith("error ProtocolException ")
