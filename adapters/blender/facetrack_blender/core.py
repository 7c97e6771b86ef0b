"""What the add-on does without Blender: names, wire decoding, take files, coordinates.

Kept free of `bpy` (and of the facetrack package, which Blender's Python does not
have) so it runs and is tested in any Python; `driver.py` applies its results in Blender.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARKIT_BLENDSHAPES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
"""The stream's blendshape order (facetrack.tracker.core.schema.ARKIT_BLENDSHAPES; a test keeps them equal)."""

FRAME_SCHEMA = "facetrack.frame/1"
META_SCHEMA = "facetrack.meta/1"

_SIDE = re.compile(r"(?:[._](?P<short>[LlRr])|(?P<long>Left|Right|left|right))$")
_ARRAY_KEYS = frozenset({"dtype", "shape", "data"})


class TakeError(ValueError):
    """A take file or a wire message that is not facetrack data; the message says why."""


def canonical_name(name: str, prefixes: Sequence[str] = ()) -> str:
    """`blendShape1.eyeBlink_L` -> `eyeblinkleft`: the comparable form of a shape-key name.

    Drops a configured prefix, else anything up to the last `.`/`:`/`|` that is not a
    side suffix (FBX/Maya namespaces), turns `_L`/`.L`/`Left` into `left` (ICT and Blender
    conventions), and lower-cases.
    """
    for prefix in prefixes:
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
            break
    else:
        head = _SIDE.sub("", name)
        cut = max(head.rfind("."), head.rfind(":"), head.rfind("|"))
        if cut >= 0:
            name = name[cut + 1:]
    match = _SIDE.search(name)
    if match is not None:
        side = (match.group("short") or match.group("long"))[0].lower()
        name = name[: match.start()] + ("left" if side == "l" else "right")
    return name.lower()


def match_shape_keys(
    key_names: Iterable[str],
    prefixes: Sequence[str] = (),
    overrides: Mapping[str, str | Sequence[str]] | None = None,
) -> dict[int, list[str]]:
    """ARKit index -> the shape keys it drives.

    A key matches by `canonical_name`; an ARKit name with no side (`browInnerUp`,
    `cheekPuff`) drives both halves of a split rig (`browInnerUp_L`, `browInnerUp_R`) when
    the rig has no unsplit key. `overrides` (ARKit name -> key name or names) wins.
    Unmatched ARKit names are left out; `Basis` never matches.
    """
    by_canon: dict[str, list[str]] = {}
    for key in key_names:
        by_canon.setdefault(canonical_name(key, prefixes), []).append(key)
    result: dict[int, list[str]] = {}
    for index, arkit in enumerate(ARKIT_BLENDSHAPES):
        if overrides and arkit in overrides:
            chosen = overrides[arkit]
            result[index] = [chosen] if isinstance(chosen, str) else list(chosen)
            continue
        canon = arkit.lower()
        keys = by_canon.get(canon)
        if keys is None and not canon.endswith(("left", "right")):
            keys = by_canon.get(canon + "left", []) + by_canon.get(canon + "right", [])
        if keys:
            result[index] = list(keys)
    return result


def blender_rotation(rotation: Sequence[float]) -> tuple[float, float, float, float]:
    """Head rotation (x, y, z, w) in facetrack's camera frame -> Blender (w, x, y, z).

    facetrack: x = subject's left, y up, z out of the face (toward the camera). A Blender
    character faces -Y with Z up, so its left is +X: (left, up, forward) -> (X, Z, -Y), a
    proper rotation by +90 degrees about X, which maps the quaternion's axis the same way.
    """
    x, y, z, w = (float(v) for v in rotation)
    return (w, x, -z, y)


@dataclass
class FaceSample:
    """One face of one frame, as the add-on uses it."""

    frame_index: int
    time: float
    """Seconds: the source's pts when it has one, else capture time (then only differences matter)."""
    blendshapes: list[float] | None
    """52 weights in ARKIT_BLENDSHAPES order, None before the face-model fit."""
    rotation: tuple[float, float, float, float]
    """Head rotation (x, y, z, w) in facetrack's camera frame."""
    track_id: int


def _array(value: Any, where: str) -> list[float]:
    """A wire array (msgpack's portable map or a JSON list) as a flat list of floats."""
    if isinstance(value, dict):
        if value.keys() != _ARRAY_KEYS or value["dtype"] not in ("<f4", "<f8", "<f2"):
            raise TakeError(f"{where}: not a float array map")
        import numpy as np  # Blender ships numpy; only needed for msgpack's binary arrays

        data = value["data"]
        if not isinstance(data, (bytes, bytearray)) or len(data) % np.dtype(value["dtype"]).itemsize:
            raise TakeError(f"{where}: array data is not bytes of {value['dtype']}")
        return np.frombuffer(data, dtype=value["dtype"]).astype(float).tolist()
    if isinstance(value, list):
        return [float(v) for v in value]
    raise TakeError(f"{where}: expected an array, got {type(value).__name__}")


def sample_from_frame(frame: Mapping[str, Any], track_id: int | None = None) -> FaceSample | None:
    """The chosen face (a track id, or the first) of a decoded `facetrack.frame/1` dict."""
    if frame.get("schema") != FRAME_SCHEMA:
        raise TakeError(f"not a {FRAME_SCHEMA} message (schema {frame.get('schema')!r})")
    faces = frame.get("faces")
    if not isinstance(faces, list):
        raise TakeError("frame has no faces list")
    face = next((f for f in faces if track_id is None or f.get("track_id") == track_id), None)
    if face is None:
        return None
    try:
        pose = face["pose"]
        rotation = tuple(float(v) for v in pose["rotation"])
        shapes = face.get("blendshapes")
        blendshapes = None if shapes is None else _array(shapes, "blendshapes")
        pts = frame.get("pts")
        time = float(pts) if pts is not None else float(frame["capture_time"])
        index = int(frame["frame_index"])
        track = int(face["track_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TakeError(f"malformed frame: {type(exc).__name__}: {exc}") from None
    if len(rotation) != 4:
        raise TakeError(f"head rotation has {len(rotation)} values, expected 4")
    if blendshapes is not None and len(blendshapes) != len(ARKIT_BLENDSHAPES):
        raise TakeError(f"frame has {len(blendshapes)} blendshapes, expected {len(ARKIT_BLENDSHAPES)}")
    return FaceSample(index, time, blendshapes, rotation, track)  # type: ignore[arg-type]


def decode_payload(payload: bytes) -> dict[str, Any]:
    """A wire payload (msgpack, or JSON when it starts with `{`) as a dict; TakeError if not one."""
    try:
        if payload.lstrip()[:1] == b"{":
            data = json.loads(payload)
        else:
            import msgpack

            data = msgpack.unpackb(payload, raw=False, max_bin_len=1 << 24, max_str_len=1 << 16,
                                   max_array_len=1 << 16, max_map_len=1 << 10, max_ext_len=0)
    except Exception as exc:  # hostile bytes raise many types
        raise TakeError(f"undecodable payload: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise TakeError(f"payload is a {type(data).__name__}, not a map")
    return data


def read_take(path: str | Path, track_id: int | None = None) -> list[FaceSample]:
    """The chosen face of every frame of a `facetrack run --out` file (.jsonl or .npz), in order.

    Frames without that face are left out (the action then holds the last value).
    """
    path = Path(path)
    name = path.name.removesuffix(".partial")
    if name.endswith(".jsonl"):
        return _read_jsonl(path, track_id)
    if name.endswith(".npz"):
        return _read_npz(path, track_id)
    raise TakeError(f"cannot import {path.name}: expected a .jsonl or .npz file from `facetrack run --out`")


def _read_jsonl(path: Path, track_id: int | None) -> list[FaceSample]:
    samples = []
    data = path.read_bytes()
    for number, line in enumerate(data[: data.rfind(b"\n") + 1].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            frame = json.loads(line)
        except ValueError as exc:
            raise TakeError(f"{path.name}:{number}: not JSON: {exc}") from None
        if isinstance(frame, dict) and frame.get("schema") == META_SCHEMA:
            continue
        try:
            sample = sample_from_frame(frame, track_id)
        except TakeError as exc:
            raise TakeError(f"{path.name}:{number}: {exc}") from None
        if sample is not None:
            samples.append(sample)
    return samples


def _read_npz(path: Path, track_id: int | None) -> list[FaceSample]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("frame_index", "pts", "capture_time", "face_frame", "track_id",
                                          "rotation", "blendshapes")}
    except KeyError as exc:
        raise TakeError(f"{path.name} is not a facetrack .npz (missing array {exc})") from None
    except (OSError, ValueError) as exc:
        raise TakeError(f"cannot read {path.name}: {exc}") from None
    samples: list[FaceSample] = []
    seen: set[int] = set()
    for row, position in enumerate(arrays["face_frame"].tolist()):
        track = int(arrays["track_id"][row])
        if (track_id is not None and track != track_id) or (track_id is None and position in seen):
            continue
        seen.add(position)
        pts = float(arrays["pts"][position])
        shapes = arrays["blendshapes"][row]
        samples.append(FaceSample(
            frame_index=int(arrays["frame_index"][position]),
            time=pts if not math.isnan(pts) else float(arrays["capture_time"][position]),
            blendshapes=None if np.isnan(shapes).all() else shapes.astype(float).tolist(),
            rotation=tuple(float(v) for v in arrays["rotation"][row]),  # type: ignore[arg-type]
            track_id=track,
        ))
    return samples
