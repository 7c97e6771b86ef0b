"""A track's rest face: what its landmarks look like when the person makes no expression.

(This is the rest face of a model with identity modes, `--model builtin`; the generated rig's
own online neutral estimate is `calibration.BuiltinCalibration`, a different thing.)

Identity modes explain most of a person's own face shape, never all of it (40 modes of
scans, and mediapipe's own way of placing points on that face); what is left would read
as expression on every frame. So each track collects, over a warm-up window, the
landmark offsets between its observed face (back-projected into the head frame at the
fitted depth) and its identity's neutral, together with the frame's expression energy;
the rest face is the median offset of the calmest frames (lowest energy). Expressions
are then solved against identity + rest, so a neutral person reads ~0. Calibration can be
restarted on demand (`recalibrate`: N seconds of a neutral face), saved and reused.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.solve import box_qp

if TYPE_CHECKING:  # annotations only: prepared.py imports this module
    from facetrack.tracker.facemodel.fitter_config import FitterConfig
    from facetrack.tracker.facemodel.prepared import PreparedModel

NEUTRAL_FORMAT = "facetrack.neutral/1"


class RestFaceOptions(BaseModel):
    """How each track's rest face is found: automatically, from N seconds on demand, or from a file."""

    model_config = ConfigDict(extra="forbid")

    seconds: float | None = Field(None, gt=0, description="The first N seconds of each track are a neutral face: "
                                                          "its rest is taken from them (instead of the automatic "
                                                          "warm-up).")
    neutral: Path | None = Field(None, description="Start every track from this saved calibration (same actor).")
    save_neutral: Path | None = Field(None, description="Write the first calibrated track's calibration here "
                                                        "when the run ends.")


@dataclass
class RestFaceCalibration:
    """Warm-up collection and the resulting rest offsets (N used landmarks, 3) of one track.

    `window` frames are collected (auto: from the track's start; on demand: from the call);
    the `keep` fraction with the lowest expression energy gives the rest face, provisionally
    after `early` frames (so a track is not uncalibrated for seconds), finally after `window`.
    """

    window: int
    keep: float = 0.3
    early: int = 0  # a provisional rest after this many frames (0: none)
    done: bool = False
    offsets: list[np.ndarray] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    yaws: list[float] = field(default_factory=list)
    rest: np.ndarray | None = None
    weights: list[np.ndarray] = field(default_factory=list)  # a network's ARKit weights per frame (NaN: none read)
    rest_weights: np.ndarray | None = None  # (52,) their median over the same calm frames
    yaw: float = 0.0  # median yaw (degrees) of the warm-up's frames
    frames_used: int = 0
    source: str = "auto"

    def add(self, observed: np.ndarray, energy: float, rotation: np.ndarray | None = None,
            weights: np.ndarray | None = None) -> np.ndarray | None:
        """Feed one frame's observed face (head frame), fitted rotation and, where a network reads the frame's
        ARKit weights from the image points, those; returns the calm frames' median face when the window is full."""
        self.offsets.append(observed.astype(np.float32))
        self.weights.append(np.full(len(ARKIT_BLENDSHAPES), np.nan, np.float32) if weights is None
                            else np.asarray(weights, np.float32))
        self.energy.append(float(energy))
        self.yaws.append(np.nan if rotation is None else float(np.degrees(np.arctan2(rotation[0, 2], rotation[2, 2]))))
        if len(self.offsets) not in (self.early, self.window):
            return None
        n = max(1, int(round(self.keep * len(self.offsets))))
        calm = np.argsort(self.energy)[:n]
        self.rest = np.median(np.stack(self.offsets)[calm], axis=0).astype(np.float64)
        read = np.stack(self.weights)[calm]
        read = read[np.isfinite(read).all(1)]
        self.rest_weights = np.median(read, axis=0).astype(np.float64) if len(read) else None
        yaws = np.asarray(self.yaws)
        self.yaw = float(np.median(yaws[np.isfinite(yaws)])) if np.isfinite(yaws).any() else 0.0
        self.frames_used = n
        if len(self.offsets) >= self.window:
            self.offsets, self.energy, self.yaws, self.weights = [], [], [], []
            self.done = True
        return self.rest


def observed_shape(shape: np.ndarray, p: np.ndarray, rot: np.ndarray, trans: np.ndarray,
                   present: np.ndarray) -> np.ndarray:
    """The observed face in the head frame (N, 3): the fitted shape plus the 2D residual at its depth.

    The observation is 2D: each point is placed at its fitted depth, so the camera's x/y
    residual is rotated into the head frame; missing points keep the fitted shape.
    """
    cam = shape @ rot.T + trans
    depth = -cam[:, 2:3]
    resid = np.zeros_like(cam)
    resid[:, :2] = (p * depth - cam[:, :2]) * present[:, None]
    return shape + resid @ rot


def capped_rest_offset(basis_exp: np.ndarray, offset: np.ndarray, cap: float | np.ndarray,
                       one_sided: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The rest offsets (N, 3) kept: all that no expression explains, and expressions only up to `cap`.

    A calm face can look a little like an expression (thick lips, low brows) or be a
    held one (a person who smiles through the warm-up): a held expression must still
    read, so the part of the rest that the expression shapes (`basis_exp`, (3N, K),
    non-negative weights c) explain is subtracted only up to `cap` per shape (a scalar, or
    (K,) per shape: 1 absorbs a shape in full, `rest_caps`). `one_sided`
    ((K,) mirror partner of each shape, (K,) fraction): that fraction of a shape's excess over
    its partner, max(c - c[partner], 0), is subtracted in full (`turned_brows`).
    """
    off = offset.copy()
    if np.all(np.asarray(cap) >= 1.0):
        return off
    h = basis_exp.T @ basis_exp
    h[np.diag_indices(len(h))] += 1e-6 * float(np.trace(h)) / len(h)
    c = box_qp(h, basis_exp.T @ off.reshape(-1), np.zeros(len(h)), np.ones(len(h)))
    return off - (basis_exp @ (c - capped_weights(c, cap, one_sided))).reshape(-1, 3)


def capped_weights(c: np.ndarray, cap: float | np.ndarray,
                   one_sided: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The part of a rest face's weights c (K,) that is absorbed: each up to `cap`, and the `one_sided` fraction of
    a shape's excess over its mirror partner in full (`capped_rest_offset`)."""
    excess = np.zeros_like(c) if one_sided is None else np.maximum(c - c[one_sided[0]], 0) * one_sided[1]
    return np.minimum(c - excess, cap) + excess


def rest_caps(names: list[str], cap: float, own_shape: list[str]) -> np.ndarray:
    """(K,) most of each expression shape a rest face subtracts: `cap`, and 1 for the shapes in `own_shape`.

    A person's own lips and chin (thickness, a chin the identity modes place too low) read as
    mouthShrugLower/Upper on every frame, the calmest included; a chin raise held through the calmest
    frames of a warm-up is rare (it is a passing doubt or pout, unlike a held smile or raised brows),
    so those shapes are taken as part of the face (BENCHMARKS.md, issue 23).
    """
    return np.array([1.0 if n in own_shape else cap for n in names])


@functools.lru_cache(maxsize=8)
def _brow_pairs(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(K,) mirror partner of each shape (`_L` <-> `_R` for a model's, `Left` <-> `Right` for ARKit's) and which
    are one brow of a pair."""
    swap = {"_L": "_R", "_R": "_L"}

    def partner_of(n: str) -> str:
        if n[-2:] in swap:
            return n[:-2] + swap[n[-2:]]
        return n.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right")

    partner = [partner_of(n) for n in names]
    mirror = np.array([names.index(m) if m in names else i for i, m in enumerate(partner)])
    return mirror, np.array([n.startswith("brow") and mirror[i] != i for i, n in enumerate(names)])


def turned_brows(names: list[str], rest: RestFaceCalibration, full_deg: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The one-sided brow offsets a rest face taken at `rest.yaw` absorbs (`capped_rest_offset`'s `one_sided`).

    On a turned face mediapipe places one brow lower and nearer the nose than the model's rigid turn
    does (the clip's typical brow, not one frame: BENCHMARKS.md, issue 23), which reads as one brow
    lowered on every frame; a held one-sided frown is much rarer, so the one-sided part of a brow
    offset is absorbed, in full from `full_deg` of yaw, in proportion below (0: none on a frontal face).
    """
    if full_deg <= 0:
        return None
    mirror, brows = _brow_pairs(tuple(names))
    return mirror, brows * min(1.0, abs(rest.yaw) / full_deg)


def kept_rest_offset(pm: PreparedModel, offset: np.ndarray, rest: RestFaceCalibration,
                     config: FitterConfig) -> np.ndarray:
    """What a track's rest face keeps of its calm frames' offset from the identity (`capped_rest_offset`), with
    the config's cap, the shapes taken in full (`rest_caps`) and a turned warm-up's one-sided brows
    (`turned_brows`)."""
    names = pm.model.exp_names
    caps = rest_caps(names, config.rest_cap, config.rest_own_shape)
    return capped_rest_offset(pm.basis_flat_exp, offset, caps, turned_brows(names, rest, config.rest_turned_deg))


def kept_rest_weights(rest_weights: np.ndarray, rest: RestFaceCalibration, config: FitterConfig) -> np.ndarray:
    """What a track's rest face absorbs of the ARKit weights a network reads on its calm frames (MediaPipe's,
    `FitterConfig.mediapipe_weights`): the same rule as for the fit's shapes (`kept_rest_offset`) in weight space,
    with `rest_weight_cap` for the held-expression cap."""
    names = list(ARKIT_BLENDSHAPES)
    caps = rest_caps(names, config.rest_weight_cap, config.rest_own_shape)
    caps[[n.startswith("eye") for n in names]] = 0.0  # the eye stage owns eye*
    return capped_weights(np.asarray(rest_weights, np.float64), caps,
                          turned_brows(names, rest, config.rest_turned_deg))


def save_neutral(path: str | Path, model_id: str, identity: np.ndarray, rest: np.ndarray,
                 landmarks: np.ndarray, rest_weights: np.ndarray | None = None) -> Path:
    """Write a track's calibration (identity and rest offsets of the used landmarks, and the rest's weights as
    MediaPipe's network read them where it did) for reuse."""
    path = Path(path)
    meta = {"format": NEUTRAL_FORMAT, "model_id": model_id}
    extra = {} if rest_weights is None else {"rest_weights": np.asarray(rest_weights, np.float32)}
    np.savez(path, metadata=np.array(json.dumps(meta)), identity=np.asarray(identity, np.float32),
             rest=np.asarray(rest, np.float32), landmarks=np.asarray(landmarks, np.int32), **extra)
    return path


def load_neutral(path: str | Path, model_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(identity, rest offsets, landmark indices, rest weights or None) from a saved calibration of the same
    model."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"neutral file {path} does not exist; save one with --save-neutral first")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"]))
            weights = z["rest_weights"].astype(np.float64) if "rest_weights" in z.files else None
            out = (z["identity"].astype(np.float64), z["rest"].astype(np.float64), z["landmarks"].astype(np.int64),
                   weights)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a facetrack neutral file ({exc})") from exc
    if meta.get("format") != NEUTRAL_FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {NEUTRAL_FORMAT}")
    if meta.get("model_id") != model_id:
        raise ValueError(f"{path} calibrates model {meta.get('model_id')!r}, not {model_id!r}: recalibrate")
    return out
