"""`LiveLinkSender`: stream to Unreal Engine as if from Epic's Live Link Face iPhone app.

Unreal's Live Link (with the Apple ARKit Face Support plugin) listens on UDP 11111 for
the app's packets. The layout, from the engine's receiver
(`AppleARKitLiveLinkSource.cpp`: `FNboSerializeFromBuffer`, network byte order) and two
independent public implementations (PyLiveLinkFace, LLV), is:

    uint8    packet version (6)
    int32    device id length N, then N bytes UTF-8 (no terminator)
    int32    subject name length M, then M bytes UTF-8
    int32    frame number         \
    float32  sub-frame (0..1)      | FQualifiedFrameTime
    int32    frame-rate numerator  |
    int32    frame-rate denominator/
    uint8    curve count (61)
    61 x float32: the 52 ARKit blendshapes in ARKit's order, then HeadYaw, HeadPitch,
             HeadRoll, LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch,
             RightEyeRoll

All multi-byte fields are big-endian; with a 36-character device id and the subject
"facetrack" a packet is 315 bytes (1 + 4 + 36 + 4 + 9 + 16 + 1 + 244).

Head angles are sent in radians with facetrack's signs (yaw + toward the subject's left,
pitch + down, roll + toward the right shoulder). Eye yaw and pitch come from the gaze,
which facetrack carries as the eyeLook* weights (from the irises): yaw = (toward the
subject's left - toward the right) x 30 degrees, pitch = (down - up) x 20 degrees, per
eye, so a full eyeLookOut weight is 30 degrees (the range `tracker/eyes.py:iris_gaze`
scales to 1); roll is 0. These conventions are not verified against a running Unreal
Engine: the rig's Live Link pose asset decides what they do. A frame without blendshapes
(before the face-model fit) sends the head angles with the other curves at 0.

The device id names the source in Unreal's Live Link window; by default it is derived
from the host name and the stream id, so a restarted tracker is the same source.
"""

from __future__ import annotations

import math
import socket
import struct
import uuid
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

from facetrack.adapters.udp import DatagramSink
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceResult, FrameResult, StreamMetadata

DEFAULT_PORT = 11111
PACKET_VERSION = 6
HEAD_AND_EYE_CURVES = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
CURVE_COUNT = len(ARKIT_BLENDSHAPES) + len(HEAD_AND_EYE_CURVES)
"""61: Unreal's EARFaceBlendShape::MAX, which the receiver requires exactly."""

_TAIL = struct.Struct(f">ifiiB{CURVE_COUNT}f")
_MAX_NAME_BYTES = 255
EYE_YAW_RANGE_DEG = 30.0
"""Eye yaw at a full eyeLookIn/Out weight."""
EYE_PITCH_RANGE_DEG = 20.0
"""Eye pitch at a full eyeLookUp/Down weight."""
_LOOK = {name: i for i, name in enumerate(ARKIT_BLENDSHAPES) if name.startswith("eyeLook")}


class LiveLinkConfig(BaseModel):
    """Where to send, and how the subject appears in Unreal's Live Link window."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="The Unreal Editor's address (loopback by default).")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Live Link Face's UDP port in Unreal.")
    subject: str = Field(default="facetrack", min_length=1, description="Live Link subject name.")
    device_id: str | None = Field(
        default=None, description="Identifies this sender among devices; None: derived from the host and stream id."
    )
    track_id: int | None = Field(default=None, description="Send this track; None sends the first face.")
    fps: float | None = Field(
        default=None, gt=0, le=1000,
        description="Frame rate of the frame time; None: a file's own, else 60. 29.97 is sent as 30000/1001.",
    )
    pace: bool = Field(default=True, description="Send a file's frames at its frame rate.")


def stable_device_id(stream_id: str, host: str | None = None) -> str:
    """A UUID from this machine's name and the stream id: the same source in Unreal across runs."""
    name = f"facetrack:{host or socket.gethostname()}:{stream_id}"
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name)).upper()


def frame_rate(fps: float) -> tuple[int, int]:
    """fps as Live Link's numerator/denominator (29.97 -> 30000/1001, the NTSC rates)."""
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.005:
            return base * 1000, 1001
    rate = Fraction(fps).limit_denominator(1001)
    return rate.numerator, rate.denominator


def encode_packet(
    device_id: str,
    subject: str,
    frame_number: int,
    sub_frame: float,
    fps: int,
    curves: list[float],
    fps_denominator: int = 1,
) -> bytes:
    """One Live Link Face packet (layout in the module docstring)."""
    if len(curves) != CURVE_COUNT:
        raise ValueError(f"Live Link Face carries exactly {CURVE_COUNT} curves, got {len(curves)}")
    device, name = device_id.encode(), subject.encode()
    if len(device) > _MAX_NAME_BYTES or len(name) > _MAX_NAME_BYTES:
        raise ValueError(f"device id and subject must be at most {_MAX_NAME_BYTES} UTF-8 bytes")
    return b"".join((
        struct.pack(">Bi", PACKET_VERSION, len(device)), device,
        struct.pack(">i", len(name)), name,
        _TAIL.pack(frame_number, sub_frame, fps, fps_denominator, CURVE_COUNT, *curves),
    ))  # fmt: skip


def frame_time(result: FrameResult, fps: float) -> tuple[int, float]:
    """(frame number, sub-frame) at `fps`: from the pts for files, the UTC time of day for live sources."""
    seconds = float(result.pts) if result.pts is not None else float(result.capture_time) % 86400.0
    frames = seconds * fps
    whole = math.floor(frames)
    return int(whole), float(frames - whole)


def eye_angles(weights: list[float]) -> list[float]:
    """LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEye... in radians from the eyeLook* weights."""
    def look(name: str) -> float:
        return weights[_LOOK[name]]

    yaw_left = look("eyeLookOutLeft") - look("eyeLookInLeft")  # the left eye turns out toward the subject's left
    yaw_right = look("eyeLookInRight") - look("eyeLookOutRight")
    pitch = [look(f"eyeLookDown{side}") - look(f"eyeLookUp{side}") for side in ("Left", "Right")]
    yaw_scale, pitch_scale = math.radians(EYE_YAW_RANGE_DEG), math.radians(EYE_PITCH_RANGE_DEG)
    return [yaw_left * yaw_scale, pitch[0] * pitch_scale, 0.0, yaw_right * yaw_scale, pitch[1] * pitch_scale, 0.0]


def curves_for(face: FaceResult) -> list[float]:
    """The 61 curve values for one face."""
    pose = face.pose
    head = [math.radians(float(pose.yaw)), math.radians(float(pose.pitch)), math.radians(float(pose.roll))]
    if face.blendshapes is None:
        return [0.0] * len(ARKIT_BLENDSHAPES) + head + [0.0] * 6
    shapes = face.blendshapes.tolist()
    return [*shapes, *head, *eye_angles(shapes)]


class LiveLinkSender(DatagramSink):
    """A `Sink` sending one Live Link Face packet per frame over UDP (never blocks, never raises on send)."""

    stage = "livelink"
    what = "Live Link"

    def __init__(self, config: LiveLinkConfig | None = None) -> None:
        self.config = config or LiveLinkConfig()
        self.fps = self.config.fps or 60.0
        self._device_ids: dict[str, str] = {}
        encode_packet(self.config.device_id or "x", self.config.subject, 0, 0.0, 60, [0.0] * CURVE_COUNT)
        super().__init__(self.config.host, self.config.port, self.config.track_id, pace=self.config.pace)

    def start(self, metadata: StreamMetadata) -> None:
        """Take a file's frame rate for the frame time when none is configured."""
        super().start(metadata)
        if self.config.fps is None and metadata.source.fps and not metadata.source.live:
            self.fps = float(metadata.source.fps)

    def device_id(self, stream_id: str) -> str:
        """The configured device id, or the one derived from this host and the stream."""
        if self.config.device_id is not None:
            return self.config.device_id
        if stream_id not in self._device_ids:
            self._device_ids[stream_id] = stable_device_id(stream_id)
        return self._device_ids[stream_id]

    def build_datagram(self, face: FaceResult, result: FrameResult) -> bytes:
        """The packet for one face in one frame."""
        number, sub = frame_time(result, self.fps)
        numerator, denominator = frame_rate(self.fps)
        return encode_packet(self.device_id(result.stream_id), self.config.subject, number, sub, numerator,
                             curves_for(face), denominator)

    def build_datagrams(self, face: FaceResult, result: FrameResult) -> list[bytes]:
        return [self.build_datagram(face, result)]
