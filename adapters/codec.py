"""Wire encoding of `FrameResult` / `StreamMetadata`: msgpack (default) or JSON.

The wire dict is `model_dump(by_alias=True)`: every field, `"schema"` rather than
`schema_id`, None fields included.

Arrays are float32 on the wire (float16 loses sub-pixel precision beyond 1024 px). In
msgpack an array is the portable map `{"dtype": "<f4", "shape": [478, 3], "data": <bin>}`
(no ext types, so any msgpack library decodes it); in JSON it is nested lists.

Decoding treats the payload as untrusted: bounded unpacking, a dtype allow-list, size
checks, pydantic validation. Every failure is a `ProtocolError`, never anything else.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, TypeAlias

import msgpack
import numpy as np
from pydantic import BaseModel, ValidationError

from facetrack.tracker.core.errors import ProtocolError
from facetrack.tracker.core.schema import FRAME_SCHEMA, META_SCHEMA, FrameResult, StreamMetadata

Encoding = Literal["msgpack", "json"]
Message: TypeAlias = FrameResult | StreamMetadata

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest payload `decode_message` accepts (a frame with 100 faces is ~0.6 MB)."""

ARRAY_DTYPES = frozenset({"<f2", "<f4", "<f8", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8"})
"""Little-endian numeric dtypes a decoder accepts; anything else is a ProtocolError."""

_ARRAY_KEYS = frozenset({"dtype", "shape", "data"})
_MAX_NDIM = 4
_MAX_DEPTH = 32
_SCHEMAS: dict[str, type[BaseModel]] = {FRAME_SCHEMA: FrameResult, META_SCHEMA: StreamMetadata}


def _wire_array(array: np.ndarray) -> dict[str, Any]:
    if array.dtype.kind == "f":
        array = np.ascontiguousarray(array, dtype="<f4")
    else:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        if array.dtype.str not in ARRAY_DTYPES:
            raise TypeError(f"cannot encode a {array.dtype} array: use one of {sorted(ARRAY_DTYPES)}")
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.tobytes()}


def _msgpack_default(value: Any) -> Any:
    """What msgpack cannot pack natively: arrays, and numpy scalars from `model_construct`."""
    if isinstance(value, np.ndarray):
        return _wire_array(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode a {type(value).__name__} on the wire")


def _json_fallback(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"cannot encode a {type(value).__name__} as JSON")


def encode_message(message: Message, encoding: Encoding = "msgpack") -> bytes:
    """Serialise one result or metadata message for the wire (or a JSON-lines file).

    The dict is pydantic's `model_dump(by_alias=True)`; arrays go through the hooks above,
    which also cover numpy scalars that a `model_construct`-built result may hold.
    """
    if encoding == "msgpack":
        data = message.model_dump(by_alias=True, warnings=False)
        return msgpack.packb(data, use_bin_type=True, default=_msgpack_default)
    if encoding == "json":
        return message.model_dump_json(by_alias=True, warnings=False, fallback=_json_fallback).encode()
    raise ValueError(f"unknown encoding {encoding!r}: use 'msgpack' or 'json'")


def detect_encoding(payload: bytes | memoryview) -> Encoding:
    """JSON messages are objects (first non-blank byte `{`); msgpack maps never start with it."""
    head = bytes(payload[:64]).lstrip()
    return "json" if head[:1] == b"{" else "msgpack"


def _unpack(payload: bytes | memoryview, encoding: Encoding) -> Any:
    if encoding == "msgpack":
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_str_len=1 << 16,
            max_array_len=1 << 16,
            max_map_len=1 << 10,
            max_ext_len=0,
        )
    if encoding == "json":
        return json.loads(bytes(payload))
    raise ProtocolError(f"unknown encoding {encoding!r}: use 'msgpack' or 'json'")


def _from_wire_array(value: dict[str, Any], where: str) -> np.ndarray:
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if not isinstance(dtype, str) or dtype not in ARRAY_DTYPES:
        raise ProtocolError(f"{where}: array dtype {dtype!r} is not one of {sorted(ARRAY_DTYPES)}")
    if (
        not isinstance(shape, list)
        or not 0 < len(shape) <= _MAX_NDIM
        or not all(type(n) is int and 0 <= n <= MAX_MESSAGE_BYTES for n in shape)
    ):
        raise ProtocolError(f"{where}: array shape {shape!r} is not a list of 1..{_MAX_NDIM} non-negative ints")
    if not isinstance(data, bytes):
        raise ProtocolError(f"{where}: array data must be msgpack bin, not {type(data).__name__}")
    item = np.dtype(dtype)
    expected = math.prod(shape) * item.itemsize
    if len(data) != expected:
        raise ProtocolError(
            f"{where}: array data has {len(data)} bytes, shape {shape} of {dtype} needs {expected}"
        )
    return np.frombuffer(data, dtype=item).reshape(shape).copy()


def _arrays_from_wire(value: Any, where: str, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise ProtocolError(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        if value.keys() == _ARRAY_KEYS:
            return _from_wire_array(value, where)
        return {k: _arrays_from_wire(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays_from_wire(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    return value


def _check_shapes(frame: FrameResult) -> None:
    for i, face in enumerate(frame.faces):
        checks = (
            ("landmarks", face.landmarks, 3),
            ("landmarks68", face.landmarks68, 2),
            ("blendshapes", face.blendshapes, None),
        )
        for name, array, columns in checks:
            if array is None:
                continue
            ok = array.ndim == 1 if columns is None else array.ndim == 2 and array.shape[1] == columns
            if not ok:
                want = "(N,)" if columns is None else f"(N, {columns})"
                raise ProtocolError(f"faces[{i}].{name}: shape {array.shape} is not {want}")
        if face.coefficients is not None:
            for name in ("identity", "expression"):
                if getattr(face.coefficients, name).ndim != 1:
                    raise ProtocolError(f"faces[{i}].coefficients.{name}: must be 1-D")


def _validation_message(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False)[:5]
    ]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def decode_message(payload: bytes | memoryview, encoding: Encoding = "msgpack") -> Message:
    """Parse and validate one untrusted payload; anything malformed raises `ProtocolError`."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        data = _unpack(payload, encoding)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack/json raise many types on hostile input
        raise ProtocolError(f"not a valid {encoding} message: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"message must be a map/object, got {type(data).__name__}")
    schema = data.get("schema")
    if not isinstance(schema, str) or schema not in _SCHEMAS:
        raise ProtocolError(f"unknown schema {schema!r}: this client understands {sorted(_SCHEMAS)}")
    if encoding == "msgpack":
        data = _arrays_from_wire(data, schema)
    try:
        message = _SCHEMAS[schema].model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"invalid {schema} message: {_validation_message(exc)}") from None
    except Exception as exc:  # array validators raise TypeError/ValueError/OverflowError on odd input
        raise ProtocolError(f"invalid {schema} message: {type(exc).__name__}: {exc}") from None
    if isinstance(message, FrameResult):
        _check_shapes(message)
    return message  # type: ignore[return-value]
