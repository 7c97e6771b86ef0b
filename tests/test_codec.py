"""Wire codec: round trips in both encodings, and only ProtocolError on hostile payloads."""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import synthetic_metadata, synthetic_result

from facetrack.adapters.codec import decode_message, detect_encoding, encode_message
from facetrack.tracker.core.errors import ProtocolError
from facetrack.tracker.core.schema import FrameResult, StreamMetadata


def comparable(value: Any) -> Any:
    """A model dump with arrays as float32 lists, so results compare with ==."""
    if isinstance(value, (FrameResult, StreamMetadata)):
        return comparable(value.model_dump(by_alias=True))
    if isinstance(value, np.ndarray):
        return value.astype(np.float32).tolist()
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [comparable(v) for v in value]
    return value


@pytest.fixture()
def frame() -> FrameResult:
    result = synthetic_result(np.random.default_rng(1), frame_index=7, faces=2)
    result.publish_time = 1.7e9
    return result


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_frame_round_trip(frame: FrameResult, encoding: str) -> None:
    back = decode_message(encode_message(frame, encoding), encoding)
    assert isinstance(back, FrameResult)
    assert comparable(back) == comparable(frame)
    assert back.faces[0].landmarks.dtype == np.float32 and back.faces[0].landmarks.shape == (478, 3)
    back.faces[0].landmarks[0, 0] = 1.0  # decoded arrays are the client's to modify


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_metadata_and_empty_frame_round_trip(encoding: str) -> None:
    metadata = synthetic_metadata("cam 1")
    empty = FrameResult(stream_id="cam 1", frame_index=0, pts=None, capture_time=1.0, width=64, height=48)
    for message in (metadata, empty):
        back = decode_message(encode_message(message, encoding), encoding)
        assert type(back) is type(message)
        assert comparable(back) == comparable(message)


def test_wire_layout_is_portable(frame: FrameResult) -> None:
    data = msgpack.unpackb(encode_message(frame), raw=False)
    assert data["schema"] == "facetrack.frame/1" and "schema_id" not in data
    assert set(data) == set(frame.model_dump(by_alias=True))
    landmarks = data["faces"][0]["landmarks"]
    assert landmarks["dtype"] == "<f4" and landmarks["shape"] == [478, 3] and len(landmarks["data"]) == 478 * 3 * 4
    as_json = json.loads(encode_message(frame, "json"))
    assert np.array(as_json["faces"][1]["landmarks"]).shape == (478, 3)


def test_float64_and_constructed_values_are_sent_as_float32(frame: FrameResult) -> None:
    face = frame.faces[0]
    constructed = face.model_construct(**{**dict(face), "landmarks": face.landmarks.astype(np.float64)})
    constructed.pose = face.pose.model_construct(**{**dict(face.pose), "yaw": np.float32(12.5)})
    frame.faces[0] = constructed
    for encoding in ("msgpack", "json"):
        back = decode_message(encode_message(frame, encoding), encoding)
        assert isinstance(back, FrameResult)
        assert back.faces[0].pose.yaw == 12.5
        np.testing.assert_array_equal(back.faces[0].landmarks, face.landmarks)


def test_detect_encoding(frame: FrameResult) -> None:
    assert detect_encoding(encode_message(frame, "json")) == "json"
    assert detect_encoding(b"  \n{}") == "json"
    assert detect_encoding(encode_message(frame, "msgpack")) == "msgpack"


def _tampered(frame: FrameResult, edit: Any) -> bytes:
    data = msgpack.unpackb(encode_message(frame), raw=False)
    edit(data)
    return msgpack.packb(data, use_bin_type=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema="facetrack.frame/2"), "unknown schema"),
        (lambda d: d.pop("schema"), "unknown schema"),
        (lambda d: d.update(frame_index="seven"), "frame_index"),
        (lambda d: d["faces"][0]["landmarks"].update(dtype=">f4"), "dtype"),
        (lambda d: d["faces"][0]["landmarks"].update(dtype="|O"), "dtype"),
        (lambda d: d["faces"][0]["landmarks"].update(shape=[478, 4]), "bytes"),
        (lambda d: d["faces"][0]["landmarks"].update(shape=[-1, 3]), "shape"),
        (lambda d: d["faces"][0]["landmarks"].update(data="text"), "bin"),
        (lambda d: d["faces"][0]["landmarks"].update(shape=[1434]), "landmarks"),
        (lambda d: d["faces"][0].pop("pose"), "pose"),
        (lambda d: d.update(faces={"a": 1}), "faces"),
    ],
)
def test_malformed_fields_raise_protocol_error(frame: FrameResult, edit: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_message(_tampered(frame, edit))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        b"\x93\x01\x02\x03",
        msgpack.packb({1: 2}),
        msgpack.packb(msgpack.ExtType(1, b"x")),
        msgpack.packb({"schema": "facetrack.frame/1", "x": msgpack.ExtType(5, b"xyz")}),
        b"\x91" * 5000,
        b"{not json",
    ],
)
def test_garbage_raises_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(payload)


def test_json_garbage_raises_protocol_error() -> None:
    for payload in (b"[" * 100_000, b'{"schema": "facetrack.meta/1"}', b'{"schema": 5}', b"\xff\xfe"):
        with pytest.raises(ProtocolError):
            decode_message(payload, "json")


@given(payload=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes(payload: bytes) -> None:
    for encoding in ("msgpack", "json"):
        with suppress(ProtocolError):
            decode_message(payload, encoding)  # type: ignore[arg-type]


@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 10**6),
    encoding=st.sampled_from(["msgpack", "json"]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_corrupted_valid_messages(
    frame: FrameResult, edits: list[tuple[int, int]], cut: int, encoding: str
) -> None:
    """Flip bytes of a real message, then maybe truncate it."""
    payload = bytearray(encode_message(frame, encoding))  # type: ignore[arg-type]
    for position, byte in edits:
        payload[position % len(payload)] = byte
    if cut % 3 == 0:
        del payload[cut % len(payload) :]
    with suppress(ProtocolError):
        decode_message(bytes(payload), encoding)  # type: ignore[arg-type]


_ints = st.integers(-(2**63), 2**64 - 1)
_leaves = st.none() | st.booleans() | _ints | st.floats() | st.text(max_size=8) | st.binary(max_size=16)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_wire_arrays = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["<f4", "<f8", "|u1", "<i8", ">f4", "|O", "<U3", "<M8[s]"]) | _leaves,
        "shape": st.lists(st.integers(-2, 1500), max_size=5) | _leaves,
        "data": st.binary(max_size=64) | _leaves,
    }
)


@given(field_path=st.integers(min_value=0, max_value=10_000), value=_values | _wire_arrays)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_structured_corruption(frame: FrameResult, field_path: int, value: Any) -> None:
    """Replace one field anywhere in a valid message with random msgpack data."""
    data = msgpack.unpackb(encode_message(frame), raw=False)
    slots: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            slots.append((node, key))
            collect(child)

    collect(data)
    node, key = slots[field_path % len(slots)]
    node[key] = value
    with suppress(ProtocolError):
        decode_message(msgpack.packb(data, use_bin_type=True))
