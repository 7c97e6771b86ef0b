"""The result schema `facetrack.frame/1` and the stream metadata `facetrack.meta/1`.

These pydantic models are what the pipeline yields, what every sink writes and what
the ZeroMQ protocol carries (see docs/protocol.md). Arrays stay numpy arrays in
Python; the codecs in `facetrack.adapters.codec` turn them into bytes or lists.

Coordinate conventions (documented in docs/protocol.md):
- landmarks: x, y in pixels of the source frame (origin top-left, y down); z is the
  relative depth in the same pixel scale, smaller = closer to the camera.
- head pose: camera frame x right, y up, z toward the viewer (right-handed, as ARKit
  and OpenGL). The head frame is x = subject's left, y = up, z = out of the face, so a
  frontal face has the identity rotation. Euler angles are intrinsic Y-X-Z
  (R = Ry(yaw) Rx(pitch) Rz(roll)), right-handed. Translation is in centimetres.
- "Left" in eye and blendshape names is the subject's own left.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, PrivateAttr

FRAME_SCHEMA = "facetrack.frame/1"
META_SCHEMA = "facetrack.meta/1"
LANDMARK_COUNT = 478

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
)
"""Apple ARKit's 52 blendshape names, in the order Live Link Face and most rigs use."""


def _as_float32(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


Float32Array = Annotated[
    np.ndarray,
    BeforeValidator(_as_float32),
    PlainSerializer(lambda a: a.tolist(), when_used="json"),
]
"""A float32 numpy array; JSON serialisation turns it into nested lists."""


class _Model(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, frozen=False)


class HeadPose(_Model):
    """Rigid head pose in the camera frame (x right, y up, z toward the viewer)."""

    rotation: tuple[float, float, float, float] = Field(
        description="Unit quaternion (x, y, z, w) rotating head-frame vectors into the camera frame."
    )
    yaw: float = Field(
        description="Degrees about the camera's y axis; positive turns the face toward the subject's left."
    )
    pitch: float = Field(description="Degrees about x (after yaw); positive tilts the face down.")
    roll: float = Field(
        description="Degrees about z (last); positive tilts the head toward the subject's right shoulder."
    )
    translation: tuple[float, float, float] = Field(
        description="Head centre in centimetres in the camera frame (z is negative in front of the camera)."
    )


class EyeState(_Model):
    """One eye: filled by the eye-state engine (issue 4); None fields until then."""

    p_closed: float | None = Field(default=None, description="Probability the eye is closed, 0..1.")
    openness: float | None = Field(
        default=None, description="Lid opening relative to the track's calibrated open eye, 0 closed .. 1 open."
    )
    closed: bool | None = Field(
        default=None, description="The verdict: the eye is closed. eyeBlink, the lids, openness and the blink events "
                                  "agree with it (optional, added within /1).")
    visible: bool | None = Field(
        default=None, description="The eye is seen well enough for the eye-state engine; when false, p_closed is "
                                  "None and the verdict follows the other eye or the lids (optional).")
    quality: float | None = Field(
        default=None, description="How well the eye is seen, 0..1 (size in pixels, head turned away, inside the "
                                  "picture); below 1, p_closed is pulled toward 0.5 (optional).")


class Eyes(_Model):
    left: EyeState = Field(default_factory=EyeState, description="The subject's left eye.")
    right: EyeState = Field(default_factory=EyeState, description="The subject's right eye.")


class EyeEvent(_Model):
    """A blink or wink of one track that ended: reported on the frame after its last closed frame."""

    track_id: int
    kind: Literal["blink", "wink_left", "wink_right"] = Field(
        description="blink: both eyes closed together; wink_left / wink_right: only the subject's left / right eye.")
    start_frame: int = Field(description="First frame with the eye(s) closed.")
    end_frame: int = Field(description="Last frame with the eye(s) closed (inclusive).")


class FaceCoefficients(_Model):
    """The fitted morphable model's own coefficients (layout in the stream metadata)."""

    model_id: str
    identity: Float32Array
    expression: Float32Array
    calibration: str | None = Field(None, description="How this track's rest face was found (auto, on demand, "
                                                      "file); None while it is still being calibrated.")


class FaceResult(_Model):
    """Everything known about one face in one frame."""

    track_id: int = Field(description="Stable while the face stays in view; never reused within a stream.")
    bbox: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in pixels, from the landmarks.")
    score: float = Field(description="Score of the detection that started or last refreshed this track, 0..1.")
    landmarks: Float32Array = Field(description="(478, 3): x, y pixels and relative depth z (pixel scale).")
    pose: HeadPose
    blendshapes: Float32Array | None = Field(
        default=None, description="(52,) ARKit weights in 0..1, in the metadata's `blendshape_names` order."
    )
    coefficients: FaceCoefficients | None = None
    landmarks68: Float32Array | None = Field(
        default=None, description="(68, 2) iBUG points, pixels: projected from the fitted model, or (regress "
                                  "engine) the ones its crop was cut around, from the landmarks.",
    )
    eyes: Eyes | None = None
    mouth_openness: float | None = Field(
        default=None, description="Inner-lip opening relative to mouth width, 0 closed."
    )

    _mesh: tuple[np.ndarray, np.ndarray] | None = PrivateAttr(default=None)

    @property
    def mesh(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The fitted model's dense mesh when tracking with `mesh=True`: vertices (V, 3) in cm in
        the camera frame, and triangles (T, 3). In-process only: never serialised or published."""
        return self._mesh

    def blendshape_dict(self) -> dict[str, float]:
        """Blendshapes by ARKit name ({} when not fitted)."""
        if self.blendshapes is None:
            return {}
        return dict(zip(ARKIT_BLENDSHAPES, self.blendshapes.tolist()))


class FrameResult(_Model):
    """One source frame's results: exactly one per decoded frame of a file."""

    schema_id: Literal["facetrack.frame/1"] = Field(default=FRAME_SCHEMA, alias="schema")
    stream_id: str
    frame_index: int = Field(description="0-based index of the decoded frame in its source.")
    pts: float | None = Field(description="Presentation timestamp in seconds (None when the source has none).")
    capture_time: float = Field(description="Unix time in seconds when the frame left the decoder.")
    publish_time: float | None = Field(default=None, description="Unix time in seconds when it was published.")
    width: int
    height: int
    dropped_frames: int = Field(default=0, description="Frames a live source dropped so far (cumulative).")
    faces: list[FaceResult] = Field(default_factory=list)
    eye_events: list[EyeEvent] | None = Field(
        default=None, description="Blinks and winks that ended with this frame (optional; None when none).")
    source: str | None = Field(
        default=None, description="What the frame came from: an image's path relative to the input (a folder, a "
                                  "glob's fixed part), or the video file, camera or stream (optional).")


class SourceInfo(_Model):
    """What a source is, as far as the container tells before decoding."""

    uri: str
    live: bool
    width: int
    height: int
    fps: float | None = None
    codec: str | None = None
    container: str | None = None
    duration: float | None = Field(default=None, description="Seconds, as declared by the container.")
    frames: int | None = Field(default=None, description="Frame count as declared (may be wrong or absent).")
    rotation: int = Field(default=0, description="Clockwise degrees the coded pictures are turned by for display "
                                                 "(the file's display matrix, or --rotate); width and height are "
                                                 "the display size, results are in display orientation.")
    coded_width: int | None = Field(default=None, description="Width of the pictures as coded, before rotation.")
    coded_height: int | None = Field(default=None, description="Height of the pictures as coded, before rotation.")


class StreamMetadata(_Model):
    """Layout of a stream, published at start, on change and periodically."""

    schema_id: Literal["facetrack.meta/1"] = Field(default=META_SCHEMA, alias="schema")
    stream_id: str
    frame_schema: str = FRAME_SCHEMA
    source: SourceInfo
    landmark_count: int = LANDMARK_COUNT
    blendshape_names: list[str] = Field(default_factory=lambda: list(ARKIT_BLENDSHAPES))
    model_id: str | None = None
    identity_size: int = 0
    expression_size: int = 0
    expression_names: list[str] = Field(default_factory=list)
    calibration: dict[str, Any] | None = Field(None, description="How rest faces are calibrated (mode, window "
                                                                "frames, neutral file).")
    started_at: float = Field(description="Unix time the stream started.")
    frames_published: int = 0
    dropped_frames: int = 0
