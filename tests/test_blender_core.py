"""The Blender add-on's bpy-free logic: name matching, wire decoding, take files, axes."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from blender_addon import addon_module

from facetrack.adapters.codec import encode_message
from facetrack.adapters.file_sinks import open_file_sink
from facetrack.tracker.core import schema

_core = addon_module("core")
ARKIT_BLENDSHAPES = _core.ARKIT_BLENDSHAPES
TakeError = _core.TakeError
blender_rotation = _core.blender_rotation
canonical_name = _core.canonical_name
decode_payload = _core.decode_payload
match_shape_keys = _core.match_shape_keys
read_take = _core.read_take
sample_from_frame = _core.sample_from_frame
from facetrack.tracker.core.schema import FaceResult, FrameResult, HeadPose, SourceInfo, StreamMetadata  # noqa: E402

ICT_NAMES = [
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R",
    "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward",
    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimple_L", "mouthDimple_R", "mouthFrown_L",
    "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L",
    "mouthPress_R", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
]  # fmt: skip
"""ICT Face Model Light's 53 expression names (its release's order)."""


def _frame(index: int, faces: list[FaceResult], pts: float | None = None) -> FrameResult:
    return FrameResult(stream_id="cam", frame_index=index, pts=index / 25 if pts is None else pts,
                       capture_time=1000.0 + index / 25, width=640, height=480, faces=faces)


def _face(track_id: int, weights: np.ndarray | None, quat: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0)) -> FaceResult:
    return FaceResult(track_id=track_id, bbox=(0, 0, 1, 1), score=1.0, landmarks=np.zeros((478, 3), np.float32),
                      pose=HeadPose(rotation=quat, yaw=0, pitch=0, roll=0, translation=(0, 0, -60)),
                      blendshapes=weights)


def _weights(i: int) -> np.ndarray:
    return ((np.arange(52) + i) % 52 / 51).astype(np.float32)


def test_arkit_names_match_the_schema() -> None:
    assert ARKIT_BLENDSHAPES == schema.ARKIT_BLENDSHAPES


def test_plain_capitalised_prefixed_and_ict_names_all_match() -> None:
    exact = match_shape_keys(["Basis", *ARKIT_BLENDSHAPES])
    assert exact == {i: [n] for i, n in enumerate(ARKIT_BLENDSHAPES)}
    caps = match_shape_keys([n[0].upper() + n[1:] for n in ARKIT_BLENDSHAPES])
    assert len(caps) == 52
    fbx = match_shape_keys([f"blendShape1.{n}" for n in ARKIT_BLENDSHAPES])
    assert fbx[0] == ["blendShape1.eyeBlinkLeft"]
    custom = match_shape_keys([f"ARKit_{n}" for n in ARKIT_BLENDSHAPES], prefixes=["ARKit_"])
    assert len(custom) == 52

    ict = match_shape_keys(ICT_NAMES)
    by_name = {ARKIT_BLENDSHAPES[i]: keys for i, keys in ict.items()}
    assert by_name["eyeBlinkLeft"] == ["eyeBlink_L"] and by_name["mouthSmileRight"] == ["mouthSmile_R"]
    assert by_name["browInnerUp"] == ["browInnerUp_L", "browInnerUp_R"]  # split shapes: one value drives both
    assert by_name["cheekPuff"] == ["cheekPuff_L", "cheekPuff_R"]
    assert by_name["mouthLeft"] == ["mouthLeft"] and by_name["jawLeft"] == ["jawLeft"]
    assert "tongueOut" not in by_name  # ICT has none
    assert len(by_name) == 51


def test_blender_side_suffixes_and_overrides() -> None:
    assert canonical_name("eyeBlink.L") == "eyeblinkleft"
    assert canonical_name("Face:mouthSmile_R") == "mouthsmileright"
    mapping = match_shape_keys(["Blink_Left", "jawOpen"], overrides={"eyeBlinkLeft": "Blink_Left"})
    assert mapping[0] == ["Blink_Left"] and mapping[ARKIT_BLENDSHAPES.index("jawOpen")] == ["jawOpen"]


def _rotate(wxyz: tuple[float, float, float, float], v: np.ndarray) -> np.ndarray:
    w, x, y, z = wxyz
    m = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return m @ v


def test_blender_rotation_turns_a_minus_y_facing_head_the_subjects_way() -> None:
    """Blender characters face -Y, their left is +X; +yaw turns toward the subject's left."""
    half = math.radians(30) / 2
    yaw = (0.0, math.sin(half), 0.0, math.cos(half))  # facetrack (x, y, z, w) about up
    forward = _rotate(blender_rotation(yaw), np.array([0.0, -1.0, 0.0]))
    assert forward[0] == pytest.approx(math.sin(math.radians(30)))
    pitch = (math.sin(half), 0.0, 0.0, math.cos(half))  # +pitch: face down
    assert _rotate(blender_rotation(pitch), np.array([0.0, -1.0, 0.0]))[2] < 0


def test_samples_from_our_msgpack_and_json_payloads() -> None:
    frame = _frame(4, [_face(2, None), _face(5, _weights(4), (0.1, 0.2, 0.3, 0.927))])
    for encoding in ("msgpack", "json"):
        decoded = decode_payload(encode_message(frame, encoding))
        first = sample_from_frame(decoded)
        assert first is not None and first.track_id == 2 and first.blendshapes is None
        chosen = sample_from_frame(decoded, track_id=5)
        assert chosen is not None and chosen.frame_index == 4 and chosen.time == pytest.approx(4 / 25)
        np.testing.assert_allclose(chosen.blendshapes, _weights(4))
        assert chosen.rotation == pytest.approx((0.1, 0.2, 0.3, 0.927))
        assert sample_from_frame(decoded, track_id=9) is None


@pytest.mark.parametrize("payload", [b"\xc1", b"[1,2]", b'{"schema": "x"}', b"\x93\x01\x02\x03"])
def test_hostile_payloads_raise_take_error(payload: bytes) -> None:
    with pytest.raises(TakeError):
        sample_from_frame(decode_payload(payload))


def _write_take(path: Path, frames: list[FrameResult]) -> Path:
    sink = open_file_sink(path)
    sink.start(StreamMetadata(stream_id="cam", source=SourceInfo(uri="x", live=False, width=640, height=480),
                              started_at=time.time()))
    for frame in frames:
        sink.write(frame)
    sink.close()
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".npz"])
def test_read_take_from_the_real_file_sinks(tmp_path: Path, suffix: str) -> None:
    frames = [_frame(i, [_face(1, _weights(i)), _face(2, _weights(i + 7))]) for i in range(6)]
    frames[2] = _frame(2, [])  # no face in frame 2
    frames[3] = _frame(3, [_face(1, None)])  # not fitted yet
    path = _write_take(tmp_path / f"take{suffix}", frames)
    samples = read_take(path)
    assert [s.frame_index for s in samples] == [0, 1, 3, 4, 5]
    assert samples[2].blendshapes is None
    np.testing.assert_allclose(samples[-1].blendshapes, _weights(5))
    second = read_take(path, track_id=2)
    assert [s.frame_index for s in second] == [0, 1, 4, 5]
    np.testing.assert_allclose(second[0].blendshapes, _weights(7))


def test_read_take_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text(json.dumps({"schema": "other"}) + "\n")
    with pytest.raises(TakeError, match="x.jsonl:1"):
        read_take(bad)
    with pytest.raises(TakeError, match=".jsonl or .npz"):
        read_take(tmp_path / "take.csv")
    npz = tmp_path / "y.npz"
    np.savez(npz, a=np.zeros(3))
    with pytest.raises(TakeError, match="not a facetrack .npz"):
        read_take(npz)
