"""What happens to a take before it is keyed, without bpy: resampling to the scene's frame
rate, neutral calibration, the name map, and the jaw and eye rotations for bones.

Blender ships numpy; everything here is vectorised over frames and the 52 channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .core import ARKIT_BLENDSHAPES, FaceSample, TakeError

EYE_YAW_RANGE_DEG = 30.0
"""Eye yaw at a full eyeLookIn/Out weight (as the Live Link sender)."""
EYE_PITCH_RANGE_DEG = 20.0
"""Eye pitch at a full eyeLookUp/Down weight."""
_I = {name: i for i, name in enumerate(ARKIT_BLENDSHAPES)}


@dataclass
class Track:
    """A take on the scene's frames: one row per scene frame from the first to the last sample."""

    frames: np.ndarray
    """(n,) scene frame numbers, consecutive."""
    weights: np.ndarray | None
    """(n, 52) ARKit weights, None when no sample has blendshapes."""
    rotations: np.ndarray
    """(n, 4) head rotations (x, y, z, w) in facetrack's camera frame."""


@dataclass
class Neutral:
    """The actor's rest face: what calibration subtracts."""

    weights: np.ndarray
    """(52,) ARKit weights at rest."""
    rotation: np.ndarray
    """(4,) head rotation (x, y, z, w) at rest."""


def parse_name_map(text: str) -> dict[str, str]:
    """`"jawOpen=MouthOpen, eyeBlinkLeft=Blink_L"` -> {ARKit name: shape-key name}; TakeError on bad entries."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        arkit, sep, key = (s.strip() for s in item.partition("="))
        if not sep or not key:
            raise TakeError(f"name map entry {item!r}: write ARKIT=KEY, e.g. jawOpen=MouthOpen")
        if arkit not in _I:
            raise TakeError(f"name map entry {item!r}: {arkit!r} is not an ARKit blendshape name")
        mapping[arkit] = key
    return mapping


def _aligned(quats: np.ndarray) -> np.ndarray:
    """Quaternions with signs flipped so that neighbours are in the same hemisphere (q and -q are one rotation)."""
    q = np.array(quats, np.float64)
    signs = np.ones(len(q))
    if len(q) > 1:
        flips = np.einsum("ij,ij->i", q[1:], q[:-1]) < 0
        signs[1:] = np.where(np.cumsum(flips) % 2 == 1, -1.0, 1.0)
    return q * signs[:, None]


def _lerp(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Rows of `values` (sampled at increasing `times`) linearly interpolated at `at` (held at the ends)."""
    if len(times) == 1:
        return np.repeat(values[:1], len(at), axis=0)
    idx = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 2)
    span = times[idx + 1] - times[idx]
    alpha = np.clip((at - times[idx]) / np.where(span > 0, span, 1.0), 0.0, 1.0)[:, None]
    return values[idx] * (1.0 - alpha) + values[idx + 1] * alpha


def resample(samples: Sequence[FaceSample], fps: float, start_frame: int) -> Track:
    """The take at every scene frame: linear interpolation of the weights, normalised lerp of the rotations.

    A 30 fps take in a 25 fps scene keeps its motion (each scene frame mixes the two
    samples around it) instead of keeping one sample per frame and dropping the rest;
    a slower take gets in-between frames.
    """
    if not samples:
        raise TakeError("the take has no frame with the chosen face")
    if fps <= 0:
        raise ValueError(f"scene fps must be positive, got {fps}")
    times = np.array([s.time for s in samples], np.float64) - samples[0].time
    if np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        samples = [samples[i] for i in order]
        times = times[order]
    count = int(math.floor(times[-1] * fps + 1e-6)) + 1
    at = np.arange(count) / fps
    rotations = _lerp(times, _aligned(np.array([s.rotation for s in samples])), at)
    rotations /= np.linalg.norm(rotations, axis=1, keepdims=True)
    fitted = [i for i, s in enumerate(samples) if s.blendshapes is not None]
    weights = None
    if fitted:
        weights = _lerp(times[fitted], np.array([samples[i].blendshapes for i in fitted], np.float64), at)
    return Track(frames=start_frame + np.arange(count), weights=weights, rotations=rotations)


def neutral_of(samples: Sequence[FaceSample], first: int, last: int) -> Neutral:
    """The mean face over the samples whose source frame index is in [first, last] (the actor at rest)."""
    chosen = [s for s in samples if first <= s.frame_index <= last]
    fitted = [s.blendshapes for s in chosen if s.blendshapes is not None]
    if not fitted:
        raise TakeError(f"no frame {first}-{last} of the take has blendshapes to calibrate the neutral from")
    q = _aligned(np.array([s.rotation for s in chosen]))
    rotation = q.mean(axis=0)
    return Neutral(weights=np.mean(fitted, axis=0), rotation=rotation / np.linalg.norm(rotation))


def calibrate(track: Track, neutral: Neutral) -> Track:
    """The take relative to the rest face: w' = (w - rest) / (1 - rest) clipped to 0..1, so a shape
    the actor holds at rest reads 0 and its full extent still reaches 1; the head rotation
    is expressed relative to the rest pose (q' = q * conj(rest))."""
    weights = None
    if track.weights is not None:
        rest = np.clip(neutral.weights, 0.0, 1.0)
        room = np.where(rest < 0.999, 1.0 - rest, np.inf)
        weights = np.clip((track.weights - rest) / room, 0.0, 1.0)
    rest_inverse = neutral.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
    return Track(track.frames, weights, quat_multiply(track.rotations, rest_inverse[None, :]))


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamilton products of (n, 4) quaternions (x, y, z, w)."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def _axis_angle(axis: int, radians: np.ndarray) -> np.ndarray:
    q = np.zeros((len(radians), 4))
    q[:, axis] = np.sin(radians / 2)
    q[:, 3] = np.cos(radians / 2)
    return q


def jaw_rotations(weights: np.ndarray, open_deg: float, side_deg: float) -> np.ndarray:
    """(n, 4) jaw rotations in the head frame (x = subject's left, y up, z out of the face).

    jawOpen turns the chin down (about +x, `open_deg` at full weight), jawLeft/jawRight
    swing it to the subject's left/right (about y, `side_deg`).
    """
    w = np.atleast_2d(weights)
    opening = _axis_angle(0, np.radians(open_deg) * w[:, _I["jawOpen"]])
    side = _axis_angle(1, np.radians(side_deg) * (w[:, _I["jawLeft"]] - w[:, _I["jawRight"]]))
    return quat_multiply(side, opening)


def eye_rotations(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) (n, 4) eye rotations in the head frame from the eyeLook* weights: yaw toward the
    subject's left about +y (30 degrees at full weight), pitch down about +x (20 degrees)."""
    w = np.atleast_2d(weights)
    out = []
    for side, toward_left, toward_right in (("Left", "eyeLookOutLeft", "eyeLookInLeft"),
                                            ("Right", "eyeLookInRight", "eyeLookOutRight")):
        yaw = np.radians(EYE_YAW_RANGE_DEG) * (w[:, _I[toward_left]] - w[:, _I[toward_right]])
        pitch = np.radians(EYE_PITCH_RANGE_DEG) * (w[:, _I[f"eyeLookDown{side}"]] - w[:, _I[f"eyeLookUp{side}"]])
        out.append(quat_multiply(_axis_angle(1, yaw), _axis_angle(0, pitch)))
    return out[0], out[1]
