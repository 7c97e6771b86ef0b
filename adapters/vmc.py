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

import logging
import math
import socket
import struct
import time

from pydantic import BaseModel, ConfigDict, Field
from pythonosc.osc_message_builder import OscMessageBuilder

from facetrack.tracker.errors import SinkError
from facetrack.tracker.schema import ARKIT_BLENDSHAPES, FaceResult, FrameResult, StreamMetadata

log = logging.getLogger("facetrack.vmc")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 39539
"""Where VMC marionettes (VSeeFace, EVMC4U, VMC4B...) listen by default."""

_WARN_EVERY_S = 5.0
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


def parse_host_port(text: str | None, default_port: int, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """`"HOST:PORT"`, `"HOST"`, `":PORT"`, `"PORT"` or None -> (host, port); `[::1]:9000` for IPv6."""
    if not text:
        return default_host, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif text.isdigit():
        host, port = "", text
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a host name, or a bare IPv6 address
        host, port = text, ""
    host = host or default_host
    if not port:
        return host, default_port
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port!r} in {text!r}: expected HOST:PORT with a port in 1..65535")
    return host, int(port)


def unity_rotation(rotation: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Head rotation (x, y, z, w) in our frame -> a Unity humanoid's local rotation (module docstring)."""
    x, y, z, w = rotation
    return (float(x), -float(y), -float(z), float(w))


def unity_position(translation_cm: tuple[float, float, float]) -> tuple[float, float, float]:
    """A displacement in our camera frame (cm) -> the avatar's Unity frame (m)."""
    x, y, z = translation_cm
    return (-float(x) / 100.0, float(y) / 100.0, float(z) / 100.0)


def select_face(result: FrameResult, track_id: int | None) -> FaceResult | None:
    """The face to send: the given track, or the first face (None if absent)."""
    if track_id is None:
        return result.faces[0] if result.faces else None
    return next((face for face in result.faces if face.track_id == track_id), None)


class UdpSender:
    """A non-blocking UDP socket for sinks: send errors are counted and logged, never raised.

    Tracking must not stop because an avatar app is closed or the network is down.
    """

    def __init__(self, host: str, port: int, what: str) -> None:
        self.target = f"{host}:{port}"
        self.what = what
        try:
            family, kind, proto, _, self._address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self._socket = socket.socket(family, kind, proto)
        except OSError as exc:
            raise SinkError(f"cannot send {what} to {self.target}: {exc}") from None
        self._socket.setblocking(False)
        self._warned_at = -math.inf
        self.sent = 0
        self.errors = 0

    @property
    def closed(self) -> bool:
        return self._socket.fileno() < 0

    def send(self, datagram: bytes) -> None:
        if self.closed:
            raise SinkError(f"{self.what} sender to {self.target} is closed")
        try:
            self._socket.sendto(datagram, self._address)
        except OSError as exc:
            self.errors += 1
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                log.warning("%s send to %s failed (%d so far): %s", self.what, self.target, self.errors, exc)
                self._warned_at = now
            return
        self.sent += 1

    def close(self) -> None:
        self._socket.close()


class VmcSender:
    """A `Sink` sending one VMC bundle per frame to a marionette over UDP.

    UDP never blocks and needs no receiver: with nothing listening the bundles are
    simply lost, so starting the avatar app before or after tracking both work. Send
    errors (network down) are counted in `send_errors` and logged, never raised.

    >>> tracker.run("webcam:0", sinks=[VmcSender(VmcConfig(port=39539))])
    """

    stage = "vmc"

    def __init__(self, config: VmcConfig | None = None) -> None:
        self.config = config or VmcConfig()
        self._udp = UdpSender(self.config.host, self.config.port, "VMC")
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

    def start(self, metadata: StreamMetadata) -> None:
        """Check the stream's blendshape layout is the ARKit one we send by name."""
        if list(metadata.blendshape_names) != list(ARKIT_BLENDSHAPES):
            raise SinkError(
                f"stream {metadata.stream_id!r} has blendshapes {metadata.blendshape_names[:3]}...; "
                "the VMC sender needs the 52 ARKit ones in facetrack's order"
            )

    def build_bundle(self, result: FrameResult) -> bytes | None:
        """The OSC bundle for one frame (None when the chosen face is not in it)."""
        face = select_face(result, self.config.track_id)
        if face is None:
            return None
        parts = [_BUNDLE_HEAD, self._ok, _with_floats(self._time, time.monotonic() - self._started_at)]
        if face.blendshapes is not None:
            parts += [_with_floats(prefix, value) for prefix, value in zip(self._blend, face.blendshapes.tolist())]
            parts.append(self._apply)
        parts.append(_with_floats(self._head, *self._head_position(face), *unity_rotation(face.pose.rotation)))
        return b"".join(parts)

    @property
    def bundles_sent(self) -> int:
        return self._udp.sent

    @property
    def send_errors(self) -> int:
        return self._udp.errors

    def write(self, result: FrameResult) -> None:
        """Send this frame's bundle; nothing is sent for a frame without the chosen face."""
        if self._udp.closed:
            raise SinkError(f"VmcSender to {self._udp.target} is closed")
        dgram = self.build_bundle(result)
        if dgram is not None:
            self._udp.send(dgram)

    def close(self) -> None:
        """Release the socket; idempotent."""
        self._udp.close()

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
