"""Plausible random results and metadata: for the tests and scripts/fuzz.py, without a camera or a model."""

from __future__ import annotations

import math
import time

import numpy as np

from facetrack.tracker.core.schema import (
    LANDMARK_COUNT,
    Eyes,
    EyeState,
    FaceCoefficients,
    FaceResult,
    FrameResult,
    HeadPose,
    SourceInfo,
    StreamMetadata,
)


def _quaternion(yaw: float, pitch: float, roll: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of R = Ry(yaw) Rx(pitch) Rz(roll), angles in degrees."""
    hy, hp, hr = (math.radians(a) / 2 for a in (yaw, pitch, roll))
    qy = np.array([0.0, math.sin(hy), 0.0, math.cos(hy)])
    qx = np.array([math.sin(hp), 0.0, 0.0, math.cos(hp)])
    qz = np.array([0.0, 0.0, math.sin(hr), math.cos(hr)])

    def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        (ax, ay, az, aw), (bx, by, bz, bw) = a, b
        return np.array([
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ])  # fmt: skip

    x, y, z, w = mul(mul(qy, qx), qz)
    return float(x), float(y), float(z), float(w)


def synthetic_face(
    rng: np.random.Generator,
    track_id: int,
    width: int = 1280,
    height: int = 720,
    full: bool = True,
) -> FaceResult:
    """A face somewhere in the frame: 478 points inside its box, a plausible pose.

    `full=False` leaves the optional fields a tabular file cannot hold (eyes,
    coefficients, landmarks68, mouth_openness) empty, and blendshapes unfitted at random.
    """
    size = rng.uniform(0.15, 0.4) * min(width, height)
    cx, cy = rng.uniform(size, width - size), rng.uniform(size, height - size)
    angle = rng.uniform(0, 2 * np.pi, LANDMARK_COUNT)
    radius = np.sqrt(rng.uniform(0, 1, LANDMARK_COUNT)) * size / 2
    landmarks = np.stack(
        [cx + radius * np.cos(angle) * 0.8, cy + radius * np.sin(angle), rng.normal(0, size * 0.05, LANDMARK_COUNT)],
        axis=1,
    ).astype(np.float32)
    x0, y0 = landmarks[:, :2].min(axis=0).tolist()
    x1, y1 = landmarks[:, :2].max(axis=0).tolist()
    yaw, pitch, roll = rng.uniform(-40, 40), rng.uniform(-25, 25), rng.uniform(-20, 20)
    pose = HeadPose(
        rotation=_quaternion(yaw, pitch, roll),
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        translation=(rng.uniform(-20, 20), rng.uniform(-10, 10), rng.uniform(-120, -40)),
    )
    fitted = full or rng.random() < 0.5
    face = FaceResult(
        track_id=track_id,
        bbox=(x0, y0, x1, y1),
        score=rng.uniform(0.5, 1.0),
        landmarks=landmarks,
        pose=pose,
        blendshapes=rng.uniform(0, 1, 52).astype(np.float32) if fitted else None,
    )
    if full:
        face.coefficients = FaceCoefficients(
            model_id="builtin-478", identity=rng.normal(size=40), expression=rng.uniform(0, 1, 52)
        )
        face.landmarks68 = landmarks[:68, :2].copy()
        face.eyes = Eyes(
            left=EyeState(p_closed=rng.uniform(0, 1), openness=rng.uniform(0, 1)),
            right=EyeState(p_closed=rng.uniform(0, 1), openness=None),
        )
        face.mouth_openness = rng.uniform(0, 0.6)
    return face


def synthetic_result(
    rng: np.random.Generator,
    frame_index: int,
    faces: int = 1,
    stream_id: str = "cam0",
    fps: float = 30.0,
    full: bool = True,
) -> FrameResult:
    """One 720p frame with `faces` faces (track ids 1..faces) at `frame_index / fps` seconds."""
    return FrameResult(
        stream_id=stream_id,
        frame_index=frame_index,
        pts=frame_index / fps,
        capture_time=time.time(),
        width=1280,
        height=720,
        faces=[synthetic_face(rng, track_id, full=full) for track_id in range(1, faces + 1)],
    )


def synthetic_metadata(stream_id: str = "cam0") -> StreamMetadata:
    """Metadata of a 720p, 30 fps live stream with the built-in model's layout."""
    return StreamMetadata(
        stream_id=stream_id,
        source=SourceInfo(uri="synthetic://", live=True, width=1280, height=720, fps=30.0),
        model_id="builtin-478",
        identity_size=40,
        expression_size=52,
        started_at=time.time(),
    )
