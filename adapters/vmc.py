"""`VmcSender`: stream results to VTuber apps over the VMC protocol (OSC over UDP).

VSeeFace, Warudo, VNyan, EVMC4U (Unity) and VMC4B (Blender) receive the VMC protocol
(https://protocol.vmc.info). Per frame, for one face, we send:

- `/VMC/Ext/OK 1` and `/VMC/Ext/T <seconds since start>` (receivers use them to show
  that a performer is connected);
- `/VMC/Ext/Bone/Pos "Head" px py pz qx qy qz qw`: the head's local pose;
- `/VMC/Ext/Blend/Val <name> <weight>` for each of the 52 ARKit blendshapes ("Perfect
  Sync" names, weights 0..1) and/or the 12 VRM 0.x presets (`preset`, see
  `facetrack.adapters.vrm_presets`), then `/VMC/Ext/Blend/Apply` — only when the face has
  blendshapes (before the face-model fit they are None and nothing is sent for them).

A frame's messages go in as few OSC bundles as fit under `max_datagram` bytes (1,400: under
a 1,500-byte Ethernet or Wi-Fi MTU with IP and UDP headers, so no bundle is fragmented,
since a lost fragment loses the whole datagram). Each bundle is complete on its own; the
first holds OK, T and the head, and `Blend/Apply` ends the last, so a receiver applies
the frame's values once they have all arrived. With the 52 ARKit names that is 2 bundles
(1,388 + 1,272 bytes), the 12 VRM presets 1 bundle (620), both 3 (1,388 + 1,396 + 344).

Files are paced at their frame rate (`pace`, on by default; see `DatagramSink`).

Coordinates. Our head pose is right-handed, in the camera frame (x right, y up, z toward
the viewer); the head frame is (subject's left, up, out of the face), so a frontal face
is the identity. A Unity humanoid faces +z in a left-handed frame (x = its right, y up,
z = its forward). The avatar should make the subject's own motion in its own body frame
(turn your head to your left, it turns to its left), so the rotation is conjugated by the
reflection diag(-1, 1, 1) that maps (left, up, forward) to (right, up, forward):

    q_unity = (qx, -qy, -qz, qw)        position_unity = (-tx, ty, tz) / 100  (cm -> m)

The Head bone's position is its local position under the neck: VMC receivers that apply
bone positions would put the head where we say, so we send the rig's rest offset
(`head_position`, default 0) plus how far the head moved since the first frame sent, or
since `calibrate()` (converted as above; `head_translation=False` sends the rest offset).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pythonosc.osc_message_builder import OscMessageBuilder

from facetrack.adapters.udp import DEFAULT_HOST, DatagramSink
from facetrack.adapters.vrm_presets import VRM_PRESETS, vrm_presets
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceResult, FrameResult

DEFAULT_PORT = 39539
"""Where VMC marionettes (VSeeFace, EVMC4U, VMC4B...) listen by default."""
MAX_DATAGRAM = 1400
"""Bytes per bundle: a 1,500-byte MTU less IPv6 (40) and UDP (8) headers, with room to spare."""

_BUNDLE_HEAD = b"#bundle\0" + struct.pack(">Q", 1)  # OSC time tag 1 = "immediately"


class VmcConfig(BaseModel):
    """Where to send and what to send."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default=DEFAULT_HOST, description="Receiver address (loopback by default).")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Receiver UDP port.")
    track_id: int | None = Field(
        default=None, description="Send this track; None sends the first face of each frame."
    )
    name_map: dict[str, str] = Field(
        default_factory=dict,
        description="ARKit or VRM preset name -> name sent, for avatars whose clips are named otherwise "
                    "(VMC names are case-sensitive).",
    )
    preset: Literal["arkit", "vrm", "both"] = Field(
        default="arkit", description="Send the 52 ARKit weights, the 12 VRM 0.x presets mapped from them, or both."
    )
    head_position: tuple[float, float, float] = Field(
        default=(0.0, 0.0, 0.0), description="The Head bone's local rest position sent with its rotation (metres)."
    )
    head_translation: bool = Field(
        default=True, description="Add the head's movement since the first frame (or `calibrate()`) to the rest."
    )
    pace: bool = Field(default=True, description="Send a file's frames at its frame rate.")
    max_datagram: int = Field(
        default=MAX_DATAGRAM, ge=256, le=65507, description="Largest bundle in bytes; a frame takes several."
    )

    @field_validator("name_map")
    @classmethod
    def _known_names(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(ARKIT_BLENDSHAPES) - set(VRM_PRESETS))
        if unknown:
            raise ValueError(f"name map: {unknown} are neither ARKit blendshape nor VRM preset names")
        if any(not name for name in value.values()):
            raise ValueError("name map: a mapped-to name is empty")
        return value


def read_name_map(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`ARKIT=NAME` pairs and/or paths of JSON files holding such a mapping, merged in order."""
    mapping: dict[str, str] = {}
    for item in items:
        if "=" in item:
            source, _, target = item.partition("=")
            mapping[source.strip()] = target.strip()
            continue
        try:
            loaded = json.loads(Path(item).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"name map {item!r}: expected ARKIT=NAME or a JSON file ({exc})") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError(f"name map {item}: expected a JSON object of name -> name")
        mapping.update(loaded)
    return mapping


def unity_rotation(rotation: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Head rotation (x, y, z, w) in our frame -> a Unity humanoid's local rotation (module docstring)."""
    x, y, z, w = rotation
    return (float(x), -float(y), -float(z), float(w))


def unity_position(translation_cm: tuple[float, float, float]) -> tuple[float, float, float]:
    """A displacement in our camera frame (cm) -> the avatar's Unity frame (m)."""
    x, y, z = translation_cm
    return (-float(x) / 100.0, float(y) / 100.0, float(z) / 100.0)


class VmcSender(DatagramSink):
    """A `Sink` sending each frame to a marionette over UDP as VMC bundles under `max_datagram` bytes.

    UDP never blocks and needs no receiver: with nothing listening the bundles are
    simply lost, so starting the avatar app before or after tracking both work. Send
    errors (network down) are counted in `send_errors` and logged, never raised.

    >>> tracker.run("webcam:0", sinks=[VmcSender(VmcConfig(port=39539))])
    """

    stage = "vmc"
    what = "VMC"

    def __init__(self, config: VmcConfig | None = None) -> None:
        self.config = config or VmcConfig()
        super().__init__(self.config.host, self.config.port, self.config.track_id, pace=self.config.pace)
        rename = self.config.name_map
        arkit = self.config.preset in ("arkit", "both")
        vrm = self.config.preset in ("vrm", "both")
        names = [*(ARKIT_BLENDSHAPES if arkit else ()), *(VRM_PRESETS if vrm else ())]
        self._arkit, self._vrm = arkit, vrm
        # Messages are built once by python-osc with placeholder values; per frame only the
        # trailing float32 arguments change, which keeps a frame's bundles at tens of us.
        self._ok = _element(_message("/VMC/Ext/OK", 1))
        self._time = _prefix("/VMC/Ext/T", 0.0, floats=1)
        self._blend = [_prefix("/VMC/Ext/Blend/Val", rename.get(name, name), 0.0, floats=1) for name in names]
        self._apply = _element(_message("/VMC/Ext/Blend/Apply"))
        self._head = _prefix("/VMC/Ext/Bone/Pos", "Head", *([0.0] * 7), floats=7)
        room = self.config.max_datagram - len(_BUNDLE_HEAD)
        first = len(self._ok) + len(self._time[0]) + 4 + len(self._head[0]) + 28
        if max(first, *(len(p[0]) + 4 for p in self._blend)) > room:
            raise ValueError(f"max_datagram {self.config.max_datagram} is too small for the VMC messages")
        self._started_at = time.monotonic()
        self._origin: tuple[float, float, float] | None = None

    def calibrate(self) -> None:
        """Take the next frame's head position as the neutral that translation is measured from."""
        self._origin = None

    def build_datagrams(self, face: FaceResult, result: FrameResult) -> list[bytes]:
        """The OSC bundles for one face in one frame: OK, T and the head first, `Blend/Apply` last."""
        first = [self._ok, _with_floats(self._time, time.monotonic() - self._started_at),
                 _with_floats(self._head, *self._head_position(face), *unity_rotation(face.pose.rotation))]
        if face.blendshapes is None:
            return [_BUNDLE_HEAD + b"".join(first)]
        weights = np.asarray(face.blendshapes, np.float32)
        values = [*(weights.tolist() if self._arkit else ()), *(vrm_presets(weights).tolist() if self._vrm else ())]
        elements = first + [_with_floats(prefix, value) for prefix, value in zip(self._blend, values)]
        return _bundles(elements, self._apply, self.config.max_datagram)

    def _head_position(self, face: FaceResult) -> tuple[float, float, float]:
        rest = self.config.head_position
        if not self.config.head_translation:
            return rest
        if self._origin is None:
            self._origin = tuple(float(v) for v in face.pose.translation)  # type: ignore[assignment]
        delta = [float(v) - o for v, o in zip(face.pose.translation, self._origin)]
        moved = unity_position((delta[0], delta[1], delta[2]))
        return (rest[0] + moved[0], rest[1] + moved[1], rest[2] + moved[2])


def _bundles(elements: list[bytes], last: bytes, limit: int) -> list[bytes]:
    """Elements packed in order into complete bundles of at most `limit` bytes, `last` ending the last one."""
    bundles: list[bytes] = []
    current = [_BUNDLE_HEAD]
    size = len(_BUNDLE_HEAD)
    for element in [*elements, last]:
        if size + len(element) > limit:
            bundles.append(b"".join(current))
            current, size = [_BUNDLE_HEAD], len(_BUNDLE_HEAD)
        current.append(element)
        size += len(element)
    bundles.append(b"".join(current))
    return bundles


def _message(address: str, *args: str | float | int) -> bytes:
    """One OSC message's bytes; floats go as OSC float32 ('f'), as every VMC receiver expects."""
    builder = OscMessageBuilder(address)
    for arg in args:
        kind = "s" if isinstance(arg, str) else "i" if isinstance(arg, int) else "f"
        builder.add_arg(arg, kind)
    return builder.build().dgram


def _element(message: bytes) -> bytes:
    """A bundle element: int32 size, then the message."""
    return struct.pack(">i", len(message)) + message


def _prefix(address: str, *args: str | float, floats: int) -> tuple[bytes, struct.Struct]:
    """A bundle element without its last `floats` float32 arguments, and their packer."""
    return _element(_message(address, *args))[: -4 * floats], struct.Struct(f">{floats}f")


def _with_floats(prefix: tuple[bytes, struct.Struct], *values: float) -> bytes:
    return prefix[0] + prefix[1].pack(*values)
