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

All multi-byte fields are big-endian. Head angles are sent in radians with facetrack's
signs (yaw + toward the subject's left, pitch + down, roll + toward the right shoulder);
the eye angles are 0 (facetrack has no gaze angles yet). These angle conventions are
not verified against a running Unreal Engine: the rig's Live Link pose asset decides
what they do. A frame without blendshapes (before the face-model fit) still sends the
head angles with the 52 curves at 0.
"""

from __future__ import annotations

import math
import struct
import uuid

from pydantic import BaseModel, ConfigDict, Field

from facetrack.adapters.udp import DatagramSink
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceResult, FrameResult

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


class LiveLinkConfig(BaseModel):
    """Where to send, and how the subject appears in Unreal's Live Link window."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="The Unreal Editor's address (loopback by default).")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Live Link Face's UDP port in Unreal.")
    subject: str = Field(default="facetrack", min_length=1, description="Live Link subject name.")
    device_id: str = Field(
        default_factory=lambda: str(uuid.uuid4()).upper(), description="Identifies this sender among devices."
    )
    track_id: int | None = Field(default=None, description="Send this track; None sends the first face.")
    fps: int = Field(default=60, ge=1, le=1000, description="Frame rate of the timecode in the frame time.")


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


def frame_time(result: FrameResult, fps: int) -> tuple[int, float]:
    """(frame number, sub-frame) at `fps`: from the pts for files, the UTC time of day for live sources."""
    seconds = float(result.pts) if result.pts is not None else float(result.capture_time) % 86400.0
    frames = seconds * fps
    whole = math.floor(frames)
    return int(whole), float(frames - whole)


def curves_for(face: FaceResult) -> list[float]:
    """The 61 curve values for one face."""
    shapes = [0.0] * len(ARKIT_BLENDSHAPES) if face.blendshapes is None else face.blendshapes.tolist()
    pose = face.pose
    head = [math.radians(float(pose.yaw)), math.radians(float(pose.pitch)), math.radians(float(pose.roll))]
    return [*shapes, *head, *([0.0] * 6)]


class LiveLinkSender(DatagramSink):
    """A `Sink` sending one Live Link Face packet per frame over UDP (never blocks, never raises on send)."""

    stage = "livelink"
    what = "Live Link"

    def __init__(self, config: LiveLinkConfig | None = None) -> None:
        self.config = config or LiveLinkConfig()
        encode_packet(self.config.device_id, self.config.subject, 0, 0.0, self.config.fps, [0.0] * CURVE_COUNT)
        super().__init__(self.config.host, self.config.port, self.config.track_id)

    def build_datagram(self, face: FaceResult, result: FrameResult) -> bytes:
        """The packet for one face in one frame."""
        number, sub = frame_time(result, self.config.fps)
        return encode_packet(self.config.device_id, self.config.subject, number, sub, self.config.fps, curves_for(face))
