"""`VmcSender`: stream results to VTuber apps over the VMC protocol (OSC over UDP).

VSeeFace, Warudo, VNyan, EVMC4U (Unity) and VMC4B (Blender) receive the VMC protocol
(https://protocol.vmc.info). Per frame, for one face, we send ONE OSC bundle holding:

- `/VMC/Ext/OK 1` and `/VMC/Ext/T <seconds since start>` (receivers use them to show
  that a performer is connected);
- `/VMC/Ext/Blend/Val <name> <weight>` for each of the 52 ARKit blendshapes ("Perfect
  Sync" names, weights 0..1), then `/VMC/Ext/Blend/Apply` — only when the face has
  blendshapes (before the face-model fit they are None and nothing is sent for them);
- `/VMC/Ext/Bone/Pos "Head" px py pz qx qy qz qw`: the head's local pose.

Coordinates. Our head pose is right-handed, in the camera frame (x right, y up, z toward
the viewer); the head frame is (subject's left, up, out of the face), so a frontal face
is the identity. A Unity humanoid faces +z in a left-handed frame (x = its right, y up,
z = its forward). The avatar should make the subject's own motion in its own body frame
(turn your head to your left, it turns to its left), so the rotation is conjugated by the
reflection diag(-1, 1, 1) that maps (left, up, forward) to (right, up, forward):

    q_unity = (qx, -qy, -qz, qw)        position_unity = (-tx, ty, tz) / 100  (cm -> m)

The Head bone's position is its local position under the neck: VMC receivers that apply
bone positions would put the head where we say, so we send the rig's rest offset
(`head_position`, default 0) and, only with `head_translation=True`, add how far the head
moved since the first frame sent (converted as above).
"""

from __future__ import annotations

import struct
import time

from pydantic import BaseModel, ConfigDict, Field
from pythonosc.osc_message_builder import OscMessageBuilder

from facetrack.adapters.udp import DEFAULT_HOST, DatagramSink
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceResult, FrameResult

DEFAULT_PORT = 39539
"""Where VMC marionettes (VSeeFace, EVMC4U, VMC4B...) listen by default."""

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
        description="ARKit name -> name sent, for avatars whose clips are named otherwise (VMC names are case-sensitive).",
    )
    head_position: tuple[float, float, float] = Field(
        default=(0.0, 0.0, 0.0), description="The Head bone's local rest position sent with its rotation (metres, Unity)."
    )
    head_translation: bool = Field(
        default=False, description="Add the head's movement since the first frame sent to `head_position`."
    )


def unity_rotation(rotation: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Head rotation (x, y, z, w) in our frame -> a Unity humanoid's local rotation (module docstring)."""
    x, y, z, w = rotation
    return (float(x), -float(y), -float(z), float(w))


def unity_position(translation_cm: tuple[float, float, float]) -> tuple[float, float, float]:
    """A displacement in our camera frame (cm) -> the avatar's Unity frame (m)."""
    x, y, z = translation_cm
    return (-float(x) / 100.0, float(y) / 100.0, float(z) / 100.0)


class VmcSender(DatagramSink):
    """A `Sink` sending one VMC bundle per frame to a marionette over UDP.

    UDP never blocks and needs no receiver: with nothing listening the bundles are
    simply lost, so starting the avatar app before or after tracking both work. Send
    errors (network down) are counted in `send_errors` and logged, never raised.

    >>> tracker.run("webcam:0", sinks=[VmcSender(VmcConfig(port=39539))])
    """

    stage = "vmc"
    what = "VMC"

    def __init__(self, config: VmcConfig | None = None) -> None:
        self.config = config or VmcConfig()
        super().__init__(self.config.host, self.config.port, self.config.track_id)
        names = [self.config.name_map.get(name, name) for name in ARKIT_BLENDSHAPES]
        # Messages are built once by python-osc with placeholder values; per frame only the
        # trailing float32 arguments change, which keeps a 56-message bundle at tens of us.
        self._ok = _element(_message("/VMC/Ext/OK", 1))
        self._time = _prefix("/VMC/Ext/T", 0.0, floats=1)
        self._blend = [_prefix("/VMC/Ext/Blend/Val", name, 0.0, floats=1) for name in names]
        self._apply = _element(_message("/VMC/Ext/Blend/Apply"))
        self._head = _prefix("/VMC/Ext/Bone/Pos", "Head", *([0.0] * 7), floats=7)
        self._started_at = time.monotonic()
        self._origin: tuple[float, float, float] | None = None

    def build_datagram(self, face: FaceResult, result: FrameResult) -> bytes:
        """The OSC bundle for one face in one frame."""
        parts = [_BUNDLE_HEAD, self._ok, _with_floats(self._time, time.monotonic() - self._started_at)]
        if face.blendshapes is not None:
            parts += [_with_floats(prefix, value) for prefix, value in zip(self._blend, face.blendshapes.tolist())]
            parts.append(self._apply)
        parts.append(_with_floats(self._head, *self._head_position(face), *unity_rotation(face.pose.rotation)))
        return b"".join(parts)

    def _head_position(self, face: FaceResult) -> tuple[float, float, float]:
        rest = self.config.head_position
        if not self.config.head_translation:
            return rest
        if self._origin is None:
            self._origin = tuple(float(v) for v in face.pose.translation)  # type: ignore[assignment]
        delta = [float(v) - o for v, o in zip(face.pose.translation, self._origin)]
        moved = unity_position((delta[0], delta[1], delta[2]))
        return (rest[0] + moved[0], rest[1] + moved[1], rest[2] + moved[2])


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
